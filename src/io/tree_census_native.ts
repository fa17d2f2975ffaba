/**
 * treeCensus (journal_dir.ts, the seal's census of mirroring spec §4.3) through glibc directly: getdents64(2) of each
 * directory and one statx(2) per entry relative to the directory's fd (no path resolved from the root per entry, no
 * Stats object per entry). Half the CPU of the node:fs walk on a tree of small directories; it runs on the census
 * worker thread (census_worker.ts), beside an unmounted master's incremental pass, where its time is the pass's floor.
 *
 * Same result as treeCensus (test/tree_census.test.ts compares them): the entries under the root (not the root), the
 * exact highest ctime in ns, the root's included; lstat semantics (AT_SYMLINK_NOFOLLOW: a symlink is counted, never
 * followed); no other file system entered (a directory of another device is counted, not walked); at most `depthMax`
 * levels; `skipTopNames` left out at the top with all they hold; an entry or directory gone meanwhile is skipped, and so
 * is a directory that may not be read (EACCES, as treeCensus's readdir does). Any other failure throws: a census of
 * part of the tree is never returned.
 *
 * Paths are raw bytes (Buffers, NUL-terminated for the calls); a directory is opened by its full path after its
 * parent's fd is closed, so one fd is open at a time whatever the depth.
 *
 * A census can be split between threads (`share`, censusShareOf): every share lists every directory and statx's
 * every entry that may be a directory (d_type DT_DIR or DT_UNKNOWN: the walk must know where to descend), but counts
 * and statx's the other entries of a directory only in the share that owns it (an FNV-1a hash of the directory's
 * path bytes). So on a static tree each entry is counted by exactly one share, the sums of the counts and the
 * maximum of the highest ctimes are the census of one walk, and the statx calls of files (most of the work) are
 * divided. A share also keeps the ctime of every directory it statx'd: a maximum over more entries of the same tree
 * is the same maximum, and on a tree that changes meanwhile (a foreign writer: the census runs under the volume lock)
 * it can only see a change sooner, as a single walk that is not atomic either.
 */
import { constants as osc } from 'node:os';
import { DdfsError } from '../errors.js';
import { lastNativeErrno, nativeFunctions } from './ffi.js';
import type { TreeCensus } from './journal_dir.js';

type OpenatFn = (dirfd: number, path: Buffer, flags: number, mode: number) => number;
type CloseFn = (fd: number) => number;
type Getdents64Fn = (fd: number, buf: Buffer, count: number) => number | bigint;
type StatxFn = (dirfd: number, path: Buffer, flags: number, mask: number, buf: Buffer) => number;
const libc = nativeFunctions<{ openat: OpenatFn; close: CloseFn; getdents64: Getdents64Fn; statx: StatxFn }>('libc.so.6', {
  openat: 'int openat(int dirfd, const uint8_t *path, int flags, int mode)',
  close: 'int close(int fd)',
  getdents64: 'intptr_t getdents64(int fd, uint8_t *buf, size_t count)',
  statx: 'int statx(int dirfd, const uint8_t *path, int flags, unsigned int mask, uint8_t *buf)',
});

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_NO_AUTOMOUNT = 0x800;
const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const STATX_TYPE = 0x1;
const STATX_CTIME = 0x80;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const { ENOENT, EACCES, ENOTDIR, ELOOP } = osc.errno;
/** struct statx offsets (linux/stat.h, the same on every architecture). */
const STX_MODE = 28;
const STX_CTIME_SEC = 96;
const STX_CTIME_NSEC = 104;
const STX_DEV_MAJOR = 136;
const STX_DEV_MINOR = 140;
const STATX_SIZE = 256;
/** struct linux_dirent64: d_reclen at 16, d_type at 18, d_name from 19 (NUL-terminated). */
const DIRENT_RECLEN = 16;
const DIRENT_TYPE = 18;
/** d_type values (dirent.h): the file system did not say, and a directory. */
const DT_UNKNOWN = 0;
const DT_DIR = 4;
const DIRENT_NAME = 19;
const DIRENTS_BUFFER_BYTES = 64 * 1024;
const NS_PER_SECOND = 1_000_000_000n;

function nativeError(call: string, p: Buffer, errno: number): DdfsError {
  const code = Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
  return new DdfsError('IO', `${code}: ${call} of ${p.toString('latin1')} failed: the census is not complete`, { errno, code });
}

/**
 * Bind the native calls of nativeTreeCensus now (loading koffi in this thread): a census thread does it before the
 * next one starts (journal_dir.ts startTreeCensus, ffi.ts loadKoffiHere).
 * @returns false when they cannot be bound (the census then falls back to the node:fs walk)
 */
export function bindNativeCensus(): boolean {
  try {
    libc();
    return true;
  } catch {
    return false;
  }
}

/**
 * End a census walk whose result is no longer wanted: a stop asked through `stopFlag` (element 0 non-zero, set by
 * the thread that started the census). A census thread is stopped this way, at a directory boundary, never by
 * Worker.terminate() while it may be inside a native call (koffi aborts the process then).
 * @throws DdfsError INTERRUPTED when the flag is set
 */
export function throwIfCensusStopped(stopFlag: Int32Array | undefined): void {
  if (stopFlag !== undefined && Atomics.load(stopFlag, 0) !== 0) throw new DdfsError('INTERRUPTED', 'the census was stopped');
}

/** One of `parts` shares of a census split between threads (see the file comment); `part` in [0, parts). */
export interface CensusShare {
  part: number;
  parts: number;
}

