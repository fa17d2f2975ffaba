/**
 * One fsckddumbfs run: the mode, the markers and the refusals around check, repair, rebuild and pack
 * (spec §10.1, §10.2; without upstream's `.autofck` typo, spec §17.2).
 *
 * - A `.rebuildfsck` left by an unfinished rebuild ⇒ only -r/-R may run.
 * - Non-check modes refuse a mounted volume ("filesystem is online"); -c/-C on a mounted volume only warn.
 * - -n/-N: the crash flag is whether `.autofsck` existed; `.autofsck` is created before repairing and deleted after
 *   success (and after the pack, when asked).
 * - -r/-R: `.autofsck` is created; the rebuild writes `.rebuildfsck` while it runs and deletes it on success; then
 *   the pack if asked; then `.autofsck` is deleted.
 * - `-f`: a block file without its magic gets block 0 rewritten and block 1 zeroed (repair modes), or is opened
 *   anyway (check modes).
 * - Nothing is written (lock, marker, log line, magic, index) before the cfg has been cross-checked with itself and with
 *   the real sizes of the block and index files: a cfg that lies about the geometry is refused with the volume as
 *   it was (BAD_CONFIG).
 * - Ctrl-C (`signal`, issue 10): a check stops at once. A repair or rebuild stops at its last safe point before it
 *   writes (then the volume is as it was: the `.autofsck` this run created is removed again, and a rebuild's
 *   `.rebuildfsck` too unless the index had to be recreated), or, once it writes, runs to its end; the pack then
 *   stops while it copies blocks (nothing moved yet) or runs to its end, and is skipped when the repair ended
 *   interrupted. Every such stop throws DdfsError INTERRUPTED whose message says what was done and what is left.
 * Exit codes (findings.ts FSCK_EXIT), as ddumbfs 1.1: check: 0 OK, 2 WARNING, 1 ERROR; repair, rebuild and pack: 0
 * when they complete, also when files stay corrupted (listed in corrupted.txt; the next check says WARNING), 1 failure
 * (thrown). Upstream's `ddfs_fsck` and `ddfs_rebuild` fail only when the tree walk does (spec §10.3, §10.4).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { BLOCK_FILE_MAGIC } from '../limits.js';
import type { DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { checkVolumeFileSizes, resolveVolumePath } from '../store/block_store.js';
import type { Logger } from '../util/log.js';
import { AUTOFSCK_MARKER, REBUILDFSCK_MARKER } from '../format/layout.js';
import { readVolumeLockHolder, takeVolumeLock } from '../volume/lock.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';
import { refuseSpecialSymlinks, writeFileNoFollow } from '../volume/special_paths.js';
import { checkVolume, type CheckReport } from './check.js';
import type { ProgressSink } from './context.js';
import { FSCK_EXIT, type FsckExitCode } from './findings.js';
import { packVolume, type PackReport } from './pack.js';
import { rebuildVolume } from './rebuild.js';
import { repairVolume, type RepairReport } from './repair.js';

export type FsckMode = 'check' | 'check-blocks' | 'repair' | 'repair-relaxed' | 'rebuild' | 'rebuild-blocks';

export interface FsckRunOptions {
  mode: FsckMode;
  /** -k: pack after a successful repair or rebuild. */
  pack?: boolean;
  /** -f: fix (or ignore, for checks) a missing block-file magic. */
  force?: boolean;
  verbose?: boolean;
  logger: Logger;
  /** Plain report lines of a check (a Buffer when the line names a UFS path that is not UTF-8). */
  out?: (line: string | Buffer) => void;
  progress?: ProgressSink;
  devices?: DeviceFactory;
  hashThreads?: number;
  /**
   * Repair modes: called once the volume lock is held and the volume may be written, before anything is (the CLI
   * attaches the volume's log file then, so a refused run writes nothing to the volume, not even a log line).
   */
  onLocked?: () => void;
  /** Repair modes: hashes referenced from outside ddfsroot that must stay (RepairVolumeOptions.extraReferences). */
  extraReferences?: () => Iterable<Buffer>;
  /** Ctrl-C: stop at the next safe point (see the module comment). */
  signal?: AbortSignal;
}

export interface FsckRunResult {
  exitCode: FsckExitCode;
  check?: CheckReport;
  repair?: RepairReport;
  pack?: PackReport;
}

