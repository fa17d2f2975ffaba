/**
 * Mount / unmount lifecycle of the daemon (spec §8.2).
 *
 * Order: every refusal (no volume, bad mount point, already mounted, `.rebuildfsck`, a read-only parent without
 * -o ro, the volume lock held by another process, bad volume files) happens before anything is written; the volume
 * lock (volume/lock.ts) is held from then on until the volume is closed; then the log file is attached, cwd becomes
 * `ddfsroot`, `.autofsck` is created, the startup check runs if needed, and the file system is served.
 *
 * A mirror slave (servedReadOnlyReason) is opened writable but served like -o ro: every write op answers EROFS;
 * its mirror passes write it through the control socket (onServing), which stops before the volume closes.
 *
 * With -o ro (read-only, startReadOnly) the volume is opened read-only and nothing is written to the parent: no
 * `.autofsck`, no startup check, no log file, no checkpoint or reclaim; every write op answers EROFS (read_only.ts)
 * and the mount is flagged ro (statvfs reports ST_RDONLY).
 *
 * The daemon stops — closing every open file, then the volume, then removing `.autofsck` — when:
 * - the FUSE loop ends (any unmount: `fusermount -u`, `umount`, `umount -l` once unused; reported by the patched
 *   binding's onExit);
 * - the mount disappeared from /proc/self/mounts and no handle is open (polled every MOUNT_POLL_MS, in case the
 *   loop end is not reported);
 * - SIGINT / SIGTERM / SIGHUP: lazy unmount, wait up to SHUTDOWN_GRACE_MS for the loop to end, then stop anyway.
 * SIGPIPE is ignored (upstream died of it on `fusermount -u` and left `.autofsck`). A failed close keeps
 * `.autofsck`, so the next mount checks the volume.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { DdfsError, messageOf } from '../errors.js';
import { assert } from '../util/assert.js';
import { BACKGROUND_TICK_MS, FREE_BLOCK_RESERVE, FUSE_CACHE_TIMEOUT_S, WRITE_BEHIND_SIZE_MAX } from '../limits.js';
import { resolveVolumePath } from '../store/block_store.js';
import type { Logger } from '../util/log.js';
import { AUTOFSCK_MARKER, LOG_FILE, REBUILDFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { takeVolumeLock } from '../volume/lock.js';
import { Volume, findParent, mountPointOf } from '../volume/volume.js';
import { openLogFileNoFollow, refuseSpecialSymlinks, writeFileNoFollow } from '../volume/special_paths.js';
import { mountFuse, setAttrCache, setUfsAnswers, type FuseMount } from './fuse_binding.js';
import { lockInMemory } from '../io/memory_lock.js';
import { libfuseOptions, writerCount, type DdumbfsMountOptions } from './mount_options.js';
import { OpStats, guardOps } from './op_guard.js';
import { readOnlyOps } from './read_only.js';
import { DdumbfsOps } from './ops.js';
import { prepareSpecialFiles } from './special_files.js';
import { runStartupCheck, type StartupRepair } from './startup_check.js';

/** How often the daemon looks for its mount in /proc/self/mounts. */
const MOUNT_POLL_MS = 1000;
/** After a signal: how long the lazily unmounted file system may stay in use before the daemon stops anyway. */
const SHUTDOWN_GRACE_MS = 3000;
/** An op not answered after this long answers EIO (a bound on every wait; reclaim and fsync may be slow). */
const OP_TIMEOUT_MS = 10 * 60_000;

export interface DaemonOptions extends DdumbfsMountOptions {
  /** Mount point as given. */
  mountPoint: string;
  /** The command line, for /.ddumbfs/stats. */
  commandArgs: string;
  logger: Logger;
  /** Called once the file system is mounted and served. */
  onMounted?: () => void;
  /** The repair run before serving after an unclean unmount or with -o check (fsckddumbfs -n, spec §10.3). */
  startupRepair?: StartupRepair;
  /**
   * Why the file system is served read-only although the volume is opened writable (a mirror slave: its passes
   * write it through the control socket, issue 7 item 0), or null: every write op answers EROFS, the mount is ro.
   */
  servedReadOnlyReason?: string | null;
  /**
   * Started once the file system is served (not with -o ro), stopped before the volume closes: the mirror's control
   * socket (injected by the cli, so fs does not import mirror). `flush` writes the write-behind buffers and the held
   * node lists back; `servedReadOnly` says FUSE writes answer EROFS. A failure to start is logged; the mount goes on
   * without it.
   */
  onServing?: (served: { volume: Volume; flush: () => Promise<void>; servedReadOnly: boolean }) => Promise<{ close(): Promise<void> }>;
  /**
   * Called on a writable mount once the volume is open and checked, BEFORE the file system is mounted: the mirror
   * journal of a master sets the tree's change sink here (injected by the cli: fs does not import mirror). `crashed`:
   * `.autofsck` was present. Its `close(clean)` runs after every open file is closed, before the volume closes.
   * A throw refuses the mount (a master must not take changes it cannot journal).
   */
  onVolumeReady?: (ready: { volume: Volume; parentDir: string; crashed: boolean }) => Promise<VolumeReadyHandle | null>;
}

