/**
 * alterddumbfs, the corruption tool for fsck tests (spec §13.2): damage an offline volume on purpose, reproducibly
 * (`-n SEED`), and say what was done, one line per alteration.
 *
 * Order of the work, whatever the order of the options:
 * 1. refuse a mounted volume; create `.autofsck` (always, as upstream: the next mount or fsck treats the volume as
 *    crashed);
 * 2. with the index loaded: `-u` (checkpoint + a recoverable and an unrecoverable block), `-f` (funny files), the
 *    node alterations `-s -S -r -d -p -a -c` (each N times, in that order), then `-i N` rounds of all of them;
 *    the index is written back and synced;
 * 3. `-k FILE`: the file's block addresses are replaced by random ones (its hashes stay);
 * 4. `-I OP` on the index file, then `-B OP` on the block file (delete, magic, truncate to 2048 bytes, empty):
 *    last, since they make the volume unopenable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import type { DdfsConfig } from '../format/config.js';
import type { DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { SeededRandom } from '../io/crash_device.js';
import { BlockStore, checkVolumeFileSizes, resolveVolumePath } from '../store/block_store.js';
import { AUTOFSCK_MARKER, ROOT_DIRECTORY } from '../format/layout.js';
import { takeVolumeLock } from '../volume/lock.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';
import { refuseSpecialSymlinks, writeFileNoFollow } from '../volume/special_paths.js';
import { createFunnyFiles, simulateCrash } from './funny_files.js';
import { alterNodes, NODE_ALTERATION_KINDS, type NodeAlterationKind } from './index_nodes.js';

/** What `-I` / `-B` do to the index / block file. */
export type FileOperation = 'delete' | 'magic' | 'truncate' | 'empty';
export const FILE_OPERATIONS: readonly FileOperation[] = ['delete', 'magic', 'truncate', 'empty'];
/** `truncate` cuts the file to this many bytes (upstream). */
export const ALTER_TRUNCATE_SIZE = 2048;
/** What `magic` writes over the first 8 bytes. */
export const ALTER_BAD_MAGIC = 'BADMAGIC';

export interface AlterRequest {
  /** Count of each node alteration (-s -S -r -d -p -a -c). */
  nodes?: Partial<Record<NodeAlterationKind, number>>;
  /** -i N: N rounds of every node alteration. */
  rounds?: number;
  /** -u */
  crash?: boolean;
  /** -f */
  funny?: boolean;
  /** -I OP */
  indexFile?: FileOperation;
  /** -B OP */
  blockFile?: FileOperation;
  /** -k FILE…: absolute, relative to the cwd, or relative to ddfsroot. */
  shakeFiles?: string[];
}

export interface AlterOptions {
  /** PRNG seed (-n). */
  seed: number;
  devices?: DeviceFactory;
  /** Receives each line as it is produced. */
  out?: (line: string) => void;
  /** Called under the lock before anything is changed (the cli bumps a mirror master's generation here). */
  beforeChange?: (parentDir: string) => void;
  /** The parent as the user typed it (ff_bad_header_long holds a path built from it). Default: the absolute parent. */
  displayParent?: string;
}

export interface AlterReport {
  seed: number;
  lines: string[];
}

/** Whether a request alters anything. */
export function requestIsEmpty(r: AlterRequest): boolean {
  const counts = Object.values(r.nodes ?? {}).reduce((a, b) => a + (b ?? 0), 0);
  return counts === 0 && !r.rounds && !r.crash && !r.funny && !r.indexFile && !r.blockFile && !(r.shakeFiles?.length);
}

/**
 * Damage the offline volume in `parentDir` as `request` says (order in the file comment).
 * Holds the volume lock (volume/lock.ts) throughout.
 * @throws DdfsError MOUNTED (the volume is mounted), LOCKED (another process holds the volume lock), NOT_FOUND / BAD_CONFIG / BAD_MAGIC / TOO_SHORT (it cannot be
 *   opened for the alterations that need the index), USAGE (a -k file that is not a valid UFS file)
 */
export async function alterVolume(parentDir: string, request: AlterRequest, options: AlterOptions): Promise<AlterReport> {
  const parent = path.resolve(parentDir);
  const devices = options.devices ?? fileDevices;
  const rng = new SeededRandom(options.seed);
  const lines: string[] = [];
  const say = (line: string): void => {
    lines.push(line);
    options.out?.(line);
  };
  const mnt = mountPointOf(parent);
  if (mnt) throw new DdfsError('MOUNTED', `${parent}: filesystem is mounted on ${mnt}: unmount it first`, { path: parent });
  const lock = await takeVolumeLock(parent, 'alterddumbfs');
  try {
    return await alterLocked(parent, request, options, devices, rng, lines, say);
  } finally {
    await lock.release();
  }
}

