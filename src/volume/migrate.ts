/**
 * migrateddumbfs (spec §13.1): copy the index and the UFS tree of an offline volume SRC into an empty volume DST of
 * another size (same block_size and hash), re-encoding every node for DST's geometry. The block file is not touched:
 * the caller (or resizeddumbfs) moves SRC's block file into DST afterwards.
 *
 * - Index: SRC's nodes, walked in node order (which is hash order, spec §5.5), are placed at
 *   `max(cidx_dst(hash), previous + 1)` in DST's table; since cidx is monotone in the hash, the result satisfies the
 *   invariants of §5.5, which the placement checks as it goes (a SRC index out of order is refused: repair it first).
 *   Every allocated bit of SRC's bitmap is set in DST's.
 * - Tree: unlike upstream (spec §17 item 12) every directory is recreated, and modes, owners, atimes and mtimes (ns),
 *   extended attributes (but the volume's reserved `user.ddumbfs.*`, `trusted.ddumbfs.*`), symlinks, hard links
 *   (one inode ⇒ one inode), FIFOs, sockets and device nodes are kept.
 *   Regular files are rewritten with nodes re-encoded to DST's addr_size (copied raw when node sizes are equal), the
 *   same header size, and holes of the node list left as holes. A file with an invalid header, a partial trailing node,
 *   a node count that disagrees with its size or an address beyond DST's block_count is reported, counted and not
 *   created ("bad file").
 * - `.ddumbfs/`: the special files are DST's own; the log and corrupted.txt (and their roll-overs) are copied.
 * - Durability: DST's index and a checkpoint are written and synced, then one syncfs(2) makes the tree durable.
 *
 * Offline only: both volumes are refused when mounted, and both volume locks are taken (volume/lock.ts) unless the
 * caller holds them (resizeddumbfs).
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import type { DdfsConfig } from '../format/config.js';
import { AUTOFSCK_MARKER, isReservedXattr, REBUILDFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY, SPECIAL_FILES } from '../format/layout.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { encodeUfsHeader, nodeCountForSize } from '../format/ufs_header.js';
import { fileDevices } from '../io/device.js';
import { syncFilesystem } from '../io/mirror_fs.js';
import {
  copyMetadata, copyPlainFile, copySymlink, entriesExcept, entryExists, lstatSource, makeDirectoryFor, makeHardLinkTo,
  makeSpecialLike, namesOf, removeFileQuietly, sourceKind, type SourceStat,
} from '../io/tree_copy.js';
import { Bitmap } from '../store/bitmap.js';
import { BlockStore } from '../store/block_store.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { walkUfsTree } from '../ufs/walk.js';
import type { Logger } from '../util/log.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { takeVolumeLock, type VolumeLock } from './lock.js';
import { mountPointOf, readVolumeConfig } from './volume.js';

/** A progress event of a long phase: `done` of `total` units (0 = unknown total). */
export interface MigrateProgress {
  phase: string;
  done: number;
  /** 0 while the number of files is not known yet. */
  total: number;
  unit: 'nodes' | 'files';
}

/** A volume opened for the migration. */
interface OpenVolume {
  parentDir: string;
  rootDir: string;
  cfg: DdfsConfig;
  store: BlockStore;
}

async function openVolume(parentDir: string, readOnly: boolean): Promise<OpenVolume> {
  const cfg = await readVolumeConfig(parentDir);
  const rootDir = path.join(parentDir, ROOT_DIRECTORY);
  if (!entryExists(rootDir)) throw new DdfsError('NOT_FOUND', `${rootDir}: root directory not found`, { path: rootDir });
  const store = await BlockStore.open(parentDir, cfg, { readOnly });
  return { parentDir, rootDir, cfg, store };
}

export interface MigrateOptions {
  logger: Logger;
  /** Log every file copied. */
  verbose?: boolean;
  /** Migrate a source that was not cleanly unmounted (`.autofsck`): its index may lag behind its files. */
  force?: boolean;
  progress?: (event: MigrateProgress) => void;
  /** The caller already holds both volume locks (resizeddumbfs): take none. */
  locksHeld?: boolean;
}

export interface MigrateReport {
  /** Index nodes placed in DST. */
  nodes: number;
  /** Used blocks (bitmap bits, 0 and 1 included) of both volumes afterwards. */
  blocksUsed: number;
  files: number;
  directories: number;
  symlinks: number;
  /** FIFOs, sockets, device nodes. */
  specials: number;
  /** Directory entries made as hard links to a file already copied. */
  hardLinks: number;
  /** Files reported and not created (invalid header, partial node, size mismatch, address out of range). */
  badFiles: number;
  seconds: number;
}

const UFS_HEADER_BYTES = 16;

