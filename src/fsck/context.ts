/**
 * What check, repair, rebuild and pack share: opening a closed volume through the Device seam, walking the UFS tree
 * (spec §10.3 step 2: regular files only, `/.ddumbfs/` skipped, symlinks not followed, no mount crossing) with the
 * one walker (ufs/walk.ts) as byte paths, visiting UFS files through the one reader (ufs/ufs_reader.ts), and loading
 * the checkpoint (spec §5.8).
 *
 * Volume data (block file, index, UFS files, checkpoint) goes through `DeviceFactory`, directories through
 * io/tree_read.ts; only the stat of ddfsroot at open uses node:fs here. UFS paths are Buffers: messages show them
 * with pathText, reports write their raw bytes (rawText).
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { bitmapWordBytes, type DdfsConfig } from '../format/config.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices, openPrefetchedFile } from '../io/device.js';
import { Bitmap } from '../store/bitmap.js';
import { BlockStore, resolveVolumePath } from '../store/block_store.js';
import { FSCK_PREFETCH_BYTES, FSCK_WALK_LOOKAHEAD_FILES } from '../limits.js';
import { CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { walkUfsTree } from '../ufs/walk.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { readVolumeConfig } from '../volume/volume.js';


/** A progress event of a long phase: `done` of `total` units (blocks, files or nodes; total 0 = unknown). */
export interface ProgressEvent {
  /** The phase, named as its log lines name it ("check index", "read files", "fix files"). */
  phase: string;
  done: number;
  total: number;
  /** Plural unit name: 'nodes', 'blocks' or 'files'. */
  unit: 'nodes' | 'blocks' | 'files';
}
export type ProgressSink = (event: ProgressEvent) => void;

/**
 * Stop a phase at a safe point once `signal` is aborted (Ctrl-C, cli/interrupt.ts).
 * @param phase the phase that stops, for the message
 * @throws DdfsError INTERRUPTED with data { phase } when aborted
 */
export function throwIfInterrupted(signal: AbortSignal | undefined, phase: string): void {
  if (signal?.aborted) throw new DdfsError('INTERRUPTED', `interrupted during ${phase}`, { phase });
}

/** Seconds since `t0` (a performance.now() value) as upstream prints them: `0.0`. */
export function elapsedText(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(1);
}

/** A volume opened for fsck: cfg, block store (block file + loaded index) and the block-file size. */
export interface FsckVolume {
  readonly parentDir: string;
  readonly rootDir: string;
  readonly cfg: DdfsConfig;
  readonly store: BlockStore;
  readonly devices: DeviceFactory;
  /** Whole blocks present in the block file (addresses ≥ this cannot be read). */
  blocksInFile: number;
}

export interface OpenFsckOptions {
  readOnly: boolean;
  devices?: DeviceFactory;
  skipBlockMagic?: boolean;
}

/**
 * Open the volume in `parentDir` for fsck (cfg, block file, index loaded in memory).
 * @throws DdfsError NOT_FOUND, BAD_CONFIG, BAD_MAGIC, TOO_SHORT (from BlockStore.open)
 */
export async function openFsckVolume(parentDir: string, options: OpenFsckOptions): Promise<FsckVolume> {
  const parent = path.resolve(parentDir);
  const cfg = await readVolumeConfig(parent);
  const rootDir = path.join(parent, ROOT_DIRECTORY);
  try {
    const st = await fsp.stat(rootDir);
    if (!st.isDirectory()) throw new Error('not a directory');
  } catch (err) {
    throw new DdfsError('NOT_FOUND', `${rootDir}: root directory not found`, { path: rootDir }, err);
  }
  const devices = options.devices ?? fileDevices;
  const store = await BlockStore.open(parent, cfg, { readOnly: options.readOnly, devices, skipBlockMagic: options.skipBlockMagic });
  const size = await store.blockDevice.size();
  return { parentDir: parent, rootDir, cfg, store, devices, blocksInFile: Math.floor(size / cfg.blockSize) };
}

/** What the file walk's rule gives for a node: 0, the index address, or 1 (lost). Shared with repair. */
export function expectedAddress(v: FsckVolume, nodes: Buffer, nodeOffset: number): number {
  const { addrSize } = v.cfg;
  if (v.store.isZeroHash(nodes, nodeOffset + addrSize)) return 0;
  try {
    const a = v.store.index.nodes.lookupAddress(nodes, nodeOffset + addrSize);
    return a >= 0 ? a : 1;
  } catch {
    return 1; // the probe ran off the end of a damaged table: not found
  }
}

