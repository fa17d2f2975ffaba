/**
 * THE reader of UFS files (spec §7): a header and a node list, read through the Device seam, for the daemon
 * (UfsFile, getattr's size peek), fsck, cpddumbfs's download, reclaim and alterddumbfs.
 *
 * | offset | size        | description                                           |
 * |--------|-------------|-------------------------------------------------------|
 * | 0      | 8           | ASCII `DDUMBFSF`                                       |
 * | 8      | 8           | logical size, unsigned big-endian (bytes)              |
 * | 16     | k·node_size | node j = (address LE, hash) of bytes [j·bs, (j+1)·bs)  |
 *
 * A 0-byte UFS file (no header) is a valid empty file. Two modes:
 * - strict: an invalid header (length 1–15, wrong magic, size beyond 2^53) throws DdfsError BAD_HEADER;
 * - tolerant: it gives `headerState` 'bad' (size 0, `headerError` says why), and the node area `[16, length)` can
 *   still be read (a damaged header may sit in front of a parseable node list: fsck salvages it).
 * Node lists are read in bounded chunks (UFS_NODE_CHUNK_COUNT), so a huge file never needs one huge Buffer.
 * Paths are `string | Buffer` (Buffer for byte paths of the UFS tree; never decoded except for messages).
 */
import { DdfsError } from '../errors.js';
import { UFS_FILE_MAGIC, UFS_HEADER_SIZE, UFS_NODE_CHUNK_COUNT, UFS_PREREAD_BYTES_MAX } from '../limits.js';
import { decodeUfsHeader, encodeUfsHeader } from '../format/ufs_header.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { pathText } from '../util/path_text.js';

const UFS_MAGIC = Buffer.from(UFS_FILE_MAGIC, 'ascii');

export type UfsHeaderState = 'empty' | 'valid' | 'bad';

/** What the first bytes of a UFS file say. */
export interface UfsHeaderRead {
  /** UFS length in bytes (header + node area). */
  length: number;
  /** 'empty' = 0-byte file (valid, size 0); 'bad' = length < 16, wrong magic or absurd size. */
  state: UfsHeaderState;
  /** Logical size in bytes from the header (0 when empty or bad). */
  size: number;
  /** Why the header is bad (DdfsError BAD_HEADER), else null. */
  error: DdfsError | null;
  /** With `prereadMax` ≥ length: the file's first bytes, read with the header (as many as one pread gave). */
  whole?: Buffer;
}

/**
 * Read and decode the header of an open UFS file, tolerantly.
 * @param path for messages
 * @throws Node/Device errors of size() and read() unchanged
 */
export async function readUfsHeader(device: Device, path: string | Buffer, prereadMax = 0): Promise<UfsHeaderRead> {
  const length = await device.size();
  if (length === 0) return { length, state: 'empty', size: 0, error: null };
  if (length <= prereadMax) {
    // only a whole read is kept; a failed or short one is left to the reads it stands for, so their errors (a node
    // read's EIO, a short read of the node list) come where they come without it
    const whole = Buffer.allocUnsafe(length);
    const got = await device.read(whole, 0, length, 0).catch(() => -1);
    if (got === length) {
      const h = decodeHeader(whole, Math.min(length, UFS_HEADER_SIZE), length, path);
      h.whole = whole;
      return h;
    }
  }
  const head = Buffer.allocUnsafe(Math.min(length, UFS_HEADER_SIZE));
  const n = await device.read(head, 0, head.length, 0);
  return decodeHeader(head, n, length, path);
}

/** The header of a UFS file of `length` bytes from its first `n` bytes in `head` (readUfsHeader). */
function decodeHeader(head: Buffer, n: number, length: number, path: string | Buffer): UfsHeaderRead {
  // the common case without the message text or a BigInt (fsck reads thousands of headers); anything else is decoded
  // by decodeUfsHeader, which says what is wrong
  if (n === UFS_HEADER_SIZE && head.compare(UFS_MAGIC, 0, UFS_MAGIC.length, 0, UFS_MAGIC.length) === 0) {
    const hi = head.readUInt32BE(8);
    if (hi < 0x200000) return { length, state: 'valid', size: hi * 4294967296 + head.readUInt32BE(12), error: null };
  }
  try {
    return { length, state: 'valid', size: decodeUfsHeader(head.subarray(0, n), pathText(path)), error: null };
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'BAD_HEADER') return { length, state: 'bad', size: 0, error: err };
    throw err;
  }
}

/**
 * The cheap header peek for getattr: the logical size of the UFS file at `path` (spec §7, §8.3), reading 16 bytes.
 * @returns bytes; 0 for a 0-byte file
 * @throws DdfsError BAD_HEADER for an invalid header; Node errors of opening (ENOENT, EACCES…) unchanged
 */
export async function peekUfsSize(devices: DeviceFactory, path: string | Buffer): Promise<number> {
  const device = await devices.open(path, { readOnly: true });
  try {
    const h = await readUfsHeader(device, path);
    if (h.error) throw h.error;
    return h.size;
  } finally {
    await device.close();
  }
}

export interface UfsNodeFileOpenOptions {
  /** Open read-write when permitted, else read-only (writes then fail; `writable` says which). Default false. */
  write?: boolean;
  /** Throw DdfsError BAD_HEADER for an invalid header instead of giving headerState 'bad'. Default false. */
  strict?: boolean;
  /**
   * Read a file of at most UFS_PREREAD_BYTES_MAX bytes whole at open, header and nodes in one pread, and serve
   * readNodes from those bytes (until the file is written through this object). For a walk that reads every node of
   * thousands of small files (fsck). Default false.
   */
  preread?: boolean;
}

