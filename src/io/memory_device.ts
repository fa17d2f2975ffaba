/**
 * Devices in memory (style.md "io/"): a `DeviceFactory` whose files are growable Buffers in a Map keyed by path.
 * For fast unit tests of the store and UFS layers, and the base of fault-injecting / crash-simulating devices.
 *
 * Model and invariants:
 * - `files` maps a path to a `MemoryFile`: the bytes `[0, length)` of the file (capacity may be larger; bytes past
 *   `length` are always zero, so growing by a write past EOF or by truncate exposes zeros, like a sparse file).
 * - Every `MemoryFile` also keeps `durable`: its content as of the last `sync()` of any handle on it (a copy).
 *   `crash()` replaces every file's content by its durable copy, i.e. "drop every unsynced write at a power cut".
 *   A file that was never synced comes back empty (metadata is assumed durable: the file itself survives).
 * - Opening follows open(2): a missing path without `create` fails with an ENOENT-shaped error; `truncate` empties.
 *   A read-only handle rejects writes with EBADF; a closed handle rejects everything with EBADF.
 * - Subclasses may override the `beforeWrite`/`beforeSync` hooks to inject faults (throw) or tear writes.
 * Nothing here is asynchronous in reality; the Promise API only matches `Device`.
 */
import type { Device, DeviceFactory } from './device.js';
import { pathText } from '../util/path_text.js';

