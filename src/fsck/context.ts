/**
 * What check, repair, rebuild and pack share: opening a closed volume through the Device seam, walking the UFS tree
 * (spec §10.3 step 2: regular files only, `/.ddumbfs/` skipped, symlinks not followed, no mount crossing), reading
 * and rewriting the node lists of UFS files (spec §7) in bounded chunks, and loading the checkpoint (spec §5.8).
 *
 * Volume data (block file, index, UFS files, checkpoint) goes through `DeviceFactory`; directory listing and the
 * corrupted.txt report use node:fs directly.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { UFS_HEADER_SIZE } from '../limits.js';
import { bitmapWordBytes, type DdfsConfig } from '../format/config.js';
import { decodeUfsHeader, encodeUfsHeader } from '../format/ufs_header.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { Bitmap } from '../store/bitmap.js';
import { BlockStore, resolveVolumePath } from '../store/block_store.js';
import { CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { readVolumeConfig } from '../volume/volume.js';

/** Nodes read or written per I/O when scanning a UFS file (bounds memory for huge files: 64 Ki nodes ≈ 2 MB). */
export const UFS_NODE_CHUNK_COUNT = 64 * 1024;
/** Deepest directory nesting walked (PATH_MAX 4096 allows at most 2048 levels of 1-char names). */
export const WALK_DEPTH_MAX = 2048;

/** A progress event of a long phase: `done` of `total` units (blocks, files or nodes). */
export interface ProgressEvent {
  phase: string;
  done: number;
  total: number;
}
export type ProgressSink = (event: ProgressEvent) => void;

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
  if (isZeroOrNullHash(v, nodes, nodeOffset + addrSize)) return 0;
  try {
    const r = v.store.index.nodes.lookup(nodes, nodeOffset + addrSize);
    return r.found ? r.address : 1;
  } catch {
    return 1; // the probe ran off the end of a damaged table: not found
  }
}

/** Byte equality (a JS loop: for a 16–24 byte hash, Buffer.compare's native call costs more than the bytes). */
export function sameBytes(x: Buffer, xo: number, y: Buffer, yo: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (x[xo + k] !== y[yo + k]) return false;
  return true;
}

/** True for the zero-block hash and the null hash (spec §7), like BlockStore.isZeroHash but cheaper in hot loops. */
export function isZeroOrNullHash(v: FsckVolume, h: Buffer, offset = 0): boolean {
  const n = v.cfg.hashSize;
  return sameBytes(h, offset, v.store.zeroHash, 0, n) || sameBytes(h, offset, v.store.nullHash, 0, n);
}

/** Close without writing anything back (a check, or a repair that failed: its in-memory index is discarded). */
export async function closeDiscard(v: FsckVolume): Promise<void> {
  await v.store.blockDevice.close().catch(() => undefined);
  await v.store.index.device.close().catch(() => undefined);
}

