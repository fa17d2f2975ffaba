/**
 * The volume lock: one writer per volume (issue 7 item 0). Taken exclusively, for as long as they work on the
 * volume, by the daemon (the whole mount, read-only mounts too), fsckddumbfs's repair and rebuild modes, cpddumbfs
 * upload, alterddumbfs, mkddumbfs, and mirrorddumbfs for every volume it opens itself (copy, read, write, serve,
 * init-slave; a master that only reads too: it must not run beside a repair; a volume its daemon holds is mirrored
 * through that daemon instead, mirror/copy.ts). Readers (fsckddumbfs -c/-C, cpddumbfs download, mirrorddumbfs verify) take
 * no lock: they run on a volume in use as they always did, and a check warns that its result is not accurate.
 *
 * How (the system calls are in io/exclusive_lock.ts):
 * - the lock itself is the abstract UNIX socket `\0ddumbfs-ts/volume-lock/DEV:INO`, keyed by the device and inode
 *   of the parent directory, so every path and bind mount of one parent names the same lock, and a read-only view
 *   of the parent excludes a writer through a writable view. Binding it is exclusive and the kernel releases it
 *   when the holder exits, kill -9 included: a dead holder never leaves the volume locked;
 * - the lock file `ddfs.lock` in the parent (format/lock_record.ts) names the holder: tool, pid, start time, boot
 *   id. It is written after the socket is bound, created O_CREAT | O_EXCL | O_NOFOLLOW, and removed on release. A
 *   file left by a dead holder is stale and replaced; a live holder named there (pid alive with the same start time
 *   in the same boot) refuses the lock even when the socket was free, which covers takers in another network
 *   namespace that share the pid namespace. A lock file that is a symlink, a directory, a FIFO or anything but a
 *   small regular file is refused and left alone (the administrator removes it);
 * - on a read-only file system no lock file can be written: the socket alone excludes then.
 * - shared (takeSharedVolumeLock): read-only mirror passes of an unmounted master (mirrorddumbfs copy, read, serve
 *   master) run side by side. A reader takes the exclusive name only for a moment (the gate: its record's tool is
 *   `gate-TOOL`), checks that no live writer is named in the lock file, binds its own name
 *   `\0ddumbfs-ts/volume-lock/DEV:INO/reader/PID-RANDOM` (released by the kernel when it dies, as the exclusive name)
 *   and leaves the gate. An exclusive taker, once it holds the exclusive name, lists the reader names of the volume
 *   (/proc/net/unix) and refuses while there is one. So a writer and a reader never overlap: whichever binds the
 *   exclusive name first wins. Readers write no lock file. Where /proc/net/unix cannot be read, the shared lock is
 *   the exclusive one.
 * - per replica (takeReplicaLock): `\0ddumbfs-ts/volume-lock/DEV:INO/replica/UUID`, held by a master pass while it
 *   serves the replica UUID, so two passes to one replica (whose records under ddfsmirror/slaves/ they both write)
 *   never run at once.
 *
 * Limits: advisory (ddumbfs 1.1's tools and anything else ignore it); one host only (a parent on NFS shared by two
 * hosts is not protected); takers must share the network namespace or the pid namespace; Linux only.
 */
import * as path from 'node:path';
import { DdfsError, messageOf } from '../errors.js';
import { LOCK_FILE } from '../format/layout.js';
import { parseLockRecord, renderLockRecord, type LockRecord } from '../format/lock_record.js';
import {
  bindExclusiveName, bootId, createLockFile, directoryIdentity, listAbstractNames, processStartTicks, queryExclusiveName, readLockFile, removeLockFile,
  type HeldName, type LockFileState,
} from '../io/exclusive_lock.js';
import { randomBytes } from 'node:crypto';
import { LOCK_GATE_RETRY_COUNT, LOCK_GATE_RETRY_DELAY_MS, LOCK_QUERY_TIMEOUT_MS, LOCK_RECORD_SIZE_MAX } from '../limits.js';

/** Who holds a volume. */
export interface LockHolder {
  tool: string;
  pid: number;
  /** When the lock was taken (ISO 8601). */
  time: string;
}

/** A volume lock held by this process. */
export interface VolumeLock {
  readonly parentDir: string;
  /** The lock file, or null when it could not be written (read-only file system). */
  readonly lockPath: string | null;
  readonly holder: LockHolder;
  /** Whether it is a shared (reader) lock: other readers may hold the volume too (takeSharedVolumeLock). */
  readonly shared: boolean;
  /** Remove the lock file (if still ours) and release the lock; idempotent, never throws. */
  release(): Promise<void>;
  /**
   * Run `fn` when no other process can be working on the volume: at once for an exclusive lock; for a shared one,
   * holding the gate (no reader or writer can start meanwhile) and only if this is the only reader.
   * @returns fn's result, or null when it was not run (another reader holds the volume, or the gate stayed busy)
   */
  alone<T>(fn: () => Promise<T>): Promise<T | null>;
}

