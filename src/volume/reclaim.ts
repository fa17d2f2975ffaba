/**
 * Online reclaim: mark-and-sweep over every UFS file (spec §9), safe under concurrent namespace changes and writes.
 *
 * Guarantee: a block is freed only if no file referenced it at any moment of the walk. The marks come from:
 * 1. reclaim mode (`store.reclaimFound`): every address the block store allocates or dedups against while reclaim
 *    runs, and (UfsFile) every address a node list drops meanwhile (overwrite, shrinking truncate);
 * 2. open files, from memory, at the start and again at the sweep: their node lists (held-back nodes included) and
 *    the nodes between the block store's answer and the node list (UfsFile.markReferencedBlocks); an open file keeps
 *    only some pages of its node list in memory, so before the sweep every open file whose list is not all in memory
 *    is read from its UFS file too (UfsFile.markNodesOnDisk: an unlinked open file is not walked), until the sync
 *    check that none is left; what changes after a file was read is marked by reclaim mode;
 *    and the extra referenced hashes (`referencedHashes`: a running mirror pass's pins), at the same two moments;
 * 3. the walk of ddfsroot (ufs/walk.ts: byte paths, sorted, no symlink follow, no mount crossing, depth-bounded),
 *    reading each regular file's node list from disk;
 * 4. the namespace changes of the volume (tree.ts observers) during the walk: every rename and link destination is
 *    queued and walked after the main walk, repeatedly until the queue is empty; after RECLAIM_DRAIN_ROUND_COUNT_FREE
 *    rounds, renames and links are held back until the sweep is done, so the drain terminates. Every unlink, rmdir
 *    and rename source is recorded: it explains a later ENOENT/ENOTDIR at or below that path.
 * Why that covers every file: a file reachable at the sweep either kept its path for the whole main walk (the walk
 * read it), or got its path by a rename/link of itself or an ancestor during the walk (that destination was walked
 * after the change); a file only reachable through an open handle is marked from memory; node lists that changed
 * after being read are covered by reclaim mode.
 *
 * Any other walk error (EMFILE, EACCES, an unexplained ENOENT/ENOTDIR, depth bound, another device, a UFS file with
 * an invalid header) aborts the reclaim with nothing freed and one log line.
 * The sweep is all or nothing: the addresses to free are computed and verified first (marks ⊆ bitmap, spec §9
 * step 3), then applied in one synchronous run (no write interleaves), then the checkpoint is saved (spec §5.8).
 * Leaked bitmap bits without an index node are left to fsck (as upstream).
 */
import { DdfsError } from '../errors.js';
import {
  RECLAIM_CHANGE_RECORD_COUNT_MAX, RECLAIM_DRAIN_ROUND_COUNT_FREE, RECLAIM_FILE_READ_ATTEMPT_COUNT_MAX, RECLAIM_READ_NODE_COUNT,
  RECLAIM_OPEN_FILE_ROUND_COUNT_MAX, RECLAIM_PROGRESS_INTERVAL_MS,
} from '../limits.js';
import { decodeAddress } from '../format/node.js';
import type { DeviceFactory } from '../io/device.js';
import { entryKind } from '../io/tree_ops.js';
import { Bitmap } from '../store/bitmap.js';
import type { BlockStore } from '../store/block_store.js';
import { statsLine } from '../store/stats.js';
import type { UfsFile } from '../ufs/ufs_file.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { pathText } from '../util/path_text.js';
import { walkUfsTree } from '../ufs/walk.js';
import type { Logger } from '../util/log.js';
import type { TreeChange, TreeChangeObserver, UfsTree } from './tree.js';

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
  /**
   * Runs after the walk reaches each entry (path relative to the root, bytes), before the entry is read; not while
   * renames and links are held back (a rename in the hook would wait for the reclaim that waits for the hook).
   */
  afterWalkStep?: (path: Buffer) => Promise<void>;
  /** An error to report for reading directory `path` (relative bytes, empty for the root), or null to read it. */
  directoryError?: (path: Buffer) => Error | null;
  /** Replaces RECLAIM_PROGRESS_INTERVAL_MS (0: a progress line after every file). */
  progressIntervalMs?: number;
}

/** What reclaim needs of the volume. */
export interface ReclaimContext {
  store: BlockStore;
  /** Absolute path of ddfsroot. */
  rootDir: string;
  tree: UfsTree;
  devices: DeviceFactory;
  logger: Logger;
  /** The UfsFiles open now. */
  openFiles: () => Iterable<UfsFile>;
  /**
   * Hashes that are references though no UFS file in the tree names them yet (a mirror pass's pins: spec §4.8,
   * mirroring §5 scenario 8); read at the start and at the sweep, like the open files.
   */
  referencedHashes?: () => Iterable<Buffer>;
  hooks?: ReclaimTestHooks;
}

