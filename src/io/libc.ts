/**
 * The system calls node:fs lacks and the volume needs on byte paths: utimensat(2) with nanosecond times and
 * AT_SYMLINK_NOFOLLOW (node's utimes takes a double of seconds, which cannot hold a 2026 time to the nanosecond,
 * and follows symlinks), mknod(2) of FIFOs, devices and sockets, syncfs(2) (one durability point for many
 * files of a filesystem), lseek(2) SEEK_END (the size of a block device) and posix_fadvise(2) (read-ahead of files
 * about to be read); glibc's, called through io/ffi.ts.
 *
 * Paths are Buffers of raw bytes (NUL-terminated here), never decoded: a name that is not UTF-8 reaches the UFS as
 * it is. Times are bigint nanoseconds since the epoch (negative before 1970).
 */
import { constants as osc } from 'node:os';
import { DdfsError } from '../errors.js';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
/** tv_nsec value that leaves a time unchanged (linux/stat.h). */
const UTIME_OMIT = (1 << 30) - 2;
const NS_PER_SECOND = 1_000_000_000n;

type UtimensatFn = (dirfd: number, path: Buffer, times: Buffer, flags: number) => number;
type MknodFn = (path: Buffer, mode: number, dev: bigint) => number;
type SyncfsFn = (fd: number) => number;
type LseekFn = (fd: number, offset: number, whence: number) => number | bigint;
type FadviseFn = (fd: number, offset: number, length: number, advice: number) => number;
const libc = nativeFunctions<{
  utimensat: UtimensatFn; mknod: MknodFn; syncfs: SyncfsFn; lseek: LseekFn; posix_fadvise: FadviseFn;
}>('libc.so.6', {
  utimensat: 'int utimensat(int dirfd, const uint8_t *path, const uint8_t *times, int flags)',
  mknod: 'int mknod(const uint8_t *path, uint32_t mode, uint64_t dev)',
  syncfs: 'int syncfs(int fd)',
  lseek: 'int64_t lseek(int fd, int64_t offset, int whence)',
  posix_fadvise: 'int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)',
});
const SEEK_END = 2;
/** posix_fadvise advice: the range will be read soon (linux/fadvise.h). */
const POSIX_FADV_WILLNEED = 3;

/**
 * posix_fadvise(2) POSIX_FADV_WILLNEED: start reading bytes [offset, offset + length) of the open file `fd` into the
 * page cache and return without waiting (a hint: the kernel may ignore it).
 * @returns false when the advice was refused (EBADF, ESPIPE...); nothing is thrown
 */
export function adviseWillNeed(fd: number, offset: number, length: number): boolean {
  return libc().posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED) === 0;
}

/**
 * syncfs(2) of the filesystem holding the open file descriptor `fd`: every file written on it (data and metadata,
 * renames included) is durable when it returns.
 * @throws a Node-style system error (EIO, EBADF...) when syncfs fails
 */
export function syncFilesystemOfFd(fd: number): void {
  if (libc().syncfs(fd) !== 0) throw systemError('syncfs', Buffer.from(`fd ${fd}`, 'latin1'));
}

/**
 * The size in bytes of the open file or block device `fd`, from lseek(2) SEEK_END: for a block device (whose
 * st_size is 0) the kernel answers its capacity, the figure ioctl BLKGETSIZE64 gives. It moves the fd's offset to the
 * end, which no caller depends on: volume devices read and write at explicit positions (pread/pwrite).
 * @throws a Node-style system error (EBADF, ESPIPE...) when lseek fails; DdfsError IO for a size beyond 2^53 bytes
 */
export function sizeBySeekEnd(fd: number): number {
  const end = libc().lseek(fd, 0, SEEK_END);
  if (Number(end) < 0) throw systemError('lseek', Buffer.from(`fd ${fd}`, 'latin1'));
  if (typeof end === 'bigint') throw new DdfsError('IO', `fd ${fd}: size ${end} bytes is beyond what a volume can address`);
  return end;
}

function cPath(p: Buffer): Buffer {
  return Buffer.concat([p, Buffer.alloc(1)]);
}

/** A Node-style system error for the errno of the last call (code, errno, syscall), as node:fs throws them. */
function systemError(syscall: string, p: Buffer): NodeJS.ErrnoException {
  const errno = lastNativeErrno();
  const code = Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${syscall} '${p.toString('latin1')}'`), { errno: -errno, code, syscall });
}

function writeTimespec(out: Buffer, offset: number, ns: bigint | null): void {
  if (ns === null) {
    out.writeBigInt64LE(0n, offset);
    out.writeBigInt64LE(BigInt(UTIME_OMIT), offset + 8);
    return;
  }
  let sec = ns / NS_PER_SECOND;
  let nsec = ns % NS_PER_SECOND;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS_PER_SECOND;
  }
  out.writeBigInt64LE(sec, offset);
  out.writeBigInt64LE(nsec, offset + 8);
}

/**
 * Set the access and/or modification time of `p` to the nanosecond, not following a symlink at its last component.
 * @param atimeNs ns since the epoch, or null to leave it unchanged
 * @param mtimeNs ns since the epoch, or null to leave it unchanged
 * @throws a Node-style system error (ENOENT, EPERM...) when utimensat fails
 */
export function setTimesNoFollow(p: Buffer, atimeNs: bigint | null, mtimeNs: bigint | null): void {
  const times = Buffer.alloc(32);
  writeTimespec(times, 0, atimeNs);
  writeTimespec(times, 16, mtimeNs);
  if (libc().utimensat(AT_FDCWD, cPath(p), times, AT_SYMLINK_NOFOLLOW) !== 0) throw systemError('utimensat', p);
}

/**
 * mknod(2): make a FIFO, character or block device, or socket at `p`. `mode` holds the type bits (S_IFIFO...) and
 * the permission bits (the umask applies); `dev` is the device number as stat's st_rdev gives it.
 * @throws a Node-style system error (EEXIST, EPERM...) when mknod fails; DdfsError INVALID for a regular file or
 *   directory type (those have their own calls)
 */
export function makeNode(p: Buffer, mode: number, dev: bigint): void {
  const type = mode & 0o170000;
  if (type !== 0o010000 && type !== 0o020000 && type !== 0o060000 && type !== 0o140000) {
    throw new DdfsError('INVALID', `mknod: type 0o${type.toString(8)} is not a FIFO, device or socket`);
  }
  if (libc().mknod(cPath(p), mode >>> 0, dev) !== 0) throw systemError('mknod', p);
}