/** What `onVolumeReady` returns: closed at unmount, `clean` when every open file and the stop went well. */
export interface VolumeReadyHandle {
  close(clean: boolean): Promise<void>;
}

/** The onVolumeReady handle of each served volume, closed by finish(). */
const readyHandles = new WeakMap<Volume, VolumeReadyHandle>();

/** Unescape a /proc/mounts field (\040 for space etc.). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Whether `mountPoint` is the target of a mount in /proc/self/mounts (and with which fsname). */
export function mountEntryAt(mountPoint: string): { fsname: string; type: string } | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return null;
  }
  let found: { fsname: string; type: string } | null = null;
  for (const line of text.split('\n')) {
    const [fsname, mnt, type] = line.split(' ');
    if (!fsname || !mnt || !type) continue;
    if (unescapeMountField(mnt) === mountPoint) found = { fsname: unescapeMountField(fsname), type };
  }
  return found;
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Validate everything that can refuse a mount, without writing anything.
 * @returns the absolute parent directory and mount point
 * @throws DdfsError naming the offending file
 */
function checkMountable(options: DaemonOptions): { parentDir: string; mountPoint: string } {
  if (options.parent === null) throw new DdfsError('USAGE', 'missing -o parent=DIR');
  const parentDir = findParent(options.parent);
  if (parentDir === null) {
    throw new DdfsError('NOT_FOUND', `${options.parent}: not a ddumbfs volume (no parent directory with ddfs.cfg and ddfsroot/)`, { path: options.parent });
  }
  const mountPoint = path.resolve(options.mountPoint);
  let st: fs.Stats;
  try {
    st = fs.statSync(mountPoint);
  } catch (err) {
    throw new DdfsError('NOT_FOUND', `${mountPoint}: mount point: ${messageOf(err)}`, { path: mountPoint }, err);
  }
  if (!st.isDirectory()) throw new DdfsError('INVALID', `${mountPoint}: mount point is not a directory`, { path: mountPoint });
  const mountedOn = mountPointOf(parentDir);
  if (mountedOn !== null) throw new DdfsError('MOUNTED', `${parentDir}: volume is already mounted on ${mountedOn}`, { path: parentDir });
  const busy = mountEntryAt(mountPoint);
  if (busy !== null) throw new DdfsError('BUSY', `${mountPoint}: already a mount point (${busy.fsname}, ${busy.type})`, { path: mountPoint });
  refuseSpecialSymlinks(parentDir); // before a marker is even looked at: exists() would follow a link
  const rebuild = path.join(parentDir, REBUILDFSCK_MARKER);
  if (exists(rebuild)) {
    throw new DdfsError('NEEDS_CHECK', `${rebuild}: a rebuild is in progress or was interrupted; finish it with fsckddumbfs -r`, { path: rebuild });
  }
  if (options.readOnly && options.check) throw new DdfsError('USAGE', '-o check repairs the volume: not with -o ro');
  if (!options.readOnly) {
    for (const dir of [parentDir, path.join(parentDir, ROOT_DIRECTORY)]) {
      if (isOnReadOnlyFileSystem(dir)) {
        throw new DdfsError('READ_ONLY', `${dir}: read-only file system: mount the volume with -o ro`, { path: dir });
      }
    }
  }
  return { parentDir, mountPoint };
}

/** Whether `dir` lies on a file system mounted read-only (access(2) W_OK answers EROFS; root is not exempt). */
function isOnReadOnlyFileSystem(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EROFS';
  }
}

