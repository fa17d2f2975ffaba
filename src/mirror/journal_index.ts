/**
 * The offset index of one journal segment (issue 8, mirroring spec §4.2 segments, §4.6 step 1): sparse checkpoints
 * (byte offset → TID) so that `Journal.readRange(after, top)` reads a segment from near `after` instead of from its
 * first record. A stream's pass every few seconds asks for the few records above its claim; without the index each
 * pass decoded the whole current segment (up to JOURNAL_SEGMENT_SIZE_MAX bytes) again.
 *
 * A checkpoint (offset, tid) of a segment says: a record boundary is at `offset` (the start of a record, or the end
 * of the last one), and `tid` is exactly the TID of the record just before it (the segment's base TID - 1 at the
 * header's end). So every record before `offset` has a TID ≤ tid and every record from `offset` on has a TID > tid
 * (TIDs strictly increase in file order), and decoding from `offset` with previousTid = tid (decodeSegmentRecords)
 * accepts exactly the records a decode from the header accepts past that point: the same bytes, the same checks.
 *
 * Invariants:
 * - The first checkpoint is the header's end (JOURNAL_HEADER_SIZE, baseTid - 1); checkpoints are in increasing
 *   offset (and TID) order, each at least strideSize bytes past the one before it.
 * - The frontier is a checkpoint too: the end of the prefix of the segment whose record boundaries are known. Every
 *   checkpoint is at or below it. It only moves forward, and only along a walk that passed through it.
 * - Only the Journal teaches it, and only from bytes that are durable and accepted: a walk of records it decoded
 *   (readRange, from a checkpoint) or records it wrote and fsynced (the flusher). So the index never points past
 *   what a fresh decode of the segment would accept. A journal reopened after a crash starts with empty indexes
 *   (the torn tail was cut by recovery before anything is learned): they are rebuilt lazily by the first reads.
 */
import { JOURNAL_INDEX_STRIDE_SIZE } from '../limits.js';
import { assert } from '../util/assert.js';

/** A record boundary of a segment and the TID of the record just before it (see the file comment). */
export interface JournalCheckpoint {
  /** Byte offset in the segment file. */
  offset: number;
  tid: bigint;
}

/** Where a range read of one segment starts and ends (SegmentIndex.span). */
export interface JournalSpan {
  /** Decode from start.offset with previousTid start.tid. */
  start: JournalCheckpoint;
  /** No record from this offset on is wanted; null: read to the end of the segment's durable bytes. */
  endOffset: number | null;
}

/** The sparse offset index of one segment. */
export class SegmentIndex {
  private readonly checkpoints: JournalCheckpoint[];
  private tip: JournalCheckpoint;

  /**
   * @param headerEnd the offset of the first record (JOURNAL_HEADER_SIZE)
   * @param baseTid the segment's base TID (its header)
   * @param strideSize bytes between checkpoints (tests use small ones)
   */
  constructor(headerEnd: number, baseTid: bigint, private readonly strideSize = JOURNAL_INDEX_STRIDE_SIZE) {
    assert(strideSize > 0, 'journal index: stride must be positive');
    this.tip = { offset: headerEnd, tid: baseTid - 1n };
    this.checkpoints = [this.tip];
  }

  /** The end of the known prefix of record boundaries (a checkpoint). */
  get frontier(): JournalCheckpoint {
    return this.tip;
  }

  /** How many checkpoints are kept (the frontier not counted unless it is one). */
  get checkpointCount(): number {
    return this.checkpoints.length;
  }

  /**
   * Where to read the records with TID in (`after`, `top`]: from the last known checkpoint whose TID is ≤ `after`
   * (records before it are all ≤ after), up to the first whose TID is ≥ `top` (records from it on are all > top).
   */
  span(after: bigint, top: bigint): JournalSpan {
    const c = this.checkpoints;
    let start: JournalCheckpoint;
    if (this.tip.tid <= after) {
      start = this.tip;
    } else {
      // the last checkpoint with tid <= after; the header's when none (after below the segment)
      let lo = 0;
      let hi = c.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (c[mid]!.tid <= after) lo = mid;
        else hi = mid - 1;
      }
      start = c[lo]!;
    }
    // the first checkpoint with tid >= top, else the frontier if it is, else none
    let lo = 0;
    let hi = c.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (c[mid]!.tid >= top) hi = mid;
      else lo = mid + 1;
    }
    const end = lo < c.length ? c[lo]! : this.tip.tid >= top ? this.tip : null;
    return { start, endOffset: end === null ? null : Math.max(end.offset, start.offset) };
  }

  /**
   * A record boundary reached by a walk over the segment's records that started at a checkpoint of this index (or
   * at the frontier) and visits every boundary after it, in order: `offset` is the end of a record whose TID is
   * `tid`. A boundary at or below the frontier teaches nothing; one past it moves the frontier there (the walk went
   * through the old frontier, so the known prefix stays gapless) and becomes a checkpoint when it is strideSize
   * past the last one.
   */
  advance(offset: number, tid: bigint): void {
    if (offset <= this.tip.offset) return;
    // the message is built only on failure: this runs once per record decoded
    if (tid <= this.tip.tid) assert(false, `journal index: TID ${tid} at byte ${offset} is not above ${this.tip.tid} at byte ${this.tip.offset}`);
    this.tip = { offset, tid };
    if (offset - this.checkpoints[this.checkpoints.length - 1]!.offset >= this.strideSize) this.checkpoints.push(this.tip);
  }
}