/** Close without writing anything back (a check, or a repair that failed: its in-memory index is discarded). */
export async function closeDiscard(v: FsckVolume): Promise<void> {
  await v.store.blockDevice.close().catch(() => undefined);
  await v.store.index.device.close().catch(() => undefined);
}

/** Write the index back, fsync block file and index, close. */
export async function closePersist(v: FsckVolume): Promise<void> {
  await flushIndexInPlace(v);
  await v.store.close();
}

/**
 * Write the index's dirty pages without copying them (IndexFile.flushInPlace), after syncing the block file so the
 * index never names a block whose data is not on disk. fsck owns the volume (lock) and writes no block meanwhile;
 * the store's own sync, which copies the dirty pages first, then finds nothing left to copy. Call it before
 * `store.checkpoint()` and at close.
 */
export async function flushIndexInPlace(v: FsckVolume): Promise<void> {
  await v.store.blockDevice.sync();
  await v.store.index.flushInPlace();
}

/** The block and index file paths of a volume, as the upstream tools print them at start. */
export function volumePaths(parentDir: string, cfg: DdfsConfig): { root: string; block: string; index: string } {
  return {
    root: path.join(parentDir, ROOT_DIRECTORY),
    block: resolveVolumePath(parentDir, cfg.blockFilename),
    index: resolveVolumePath(parentDir, cfg.indexFilename),
  };
}

/**
 * Regular files of the UFS tree (spec §10.3 step 2), as absolute byte paths, in the walker's stable order
 * (ufs/walk.ts: `/.ddumbfs/` and `/ddfsmirror/` skipped, symlinks not followed, names never decoded). A mount point
 * is not ours and is passed over silently, as upstream does; every other walk error goes to `onError`, which
 * returns 'skip' to go on or throws to abort.
 *
 * The walk runs up to FSCK_WALK_LOOKAHEAD_FILES files ahead of the caller and asks the device factory to read each
 * file's first FSCK_PREFETCH_BYTES into the page cache (DeviceFactory.prefetch) as it is found: on a cold cache the
 * walk otherwise waits for the disk once per small file, most of a check's time (issue 9). The caller still sees
 * every path and every error in walk order: errors are queued with the paths and handed to `onError` when the
 * caller reaches them, so its reports come out in the same order as without the look-ahead, and an `onError` that
 * throws aborts at the same point (the files walked past it were only prefetched, never visited).
 */
export async function* walkUfsFiles(v: FsckVolume, onError: (path: Buffer, err: Error) => 'skip', options: { write?: boolean } = {}): AsyncGenerator<Buffer> {
  const root = pathBytes(v.rootDir);
  /** Paths found and errors met, in walk order, not yet handed to the caller. */
  const ahead: Array<Buffer | { path: Buffer; err: Error }> = [];
  const walk = walkUfsTree(root, {
    syncCalls: true,
    onError: (rel, err) => {
      if (err instanceof DdfsError && err.code === 'CROSS_DEVICE') return 'skip';
      ahead.push({ path: joinPathBytes(root, rel), err });
      return 'skip';
    },
  });
  const entries = walk[Symbol.asyncIterator]();
  const devices = v.devices;
  // only the real file system's own factory: a test's factory (faults, memory) opens every file itself
  const keepOpen = devices === fileDevices;
  let walking = true;
  let next: Buffer | { path: Buffer; err: Error } | undefined;
  try {
    for (;;) {
      while (walking && ahead.length < FSCK_WALK_LOOKAHEAD_FILES) {
        const r = await entries.next();
        if (r.done) {
          walking = false;
          break;
        }
        if (r.value.kind !== 'file') continue;
        const p = joinPathBytes(root, r.value.path);
        if (keepOpen) {
          const d = openPrefetchedFile(p, FSCK_PREFETCH_BYTES, options.write === true);
          if (d !== null) prefetchedDevices.set(p, d);
        } else {
          devices.prefetch?.(p, FSCK_PREFETCH_BYTES);
        }
        ahead.push(p);
      }
      next = ahead.shift();
      if (next === undefined) return;
      if (Buffer.isBuffer(next)) {
        yield next;
        await closePrefetched(next);
      } else {
        onError(next.path, next.err);
      }
    }
  } finally {
    if (Buffer.isBuffer(next)) await closePrefetched(next);
    for (const p of ahead) if (Buffer.isBuffer(p)) await closePrefetched(p);
    if (walking) await entries.return?.(undefined);
  }
}

/** Files walkUfsFiles opened when it prefetched them, by the path Buffer it yields, until openWalkedUfsFile takes them. */
const prefetchedDevices = new WeakMap<Buffer, Device>();

