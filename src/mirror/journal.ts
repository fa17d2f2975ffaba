/**
 * The master's write-ahead TID journal (mirroring spec §4.2 `ddfsmirror/journal/NNNNNNNN.jnl`, §4.3 TID rules,
 * §4.18 invariant 8): append-only segments of dirty-key records, "key K may have changed at TID t". They are intents,
 * not operations to replay: a pass ships the current state of the keys it finds here.
 *
 * Segment file (all integers little-endian):
 *
 * | offset | size | field                                                      |
 * | ------ | ---- | ---------------------------------------------------------- |
 * | 0      | 8    | magic `DDFSJNL1`                                           |
 * | 8      | 8    | base TID (u64): next_tid when the segment was created      |
 * | 16     | ...  | records, back to back                                      |
 *
 * Record:
 *
 * | offset | size | field                                                      |
 * | ------ | ---- | ---------------------------------------------------------- |
 * | 0      | 4    | body length L (u32): bytes from the TID to the end         |
 * | 4      | 4    | CRC32C (u32) of the L body bytes                           |
 * | 8      | 8    | TID (u64)                                                  |
 * | 16     | 1    | op (JOURNAL_OPS below)                                     |
 * | 17     | 2    | path length P (u16), then P raw path bytes (ddfsroot-relative) |
 * | 19+P   | 2    | second path length D (u16, 0 = none), then D raw bytes     |
 *
 * L = 13 + P + D exactly; L ≤ JOURNAL_RECORD_BODY_SIZE_MAX. Paths are bytes, never decoded.
 *
 * Invariants:
 * - TIDs are strictly increasing across the whole journal, in file order; a TID is assigned at append and written
 *   only by the single flusher, in TID order, so the records on disk are always a prefix of the TIDs handed out.
 * - Group commit: records are buffered in memory and written and fsynced by the single flusher, every record of a
 *   window sharing one fsync. `record` (the daemon's changes) waits for nothing: the flusher takes its window
 *   (JOURNAL_COMMIT_WINDOW_MS) first; only past JOURNAL_PENDING_SIZE_MAX buffered bytes does a change wait for its
 *   record. `append` and `sync` resolve only after an fsync covering their records and cut the window short.
 *   `durableHead` is the highest synced TID: it advances only after the fsync that covers it, and a pass never
 *   covers a TID above it (§4.3).
 * - Window (§4.3 "one record per file per group-commit window"): JOURNAL_WRITE_WINDOW_MS long, ended early by every
 *   pass's beginCover (and by JOURNAL_WRITE_WINDOW_FILE_COUNT_MAX keys). A data write to a file that has a `write`
 *   record in the window makes none; a chmod, chown or utimens of a path that any record of the window names (as
 *   its path or its dest) makes none either: it is coalesced into that record. Sound because a record is a dirty key,
 *   not an operation: the pass covering that record's TID starts (beginCover) after the coalesced change was asked
 *   for, and ships the path's state as it finds it then; a pass that covered below that TID ended the earlier window.
 * - Crash safety of the buffered records (a record of a change that reached the UFS may be lost with the buffer):
 *   the daemon removes the seal durably before it serves anything and writes it only after `close` made every
 *   record durable (master_journal.ts), so a crash always leaves no seal; the next mount then bumps the generation
 *   and an unmounted master's pass is a content pass. A lost record can never hide a change from an incremental
 *   pass. A lost record's TID was never durable, so no pass covered (shipped) it: reusing it after the crash
 *   (next_tid = highest durable TID + 1) reuses no shipped TID.
 * - Recovery on open reads every segment, stops at the first torn or corrupt record (a length out of bounds is
 *   never followed: nothing past it is read) and truncates the last segment there. `nextTid` is above every TID of
 *   a valid record, above every segment's base TID and above the floor the caller passes (state's next_tid): a TID
 *   that was ever durable is never reused. Damage anywhere but the tail of the last segment (a record lost in the
 *   middle) makes `damaged` true: the caller bumps the generation; the journal then restarts empty.
 * - Range reads (a pass's readRange) read each segment only between the checkpoints of its offset index
 *   (journal_index.ts) around the range, and only its durable bytes; the index learns only from records this process
 *   fsynced or decoded, so it never points past what recovery would keep. A reopened journal's indexes start empty.
 * - Everything lives under `ddfsmirror/journal/` (mode 0700), files mode 0600, opened with O_NOFOLLOW through the
 *   Device seam (a crash device can cut it); a symlink in place of the directory is refused.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { entryKind, listNames, mtimeMsOf } from '../io/journal_dir.js';
import {
  JOURNAL_COMMIT_WINDOW_MS, JOURNAL_INDEX_STRIDE_SIZE, JOURNAL_PENDING_SIZE_MAX, JOURNAL_RECORD_BODY_SIZE_MAX, JOURNAL_SEGMENT_NUMBER_MAX, JOURNAL_SEGMENT_SIZE_MAX, JOURNAL_WRITE_WINDOW_FILE_COUNT_MAX,
  JOURNAL_WRITE_WINDOW_MS, STREAM_PATH_SIZE_MAX,
} from '../limits.js';
import { Crc32c } from './crc32c.js';
import { SegmentIndex } from './journal_index.js';

/** The journal directory's name inside `ddfsmirror/`. */
export const JOURNAL_DIRECTORY = 'journal';
/** Segment files: 8 decimal digits and this suffix. */
export const JOURNAL_SEGMENT_SUFFIX = '.jnl';
export const JOURNAL_MAGIC = Buffer.from('DDFSJNL1', 'latin1');
export const JOURNAL_HEADER_SIZE = 16;
/** Frame (length, CRC) before the body. */
export const JOURNAL_FRAME_SIZE = 8;
/** Body bytes of a record with two empty paths: TID, op, two u16 lengths. */
const BODY_FIXED_SIZE = 13;

/** What a record says changed: the tree changes of volume/tree.ts plus a data write. */
export type JournalOp =
  | 'create' | 'mkdir' | 'rmdir' | 'unlink' | 'rename' | 'link' | 'symlink' | 'mknod'
  | 'chmod' | 'chown' | 'utimens' | 'truncate' | 'write' | 'xattr';

