/**
 * A ddumbfs volume: its parent directory (spec §2), cfg (§3), block store (§4–§6) and UFS tree (§7).
 * The facade the daemon, cpddumbfs and fsck build on.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { parseConfig, type DdfsConfig } from '../format/config.js';
import type { DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { BlockStore } from '../store/block_store.js';
import { statsLine } from '../store/stats.js';
import { CHECKPOINT_TICK_CHANGE_COUNT, NEW_ENTRY_COUNT_MAX, RECLAIM_PERCENT_DEFAULT } from '../limits.js';
import type { VolumeLock } from './lock.js';
import { reclaim, renderReclaimFailure, renderReclaimReport, type ReclaimReport, type ReclaimTestHooks } from './reclaim.js';
import { UfsFile, readUfsSize, type UfsOpenOptions } from '../ufs/ufs_file.js';
import { UfsTree } from './tree.js';
import { dirnameBytes } from '../util/path_text.js';
import type { Logger } from '../util/log.js';
import { logger as defaultLogger } from '../util/log.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';

import { CORRUPTED_LIST_FILE, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { refuseSpecialSymlinks } from './special_paths.js';
/** The layout names live in format/layout.ts (so fsck and ufs need not import the volume); re-exported here. */
export { AUTOFSCK_MARKER, REBUILDFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';

/**
 * Extra references reclaim must keep (volume must not import mirror: a running mirror pass registers its pinned
 * hashes through this, issue 7 item 0, mirroring spec §4.8). `hashes()` is called synchronously, at the start of a
 * reclaim and at its sweep; each hash held in the index keeps its block.
 */
export interface ReferenceProvider {
  hashes(): Iterable<Buffer>;
}

export interface VolumeOpenOptions {
  readOnly?: boolean;
  logger?: Logger;
  devices?: DeviceFactory;
  /** Writes fail with NO_SPACE below this many free blocks (the daemon uses 1000, spec §8.6). */
  freeBlockReserve?: number;
  /** Skip the block-file magic check (fsck -f). */
  skipBlockMagic?: boolean;
  /** The volume lock the opener took (volume/lock.ts): released when the volume closes. */
  lock?: VolumeLock;
}

/** Version of the `/.ddumbfs/stats.json` document (`Volume.statsJson`). */
export const STATS_JSON_VERSION = 1;

/** Daemon facts shown in /.ddumbfs/stats (spec §8.9). */
export interface MountFacts {
  directIo: boolean;
  lockIndex: boolean;
  writerPool: number;
  commandArgs: string;
  extCommandArgs: string;
}

/**
 * Find the parent directory of a path (spec §2): walk upward from `p` to the first directory holding a regular
 * file `ddfs.cfg` and a directory `ddfsroot`.
 * @returns the absolute parent, or null
 */
export function findParent(p: string): string | null {
  let dir = path.resolve(p);
  for (;;) {
    try {
      if (fs.statSync(path.join(dir, 'ddfs.cfg')).isFile() && fs.statSync(path.join(dir, ROOT_DIRECTORY)).isDirectory()) return dir;
    } catch {
      // not here
    }
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Unescape a /proc/mounts field (\040 for space etc.). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Whether a ddumbfs mount of `parentDir` is active: an entry of /proc/self/mounts whose fsname resolves to the
 * parent (spec §2, without upstream's trailing-slash quirk).
 * @returns the mount point, or null
 */
export function mountPointOf(parentDir: string): string | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return null;
  }
  const want = path.resolve(parentDir);
  for (const line of text.split('\n')) {
    const [fsname, mnt, type] = line.split(' ');
    if (!fsname || !mnt || !type || !type.startsWith('fuse')) continue;
    if (path.resolve(unescapeMountField(fsname)) === want) return unescapeMountField(mnt);
  }
  return null;
}

/**
 * Read and parse `parentDir/ddfs.cfg`.
 * @throws DdfsError NOT_FOUND when missing, BAD_CONFIG when malformed (message names the file)
 */
export async function readVolumeConfig(parentDir: string): Promise<DdfsConfig> {
  const cfgPath = path.join(parentDir, 'ddfs.cfg');
  let text: string;
  try {
    text = await fsp.readFile(cfgPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DdfsError('NOT_FOUND', `${cfgPath}: not found: ${parentDir} is not a ddumbfs volume`, { path: cfgPath }, err);
    }
    throw new DdfsError('IO', `${cfgPath}: ${(err as Error).message}`, { path: cfgPath }, err);
  }
  return parseConfig(text, cfgPath);
}

/** The modification time of the checkpoint file at `p` (never following a symlink), or null when there is none. */
function checkpointFileTime(p: string): Date | null {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  return st?.isFile() ? st.mtime : null;
}

/** Call `mark` with the address of every hash of `hashes` the index holds (the zero hash has none). */
function markHashes(store: BlockStore, hashes: Iterable<Buffer>, mark: (address: number) => void): void {
  for (const h of hashes) {
    const r = store.index.nodes.lookup(h, 0);
    if (r.found) mark(r.address);
  }
}

export class Volume {
  readonly rootDir: string;
  mountFacts: MountFacts | null = null;
  /** Set by overwrites, truncates and unlinks: reclaim may find free blocks (spec §8.6 step 1). */
  mayFindFreeBlocks = false;
  private readonly devices: DeviceFactory;
  private checkpointRunning: Promise<void> | null = null;
  /** UfsFiles opened through this volume and not closed yet. */
  private readonly openFiles = new Set<UfsFile>();
  /** Opened read-only: block file, index and UFS files are opened O_RDONLY, reclaim refuses. */
  readonly readOnly: boolean;
  private readonly lock: VolumeLock | null;

  /** The UFS tree: every namespace change goes through it (tree.ts). */
  readonly tree: UfsTree;

  /**
   * Tree changes plus block-store calls so far (monotonic, never reset): a mirror pass compares it at its start and
   * at its COMMIT to tell whether anything was written meanwhile (claim exact or atleast).
   */
  private treeChangeCount = 0;
  get changeCount(): number {
    return this.treeChangeCount + this.store.storeCallCount;
  }

  /** Registered extra references (ReferenceProvider). */
  private readonly referenceProviders = new Set<ReferenceProvider>();

  /**
   * Register `provider`: reclaim keeps every block whose hash it gives, until the returned function unregisters it.
   * Unregistering while a reclaim runs marks the provider's hashes in that reclaim first, so a reference it covered
   * (a file renamed into the tree behind the walk) is never freed by that sweep.
   */
  addReferenceProvider(provider: ReferenceProvider): () => void {
    this.referenceProviders.add(provider);
    return () => {
      if (!this.referenceProviders.delete(provider)) return;
      const found = this.store.reclaimFound;
      if (found !== null) markHashes(this.store, provider.hashes(), (a) => found.set(a));
    };
  }

  private constructor(
    readonly parentDir: string,
    readonly config: DdfsConfig,
    readonly store: BlockStore,
    readonly logger: Logger,
    options: VolumeOpenOptions,
  ) {
    this.rootDir = path.join(parentDir, ROOT_DIRECTORY);
    this.devices = options.devices ?? fileDevices;
    this.readOnly = options.readOnly ?? false;
    this.lock = options.lock ?? null;
    this.tree = new UfsTree(Buffer.from(`${this.rootDir}/`));
    this.tree.addObserver({
      afterChange: (change) => {
        // an unlink or a rename over an existing file may drop the last reference to blocks (spec §8.6 step 1)
        if (change.op === 'unlink' || change.op === 'rename') this.mayFindFreeBlocks = true;
        this.treeChangeCount++;
        this.trackNewEntry(change.op, this.tree.resolve(change.path), change.dest && this.tree.resolve(change.dest));
      },
    });
    store.ufsRootDir = this.rootDir;
  }

  /**
   * Syscall paths (latin1 keys of their bytes) of files whose directory entry this session made (tree create or
   * mknod, an open with `create`) and whose directory has not been synced since: the first fsync of such a file
   * syncs its directory (POSIX: fsync of a file does not commit its name), later ones do not. Bounded by
   * NEW_ENTRY_COUNT_MAX; past it `newEntriesOverflowed` makes every fsync sync the directory.
   */
  private readonly newEntries = new Set<string>();
  private newEntriesOverflowed = false;

  private static entryKey(p: string | Buffer): string {
    return (typeof p === 'string' ? Buffer.from(p, 'utf8') : p).toString('latin1');
  }

  private noteNewEntry(p: string | Buffer): void {
    if (this.newEntries.size >= NEW_ENTRY_COUNT_MAX) {
      this.newEntriesOverflowed = true;
      return;
    }
    this.newEntries.add(Volume.entryKey(p));
  }

  /** Keep the record of new entries in step with a tree change (the name follows a rename, goes with an unlink). */
  private trackNewEntry(op: string, p: Buffer, dest: Buffer | undefined): void {
    if (op === 'create' || op === 'mknod') {
      this.noteNewEntry(p);
    } else if (op === 'unlink') {
      this.newEntries.delete(Volume.entryKey(p));
    } else if (op === 'rename' && dest && this.newEntries.delete(Volume.entryKey(p))) {
      this.noteNewEntry(dest);
    }
  }

  /**
   * Sync the directory of the file at `ufsPath` (a syscall path) when this session made its entry and has not synced
   * that directory since (see `newEntries`); otherwise nothing. Called by every fsync of a file opened here, and by
   * the daemon with the file's current path.
   * @throws Node system errors of the directory sync (the entry stays recorded then)
   */
  async syncNewEntry(ufsPath: string | Buffer): Promise<void> {
    const key = Volume.entryKey(ufsPath);
    if (!this.newEntries.has(key) && !this.newEntriesOverflowed) return;
    await this.devices.syncDirectory(dirnameBytes(ufsPath));
    this.newEntries.delete(key);
  }

  /** syncNewEntry for tree path `p` (bytes relative to ddfsroot, tree.ts). */
  syncNewTreeEntry(p: Buffer): Promise<void> {
    return this.syncNewEntry(this.tree.resolve(p));
  }

  /**
   * fsync(2) of the directory at tree path `p` (FUSE fsyncdir): commits the creations, renames and removals of its
   * entries (a mkdir in it, an unlink...), so the record of new entries in it is cleared.
   * @throws Node system errors (ENOENT, ENOTDIR...)
   */
  async syncTreeDirectory(p: Buffer): Promise<void> {
    const dir = this.tree.resolve(p);
    await this.devices.syncDirectory(dir);
    const dirKey = Volume.entryKey(dir);
    for (const key of this.newEntries) {
      if (Volume.entryKey(dirnameBytes(Buffer.from(key, 'latin1'))) === dirKey) this.newEntries.delete(key);
    }
  }

  /**
   * Open the volume whose parent is `parentDir` (exactly; use findParent first for a path inside it).
   * @throws DdfsError NOT_FOUND (no ddfs.cfg, no ddfsroot, missing block/index file), BAD_CONFIG, BAD_MAGIC, TOO_SHORT,
   *   SYMLINK (a marker, checkpoint or special path is a symlink: special_paths.ts)
   */
  static async open(parentDir: string, options: VolumeOpenOptions = {}): Promise<Volume> {
    const parent = path.resolve(parentDir);
    const cfg = await readVolumeConfig(parent);
    refuseSpecialSymlinks(parent);
    const root = path.join(parent, ROOT_DIRECTORY);
    let st: fs.Stats;
    try {
      st = await fsp.stat(root);
    } catch (err) {
      throw new DdfsError('NOT_FOUND', `${root}: root directory not found`, { path: root }, err);
    }
    if (!st.isDirectory()) throw new DdfsError('NOT_FOUND', `${root}: not a directory`, { path: root });
    const store = await BlockStore.open(parent, cfg, {
      readOnly: options.readOnly,
      devices: options.devices,
      freeBlockReserve: options.freeBlockReserve,
      skipBlockMagic: options.skipBlockMagic,
    });
    return new Volume(parent, cfg, store, options.logger ?? defaultLogger, options);
  }

  /** Absolute UFS path of a mount-relative path ("/a/b" → parent/ddfsroot/a/b). */
  ufsPath(mountPath: string): string {
    return path.join(this.rootDir, mountPath);
  }

  /**
   * Open (or create) a regular file's UFS file; `ufsPath` is absolute or relative to the process cwd. On a volume
   * opened read-only the UFS file is opened O_RDONLY (and a missing one is not created).
   * @throws DdfsError BAD_HEADER; Node errors (ENOENT, EACCES…) unchanged
   */
  async openFile(ufsPath: string | Buffer, options: Omit<UfsOpenOptions, 'devices'> = {}): Promise<UfsFile> {
    const f = await UfsFile.open(this.store, ufsPath, this.readOnly
      ? { ...options, readOnly: true, create: false, truncate: false, devices: this.devices }
      : { ...options, devices: this.devices });
    f.onBlocksReleased = () => {
      this.mayFindFreeBlocks = true;
    };
    f.onBlocksLost = (blocks, handlePath, cause) => this.recordLostBlocks(f, blocks, handlePath, cause);
    // an open with `create` may have made the file; either way the volume's record decides what fsync syncs
    if (options.create && !this.readOnly) this.noteNewEntry(ufsPath);
    f.syncEntry = () => this.syncNewEntry(f.ufsPath);
    this.openFiles.add(f);
    f.onClosed = () => this.openFiles.delete(f);
    return f;
  }

  /**
   * Open (or create, with `create`) the regular file at tree path `p` (bytes relative to ddfsroot, tree.ts): its
   * UFS file, through the dedup layer. The caller shares one UfsFile per inode (the daemon's OpenFiles).
   * @throws DdfsError BAD_HEADER; Node errors (ENOENT, EACCES…) unchanged
   */
  openTreeFile(p: Buffer, options: Omit<UfsOpenOptions, 'devices'> = {}): Promise<UfsFile> {
    return this.openFile(this.tree.resolve(p), options);
  }

  /**
   * Logical size of the closed regular file at tree path `p` (bytes relative to ddfsroot) from its UFS header, the
   * reader's cheap peek (spec §7, §8.3); read with O_NOATIME, so a stat does not move the file's atime.
   * @throws DdfsError BAD_HEADER; Node errors unchanged
   */
  readTreeFileSize(p: Buffer): Promise<number> {
    return readUfsSize(this.tree.resolve(p), this.devices);
  }

  /** Files already listed in corrupted.txt for blocks lost while open. */
  private readonly filesWithLostBlocks = new WeakSet<UfsFile>();

  /**
   * Acknowledged blocks of an open file could not be stored and are now lost nodes (address 1): log it and list the
   * file in corrupted.txt as fsck does (` C   <absolute UFS path>`, spec §10.6), once per open file, in the background
   * (close waits for it). Never throws: the volume may be full, and the loss is in the file itself either way (reads
   * fail, fsck reports it).
   */
  private recordLostBlocks(file: UfsFile, blocks: number[], handlePath: string | Buffer, cause: unknown): void {
    if (this.filesWithLostBlocks.has(file)) return;
    this.filesWithLostBlocks.add(file);
    // the current name of the open file (its /proc/self/fd link), else the path it was opened by, made absolute
    const opened = pathBytes(file.ufsPath);
    let name = opened[0] === 0x2f ? opened : joinPathBytes(Buffer.from(process.cwd()), opened);
    if (typeof handlePath === 'string' && handlePath.startsWith('/proc/self/fd/')) {
      try {
        name = fs.readlinkSync(handlePath, { encoding: 'buffer' });
      } catch {
        // keep the path it was opened by
      }
    }
    const list = `${SPECIAL_DIRECTORY}/${CORRUPTED_LIST_FILE}`;
    this.logger.error(`${pathText(name)}: ${blocks.length} acknowledged blocks from block ${blocks[0]} could not be stored (${(cause as Error)?.message ?? String(cause)}): marked lost, reads of them fail; listed in ${list}`);
    const line = Buffer.concat([Buffer.from(' C   '), name, Buffer.from('\n')]);
    // appends one after the other (each reads the size it writes at); never a symlink followed out of the volume
    this.corruptedListing = this.corruptedListing.then(async () => {
      const dev = await this.devices.open(path.join(this.rootDir, SPECIAL_DIRECTORY, CORRUPTED_LIST_FILE), { create: true, noFollow: true, mode: 0o600 });
      try {
        await dev.write(line, await dev.size());
      } finally {
        await dev.close();
      }
    }).catch((err: unknown) => {
      this.logger.error(`${list}: cannot list ${pathText(name)}: ${(err as Error).message}`);
    });
  }

  /** The appends to corrupted.txt, in order; awaited by close. */
  private corruptedListing: Promise<void> = Promise.resolve();

  /** Logical size from the header of a closed UFS file (0-byte file ⇒ 0). @throws DdfsError BAD_HEADER */
  readUfsSize(ufsPath: string | Buffer): Promise<number> {
    return readUfsSize(ufsPath, this.devices);
  }

  /**
   * Block counts for statfs (spec §8.3). Free blocks are never more than the filesystems under the volume can take
   * (BlockStore.backingBlockCountFree) plus the free blocks inside the block file, which are rewritten in place.
   */
  statfs(): { blockSize: number; blockCount: number; blockCountFree: number } {
    return { blockSize: this.config.blockSize, blockCount: this.config.blockCount, blockCountFree: this.store.blockCountFreeBacked() };
  }

  /** Content of /.ddumbfs/stats, or stats0 when `reset` (which then zeroes the counters) (spec §8.9). */
  statsText(reset: boolean): string {
    const c = this.store.counters;
    const f = this.statsFacts();
    let s = c.renderLines();
    s += `${statsLine('block_allocated', f.blockAllocated)}\n`;
    s += `${statsLine('block_free', f.blockFree)}\n`;
    s += `${statsLine('overflow', f.overflow.toFixed(2))}\n`;
    s += `${statsLine('direct_io', f.directIo ? 1 : 0)}\n`;
    s += `${statsLine('align', f.align ? 1 : 0)}\n`;
    s += `${statsLine('lock_index', f.lockIndex ? 1 : 0)}\n`;
    s += `${statsLine('hash', f.hash)}\n`;
    s += `${statsLine('writer_pool', f.writerPool)}\n`;
    s += `${statsLine('reclaim', f.reclaim)}\n`;
    s += `${statsLine('next_reclaim', f.nextReclaim)}\n`;
    s += `${statsLine('command_args', f.commandArgs)}\n`;
    s += `${statsLine('ext_command_args', f.extCommandArgs)}\n`;
    if (reset) c.reset();
    return s;
  }

  /**
   * The content of `/.ddumbfs/stats.json`: the facts of `statsText` as one JSON object (numbers as numbers, sizes
   * in bytes, flags as booleans, every counter even when zero), plus the block size, the block count and the time of
   * the last checkpoint (this daemon's, else the checkpoint file's). Schema: ddumbfs(8), THE .ddumbfs DIRECTORY; `STATS_JSON_VERSION` goes up when a field
   * changes meaning or goes away.
   */
  statsJson(): string {
    const f = this.statsFacts();
    const bs = this.config.blockSize;
    const doc = {
      version: STATS_JSON_VERSION,
      time: new Date().toISOString(),
      counters: this.store.counters.snapshot(),
      volume: {
        hash: f.hash,
        block_size: bs,
        block_count: this.config.blockCount,
        block_allocated: f.blockAllocated,
        block_free: f.blockFree,
        bytes_allocated: f.blockAllocated * bs,
        bytes_free: f.blockFree * bs,
        overflow: Number(f.overflow.toFixed(2)),
        last_checkpoint: (this.store.lastCheckpointTime ?? checkpointFileTime(this.store.checkpointPath))?.toISOString() ?? null,
      },
      mount: {
        direct_io: f.directIo,
        align: f.align,
        lock_index: f.lockIndex,
        writer_pool: f.writerPool,
        reclaim: f.reclaim,
        next_reclaim: f.nextReclaim,
        command_args: f.commandArgs,
        ext_command_args: f.extCommandArgs,
      },
    };
    return `${JSON.stringify(doc, null, 2)}\n`;
  }

  /** The volume lines of the stats file (spec §8.9), shared by `statsText` and `statsJson`. */
  private statsFacts(): {
    blockAllocated: number; blockFree: number; overflow: number; directIo: boolean; align: boolean; lockIndex: boolean;
    hash: string; writerPool: number; reclaim: number; nextReclaim: number; commandArgs: string; extCommandArgs: string;
  } {
    const m = this.mountFacts;
    return {
      blockAllocated: this.store.blockCountUsed,
      blockFree: this.store.blockCountFree,
      overflow: this.config.nodeOverflow,
      directIo: m?.directIo ?? false,
      // 1.1 aligns its block-file buffers exactly when it opens the block file O_DIRECT
      align: m?.directIo ?? false,
      lockIndex: m?.lockIndex ?? false,
      hash: this.config.hashName,
      writerPool: m?.writerPool ?? 0,
      reclaim: this.reclaimPercent,
      nextReclaim: this.nextReclaimPercent,
      commandArgs: m?.commandArgs ?? '',
      extCommandArgs: m?.extCommandArgs ?? '',
    };
  }

  /**
   * Run the online reclaim and return its report (spec §9); never two at once. A failed reclaim (nothing freed)
   * gives the reason instead of the report.
   */
  async reclaimText(testHooks: ReclaimTestHooks = {}): Promise<string> {
    try {
      return renderReclaimReport(await this.runReclaim(testHooks), this.config.blockCount);
    } catch (err) {
      if (err instanceof DdfsError) return renderReclaimFailure(err);
      throw err;
    }
  }

  /**
   * Run the online reclaim (spec §9) and update the auto-reclaim threshold (halving rule).
   * @param testHooks test-only: interleave changes with the walk, inject walk errors
   * @throws DdfsError (nothing freed; logged once): IO on a walk error, CORRUPT when files reference unallocated
   *   blocks or a UFS header is invalid (fsck needed), READ_ONLY on a volume opened read-only
   */
  async runReclaim(testHooks: ReclaimTestHooks = {}): Promise<ReclaimReport> {
    if (this.readOnly) throw new DdfsError('READ_ONLY', `${this.parentDir}: no reclaim on a volume opened read-only`, { path: this.parentDir });
    if (this.reclaimRunning) return this.reclaimRunning;
    this.reclaimRunning = (async () => {
      const report = await reclaim({
        store: this.store,
        rootDir: this.rootDir,
        tree: this.tree,
        devices: this.devices,
        logger: this.logger,
        openFiles: () => this.openFiles,
        referencedHashes: () => [...this.referenceProviders].flatMap((p) => [...p.hashes()]),
        hooks: testHooks,
      });
      this.mayFindFreeBlocks = false;
      this.updateNextReclaim();
      this.logger.info(`reclaim: ${report.nodeDeleted} blocks freed, ${this.store.blockCountUsed} in use`);
      return report;
    })().finally(() => {
      this.reclaimRunning = null;
    });
    return this.reclaimRunning;
  }

  /** Auto-reclaim threshold in % of block_count (mount option reclaim=N, spec §9). */
  reclaimPercent = RECLAIM_PERCENT_DEFAULT;
  /** The threshold in force: raised half way to 100 while usage stays above it (spec §9). */
  nextReclaimPercent = RECLAIM_PERCENT_DEFAULT;
  private reclaimRunning: Promise<ReclaimReport> | null = null;

  private overThreshold(percent: number): boolean {
    return this.store.blockCountUsed >= Math.floor(this.config.blockCount / 100) * percent;
  }

  private updateNextReclaim(): void {
    if (this.overThreshold(this.nextReclaimPercent)) {
      this.nextReclaimPercent = Math.min(100, Math.floor((this.nextReclaimPercent + 100) / 2) + (this.nextReclaimPercent === 99 ? 1 : 0));
    } else {
      this.nextReclaimPercent = this.reclaimPercent;
      while (this.nextReclaimPercent < 100 && this.overThreshold(this.nextReclaimPercent)) {
        this.nextReclaimPercent = Math.floor((this.nextReclaimPercent + 100) / 2) + (this.nextReclaimPercent === 99 ? 1 : 0);
      }
    }
  }

  /** True when the auto-reclaim is due: usage at the threshold and something was deleted or overwritten. */
  get reclaimDue(): boolean {
    return this.mayFindFreeBlocks && this.overThreshold(this.nextReclaimPercent);
  }

  private lastSyncMs = Date.now();

  /**
   * The daemon's periodic work (spec §5.8, §8.7, §9), to call every background tick (60 s, or sooner when signalled):
   * checkpoint when ≥ 1000 blocks changed, auto-reclaim when due, sync block file and index every auto_sync seconds.
   * Errors are logged, never thrown.
   */
  async backgroundTick(): Promise<void> {
    try {
      await this.writeHeldNodes();
      // a failed reclaim has logged its reason and freed nothing; the next tick tries again
      if (this.reclaimDue) await this.runReclaim().catch(() => undefined);
      if (this.store.changesSinceCheckpoint >= CHECKPOINT_TICK_CHANGE_COUNT) await this.store.checkpoint();
      const syncMs = (this.config.autoSync ?? 120) * 1000;
      if (Date.now() - this.lastSyncMs >= syncMs) {
        this.lastSyncMs = Date.now();
        await this.store.sync();
      }
    } catch (err) {
      this.logger.error(`background: ${(err as Error).message}`);
    }
  }

  /** Write the nodes every open file holds back (see UfsFile): one block-store sync, then the UFS writes. */
  async writeHeldNodes(): Promise<void> {
    for (const f of [...this.openFiles]) await f.writeHeld();
  }

  /** Take a checkpoint when enough blocks changed (spec §5.8); never two at once. */
  async maybeCheckpoint(): Promise<void> {
    if (!this.store.checkpointDue || this.checkpointRunning) return;
    this.checkpointRunning = this.store.checkpoint().finally(() => {
      this.checkpointRunning = null;
    });
    await this.checkpointRunning;
  }

  /** Write back the index and fsync block file and index. */
  async sync(): Promise<void> {
    await this.store.sync();
  }

  /**
   * Sync and close the block and index files (the caller closes its UfsFiles first; .autofsck is not touched), then
   * release the volume lock given to open, if any (also when the close fails).
   */
  async close(): Promise<void> {
    try {
      await this.corruptedListing;
      await this.checkpointRunning?.catch(() => undefined);
      await this.store.close();
    } finally {
      await this.lock?.release();
    }
  }
}