async function closePrefetched(p: Buffer): Promise<void> {
  const d = prefetchedDevices.get(p);
  if (d === undefined) return;
  prefetchedDevices.delete(p);
  await d.close().catch(() => undefined);
}

/**
 * Open a path walkUfsFiles yielded (the same Buffer) as a UfsNodeFile, read whole at open when small
 * (UfsNodeFileOpenOptions.preread): through the descriptor the walk opened when it prefetched the file when there is
 * one (read-write when the walk was asked `write` and could), else as `UfsNodeFile.open(v.devices, p, node_size,
 * { write })`.
 * @param write as UfsNodeFileOpenOptions.write; pass the walk's own `write`
 * @throws as UfsNodeFile.open
 */
export async function openWalkedUfsFile(v: FsckVolume, p: Buffer, write = false): Promise<UfsNodeFile> {
  const d = prefetchedDevices.get(p);
  if (d !== undefined) {
    prefetchedDevices.delete(p);
    return UfsNodeFile.openDevice(d, p, v.cfg.nodeSize, { preread: true, writable: write });
  }
  return UfsNodeFile.open(v.devices, p, v.cfg.nodeSize, { preread: true, write });
}

/**
 * Load the checkpoint (spec §5.8): `ddfsusedblocks`, else `ddfsusedblocks.0`, whichever exists with exactly
 * 4·ceil(block_count/32) bytes.
 * @returns the checkpoint bitmap, or null when none loads
 */
export async function loadCheckpoint(parentDir: string, cfg: DdfsConfig, devices: DeviceFactory = fileDevices): Promise<Bitmap | null> {
  const want = bitmapWordBytes(cfg);
  for (const name of [CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE]) {
    let dev: Device;
    try {
      dev = await devices.open(path.join(parentDir, name), { readOnly: true, noFollow: true });
    } catch {
      continue;
    }
    try {
      if ((await dev.size()) !== want) continue;
      const buf = Buffer.alloc(want);
      if ((await dev.read(buf, 0, want, 0)) !== want) continue;
      return new Bitmap(cfg.blockCount, buf);
    } finally {
      await dev.close().catch(() => undefined);
    }
  }
  return null;
}

/** Group ascending addresses into runs of consecutive addresses. */
export function* runsOf(addresses: Iterable<number>, maxRun = Number.MAX_SAFE_INTEGER): Generator<{ address: number; count: number }> {
  let start = -1;
  let count = 0;
  for (const a of addresses) {
    if (start >= 0 && a === start + count && count < maxRun) {
      count++;
      continue;
    }
    if (start >= 0) yield { address: start, count };
    start = a;
    count = 1;
  }
  if (start >= 0) yield { address: start, count };
}

/**
 * Open every regular UFS file (walkUfsFiles order) read-only as a UfsNodeFile, hand it to `visit`, and close it.
 * Used by the passes that cannot go on with a file missing: repair's and rebuild's reading of file nodes.
 * Progress is reported every 1024 files under the phase 'read files'; `signal` is looked at before each file.
 * @param action what the message says was aborted ("repair", "rebuild")
 * @returns the number of files visited
 * @throws DdfsError IO "cannot read directory|cannot open file|cannot read file …: <action> aborted" on any error,
 *   including one thrown by `visit`; INTERRUPTED once `signal` is aborted
 */
export async function visitUfsFilesOrAbort(
  v: FsckVolume,
  action: string,
  progress: ProgressSink | undefined,
  visit: (ufsPath: Buffer, file: UfsNodeFile) => Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  let files = 0;
  for await (const p of walkUfsFiles(v, (dir, err) => {
    throw new DdfsError('IO', `cannot read directory ${pathText(dir)}: ${err.message}: ${action} aborted`, { path: dir }, err);
  })) {
    throwIfInterrupted(signal, 'read files');
    files++;
    if ((files & 0x3ff) === 0) progress?.({ phase: 'read files', done: files, total: 0, unit: 'files' });
    let f: UfsNodeFile;
    try {
      f = await openWalkedUfsFile(v, p);
    } catch (err) {
      throw new DdfsError('IO', `cannot open file ${pathText(p)}: ${(err as Error).message}: ${action} aborted`, { path: p }, err);
    }
    try {
      await visit(p, f);
    } catch (err) {
      throw new DdfsError('IO', `cannot read file ${pathText(p)}: ${(err as Error).message}: ${action} aborted`, { path: p }, err);
    } finally {
      await f.close().catch(() => undefined);
    }
  }
  progress?.({ phase: 'read files', done: files, total: files, unit: 'files' });
  return files;
}