/** Op codes on disk (never renumber: segments outlive versions). */
export const JOURNAL_OPS: readonly JournalOp[] = [
  'create', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'mknod', 'chmod', 'chown', 'utimens', 'truncate', 'write',
  'xattr', // a set or removal of an extended attribute (its path's meta changed)
];
const OP_CODE = new Map<JournalOp, number>(JOURNAL_OPS.map((op, i) => [op, i + 1]));

/** A change to record: op and byte path(s) relative to ddfsroot (`dest` for rename and link). */
export interface JournalChange {
  op: JournalOp;
  path: Buffer;
  dest?: Buffer;
}

/** A decoded record. */
export interface JournalRecord extends JournalChange {
  tid: bigint;
}

/**
 * Whether a journal whose lowest held TID is `oldestTid` and whose durable head is `head` still holds every TID a
 * replica with claim `claim` needs (those in (claim, head], §4.6 step 1): the one test of "the claim is older than
 * the journal", shared by readRange, the pass's choice of range and retention's flagging (replicas.ts), so the three
 * always agree. A claim at or above the head needs nothing.
 */
export function journalHolds(claim: bigint, oldestTid: bigint, head: bigint): boolean {
  return !(claim + 1n < oldestTid && claim < head);
}

/** A segment as retention sees it (§4.12): its TIDs, its bytes and its age. */
export interface SegmentInfo {
  baseTid: bigint;
  /** Highest TID in it, baseTid - 1 when it holds none. */
  lastTid: bigint;
  sizeBytes: number;
  /** Its file's mtime (ms since the epoch): when its last record was written. */
  mtimeMs: number;
}

/**
 * Encode one record (frame and body).
 * @throws DdfsError INVALID when a path is longer than STREAM_PATH_SIZE_MAX bytes
 */
export function encodeJournalRecord(crc: Crc32c, record: JournalRecord): Buffer {
  return encodeRecord(crc, record, record.tid);
}

/** encodeJournalRecord of `change` under `tid` (the journal's hot path: no copy of the change, no zero fill). */
function encodeRecord(crc: Crc32c, change: JournalChange, tid: bigint): Buffer {
  const p = change.path;
  const destLength = change.dest === undefined ? 0 : change.dest.length;
  if (p.length > STREAM_PATH_SIZE_MAX || destLength > STREAM_PATH_SIZE_MAX) {
    throw new DdfsError('INVALID', `journal: path of ${Math.max(p.length, destLength)} bytes is longer than ${STREAM_PATH_SIZE_MAX}`);
  }
  const code = OP_CODE.get(change.op);
  if (code === undefined) throw new DdfsError('INVALID', `journal: unknown op ${String(change.op)}`);
  const bodyLength = BODY_FIXED_SIZE + p.length + destLength;
  // every byte is written below
  const buf = Buffer.allocUnsafe(JOURNAL_FRAME_SIZE + bodyLength);
  let o = JOURNAL_FRAME_SIZE;
  buf.writeBigUInt64LE(tid, o); o += 8;
  buf[o] = code; o += 1;
  buf.writeUInt16LE(p.length, o); o += 2;
  p.copy(buf, o); o += p.length;
  buf.writeUInt16LE(destLength, o); o += 2;
  if (change.dest !== undefined) change.dest.copy(buf, o);
  buf.writeUInt32LE(bodyLength, 0);
  buf.writeUInt32LE(crc.compute(buf.subarray(JOURNAL_FRAME_SIZE)), 4);
  return buf;
}

/** Result of decoding at an offset: a record and its size, or why decoding stopped there. */
export type JournalDecode =
  | { kind: 'record'; record: JournalRecord; sizeBytes: number }
  | { kind: 'torn' } // fewer bytes than the frame or the body says: a cut tail
  | { kind: 'corrupt'; reason: string };

/**
 * Decode the record at `offset` of `buf` (the bytes available). Never reads past a bad length.
 * @param crc null: the CRC32C is not checked (a reader that only summarises: lengths, op and TID order still are)
 */
export function decodeJournalRecord(crc: Crc32c | null, buf: Buffer, offset: number): JournalDecode {
  if (buf.length - offset < JOURNAL_FRAME_SIZE) return { kind: 'torn' };
  const bodyLength = buf.readUInt32LE(offset);
  if (bodyLength < BODY_FIXED_SIZE || bodyLength > JOURNAL_RECORD_BODY_SIZE_MAX) return { kind: 'corrupt', reason: `body length ${bodyLength} out of bounds` };
  if (buf.length - offset - JOURNAL_FRAME_SIZE < bodyLength) return { kind: 'torn' };
  const body = buf.subarray(offset + JOURNAL_FRAME_SIZE, offset + JOURNAL_FRAME_SIZE + bodyLength);
  if (crc !== null && crc.compute(body) !== buf.readUInt32LE(offset + 4)) return { kind: 'corrupt', reason: 'CRC32C mismatch' };
  const tid = body.readBigUInt64LE(0);
  const op = JOURNAL_OPS[body.readUInt8(8) - 1];
  if (op === undefined) return { kind: 'corrupt', reason: `unknown op ${body.readUInt8(8)}` };
  const pathLength = body.readUInt16LE(9);
  if (11 + pathLength + 2 > bodyLength) return { kind: 'corrupt', reason: 'path length past the body' };
  const p = Buffer.from(body.subarray(11, 11 + pathLength));
  const destLength = body.readUInt16LE(11 + pathLength);
  if (BODY_FIXED_SIZE + pathLength + destLength !== bodyLength) return { kind: 'corrupt', reason: 'lengths do not add up' };
  const record: JournalRecord = { tid, op, path: p };
  if (destLength > 0) record.dest = Buffer.from(body.subarray(13 + pathLength, 13 + pathLength + destLength));
  return { kind: 'record', record, sizeBytes: JOURNAL_FRAME_SIZE + bodyLength };
}

/** One segment as known in memory. */
interface Segment {
  number: number;
  file: string;
  baseTid: bigint;
  /** Highest TID written to it, or baseTid - 1 when it holds none. */
  lastTid: bigint;
  sizeBytes: number;
  /** Bytes known durable (fsynced by this process, or found valid by recovery): all that readRange reads. */
  syncedBytes: number;
  /** Its offset index (journal_index.ts): learned only from those bytes. */
  index: SegmentIndex;
}