/** The startup lines of upstream (spec §8.2 step 2). */
function logStartup(volume: Volume, options: DaemonOptions, directIo: boolean, writers: number): void {
  const log = options.logger;
  const cfg = volume.config;
  log.info(`hash: ${cfg.hashName}`);
  log.info(`direct_io: ${directIo ? '1 enable' : '0 disable'}`);
  log.info(`reclaim: ${options.reclaimPercent}`);
  log.info(`writer pool: ${writers > 0 ? `${writers} cpus` : 'disable'}`);
  log.info(`root directory: ${volume.rootDir}`);
  log.info(`blockfile: ${resolveVolumePath(volume.parentDir, cfg.blockFilename)}`);
  log.info(`indexfile: ${resolveVolumePath(volume.parentDir, cfg.indexFilename)}`);
}

/**
 * `-o lock_index` (spec §8.1): mlock the bitmap and the node table, as ddumbfs 1.1 does after daemonizing. A failure
 * (no CAP_IPC_LOCK, RLIMIT_MEMLOCK) is logged and not fatal: the stats then show `lock_index 0`.
 * @returns whether the whole index is locked
 */
function lockIndexInMemory(volume: Volume, log: Logger): boolean {
  const index = volume.store.index;
  const buffers = [index.bitmap.bytes, ...index.nodes.chunks];
  const failure = lockInMemory(buffers);
  if (failure !== null) {
    log.error(`cannot lock index into memory (${failure}): lock_index 0`);
    return false;
  }
  const bytes = buffers.reduce((n, b) => n + b.length, 0);
  log.info(`index locked into memory: ${(bytes / 1024 / 1024).toFixed(1)}Mo`);
  return true;
}

/** O_DIRECT default: on iff the block file is a block device (spec §8.1). */
function isBlockDevice(p: string): boolean {
  try {
    return fs.statSync(p).isBlockDevice();
  } catch {
    return false;
  }
}

/**
 * SIGINT / SIGTERM / SIGHUP from the start of the daemon on (a signal before the mount is served is remembered and
 * acted on once it is), and SIGPIPE ignored.
 */
class StopSignals {
  private static readonly SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  /** Signals received so far. */
  received: NodeJS.Signals[] = [];
  private handler: ((sig: NodeJS.Signals, count: number) => void) | null = null;
  private readonly listener = (sig: NodeJS.Signals): void => {
    this.received.push(sig);
    this.handler?.(sig, this.received.length);
  };
  private readonly ignore = (): void => undefined;

  constructor() {
    for (const s of StopSignals.SIGNALS) process.on(s, this.listener);
    process.on('SIGPIPE', this.ignore);
  }

  /** Handle signals from now on; a signal received earlier is handled at once. */
  handle(handler: (sig: NodeJS.Signals, count: number) => void): void {
    this.handler = handler;
    const first = this.received[0];
    if (first) handler(first, this.received.length);
  }

  dispose(): void {
    for (const s of StopSignals.SIGNALS) process.off(s, this.listener);
    process.off('SIGPIPE', this.ignore);
  }
}

/**
 * Run the daemon in this process until the file system is unmounted.
 * @returns the exit code (0 after a clean unmount)
 * @throws DdfsError for a refused mount (nothing on disk was modified then) or a failed mount
 */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const signals = new StopSignals();
  try {
    const { parentDir, mountPoint } = checkMountable(options);
    // held for the whole mount: taken before anything is written, released once the volume is closed
    const lock = await takeVolumeLock(parentDir, 'ddumbfs');
    try {
      return await (options.readOnly ? startReadOnly : startDaemon)(options, signals, parentDir, mountPoint);
    } finally {
      await lock.release();
    }
  } finally {
    signals.dispose();
  }
}

/**
 * The read-only daemon (mount option ro): the volume opened read-only, no `.autofsck`, no startup check, no log
 * file (the parent stays byte for byte as it was), every write answered EROFS (read_only.ts), no background work.
 */
async function startReadOnly(options: DaemonOptions, signals: StopSignals, parentDir: string, mountPoint: string): Promise<number> {
  const log = options.logger;
  const autofsck = path.join(parentDir, AUTOFSCK_MARKER);
  if (exists(autofsck)) {
    log.warn(`${autofsck}: the volume was not cleanly unmounted: served read-only without a check (run fsckddumbfs -n before a writable mount)`);
  }
  const volume = await Volume.open(parentDir, { logger: log, readOnly: true });
  try {
    prepareServing(volume, options, parentDir, false);
  } catch (err) {
    await volume.close().catch(() => undefined);
    throw err;
  }
  return serve(volume, parentDir, mountPoint, null, false, options, signals, () => undefined);
}