/** A Node-style system error (what node:fs would throw), so callers' `code` checks work unchanged. */
export function systemError(code: 'ENOENT' | 'EBADF' | 'EIO' | 'ENOSPC', syscall: string, path: string): NodeJS.ErrnoException {
  const errnos = { ENOENT: -2, EBADF: -9, EIO: -5, ENOSPC: -28 } as const;
  const err = new Error(`${code}: ${syscall} '${path}'`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = errnos[code];
  err.syscall = syscall;
  err.path = path;
  return err;
}

/** The content of one in-memory file. */
export class MemoryFile {
  private data: Buffer;
  /** Logical length in bytes. */
  length: number;
  /** Content as of the last sync (see `MemoryDeviceFactory.crash`). */
  durable: Buffer = Buffer.alloc(0);
  mode: number;

  constructor(content: Buffer = Buffer.alloc(0), mode = 0o600) {
    this.data = Buffer.from(content);
    this.length = content.length;
    this.mode = mode;
  }

  /** A copy of the content. */
  bytes(): Buffer {
    return Buffer.from(this.data.subarray(0, this.length));
  }

  /** Read up to `length` bytes at `position` into `buf`; returns the count (short at EOF). */
  read(buf: Buffer, bufOffset: number, length: number, position: number): number {
    if (position >= this.length || length <= 0) return 0;
    const n = Math.min(length, this.length - position);
    this.data.copy(buf, bufOffset, position, position + n);
    return n;
  }

  write(src: Buffer, position: number): void {
    if (src.length === 0) return; // pwrite of 0 bytes does not extend a file
    const end = position + src.length;
    this.reserve(end);
    src.copy(this.data, position);
    if (end > this.length) this.length = end;
  }

  truncate(size: number): void {
    if (size < this.length) {
      this.data.fill(0, size, this.length); // keep "bytes past length are zero"
    } else {
      this.reserve(size);
    }
    this.length = size;
  }

  /** Record the current content as durable. */
  sync(): void {
    this.durable = this.bytes();
  }

  /** Replace the content by the durable copy (a simulated power cut). */
  revertToDurable(): void {
    this.data = Buffer.from(this.durable);
    this.length = this.durable.length;
  }

  private reserve(size: number): void {
    if (size <= this.data.length) return;
    const grown = Buffer.alloc(Math.max(size, Math.min(this.data.length * 2, size + 64 * 1024 * 1024), 64));
    this.data.copy(grown, 0, 0, this.length);
    this.data = grown;
  }
}

export interface MemoryOpenOptions {
  readOnly?: boolean;
  create?: boolean;
  truncate?: boolean;
  mode?: number;
}

/** One open handle on a `MemoryFile`. */
export class MemoryDevice implements Device {
  private closed = false;

  constructor(
    readonly path: string,
    readonly file: MemoryFile,
    readonly readOnly: boolean,
    private readonly factory: MemoryDeviceFactory,
  ) {}

  private check(syscall: string, writing: boolean): void {
    if (this.closed || (writing && this.readOnly)) throw systemError('EBADF', syscall, this.path);
  }

  async read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
    this.check('read', false);
    return this.file.read(buf, bufOffset, length, position);
  }

  async write(buf: Buffer, position: number): Promise<void> {
    this.check('write', true);
    const data = this.factory.beforeWrite(this, buf, position);
    this.file.write(data, position);
    this.factory.writeCount++;
  }

  async sync(): Promise<void> {
    this.check('fsync', false);
    this.factory.beforeSync(this);
    this.file.sync();
    this.factory.syncCount++;
  }

  async size(): Promise<number> {
    this.check('fstat', false);
    return this.file.length;
  }

  async truncate(size: number): Promise<void> {
    this.check('ftruncate', true);
    this.file.truncate(size);
  }

  async close(): Promise<void> {
    this.check('close', false);
    this.closed = true;
    this.factory.openCount--;
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/**
 * A `DeviceFactory` over an in-memory file map. Paths are used verbatim as keys (no normalisation).
 */
export class MemoryDeviceFactory implements DeviceFactory {
  readonly files = new Map<string, MemoryFile>();
  /** Handles currently open (a leak check for tests). */
  openCount = 0;
  /** Successful writes and syncs so far, over all handles. */
  writeCount = 0;
  syncCount = 0;

  async open(p: string | Buffer, options: MemoryOpenOptions): Promise<MemoryDevice> {
    // a byte path is keyed by its text (UTF-8 where valid, \xNN otherwise): the same key as the string path
    const path = pathText(p);
    let file = this.files.get(path);
    if (!file) {
      if (!options.create) throw systemError('ENOENT', 'open', path);
      file = new MemoryFile(Buffer.alloc(0), options.mode ?? 0o600);
      this.files.set(path, file);
    }
    if (options.truncate && !options.readOnly) file.truncate(0);
    this.openCount++;
    return new MemoryDevice(path, file, options.readOnly ?? false, this);
  }

  /** Create or replace a file with `content` (counts as durable, as if written and synced). */
  writeFile(path: string, content: Buffer, mode = 0o600): MemoryFile {
    const f = new MemoryFile(content, mode);
    f.sync();
    this.files.set(path, f);
    return f;
  }

  /** A copy of a file's content. @throws ENOENT-shaped error when absent */
  readFile(path: string): Buffer {
    const f = this.files.get(path);
    if (!f) throw systemError('ENOENT', 'open', path);
    return f.bytes();
  }

  exists(path: string): boolean {
    return this.files.has(path);
  }

  unlink(path: string): void {
    if (!this.files.delete(path)) throw systemError('ENOENT', 'unlink', path);
  }

  rename(from: string, to: string): void {
    const f = this.files.get(from);
    if (!f) throw systemError('ENOENT', 'rename', from);
    this.files.delete(from);
    this.files.set(to, f);
  }

  /** Simulated power cut: every file loses the writes made since its last sync. Open handles stay usable. */
  crash(): void {
    for (const f of this.files.values()) f.revertToDurable();
  }

  /**
   * Hook run before each write is applied; returns the bytes to apply. Override to fail the Nth write (throw) or to
   * tear it (return a prefix). The default applies `buf` unchanged.
   */
  beforeWrite(_device: MemoryDevice, buf: Buffer, _position: number): Buffer {
    return buf;
  }

  /** Hook run before each sync; override to fail it (throw). */
  beforeSync(_device: MemoryDevice): void {
    // default: nothing
  }
}
