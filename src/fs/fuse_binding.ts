/**
 * Typed wrapper over the patched fuse-native 2.2.6 (patches/fuse-native+2.2.6.patch), the only import of
 * fuse-native in the product (style.md: each third-party library lives in one module).
 *
 * Calling convention of the patched binding (see the header of node_modules/fuse-native/fuse-native.c):
 * - every op gets its arguments, a node-style callback whose first argument is 0 / a negative errno (or a byte
 *   count for read/write), then the caller's context {uid, gid, pid, umask} captured with fuse_get_context() in the
 *   FUSE thread;
 * - paths and names are byte strings ("latin1": one char per byte, see byte_path.ts), so names that are not UTF-8
 *   survive; a path may be null for an unlinked open file;
 * - times are signed seconds + nanoseconds: pre-1970 and sub-millisecond times round-trip; utimens receives
 *   UTIME_NOW / UTIME_OMIT in `nsec` unchanged;
 * - open/create answer (res, fh, fiFlags) where fiFlags may ask for direct_io / keep_cache / nonseekable;
 * - `options` are raw libfuse -o options (a value of 0 is kept).
 * The binary is built from the patched source (scripts/setup.sh); node-gyp-build loads build/Release first.
 */
import { createRequire } from 'node:module';

/** A path or name as a byte string: each char code (0..255) is one byte of the name. */
export type BytePath = string;

/** Caller of a FUSE request (fuse_get_context()). */
export interface FuseContext {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

/** struct timespec as utimens receives it; nsec may be UTIME_NOW or UTIME_OMIT. */
export interface FuseTimespec {
  sec: number;
  nsec: number;
}

/**
 * A stat answer. Times: `*timeNs` (bigint ns since the epoch, may be negative) win over `*time` (Date or ms number,
 * fraction kept). 64-bit fields accept bigint.
 */
export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number | bigint;
  dev?: number | bigint;
  nlink: number | bigint;
  ino: number | bigint;
  rdev?: number | bigint;
  blksize?: number | bigint;
  blocks?: number | bigint;
  atimeNs?: bigint;
  mtimeNs?: bigint;
  ctimeNs?: bigint;
  atime?: Date | number;
  mtime?: Date | number;
  ctime?: Date | number;
}

/** A statfs answer (64-bit counters accept bigint). */
export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number | bigint;
  bfree: number | bigint;
  bavail: number | bigint;
  files: number | bigint;
  ffree: number | bigint;
  favail: number | bigint;
  fsid?: number;
  flag?: number;
  namemax: number;
}

/** Callback of an op without a result: 0 or a negative errno. */
export type FuseDone = (res: number) => void;
export type FuseStatDone = (res: number, stat?: FuseStat) => void;
/** open/create: fh (a non-zero integer below 2^31) and fuse_file_info flags (FI_*). */
export type FuseOpenDone = (res: number, fh?: number, fiFlags?: number) => void;

