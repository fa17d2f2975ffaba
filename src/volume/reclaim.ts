/**
 * Online reclaim: mark-and-sweep over every UFS file (spec §9).
 *
 * 1. Drain in-flight block writes and enter reclaim mode: `found` := {0, 1}; from now on every address the block
 *    store allocates or references is marked in `found` too, so writes that run during the walk are never freed.
 * 2. Walk ddfsroot (no symlinks, no mount crossing, /.ddumbfs skipped), regular files only, files with an invalid
 *    header skipped (logged): mark each node's address; if its hash is indexed at another address, mark that too.
 * 3. Refuse when `found` is not a subset of the bitmap (fsck needed). Otherwise, synchronously (no write can
 *    interleave), delete every index node whose address is not in `found` and clear its bitmap bit.
 * 4. Report; checkpoint; with reuse_asap restart allocation at block 2.
 * Leaked bitmap bits without an index node are left to fsck (as upstream).
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { UFS_HEADER_SIZE } from '../limits.js';
import { decodeAddress } from '../format/node.js';
import { decodeUfsHeader } from '../format/ufs_header.js';
import { Bitmap } from '../store/bitmap.js';
import type { BlockStore } from '../store/block_store.js';
import { statsLine } from '../store/stats.js';
import type { Logger } from '../util/log.js';

export interface ReclaimReport {
  blockAllocated: number;
  blockInUse: number;
  hashNotFound: number;
  files: number;
  blockReferences: number;
  /** Fraction of non-zero nodes whose address is not the previous one + 1. */
  fragmentation: number;
  nodesInIndex: number;
  nodeDeleted: number;
  readSeconds: number;
  cleanupSeconds: number;
}

/** Test-only hooks: interleave namespace changes with the walk exactly, inject walk errors. */
export interface ReclaimTestHooks {
  /** Runs after the walk reaches each entry (path relative to the root, bytes), before the entry is read. */
  afterWalkStep?: (path: Buffer) => Promise<void>;
  /** An error to report for reading directory `path` (relative bytes, "" for the root), or null to read it. */
  directoryError?: (path: Buffer) => Error | null;
}

async function* walkFiles(root: string, rel = '', hooks: ReclaimTestHooks = {}): AsyncGenerator<string> {
  let entries;
  try {
    const injected = hooks.directoryError?.(Buffer.from(rel));
    if (injected) throw injected;
    entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const r = rel ? path.join(rel, e.name) : e.name;
    if (!rel && e.name === '.ddumbfs') continue;
    await hooks.afterWalkStep?.(Buffer.from(r));
    if (e.isDirectory()) yield* walkFiles(root, r, hooks);
    else if (e.isFile()) yield path.join(root, r);
  }
}

/**
 * Run the online reclaim on an open store whose UFS tree is `rootDir` (spec §9). `beforeWalk` runs once reclaim
 * mode is on and must write to disk every node a UFS file still holds in memory.
 * @throws DdfsError CORRUPT when files reference blocks the bitmap does not hold ("filesystem check required")
 */
export async function reclaim(store: BlockStore, rootDir: string, logger: Logger, beforeWalk?: () => Promise<void>, hooks: ReclaimTestHooks = {}): Promise<ReclaimReport> {
  const cfg = store.cfg;
  const t0 = performance.now();
  await store.drain();
  const found = Bitmap.fresh(cfg.blockCount);
  store.reclaimFound = found;
  try {
    // From here every stored or referenced address is marked; what was stored before must be visible on disk.
    await beforeWalk?.();
    let files = 0;
    let refs = 0;
    let hashNotFound = 0;
    let fragmented = 0;
    for await (const file of walkFiles(rootDir, '', hooks)) {
      let data: Buffer;
      try {
        data = await fsp.readFile(file);
      } catch {
        continue; // unlinked during the walk
      }
      try {
        decodeUfsHeader(data.subarray(0, UFS_HEADER_SIZE), file);
      } catch (err) {
        logger.warn(`reclaim: skip ${file}: ${(err as Error).message}`);
        continue;
      }
      files++;
      let prev = -1;
      for (let off = UFS_HEADER_SIZE; off + cfg.nodeSize <= data.length; off += cfg.nodeSize) {
        const a = decodeAddress(data, off, cfg.addrSize);
        if (a === 0 || a >= cfg.blockCount) continue;
        refs++;
        if (prev >= 0 && a !== prev + 1) fragmented++;
        prev = a;
        if (a === 1) continue;
        found.set(a);
        const hashOffset = off + cfg.addrSize;
        const r = store.index.nodes.lookup(data, hashOffset);
        if (!r.found) hashNotFound++;
        else if (r.address !== a) found.set(r.address);
      }
    }
    const t1 = performance.now();
    // From here to the end of the sweep nothing awaits, so no write interleaves.
    const bitmap = store.index.bitmap;
    const blockAllocated = bitmap.countSet;
    for (let i = 0; i < found.bytes.length; i++) {
      if ((found.bytes[i]! & ~bitmap.bytes[i]!) !== 0) {
        throw new DdfsError('CORRUPT', 'inconsistency between allocated and used blocks, filesystem check required', { byte: i });
      }
    }
    const nodes = store.index.nodes;
    let deleted = 0;
    let i = 0;
    while (i < nodes.nodeCount) {
      const a = nodes.address(i);
      if (a !== 0 && !found.has(a)) {
        nodes.delete(i);
        bitmap.clear(a);
        store.changesSinceCheckpoint++;
        deleted++;
        continue;
      }
      i++;
    }
    const nodesInIndex = nodes.countUsed();
    bitmap.recount();
    if (cfg.reuseAsap) bitmap.cursor = 2;
    const t2 = performance.now();
    store.reclaimFound = null;
    await store.checkpoint();
    return {
      blockAllocated,
      blockInUse: found.countSet,
      hashNotFound,
      files,
      blockReferences: refs,
      fragmentation: refs > 0 ? fragmented / refs : 0,
      nodesInIndex,
      nodeDeleted: deleted,
      readSeconds: (t1 - t0) / 1000,
      cleanupSeconds: (t2 - t1) / 1000,
    };
  } finally {
    store.reclaimFound = null;
  }
}

/** The text of /.ddumbfs/reclaim (spec §9 step 4). */
export function renderReclaimReport(r: ReclaimReport, blockCount: number): string {
  return [
    `== Read used blocks from files in ${r.readSeconds.toFixed(1)}s`,
    statsLine('block_allocated', r.blockAllocated),
    statsLine('block_not_allocated', blockCount - r.blockAllocated),
    statsLine('block_in_use', r.blockInUse),
    statsLine('block_not_in_use', r.blockAllocated - r.blockInUse),
    statsLine('hash_not_found', r.hashNotFound),
    statsLine('files', r.files),
    statsLine('block_references', r.blockReferences),
    `fragmentation ${(r.fragmentation * 100).toFixed(1)}%`,
    `== Index cleanup in ${r.cleanupSeconds.toFixed(1)}s`,
    statsLine('nodes_in_index', r.nodesInIndex),
    statsLine('node_deleted', r.nodeDeleted),
    '',
  ].join('\n');
}