const SLASH = 0x2f;

/** Namespace changes seen during one reclaim. Keys are latin1 strings of the byte paths (one char per byte). */
class ChangeRecord implements TreeChangeObserver {
  /** Paths that stopped naming what they named (unlink, rmdir, rename source). */
  readonly removed = new Set<string>();
  /** Rename and link destinations not walked yet. */
  queue = new Map<string, Buffer>();
  private count = 0;
  overflowed = false;

  afterChange(change: TreeChange): void {
    if (change.op === 'unlink' || change.op === 'rmdir' || change.op === 'rename') this.add(this.removed, change.path);
    if ((change.op === 'rename' || change.op === 'link') && change.dest) this.queue.set(change.dest.toString('latin1'), change.dest);
  }

  private add(set: Set<string>, p: Buffer): void {
    if (++this.count > RECLAIM_CHANGE_RECORD_COUNT_MAX) this.overflowed = true;
    else set.add(p.toString('latin1'));
  }

  /** Whether `p` or one of its ancestors was removed or renamed away during the walk. */
  explains(p: Buffer): boolean {
    let end = p.length;
    for (;;) {
      if (this.removed.has(p.toString('latin1', 0, end))) return true;
      const i = p.lastIndexOf(SLASH, end - 1);
      if (i <= 0) return false;
      end = i;
    }
  }
}

/** Raised inside the walk to abort the reclaim. */
class WalkAbort extends DdfsError {}

/**
 * Whether `err` says the entry is gone or is no longer what the walk saw: ENOENT, ENOTDIR, EISDIR (a file listed
 * then replaced by a directory), or the walker's "start is not a directory" (a queued destination replaced by a
 * file). Such an error is skipped only when a recorded change explains it.
 */
function isVanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return true;
  return err instanceof DdfsError && err.code === 'INVALID' && err.data.path !== undefined && err.data.depthMax === undefined;
}

class ReclaimRun {
  readonly found: Bitmap;
  readonly changes = new ChangeRecord();
  files = 0;
  refs = 0;
  private readonly started = performance.now();
  private lastProgress = performance.now();

  /** An INF line "reclaim: read N files, M block references, R files/s" every RECLAIM_PROGRESS_INTERVAL_MS. */
  private logProgress(): void {
    const now = performance.now();
    if (now - this.lastProgress < (this.ctx.hooks?.progressIntervalMs ?? RECLAIM_PROGRESS_INTERVAL_MS)) return;
    this.lastProgress = now;
    const seconds = Math.max(now - this.started, 1) / 1000;
    this.ctx.logger.info(`reclaim: read ${this.files} files, ${this.refs} block references, ${Math.round(this.files / seconds)} files/s`);
  }
  hashNotFound = 0;
  fragmented = 0;
  /** True while renames and links are held back: the test hook must not run then. */
  holding = false;
  private readonly rootBytes: Buffer;

  constructor(private readonly ctx: ReclaimContext) {
    this.found = Bitmap.fresh(ctx.store.cfg.blockCount);
    this.rootBytes = Buffer.from(`${ctx.rootDir}/`);
  }

  private abs(p: Buffer): Buffer {
    return Buffer.concat([this.rootBytes, p]);
  }

  /** The verdict on a walk or read error at `p`: skip when a recorded change explains it, else abort. */
  onError(p: Buffer, err: Error): 'skip' {
    if (isVanished(err) && this.changes.explains(p)) return 'skip';
    if (err instanceof WalkAbort) throw err;
    throw new WalkAbort('IO', `${pathText(p) || '.'}: ${err.message}`, { path: p, cause: (err as NodeJS.ErrnoException).code }, err);
  }

  /** Mark every open file's in-memory references and every extra referenced hash (synchronous). */
  markOpenFiles(): void {
    for (const f of this.ctx.openFiles()) f.markReferencedBlocks(this.found);
    const nodes = this.ctx.store.index.nodes;
    for (const h of this.ctx.referencedHashes?.() ?? []) {
      const r = nodes.lookup(h, 0);
      if (r.found) this.found.set(r.address);
    }
  }

  /** Open files whose node lists were read from their UFS files (markOpenFilesOnDisk). */
  private readonly openFilesRead = new WeakSet<UfsFile>();

