/**
 * Volume creation, as mkddumbfs 1.1 does it (spec §12): the same options produce the same ddfs.cfg and index bytes.
 *
 * Effects, in order: remove `.autofsck`, `.rebuildfsck` and stale checkpoints; delete any existing `ddfsroot` tree;
 * create `ddfsroot/.ddumbfs/{stats,stats0,reclaim,test}`; write the block file (header block + zero block), the
 * index file (header page, bitmap 0xC0…, zero nodes, sparse), then `ddfs.cfg`.
 *
 * Unlike upstream (spec §17.8), a parent that already holds a volume (ddfs.cfg, ddfsroot, the block or index file;
 * on a block device: its ddumbfs magic) is refused unless `overwrite` is set, before anything is written.
 * Modes as ddumbfs 1.1 (mkddumbfs.c): block and index files 0600 and the directories ddfsroot and .ddumbfs 0700, so
 * the backed-up bytes are private to the owner; the special files 0666 and ddfs.cfg 0666 (fopen), less the umask.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { BLOCK_FILE_MAGIC, INDEX_FILE_MAGIC } from '../limits.js';
import { deriveConfig, renderConfig, validateConfig, type DdfsConfig, type GeometryInput } from '../format/config.js';
import { fileDevices, isBlockDevicePath } from '../io/device.js';
import { resolveVolumePath } from '../store/block_store.js';
import { encodeIndexHeader } from '../store/index_file.js';
import {
  AUTOFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, CONFIG_FILE, CONFIG_FILE_MODE, REBUILDFSCK_MARKER, ROOT_DIRECTORY,
  SPECIAL_DIRECTORY, SPECIAL_FILE_MODE, SPECIAL_FILES, VOLUME_DIRECTORY_MODE, VOLUME_FILE_MODE,
} from '../format/layout.js';
import { takeVolumeLock } from './lock.js';
import { mountPointOf } from './volume.js';

/**
 * The geometry inputs of spec §3.3; `partitionSize` may be 0 for a block device (its size is used, and a larger
 * value is ignored); the file names are relative to the parent or absolute ('' = default).
 */
export interface CreateOptions extends GeometryInput {
  /** Called before initialising a block device that lacks the block-file magic; false declines. */
  confirmDevice?: (devicePath: string) => Promise<boolean>;
  /** Erase a volume the parent already holds (mkddumbfs --overwrite); without it such a parent is refused. */
  overwrite?: boolean;
  /** Receives warnings that do not stop the creation (a block file larger than the free space). */
  onWarning?: (message: string) => void;
}

async function deviceSize(p: string): Promise<number> {
  const dev = await fileDevices.open(p, { readOnly: true });
  try {
    return await dev.size();
  } finally {
    await dev.close();
  }
}

async function hasMagic(devicePath: string, magic: string): Promise<boolean> {
  const head = Buffer.alloc(magic.length);
  const dev = await fileDevices.open(devicePath, { readOnly: true });
  try {
    await dev.read(head, 0, head.length, 0);
  } finally {
    await dev.close();
  }
  return head.toString('latin1') === magic;
}

/**
 * What in `parent` shows that it already holds a volume: ddfs.cfg, ddfsroot, a regular block or index file at the
 * paths the new volume would use, or a block device carrying the ddumbfs block or index magic.
 * @returns the first such path and what shows it ("exists", or for a device "holds a ddumbfs block file"), or null
 */
async function existingVolumeFile(parent: string, blockPath: string, indexPath: string): Promise<{ path: string; shown: string } | null> {
  for (const p of [path.join(parent, CONFIG_FILE), path.join(parent, ROOT_DIRECTORY)]) {
    if (fs.lstatSync(p, { throwIfNoEntry: false })) return { path: p, shown: 'exists' };
  }
  for (const [p, magic, what] of [[blockPath, BLOCK_FILE_MAGIC, 'block'], [indexPath, INDEX_FILE_MAGIC, 'index']] as const) {
    if (isBlockDevicePath(p)) {
      // a device always exists: only its magic shows a volume on it
      if (await hasMagic(p, magic)) return { path: p, shown: `holds a ddumbfs ${what} file` };
    } else if (fs.lstatSync(p, { throwIfNoEntry: false })) {
      return { path: p, shown: 'exists' };
    }
  }
  return null;
}

/** Bytes the unprivileged user may still write on the filesystem holding `dir`, or null when unknown. */
function freeSpaceBytes(dir: string): number | null {
  try {
    const st = fs.statfsSync(dir);
    return st.bavail * st.bsize;
  } catch {
    return null;
  }
}