/**
 * Migrate the closed volume `srcParent` into the empty volume `dstParent` (spec §13.1, see the module comment).
 * @returns what was copied; `badFiles` > 0 means some files were reported and not migrated
 * @throws DdfsError MOUNTED, LOCKED, NEEDS_CHECK (SRC has `.rebuildfsck`, or `.autofsck` without `force`), INVALID
 *   (different block size or hash, DST not empty, DST too small, a SRC block at or beyond DST's block_count, SRC index
 *   out of order), NOT_FOUND / BAD_CONFIG / BAD_MAGIC (either volume), IO
 */
export async function migrateVolume(srcParent: string, dstParent: string, options: MigrateOptions): Promise<MigrateReport> {
  const src = path.resolve(srcParent);
  const dst = path.resolve(dstParent);
  if (src === dst) throw new DdfsError('USAGE', `${src}: source and destination are the same volume`, { path: src });
  for (const p of [src, dst]) {
    const mnt = mountPointOf(p);
    if (mnt) throw new DdfsError('MOUNTED', `${p}: filesystem is online (mounted on ${mnt})`, { path: p });
  }
  const locks: VolumeLock[] = [];
  try {
    if (!options.locksHeld) {
      locks.push(await takeVolumeLock(src, 'migrateddumbfs'));
      locks.push(await takeVolumeLock(dst, 'migrateddumbfs'));
    }
    return await migrateLocked(src, dst, options);
  } finally {
    for (const l of locks.reverse()) await l.release();
  }
}

async function migrateLocked(src: string, dst: string, options: MigrateOptions): Promise<MigrateReport> {
  const t0 = performance.now();
  const log = options.logger;
  if (entryExists(path.join(src, REBUILDFSCK_MARKER))) {
    throw new DdfsError('NEEDS_CHECK', `${src}: a rebuild was interrupted (${REBUILDFSCK_MARKER}): run fsckddumbfs -r first`, { path: src });
  }
  if (!options.force && entryExists(path.join(src, AUTOFSCK_MARKER))) {
    throw new DdfsError('NEEDS_CHECK', `${src}: not cleanly unmounted (${AUTOFSCK_MARKER}): run fsckddumbfs -n first, or use -f`, { path: src });
  }
  const srcCfg = await readVolumeConfig(src);
  const dstCfg = await readVolumeConfig(dst);
  if (srcCfg.blockSize !== dstCfg.blockSize) {
    throw new DdfsError('INVALID', `block sizes differ: ${src} has ${srcCfg.blockSize}, ${dst} has ${dstCfg.blockSize}`, {});
  }
  if (srcCfg.hashName !== dstCfg.hashName) {
    throw new DdfsError('INVALID', `hashes differ: ${src} uses ${srcCfg.hashName}, ${dst} uses ${dstCfg.hashName}`, {});
  }
  const s = await openVolume(src, true);
  try {
    // DST's store is closed (synced) also after a failure: a half-migrated DST is only good for removal
    const d = await openVolume(dst, false);
    try {
      const report = await migrateOpen(s, d, options, log);
      report.seconds = (performance.now() - t0) / 1000;
      return report;
    } finally {
      await d.store.close();
    }
  } finally {
    await s.store.close();
  }
}

/** Entries of DST's root other than `.ddumbfs`: a destination must be empty. */
function rootEntries(v: OpenVolume): string[] {
  return entriesExcept(v.rootDir, SPECIAL_DIRECTORY);
}

