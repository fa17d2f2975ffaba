/**
 * The allocation bitmap (spec §5.2, §5.7) against a Set model.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Bitmap } from './bitmap.js';

/** The trivially correct model: a Set of allocated addresses and the next-fit cursor. */
class BitmapModel {
  readonly used = new Set<number>([0, 1]);
  cursor = 0;
  constructor(readonly blockCount: number) {}
  allocate(): number {
    const from = Math.max(this.cursor, 2);
    for (let a = from; a < this.blockCount; a++) if (!this.used.has(a)) return this.take(a);
    for (let a = 2; a < Math.min(from, this.blockCount); a++) if (!this.used.has(a)) return this.take(a);
    return -1;
  }
  private take(a: number): number {
    this.used.add(a);
    this.cursor = a + 1;
    return a;
  }
}

type Op =
  | { kind: 'set'; a: number }
  | { kind: 'clear'; a: number }
  | { kind: 'allocate' }
  | { kind: 'allocateMany'; n: number }
  | { kind: 'cursor'; c: number };

function opArb(blockCount: number): fc.Arbitrary<Op> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), a: fc.nat(blockCount - 1) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('clear' as const), a: fc.integer({ min: 2, max: blockCount - 1 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('allocate' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('allocateMany' as const), n: fc.nat(blockCount + 2) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cursor' as const), c: fc.nat(blockCount + 3) }) },
  );
}

function bitOf(bytes: Buffer, a: number): boolean {
  return (bytes[a >> 3]! & (0x80 >> (a & 7))) !== 0;
}

describe('Bitmap: byte layout (spec §5.2)', () => {
  it('fresh bitmap: first byte 0xC0, rest zero, 4·ceil(bc/32) bytes, 2 used', () => {
    const b = Bitmap.fresh(256);
    expect(b.bytes.length).toBe(32);
    expect(b.bytes[0]).toBe(0xc0);
    expect(b.bytes.subarray(1).every((x) => x === 0)).toBe(true);
    expect(b.countSet).toBe(2);
    expect(Bitmap.fresh(33).bytes.length).toBe(8);
  });

  it('MSB-first: block 10 is byte 1 mask 0x20; block 7 is byte 0 mask 0x01', () => {
    const b = Bitmap.fresh(64);
    b.set(10);
    expect(b.bytes[1]).toBe(0x20);
    b.set(7);
    expect(b.bytes[0]).toBe(0xc1);
    expect(b.has(10)).toBe(true);
    expect(b.has(9)).toBe(false);
    b.clear(10);
    expect(b.bytes[1]).toBe(0);
    expect(b.countSet).toBe(3);
  });

  it('next-fit: consecutive allocations give 2, 3, 4…; the cursor continues past freed blocks', () => {
    const b = Bitmap.fresh(16);
    expect([b.allocate(), b.allocate(), b.allocate()]).toEqual([2, 3, 4]);
    b.clear(3);
    expect(b.allocate()).toBe(5);
    b.cursor = 2; // reuse_asap after reclaim
    expect(b.allocate()).toBe(3);
  });

  it('wraps to the start once, never returns 0 or 1, and returns -1 when full', () => {
    const b = Bitmap.fresh(10);
    for (let i = 0; i < 8; i++) b.allocate();
    expect(b.countSet).toBe(10);
    expect(b.allocate()).toBe(-1);
    b.clear(4);
    b.cursor = 9;
    expect(b.allocate()).toBe(4);
    expect(b.allocate()).toBe(-1);
    const c = new Bitmap(10, Buffer.from([0x3f, 0xc0, 0, 0])); // 0 and 1 clear, everything else used
    expect(c.countSet).toBe(8);
    expect(c.allocate()).toBe(-1);
  });

  it('ignores bits at or beyond block_count in the last word', () => {
    const b = new Bitmap(10, Buffer.from([0xc0, 0x3f, 0xff, 0xff]));
    expect(b.countSet).toBe(2);
    const got: number[] = [];
    for (let a = b.allocate(); a >= 0; a = b.allocate()) got.push(a);
    expect(got).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(b.recount()).toBe(10);
  });

  it('takeDirtyRanges returns the 4 KiB pages touched, relative to the bitmap start, then nothing', () => {
    const b = Bitmap.fresh(100_000); // 12500 bytes = 4 pages
    b.takeDirtyRanges();
    b.set(5);
    b.set(8 * 9000);
    b.set(99_999);
    expect(b.takeDirtyRanges()).toEqual([[0, 4096], [8192, 12288], [12288, 12500]]);
    expect(b.takeDirtyRanges()).toEqual([]);
    b.set(5); // already set: no change, no dirty page
    expect(b.takeDirtyRanges()).toEqual([]);
  });

  it('assign replaces the content, recounts and marks everything dirty', () => {
    const b = Bitmap.fresh(64);
    b.takeDirtyRanges();
    b.assign(Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 1]));
    expect(b.countSet).toBe(17);
    expect(b.takeDirtyRanges()).toEqual([[0, 8]]);
  });
});

