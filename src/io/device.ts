/**
 * The I/O seam (style.md, after SQLite's os layer): every read and write of volume data (block file, index file,
 * UFS files, checkpoints) goes through a `Device`, and the directory operations that make such files durable under
 * their names (rename, remove, mkdir, fsync of a directory) go through its `DeviceFactory`, so a fault-injecting or
 * crash-simulating device is a drop-in (the crash device keeps an entry operation undurable until its directory is
 * synced: callers that need a name to survive a power cut sync the directory, as POSIX requires).
 * This file and its siblings are the only importers of node:fs for volume data.
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import { DdfsError } from '../errors.js';
import { pathText } from '../util/path_text.js';
import { adviseWillNeed, sizeBySeekEnd } from './libc.js';

/** Random-access storage of bytes: a file or a block device. Offsets and sizes are in bytes. */
export interface Device {
  readonly path: string;
  /** A path naming the open file itself (/proc/self/fd/N), for calls the seam does not model (utimensat). */
  readonly handlePath?: string;
  /** Read up to `length` bytes at `position` into `buf` at `bufOffset`; returns the number read (short at EOF). */
  read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number>;
  /** Write all of `buf` at `position` (loops over short writes). */
  write(buf: Buffer, position: number): Promise<void>;
  /** Make every acknowledged write durable. */
  sync(): Promise<void>;
  /** Current size in bytes (of a block device: its capacity). */
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** How devices are opened: the real file system, or a test's fault-injecting factory. */
export interface DeviceFactory {
  /**
   * Open `path` (a Buffer for a byte path of the UFS tree). `create` makes it if missing (mode applies then);
   * `readOnly` opens O_RDONLY; `exclusive` fails with EEXIST when it exists (O_EXCL); `noFollow` fails with ELOOP
   * when the last component is a symlink (O_NOFOLLOW). The device's `path` is the path as text for messages
   * (util/path_text.ts).
   * @throws Node system errors (ENOENT...) unchanged
   */
  open(path: string | Buffer, options: DeviceOpenOptions): Promise<Device>;
  /**
   * rename(2): replace `to` atomically by `from` (a file or a directory). Durable only once the directories of
   * both are synced (`syncDirectory`).
   * @throws Node system errors (ENOENT, EXDEV...) unchanged
   */
  rename(from: string | Buffer, to: string | Buffer): Promise<void>;
  /**
   * Remove the file or empty directory `path` (unlink(2) or rmdir(2)); a symlink is removed, never followed.
   * Durable only once its directory is synced.
   * @throws Node system errors (ENOENT, ENOTEMPTY...) unchanged
   */
  remove(path: string | Buffer): Promise<void>;
  /**
   * mkdir(2) with permission bits `mode` (before the umask). Durable only once its parent directory is synced.
   * @throws Node system errors (EEXIST, ENOENT...) unchanged
   */
  mkdir(path: string | Buffer, mode: number): Promise<void>;
  /**
   * fsync(2) of the directory `path`: makes the creations, renames and removals of its entries durable.
   * @throws Node system errors (ENOENT, ENOTDIR...) unchanged
   */
  syncDirectory(path: string | Buffer): Promise<void>;
  /**
   * Optional hint that the file at `path` is about to be read from its start: begin reading its first `bytes` into
   * the page cache without waiting, so a walk that reads many small files one after another (fsck) does not wait
   * for the disk once per file. Never throws, never follows a symlink, changes nothing; a factory without it
   * (tests' fault-injecting and memory devices) simply reads without read-ahead.
   */
  prefetch?(path: string | Buffer, bytes: number): void;
}

/** Options of `DeviceFactory.open`. */
export interface DeviceOpenOptions {
  readOnly?: boolean;
  create?: boolean;
  truncate?: boolean;
  mode?: number;
  exclusive?: boolean;
  noFollow?: boolean;
}

/**
 * A file or block device on the real file system.
 *
 * Small reads and writes, size and truncate are synchronous system calls wrapped in promises: on page-cache I/O
 * they cost microseconds, where a trip through libuv's thread pool costs far more than the call itself (the
 * daemon's small-file work was latency-bound on it). Large reads and writes, and fsync, stay asynchronous.
 */
class FileDevice implements Device {
  private closed = false;
  private pathTextCache: string | null = null;

  constructor(private readonly rawPath: string | Buffer, private readonly fd: number) {}

  /** The path as text, made on first use: most devices (fsck's thousands of UFS files) never print theirs. */
  get path(): string {
    return (this.pathTextCache ??= pathText(this.rawPath));
  }