/**
 * The share that owns (counts the entries of) the directory at `dir`: FNV-1a (32 bits) of its path bytes, modulo
 * `parts`. Every share computes the same owner from the same bytes, whatever order it walks in.
 * @returns an integer in [0, parts)
 */
export function censusShareOf(dir: Buffer, parts: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < dir.length; i++) h = Math.imul(h ^ dir[i]!, 0x01000193) >>> 0;
  return h % parts;
}

/**
 * The census of the tree under `root` (see the file comment), as treeCensus gives it; with `share`, that share of
 * it (the counts of all shares add up to the census, their highest ctimes' maximum is its highest ctime).
 * With `stopFlag` (a SharedArrayBuffer view another thread sets to 1, startTreeCensus's stop), the walk stops before
 * the next directory once it is set.
 * @throws DdfsError IO when the root cannot be read, or an entry cannot be listed or stat'ed for another reason than
 *   being gone (EACCES on a directory excepted); INTERRUPTED once `stopFlag` is set; Error from the dynamic loader
 *   when glibc lacks statx/getdents64
 */
export function nativeTreeCensus(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set(), share?: CensusShare, stopFlag?: Int32Array): TreeCensus {
  if (share !== undefined && !(Number.isInteger(share.parts) && share.parts >= 1 && Number.isInteger(share.part) && share.part >= 0 && share.part < share.parts)) {
    throw new DdfsError('INVALID', `census share ${share.part} of ${share.parts} is not a share`);
  }
  const c = libc();
  const st = Buffer.alloc(STATX_SIZE);
  const dents = Buffer.allocUnsafe(DIRENTS_BUFFER_BYTES);
  const flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT;
  const mask = STATX_TYPE | STATX_CTIME;
  const rootZ = Buffer.concat([root, Buffer.from([0])]);
  if (c.statx(AT_FDCWD, rootZ, flags, mask, st) !== 0) throw nativeError('statx', root, lastNativeErrno());
  const devMajor = st.readUInt32LE(STX_DEV_MAJOR);
  const devMinor = st.readUInt32LE(STX_DEV_MINOR);
  // the highest ctime as (seconds, ns): both exact as doubles (seconds below 2^53), compared in that order
  let maxSec = Number(st.readBigInt64LE(STX_CTIME_SEC));
  let maxNsec = st.readUInt32LE(STX_CTIME_NSEC);
  let entryCount = 0;
  const slash = Buffer.from('/');
  const walk = (dir: Buffer, depth: number): void => {
    if (depth > depthMax) return;
    throwIfCensusStopped(stopFlag);
    const dirZ = Buffer.concat([dir, Buffer.from([0])]);
    const fd = c.openat(AT_FDCWD, dirZ, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
      const errno = lastNativeErrno();
      // gone or replaced since its parent was listed, or not readable (treeCensus's readdir skips it too)
      if (errno === ENOENT || errno === ENOTDIR || errno === ELOOP || errno === EACCES) return;
      throw nativeError('open', dir, errno);
    }
    const subdirs: Buffer[] = [];
    const owned = share === undefined || censusShareOf(dir, share.parts) === share.part;
    try {
      for (;;) {
        const n = Number(c.getdents64(fd, dents, dents.length));
        if (n === 0) break;
        if (n < 0) {
          const errno = lastNativeErrno();
          if (errno === ENOENT) break; // the directory was removed while listed
          throw nativeError('getdents64', dir, errno);
        }
        for (let off = 0; off < n;) {
          const reclen = dents.readUInt16LE(off + DIRENT_RECLEN);
          const nameAt = off + DIRENT_NAME;
          const dType = dents[off + DIRENT_TYPE];
          let end = nameAt;
          while (dents[end] !== 0) end++;
          off += reclen;
          const len = end - nameAt;
          if (dents[nameAt] === 0x2e && (len === 1 || (len === 2 && dents[nameAt + 1] === 0x2e))) continue; // . and ..
          if (depth === 1 && skipTopNames.has(dents.toString('latin1', nameAt, end))) continue;
          if (!owned && dType !== DT_DIR && dType !== DT_UNKNOWN) continue; // another share's entry, and no directory
          // the name with its NUL, in place in the listing
          if (c.statx(fd, dents.subarray(nameAt, end + 1), flags, mask, st) !== 0) {
            const errno = lastNativeErrno();
            if (errno === ENOENT) continue; // removed since the listing
            throw nativeError('statx', Buffer.concat([dir, slash, dents.subarray(nameAt, end)]), errno);
          }
          if (owned) entryCount++;
          const sec = Number(st.readBigInt64LE(STX_CTIME_SEC));
          const nsec = st.readUInt32LE(STX_CTIME_NSEC);
          if (sec > maxSec || (sec === maxSec && nsec > maxNsec)) {
            maxSec = sec;
            maxNsec = nsec;
          }
          if ((st.readUInt16LE(STX_MODE) & S_IFMT) === S_IFDIR && st.readUInt32LE(STX_DEV_MAJOR) === devMajor && st.readUInt32LE(STX_DEV_MINOR) === devMinor) {
            subdirs.push(Buffer.concat([dir, slash, dents.subarray(nameAt, end)]));
          }
        }
      }
    } finally {
      c.close(fd);
    }
    for (const s of subdirs) walk(s, depth + 1);
  };
  walk(root, 1);
  return { entryCount, ctimeMaxNs: BigInt(maxSec) * NS_PER_SECOND + BigInt(maxNsec) };
}