async function migrateOpen(s: OpenVolume, d: OpenVolume, options: MigrateOptions, log: Logger): Promise<MigrateReport> {
  const sBitmap = s.store.index.bitmap;
  const dBitmap = d.store.index.bitmap;
  const sIdx = s.store.index.nodes;
  const dIdx = d.store.index.nodes;
  const dBc = d.cfg.blockCount;
  if (dBitmap.countSet !== 2 || dIdx.firstNonZeroNodeFrom(0) < dIdx.nodeCount || rootEntries(d).length > 0) {
    throw new DdfsError('INVALID', `${d.parentDir}: destination is not empty (${dBitmap.countSet} used blocks, ` +
      `${rootEntries(d).length} entries in ${ROOT_DIRECTORY}): make it with mkddumbfs`, { path: d.parentDir });
  }
  const used = sBitmap.countSet;
  if (used - 2 > dBc - dBitmap.countSet) {
    throw new DdfsError('INVALID', `${d.parentDir}: ${dBc - 2} free blocks, fewer than the ${used - 2} blocks used in ${s.parentDir}`, {});
  }
  let last = -1;
  for (const a of sBitmap.setAscending(dBc)) {
    last = a;
    break;
  }
  if (last >= 0) {
    throw new DdfsError('INVALID', `${s.parentDir}: block ${last} is in use, beyond the ${dBc} blocks of ${d.parentDir}: ` +
      'pack the source first (fsckddumbfs -n -k)', { address: last });
  }
  log.info(`Migrate ${s.parentDir} (${s.cfg.blockCount} blocks, addr_size ${s.cfg.addrSize}) to ${d.parentDir} ` +
    `(${dBc} blocks, addr_size ${d.cfg.addrSize}): ${used} blocks used.`);

  // 1. index: node order is hash order; place each at max(cidx_dst, previous + 1), checking §5.5 on the way
  const seen = new Bitmap(dBc, Buffer.alloc(Math.ceil(dBc / 32) * 4));
  let prev = -1;
  let nodes = 0;
  let prevHash: Buffer | null = null;
  const refuse = (i: number, why: string): never => {
    throw new DdfsError('INVALID', `${s.parentDir}: index node ${i} ${why}: repair the source first (fsckddumbfs -n)`, { node: i });
  };
  for (let i = sIdx.firstNonZeroNodeFrom(0); i < sIdx.nodeCount; i = sIdx.firstNonZeroNodeFrom(i + 1)) {
    if (sIdx.isEmpty(i)) continue;
    const a = sIdx.address(i);
    if (a < 2 || a >= dBc) refuse(i, `has address ${a}`);
    if (!sBitmap.has(a)) refuse(i, `has address ${a}, which is not allocated`);
    if (seen.has(a)) refuse(i, `has address ${a}, which another node has`);
    seen.set(a);
    const h = sIdx.hashView(i);
    if (prevHash && Buffer.compare(prevHash, h) >= 0) refuse(i, 'is out of hash order');
    prevHash = Buffer.from(h);
    const slot = Math.max(dIdx.idealSlot(h), prev + 1);
    if (slot >= dIdx.nodeCount) throw new DdfsError('INVALID', `${d.parentDir}: index full placing node ${i} of ${s.parentDir}`, {});
    dIdx.writeNode(slot, a, h);
    prev = slot;
    nodes++;
    if ((nodes & 0xffff) === 0) options.progress?.({ phase: 'migrate: index', done: i, total: sIdx.nodeCount, unit: 'nodes' });
  }
  options.progress?.({ phase: 'migrate: index', done: sIdx.nodeCount, total: sIdx.nodeCount, unit: 'nodes' });
  for (const a of sBitmap.setAscending()) dBitmap.set(a);
  log.info(`Placed ${nodes} index nodes, ${dBitmap.countSet} blocks used.`);

  // 2. tree
  const counts = await copyTree(s, d, options, log);

  // 3. the log and corrupted lists of .ddumbfs
  copySpecialLogs(s, d, log);

  await d.store.checkpoint();
  syncFilesystem(d.rootDir);
  log.info(`Migrated ${counts.files} files, ${counts.directories} directories, ${counts.symlinks} symlinks, ` +
    `${counts.specials} special files, ${counts.hardLinks} hard links; ${counts.badFiles} bad files not migrated.`);
  return { nodes, blocksUsed: dBitmap.countSet, ...counts, seconds: 0 };
}

/** The volume's own attributes (layout.ts RESERVED_XATTR_PREFIXES) belong to the source's inodes: not copied. */
const keepXattr = (name: Buffer): boolean => !isReservedXattr(name);

type TreeCounts = Pick<MigrateReport, 'files' | 'directories' | 'symlinks' | 'specials' | 'hardLinks' | 'badFiles'>;

/** Copy the UFS tree of `s` into `d` (see the module comment). */
async function copyTree(s: OpenVolume, d: OpenVolume, options: MigrateOptions, log: Logger): Promise<TreeCounts> {
  const sRoot = pathBytes(s.rootDir);
  const dRoot = pathBytes(d.rootDir);
  const counts: TreeCounts = { files: 0, directories: 0, symlinks: 0, specials: 0, hardLinks: 0, badFiles: 0 };
  /** Inodes of SRC with several links → DST path of the first one copied. */
  const linked = new Map<string, Buffer>();
  /** Directories, in walk order; their metadata is set at the end, deepest first (their entries change mtime). */
  const dirs: Array<{ from: Buffer; to: Buffer; st: SourceStat }> = [];
  const walk = walkUfsTree(sRoot, {
    onError: (rel, err) => {
      if (err instanceof DdfsError && err.code === 'CROSS_DEVICE') {
        log.warn(`${pathText(joinPathBytes(sRoot, rel))}: a mount point inside the volume: not migrated`);
        return 'skip';
      }
      throw new DdfsError('IO', `${pathText(joinPathBytes(sRoot, rel))}: ${err.message}: migration aborted`, { path: rel }, err);
    },
  });
  let entries = 0;
  for await (const e of walk) {
    const from = joinPathBytes(sRoot, e.path);
    const to = joinPathBytes(dRoot, e.path);
    const st = lstatSource(from);
    const kind = sourceKind(st);
    if ((++entries & 0x3ff) === 0) options.progress?.({ phase: 'migrate: files', done: entries, total: 0, unit: 'files' });
    if (kind === 'directory') {
      makeDirectoryFor(to);
      dirs.push({ from, to, st });
      counts.directories++;
      continue;
    }
    if (kind === 'file') {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? linked.get(key) : undefined;
      if (first) {
        makeHardLinkTo(first, to);
        counts.hardLinks++;
        continue;
      }
      const bad = await copyUfsFile(s, d, from, to);
      if (bad) {
        log.error(`${pathText(from)}: ${bad}: not migrated`);
        counts.badFiles++;
        continue;
      }
      if (options.verbose) log.info(`${pathText(e.path)}`);
      if (st.nlink > 1n) linked.set(key, to);
      counts.files++;
    } else if (kind === 'symlink') {
      copySymlink(from, to);
      counts.symlinks++;
    } else {
      makeSpecialLike(to, st);
      counts.specials++;
    }
    copyMetadata(from, to, st, keepXattr);
  }
  options.progress?.({ phase: 'migrate: files', done: entries, total: entries, unit: 'files' });
  for (let k = dirs.length - 1; k >= 0; k--) copyMetadata(dirs[k]!.from, dirs[k]!.to, dirs[k]!.st, keepXattr);
  copyMetadata(sRoot, dRoot, lstatSource(sRoot), keepXattr);
  return counts;
}