/** The op table in the patched calling convention. */
export interface FuseOps {
  init?(cb: FuseDone): void;
  getattr(path: BytePath, cb: FuseStatDone, ctx: FuseContext): void;
  fgetattr(path: BytePath | null, fh: number, cb: FuseStatDone, ctx: FuseContext): void;
  readdir(path: BytePath, cb: (res: number, names?: BytePath[], stats?: FuseStat[]) => void, ctx: FuseContext): void;
  access(path: BytePath, mode: number, cb: FuseDone, ctx: FuseContext): void;
  statfs(path: BytePath, cb: (res: number, statfs?: FuseStatfs) => void, ctx: FuseContext): void;
  readlink(path: BytePath, cb: (res: number, target?: BytePath) => void, ctx: FuseContext): void;
  mkdir(path: BytePath, mode: number, cb: FuseDone, ctx: FuseContext): void;
  rmdir(path: BytePath, cb: FuseDone, ctx: FuseContext): void;
  unlink(path: BytePath, cb: FuseDone, ctx: FuseContext): void;
  rename(src: BytePath, dest: BytePath, cb: FuseDone, ctx: FuseContext): void;
  link(src: BytePath, dest: BytePath, cb: FuseDone, ctx: FuseContext): void;
  /** `target` is the content of the new link, `path` the link itself. */
  symlink(target: BytePath, path: BytePath, cb: FuseDone, ctx: FuseContext): void;
  chmod(path: BytePath, mode: number, cb: FuseDone, ctx: FuseContext): void;
  chown(path: BytePath, uid: number, gid: number, cb: FuseDone, ctx: FuseContext): void;
  utimens(path: BytePath, atime: FuseTimespec, mtime: FuseTimespec, cb: FuseDone, ctx: FuseContext): void;
  mknod(path: BytePath, mode: number, dev: number, cb: FuseDone, ctx: FuseContext): void;
  truncate(path: BytePath, size: number, cb: FuseDone, ctx: FuseContext): void;
  ftruncate(path: BytePath | null, fh: number, size: number, cb: FuseDone, ctx: FuseContext): void;
  open(path: BytePath, flags: number, cb: FuseOpenDone, ctx: FuseContext): void;
  create(path: BytePath, mode: number, flags: number, cb: FuseOpenDone, ctx: FuseContext): void;
  /** cb(bytes read | negative errno); `buf` is FUSE's own memory, valid until cb. */
  read(path: BytePath | null, fh: number, buf: Buffer, length: number, offset: number, cb: (res: number) => void, ctx: FuseContext): void;
  /** cb(bytes written | negative errno); `buf` is FUSE's own memory, valid until cb. */
  write(path: BytePath | null, fh: number, buf: Buffer, length: number, offset: number, cb: (res: number) => void, ctx: FuseContext): void;
  flush(path: BytePath | null, fh: number, cb: FuseDone, ctx: FuseContext): void;
  fsync(path: BytePath | null, datasync: number, fh: number, cb: FuseDone, ctx: FuseContext): void;
  fsyncdir(path: BytePath, datasync: number, fh: number, cb: FuseDone, ctx: FuseContext): void;
  release(path: BytePath | null, fh: number, cb: FuseDone, ctx: FuseContext): void;
  opendir(path: BytePath, flags: number, cb: FuseOpenDone, ctx: FuseContext): void;
  releasedir(path: BytePath | null, fh: number, cb: FuseDone, ctx: FuseContext): void;
  /** `value` is FUSE's own memory, valid until cb; `flags` XATTR_CREATE / XATTR_REPLACE. */
  setxattr(path: BytePath, name: BytePath, value: Buffer, flags: number, cb: FuseDone, ctx: FuseContext): void;
  /**
   * `size` is the caller's buffer in bytes; 0 asks for the value's length. cb(0, value) answers the value (or its
   * length when size is 0); a value longer than a non-zero `size` answers ERANGE (done here, see XattrFuse).
   */
  getxattr(path: BytePath, name: BytePath, size: number, cb: (res: number, value?: Buffer) => void, ctx: FuseContext): void;
  /** cb(0, names): each name's bytes; `size` as for getxattr (the NUL-separated list's length). */
  listxattr(path: BytePath, size: number, cb: (res: number, names?: Buffer[]) => void, ctx: FuseContext): void;
  removexattr(path: BytePath, name: BytePath, cb: FuseDone, ctx: FuseContext): void;
}

interface FuseNativeOptions {
  timeout: false | number;
  options: string[];
  onExit: () => void;
}

interface FuseNativeInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

interface FuseNativeClass {
  new (mnt: string, ops: FuseOps, opts: FuseNativeOptions): FuseNativeInstance;
  unmount(mnt: string, cb: (err: Error | null) => void): void;
  hostUtimensat(path: BytePath, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): number;
  hostMknod(path: BytePath, mode: number, dev: number): number;
  hostSetNoAtime(fd: number): number;
  setAttrCache(ms: number): number[];
  setUfsAnswers(on: boolean): void;
  UTIME_NOW: number;
  UTIME_OMIT: number;
  FI_DIRECT_IO: number;
  FI_KEEP_CACHE: number;
  FI_NONSEEKABLE: number;
}