describe('Bitmap vs a Set model (fast-check)', () => {
  it('set/clear/has/countSet/allocate agree after every operation; dirty ranges cover every change', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 200 }).chain((bc) => fc.tuple(fc.constant(bc), fc.array(opArb(bc), { maxLength: 120 }))),
        ([blockCount, ops]) => {
          const bm = Bitmap.fresh(blockCount);
          const model = new BitmapModel(blockCount);
          bm.takeDirtyRanges();
          for (const op of ops) {
            const before = Buffer.from(bm.bytes);
            switch (op.kind) {
              case 'set': bm.set(op.a); model.used.add(op.a); break;
              case 'clear': bm.clear(op.a); model.used.delete(op.a); break;
              case 'allocate': {
                const a = bm.allocate();
                expect(a).toBe(model.allocate());
                if (a >= 0) expect(a).toBeGreaterThanOrEqual(2);
                break;
              }
              case 'allocateMany':
                for (let i = 0; i < op.n; i++) expect(bm.allocate()).toBe(model.allocate());
                break;
              case 'cursor': bm.cursor = op.c; model.cursor = op.c; break;
            }
            expect(bm.countSet).toBe(model.used.size);
            const wrong: number[] = [];
            for (let a = 0; a < bm.bytes.length * 8; a++) {
              const want = a < blockCount && model.used.has(a);
              if (bitOf(bm.bytes, a) !== want || (a < blockCount && bm.has(a) !== want)) wrong.push(a);
            }
            expect(wrong).toEqual([]);
            const ranges = bm.takeDirtyRanges();
            const uncovered: number[] = [];
            for (let i = 0; i < before.length; i++) {
              if (before[i] !== bm.bytes[i] && !ranges.some(([s, e]) => i >= s && i < e)) uncovered.push(i);
            }
            expect(uncovered).toEqual([]);
          }
          expect(bm.recount()).toBe(model.used.size);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('allocating until full hands out every free address exactly once, from any cursor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 300 }), fc.uniqueArray(fc.nat(299)), fc.nat(310), (blockCount, preset, cursor) => {
        const bm = Bitmap.fresh(blockCount);
        for (const a of preset) if (a < blockCount) bm.set(a);
        const free = new Set<number>();
        for (let a = 2; a < blockCount; a++) if (!bm.has(a)) free.add(a);
        bm.cursor = cursor;
        const got: number[] = [];
        for (let a = bm.allocate(); a >= 0; a = bm.allocate()) got.push(a);
        expect(new Set(got)).toEqual(free);
        expect(got.length).toBe(free.size);
        expect(bm.countSet).toBe(blockCount);
        // next-fit: ascending from the cursor, then ascending from 2
        const start = Math.max(cursor, 2);
        const expected = [...free].sort((x, y) => x - y);
        expect(got).toEqual([...expected.filter((a) => a >= start), ...expected.filter((a) => a < start)]);
      }),
      { numRuns: 200 },
    );
  });
});

describe('Bitmap.allocateBelow / countClearBelow (reuse inside a block file that cannot grow)', () => {
  it('allocates only below the limit, next-fit from the cursor with one wrap, and counts the clear bits there', () => {
    fc.assert(fc.property(fc.integer({ min: 3, max: 300 }), fc.array(fc.nat(299)), fc.nat(300), fc.nat(300), (blockCount, setBits, limitSeed, cursor) => {
      const b = Bitmap.fresh(blockCount);
      const model = new Set<number>([0, 1]);
      for (const a of setBits) {
        if (a >= blockCount) continue;
        b.set(a);
        model.add(a);
      }
      const limit = limitSeed % (blockCount + 5);
      const clearBelow = (): number[] => Array.from({ length: Math.max(0, Math.min(limit, blockCount)) }, (_, a) => a).filter((a) => !model.has(a));
      expect(b.countClearBelow(limit)).toBe(clearBelow().length);
      b.cursor = cursor;
      const start = Math.min(Math.max(cursor, 2), Math.min(limit, blockCount));
      const free = clearBelow();
      const want = free.find((a) => a >= start) ?? free[0] ?? -1;
      const got = b.allocateBelow(limit);
      expect(got).toBe(want);
      if (got >= 0) {
        expect(b.has(got)).toBe(true);
        expect(b.cursor).toBe(got + 1);
        expect(b.countClearBelow(limit)).toBe(free.length - 1);
      }
    }), { numRuns: 300 });
  });
});

describe('Bitmap.setAscending (the walk of pack, rebuild and migrate)', () => {
  it('yields exactly the set addresses at or above `from`, ascending, also across zero bytes and the last partial byte', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 200 }), fc.array(fc.nat(199)), fc.integer({ min: -3, max: 210 }), (blockCount, picks, from) => {
      const bm = Bitmap.fresh(blockCount); // blocks 0 and 1 set, as a new volume's
      const model = new Set<number>([0, 1].filter((a) => a < blockCount));
      for (const a of picks) {
        if (a >= blockCount) continue;
        bm.set(a);
        model.add(a);
      }
      const want = [...model].filter((a) => a >= from).sort((x, y) => x - y);
      expect([...bm.setAscending(from)]).toEqual(want);
    }));
  });
});