/**
 * A UFS file seen as a header and a node list (spec §7). The node area is `[16, length)`; whole nodes are counted
 * even when the header is invalid.
 */
export class UfsNodeFile {
  private constructor(
    readonly path: string | Buffer,
    private readonly device: Device,
    /** Whether writes are possible (the file could be opened read-write). */
    readonly writable: boolean,
    private readonly nodeSize: number,
    /** UFS length in bytes. */
    public length: number,
    readonly headerState: UfsHeaderState,
    /** Logical size from the header (0 when empty or bad). */
    public size: number,
    /** Why the header is bad (tolerant mode), else null. */
    readonly headerError: DdfsError | null,
    /** The file's bytes read at open (`preread`), or null: readNodes reads the device. */
    private whole: Buffer | null = null,
  ) {}

  /**
   * Open the UFS file `path` whose nodes are `nodeSize` bytes.
   * @throws DdfsError BAD_HEADER (strict mode only); Node errors (ENOENT, EACCES…) when the file cannot be read
   */
  static async open(devices: DeviceFactory, path: string | Buffer, nodeSize: number, options: UfsNodeFileOpenOptions = {}): Promise<UfsNodeFile> {
    let device: Device;
    let writable = false;
    if (options.write) {
      try {
        device = await devices.open(path, {});
        writable = true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw err;
        device = await devices.open(path, { readOnly: true });
      }
    } else {
      device = await devices.open(path, { readOnly: true });
    }
    return UfsNodeFile.onDevice(device, writable, path, nodeSize, options);
  }

  /**
   * A UFS file on `device`, opened by the caller (fsck's walk opens each file when it asks the kernel to read it
   * ahead, context.ts), read-write when `options.writable`: as `open` from the header on; the object owns the device
   * (closed by close(), or here when the header cannot be read).
   * @throws as open
   */
  static async openDevice(device: Device, path: string | Buffer, nodeSize: number, options: UfsNodeFileOpenOptions & { writable?: boolean } = {}): Promise<UfsNodeFile> {
    return UfsNodeFile.onDevice(device, options.writable === true, path, nodeSize, options);
  }

  private static async onDevice(device: Device, writable: boolean, path: string | Buffer, nodeSize: number, options: UfsNodeFileOpenOptions): Promise<UfsNodeFile> {
    try {
      const h = await readUfsHeader(device, path, options.preread ? UFS_PREREAD_BYTES_MAX : 0);
      if (h.error && options.strict) throw h.error;
      return new UfsNodeFile(path, device, writable, nodeSize, h.length, h.state, h.size, h.error, h.whole ?? null);
    } catch (err) {
      await device.close().catch(() => undefined);
      throw err;
    }
  }

  /** Whole nodes after the header. */
  get nodeCount(): number {
    return this.length < UFS_HEADER_SIZE ? 0 : Math.floor((this.length - UFS_HEADER_SIZE) / this.nodeSize);
  }

  /** Bytes of a trailing partial node (0 when the length is 16 + k·node_size). */
  get partialBytes(): number {
    return this.length < UFS_HEADER_SIZE ? 0 : (this.length - UFS_HEADER_SIZE) % this.nodeSize;
  }

  /**
   * Read nodes [first, first+count) into `into` (when large enough) or a new Buffer.
   * @returns the nodes, exactly count·node_size bytes
   * @throws DdfsError IO on a short read (the file shrank)
   */
  async readNodes(first: number, count: number, into?: Buffer): Promise<Buffer> {
    const len = count * this.nodeSize;
    const buf = into && into.length >= len ? into.subarray(0, len) : Buffer.allocUnsafe(len);
    const at = UFS_HEADER_SIZE + first * this.nodeSize;
    const n = this.whole !== null ? this.whole.copy(buf, 0, Math.min(at, this.whole.length), Math.min(at + len, this.whole.length)) : await this.device.read(buf, 0, len, at);
    if (n !== len) throw new DdfsError('IO', `${pathText(this.path)}: short read of the node list`, { path: this.path });
    return buf;
  }

  /** Chunks of the node list, in order (the buffer is reused between chunks: copy what must outlive one). */
  async *chunks(chunkCount = UFS_NODE_CHUNK_COUNT): AsyncGenerator<{ first: number; count: number; nodes: Buffer }> {
    const total = this.nodeCount;
    let scratch: Buffer | undefined;
    for (let first = 0; first < total; first += chunkCount) {
      const count = Math.min(chunkCount, total - first);
      scratch ??= Buffer.allocUnsafe(Math.min(chunkCount, total) * this.nodeSize);
      yield { first, count, nodes: await this.readNodes(first, count, scratch) };
    }
  }

  /** Write `nodes` (whole nodes) at node position `first`. */
  async writeNodes(first: number, nodes: Buffer): Promise<void> {
    this.whole = null;
    await this.device.write(nodes, UFS_HEADER_SIZE + first * this.nodeSize);
  }

  /** Cut the UFS file to the header and `count` nodes. */
  async truncateToNodes(count: number): Promise<void> {
    this.whole = null;
    const len = UFS_HEADER_SIZE + count * this.nodeSize;
    await this.device.truncate(len);
    this.length = len;
  }

  /** Rewrite the header with `size`. */
  async writeHeader(size: number): Promise<void> {
    this.whole = null;
    await this.device.write(encodeUfsHeader(size), 0);
    this.size = size;
  }

  /** Make the writes durable. */
  async sync(): Promise<void> {
    await this.device.sync();
  }

  async close(): Promise<void> {
    await this.device.close();
  }
}