  get handlePath(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  async read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = length - done <= SYNC_IO_SIZE_MAX
        ? fs.readSync(this.fd, buf, bufOffset + done, length - done, position + done)
        : await readAsync(this.fd, buf, bufOffset + done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async write(buf: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const n = buf.length - done <= SYNC_IO_SIZE_MAX
        ? fs.writeSync(this.fd, buf, done, buf.length - done, position + done)
        : await writeAsync(this.fd, buf, done, buf.length - done, position + done);
      if (n <= 0) throw new DdfsError('IO', `${this.path}: short write`, { path: this.path });
      done += n;
    }
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fsync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  async size(): Promise<number> {
    const st = fs.fstatSync(this.fd);
    if (st.isBlockDevice()) return sizeBySeekEnd(this.fd);
    return st.size;
  }

  async truncate(size: number): Promise<void> {
    fs.ftruncateSync(this.fd, size);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

/**
 * Reads and writes up to this size are synchronous (headers, nodes, small blocks: page-cache work); larger ones go
 * through the thread pool, so a write throttled by dirty-page write-back or a read waiting for the disk never stalls
 * the daemon's event loop.
 */
const SYNC_IO_SIZE_MAX = 64 * 1024;

function writeAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function readAsync(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Devices on the real file system. O_DIRECT is never passed (a caller's O_DIRECT must not reach UFS files: their
 * unaligned header writes would fail). O_NOATIME keeps the volume's own reads of headers and node lists from moving
 * a UFS file's atime, so atime stays what users set (cp -p, tar, rsync); it needs ownership or CAP_FOWNER, so an
 * EPERM retries without it.
 */
export const fileDevices: DeviceFactory = {
  async open(path, options) {
    let flags = options.readOnly ? fsc.O_RDONLY : fsc.O_RDWR;
    if (options.create) flags |= fsc.O_CREAT;
    if (options.truncate) flags |= fsc.O_TRUNC;
    if (options.exclusive) flags |= fsc.O_EXCL;
    if (options.noFollow) flags |= fsc.O_NOFOLLOW;
    const mode = options.mode ?? 0o600;
    let fd: number;
    try {
      fd = fs.openSync(path, flags | (fsc.O_NOATIME ?? 0), mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      fd = fs.openSync(path, flags, mode);
    }
    return new FileDevice(path, fd);
  },

  async rename(from, to) {
    fs.renameSync(from, to);
  },

  async remove(p) {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) fs.rmdirSync(p);
    else fs.unlinkSync(p);
  },

  async mkdir(p, mode) {
    fs.mkdirSync(p, { mode });
  },

  async syncDirectory(p) {
    const fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_DIRECTORY);
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      fs.closeSync(fd);
    }
  },

  prefetch(p, bytes) {
    const fd = openForPrefetch(p, bytes);
    if (fd >= 0) fs.closeSync(fd);
  },
};

/**
 * open(2) `p` read-only for a read-ahead and ask the kernel to read its first `bytes` (posix_fadvise WILLNEED).
 * O_NONBLOCK: a FIFO swapped in for the file must not block the open; O_NOFOLLOW: a symlink is not read ahead;
 * O_NOATIME as for any volume read.
 * @returns the descriptor, or -1 when the file cannot be opened (never throws: the real open reports the error)
 */
function openForPrefetch(p: string | Buffer, bytes: number, write = false): number {
  const flags = (write ? fsc.O_RDWR : fsc.O_RDONLY) | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;
  let fd: number;
  try {
    try {
      fd = fs.openSync(p, flags | (fsc.O_NOATIME ?? 0));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') return -1;
      fd = fs.openSync(p, flags);
    }
  } catch {
    return -1;
  }
  try {
    adviseWillNeed(fd, 0, bytes);
  } catch {
    // no libc binding: no read-ahead, the reads are only slower
  }
  return fd;
}

/**
 * `fileDevices.prefetch` that keeps the file open: the Device it returns reads the file it asked the kernel to read
 * ahead, so a walk that prefetches each file and then reads it (fsck) opens and closes it once, not twice (two of its
 * eight system calls per small file). A regular file read through it reads as through `fileDevices.open(p,
 * { readOnly: !write })` (O_NONBLOCK does nothing to regular files); the caller closes it.
 * @param write open it read-write (O_RDWR); a file that cannot be opened so gives null
 * @returns the device, or null when the file cannot be opened (never throws: the caller's own open reports why)
 */
export function openPrefetchedFile(p: string | Buffer, bytes: number, write = false): Device | null {
  const fd = openForPrefetch(p, bytes, write);
  return fd >= 0 ? new FileDevice(p, fd) : null;
}

/**
 * Whether `path` is a block device (a volume's block or index file may be one, spec §2). A block device keeps its
 * size whatever the volume writes, where a regular file grows with it, so the size checks differ. False for a path
 * that does not exist or cannot be stat'ed (e.g. the invented paths of a test's memory devices).
 */
export function isBlockDevicePath(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}