/**
 * Create a volume in `parentDir` (spec §12).
 * @returns the cfg written
 * Holds the volume lock (volume/lock.ts) throughout, so an existing volume in use by an offline tool is not re-created.
 * @throws DdfsError NOT_FOUND (parent missing), MOUNTED, LOCKED (another process holds the volume lock), EXISTS (the
 *   parent holds a volume and `overwrite` is not set), USAGE (bad size/geometry, /dev path not a block device),
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
  // an existing volume may be in use by an offline tool (fsck, upload): never re-create it under one
  const lock = await takeVolumeLock(parent, 'mkddumbfs');
  try {
    return await createLocked(parent, options);
  } finally {
    await lock.release();
  }
}

/** createVolume under the volume lock. */
async function createLocked(parent: string, options: CreateOptions): Promise<DdfsConfig> {
  const blockFilename = options.blockFilename || 'ddfsblocks';
  const indexFilename = options.indexFilename || 'ddfsidx';
  const blockPath = resolveVolumePath(parent, blockFilename);
  const indexPath = resolveVolumePath(parent, indexFilename);
  for (const p of [blockPath, indexPath]) {
    if (p.startsWith('/dev/') && !isBlockDevicePath(p)) throw new DdfsError('USAGE', `${p}: not a block device`, { path: p });
  }

  if (!options.overwrite) {
    const found = await existingVolumeFile(parent, blockPath, indexPath);
    if (found) {
      throw new DdfsError('EXISTS', `${parent}: already holds a ddumbfs volume (${found.path} ${found.shown}): use --overwrite to erase it`, { path: found.path });
    }
  }

  let partitionSize = options.partitionSize;
  const blockIsDevice = isBlockDevicePath(blockPath);
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
  if (!blockIsDevice) {
    // the block file is sparse and grows as blocks are stored: a volume larger than the space left fills the disk
    const free = freeSpaceBytes(path.dirname(blockPath));
    if (free !== null && cfg.partitionSize > free) {
      options.onWarning?.(`the block file ${blockPath} may grow to ${cfg.partitionSize} bytes (-s), but its file system has ` +
        `only ${free} bytes free: writes will fail with "no space" before the volume is full`);
    }
  }
  const indexIsDevice = isBlockDevicePath(indexPath);
  if (indexIsDevice && (await deviceSize(indexPath)) < cfg.indexSize) {
    throw new DdfsError('USAGE', `${indexPath}: device smaller than the index size ${cfg.indexSize}`, { path: indexPath });
  }

  for (const name of [AUTOFSCK_MARKER, REBUILDFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE]) {
    await fsp.rm(path.join(parent, name), { force: true });
  }
  const root = path.join(parent, ROOT_DIRECTORY);
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.mkdir(root, { mode: VOLUME_DIRECTORY_MODE });
  await fsp.mkdir(path.join(root, SPECIAL_DIRECTORY), { mode: VOLUME_DIRECTORY_MODE });
  for (const name of SPECIAL_FILES) {
    await fsp.writeFile(path.join(root, SPECIAL_DIRECTORY, name), '', { mode: SPECIAL_FILE_MODE });
  }

  const bs = cfg.blockSize;
  const blocks = Buffer.alloc(2 * bs);
  blocks.write(BLOCK_FILE_MAGIC, 0, 'latin1');
  const blockDev = await fileDevices.open(blockPath, { create: !blockIsDevice, truncate: !blockIsDevice, mode: VOLUME_FILE_MODE });
  if (!blockIsDevice) await makePrivate(blockPath);
  try {
    await blockDev.write(blocks, 0);
    await blockDev.sync();
  } finally {
    await blockDev.close();
  }

  const indexDev = await fileDevices.open(indexPath, { create: !indexIsDevice, truncate: !indexIsDevice, mode: VOLUME_FILE_MODE });
  if (!indexIsDevice) await makePrivate(indexPath);
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

  await fsp.writeFile(path.join(parent, CONFIG_FILE), renderConfig(cfg), { mode: CONFIG_FILE_MODE });
  return cfg;
}

/** Take the group and other permission bits off a regular file (an overwritten one keeps its mode through O_TRUNC). */
async function makePrivate(p: string): Promise<void> {
  const mode = (await fsp.stat(p)).mode & 0o7777;
  if ((mode & 0o077) !== 0) await fsp.chmod(p, mode & 0o700);
}