/** Whether a mode writes to the volume. */
export function isRepairMode(mode: FsckMode): boolean {
  return mode !== 'check' && mode !== 'check-blocks';
}

/**
 * Rewrite block 0 (magic + zeros) and zero block 1 when the block file lacks its magic (spec §4, `-f`).
 * @returns true when the header was rewritten
 */
export async function repairBlockFileMagic(parentDir: string, logger: Logger, devices: DeviceFactory = fileDevices): Promise<boolean> {
  const cfg = await readVolumeConfig(parentDir);
  const p = resolveVolumePath(parentDir, cfg.blockFilename);
  const dev = await devices.open(p, {});
  try {
    const head = Buffer.alloc(BLOCK_FILE_MAGIC.length);
    await dev.read(head, 0, head.length, 0);
    if (head.toString('latin1') === BLOCK_FILE_MAGIC) return false;
    logger.warn(`block file ${p} has no magic: rewrite blocks 0 and 1`);
    const blocks = Buffer.alloc(2 * cfg.blockSize);
    blocks.write(BLOCK_FILE_MAGIC, 0, 'latin1');
    await dev.write(blocks, 0);
    await dev.sync();
    return true;
  } finally {
    await dev.close();
  }
}

/**
 * Run fsck in `mode` on the volume whose parent is `parentDir`.
 * Repair modes take the volume lock (volume/lock.ts) for the whole run; checks take none.
 * @throws DdfsError SYMLINK (a special path is a symlink: nothing is written), MOUNTED (online volume, repair
 *   modes), NOT_FOUND / BAD_CONFIG (ddfs.cfg missing or lying about the geometry: nothing written, not even the
 *   lock), LOCKED (another process holds the volume lock, repair modes), NEEDS_CHECK (`.rebuildfsck` present, not
 *   a rebuild), INTERRUPTED (Ctrl-C: `options.signal`, see the module comment), and whatever check/repair/rebuild/pack
 *   throw
 */
export async function runFsck(parentDir: string, options: FsckRunOptions): Promise<FsckRunResult> {
  const parent = path.resolve(parentDir);
  const log = options.logger;
  const mode = options.mode;
  const rebuild = mode === 'rebuild' || mode === 'rebuild-blocks';
  const autofsck = path.join(parent, AUTOFSCK_MARKER);
  refuseSpecialSymlinks(parent);
  const refuseInterruptedRebuild = (): void => {
    if (!rebuild && fs.existsSync(path.join(parent, REBUILDFSCK_MARKER))) {
      throw new DdfsError('NEEDS_CHECK', `${parent}: a rebuild was interrupted (${REBUILDFSCK_MARKER} exists): only -r or -R can run`, { path: parent });
    }
  };
  const mountPoint = mountPointOf(parent);
  if (!isRepairMode(mode)) {
    // a check is a reader: it takes no lock and runs on a volume in use, warning that the result is not accurate
    refuseInterruptedRebuild();
    if (mountPoint) {
      log.warn(`filesystem is online (mounted on ${mountPoint}): the result is not accurate`);
    } else {
      const holder = await readVolumeLockHolder(parent);
      if (holder) log.warn(`volume in use by ${holder.tool} (pid ${holder.pid}): the result is not accurate`);
    }
    const check = await checkVolume(parent, {
      logger: log, out: options.out, progress: options.progress, devices: options.devices, hashThreads: options.hashThreads,
      hashBlocks: mode === 'check-blocks', skipBlockMagic: options.force, signal: options.signal,
    });
    return { exitCode: check.exitCode, check };
  }
  if (mountPoint) throw new DdfsError('MOUNTED', `${parent}: filesystem is online (mounted on ${mountPoint})`, { path: parent });
  // read-only, so a cfg that lies about the geometry is refused before even the lock is written
  await checkVolumeFileSizes(parent, await readVolumeConfig(parent), options.devices);
  const lock = await takeVolumeLock(parent, 'fsckddumbfs');
  try {
    refuseInterruptedRebuild();
    options.onLocked?.();
    return await repairLocked(parent, options, autofsck, rebuild);
  } finally {
    await lock.release();
  }
}