/**
 * Rewrite the UFS file `from` (SRC geometry) as `to` (DST geometry, created exclusively, mode 0600 until its
 * metadata is copied).
 * @returns null when copied, else why the file is bad (and nothing was left at `to`)
 */
async function copyUfsFile(s: OpenVolume, d: OpenVolume, from: Buffer, to: Buffer): Promise<string | null> {
  const sNs = s.cfg.nodeSize;
  const dNs = d.cfg.nodeSize;
  const sAs = s.cfg.addrSize;
  const dAs = d.cfg.addrSize;
  const hs = s.cfg.hashSize;
  const f = await UfsNodeFile.open(fileDevices, from, sNs);
  try {
    if (f.headerState === 'bad') return `invalid header (${f.headerError?.message ?? 'bad magic'})`;
    if (f.partialBytes > 0) return `partial trailing node (${f.partialBytes} bytes)`;
    const count = f.nodeCount;
    if (f.headerState === 'valid' && count !== nodeCountForSize(f.size, s.cfg.blockSize)) {
      return `size mismatch: ${count} nodes for ${f.size} bytes`;
    }
    const out = await fileDevices.open(to, { create: true, exclusive: true, noFollow: true, mode: 0o600 });
    let ok = false;
    try {
      if (f.headerState === 'empty') {
        ok = true;
        return null;
      }
      await out.write(encodeUfsHeader(f.size), 0);
      let buf: Buffer | null = null;
      for await (const c of f.chunks()) {
        let nodes = c.nodes.subarray(0, c.count * sNs);
        if (sNs !== dNs) {
          if (!buf || buf.length < c.count * dNs) buf = Buffer.alloc(c.count * dNs);
          for (let k = 0; k < c.count; k++) {
            const a = decodeAddress(nodes, k * sNs, sAs);
            encodeAddress(buf, k * dNs, dAs, a);
            nodes.copy(buf, k * dNs + dAs, k * sNs + sAs, k * sNs + sAs + hs);
          }
          nodes = buf.subarray(0, c.count * dNs);
        }
        for (let k = 0; k < c.count; k++) {
          const a = decodeAddress(nodes, k * dNs, dAs);
          if (a >= d.cfg.blockCount) return `node #${c.first + k} has address ${a}, beyond the destination's ${d.cfg.blockCount} blocks`;
        }
        // a node list hole (nodes all zero: sparse regions) stays a hole
        if (nodes.some((b) => b !== 0)) await out.write(nodes, UFS_HEADER_BYTES + c.first * dNs);
      }
      await out.truncate(UFS_HEADER_BYTES + count * dNs);
      ok = true;
      return null;
    } finally {
      await out.close();
      if (!ok) removeFileQuietly(to);
    }
  } finally {
    await f.close();
  }
}

/** Copy the log and corrupted.txt files (and roll-overs) of SRC's `.ddumbfs` into DST's, keeping DST's special files. */
function copySpecialLogs(s: OpenVolume, d: OpenVolume, log: Logger): void {
  const from = path.join(s.rootDir, SPECIAL_DIRECTORY);
  const to = path.join(d.rootDir, SPECIAL_DIRECTORY);
  for (const n of namesOf(from)) {
    if ((SPECIAL_FILES as readonly string[]).includes(n)) continue;
    try {
      copyPlainFile(path.join(from, n), path.join(to, n));
    } catch (err) {
      log.warn(`${path.join(from, n)}: not copied: ${(err as Error).message}`);
    }
  }
}