/** Figures of the journal (status, tests). */
export interface JournalStats {
  nextTid: bigint;
  durableHead: bigint;
  segmentCount: number;
  sizeBytes: number;
  /** Lowest TID still readable (records below were dropped by retention); nextTid when empty. */
  oldestTid: bigint;
  /** fsyncs of segments done so far by this process (group commit figure). */
  syncCount: number;
  recordCount: number;
  /** chmod/chown/utimens changes coalesced into a record of the same path in the window (no record of their own). */
  coalescedCount: number;
  /** Segment bytes read by readRange so far (what the offset index saves). */
  rangeReadBytes: number;
}

/** What recovery found on open. */
export interface JournalRecovery {
  /** Valid records found. */
  recordCount: number;
  /** Bytes cut from the tail of the last segment (a torn or corrupt record). */
  truncatedBytes: number;
  /** A record was lost before the tail (or a segment header is bad): history cannot be trusted, bump generation. */
  damaged: boolean;
  /** Highest valid TID found (0n when none). */
  maxTid: bigint;
}

/** Options of `Journal.open`. */
export interface JournalOpenOptions {
  devices: DeviceFactory;
  /** next_tid recorded elsewhere (state file, seal): nextTid is never below it. Default 1n. */
  nextTidFloor?: bigint;
  /** Segment size that triggers rotation (tests use small ones). */
  segmentSizeMax?: number;
  /** The clock for the data-write window (ms). */
  now?: () => number;
  /** Group-commit window of buffered records in ms (default JOURNAL_COMMIT_WINDOW_MS). */
  commitWindowMs?: number;
  /** The data-write and coalescing window in ms (default JOURNAL_WRITE_WINDOW_MS; tests make it long). */
  writeWindowMs?: number;
  /** Bytes between checkpoints of the segments' offset indexes (default JOURNAL_INDEX_STRIDE_SIZE; tests use small ones). */
  indexStrideSize?: number;
}

/** Ops coalesced into a record of the same path in the window (metadata only: the path is dirty already). */
const COALESCED_OPS: ReadonlySet<JournalOp> = new Set<JournalOp>(['chmod', 'chown', 'utimens']);

/** A waiter of the group commit. */
interface Waiter {
  tid: bigint;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function segmentName(n: number): string {
  return `${String(n).padStart(8, '0')}${JOURNAL_SEGMENT_SUFFIX}`;
}

/** A segment file's name: 8 decimal digits (its number) and JOURNAL_SEGMENT_SUFFIX. */
export const SEGMENT_NAME = /^(\d{8})\.jnl$/;

/** The write-ahead journal of one master volume. */
export class Journal {
  private readonly segments: Segment[] = [];
  private current: Device | null = null;
  private next: bigint;
  private head: bigint;
  /** Encoded records appended but not yet written, in TID order. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingLastTid = 0n;
  private waiters: Waiter[] = [];
  private flushing: Promise<void> | null = null;
  /** A waiting append or sync: the flusher does not wait for the window. */
  private urgent = false;
  /** Ends the flusher's current window early (set while it waits). */
  private wake: (() => void) | null = null;
  private commitWindowMs = JOURNAL_COMMIT_WINDOW_MS;
  private failure: unknown = null;
  private closed = false;
  private syncs = 0;
  private records = 0;
  // data-write window (§4.3): files that have a record in the current window
  private windowEpoch = 0;
  private windowStartMs: number;
  private readonly windowFiles = new Set<bigint>();
  /** Paths (latin1 keys of the raw bytes) named by a record of the current window. */
  private readonly windowPaths = new Set<string>();
  private writeWindowMs = JOURNAL_WRITE_WINDOW_MS;
  private coalesced = 0;
  private indexStrideSize = JOURNAL_INDEX_STRIDE_SIZE;
  private rangeReadBytes = 0;

  private constructor(
    readonly directory: string,
    private readonly crc: Crc32c,
    private readonly devices: DeviceFactory,
    private readonly segmentSizeMax: number,
    private readonly now: () => number,
    nextTid: bigint,
    /** What recovery found. */
    readonly recovery: JournalRecovery,
  ) {
    this.next = nextTid;
    this.head = nextTid - 1n;
    this.windowStartMs = now();
  }