/** The tool a reader names while it holds the gate (volume/lock.ts shared lock). */
const GATE_TOOL_PREFIX = 'gate-';

function lockNameOf(parentDir: string): string {
  let id: { dev: bigint; ino: bigint };
  try {
    id = directoryIdentity(parentDir);
  } catch (err) {
    throw new DdfsError('NOT_FOUND', `${parentDir}: ${messageOf(err)}`, { path: parentDir }, err);
  }
  return `ddumbfs-ts/volume-lock/${id.dev}:${id.ino}`;
}

/** The prefix of the reader names of the volume whose exclusive name is `name`. */
const readerPrefixOf = (name: string): string => `${name}/reader/`;

/** The record a lock name answers with, or null. */
async function recordAt(name: string): Promise<LockRecord | null> {
  const answer = await queryExclusiveName(name, LOCK_RECORD_SIZE_MAX, LOCK_QUERY_TIMEOUT_MS);
  return answer === null ? null : parseLockRecord(answer);
}

/**
 * The readers holding the volume of exclusive name `name` other than `except`: their count and the first one's
 * holder (null when it did not answer).
 */
async function otherReaders(name: string, except: string | null): Promise<{ count: number; first: LockHolder | null } | null> {
  const names = listAbstractNames(readerPrefixOf(name));
  if (names === null) return null;
  const others = names.filter((n) => n !== except);
  if (others.length === 0) return { count: 0, first: null };
  const r = await recordAt(others[0]!);
  return { count: others.length, first: r ? holderOf(r) : null };
}

function readersError(parentDir: string, readers: { count: number; first: LockHolder | null }): DdfsError {
  const h = readers.first;
  const who = h ? `${h.tool} (pid ${h.pid}, since ${h.time})` : 'a reader (pid unknown)';
  const more = readers.count > 1 ? ` and ${readers.count - 1} other reader${readers.count > 2 ? 's' : ''}` : '';
  return new DdfsError('LOCKED', `${parentDir}: volume in use by ${who}${more} (a shared lock: read-only mirror passes); try again when they have finished`, {
    path: parentDir, pid: h?.pid, tool: h?.tool,
  });
}

/** Whether the process a record names is still the one that wrote it (same boot, same pid, same start time). */
function isLive(r: LockRecord): boolean {
  const boot = bootId();
  if (r.bootId !== '-' && boot !== null && r.bootId !== boot) return false;
  return processStartTicks(r.pid) === r.startTicks;
}

function holderOf(r: LockRecord): LockHolder {
  return { tool: r.tool, pid: r.pid, time: r.time };
}

/** The live holder named by the lock file, if any. */
function liveHolderInFile(lockPath: string): LockHolder | null {
  try {
    const state = readLockFile(lockPath, LOCK_RECORD_SIZE_MAX);
    if (state.kind !== 'file') return null;
    const r = parseLockRecord(state.text);
    return r && isLive(r) ? holderOf(r) : null;
  } catch {
    return null;
  }
}

function lockedError(parentDir: string, holder: LockHolder | null): DdfsError {
  const who = holder ? `${holder.tool} (pid ${holder.pid}, since ${holder.time})` : 'another process (pid unknown)';
  return new DdfsError('LOCKED', `${parentDir}: volume in use by ${who}; try again when it has finished`, {
    path: parentDir, pid: holder?.pid, tool: holder?.tool,
  });
}

/**
 * Who holds the volume whose parent is `parentDir`, without taking anything: the socket's holder answers with its
 * record; else the lock file's record when its process is alive.
 * @returns the holder, or null when the volume is not locked (as far as can be told)
 */
export async function readVolumeLockHolder(parentDir: string): Promise<LockHolder | null> {
  const parent = path.resolve(parentDir);
  const answer = await queryExclusiveName(lockNameOf(parent), LOCK_RECORD_SIZE_MAX, LOCK_QUERY_TIMEOUT_MS);
  const r = answer === null ? null : parseLockRecord(answer);
  if (r) return holderOf(r);
  return liveHolderInFile(path.join(parent, LOCK_FILE));
}

/**
 * Take the volume lock of the parent directory `parentDir` for `tool` (a command name, [a-z0-9_-]).
 * Nothing is written when it refuses.
 * @returns the held lock; release it when done (the process exiting releases it too, but leaves a stale lock file)
 * @throws DdfsError LOCKED (held by another process: the message names its tool and pid), INVALID (the lock file
 *   is a symlink or not a regular file), NOT_FOUND (no such parent), IO (the lock file cannot be written)
 */
