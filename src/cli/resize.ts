/**
 * resizeddumbfs (beyond upstream): the whole resize procedure of spec §13.1 on one offline volume, safe against an
 * interruption (kill -9, power loss) at any step.
 *
 * Names, for the volume directory PARENT = D/B:
 * - staging directory `D/.B.resize-new`: the new volume is built there (same file system, so renames are atomic);
 * - intent file `D/.B.resize-intent`: JSON { newSize, step, oldIno, stagingIno }, rewritten with tmp + fsync +
 *   rename + directory fsync, opened without following a symlink.
 *
 * Steps (the intent records the step reached; the commit point is the exchange of step 7):
 *  1. start    — lock PARENT, check the request (a shrink below the used blocks is refused before anything is
 *                written: ResizeRefused), write the intent.
 *  2. pack     — shrink (or a volume not cleanly unmounted): fsckddumbfs -n (and -k when shrinking) in place, so
 *                every used block is below the new block_count. The old volume stays a valid volume.
 *  3. create   — mkdir the staging directory, record its inode, mkddumbfs in it: same block_size, hash, overflow and
 *                reuse_asap, the new size (addr_size may change).
 *  4. migrate  — migrateddumbfs PARENT → staging (index, bitmap, tree with all metadata, logs), plus the parent's
 *                other entries (ddfsmirror/, the user's files); syncfs.
 *  5. link     — the block file is hard-linked into the staging directory over its empty one (both volumes now
 *                share it: the old volume is still complete and usable); a block file longer than the new
 *                block_count is truncated (only the packed, unused tail).
 *  6. (checks) — the staging volume's cfg and sizes are cross-checked.
 *  7. exchange — renameat2(RENAME_EXCHANGE) swaps PARENT and the staging directory atomically: PARENT is the new
 *                volume from here on, the old one is at the staging name.
 *  8. cleanup  — the old volume is removed (its block file name only: the data is the new volume's), then the intent.
 *
 * Recovery (a re-run finding the intent): PARENT's inode tells which side of the commit point the interruption
 * was. Before the exchange (PARENT is still the old inode) the staging directory is removed: rolled back, the old
 * volume is as it was (after an interrupted pack it keeps `.autofsck` and is repaired again by the re-run); then
 * the resize is done again. After it (PARENT is the staging inode) the old volume is removed: completed.
 * At every instant PARENT names a complete volume, old or new; no block it references is ever overwritten.
 *
 * Refused (nothing written): a mounted or locked volume, a block or index file that is not a plain name in the
 * parent (block devices, absolute paths: resize those by hand, spec §13.1), a `.rebuildfsck`, a staging directory
 * without an intent, a file system without RENAME_EXCHANGE.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError, messageOf } from '../errors.js';
import { deriveConfig, type DdfsConfig } from '../format/config.js';
import {
  AUTOFSCK_MARKER, CHECKPOINT_FILE, LOG_FILE, MIRROR_DIRECTORY, SPECIAL_DIRECTORY, CHECKPOINT_NEXT_FILE, CHECKPOINT_TEMPORARY_FILE, CONFIG_FILE, LOCK_FILE,
  REBUILDFSCK_MARKER, ROOT_DIRECTORY,
} from '../format/layout.js';
import { parseLockRecord } from '../format/lock_record.js';
import { bumpMasterGeneration, readMirrorState } from '../mirror/state.js';
import { liveUndoAreas } from '../mirror/undo.js';
import { isBlockDevicePath } from '../io/device.js';
import { syncDirectory, syncFilesystem } from '../io/mirror_fs.js';
import { openNoFollow, removeFileIfPresent } from '../io/no_follow.js';
import { exchangeEntries } from '../io/rename_exchange.js';
import { setTimesNoFollow } from '../io/libc.js';
import { walkUfsTree } from '../ufs/walk.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { checkVolumeFileSizes, resolveVolumePath } from '../store/block_store.js';
import { closeDiscard, openFsckVolume, type ProgressSink } from '../fsck/context.js';
import { repairHeldVolume } from '../fsck/run.js';
import { openLogFileNoFollow, refuseSpecialSymlinks } from '../volume/special_paths.js';
import type { Logger } from '../util/log.js';
import { createVolume } from '../volume/create.js';
import { takeVolumeLock, type VolumeLock } from '../volume/lock.js';
import { migrateVolume, type MigrateReport } from '../volume/migrate.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';

/** The steps, in order (the names DDUMBFS_RESIZE_KILL_AT takes: the process kills itself right after that step). */
export const RESIZE_STEPS = ['start', 'pack', 'create', 'migrate', 'link', 'exchange', 'cleanup'] as const;
export type ResizeStep = (typeof RESIZE_STEPS)[number];