  /**
   * Open (creating when missing) the journal in `mirrorDir/journal/`, recovering it.
   * @param mirrorDir the volume's `ddfsmirror/` (must exist and be a directory)
   * @throws DdfsError INVALID when the journal directory or a segment is a symlink or not what it should be;
   *   Node/device errors of the reads and writes
   */
  static async open(mirrorDir: string, options: JournalOpenOptions): Promise<Journal> {
    const crc = await Crc32c.load();
    const dir = path.join(mirrorDir, JOURNAL_DIRECTORY);
    const kind = entryKind(dir);
    if (kind === null) {
      await options.devices.mkdir(dir, 0o700);
      await options.devices.syncDirectory(mirrorDir);
    } else if (kind !== 'dir') {
      throw new DdfsError('INVALID', `${dir}: not a directory (a symlink?): refused`, { path: dir });
    }
    const numbers = listNames(dir).map((n) => SEGMENT_NAME.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
    const recovery: JournalRecovery = { recordCount: 0, truncatedBytes: 0, damaged: false, maxTid: 0n };
    const found: Segment[] = [];
    let floor = options.nextTidFloor ?? 1n;
    for (let i = 0; i < numbers.length; i++) {
      const number = numbers[i]!;
      const file = path.join(dir, segmentName(number));
      const last = i === numbers.length - 1;
      const scan = await scanSegment(crc, options.devices, file);
      recovery.recordCount += scan.recordCount;
      if (scan.maxTid > recovery.maxTid) recovery.maxTid = scan.maxTid;
      if (scan.baseTid !== null && scan.baseTid > floor) floor = scan.baseTid;
      if (scan.maxTid + 1n > floor) floor = scan.maxTid + 1n;
      if (scan.headerBad) {
        // a segment whose header never became durable holds no record: only possible for the last one
        if (!last || scan.sizeBytes > JOURNAL_HEADER_SIZE) recovery.damaged = true;
        recovery.truncatedBytes += scan.sizeBytes;
        await options.devices.remove(file);
        continue;
      }
      if (scan.goodBytes < scan.sizeBytes) {
        recovery.truncatedBytes += scan.sizeBytes - scan.goodBytes;
        if (!last) recovery.damaged = true;
        const dev = await options.devices.open(file, { noFollow: true });
        try {
          await dev.truncate(scan.goodBytes);
          await dev.sync();
        } finally {
          await dev.close();
        }
      }
      // the index starts empty and is learned by the first reads (journal_index.ts): the scan's records are dropped
      const index = new SegmentIndex(JOURNAL_HEADER_SIZE, scan.baseTid!, options.indexStrideSize ?? JOURNAL_INDEX_STRIDE_SIZE);
      found.push({ number, file, baseTid: scan.baseTid!, lastTid: scan.maxTid > 0n ? scan.maxTid : scan.baseTid! - 1n, sizeBytes: scan.goodBytes, syncedBytes: scan.goodBytes, index });
    }
    if (recovery.damaged) {
      // a hole in the history: the caller bumps the generation (a content pass); start the journal anew above it
      for (const s of found) await options.devices.remove(s.file);
      found.length = 0;
    }
    await options.devices.syncDirectory(dir);
    const journal = new Journal(dir, crc, options.devices, options.segmentSizeMax ?? JOURNAL_SEGMENT_SIZE_MAX, options.now ?? Date.now, floor, recovery);
    if (options.commitWindowMs !== undefined) journal.commitWindowMs = options.commitWindowMs;
    if (options.writeWindowMs !== undefined) journal.writeWindowMs = options.writeWindowMs;
    if (options.indexStrideSize !== undefined) journal.indexStrideSize = options.indexStrideSize;
    journal.segments.push(...found);
    journal.records = recovery.recordCount;
    const tail = found[found.length - 1];
    if (tail && tail.sizeBytes < journal.segmentSizeMax) {
      journal.current = await options.devices.open(tail.file, { noFollow: true });
    } else {
      await journal.startSegment(tail ? tail.number + 1 : 1);
    }
    return journal;
  }

  /** The TID the next change gets. */
  get nextTid(): bigint {
    return this.next;
  }

  /** The highest TID whose record is durable (fsynced); a pass never covers a TID above it (§4.3). */
  get durableHead(): bigint {
    return this.head;
  }

  /**
   * Give `change` the next TID and resolve once its record is durable (write-ahead, §4.3); cuts the group-commit
   * window short.
   * @returns the TID
   * @throws DdfsError INVALID for a path too long; the error of a failed write or sync (then every later append
   *   fails too: the journal is unusable, the change must not happen)
   */
  append(change: JournalChange): Promise<bigint> {
    let tid: bigint;
    try {
      tid = this.buffer(change);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.durable(tid).then(() => tid);
  }

  /**
   * Give `change` the next TID and buffer its record; the flusher writes and fsyncs it within the group-commit
   * window (JOURNAL_COMMIT_WINDOW_MS). The change may go ahead at once: see the file comment for why a record lost
   * in a crash cannot hide it.
   * A chmod, chown or utimens of a path already named by a record of the window gets no record (coalesced, see
   * the file comment).
   * @returns null (nothing to wait for), or, when more than JOURNAL_PENDING_SIZE_MAX bytes are buffered, a promise
   *   that resolves once this record is durable (the change waits: memory stays bounded on a slow disk)
   * @throws DdfsError INVALID for a path too long or a closed journal; the error of an earlier failed write or
   *   sync (every change fails from then on: the mount can no longer seal, the next one bumps the generation)
   */
  record(change: JournalChange): Promise<void> | null {
    this.windowTick();
    const key = change.path.toString('latin1');
    if (COALESCED_OPS.has(change.op) && this.windowPaths.has(key)) {
      if (this.closed) throw new DdfsError('INVALID', `${this.directory}: journal is closed`);
      if (this.failure !== null) throw this.failure;
      this.coalesced++;
      return null;
    }
    const tid = this.buffer(change);
    this.windowPaths.add(key);
    if (change.dest !== undefined) this.windowPaths.add(change.dest.toString('latin1'));
    if (this.pendingBytes <= JOURNAL_PENDING_SIZE_MAX) {
      this.scheduleFlush();
      return null;
    }
    return this.durable(tid);
  }

  /**
   * Resolve once every record buffered before this call is durable (a pass wants the freshest durable head); cuts
   * the group-commit window short.
   * @throws the error of a failed write or sync
   */
  sync(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.head >= this.next - 1n) return Promise.resolve();
    return this.durable(this.next - 1n);
  }

  /** Encode `change` under the next TID into the buffer. @throws DdfsError INVALID; the journal's failure */
  private buffer(change: JournalChange): bigint {
    if (this.closed) throw new DdfsError('INVALID', `${this.directory}: journal is closed`);
    if (this.failure !== null) throw this.failure;
    const tid = this.next;
    const buf = encodeRecord(this.crc, change, tid);
    this.next = tid + 1n;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    this.pendingLastTid = tid;
    return tid;
  }

  /** A promise that resolves once `tid` is durable (rejects with the journal's failure); the flusher hurries. */
  private durable(tid: bigint): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ tid, resolve, reject });
      this.urgent = true;
      this.wake?.();
      this.scheduleFlush();
    });
  }

  /**
   * Before a data write to the open file `fileKey` (its inode) at `p`: the first write in a window makes a `write`
   * record (§4.3), later ones in the same window make none. Like `record`, nothing waits unless the buffer is full.
   * @returns null, or the promise to await (a full buffer; a failed journal: a rejected one, so no write goes ahead
   *   once records cannot be made)
   */
  beforeWrite(fileKey: bigint, p: Buffer): Promise<void> | null {
    if (this.failure !== null) return Promise.reject(this.failure);
    this.windowTick();
    if (this.windowFiles.has(fileKey)) return null;
    let wait: Promise<void> | null;
    try {
      wait = this.record({ op: 'write', path: p });
    } catch (err) {
      return Promise.reject(err);
    }
    this.windowFiles.add(fileKey);
    return wait;
  }

  /** End the window when it is JOURNAL_WRITE_WINDOW_MS old or holds too many keys. */
  private windowTick(): void {
    if (this.now() - this.windowStartMs >= this.writeWindowMs || this.windowFiles.size >= JOURNAL_WRITE_WINDOW_FILE_COUNT_MAX
      || this.windowPaths.size >= JOURNAL_WRITE_WINDOW_FILE_COUNT_MAX) this.closeWindow();
  }

  /** End the window: every file's next write, every path's next chmod/chown/utimens makes a new record. */
  closeWindow(): void {
    this.windowEpoch++;
    this.windowStartMs = this.now();
    this.windowFiles.clear();
    this.windowPaths.clear();
  }

  /**
   * The head a pass may cover (reader API for incremental passes): the durable head, and the data-write window is
   * closed so a write after this call gets a TID above it.
   */
  beginCover(): bigint {
    this.closeWindow();
    return this.head;
  }

  /** The lowest TID still held (records of lower TIDs were dropped by retention); nextTid when none is held. */
  get oldestTid(): bigint {
    const first = this.segments[0];
    return first ? first.baseTid : this.next;
  }

  /**
   * Records with TID in (`after`, `upTo`], in TID order; `upTo` is capped at the durable head (never a record that
   * is not durable). Reads through the Device seam, of each segment only the bytes between the checkpoints of its
   * offset index (journal_index.ts) around the range: a pass whose claim is near the head reads what was appended
   * since, plus at most JOURNAL_INDEX_STRIDE_SIZE bytes, not the whole current segment.
   * @throws DdfsError NOT_FOUND when records above `after` were dropped by retention (the reader needs a content pass);
   *   CORRUPT when a durable record fails its CRC
   */
  async readRange(after: bigint, upTo: bigint): Promise<JournalRecord[]> {
    const top = upTo < this.head ? upTo : this.head;
    if (!journalHolds(after, this.oldestTid, top)) {
      throw new DdfsError('NOT_FOUND', `${this.directory}: TIDs above ${after} are no longer held (oldest ${this.oldestTid}): a content pass is needed`);
    }
    const out: JournalRecord[] = [];
    for (const s of this.segments) {
      if (s.lastTid <= after || s.baseTid > top) continue;
      await this.readSegmentRange(s, after, top, out);
    }
    return out;
  }

  /**
   * Push the records of segment `s` with TID in (`after`, `top`] onto `out`, reading from the index's checkpoint
   * below the range to its checkpoint above (or the durable end), and teach the index the boundaries decoded.
   * @throws DdfsError CORRUPT when a durable record fails to decode
   */
  private async readSegmentRange(s: Segment, after: bigint, top: bigint, out: JournalRecord[]): Promise<void> {
    const { start, endOffset } = s.index.span(after, top);
    const end = endOffset === null || endOffset > s.syncedBytes ? s.syncedBytes : endOffset;
    const length = end - start.offset;
    if (length <= 0) return;
    const buf = Buffer.allocUnsafe(length);
    const dev = await this.devices.open(s.file, { readOnly: true, noFollow: true });
    let got: number;
    try {
      got = await dev.read(buf, 0, length, start.offset);
    } finally {
      await dev.close();
    }
    this.rangeReadBytes += got;
    // every boundary from the checkpoint on is visited in order (the index's advance contract); a file found shorter
    // than its durable size teaches nothing
    const learn = got === length;
    const run = decodeSegmentRecords(this.crc, buf.subarray(0, got), 0, start.tid, (r, offset, sizeBytes) => {
      if (learn) s.index.advance(start.offset + offset + sizeBytes, r.tid);
      if (r.tid > after && r.tid <= top) out.push(r);
    });
    if (run.endBytes < got) throw new DdfsError('CORRUPT', `${s.file}: a durable record is damaged at byte ${start.offset + run.endBytes}`, { path: s.file });
  }

  /**
   * Retention: remove the segments all of whose records have TIDs below `tid` (never the segment being written).
   * @returns the number of segments removed
   */
  async dropBelow(tid: bigint): Promise<number> {
    let n = 0;
    while (this.segments.length > 1 && this.segments[0]!.lastTid < tid) {
      const s = this.segments.shift()!;
      await this.devices.remove(s.file);
      n++;
    }
    if (n > 0) await this.devices.syncDirectory(this.directory);
    return n;
  }

  /** The segments, oldest first (the last one is being written), for retention (§4.12). */
  segmentInfos(): SegmentInfo[] {
    return this.segments.map((s) => ({ baseTid: s.baseTid, lastTid: s.lastTid, sizeBytes: s.sizeBytes, mtimeMs: mtimeMsOf(s.file) ?? 0 }));
  }

  /**
   * Retention (§4.12): remove the oldest segments until the first one kept holds `oldestKept` (its successor starts
   * above it), never the one being written. Idempotent: passes of several replicas may apply the same plan.
   * @returns the number removed
   * @throws Node/device errors of the removal
   */
  async dropSegmentsBefore(oldestKept: bigint): Promise<number> {
    let n = 0;
    while (this.segments.length > 1 && this.segments[1]!.baseTid <= oldestKept) {
      const s = this.segments.shift()!;
      await this.devices.remove(s.file);
      n++;
    }
    if (n > 0) await this.devices.syncDirectory(this.directory);
    return n;
  }

  /** Figures for status and tests. */
  stats(): JournalStats {
    return {
      nextTid: this.next, durableHead: this.head, segmentCount: this.segments.length,
      sizeBytes: this.segments.reduce((a, s) => a + s.sizeBytes, 0), oldestTid: this.oldestTid, syncCount: this.syncs, recordCount: this.records,
      coalescedCount: this.coalesced, rangeReadBytes: this.rangeReadBytes,
    };
  }

  /**
   * Make every appended record durable and close the segment.
   * @throws the error of the last write or sync
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushAll();
    this.closed = true;
    await this.current?.close();
    this.current = null;
    if (this.failure !== null) throw this.failure;
  }

  /** Wait until every record appended so far is durable (or failed). */
  async flushAll(): Promise<void> {
    this.urgent = true;
    this.wake?.();
    while (this.flushing || this.pending.length > 0) {
      if (!this.flushing) this.scheduleFlush();
      this.urgent = true;
      await this.flushing?.catch(() => undefined);
    }
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = this.flushLoop().finally(() => {
      this.flushing = null;
      if (this.pending.length > 0 && this.failure === null) this.scheduleFlush();
    });
  }

  /**
   * The window of the group commit: the rest of this turn of the event loop when someone waits (append, sync, a
   * full buffer), else JOURNAL_COMMIT_WINDOW_MS; whatever is buffered by its end, or while a write and sync run,
   * shares the next sync.
   */
  private window(): Promise<void> {
    if (this.urgent) return new Promise<void>((resolve) => setImmediate(resolve));
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, this.commitWindowMs);
      this.wake = done;
    });
  }

  private async flushLoop(): Promise<void> {
    while (this.pending.length > 0 && this.failure === null) {
      await this.window();
      if (this.failure !== null) return;
      const batch = this.pending;
      const lastTid = this.pendingLastTid;
      this.pending = [];
      this.pendingBytes = 0;
      this.urgent = false;
      try {
        await this.writeBatch(batch, lastTid);
      } catch (err) {
        this.failure = err;
        for (const w of this.waiters) w.reject(err);
        this.waiters = [];
        this.pending = [];
        this.pendingBytes = 0;
        return;
      }
      this.head = lastTid;
      // a waiter of a TID this batch covers resolves (a sync may have come in while it was written)
      const waiting: Waiter[] = [];
      for (const w of this.waiters) {
        if (w.tid <= this.head) w.resolve();
        else waiting.push(w);
      }
      this.waiters = waiting;
    }
  }

  private async writeBatch(batch: Buffer[], lastTid: bigint): Promise<void> {
    let seg = this.segments[this.segments.length - 1]!;
    if (seg.sizeBytes >= this.segmentSizeMax) {
      await this.current?.sync();
      await this.current?.close();
      this.current = null;
      const firstTid = batch[0]!.readBigUInt64LE(JOURNAL_FRAME_SIZE);
      await this.startSegment(seg.number + 1, firstTid);
      seg = this.segments[this.segments.length - 1]!;
    }
    const data = batch.length === 1 ? batch[0]! : Buffer.concat(batch);
    const writeOffset = seg.sizeBytes;
    await this.current!.write(data, writeOffset);
    seg.sizeBytes += data.length;
    seg.lastTid = lastTid;
    await this.current!.sync();
    seg.syncedBytes = seg.sizeBytes;
    // durable now: the index learns the batch's boundaries when it knows every boundary up to it (after a reopen only
    // once a read has walked the segment): its checkpoints then stay a stride apart with no unindexed gap
    if (seg.index.frontier.offset === writeOffset) {
      let o = writeOffset;
      for (const rec of batch) {
        o += rec.length;
        seg.index.advance(o, rec.readBigUInt64LE(JOURNAL_FRAME_SIZE));
      }
    }
    this.syncs++;
    this.records += batch.length;
  }

  /** Create segment `number` with base TID `baseTid` (default nextTid), durable under its name, and make it current. */
  private async startSegment(number: number, baseTid: bigint = this.head + 1n): Promise<void> {
    if (number > JOURNAL_SEGMENT_NUMBER_MAX) throw new DdfsError('NO_SPACE', `${this.directory}: more than ${JOURNAL_SEGMENT_NUMBER_MAX} journal segments`);
    const file = path.join(this.directory, segmentName(number));
    const dev = await this.devices.open(file, { create: true, exclusive: true, noFollow: true, mode: 0o600 });
    const header = Buffer.alloc(JOURNAL_HEADER_SIZE);
    JOURNAL_MAGIC.copy(header, 0);
    header.writeBigUInt64LE(baseTid, 8);
    await dev.write(header, 0);
    await dev.sync();
    await this.devices.syncDirectory(this.directory);
    this.current = dev;
    this.segments.push({
      number, file, baseTid, lastTid: baseTid - 1n, sizeBytes: JOURNAL_HEADER_SIZE, syncedBytes: JOURNAL_HEADER_SIZE,
      index: new SegmentIndex(JOURNAL_HEADER_SIZE, baseTid, this.indexStrideSize),
    });
  }
}