  /** Whether markOpenFiles alone now sees every block of every open file (synchronous: the sweep's last check). */
  openFilesCovered(): boolean {
    for (const f of this.ctx.openFiles()) if (!f.referencesInMemory && !this.openFilesRead.has(f)) return false;
    return true;
  }

  private openFileRounds = 0;

  /**
   * One round: read the node lists of the open files not covered (openFilesCovered) from their UFS files. The
   * caller repeats it until openFilesCovered, checked synchronously; past RECLAIM_OPEN_FILE_ROUND_COUNT_MAX rounds
   * it aborts.
   */
  async markOpenFilesOnDisk(): Promise<void> {
    if (++this.openFileRounds > RECLAIM_OPEN_FILE_ROUND_COUNT_MAX) {
      throw new WalkAbort('BUSY', `files kept being opened while reclaim read the open ones (${RECLAIM_OPEN_FILE_ROUND_COUNT_MAX} rounds)`);
    }
    for (const f of [...this.ctx.openFiles()]) {
      if (f.referencesInMemory || this.openFilesRead.has(f)) continue;
      this.openFilesRead.add(f);
      try {
        await f.markNodesOnDisk(this.found);
      } catch (err) {
        throw new WalkAbort('IO', `${pathText(f.ufsPath)} (open): ${(err as Error).message}`, { path: f.ufsPath }, err);
      }
    }
  }

  /** Walk the subtree below `start` (the whole tree when empty), marking every regular file. */
  async walk(start: Buffer): Promise<void> {
    const hooks = this.ctx.hooks;
    const injected = hooks?.directoryError?.(start);
    if (injected) this.onError(start, injected);
    const options = { onError: (p: Buffer, err: Error) => this.onError(p, err) };
    for await (const entry of walkUfsTree(this.ctx.rootDir, options, start.length ? start : undefined)) {
      if (hooks && !this.holding) await hooks.afterWalkStep?.(entry.path);
      if (entry.kind === 'file') await this.markFile(entry.path);
      else if (entry.kind === 'directory') {
        const err = hooks?.directoryError?.(entry.path);
        if (err) this.onError(entry.path, err);
      }
    }
  }

  /** Walk one queued destination: a file is read, a directory walked; gone again is fine if a change explains it. */
  async walkQueued(p: Buffer): Promise<void> {
    let kind: ReturnType<typeof entryKind>;
    try {
      kind = entryKind(this.abs(p));
    } catch (err) {
      this.onError(p, err as Error);
      return;
    }
    if (kind === 'file') await this.markFile(p);
    else if (kind === 'directory') await this.walk(p);
  }

  /**
   * Read the node list of the UFS file at `p` (relative bytes) and mark its addresses (spec §9 step 2). A file that
   * shrinks while it is read (a concurrent truncate: the nodes it drops are marked by UfsFile in reclaim mode) is
   * read again, at most RECLAIM_FILE_READ_ATTEMPT_COUNT_MAX times.
   */
  async markFile(p: Buffer): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.markFileOnce(p);
        return;
      } catch (err) {
        if (err instanceof WalkAbort) throw err;
        const shrank = err instanceof DdfsError && err.code === 'IO' && attempt < RECLAIM_FILE_READ_ATTEMPT_COUNT_MAX;
        if (!shrank) this.onError(p, err as Error);
        if (!shrank) return;
      }
    }
  }

  private async markFileOnce(p: Buffer): Promise<void> {
    const { store, devices } = this.ctx;
    const cfg = store.cfg;
    let file: UfsNodeFile;
    try {
      file = await UfsNodeFile.open(devices, this.abs(p), cfg.nodeSize, { strict: true });
    } catch (err) {
      if (err instanceof DdfsError && err.code === 'BAD_HEADER') {
        // its nodes may still name live blocks: fsck decides, reclaim frees nothing meanwhile
        throw new WalkAbort('CORRUPT', `${pathText(p)}: ${err.message}; run fsckddumbfs`, { path: p }, err);
      }
      this.onError(p, err as Error);
      return;
    }
    try {
      this.files++;
      this.logProgress();
      let prev = -1;
      for await (const { count, nodes } of file.chunks(RECLAIM_READ_NODE_COUNT)) {
        for (let off = 0; off < count * cfg.nodeSize; off += cfg.nodeSize) {
          const a = decodeAddress(nodes, off, cfg.addrSize);
          if (a === 0 || a >= cfg.blockCount) continue;
          this.refs++;
          if (prev >= 0 && a !== prev + 1) this.fragmented++;
          prev = a;
          if (a === 1) continue;
          this.found.set(a);
          const r = store.index.nodes.lookup(nodes, off + cfg.addrSize);
          if (!r.found) this.hashNotFound++;
          else if (r.address !== a) this.found.set(r.address);
        }
      }
    } catch (err) {
      this.files--;
      throw err;
    } finally {
      await file.close().catch(() => undefined);
    }
  }
}