/**
 * Where DDUMBFS_RESIZE_KILL_AT may stop the process: after each step, and inside two: `pack-copy` once the pack has
 * copied the blocks (before any node is remapped), `migrate-index` once the migration has placed the index (before
 * the tree is copied).
 */
export const RESIZE_KILL_POINTS = ['start', 'pack-copy', 'pack', 'create', 'migrate-index', 'migrate', 'link', 'exchange', 'cleanup'] as const;
export type ResizeKillPoint = (typeof RESIZE_KILL_POINTS)[number];

export interface ResizeOptions {
  logger: Logger;
  verbose?: boolean;
  progress?: ProgressSink;
  /** Test hook: SIGKILL this process at `killAt` (crash tests). */
  killAt?: ResizeKillPoint;
}

export interface ResizeReport {
  /** What the run found of an interrupted resize: nothing, rolled back, or completed. */
  recovered: 'none' | 'rolled-back' | 'completed';
  /** False when the volume already had the requested block count (nothing done). */
  resized: boolean;
  oldBlockCount: number;
  newBlockCount: number;
  oldAddrSize: number;
  newAddrSize: number;
  packed: boolean;
  migrate: MigrateReport | null;
}

/** The request cannot be met: NEWSIZE holds fewer blocks than the volume uses. Nothing was changed. */
export class ResizeRefused extends DdfsError {
  constructor(message: string, data: Record<string, unknown>) {
    super('NO_SPACE', message, data);
    this.name = 'ResizeRefused';
  }
}

interface Intent {
  tool: 'resizeddumbfs';
  version: 1;
  parent: string;
  newSize: number;
  step: ResizeStep;
  /** Inode of the old volume directory (decimal). */
  oldIno: string;
  /** Inode of the staging directory once made (decimal), else null. */
  stagingIno: string | null;
}

/** The staging and intent paths of a parent. */
export function resizePaths(parent: string): { staging: string; intent: string } {
  const d = path.dirname(parent);
  const b = path.basename(parent);
  return { staging: path.join(d, `.${b}.resize-new`), intent: path.join(d, `.${b}.resize-intent`) };
}

function inodeOf(p: string): string | null {
  const st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
  return st && st.isDirectory() ? String(st.ino) : null;
}

