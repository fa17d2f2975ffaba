/**
 * A fault-injecting `DeviceFactory` (style.md: "fail the Nth I/O" tests): it wraps another factory (real files by
 * default) and makes the Nth matching write, sync or truncate fail with EIO or ENOSPC.
 *
 * - Matching calls are counted from 1 over every device the factory opened, optionally only for some operations
 *   (`ops`) and some kinds of file (`kinds`: the block file, the index, UFS files, the checkpoint, anything else).
 * - A failing call does nothing: the wrapped device is not called (a failed write writes no byte).
 * - `sticky`: every matching call after the Nth fails too (a full disk, a dead controller); otherwise only the Nth
 *   fails (a transient error) and the rest go through.
 * - The thrown error is shaped like node:fs's (`code`, negative `errno`, `syscall`, `path`), so callers' errno
 *   handling is exercised exactly as with a real failure.
 * Reads, opens, sizes and closes are never failed.
 */
import * as path from 'node:path';
import type { Device, DeviceFactory } from './device.js';
import { fileDevices } from './device.js';
import { systemError } from './memory_device.js';
import { pathText } from '../util/path_text.js';

export type FaultOperation = 'write' | 'sync' | 'truncate';
export type FileKind = 'block' | 'index' | 'ufs' | 'checkpoint' | 'other';

/**
 * Classify a volume file by its path (the default names of spec §2): `ddfsblocks` → block, `ddfsidx` → index,
 * `ddfsusedblocks[.0]` → checkpoint, anything below a `ddfsroot` directory → ufs, else other.
 */
export function defaultFileKind(p: string): FileKind {
  const base = path.basename(p);
  if (base === 'ddfsblocks') return 'block';
  if (base === 'ddfsidx') return 'index';
  if (base === 'ddfsusedblocks' || base === 'ddfsusedblocks.0') return 'checkpoint';
  if (p.split(path.sep).includes('ddfsroot')) return 'ufs';
  return 'other';
}

export interface FaultyDeviceOptions {
  /** The factory wrapped (default: real files). */
  base?: DeviceFactory;
  /** Fail the Nth matching call (1-based). 0 or undefined: never fail (count only). */
  failAt?: number;
  /** Operations counted (default all three). */
  ops?: readonly FaultOperation[];
  /** Kinds of file counted (default all). */
  kinds?: readonly FileKind[];
  /** Error returned (default EIO). */
  errno?: 'EIO' | 'ENOSPC';
  /** Every matching call after the Nth fails too. */
  sticky?: boolean;
  /** Path classifier (default `defaultFileKind`). */
  kindOf?: (path: string) => FileKind;
}

/** One injected failure, for reports. */
export interface InjectedFault {
  /** Matching-call number that failed. */
  count: number;
  op: FaultOperation;
  kind: FileKind;
  path: string;
}

class FaultyDevice implements Device {
  constructor(
    private readonly inner: Device,
    private readonly kind: FileKind,
    private readonly factory: FaultyDeviceFactory,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
    return this.inner.read(buf, bufOffset, length, position);
  }

  async write(buf: Buffer, position: number): Promise<void> {
    this.factory.before('write', this.kind, this.inner.path);
    await this.inner.write(buf, position);
  }

  async sync(): Promise<void> {
    this.factory.before('sync', this.kind, this.inner.path);
    await this.inner.sync();
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async truncate(size: number): Promise<void> {
    this.factory.before('truncate', this.kind, this.inner.path);
    await this.inner.truncate(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export class FaultyDeviceFactory implements DeviceFactory {
  /** Matching calls seen so far (including failed ones). */
  count = 0;
  /** Every failure injected, in order. */
  readonly faults: InjectedFault[] = [];
  /** Calls per operation and kind (all calls, matching or not), e.g. "write:block". */
  readonly seen = new Map<string, number>();
  private readonly base: DeviceFactory;
  private readonly kindOf: (p: string) => FileKind;

  constructor(private readonly options: FaultyDeviceOptions = {}) {
    this.base = options.base ?? fileDevices;
    this.kindOf = options.kindOf ?? defaultFileKind;
  }

  /** Change the failure point (e.g. disarm with 0 before cleaning up). */
  set failAt(n: number | undefined) {
    this.options.failAt = n;
  }

  get failAt(): number | undefined {
    return this.options.failAt;
  }

  set sticky(v: boolean) {
    this.options.sticky = v;
  }

  async open(p: string | Buffer, options: { readOnly?: boolean; create?: boolean; truncate?: boolean; mode?: number }): Promise<Device> {
    const inner = await this.base.open(p, options);
    return new FaultyDevice(inner, this.kindOf(pathText(p)), this);
  }

  /** Count a call; throw the injected error when it is the one to fail. */
  before(op: FaultOperation, kind: FileKind, p: string): void {
    const key = `${op}:${kind}`;
    this.seen.set(key, (this.seen.get(key) ?? 0) + 1);
    const o = this.options;
    if (o.ops && !o.ops.includes(op)) return;
    if (o.kinds && !o.kinds.includes(kind)) return;
    this.count++;
    const n = o.failAt ?? 0;
    if (n <= 0) return;
    if (this.count === n || (o.sticky && this.count > n)) {
      this.faults.push({ count: this.count, op, kind, path: p });
      const syscall = op === 'sync' ? 'fsync' : op === 'truncate' ? 'ftruncate' : 'write';
      throw systemError(o.errno ?? 'EIO', syscall, p);
    }
  }
}
