/**
 * The journal segment offset index (journal_index.ts): spans never cut a wanted record and are tight to the known
 * checkpoints; the frontier moves only along a walk through it; checkpoints are a stride apart.
 */
import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../io/crash_device.js';
import { SegmentIndex } from './journal_index.js';

describe('SegmentIndex', () => {
  it('spans start at or below the range and end at or above it, over random record sizes and TID gaps', () => {
    for (const seed of [1, 7, 42]) {
      const rng = new SeededRandom(seed);
      const base = 100n + BigInt(rng.int(50));
      // a segment's records: [offset, end, tid]
      const records: Array<{ offset: number; end: number; tid: bigint }> = [];
      let offset = 16;
      let tid = base - 1n;
      for (let i = 0; i < 500; i++) {
        const size = 21 + rng.int(200);
        tid += 1n + BigInt(rng.int(3) === 0 ? rng.int(5) : 0);
        records.push({ offset, end: offset + size, tid });
        offset += size;
      }
      const stride = [1, 300, 5000][seed % 3]!;
      const index = new SegmentIndex(16, base, stride);
      // learn a prefix of the records, as a walk from the header does
      const known = 1 + rng.int(records.length);
      for (const r of records.slice(0, known)) index.advance(r.end, r.tid);
      expect(index.frontier).toEqual({ offset: records[known - 1]!.end, tid: records[known - 1]!.tid });
      // a boundary at or below the frontier teaches nothing
      index.advance(records[0]!.end, records[0]!.tid);
      expect(index.frontier.offset).toBe(records[known - 1]!.end);
      if (stride === 1) expect(index.checkpointCount).toBe(known + 1);
      if (stride === 5000) expect(index.checkpointCount).toBeLessThanOrEqual(1 + Math.ceil(records[known - 1]!.end / 5000));
      for (let q = 0; q < 300; q++) {
        const after = base - 5n + BigInt(rng.int(Number(tid - base) + 10));
        const top = after + BigInt(rng.int(Number(tid - after) + 5));
        const { start, endOffset } = index.span(after, top);
        // every wanted record lies in [start, end)
        for (const r of records) {
          if (r.tid <= after || r.tid > top) continue;
          expect(r.offset).toBeGreaterThanOrEqual(start.offset);
          if (endOffset !== null) expect(r.end).toBeLessThanOrEqual(endOffset);
        }
        // the start is a boundary with the exact TID before it
        const before = records.filter((r) => r.end <= start.offset).at(-1);
        expect(start.tid).toBe(before?.tid ?? base - 1n);
        expect(start.tid).toBeLessThanOrEqual(after < base - 1n ? base - 1n : after);
        // with a checkpoint at every boundary of the known prefix the span is exact there
        if (stride === 1 && after >= base - 1n && after < records[known - 1]!.tid) {
          expect(records.find((r) => r.offset === start.offset)!.tid).toBeGreaterThan(after);
        }
      }
    }
  });
});
