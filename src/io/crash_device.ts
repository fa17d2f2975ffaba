/**
 * A crash-simulating `DeviceFactory` over real files (style.md: "drop unsynced writes at a crash" tests).
 *
 * Model
 * - Every write and truncate (also the O_TRUNC of an open) is a *pending operation* of the file it targets. The real
 *   file is not touched: reads overlay the pending operations on the real bytes, in order, so the program sees its
 *   own writes, and `size()` is the size after them.
 * - `sync()` on any handle of a file applies that file's pending operations to the real file, in order, and clears
 *   them (fsync(2) flushes the inode, whichever descriptor asks). Other files keep theirs.
 * - `crash(rng)` is the power cut: file by file, it decides what of the pending operations reached the disk, writes
 *   that to the real file and drops the rest. Then every device of the factory is dead: reads, writes, truncates,
 *   syncs and opens throw EIO; `close()` still releases the descriptor. Two models:
 *   - 'sectors' (default): a sector-atomic disk (512 B) under an ordered-data file system (ext4's default). The size
 *     and the block allocations after the crash are those after some prefix of the pending operations (the last
 *     metadata commit). Every sector independently holds its content as of one moment: the last sync, or just
 *     after one of the writes to it. So any subset of the writes survives, in any order across sectors, and a write
 *     spanning several sectors may be torn (some sectors new, some old); but a sector never holds a later write
 *     without the earlier writes to that same sector (the disk writes whole sectors from the page cache), bytes
 *     newly allocated by a committed operation always hold data written before that commit (ordered data: never
 *     unwritten bytes), and a truncate that was not committed freed nothing. Details: crashSectors().
 *   - 'subset' (the literal adversary): a random subset of the pending operations (keep probability drawn per
 *     file) is applied in a random order, one write torn (only a prefix of it, of any length, or a random subset of
 *     its sectors). It also makes states no disk makes: a later 26-byte node write surviving while the earlier
 *     16-byte header write to the same sector is lost, or a prefix of a 16-byte header. With it a new file can come
 *     back with an invalid header (a repair then only reports it: ` H  `).
 * - `crashAt: N` crashes automatically inside the Nth mutating call (write, truncate or sync, counted over every
 *   device from 1). That call's own operation is pending when the power fails (a write in flight may be torn, a
 *   sync in flight applies nothing) and it throws EIO, like every later call.
 *
 * Simplifications (documented, deliberate)
 * - Directory operations are immediate and durable: creating a file (O_CREAT), unlink and rename act on the real
 *   file system at once and survive the crash. Pending state follows the inode (keyed by st_dev:st_ino), so a file
 *   renamed or unlinked with node:fs while it has pending writes keeps them (BlockStore.checkpoint renames
 *   `ddfsusedblocks.0` with node:fs after syncing it, which is therefore modelled correctly: its content is durable
 *   before the rename, and the rename is durable at once).
 * - There is no page-cache write-back before the crash: nothing reaches the disk without sync() except what the
 *   crash keeps. Real fsync(2) of the real file is skipped unless `realFsync` (the test never really loses power).
 * - Metadata other than the size (mode, times) is not modelled.
 *
 * All real I/O is synchronous (fs.*Sync), so one call of this device never interleaves with another in the event
 * loop: a sync or a crash is atomic with respect to the program under test.
 */
import * as fs from 'node:fs';
import type { Device, DeviceFactory } from './device.js';
import { systemError } from './memory_device.js';
import { pathText } from '../util/path_text.js';

/** Sector size used for torn writes (the smallest unit a disk writes atomically). */
export const CRASH_SECTOR_SIZE = 512;

/**
 * A small seeded PRNG (mulberry32): replayable from its 32-bit seed, good enough to pick crash points and subsets.
 */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer in [0, n) (n ≥ 1). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi] inclusive. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)]!;
  }

  /** Shuffle in place (Fisher–Yates) and return the array. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.nextUint32(), i);
    for (; i < n; i++) b[i] = this.nextUint32() & 0xff;
    return b;
  }
}

/** A write or size change not yet durable. */
export type PendingOperation =
  | { kind: 'write'; position: number; data: Buffer }
  | { kind: 'truncate'; size: number };