/**
 * The repair mode of runFsck (-n, or -N with `mode` 'repair-relaxed'; `pack` for -k) for a caller that holds the
 * volume lock itself and has checked that the volume is not mounted (resizeddumbfs). Same markers and result.
 * @throws DdfsError NOT_FOUND / BAD_CONFIG, NEEDS_CHECK (`.rebuildfsck` present), and whatever repair and pack throw
 */
export async function repairHeldVolume(parentDir: string, options: FsckRunOptions): Promise<FsckRunResult> {
  const parent = path.resolve(parentDir);
  refuseSpecialSymlinks(parent);
  await checkVolumeFileSizes(parent, await readVolumeConfig(parent), options.devices);
  if (fs.existsSync(path.join(parent, REBUILDFSCK_MARKER))) {
    throw new DdfsError('NEEDS_CHECK', `${parent}: a rebuild was interrupted (${REBUILDFSCK_MARKER} exists): only -r or -R can run`, { path: parent });
  }
  return repairLocked(parent, { ...options, mode: options.mode === 'repair-relaxed' ? 'repair-relaxed' : 'repair' }, path.join(parent, AUTOFSCK_MARKER), false);
}

/** The repair, rebuild and pack modes of runFsck, under the volume lock. */
async function repairLocked(parent: string, options: FsckRunOptions, autofsck: string, rebuild: boolean): Promise<FsckRunResult> {
  const log = options.logger;
  const mode = options.mode;
  if (options.force) await repairBlockFileMagic(parent, log, options.devices);

  const crashed = fs.existsSync(autofsck);
  writeFileNoFollow(autofsck, '', { mode: 0o600, exclusive: !crashed });
  const what = rebuild ? 'rebuild' : 'repair';
  let repair: RepairReport;
  try {
    if (rebuild) {
      repair = await rebuildVolume(parent, {
        logger: log, allBlocks: mode === 'rebuild-blocks', devices: options.devices, verbose: options.verbose,
        progress: options.progress, hashThreads: options.hashThreads, signal: options.signal,
      });
    } else {
      repair = await repairVolume(parent, {
        logger: log, crashed, relaxed: mode === 'repair-relaxed', devices: options.devices, verbose: options.verbose,
        progress: options.progress, hashThreads: options.hashThreads, extraReferences: options.extraReferences, signal: options.signal,
      });
    }
  } catch (err) {
    if (!(err instanceof DdfsError && err.code === 'INTERRUPTED')) throw err;
    // stopped before writing: the volume is as it was, so is its crash flag
    const changed = err.data.changed === true;
    if (!crashed && !changed) fs.rmSync(autofsck, { force: true });
    const left = changed ? `the index is not rebuilt yet: run fsckddumbfs ${mode === 'rebuild-blocks' ? '-R' : '-r'} again`
      : `nothing was changed${crashed ? ' (the volume still needs its repair)' : ''}`;
    throw new DdfsError('INTERRUPTED', `interrupted during ${String(err.data.phase)}: the ${what} did not start writing, ${left}`, err.data, err);
  }
  const packLeft = options.pack ? '; run fsckddumbfs -n -k to pack' : '';
  if (options.signal?.aborted) {
    fs.rmSync(autofsck, { force: true });
    throw new DdfsError('INTERRUPTED', `interrupted: the ${what} was writing and completed${options.pack ? ', the pack (-k) was not run' : ''}${packLeft}`, { phase: 'fix files' });
  }
  let pack: PackReport | undefined;
  try {
    if (options.pack) pack = await packVolume(parent, { logger: log, devices: options.devices, progress: options.progress, signal: options.signal });
  } catch (err) {
    if (!(err instanceof DdfsError && err.code === 'INTERRUPTED')) throw err;
    // the copies went to free blocks only: the repaired volume is intact
    fs.rmSync(autofsck, { force: true });
    throw new DdfsError('INTERRUPTED', `interrupted during ${String(err.data.phase)}: the ${what} completed, the pack moved nothing${packLeft}`, err.data, err);
  }
  fs.rmSync(autofsck, { force: true });
  if (options.signal?.aborted) {
    throw new DdfsError('INTERRUPTED', `interrupted: the ${what} and the pack were writing and completed`, { phase: 'pack' });
  }
  // corrupted files are the repair's result, not its failure: upstream exits 0 (spec §10.3; fixture funny-f -n)
  return { exitCode: FSCK_EXIT.OK, repair, pack };
}