/** Write the index back, fsync block file and index, close. */
export async function closePersist(v: FsckVolume): Promise<void> {
  await v.store.close();
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
 * Regular files of the UFS tree in a stable order (names sorted per directory), skipping `/.ddumbfs/`, never
 * following symlinks nor crossing into another mounted filesystem. Directory errors go to `onError` (which may
 * throw to abort); the walk then skips that directory.
 */
export async function* walkRegularFiles(rootDir: string, onError: (p: string, err: unknown) => void): AsyncGenerator<string> {
  const rootDev = (await fsp.lstat(rootDir)).dev;
  const stack: Array<{ dir: string; depth: number }> = [{ dir: rootDir, depth: 0 }];
  while (stack.length > 0) {
    const { dir, depth } = stack.pop()!;
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      onError(dir, err);
      continue;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const subdirs: string[] = [];
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (depth === 0 && e.name === SPECIAL_DIRECTORY) continue;
      let isFile = e.isFile();
      let isDir = e.isDirectory();
      if (!isFile && !isDir && !e.isSymbolicLink() && !e.isFIFO() && !e.isSocket() && !e.isBlockDevice() && !e.isCharacterDevice()) {
        // d_type unknown on this filesystem: ask lstat
        try {
          const st = await fsp.lstat(p);
          isFile = st.isFile();
          isDir = st.isDirectory();
        } catch (err) {
          onError(p, err);
          continue;
        }
      }
      if (isFile) yield p;
      else if (isDir) subdirs.push(p);
    }
    for (let k = subdirs.length - 1; k >= 0; k--) {
      const d = subdirs[k]!;
      if (depth + 1 > WALK_DEPTH_MAX) {
        onError(d, new DdfsError('INVALID', `${d}: directory nesting deeper than ${WALK_DEPTH_MAX}`));
        continue;
      }
      try {
        if ((await fsp.lstat(d)).dev !== rootDev) continue; // a mount point: not ours
      } catch (err) {
        onError(d, err);
        continue;
      }
      stack.push({ dir: d, depth: depth + 1 });
    }
  }
}

/**
 * A UFS file seen as a header and a node list (spec §7), for fsck. The node area is `[16, length)`; whole nodes are
 * counted even when the header is invalid (a damaged header may still have a parseable node area).
 */
export class UfsNodeFile {
  private constructor(
    readonly path: string,
    private readonly device: Device,
    /** Whether writes are possible (the file could be opened read-write). */
    readonly writable: boolean,
    private readonly nodeSize: number,
    /** UFS length in bytes. */
    public length: number,
    /** 'empty' = 0-byte file (valid, size 0); 'bad' = length < 16 or wrong magic/size. */
    readonly headerState: 'empty' | 'valid' | 'bad',
    /** Logical size from the header (0 when empty or bad). */
    public size: number,
  ) {}

  /**
   * Open `p`; with `wantWrite`, read-write when permitted, else read-only (writes then fail).
   * @throws Node errors (ENOENT, EACCES...) when the file cannot even be read
   */
  static async open(devices: DeviceFactory, p: string, nodeSize: number, wantWrite: boolean): Promise<UfsNodeFile> {
    let device: Device;
    let writable = false;
    if (wantWrite) {
      try {
        device = await devices.open(p, {});
        writable = true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw err;
        device = await devices.open(p, { readOnly: true });
      }
    } else {
      device = await devices.open(p, { readOnly: true });
    }
    try {
      const length = await device.size();
      if (length === 0) return new UfsNodeFile(p, device, writable, nodeSize, 0, 'empty', 0);
      const head = Buffer.alloc(Math.min(length, UFS_HEADER_SIZE));
      await device.read(head, 0, head.length, 0);
      let state: 'valid' | 'bad' = 'valid';
      let size = 0;
      try {
        size = decodeUfsHeader(head, p);
      } catch {
        state = 'bad';
      }
      return new UfsNodeFile(p, device, writable, nodeSize, length, state, size);
    } catch (err) {
      await device.close().catch(() => undefined);
      throw err;
    }
  }

  /** Whole nodes after the header. */
  get nodeCount(): number {
    return this.length < UFS_HEADER_SIZE ? 0 : Math.floor((this.length - UFS_HEADER_SIZE) / this.nodeSize);
  }

  /** Bytes of a trailing partial node (0 when the length is 16 + k·node_size). */
  get partialBytes(): number {
    return this.length < UFS_HEADER_SIZE ? 0 : (this.length - UFS_HEADER_SIZE) % this.nodeSize;
  }

  /** Read nodes [first, first+count). @throws DdfsError IO on a short read */
  async readNodes(first: number, count: number, into?: Buffer): Promise<Buffer> {
    const len = count * this.nodeSize;
    const buf = into && into.length >= len ? into.subarray(0, len) : Buffer.allocUnsafe(len);
    const n = await this.device.read(buf, 0, len, UFS_HEADER_SIZE + first * this.nodeSize);
    if (n !== len) throw new DdfsError('IO', `${this.path}: short read of the node list`, { path: this.path });
    return buf;
  }