export async function takeVolumeLock(parentDir: string, tool: string): Promise<VolumeLock> {
  const parent = path.resolve(parentDir);
  const lockPath = path.join(parent, LOCK_FILE);
  const name = lockNameOf(parent);
  const record: LockRecord = {
    tool,
    pid: process.pid,
    startTicks: processStartTicks(process.pid) ?? '0',
    bootId: bootId() ?? '-',
    time: new Date().toISOString(),
  };
  const text = renderLockRecord(record);
  let held: HeldName | null;
  try {
    held = await bindExclusiveName(name, () => text);
  } catch (err) {
    throw new DdfsError('IO', `${parent}: cannot take the volume lock: ${messageOf(err)}`, { path: parent }, err);
  }
  if (!held) {
    const answer = await queryExclusiveName(name, LOCK_RECORD_SIZE_MAX, LOCK_QUERY_TIMEOUT_MS);
    const r = answer === null ? null : parseLockRecord(answer);
    throw lockedError(parent, r ? holderOf(r) : liveHolderInFile(lockPath));
  }
  // readers of a shared lock bound their names under the gate (this name): none can start now, none may be running
  const readers = await otherReaders(name, null);
  if (readers !== null && readers.count > 0) {
    await held.release();
    throw readersError(parent, readers);
  }
  let ino: bigint | null;
  try {
    ino = writeLockFile(parent, lockPath, text);
  } catch (err) {
    await held.release();
    throw err;
  }
  const socket = held;
  let released: Promise<void> | null = null;
  return {
    parentDir: parent,
    lockPath: ino === null ? null : lockPath,
    holder: holderOf(record),
    shared: false,
    alone: (fn) => fn(),
    release: () => {
      released ??= (async () => {
        // the file first: once the socket is free a new holder may write its own file, which must stay
        try {
          if (ino !== null) removeLockFile(lockPath, ino);
        } catch {
          // a lock file left behind is stale: the next taker replaces it
        }
        await socket.release();
      })();
      return released;
    },
  };
}

/**
 * With the socket held: replace a stale lock file by ours.
 * @returns our file's inode, or null on a read-only file system (no file then)
 */
function writeLockFile(parent: string, lockPath: string, text: string): bigint | null {
  let state: LockFileState;
  try {
    state = readLockFile(lockPath, LOCK_RECORD_SIZE_MAX);
  } catch (err) {
    throw new DdfsError('IO', `${lockPath}: cannot read the lock file: ${messageOf(err)}`, { path: lockPath }, err);
  }
  if (state.kind === 'symlink') {
    throw new DdfsError('INVALID', `${lockPath}: the lock file is a symbolic link: refused (remove it if no ddumbfs tool is running)`, { path: lockPath });
  }
  if (state.kind === 'other') {
    throw new DdfsError('INVALID', `${lockPath}: not a lock file (not a small regular file): refused (remove it if no ddumbfs tool is running)`, { path: lockPath });
  }
  if (state.kind === 'file') {
    const r = parseLockRecord(state.text);
    // a live holder that did not answer on the socket: it does not share our network namespace
    if (r && r.pid !== process.pid && isLive(r)) throw lockedError(parent, holderOf(r));
    // stale: its holder is gone (or it is not a record at all: a taker died before writing it)
    try {
      removeLockFile(lockPath, state.ino);
    } catch (err) {
      // a stale file on a file system mounted read-only since: it stays, the socket alone excludes
      if ((err as NodeJS.ErrnoException).code === 'EROFS') return null;
      throw new DdfsError('IO', `${lockPath}: cannot remove the stale lock file: ${messageOf(err)}`, { path: lockPath }, err);
    }
  }
  try {
    return createLockFile(lockPath, text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return null;
    if (code === 'EEXIST') throw lockedError(parent, liveHolderInFile(lockPath));
    throw new DdfsError('IO', `${lockPath}: cannot write the lock file: ${messageOf(err)}`, { path: lockPath }, err);
  }
}

/** Bind the exclusive name `name` as a reader's gate, retrying while another reader holds it for its moment. */
async function takeGate(parent: string, name: string, text: string): Promise<HeldName> {
  for (let attempt = 0; ; attempt++) {
    let held: HeldName | null;
    try {
      held = await bindExclusiveName(name, () => text);
    } catch (err) {
      throw new DdfsError('IO', `${parent}: cannot take the volume lock: ${messageOf(err)}`, { path: parent }, err);
    }
    if (held) return held;
    const r = await recordAt(name);
    // a writer holds it (or a holder that does not answer): refused at once; another reader's gate: a moment
    if (r === null || !r.tool.startsWith(GATE_TOOL_PREFIX) || attempt >= LOCK_GATE_RETRY_COUNT) {
      throw lockedError(parent, r ? holderOf(r) : liveHolderInFile(path.join(parent, LOCK_FILE)));
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_GATE_RETRY_DELAY_MS));
  }
}