/** What one segment holds. */
interface SegmentScan {
  baseTid: bigint | null;
  headerBad: boolean;
  sizeBytes: number;
  /** Bytes up to the end of the last valid record (the header's end when none). */
  goodBytes: number;
  recordCount: number;
  maxTid: bigint;
  records: JournalRecord[];
}

/** Read and decode a whole segment, stopping at the first torn or corrupt record. */
/** The bytes of a segment file (opened without following a symlink) and its size. */
async function readSegmentBytes(devices: DeviceFactory, file: string): Promise<{ buf: Buffer; sizeBytes: number }> {
  const dev = await devices.open(file, { readOnly: true, noFollow: true });
  try {
    const sizeBytes = await dev.size();
    const buf = Buffer.alloc(sizeBytes);
    const got = await dev.read(buf, 0, sizeBytes, 0);
    return { buf: buf.subarray(0, got), sizeBytes };
  } finally {
    await dev.close();
  }
}

async function scanSegment(crc: Crc32c | null, devices: DeviceFactory, file: string): Promise<SegmentScan> {
  const { buf, sizeBytes } = await readSegmentBytes(devices, file);
  const out: SegmentScan = { baseTid: null, headerBad: false, sizeBytes, goodBytes: 0, recordCount: 0, maxTid: 0n, records: [] };
  out.baseTid = segmentBaseTid(buf);
  if (out.baseTid === null) {
    out.headerBad = true;
    return out;
  }
  const run = decodeSegmentRecords(crc, buf, JOURNAL_HEADER_SIZE, out.baseTid - 1n, (r) => out.records.push(r));
  out.recordCount = run.recordCount;
  out.maxTid = run.maxTid;
  out.goodBytes = run.endBytes;
  return out;
}