async function startDaemon(options: DaemonOptions, signals: StopSignals, parentDir: string, mountPoint: string): Promise<number> {
  const log = options.logger;
  const autofsck = path.join(parentDir, AUTOFSCK_MARKER);
  const crashed = exists(autofsck);
  const repairFirst = crashed || options.check;
  const openVolume = (): Promise<Volume> => Volume.open(parentDir, { logger: log, freeBlockReserve: FREE_BLOCK_RESERVE });
  // A volume that cannot be opened is refused before anything is written to it (no marker, no repair). Without a
  // repair the volume served is opened right away; with one, a read-only open checks it first and the repair runs
  // on the closed volume.
  let volume: Volume | null = repairFirst ? null : await openVolume();
  if (repairFirst) await (await Volume.open(parentDir, { logger: log, readOnly: true })).close();

  try {
    writeFileNoFollow(autofsck, '', { mode: 0o600, exclusive: !crashed });
  } catch (err) {
    await volume?.close().catch(() => undefined);
    throw new DdfsError('IO', `${autofsck}: cannot create: ${messageOf(err)}`, { path: autofsck }, err);
  }
  let autofsckOurs = !crashed;
  // whether a clean unmount may remove the marker: not after a crash the check could not repair
  let markerRemovable = !crashed;
  if (repairFirst) {
    try {
      markerRemovable = await runStartupCheck(parentDir, crashed, log, options.startupRepair);
    } catch (err) {
      log.error(`${messageOf(err)}`);
      log.error('ERROR filesystem corrupted. Run fsck !');
      throw new DdfsError('CORRUPT', `${parentDir}: filesystem corrupted, run fsckddumbfs`, { path: parentDir }, err);
    }
    try {
      volume = await openVolume();
    } catch (err) {
      if (autofsckOurs) fs.rmSync(autofsck, { force: true });
      throw err;
    }
  }
  assert(volume, 'the volume is open once the startup check is done');
  if (options.servedReadOnlyReason) log.info(`served read-only: ${options.servedReadOnlyReason}`);
  try {
    prepareServing(volume, options, parentDir, true);
    const handle = options.onVolumeReady ? await options.onVolumeReady({ volume, parentDir, crashed }) : null;
    if (handle) readyHandles.set(volume, handle);
  } catch (err) {
    volume.tree.sink = null;
    await volume.close().catch(() => undefined);
    if (autofsckOurs) fs.rmSync(autofsck, { force: true });
    autofsckOurs = false;
    throw err;
  }

  return serve(volume, parentDir, mountPoint, autofsck, markerRemovable, options, signals, () => {
    if (autofsckOurs) fs.rmSync(autofsck, { force: true });
  });
}

/**
 * What every daemon does between opening the volume and mounting it: check the special directory, log the startup
 * lines, record the mount facts, attach the log file (`attachLog`), make `ddfsroot` the cwd.
 * @throws DdfsError NOT_FOUND when the special directory is missing; Node errors of chdir
 */