/** alterVolume under the volume lock. */
async function alterLocked(
  parent: string, request: AlterRequest, options: AlterOptions, devices: DeviceFactory, rng: SeededRandom, lines: string[],
  say: (line: string) => void,
): Promise<AlterReport> {
  const cfg = await readVolumeConfig(parent);
  // a cfg that contradicts the real files would aim every alteration at other bytes: refuse before the marker
  await checkVolumeFileSizes(parent, cfg, devices);
  const rootDir = path.join(parent, ROOT_DIRECTORY);
  refuseSpecialSymlinks(parent);
  options.beforeChange?.(parent);
  writeFileNoFollow(path.join(parent, AUTOFSCK_MARKER), '', { mode: 0o600 });

  const nodeCounts = NODE_ALTERATION_KINDS.map((k) => [k, request.nodes?.[k] ?? 0] as const);
  const needsIndex = request.crash || request.funny || (request.rounds ?? 0) > 0 || nodeCounts.some(([, n]) => n > 0);
  if (needsIndex) {
    const store = await BlockStore.open(parent, cfg, { devices });
    try {
      if (request.crash) for (const l of await simulateCrash(store, rootDir, devices, rng)) say(l);
      if (request.funny) {
        const displayRoot = path.join(options.displayParent ?? parent, ROOT_DIRECTORY);
        for (const l of await createFunnyFiles(store, rootDir, displayRoot, devices, rng)) say(l);
      }
      const idx = store.index.nodes;
      for (const [kind, n] of nodeCounts) for (let k = 0; k < n; k++) say(alterNodes(idx, kind, rng));
      for (let round = 0; round < (request.rounds ?? 0); round++) {
        for (const kind of NODE_ALTERATION_KINDS) say(alterNodes(idx, kind, rng));
      }
    } finally {
      await store.close();
    }
  }
  for (const f of request.shakeFiles ?? []) say(await shakeFile(resolveUfsPath(f, rootDir), cfg, devices, rng));
  if (request.indexFile) say(await alterFile(resolveVolumePath(parent, cfg.indexFilename), 'index file', request.indexFile, devices));
  if (request.blockFile) say(await alterFile(resolveVolumePath(parent, cfg.blockFilename), 'block file', request.blockFile, devices));
  return { seed: options.seed, lines };
}

/** A -k argument: absolute or existing relative to the cwd as is, else relative to ddfsroot. */
function resolveUfsPath(p: string, rootDir: string): string {
  if (path.isAbsolute(p) || fs.existsSync(p)) return path.resolve(p);
  return path.join(rootDir, p);
}

/**
 * `-k`: replace the address of every data node (address ≥ 2) of a UFS file by a different random address in
 * [2, block_count); hashes, size and holes stay.
 * @returns the line to print
 */
async function shakeFile(p: string, cfg: DdfsConfig, devices: DeviceFactory, rng: SeededRandom): Promise<string> {
  const { nodeSize: ns, addrSize, blockCount: bc } = cfg;
  let file: UfsNodeFile;
  try {
    file = await UfsNodeFile.open(devices, p, ns, { write: true, strict: true });
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'BAD_HEADER') throw new DdfsError('USAGE', `${p}: not a valid ddumbfs file: ${err.message}`, { path: p }, err);
    throw new DdfsError('USAGE', `${p}: cannot open: ${(err as Error).message}`, { path: p }, err);
  }
  try {
    if (!file.writable) throw new DdfsError('USAGE', `${p}: cannot open for writing`, { path: p });
    const count = file.nodeCount;
    const nodes = await file.readNodes(0, count);
    let changed = 0;
    for (let k = 0; k < count; k++) {
      const a = decodeAddress(nodes, k * ns, addrSize);
      if (a < 2 || bc <= 3) continue;
      let b = 2 + rng.int(bc - 2);
      if (b === a) b = b + 1 < bc ? b + 1 : 2;
      encodeAddress(nodes, k * ns, addrSize, b);
      changed++;
    }
    if (nodes.length > 0) await file.writeNodes(0, nodes);
    await file.sync();
    return `shake ${p}: ${changed} of ${count} block addresses replaced by random ones`;
  } finally {
    await file.close();
  }
}

/** `-I` / `-B`. @returns the line to print */
async function alterFile(p: string, what: string, op: FileOperation, devices: DeviceFactory): Promise<string> {
  if (op === 'delete') {
    try {
      fs.unlinkSync(p);
    } catch (err) {
      throw new DdfsError('NOT_FOUND', `${what} ${p}: cannot delete: ${(err as Error).message}`, { path: p }, err);
    }
    return `${what} ${p}: deleted`;
  }
  const dev = await devices.open(p, {});
  try {
    if (op === 'magic') {
      await dev.write(Buffer.from(ALTER_BAD_MAGIC, 'latin1'), 0);
    } else {
      await dev.truncate(op === 'truncate' ? ALTER_TRUNCATE_SIZE : 0);
    }
    await dev.sync();
  } finally {
    await dev.close();
  }
  if (op === 'magic') return `${what} ${p}: magic overwritten with ${ALTER_BAD_MAGIC}`;
  if (op === 'truncate') return `${what} ${p}: truncated to ${ALTER_TRUNCATE_SIZE} bytes`;
  return `${what} ${p}: emptied (0 bytes)`;
}