/**
 * The base TID of a segment from its first bytes (§4.2 segment header: JOURNAL_MAGIC, then the base TID as u64 LE).
 * @returns null when `buf` is shorter than the header or does not start with the magic
 */
export function segmentBaseTid(buf: Buffer): bigint | null {
  if (buf.length < JOURNAL_HEADER_SIZE || !buf.subarray(0, 8).equals(JOURNAL_MAGIC)) return null;
  return buf.readBigUInt64LE(8);
}

/**
 * Decode the records of segment bytes `buf` from `offset` on, up to the first torn or corrupt one (spec §4.2-§4.3):
 * TIDs strictly increase, so a record whose TID is not above the one before it (`previousTid` for the first) is
 * corruption, not history. Shared by the offline scan (scanSegment) and readers that resume at the end of the last
 * valid record (the stream's HeadWatch).
 * @param crc null: CRC32C not checked (decodeJournalRecord)
 * @param onRecord called with each valid record, in order, with its offset in `buf` and its size in bytes
 * @returns endBytes: the offset just past the last valid record (`offset` when none); maxTid: the last valid TID
 *   (0n when none); recordCount; stop: 'torn' (a record not yet whole, or the end of `buf`) or 'corrupt'
 */
export function decodeSegmentRecords(crc: Crc32c | null, buf: Buffer, offset: number, previousTid: bigint, onRecord?: (r: JournalRecord, offset: number, sizeBytes: number) => void): { endBytes: number; maxTid: bigint; recordCount: number; stop: 'torn' | 'corrupt' } {
  let o = offset;
  let previous = previousTid;
  let recordCount = 0;
  let maxTid = 0n;
  for (;;) {
    const d = decodeJournalRecord(crc, buf, o);
    if (d.kind === 'torn') return { endBytes: o, maxTid, recordCount, stop: 'torn' };
    if (d.kind === 'corrupt' || d.record.tid <= previous) return { endBytes: o, maxTid, recordCount, stop: 'corrupt' };
    previous = d.record.tid;
    maxTid = d.record.tid;
    recordCount++;
    onRecord?.(d.record, o, d.sizeBytes);
    o += d.sizeBytes;
  }
}