function prepareServing(volume: Volume, options: DaemonOptions, parentDir: string, attachLog: boolean): void {
  const log = options.logger;
  const specialDir = path.join(volume.rootDir, SPECIAL_DIRECTORY);
  if (!fs.statSync(specialDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new DdfsError('NOT_FOUND', `${specialDir}: special directory missing (run fsckddumbfs)`, { path: specialDir });
  }
  const directIo = options.directIo ?? isBlockDevice(resolveVolumePath(parentDir, volume.config.blockFilename));
  const writers = writerCount(options.pool, os.availableParallelism());
  logStartup(volume, options, directIo, writers);
  volume.mountFacts = {
    directIo,
    lockIndex: options.lockIndex && lockIndexInMemory(volume, log),
    writerPool: writers,
    commandArgs: options.commandArgs,
    extCommandArgs: '',
  };
  volume.reclaimPercent = options.reclaimPercent;
  volume.nextReclaimPercent = options.reclaimPercent;

  if (attachLog) {
    prepareSpecialFiles(specialDir);
    log.attachFile(path.join(specialDir, LOG_FILE), openLogFileNoFollow);
  } else {
    log.info('read-only: nothing is written to the volume, not even its log file');
  }
  process.chdir(volume.rootDir);
  // tree paths stay relative (as FUSE's): a deep tree never hits ENAMETOOLONG earlier than on the UFS itself
  volume.tree.useCwdAsRoot();
  process.umask(0);
}

/** Mount and serve until unmounted; then close everything. `autofsck` is null for a read-only mount (no marker). */
async function serve(
  volume: Volume,
  parentDir: string,
  mountPoint: string,
  autofsck: string | null,
  markerRemovable: boolean,
  options: DaemonOptions,
  signals: StopSignals,
  undoMarker: () => void,
): Promise<number> {
  const log = options.logger;
  const ops = new DdumbfsOps(volume, log, options.pool === 0 ? 0 : WRITE_BEHIND_SIZE_MAX);
  // read-only: the one EROFS gate, between the op table and the FUSE guard
  const servedReadOnly = options.readOnly || Boolean(options.servedReadOnlyReason);
  const opTable = servedReadOnly ? readOnlyOps(ops) : ops;
  let stopRequested: ((reason: string) => void) | null = null;
  const stopped = new Promise<string>((resolve) => {
    stopRequested = resolve;
  });
  const stop = (reason: string): void => stopRequested?.(reason);

  let fatal = false;
  // debug aid (DDUMBFS_OPSTATS=1): per-op counts and latencies, logged at unmount
  const opStats = process.env.DDUMBFS_OPSTATS ? new OpStats() : undefined;
  const fuseOps = guardOps(opTable, {
    logger: log,
    opStats,
    timeoutMs: OP_TIMEOUT_MS,
    onFatal: () => {
      fatal = true;
      stop('assertion failure');
    },
  });

  const fuseOptions = libfuseOptions(options, { mirrorSlave: Boolean(options.servedReadOnlyReason), servedReadOnly, parentDir });
  log.dbg(`fuse options: ${fuseOptions.join(',')}`);
  // what 1.1 shows as ext_command_args: the command line libfuse got, the program's name, its -o list and the mount point
  if (volume.mountFacts) volume.mountFacts.extCommandArgs = `${options.commandArgs.split(' ')[0] || 'ddumbfs'} -o${fuseOptions.join(',')} ${mountPoint}`;

  let loopEnded = false;
  let loopEndedSignal: (() => void) | null = null;
  const loopEndedPromise = new Promise<void>((resolve) => {
    loopEndedSignal = resolve;
  });
  // the FUSE threads' attribute cache: only where the tree changes through this mount's ops alone (not a slave)
  const attrCache = options.attrCache && !options.servedReadOnlyReason;
  setAttrCache(attrCache ? FUSE_CACHE_TIMEOUT_S * 1000 : 0);
  // the kernel's security.capability probe and getattr of directories and the like: answered from the UFS (the cwd)
  setUfsAnswers(true);
  let mount: FuseMount | null;
  try {
    // An unmount right after mount(2), before libfuse's INIT, ends the loop without INIT: do not wait for it then.
    mount = await Promise.race([
      mountFuse(mountPoint, fuseOps, {
        options: fuseOptions,
        onExit: () => {
          loopEnded = true;
          loopEndedSignal?.();
          stop('unmounted');
        },
      }),
      loopEndedPromise.then(() => null),
    ]);
  } catch (err) {
    await readyHandles.get(volume)?.close(false).catch(() => undefined);
    await volume.close().catch(() => undefined);
    undoMarker();
    throw new DdfsError('IO', `${mountPoint}: mount failed: ${messageOf(err)}`, { path: mountPoint }, err);
  }
  if (mount === null) {
    log.warn(`${mountPoint}: unmounted before the file system was served`);
    return finish(volume, ops, parentDir, autofsck, markerRemovable, log, true);
  }
  const served: FuseMount = mount;
  // the control socket is up before the mount is reported: whoever sees "mounted" can mirror the volume
  let service: { close(): Promise<void> } | null = null;
  if (options.onServing && !options.readOnly) {
    try {
      service = await options.onServing({
        volume,
        flush: async () => {
          await ops.flushAll();
          await volume.writeHeldNodes();
        },
        servedReadOnly,
      });
    } catch (err) {
      log.error(`${messageOf(err)}: mirror passes of this mounted volume are refused`);
    }
  }

  log.info(`[${process.pid}] filesystem ${parentDir} mounted on ${mountPoint}`);

  // A programmer error anywhere: stop, flush what can be flushed, keep .autofsck (style.md), never a dead mount.
  const onUncaught = (err: unknown): void => {
    log.error(`uncaught error: ${messageOf(err)}\n${(err as Error | undefined)?.stack ?? ''}`);
    fatal = true;
    stop('uncaught error');
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);

  // Signals: lazy unmount, then stop once the loop ends or after the grace period.
  signals.handle((sig, count) => {
    if (count > 1) {
      stop(`second signal ${sig}`);
      return;
    }
    log.info(`${sig}: unmounting ${mountPoint}`);
    served.unmount().catch((err: unknown) => log.warn(`unmount ${mountPoint}: ${messageOf(err)}`));
    const grace = setTimeout(() => stop(`${sig} (file system still in use after ${SHUTDOWN_GRACE_MS} ms)`), SHUTDOWN_GRACE_MS);
    grace.unref();
  });

  // External unmount that the loop did not report: the mount is gone and nobody holds a handle.
  let goneCount = 0;
  const poll = setInterval(() => {
    const entry = mountEntryAt(mountPoint);
    const ours = entry !== null && entry.type.startsWith('fuse') && path.resolve(entry.fsname) === parentDir;
    goneCount = ours ? 0 : goneCount + 1;
    if (goneCount >= 2 && ops.openFiles.handleCount === 0) stop('mount disappeared from /proc/self/mounts');
  }, MOUNT_POLL_MS);

  // Background work (spec §8.7): push long-lived partial blocks; the volume checkpoints, reclaims and syncs.
  // A read-only daemon has none: no checkpoint, no reclaim, nothing to sync.
  let tickRunning: Promise<void> | null = null;
  const tick = setInterval(() => {
    if (options.readOnly) return;
    tickRunning ??= (async () => {
      try {
        await ops.flushAll();
      } catch (err) {
        log.error(`background flush: ${messageOf(err)}`);
      }
      await volume.backgroundTick();
    })().finally(() => {
      tickRunning = null;
    });
  }, BACKGROUND_TICK_MS);
  tick.unref();

  options.onMounted?.();

  const reason = await stopped;
  log.info(`stopping: ${reason}`);
  if (opStats) for (const line of opStats.report()) log.info(`opstats: ${line}`);
  if (attrCache) {
    const { hits, misses, fromUfs } = setAttrCache(0);
    log.info(`attribute cache: ${hits} getattr answered from it, ${fromUfs} from the UFS, ${misses} passed to the ops`);
  }
  // a pass through the control socket uses the volume: it ends (or is cut) before the volume closes
  await service?.close().catch((err: unknown) => log.warn(`control socket: ${messageOf(err)}`));
  clearInterval(poll);
  clearInterval(tick);
  await tickRunning;
  if (!loopEnded) {
    // make sure the kernel no longer sends requests to a closing volume
    await served.unmount().catch(() => undefined);
    await Promise.race([loopEndedPromise, new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  return finish(volume, ops, parentDir, autofsck, markerRemovable, log, !fatal);
}

/**
 * Close every open file, then the volume; remove `.autofsck` when all went well and the marker may go.
 * @returns the exit code
 */
async function finish(volume: Volume, ops: DdumbfsOps, parentDir: string, autofsck: string | null, markerRemovable: boolean, log: Logger, clean: boolean): Promise<number> {
  let ok = clean;
  for (const err of await ops.openFiles.closeAll()) {
    ok = false;
    log.error(`closing an open file: ${messageOf(err)}`);
  }
  const handle = readyHandles.get(volume);
  if (handle) {
    readyHandles.delete(volume);
    try {
      await handle.close(ok);
    } catch (err) {
      ok = false;
      log.error(`closing the mirror journal: ${messageOf(err)}`);
    }
  }
  try {
    await volume.close();
  } catch (err) {
    ok = false;
    log.error(`closing the volume: ${messageOf(err)}`);
  }
  for (const line of volume.statsText(false).trimEnd().split('\n')) log.dbg(line);
  if (autofsck === null) {
    // read-only: no marker was written, none is removed
    log.info(`filesystem ${parentDir} unmounted${ok ? '' : ' with errors'}`);
    return ok ? 0 : 1;
  }
  if (ok) {
    if (markerRemovable) await fsp.rm(autofsck, { force: true });
    else log.warn(`${autofsck} kept: the volume was not checked after the crash`);
    log.info(`filesystem ${parentDir} unmounted`);
    return 0;
  }
  log.error(`filesystem ${parentDir} unmounted with errors; ${AUTOFSCK_MARKER} kept, the next mount checks the volume`);
  return 1;
}