/**
 * How a crash decides what reached the disk (see the file comment):
 * - 'sectors' (default): a sector-atomic disk under an ordered-data file system;
 * - 'subset': any subset of the pending operations, applied in any order, one write torn (more adversarial than any
 *   real disk: a later write to a sector may survive while an earlier write to the same sector is lost).
 */
export type CrashModel = 'sectors' | 'subset';

/** What the crash did to one file. */
export interface CrashedFileReport {
  path: string;
  /** Pending operations at the crash. */
  pending: number;
  /** Pending writes that reached the disk entirely, partly (torn), not at all. */
  writesKept: number;
  writesTorn: number;
  writesDropped: number;
  /** Size of the file after the crash. */
  size: number;
  /** 'subset' model: the write that was torn (offset and length of the whole write), if any. */
  tornWrite?: { position: number; length: number };
}

export interface CrashReport {
  model: CrashModel;
  /** Mutating calls (write, truncate, sync) seen before the crash, including the one that crashed. */
  ioCount: number;
  files: CrashedFileReport[];
}
/** One real file (inode) and its pending operations, shared by every handle on it. */
class CrashFile {
  pending: PendingOperation[] = [];
  handles = 0;

  constructor(
    /** st_dev:st_ino */
    readonly key: string,
    /** The path it was first opened by (for reports). */
    readonly path: string,
    /** A read-write descriptor used to apply operations; -1 when the file could only be opened read-only. */
    public applyFd: number,
  ) {}

  /** Size of the real (durable) file. */
  durableSize(): number {
    return fs.fstatSync(this.applyFd).size;
  }

  /** Size after the pending operations, given the durable size. */
  logicalSize(durable: number): number {
    let size = durable;
    for (const op of this.pending) {
      if (op.kind === 'truncate') size = op.size;
      else if (op.data.length > 0) size = Math.max(size, op.position + op.data.length);
    }
    return size;
  }

  /** Apply `ops` to the real file, in the given order. */
  apply(ops: readonly PendingOperation[]): void {
    for (const op of ops) {
      if (op.kind === 'truncate') fs.ftruncateSync(this.applyFd, op.size);
      else writeAllSync(this.applyFd, op.data, op.position);
    }
  }
}

function writeAllSync(fd: number, data: Buffer, position: number): void {
  let done = 0;
  while (done < data.length) {
    const n = fs.writeSync(fd, data, done, data.length - done, position + done);
    if (n <= 0) throw systemError('EIO', 'write', `fd ${fd}`);
    done += n;
  }
}

export interface CrashDeviceOptions {
  /** What reaches the disk at the crash (default 'sectors'). */
  model?: CrashModel;
  /** Crash inside the Nth mutating call (write, truncate, sync; counted from 1 over all devices). */
  crashAt?: number;
  /** Random source of an automatic crash (crashAt). */
  rng?: SeededRandom;
  /** Called once with the report of an automatic crash. */
  onCrash?: (report: CrashReport) => void;
  /** fsync the real file on sync() (default false: the test never loses power for real). */
  realFsync?: boolean;
}

/** One open handle. */
class CrashDevice implements Device {
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fd: number,
    private readonly file: CrashFile,
    private readonly readOnly: boolean,
    private readonly factory: CrashDeviceFactory,
  ) {}

  private check(syscall: string, writing: boolean): void {
    if (this.closed || (writing && this.readOnly)) throw systemError('EBADF', syscall, this.path);
    if (this.factory.dead) throw systemError('EIO', syscall, this.path);
  }

  async read(buf: Buffer, bufOffset: number, length: number, position: number): Promise<number> {
    this.check('read', false);
    const file = this.file;
    const size = file.logicalSize(fs.fstatSync(this.fd).size);
    const n = Math.max(0, Math.min(length, size - position));
    if (n === 0) return 0;
    let got = 0;
    while (got < n) {
      const r = fs.readSync(this.fd, buf, bufOffset + got, n - got, position + got);
      if (r <= 0) break;
      got += r;
    }
    buf.fill(0, bufOffset + got, bufOffset + n);
    const end = position + n;
    for (const op of file.pending) {
      if (op.kind === 'truncate') {
        const from = Math.max(op.size, position);
        if (from < end) buf.fill(0, bufOffset + (from - position), bufOffset + n);
      } else {
        const from = Math.max(op.position, position);
        const to = Math.min(op.position + op.data.length, end);
        if (from < to) op.data.copy(buf, bufOffset + (from - position), from - op.position, to - op.position);
      }
    }
    return n;
  }

  async write(buf: Buffer, position: number): Promise<void> {
    this.check('write', true);
    if (buf.length === 0) return;
    this.file.pending.push({ kind: 'write', position, data: Buffer.from(buf) });
    this.factory.countMutation('write', this.path);
  }

  async sync(): Promise<void> {
    this.check('fsync', false);
    this.factory.countMutation('fsync', this.path);
    this.factory.syncFile(this.file);
  }

  async size(): Promise<number> {
    this.check('fstat', false);
    return this.file.logicalSize(fs.fstatSync(this.fd).size);
  }

  async truncate(size: number): Promise<void> {
    this.check('ftruncate', true);
    this.file.pending.push({ kind: 'truncate', size });
    this.factory.countMutation('ftruncate', this.path);
  }

  async close(): Promise<void> {
    if (this.closed) throw systemError('EBADF', 'close', this.path);
    this.closed = true;
    fs.closeSync(this.fd);
    this.factory.released(this.file);
  }
}