/** What `mirrorddumbfs status` shows of a master's journal (read only: nothing is truncated or created). */
export interface JournalSummary {
  /** Decimal u64 text (JSON has no bigint). */
  nextTid: string;
  durableHead: string;
  oldestTid: string;
  segmentCount: number;
  sizeBytes: number;
  recordCount: number;
  /** Bytes past the last valid record (a torn tail the next mount cuts). */
  tailBytes: number;
}

/**
 * The segment files of the journal under `mirrorDir`, in order, for a reader that changes nothing.
 * @returns null when there is no journal directory
 * @throws DdfsError INVALID when it is a symlink or not a directory
 */
async function segmentsOffline(mirrorDir: string, checkCrc = true): Promise<{ dir: string; crc: Crc32c | null; names: string[] } | null> {
  const dir = path.join(mirrorDir, JOURNAL_DIRECTORY);
  const kind = entryKind(dir);
  if (kind === null) return null;
  if (kind !== 'dir') throw new DdfsError('INVALID', `${dir}: not a directory (a symlink?): refused`, { path: dir });
  return { dir, crc: checkCrc ? await Crc32c.load() : null, names: listNames(dir).filter((n) => SEGMENT_NAME.test(n)).sort() };
}

/**
 * Summarise the journal under `mirrorDir` without changing anything.
 * @param nextTidFloor state's next_tid (the summary's nextTid is never below it)
 * @param checkCrc false: records are checked by their lengths, op and TID order only, not their CRC32C, and the
 *   checksum module (hash-wasm, ~40 ms to load) is not loaded (mirrorddumbfs status without --crc)
 * @returns null when there is no journal directory
 * @throws DdfsError INVALID when it is a symlink or not a directory; Node/device errors of the reads
 */
export async function summarizeJournal(mirrorDir: string, devices: DeviceFactory, nextTidFloor = 1n, checkCrc = true): Promise<JournalSummary | null> {
  const found = await segmentsOffline(mirrorDir, checkCrc);
  if (found === null) return null;
  const { dir, crc, names } = found;
  let next = nextTidFloor;
  let head = 0n;
  let oldest: bigint | null = null;
  let sizeBytes = 0;
  let records = 0;
  let tail = 0;
  for (const n of names) {
    const scan = await scanSegment(crc, devices, path.join(dir, n));
    sizeBytes += scan.sizeBytes;
    records += scan.recordCount;
    tail += scan.sizeBytes - scan.goodBytes;
    if (scan.baseTid !== null) {
      oldest ??= scan.baseTid;
      if (scan.baseTid > next) next = scan.baseTid;
    }
    if (scan.maxTid > head) head = scan.maxTid;
  }
  if (head + 1n > next) next = head + 1n;
  if (head === 0n) head = next - 1n;
  return { nextTid: next.toString(), durableHead: head.toString(), oldestTid: (oldest ?? next).toString(), segmentCount: names.length, sizeBytes, recordCount: records, tailBytes: tail };
}

/**
 * What an incremental pass reads of a master's journal (§4.6 step 1-2): the daemon's open Journal, or the segments
 * of an unmounted master read by `readJournalOffline`.
 */
export interface JournalView {
  /** The durable head a pass may cover; closes the data-write window (a later write gets a TID above it). */
  beginCover(): bigint;
  /** Make every record handed out so far durable (the daemon's buffered journal); absent when nothing is buffered. */
  sync?(): Promise<void>;
  /** The next TID to hand out (nothing was handed out after the head when it is head + 1). */
  readonly nextTid: bigint;
  /** The lowest TID still held. */
  readonly oldestTid: bigint;
  /** The highest durable TID now (no side effect, unlike beginCover). */
  readonly durableHead: bigint;
  /** Records with TID in (`after`, `upTo`]. @throws DdfsError NOT_FOUND (dropped by retention), CORRUPT */
  readRange(after: bigint, upTo: bigint): Promise<JournalRecord[]>;
  /** The segments, oldest first; the last one is never dropped (§4.12 retention). */
  segmentInfos(): SegmentInfo[];
  /**
   * Remove the oldest segments until the first one kept holds `oldestKept`, never the last (idempotent).
   * @returns how many were removed
   */
  dropSegmentsBefore(oldestKept: bigint): Promise<number>;
}