const require = createRequire(import.meta.url);
let loaded: FuseNativeClass | null = null;

/** errno values of the xattr answers (Linux). */
const ERANGE = 34;

type Signal = (res: number, ...rest: unknown[]) => void;
interface XattrHost {
  ops: FuseOps;
}

/**
 * fuse-native's JS layer with its xattr answers replaced (its _op_* methods are looked up by name per request).
 * Upstream's getxattr/listxattr never tell the op the caller's buffer size, copy a longer value short yet answer
 * its full length (libfuse 2 then replies with bytes beyond its buffer), write names as UTF-8, and pad a list
 * size probe by 128 bytes. Here: the op gets `size`; a size probe (size 0) answers the exact length; a value or
 * list longer than a non-zero size answers ERANGE, as getxattr(2) does; names are raw bytes.
 */
function withXattrAnswers(cls: FuseNativeClass): FuseNativeClass {
  const Base = cls as unknown as new (...args: unknown[]) => object;
  class XattrFuse extends Base {
    _op_setxattr(this: XattrHost, signal: Signal, path: BytePath, name: BytePath, value: Buffer, _position: number, flags: number, ctx: FuseContext): void {
      this.ops.setxattr(path, name, value, flags, (res) => signal(res, value.buffer), ctx);
    }

    _op_getxattr(this: XattrHost, signal: Signal, path: BytePath, name: BytePath, valueBuf: Buffer, _position: number, ctx: FuseContext): void {
      this.ops.getxattr(path, name, valueBuf.length, (res, value) => {
        if (res < 0 || !value) return signal(res < 0 ? res : -ERANGE, valueBuf.buffer);
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(-ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        return signal(value.length, valueBuf.buffer);
      }, ctx);
    }

    _op_listxattr(this: XattrHost, signal: Signal, path: BytePath, listBuf: Buffer, ctx: FuseContext): void {
      this.ops.listxattr(path, listBuf.length, (res, names) => {
        if (res < 0 || !names) return signal(res < 0 ? res : -ERANGE, listBuf.buffer);
        const size = names.reduce((n, name) => n + name.length + 1, 0);
        if (listBuf.length === 0) return signal(size, listBuf.buffer);
        if (size > listBuf.length) return signal(-ERANGE, listBuf.buffer);
        let at = 0;
        for (const name of names) {
          at += name.copy(listBuf, at);
          listBuf[at++] = 0;
        }
        return signal(at, listBuf.buffer);
      }, ctx);
    }

    _op_removexattr(this: XattrHost, signal: Signal, path: BytePath, name: BytePath, ctx: FuseContext): void {
      this.ops.removexattr(path, name, (res) => signal(res), ctx);
    }
  }
  // statics (unmount, hostUtimensat...) are inherited from `cls`
  return XattrFuse as unknown as FuseNativeClass;
}

/** Load the native binding on first use (so importing src/fs never needs /dev/fuse). */
function fuseNative(): FuseNativeClass {
  if (!loaded) {
    const cls = require('fuse-native') as FuseNativeClass;
    if (typeof cls.hostUtimensat !== 'function' || typeof cls.hostSetNoAtime !== 'function' || typeof cls.setAttrCache !== 'function' || typeof cls.setUfsAnswers !== 'function') {
      throw new Error('fuse-native is not the patched build: run scripts/setup.sh (patch-package + node-gyp rebuild)');
    }
    loaded = withXattrAnswers(cls);
  }
  return loaded;
}

/** utimens nsec values (linux/stat.h). */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
/** fuse_file_info flags an open/create answer may set. */
export const FI_DIRECT_IO = 1;
export const FI_KEEP_CACHE = 2;
export const FI_NONSEEKABLE = 4;
/** utimensat flag (fcntl.h). */
export const AT_SYMLINK_NOFOLLOW = 0x100;

/** A mounted FUSE filesystem served by this process. */
export interface FuseMount {
  readonly mountPoint: string;
  /** Lazily unmount (fusermount -u -z); the loop ends once the kernel lets go, then onExit runs. */
  unmount(): Promise<void>;
}

export interface FuseMountOptions {
  /** Raw libfuse -o options, in order (later ones win). */
  options: string[];
  /** Called once after the FUSE loop has ended (any kind of unmount) and libfuse has been torn down. */
  onExit: () => void;
}

/**
 * Mount `ops` on `mountPoint` (which must be an existing directory). Resolves once the kernel sent INIT.
 * @throws Error from libfuse/fuse-native ("fuse failed", "Mountpoint in use", ...)
 */
export function mountFuse(mountPoint: string, ops: FuseOps, options: FuseMountOptions): Promise<FuseMount> {
  const Fuse = fuseNative();
  const instance = new Fuse(mountPoint, ops, { timeout: false, options: options.options, onExit: options.onExit });
  return new Promise((resolve, reject) => {
    instance.mount((err) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({
        mountPoint,
        unmount: () => new Promise<void>((res, rej) => Fuse.unmount(mountPoint, (e) => (e ? rej(e) : res()))),
      });
    });
  });
}

