/**
 * The I/O seam (style.md, after SQLite's os layer): every read and write of volume data (block file, index file,
 * UFS files, checkpoints) goes through a `Device`, so a fault-injecting or crash-simulating device is a drop-in.
 * This file and its siblings are the only importers of node:fs for volume data.
 */
import * as fsp from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { DdfsError } from '../errors.js';

/** Random-access storage of bytes: a file or a block device. Offsets and sizes are in bytes. */
export interface Device {
  readonly path: string;
  /** Read up to `length` bytes at `position` into `buf` at `bufOffset`; returns the number read (short at EOF). */
  read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number>;
  /** Write all of `buf` at `position` (loops over short writes). */
  write(buf: Buffer, position: number): Promise<void>;
  /** Make every acknowledged write durable. */
  sync(): Promise<void>;
  /** Current size in bytes. */
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** How devices are opened: the real file system, or a test's fault-injecting factory. */
export interface DeviceFactory {
  /**
   * Open `path`. `create` makes it if missing (mode applies then); `readOnly` opens O_RDONLY.
   * @throws Node system errors (ENOENT...) unchanged
   */
  open(path: string, options: { readOnly?: boolean; create?: boolean; truncate?: boolean; mode?: number }): Promise<Device>;
}

class FileDevice implements Device {
  constructor(readonly path: string, private readonly fh: fsp.FileHandle) {}

  async read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, bufOffset + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async write(buf: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, position + done);
      if (bytesWritten <= 0) throw new DdfsError('IO', `${this.path}: short write`, { path: this.path });
      done += bytesWritten;
    }
  }

  async sync(): Promise<void> {
    await this.fh.sync();
  }

  async size(): Promise<number> {
    const st = await this.fh.stat();
    if (st.isBlockDevice()) return blockDeviceSize(this.fh);
    return st.size;
  }

  async truncate(size: number): Promise<void> {
    await this.fh.truncate(size);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function blockDeviceSize(fh: fsp.FileHandle): Promise<number> {
  // lseek(SEEK_END) is not exposed; reading past the end returns 0 bytes, so probe with a binary search.
  const probe = Buffer.alloc(1);
  let lo = 0;
  let hi = 1;
  while ((await fh.read(probe, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await fh.read(probe, 0, 1, mid - 1)).bytesRead === 1) lo = mid;
    else hi = mid;
  }
  return lo;
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
    const mode = options.mode ?? 0o600;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, flags | (fsc.O_NOATIME ?? 0), mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      fh = await fsp.open(path, flags, mode);
    }
    return new FileDevice(path, fh);
  },
};
