/**
 * Volume creation, as mkddumbfs 1.1 does it (spec §12): the same options produce the same ddfs.cfg and index bytes.
 *
 * Effects, in order: remove `.autofsck`, `.rebuildfsck` and stale checkpoints; delete any existing `ddfsroot` tree;
 * create `ddfsroot/.ddumbfs/{stats,stats0,reclaim,test}`; write the block file (header block + zero block), the
 * index file (header page, bitmap 0xC0…, zero nodes, sparse), then `ddfs.cfg`.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { BLOCK_FILE_MAGIC } from '../limits.js';
import { deriveConfig, renderConfig, validateConfig, type DdfsConfig, type GeometryInput } from '../format/config.js';
import { fileDevices } from '../io/device.js';
import { resolveVolumePath } from '../store/block_store.js';
import { encodeIndexHeader } from '../store/index_file.js';
import {
  AUTOFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, CONFIG_FILE, REBUILDFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY,
} from '../format/layout.js';
import { mountPointOf } from './volume.js';

/**
 * The geometry inputs of spec §3.3; `partitionSize` may be 0 for a block device (its size is used, and a larger
 * value is ignored); the file names are relative to the parent or absolute ('' = default).
 */
export interface CreateOptions extends GeometryInput {
  /** Called before initialising a block device that lacks the block-file magic; false declines. */
  confirmDevice?: (devicePath: string) => Promise<boolean>;
}

/** Special files created empty in /.ddumbfs (spec §2). */
export const SPECIAL_FILES = ['stats', 'stats0', 'reclaim', 'test'] as const;

async function deviceSize(p: string): Promise<number> {
  const dev = await fileDevices.open(p, { readOnly: true });
  try {
    return await dev.size();
  } finally {
    await dev.close();
  }
}

function isBlockDevice(p: string): boolean {
  try {
    return fs.statSync(p).isBlockDevice();
  } catch {
    return false;
  }
}

/**
 * Create a volume in `parentDir` (spec §12).
 * @returns the cfg written
 * @throws DdfsError NOT_FOUND (parent missing), MOUNTED, USAGE (bad size/geometry, /dev path not a block device),
 *   ACCESS (declined by confirmDevice)
 */
export async function createVolume(parentDir: string, options: CreateOptions): Promise<DdfsConfig> {
  const parent = path.resolve(parentDir);
  let st: fs.Stats;
  try {
    st = await fsp.stat(parent);
  } catch (err) {
    throw new DdfsError('NOT_FOUND', `${parent}: directory not found`, { path: parent }, err);
  }
  if (!st.isDirectory()) throw new DdfsError('USAGE', `${parent}: not a directory`, { path: parent });
  const mnt = mountPointOf(parent);
  if (mnt) throw new DdfsError('MOUNTED', `${parent}: volume is mounted on ${mnt}`, { path: parent });

  const blockFilename = options.blockFilename || 'ddfsblocks';
  const indexFilename = options.indexFilename || 'ddfsidx';
  const blockPath = resolveVolumePath(parent, blockFilename);
  const indexPath = resolveVolumePath(parent, indexFilename);
  for (const p of [blockPath, indexPath]) {
    if (p.startsWith('/dev/') && !isBlockDevice(p)) throw new DdfsError('USAGE', `${p}: not a block device`, { path: p });
  }

  let partitionSize = options.partitionSize;
  const blockIsDevice = isBlockDevice(blockPath);
  if (blockIsDevice) {
    const size = await deviceSize(blockPath);
    if (partitionSize <= 0 || partitionSize > size) partitionSize = size;
    const head = Buffer.alloc(8);
    const dev = await fileDevices.open(blockPath, { readOnly: true });
    try { await dev.read(head, 0, 8, 0); } finally { await dev.close(); }
    if (head.toString('latin1') !== BLOCK_FILE_MAGIC && options.confirmDevice && !(await options.confirmDevice(blockPath))) {
      throw new DdfsError('ACCESS', `${blockPath}: initialisation declined`, { path: blockPath });
    }
  }
  if (!(partitionSize > 0)) throw new DdfsError('USAGE', 'the block file size (-s) is required for a regular file');

  const cfg = deriveConfig({
    partitionSize,
    blockSize: options.blockSize,
    hashName: options.hashName,
    nodeOverflow: options.nodeOverflow,
    reuseAsap: options.reuseAsap,
    blockFilename,
    indexFilename,
  });
  // Refuse before anything is written a geometry that Volume.open would refuse afterwards.
  validateConfig(cfg, 'mkddumbfs');
  const indexIsDevice = isBlockDevice(indexPath);
  if (indexIsDevice && (await deviceSize(indexPath)) < cfg.indexSize) {
    throw new DdfsError('USAGE', `${indexPath}: device smaller than the index size ${cfg.indexSize}`, { path: indexPath });
  }

  for (const name of [AUTOFSCK_MARKER, REBUILDFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE]) {
    await fsp.rm(path.join(parent, name), { force: true });
  }
  const root = path.join(parent, ROOT_DIRECTORY);
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.mkdir(path.join(root, SPECIAL_DIRECTORY), { recursive: true });
  for (const name of SPECIAL_FILES) {
    await fsp.writeFile(path.join(root, SPECIAL_DIRECTORY, name), '', { mode: 0o666 });
  }

  const bs = cfg.blockSize;
  const blocks = Buffer.alloc(2 * bs);
  blocks.write(BLOCK_FILE_MAGIC, 0, 'latin1');
  const blockDev = await fileDevices.open(blockPath, { create: !blockIsDevice, truncate: !blockIsDevice, mode: 0o644 });
  try {
    await blockDev.write(blocks, 0);
    await blockDev.sync();
  } finally {
    await blockDev.close();
  }

  const indexDev = await fileDevices.open(indexPath, { create: !indexIsDevice, truncate: !indexIsDevice, mode: 0o644 });
  try {
    await indexDev.write(encodeIndexHeader(), 0);
    if (indexIsDevice) {
      // a device keeps old bytes: zero the bitmap and node array explicitly
      const zeros = Buffer.alloc(1024 * 1024);
      for (let pos = cfg.freeblockOffset; pos < cfg.indexSize; pos += zeros.length) {
        await indexDev.write(zeros.subarray(0, Math.min(zeros.length, cfg.indexSize - pos)), pos);
      }
    } else {
      await indexDev.truncate(cfg.indexSize);
    }
    await indexDev.write(Buffer.from([0xc0]), cfg.freeblockOffset);
    await indexDev.sync();
  } finally {
    await indexDev.close();
  }

  await fsp.writeFile(path.join(parent, CONFIG_FILE), renderConfig(cfg), { mode: 0o644 });
  return cfg;
}
