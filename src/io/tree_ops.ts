/**
 * The raw system calls that change the UFS tree (spec §7, §8.3), on byte paths (Buffer: names that are not UTF-8
 * reach the UFS unchanged). Only volume/tree.ts calls these: it is the one place where the tree changes.
 *
 * Invariants:
 * - every call is a synchronous syscall: a few µs on a cached inode, against ≈250 µs through the libuv pool where
 *   it would also queue behind block I/O (the daemon's small-file speed depends on it, see fs/ops.ts);
 * - symlinks are never followed for the object named (lchown, utimensat with AT_SYMLINK_NOFOLLOW, O_NOFOLLOW);
 * - errors are Node system errors (code, errno, syscall) unchanged, so FUSE answers the host's errno.
 * The two calls Node lacks (mknod of a device or fifo, utimensat with nanoseconds and UTIME_NOW/UTIME_OMIT) come
 * from the daemon's native binding, injected as `NativeTreeCalls` (io/ must not import fuse-native).
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import { constants as osc } from 'node:os';
import { DdfsError } from '../errors.js';

/** A time for utimens: seconds and nanoseconds; nsec may be UTIME_NOW or UTIME_OMIT (linux/stat.h). */
export interface TreeTimespec {
  sec: number;
  nsec: number;
}

/** utimens nsec values (linux/stat.h). */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

/** Syscalls Node does not offer; each returns 0 or a negative errno. */
export interface NativeTreeCalls {
  /** mknod(path, mode, dev). */
  mknod(path: Buffer, mode: number, dev: number): number;
  /** utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW). */
  utimensat(path: Buffer, atime: TreeTimespec, mtime: TreeTimespec): number;
}

/** A Node-style system error for a negative errno returned by a native call. */
function errnoError(negErrno: number, syscall: string, p: Buffer): NodeJS.ErrnoException {
  const errno = -negErrno;
  const code = Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${syscall} '${p.toString('latin1')}'`), { errno: -errno, code, syscall });
}

/** Create an empty regular file (O_EXCL). @returns false when it existed and `exclusive` is false. @throws EEXIST when exclusive */
export function createRegularFile(p: Buffer, mode: number, exclusive: boolean): boolean {
  try {
    fs.closeSync(fs.openSync(p, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW, mode & 0o7777));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || exclusive) throw err;
    return false;
  }
}

/** mkdir with the permission bits of `mode`. @throws Node errors (EEXIST, ENOENT...) */
export function makeDirectory(p: Buffer, mode: number): void {
  fs.mkdirSync(p, { mode: mode & 0o7777 });
}

/** rmdir. @throws Node errors (ENOTEMPTY, ENOTDIR...) */
export function removeDirectory(p: Buffer): void {
  fs.rmdirSync(p);
}

/** unlink a non-directory. @throws Node errors */
export function unlinkEntry(p: Buffer): void {
  fs.unlinkSync(p);
}

/** rename(2), replacing `dest` as POSIX says. @throws Node errors */
export function renameEntry(src: Buffer, dest: Buffer): void {
  fs.renameSync(src, dest);
}

/** A hard link `dest` to the inode at `src`. @throws Node errors */
export function linkEntry(src: Buffer, dest: Buffer): void {
  fs.linkSync(src, dest);
}

/** A symlink at `p` holding `target` (bytes, unchanged). @throws Node errors */
export function makeSymlink(target: Buffer, p: Buffer): void {
  fs.symlinkSync(target, p);
}

/**
 * mknod: a regular file (S_IFREG or type 0) is created empty with node:fs; any other type needs `native`.
 * @throws DdfsError NOT_SUPPORTED for a device/fifo/socket without native calls; Node errors otherwise
 */
export function makeNode(p: Buffer, mode: number, dev: number, native: NativeTreeCalls | null): void {
  const type = mode & fsc.S_IFMT;
  if (type === fsc.S_IFREG || type === 0) {
    createRegularFile(p, mode, true);
    return;
  }
  if (!native) throw new DdfsError('NOT_SUPPORTED', `${p.toString('latin1')}: mknod of a special file needs the daemon's native binding`);
  const res = native.mknod(p, mode, dev);
  if (res < 0) throw errnoError(res, 'mknod', p);
}

/** chmod with the permission bits of `mode` (follows a symlink, as chmod(2); FUSE never chmods a symlink). */
export function changeMode(p: Buffer, mode: number): void {
  fs.chmodSync(p, mode & 0o7777);
}

/** lchown; -1 leaves an id unchanged. */
export function changeOwner(p: Buffer, uid: number, gid: number): void {
  fs.lchownSync(p, uid, gid);
}

/**
 * Set access and modification times without following a symlink. Without native calls the times go through
 * lutimes in seconds (nanoseconds rounded by Node; UTIME_OMIT keeps the current time, UTIME_NOW takes now).
 */
export function changeTimes(p: Buffer, atime: TreeTimespec, mtime: TreeTimespec, native: NativeTreeCalls | null): void {
  if (native) {
    const res = native.utimensat(p, atime, mtime);
    if (res < 0) throw errnoError(res, 'utimensat', p);
    return;
  }
  const st = fs.lstatSync(p);
  const nowSeconds = Date.now() / 1000;
  const seconds = (t: TreeTimespec, current: number): number =>
    t.nsec === UTIME_OMIT ? current : t.nsec === UTIME_NOW ? nowSeconds : t.sec + t.nsec / 1e9;
  fs.lutimesSync(p, seconds(atime, st.atimeMs / 1000), seconds(mtime, st.mtimeMs / 1000));
}

/** st_mode of a directory (stat); used for the setgid rule of new objects. @throws Node errors */
export function directoryMode(p: Buffer): number {
  return fs.statSync(p).mode;
}

/** What `p` names (lstat, never following a symlink). @throws Node errors (ENOENT, ENOTDIR...) unchanged */
export function entryKind(p: Buffer): 'file' | 'directory' | 'other' {
  const st = fs.lstatSync(p);
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : 'other';
}