function readIntent(p: string): Intent | null {
  let fd: number;
  try {
    fd = openNoFollow(p, { access: 'read' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DdfsError('IO', `${p}: cannot read the resize intent: ${messageOf(err)}`, { path: p }, err);
  }
  let text: string;
  try {
    text = fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
  try {
    const v = JSON.parse(text) as Intent;
    if (v.tool !== 'resizeddumbfs' || v.version !== 1 || typeof v.oldIno !== 'string') throw new Error('not a resize intent');
    return v;
  } catch (err) {
    throw new DdfsError('INVALID', `${p}: not a resize intent (${messageOf(err)}): inspect it, and remove it if no resize is in progress`, { path: p });
  }
}

/** Write the intent durably: tmp (exclusive, no symlink followed) + fsync, rename over, fsync the directory. */
function writeIntent(p: string, intent: Intent): void {
  const tmp = `${p}.tmp`;
  removeFileIfPresent(tmp);
  const fd = openNoFollow(tmp, { access: 'write', exclusive: true, mode: 0o600 });
  try {
    fs.writeSync(fd, `${JSON.stringify(intent)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, p);
  syncDirectory(path.dirname(p));
}

function removeIntent(p: string): void {
  removeFileIfPresent(`${p}.tmp`);
  removeFileIfPresent(p);
  syncDirectory(path.dirname(p));
}

/** Names in a parent that belong to the volume itself (recreated by mkddumbfs/migrate, never copied). */
function volumeOwnedNames(cfg: DdfsConfig): Set<string> {
  return new Set([
    CONFIG_FILE, ROOT_DIRECTORY, cfg.blockFilename, cfg.indexFilename, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE,
    CHECKPOINT_TEMPORARY_FILE, LOCK_FILE, AUTOFSCK_MARKER, REBUILDFSCK_MARKER, '.autofck', 'socket',
  ]);
}

function isPlainName(name: string): boolean {
  return name.length > 0 && !name.includes('/') && name !== '.' && name !== '..';
}

/**
 * Resize the offline volume whose parent is `parentDir` to `newSize` bytes (the mkddumbfs -s value), or finish
 * or roll back an interrupted resize of it first (see the module comment).
 * @throws ResizeRefused (NEWSIZE below the used blocks; nothing changed), DdfsError MOUNTED, LOCKED, USAGE (block
 *   device or external block/index file, NEWSIZE holding < 2 blocks), NOT_SUPPORTED (no RENAME_EXCHANGE), EXISTS (a
 *   staging directory without intent), INVALID (bad files in the volume: nothing changed), and migrate's errors
 */
export async function resizeVolume(parentDir: string, newSize: number, options: ResizeOptions): Promise<ResizeReport> {
  // the real directory: a symlink to it must not be what the exchange swaps
  const parent = fs.realpathSync(path.resolve(parentDir));
  const { staging, intent: intentPath } = resizePaths(parent);
  const mnt = mountPointOf(parent);
  if (mnt) throw new DdfsError('MOUNTED', `${parent}: filesystem is online (mounted on ${mnt})`, { path: parent });
  let recovered: ResizeReport['recovered'] = 'none';
  const found = readIntent(intentPath);
  if (found) {
    recovered = await recover(parent, staging, intentPath, found, options.logger);
    if (recovered === 'completed' && found.newSize === newSize) {
      const cfg = await readVolumeConfig(parent);
      return {
        recovered, resized: true, oldBlockCount: 0, newBlockCount: cfg.blockCount, oldAddrSize: 0, newAddrSize: cfg.addrSize,
        packed: false, migrate: null,
      };
    }
  }
  const lock = await takeVolumeLock(parent, 'resizeddumbfs');
  const held: VolumeLock[] = [lock];
  try {
    const r = await resizeLocked(parent, staging, intentPath, newSize, options, held);
    return { ...r, recovered };
  } finally {
    for (const l of held.reverse()) await l.release();
    removeOwnStaleLockFile(parent);
  }
}

/** The lock file our staging lock wrote travels with the exchange to PARENT: remove it when it names us. */
function removeOwnStaleLockFile(parent: string): void {
  const p = path.join(parent, LOCK_FILE);
  try {
    const st = fs.lstatSync(p);
    if (!st.isFile() || st.size > 4096) return;
    const r = parseLockRecord(fs.readFileSync(p, 'utf8'));
    if (r && r.pid === process.pid) fs.unlinkSync(p);
  } catch {
    // none, or not ours
  }
}

/** Finish (after the exchange) or roll back (before it) the resize an intent describes; under both volume locks. */
async function recover(parent: string, staging: string, intentPath: string, intent: Intent, log: Logger): Promise<'rolled-back' | 'completed'> {
  const locks: VolumeLock[] = [];
  try {
    locks.push(await takeVolumeLock(parent, 'resizeddumbfs'));
    if (inodeOf(staging)) locks.push(await takeVolumeLock(staging, 'resizeddumbfs'));
    const parentIno = inodeOf(parent);
    if (intent.stagingIno !== null && parentIno === intent.stagingIno) {
      // committed: PARENT is the new volume, the staging name holds the old one
      if (inodeOf(staging) === intent.oldIno) fs.rmSync(staging, { recursive: true, force: true });
      syncDirectory(path.dirname(parent));
      removeIntent(intentPath);
      log.info(`${parent}: an interrupted resize to ${intent.newSize} bytes (step ${intent.step}) was completed`);
      return 'completed';
    }
    if (parentIno === intent.oldIno) {
      const st = inodeOf(staging);
      if (st !== null && (intent.stagingIno === null || st === intent.stagingIno)) fs.rmSync(staging, { recursive: true, force: true });
      syncDirectory(path.dirname(parent));
      removeIntent(intentPath);
      log.info(`${parent}: an interrupted resize to ${intent.newSize} bytes (step ${intent.step}) was rolled back`);
      return 'rolled-back';
    }
    throw new DdfsError('INVALID', `${intentPath}: names neither the volume directory ${parent} nor its staging directory: ` +
      'inspect both, and remove the intent file by hand', { path: intentPath });
  } finally {
    for (const l of locks.reverse()) await l.release();
  }
}

async function resizeLocked(
  parent: string, staging: string, intentPath: string, newSize: number, options: ResizeOptions, held: VolumeLock[],
): Promise<Omit<ResizeReport, 'recovered'>> {
  const log = options.logger;
  const kill = (step: ResizeKillPoint): void => {
    if (options.killAt === step) process.kill(process.pid, 'SIGKILL');
  };
  /** The progress sink, with the kill points inside the pack and the migration. */
  const progress: ProgressSink = (e) => {
    options.progress?.(e);
    if (e.done === e.total && e.phase === 'pack: copy blocks') kill('pack-copy');
    if (e.done === e.total && e.phase === 'migrate: index') kill('migrate-index');
  };
  const cfg = await readVolumeConfig(parent);
  for (const [key, name] of [['block_filename', cfg.blockFilename], ['index_filename', cfg.indexFilename]] as const) {
    const p = resolveVolumePath(parent, name);
    if (!isPlainName(name) || isBlockDevicePath(p)) {
      throw new DdfsError('USAGE', `${parent}: ${key} is ${name}: resizeddumbfs resizes volumes whose block and index files ` +
        'are files in the parent directory; resize this one by hand (mkddumbfs, migrateddumbfs, spec §13.1)', { path: p });
    }
  }
  if (fs.existsSync(path.join(parent, REBUILDFSCK_MARKER))) {
    throw new DdfsError('NEEDS_CHECK', `${parent}: a rebuild was interrupted (${REBUILDFSCK_MARKER}): run fsckddumbfs -r first`, { path: parent });
  }
  if (fs.statSync(path.dirname(parent)).dev !== fs.statSync(parent).dev) {
    throw new DdfsError('USAGE', `${parent} is a mount point: the new volume is built beside it and swapped in by a rename, ` +
      'which needs one file system; keep the volume in a directory below the mount point (or resize by hand, spec §13.1)', { path: parent });
  }
  if (fs.lstatSync(staging, { throwIfNoEntry: false })) {
    throw new DdfsError('EXISTS', `${staging} exists and no resize intent names it: remove it if no resize is running`, { path: staging });
  }
  await checkVolumeFileSizes(parent, cfg);
  // a slave's live undo areas hold node lists of this geometry that a rollback puts back (mirroring spec §4.8):
  // they can neither be packed nor re-encoded, as for fsckddumbfs -k
  if (readMirrorState(parent)?.role === 'slave' && liveUndoAreas(parent).length > 0) {
    throw new DdfsError('BUSY', `${parent}: a mirror pass is half-applied (undo areas in ${MIRROR_DIRECTORY}/undo): finish it by ` +
      'copying again from the master (or roll it back with mirrorddumbfs promote --rollback) before resizing', { path: parent });
  }
  const newCfg = deriveConfig({
    partitionSize: newSize, blockSize: cfg.blockSize, hashName: cfg.hashName, nodeOverflow: cfg.nodeOverflow,
    reuseAsap: cfg.reuseAsap, blockFilename: cfg.blockFilename, indexFilename: cfg.indexFilename,
  });
  const base = {
    oldBlockCount: cfg.blockCount, newBlockCount: newCfg.blockCount, oldAddrSize: cfg.addrSize, newAddrSize: newCfg.addrSize,
  };
  if (newCfg.blockCount === cfg.blockCount) {
    log.info(`${parent}: already ${cfg.blockCount} blocks of ${cfg.blockSize} bytes: nothing to do`);
    return { ...base, resized: false, packed: false, migrate: null };
  }
  const used = await usedBlocks(parent);
  const refuseTooSmall = (n: number): never => {
    throw new ResizeRefused(`${parent}: ${n} blocks are in use (${n * cfg.blockSize} bytes), ${newSize} bytes hold only ` +
      `${newCfg.blockCount} blocks of ${cfg.blockSize} bytes: choose at least ${n * cfg.blockSize} bytes ` +
      '(fsckddumbfs -n first reclaims blocks no file references)', { used: n, blockCount: newCfg.blockCount });
  };
  if (used > newCfg.blockCount) refuseTooSmall(used);
  const shrink = newCfg.blockCount < cfg.blockCount;
  // the volume's log gets the run from here (after the refusals: a refused run writes nothing); the path follows the
  // exchange to the new volume, which has a copy of the log by then
  refuseSpecialSymlinks(parent);
  const special = path.join(parent, ROOT_DIRECTORY, SPECIAL_DIRECTORY);
  if (fs.existsSync(special)) log.attachFile(path.join(special, LOG_FILE), openLogFileNoFollow);

  log.info(`Resize ${parent}: ${cfg.blockCount} → ${newCfg.blockCount} blocks of ${cfg.blockSize} bytes, addr_size ` +
    `${cfg.addrSize} → ${newCfg.addrSize}, ${used} blocks used.`);

  // 1. start
  const intent: Intent = {
    tool: 'resizeddumbfs', version: 1, parent, newSize, step: 'start', oldIno: inodeOf(parent)!, stagingIno: null,
  };
  writeIntent(intentPath, intent);
  kill('start');
  const rollBack = (): void => {
    fs.rmSync(staging, { recursive: true, force: true });
    syncDirectory(path.dirname(parent));
    removeIntent(intentPath);
  };
  try {
    // 2. pack (the old volume is repaired in place: it stays valid, and is the volume rolled back to)
    let packed = false;
    if (shrink || fs.existsSync(path.join(parent, AUTOFSCK_MARKER))) {
      log.info(shrink ? 'Step pack: fsckddumbfs -n -k.' : 'Step pack: fsckddumbfs -n (volume not cleanly unmounted).');
      // the repair and the pack rewrite file nodes in place, which moves mtimes: the tree's times are put back
      const times = await fileTimes(parent);
      const generation = bumpMasterGeneration(parent);
      if (generation !== null) log.info(`mirror master: generation ${generation} (the repair is not journaled; slaves take a content pass)`);
      await repairHeldVolume(parent, { mode: 'repair', pack: shrink, logger: log, progress, verbose: options.verbose });
      restoreFileTimes(times);
      packed = shrink;
      const nowUsed = await usedBlocks(parent);
      if (nowUsed > newCfg.blockCount) refuseTooSmall(nowUsed);
    }
    const blockPath = path.join(parent, cfg.blockFilename);
    const capacity = newCfg.blockCount * cfg.blockSize;
    intent.step = 'pack';
    writeIntent(intentPath, intent);
    kill('pack');

    // 3. create
    const parentSt = fs.statSync(parent);
    fs.mkdirSync(staging, { mode: parentSt.mode & 0o7777 });
    intent.stagingIno = inodeOf(staging);
    intent.step = 'create';
    writeIntent(intentPath, intent);
    await createVolume(staging, {
      partitionSize: newSize, blockSize: cfg.blockSize, hashName: cfg.hashName, nodeOverflow: cfg.nodeOverflow,
      reuseAsap: cfg.reuseAsap, blockFilename: cfg.blockFilename, indexFilename: cfg.indexFilename,
      // the block file stays sparse (never extended: blocks are written at their offsets), so a grow larger than the
      // free space is allowed, as with mkddumbfs, with its warning
      onWarning: (message) => log.warn(message),
    });
    held.push(await takeVolumeLock(staging, 'resizeddumbfs'));
    kill('create');

    // 4. migrate
    const migrate = await migrateVolume(parent, staging, { logger: log, verbose: options.verbose, progress, locksHeld: true });
    if (migrate.badFiles > 0) {
      throw new DdfsError('INVALID', `${parent}: ${migrate.badFiles} files could not be migrated (reported above): ` +
        'nothing changed; repair them first (fsckddumbfs -n)', { badFiles: migrate.badFiles });
    }
    copyParentExtras(parent, staging, cfg, log);
    // staged files of an abandoned mirror pass and stale undo areas are UFS files of the old geometry, never used again
    for (const sub of ['staging', 'undo']) fs.rmSync(path.join(staging, MIRROR_DIRECTORY, sub), { recursive: true, force: true });
    // the migration is not journaled: a master's slaves take a content pass (inodes and the tree were rewritten)
    const generation = bumpMasterGeneration(staging);
    if (generation !== null) log.info(`mirror master: generation ${generation} (the resize is not journaled; slaves take a content pass)`);
    fs.chownSync(staging, parentSt.uid, parentSt.gid);
    fs.chmodSync(staging, parentSt.mode & 0o7777);
    syncFilesystem(staging);
    intent.step = 'migrate';
    writeIntent(intentPath, intent);
    kill('migrate');

    // 5. link the block file into the new volume (shared: the old volume stays complete)
    const size = fs.statSync(blockPath).size;
    if (size > capacity) {
      // only after a pack: every used block is below the new block count, the tail is free in both volumes
      fs.truncateSync(blockPath, capacity);
    }
    const linkTmp = path.join(staging, `.${cfg.blockFilename}.resize`);
    removeFileIfPresent(linkTmp);
    fs.linkSync(blockPath, linkTmp);
    fs.renameSync(linkTmp, path.join(staging, cfg.blockFilename));
    syncDirectory(staging);
    intent.step = 'link';
    writeIntent(intentPath, intent);
    kill('link');

    // 6. the new volume must open as a volume of the new geometry before it replaces the old one
    const check = await readVolumeConfig(staging);
    if (check.blockCount !== newCfg.blockCount || check.addrSize !== newCfg.addrSize) {
      throw new DdfsError('INVALID', `${staging}: the new volume's cfg is not the one made (${check.blockCount} blocks)`, {});
    }
    await checkVolumeFileSizes(staging, check);

    // 7. exchange: the commit point
    try {
      exchangeEntries(parent, staging);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOSYS' || code === 'ENOTSUP') {
        throw new DdfsError('NOT_SUPPORTED', `${path.dirname(parent)}: the file system cannot exchange two directories atomically ` +
          `(renameat2 RENAME_EXCHANGE: ${code}): nothing changed; resize by hand (spec §13.1)`, {}, err);
      }
      throw err;
    }
    syncDirectory(path.dirname(parent));
  } catch (err) {
    // before the commit point: the old volume is PARENT, complete; drop the staging volume
    try {
      rollBack();
    } catch (e) {
      log.error(`rollback: ${messageOf(e)}: run resizeddumbfs again to finish it`);
    }
    throw err;
  }
  kill('exchange');
  intent.step = 'exchange';
  writeIntent(intentPath, intent);

  // 8. cleanup: the old volume is at the staging name now
  if (inodeOf(staging) === intent.oldIno) fs.rmSync(staging, { recursive: true, force: true });
  syncDirectory(path.dirname(parent));
  kill('cleanup');
  removeIntent(intentPath);
  log.info(`Resized ${parent} to ${newCfg.blockCount} blocks (${newSize} bytes), addr_size ${newCfg.addrSize}.`);
  return { ...base, resized: true, packed: shrink, migrate: null };
}

/** atime and mtime (ns) of every regular UFS file of the volume (walk order of ufs/walk.ts). */
async function fileTimes(parent: string): Promise<Array<{ path: Buffer; atimeNs: bigint; mtimeNs: bigint }>> {
  const root = pathBytes(path.join(parent, ROOT_DIRECTORY));
  const out: Array<{ path: Buffer; atimeNs: bigint; mtimeNs: bigint }> = [];
  for await (const e of walkUfsTree(root, { onError: (rel, err) => { throw new DdfsError('IO', `${pathText(joinPathBytes(root, rel))}: ${err.message}`, {}, err); } })) {
    if (e.kind !== 'file') continue;
    const p = joinPathBytes(root, e.path);
    const st = fs.lstatSync(p, { bigint: true });
    out.push({ path: p, atimeNs: st.atimeNs, mtimeNs: st.mtimeNs });
  }
  return out;
}

/** Put back the times fileTimes recorded where they moved. */
function restoreFileTimes(times: Array<{ path: Buffer; atimeNs: bigint; mtimeNs: bigint }>): void {
  for (const t of times) {
    const st = fs.lstatSync(t.path, { bigint: true, throwIfNoEntry: false });
    if (st && st.isFile() && (st.mtimeNs !== t.mtimeNs || st.atimeNs !== t.atimeNs)) setTimesNoFollow(t.path, t.atimeNs, t.mtimeNs);
  }
}

/** Used blocks (bitmap bits, 0 and 1 included) of a closed volume. */
async function usedBlocks(parent: string): Promise<number> {
  const v = await openFsckVolume(parent, { readOnly: true });
  try {
    return v.store.index.bitmap.countSet;
  } finally {
    await closeDiscard(v);
  }
}

/**
 * Copy what the parent holds besides the volume itself (ddfsmirror/, the administrator's files) into the staging
 * directory, keeping modes and times; symlinks are copied as symlinks.
 * @throws DdfsError USAGE for a name that is not UTF-8 (node's recursive copy takes string paths: rename it first)
 */
function copyParentExtras(parent: string, staging: string, cfg: DdfsConfig, log: Logger): void {
  const owned = volumeOwnedNames(cfg);
  for (const raw of fs.readdirSync(parent, { encoding: 'buffer' })) {
    const name = raw.toString('utf8');
    if (owned.has(name)) continue;
    if (!Buffer.from(name, 'utf8').equals(raw)) {
      throw new DdfsError('USAGE', `${parent}: the entry ${JSON.stringify(raw.toString('latin1'))} is not named in UTF-8: rename it first`, {});
    }
    log.info(`Copy ${path.join(parent, name)} into the new volume directory.`);
    fs.cpSync(path.join(parent, name), path.join(staging, name), {
      recursive: true, preserveTimestamps: true, verbatimSymlinks: true, errorOnExist: true, force: false,
    });
  }
}