/**
 * utimensat(AT_FDCWD, path, times, flags) with nanosecond precision; nsec may be UTIME_NOW / UTIME_OMIT.
 * @returns 0 or a negative errno
 */
export function hostUtimensat(path: BytePath, atime: FuseTimespec, mtime: FuseTimespec, flags: number): number {
  return fuseNative().hostUtimensat(path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, flags);
}

/** mknod(path, mode, dev) (Node has none). @returns 0 or a negative errno */
export function hostMknod(path: BytePath, mode: number, dev: number): number {
  return fuseNative().hostMknod(path, mode, dev);
}

/** fcntl(fd, F_SETFL, O_NOATIME): reads through `fd` stop moving the file's atime. @returns 0 or a negative errno */
export function hostSetNoAtime(fd: number): number {
  return fuseNative().hostSetNoAtime(fd);
}

/** Counts of the binding's attribute cache since the process started. */
export interface AttrCacheCounts {
  /** getattr/fgetattr answered by the FUSE thread from the cache, without a hand-off to JS. */
  hits: number;
  /** getattr/fgetattr handed to JS (a regular file the cache did not hold, or an fgetattr). */
  misses: number;
  /** getattr answered from the UFS by the FUSE threads (not a regular file; see setUfsAnswers). */
  fromUfs: number;
}

/**
 * Turn the binding's attribute cache on for `ms` milliseconds per answer, or off (0); -1 changes nothing. The FUSE
 * threads then answer a getattr of a path JS answered before, unless an op that may have changed it started since
 * (see the attribute cache in node_modules/fuse-native/fuse-native.c). Only for a mount whose UFS tree changes
 * through its own ops alone: never for a mirror slave.
 * @returns the counts so far
 */
export function setAttrCache(ms: number): AttrCacheCounts {
  const [hits = 0, misses = 0, fromUfs = 0] = fuseNative().setAttrCache(Math.max(-1, Math.floor(ms)));
  return { hits, misses, fromUfs };
}

/**
 * Let the FUSE threads answer from the UFS, by one syscall on the path relative to the process cwd (which must be
 * the UFS root: mount.ts chdirs there first), what the ops would answer without the dedup layer: getxattr of
 * security.capability (the kernel asks for it before every write(2) of a FUSE file; not a reserved name), and
 * getattr of anything but a regular file, or of a missing path (ops.ts statOf gives such an object's lstat as it
 * is). The kernel asks for a directory's attributes at each permission check of a path walk, create or unlink.
 */
export function setUfsAnswers(on: boolean): void {
  fuseNative().setUfsAnswers(on);
}