  /** Chunks of the node list, in order (the buffer is reused between chunks). */
  async *chunks(chunkCount = UFS_NODE_CHUNK_COUNT): AsyncGenerator<{ first: number; count: number; nodes: Buffer }> {
    const total = this.nodeCount;
    let scratch: Buffer | undefined;
    for (let first = 0; first < total; first += chunkCount) {
      const count = Math.min(chunkCount, total - first);
      scratch ??= Buffer.allocUnsafe(Math.min(chunkCount, total) * this.nodeSize);
      yield { first, count, nodes: await this.readNodes(first, count, scratch) };
    }
  }

  /** Write `nodes` (whole nodes) at node position `first`. */
  async writeNodes(first: number, nodes: Buffer): Promise<void> {
    await this.device.write(nodes, UFS_HEADER_SIZE + first * this.nodeSize);
  }

  /** Cut the UFS file to the header and `count` nodes. */
  async truncateToNodes(count: number): Promise<void> {
    const len = UFS_HEADER_SIZE + count * this.nodeSize;
    await this.device.truncate(len);
    this.length = len;
  }

  /** Rewrite the header with `size`. */
  async writeHeader(size: number): Promise<void> {
    await this.device.write(encodeUfsHeader(size), 0);
    this.size = size;
  }

  async close(): Promise<void> {
    await this.device.close();
  }
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
      dev = await devices.open(path.join(parentDir, name), { readOnly: true });
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

/** Set bits of a store bitmap in ascending order, from `from` (zero bytes skipped). */
export function* bitmapAscending(bitmap: Bitmap, from = 0): Generator<number> {
  const bytes = bitmap.bytes;
  let a = Math.max(0, from);
  while (a < bitmap.blockCount) {
    const byte = bytes[a >>> 3]!;
    if (byte === 0) {
      a = ((a >>> 3) + 1) * 8;
      continue;
    }
    if ((byte & (0x80 >>> (a & 7))) !== 0) yield a;
    a++;
  }
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
 * Open every regular UFS file (walkRegularFiles order) read-only as a UfsNodeFile, hand it to `visit`, and close it.
 * Used by the passes that cannot go on with a file missing: repair's and rebuild's reading of file nodes.
 * Progress is reported every 1024 files under the phase 'read files'.
 * @param action what the message says was aborted ("repair", "rebuild")
 * @returns the number of files visited
 * @throws DdfsError IO "cannot read directory|cannot open file|cannot read file …: <action> aborted" on any error,
 *   including one thrown by `visit`
 */
export async function visitUfsFilesOrAbort(
  v: FsckVolume,
  action: string,
  progress: ProgressSink | undefined,
  visit: (ufsPath: string, file: UfsNodeFile) => Promise<void>,
): Promise<number> {
  let files = 0;
  for await (const p of walkRegularFiles(v.rootDir, (dir, err) => {
    throw new DdfsError('IO', `cannot read directory ${dir}: ${(err as Error).message}: ${action} aborted`, { path: dir }, err);
  })) {
    files++;
    if ((files & 0x3ff) === 0) progress?.({ phase: 'read files', done: files, total: 0 });
    let f: UfsNodeFile;
    try {
      f = await UfsNodeFile.open(v.devices, p, v.cfg.nodeSize, false);
    } catch (err) {
      throw new DdfsError('IO', `cannot open file ${p}: ${(err as Error).message}: ${action} aborted`, { path: p }, err);
    }
    try {
      await visit(p, f);
    } catch (err) {
      throw new DdfsError('IO', `cannot read file ${p}: ${(err as Error).message}: ${action} aborted`, { path: p }, err);
    } finally {
      await f.close().catch(() => undefined);
    }
  }
  return files;
}