/**
 * The record boundaries of segment bytes `buf` from `offset` on, without decoding a body or checking a CRC (spec
 * §4.2-§4.3 framing only): each frame's body length is in bounds and whole, and TIDs strictly increase from
 * `previousTid`. Stops at the first frame that is not (a torn tail, or a length or TID that cannot be).
 * @returns offsets: the offset of each framed record, in order; endBytes: the offset just past the last one
 */
function frameSegmentRecords(buf: Buffer, offset: number, previousTid: bigint): { offsets: number[]; endBytes: number; lastTid: bigint } {
  const offsets: number[] = [];
  let o = offset;
  let previous = previousTid;
  while (buf.length - o >= JOURNAL_FRAME_SIZE) {
    const bodyLength = buf.readUInt32LE(o);
    if (bodyLength < BODY_FIXED_SIZE || bodyLength > JOURNAL_RECORD_BODY_SIZE_MAX || buf.length - o - JOURNAL_FRAME_SIZE < bodyLength) break;
    const tid = buf.readBigUInt64LE(o + JOURNAL_FRAME_SIZE);
    if (tid <= previous) break;
    previous = tid;
    offsets.push(o);
    o += JOURNAL_FRAME_SIZE + bodyLength;
  }
  return { offsets, endBytes: o, lastTid: previous };
}

/**
 * Read the journal of an unmounted master under `mirrorDir` without writing anything (no torn tail is cut, no
 * segment created). At the open every segment is read and framed (record lengths and TIDs, no CRC, no body
 * decoded): a pass reads only the records above its replica's claim, usually the last few of a journal of up to
 * JOURNAL_SEGMENT_SIZE_MAX bytes a segment, so each record is CRC-checked and decoded by readRange, when a range
 * asks for it (a decoded journal of 34,000 records was a tenth of a 1 % incremental pass).
 * @param expectHead the durable head the seal of the last clean unmount names: a journal whose last record is not
 *   it (a torn tail, a crash, a lost segment, a frame that cannot be) is not trusted and null is returned (the
 *   pass is a content pass)
 * @returns null when there is no journal or it is not the sealed one; its readRange throws DdfsError CORRUPT for a
 *   record in the range whose CRC32C or body is bad (the pass is then a content pass, as for any unreadable range)
 * @throws DdfsError INVALID when the journal directory is a symlink; Node/device errors of the reads
 */
export async function readJournalOffline(mirrorDir: string, devices: DeviceFactory, expectHead: bigint): Promise<JournalView | null> {
  const found = await segmentsOffline(mirrorDir);
  if (found === null) return null;
  const { dir, crc, names } = found;
  const segments: Array<SegmentInfo & { file: string; buf: Buffer; offsets: number[] }> = [];
  let previous = 0n;
  for (const n of names) {
    const file = path.join(dir, n);
    const { buf, sizeBytes } = await readSegmentBytes(devices, file);
    const baseTid = segmentBaseTid(buf);
    if (baseTid === null) return null;
    // TIDs strictly increase within a segment from its base, and across segments
    const floor = baseTid - 1n > previous ? baseTid - 1n : previous;
    const framed = frameSegmentRecords(buf, JOURNAL_HEADER_SIZE, floor);
    if (framed.endBytes < sizeBytes) return null;
    if (framed.offsets.length > 0) previous = framed.lastTid;
    segments.push({ file, buf, offsets: framed.offsets, baseTid, lastTid: framed.offsets.length > 0 ? framed.lastTid : baseTid - 1n, sizeBytes, mtimeMs: mtimeMsOf(file) ?? 0 });
  }
  const head = previous > 0n ? previous : expectHead;
  if (head !== expectHead) return null;
  const next = head + 1n;
  const oldestOf = (): bigint => segments[0]?.baseTid ?? next;
  const tidAt = (buf: Buffer, at: number): bigint => buf.readBigUInt64LE(at + JOURNAL_FRAME_SIZE);
  return {
    beginCover: () => head,
    nextTid: next,
    get oldestTid() {
      return oldestOf();
    },
    durableHead: head,
    async readRange(after: bigint, upTo: bigint): Promise<JournalRecord[]> {
      const top = upTo < head ? upTo : head;
      const oldestTid = oldestOf();
      if (!journalHolds(after, oldestTid, top)) throw new DdfsError('NOT_FOUND', `${dir}: TIDs above ${after} are no longer held (oldest ${oldestTid}): a content pass is needed`);
      const out: JournalRecord[] = [];
      for (const seg of segments) {
        if (seg.lastTid <= after || seg.offsets.length === 0) continue;
        if (seg.baseTid > top) break;
        // the first record above `after` (TIDs increase along the offsets)
        let lo = 0;
        let hi = seg.offsets.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (tidAt(seg.buf, seg.offsets[mid]!) <= after) lo = mid + 1;
          else hi = mid;
        }
        for (let k = lo; k < seg.offsets.length; k++) {
          const at = seg.offsets[k]!;
          if (tidAt(seg.buf, at) > top) return out;
          const d = decodeJournalRecord(crc, seg.buf, at);
          if (d.kind !== 'record') throw new DdfsError('CORRUPT', `${seg.file}: the record at offset ${at}: ${d.kind === 'corrupt' ? d.reason : 'torn'}`, { path: seg.file, offset: at });
          out.push(d.record);
        }
      }
      return out;
    },
    segmentInfos: () => segments.map(({ file: _file, buf: _buf, offsets: _offsets, ...info }) => info),
    async dropSegmentsBefore(oldestKept: bigint): Promise<number> {
      // the caller holds the volume lock (pass_volume.ts): no daemon writes this journal meanwhile
      let n = 0;
      while (segments.length > 1 && segments[1]!.baseTid <= oldestKept) {
        const s = segments.shift()!;
        await devices.remove(s.file);
        n++;
      }
      if (n > 0) await devices.syncDirectory(dir);
      return n;
    },
  };
}