/**
 * Take the volume lock of `parentDir` for `tool` shared with other readers (see the file comment): several
 * read-only mirror passes of an unmounted master at once, never beside a writer (the daemon, fsck's repair,
 * cpddumbfs upload, alterddumbfs, mkddumbfs, a slave's pass: takeVolumeLock). Nothing is written; `underGate`, when
 * given, runs while no reader or writer can start (a first pass creating the master's state file).
 * @returns the held lock (`shared` true; lockPath null); an exclusive one where readers cannot be listed
 * @throws DdfsError LOCKED (a writer holds the volume: the message names its tool and pid, with `data.tool`), NOT_FOUND,
 *   IO; what `underGate` throws (the lock is not held then)
 */
export async function takeSharedVolumeLock(parentDir: string, tool: string, underGate?: () => void): Promise<VolumeLock> {
  const parent = path.resolve(parentDir);
  const name = lockNameOf(parent);
  if (listAbstractNames(readerPrefixOf(name)) === null) {
    const lock = await takeVolumeLock(parent, tool);
    try {
      underGate?.();
    } catch (err) {
      await lock.release();
      throw err;
    }
    return lock;
  }
  const record: LockRecord = {
    tool, pid: process.pid, startTicks: processStartTicks(process.pid) ?? '0', bootId: bootId() ?? '-', time: new Date().toISOString(),
  };
  const text = renderLockRecord(record);
  const gateText = renderLockRecord({ ...record, tool: `${GATE_TOOL_PREFIX}${tool}` });
  const gate = await takeGate(parent, name, gateText);
  let reader: HeldName | null = null;
  const readerName = `${readerPrefixOf(name)}${process.pid}-${randomBytes(8).toString('hex')}`;
  try {
    // a writer of another network namespace (sharing the pid namespace) is named only in the lock file
    const inFile = liveHolderInFile(path.join(parent, LOCK_FILE));
    if (inFile !== null && inFile.pid !== process.pid) throw lockedError(parent, inFile);
    reader = await bindExclusiveName(readerName, () => text);
    if (reader === null) throw new DdfsError('IO', `${parent}: cannot take a shared volume lock: the reader name is in use`, { path: parent });
    underGate?.();
  } catch (err) {
    await reader?.release();
    await gate.release();
    if (err instanceof DdfsError) throw err;
    throw new DdfsError('IO', `${parent}: cannot take a shared volume lock: ${messageOf(err)}`, { path: parent }, err);
  }
  await gate.release();
  const held = reader;
  let released: Promise<void> | null = null;
  return {
    parentDir: parent,
    lockPath: null,
    holder: holderOf(record),
    shared: true,
    async alone<T>(fn: () => Promise<T>): Promise<T | null> {
      let g: HeldName;
      try {
        g = await takeGate(parent, name, gateText);
      } catch {
        return null;
      }
      try {
        const others = await otherReaders(name, readerName);
        if (others === null || others.count > 0) return null;
        return await fn();
      } finally {
        await g.release();
      }
    },
    release: () => (released ??= held.release()),
  };
}

/** A replica held by a master pass (takeReplicaLock). */
export interface ReplicaLock {
  release(): Promise<void>;
}

/**
 * Hold the replica `uuid` of the master at `parentDir` for one pass (see the file comment), so that two passes to one
 * replica never run at once (whatever locks the replica's own side takes: a mounted or remote slave).
 * @throws DdfsError BUSY when another pass to that replica holds it (naming its tool and pid), NOT_FOUND, IO
 */
export async function takeReplicaLock(parentDir: string, uuid: string, tool: string): Promise<ReplicaLock> {
  const parent = path.resolve(parentDir);
  const name = `${lockNameOf(parent)}/replica/${uuid}`;
  const record: LockRecord = {
    tool, pid: process.pid, startTicks: processStartTicks(process.pid) ?? '0', bootId: bootId() ?? '-', time: new Date().toISOString(),
  };
  let held: HeldName | null;
  try {
    held = await bindExclusiveName(name, () => renderLockRecord(record));
  } catch (err) {
    throw new DdfsError('IO', `${parent}: cannot hold replica ${uuid}: ${messageOf(err)}`, { path: parent }, err);
  }
  if (held === null) {
    const r = await recordAt(name);
    const who = r ? `${r.tool} (pid ${r.pid}, since ${r.time})` : 'another process (pid unknown)';
    throw new DdfsError('BUSY', `${parent}: a pass to replica ${uuid} is already running (${who}): one pass per replica at a time; try again when it has finished`, { path: parent, pid: r?.pid, tool: r?.tool });
  }
  return held;
}