/**
 * Run the online reclaim on an open store (spec §9). Concurrent writes and namespace changes through the volume go
 * on meanwhile, except renames and links during the final drain.
 * @throws DdfsError IO (walk error) or CORRUPT (invalid UFS header; marks not a subset of the bitmap: "filesystem
 *   check required"), with nothing freed; the message says so and is logged once
 */
export async function reclaim(ctx: ReclaimContext): Promise<ReclaimReport> {
  const { store, tree, logger } = ctx;
  const cfg = store.cfg;
  const t0 = performance.now();
  await store.drain();
  const run = new ReclaimRun(ctx);
  // from here (no await in between) every stored, referenced or dropped address is marked
  store.reclaimFound = run.found;
  run.markOpenFiles();
  tree.addObserver(run.changes);
  let release: (() => void) | null = null;
  try {
    await run.walk(Buffer.alloc(0));
    for (let round = 0; run.changes.queue.size > 0; round++) {
      if (round >= RECLAIM_DRAIN_ROUND_COUNT_FREE && !release) {
        release = tree.holdPathChanges();
        run.holding = true;
      }
      const batch = [...run.changes.queue.values()].sort(Buffer.compare);
      run.changes.queue = new Map();
      for (const p of batch) await run.walkQueued(p);
    }
    if (run.changes.overflowed) {
      throw new WalkAbort('IO', `more than ${RECLAIM_CHANGE_RECORD_COUNT_MAX} namespace changes during the walk`);
    }
    while (!run.openFilesCovered()) await run.markOpenFilesOnDisk();
    const t1 = performance.now();
    // From here to the end of the sweep nothing awaits, so no write or namespace change interleaves (and no file
    // opens: markOpenFilesOnDisk ended on the check that every open file is covered by the marks below).
    run.markOpenFiles();
    const found = run.found;
    const bitmap = store.index.bitmap;
    const blockAllocated = bitmap.countSet;
    // compute and verify ...
    for (let i = 0; i < found.bytes.length; i++) {
      if ((found.bytes[i]! & ~bitmap.bytes[i]!) !== 0) {
        throw new WalkAbort('CORRUPT', 'inconsistency between allocated and used blocks, filesystem check required', { byte: i });
      }
    }
    const nodes = store.index.nodes;
    let toDelete = 0;
    for (let i = 0; i < nodes.nodeCount; i++) {
      const a = nodes.address(i);
      if (a !== 0 && !found.has(a)) toDelete++;
    }
    // ... then apply (deleting shifts later nodes down: the slot is examined again)
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
    if (deleted !== toDelete) throw new Error(`reclaim sweep deleted ${deleted} nodes, computed ${toDelete}`);
    const nodesInIndex = nodes.countUsed();
    bitmap.recount();
    if (cfg.reuseAsap) bitmap.cursor = 2;
    const t2 = performance.now();
    store.reclaimFound = null;
    tree.removeObserver(run.changes);
    release?.();
    release = null;
    try {
      await store.checkpoint();
    } catch (err) {
      // the disk still holds the index and checkpoint of before the sweep (a consistent state); the next checkpoint
      // (background tick, close) writes the swept one
      const e = new DdfsError('IO', `reclaim freed ${deleted} blocks in memory, but its checkpoint failed: ${(err as Error).message}`, {}, err);
      logger.error(e.message);
      throw e;
    }
    return {
      blockAllocated,
      blockInUse: found.countSet,
      hashNotFound: run.hashNotFound,
      files: run.files,
      blockReferences: run.refs,
      fragmentation: run.refs > 0 ? run.fragmented / run.refs : 0,
      nodesInIndex,
      nodeDeleted: deleted,
      readSeconds: (t1 - t0) / 1000,
      cleanupSeconds: (t2 - t1) / 1000,
    };
  } catch (err) {
    if (err instanceof WalkAbort) {
      const e = new DdfsError(err.code, `reclaim aborted, nothing freed: ${err.message}`, err.data, err.cause);
      logger.error(e.message);
      throw e;
    }
    throw err;
  } finally {
    store.reclaimFound = null;
    tree.removeObserver(run.changes);
    release?.();
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

/** The text of /.ddumbfs/reclaim when the reclaim failed: the reason, and that nothing was freed. */
export function renderReclaimFailure(err: Error): string {
  return `== Reclaim failed: ${err.message}\n`;
}