/**
 * The crash-simulating factory (model in the file comment). Use one factory per simulated machine run: after the
 * crash, open the volume again with `fileDevices` (or a new factory).
 */
export class CrashDeviceFactory implements DeviceFactory {
  /** True after the crash: every device call fails with EIO. */
  dead = false;
  /** Mutating calls so far (write, truncate, sync). */
  ioCount = 0;
  /** Syncs that reached the real files. */
  syncCount = 0;
  /** The crash's report, once crashed. */
  report: CrashReport | null = null;
  private readonly files = new Map<string, CrashFile>();

  constructor(private readonly options: CrashDeviceOptions = {}) {}

  async open(p: string | Buffer, options: { readOnly?: boolean; create?: boolean; truncate?: boolean; mode?: number }): Promise<Device> {
    const path = pathText(p);
    if (this.dead) throw systemError('EIO', 'open', path);
    const readOnly = options.readOnly ?? false;
    let flags = readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR;
    if (options.create) flags |= fs.constants.O_CREAT; // a directory operation: immediate and durable
    const fd = fs.openSync(p, flags, options.mode ?? 0o600);
    let file: CrashFile;
    try {
      const st = fs.fstatSync(fd);
      const key = `${st.dev}:${st.ino}`;
      let f = this.files.get(key);
      if (!f) {
        let applyFd = -1;
        try {
          applyFd = fs.openSync(p, fs.constants.O_RDWR);
        } catch {
          // read-only file: it can have no pending writes
        }
        f = new CrashFile(key, path, applyFd);
        this.files.set(key, f);
      }
      file = f;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    file.handles++;
    if (options.truncate && !readOnly) file.pending.push({ kind: 'truncate', size: 0 });
    return new CrashDevice(path, fd, file, readOnly, this);
  }

  /** Count a mutating call; crash inside it when it is the `crashAt`th. @throws EIO when it crashed */
  countMutation(syscall: string, path: string): void {
    this.ioCount++;
    if (this.options.crashAt !== undefined && this.ioCount === this.options.crashAt) {
      const report = this.crash(this.options.rng ?? new SeededRandom(this.options.crashAt));
      this.options.onCrash?.(report);
      throw systemError('EIO', syscall, path);
    }
  }

  /** Apply and clear a file's pending operations (a successful sync). */
  syncFile(file: CrashFile): void {
    if (file.pending.length > 0) {
      if (file.applyFd < 0) throw systemError('EBADF', 'fsync', file.path);
      file.apply(file.pending);
      file.pending = [];
    }
    if (this.options.realFsync && file.applyFd >= 0) fs.fsyncSync(file.applyFd);
    this.syncCount++;
  }

  /** A handle was closed. */
  released(file: CrashFile): void {
    file.handles--;
    if (file.handles === 0 && file.pending.length === 0) this.forget(file);
  }

  private forget(file: CrashFile): void {
    if (file.applyFd >= 0) fs.closeSync(file.applyFd);
    file.applyFd = -1;
    this.files.delete(file.key);
  }

  /** Pending operations over all files (for tests of the model). */
  get pendingCount(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.pending.length;
    return n;
  }

  /**
   * The power cut (models in the file comment): decide, file by file, what of the pending operations reached the
   * disk, write that to the real files, drop the rest; every device is dead afterwards.
   * @param policy for targeted scenarios: per file path, 'all' (every pending operation reaches the disk, in
   *   order), 'none' (nothing does) or 'random' (the model decides; the default)
   * @returns what happened to each file with pending operations
   */
  crash(rng: SeededRandom, policy?: (path: string) => 'all' | 'none' | 'random'): CrashReport {
    if (this.dead && this.report) return this.report;
    this.dead = true;
    const model = this.options.model ?? 'sectors';
    const report: CrashReport = { model, ioCount: this.ioCount, files: [] };
    for (const file of [...this.files.values()]) {
      const ops = file.pending;
      file.pending = [];
      if (ops.length === 0 || file.applyFd < 0) continue;
      const rule = policy?.(file.path) ?? 'random';
      if (rule !== 'random') {
        const writes = ops.filter((op) => op.kind === 'write').length;
        if (rule === 'all') file.apply(ops);
        report.files.push({
          path: file.path, pending: ops.length, writesKept: rule === 'all' ? writes : 0, writesTorn: 0,
          writesDropped: rule === 'all' ? 0 : writes, size: file.durableSize(),
        });
        continue;
      }
      report.files.push(model === 'sectors' ? crashSectors(file, ops, rng) : crashSubset(file, ops, rng));
    }
    for (const file of [...this.files.values()]) {
      if (file.handles === 0) this.forget(file);
    }
    this.report = report;
    return report;
  }

  /** Close the descriptors the factory still holds (after a crash, or when a test is done). */
  dispose(): void {
    for (const file of [...this.files.values()]) this.forget(file);
  }
}

/**
 * The 'sectors' model for one file.
 *
 * A cut `c` in the pending operations is the last metadata commit: the size after the crash is the size after
 * ops[0..c), and the allocation changes of those operations (blocks freed by a shrinking truncate, blocks
 * allocated by writes past the end) are durable, the later ones are not. Then every 512-byte sector independently
 * holds its content as of one moment:
 * - a sector allocated at the last sync and not freed by a committed truncate: its synced content, or its content
 *   just after any write to it (writes overwrite in place, unordered), up to the first uncommitted truncate that
 *   frees it (a later write goes to a new block whose allocation is not committed);
 * - a sector (re)allocated by a committed write (past the synced size, or after a committed truncate freed it):
 *   at least the content of the last committed write to it — an ordered-data file system (ext4's default) writes
 *   new data before the commit that exposes it — or any later write to it;
 * - a sector not allocated by any committed operation: zeros (a hole).
 * A truncate cutting into a sector zeroes its tail: a write of zeros, as ext4 does for the partial last block.
 */
function crashSectors(file: CrashFile, ops: PendingOperation[], rng: SeededRandom): CrashedFileReport {
  const S = CRASH_SECTOR_SIZE;
  const fd = file.applyFd;
  const durableSize = fs.fstatSync(fd).size;
  /** sizes[i] = logical size before ops[i]; sizes[n] = after all. */
  const sizes = [durableSize];
  for (const op of ops) sizes.push(op.kind === 'truncate' ? op.size : Math.max(sizes[sizes.length - 1]!, op.data.length > 0 ? op.position + op.data.length : 0));
  const cut = rng.int(ops.length + 1);
  const finalSize = sizes[cut]!;
  type SectorEvent = { i: number; kind: 'write' | 'zero-tail' | 'free' };
  const events = new Map<number, SectorEvent[]>();
  const add = (sec: number, e: SectorEvent): void => {
    const list = events.get(sec);
    if (list) list.push(e);
    else events.set(sec, [e]);
  };
  ops.forEach((op, i) => {
    if (op.kind === 'write') {
      for (let sec = Math.floor(op.position / S); sec * S < op.position + op.data.length; sec++) add(sec, { i, kind: 'write' });
    } else if (op.size < sizes[i]!) {
      for (let sec = Math.floor(op.size / S); sec * S < sizes[i]!; sec++) add(sec, { i, kind: sec * S >= op.size ? 'free' : 'zero-tail' });
    }
  });
  const reached = ops.map(() => ({ yes: 0, no: 0 }));
  const contents: Array<[number, Buffer]> = [];
  for (const [sec, evs] of events) {
    const start = sec * S;
    if (start >= finalSize) continue; // past the size after the crash: invisible
    let lastFree = -1;
    let nextFree = Infinity;
    for (const e of evs) {
      if (e.kind !== 'free') continue;
      if (e.i < cut) lastFree = e.i;
      else if (e.i < nextFree) nextFree = e.i;
    }
    const data = evs.filter((e) => e.kind !== 'free' && e.i > lastFree && e.i < nextFree);
    const inPlace = lastFree < 0 && start < durableSize;
    let moments: number[];
    if (inPlace) {
      moments = [-1, ...data.map((e) => e.i)];
    } else {
      const committed = data.filter((e) => e.i < cut);
      const lowest = committed.length > 0 ? committed[committed.length - 1]!.i : -1;
      moments = lowest < 0 ? [-1] : data.filter((e) => e.i >= lowest).map((e) => e.i);
    }
    const moment = rng.pick(moments);
    const buf = Buffer.alloc(S);
    if (inPlace) fs.readSync(fd, buf, 0, S, start);
    for (const e of data) {
      if (e.i > moment) break;
      const op = ops[e.i]!;
      if (op.kind === 'truncate') {
        buf.fill(0, op.size - start);
      } else {
        const from = Math.max(op.position, start);
        const to = Math.min(op.position + op.data.length, start + S);
        op.data.copy(buf, from - start, from - op.position, to - op.position);
      }
    }
    for (const e of evs) if (e.kind === 'write') reached[e.i]![data.includes(e) && e.i <= moment ? 'yes' : 'no']++;
    contents.push([start, buf]);
  }
  fs.ftruncateSync(fd, finalSize);
  for (const [start, buf] of contents) writeAllSync(fd, buf.subarray(0, Math.min(S, finalSize - start)), start);
  const r: CrashedFileReport = { path: file.path, pending: ops.length, writesKept: 0, writesTorn: 0, writesDropped: 0, size: finalSize };
  ops.forEach((op, i) => {
    if (op.kind !== 'write') return;
    const { yes, no } = reached[i]!;
    if (no === 0 && yes > 0) r.writesKept++;
    else if (yes === 0) r.writesDropped++;
    else r.writesTorn++;
  });
  return r;
}

/**
 * The 'subset' model for one file: a random subset of the pending operations (the keep probability drawn per
 * file), one write torn (a prefix of it, or a random subset of its sectors), applied in a random order.
 */
function crashSubset(file: CrashFile, ops: PendingOperation[], rng: SeededRandom): CrashedFileReport {
  const keepProbability = rng.float();
  const kept: PendingOperation[] = [];
  const writes: number[] = [];
  ops.forEach((op, i) => {
    if (op.kind === 'write') writes.push(i);
  });
  const tornIndex = writes.length > 0 && rng.chance(0.75) ? rng.pick(writes) : -1;
  const r: CrashedFileReport = { path: file.path, pending: ops.length, writesKept: 0, writesTorn: 0, writesDropped: 0, size: 0 };
  ops.forEach((op, i) => {
    if (i === tornIndex && op.kind === 'write') {
      kept.push(...tearWrite(op, rng));
      r.writesTorn++;
      r.tornWrite = { position: op.position, length: op.data.length };
    } else if (rng.chance(keepProbability)) {
      kept.push(op);
      if (op.kind === 'write') r.writesKept++;
    } else if (op.kind === 'write') {
      r.writesDropped++;
    }
  });
  rng.shuffle(kept);
  file.apply(kept);
  r.size = fs.fstatSync(file.applyFd).size;
  return r;
}

/**
 * Tear a write: only a prefix of it (any length below its own) or a random subset of its sectors reaches the disk.
 * @returns the partial writes to apply
 */
function tearWrite(op: { position: number; data: Buffer }, rng: SeededRandom): PendingOperation[] {
  const n = op.data.length;
  if (rng.chance(0.5)) {
    const len = rng.int(n);
    return len > 0 ? [{ kind: 'write', position: op.position, data: op.data.subarray(0, len) }] : [];
  }
  const parts: PendingOperation[] = [];
  let start = op.position;
  const end = op.position + n;
  while (start < end) {
    const next = Math.min(end, (Math.floor(start / CRASH_SECTOR_SIZE) + 1) * CRASH_SECTOR_SIZE);
    if (rng.chance(0.5)) parts.push({ kind: 'write', position: start, data: op.data.subarray(start - op.position, next - op.position) });
    start = next;
  }
  return parts;
}
