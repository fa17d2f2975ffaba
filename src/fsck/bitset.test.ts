import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BitSet, countCombined, countSetInRange, countUsage, lastSetBelow } from './bitset.js';
import { runsOf } from './context.js';

describe('BitSet against a Set model', () => {
  it('add/delete/has/count/ascending/addRange agree with Set<number>', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.array(fc.tuple(fc.constantFrom('add', 'delete', 'range'), fc.nat(), fc.nat()), { maxLength: 60 }),
      (size, ops) => {
        const b = new BitSet(size);
        const m = new Set<number>();
        for (const [op, x, y] of ops) {
          const a = x % size;
          if (op === 'add') { b.add(a); m.add(a); }
          else if (op === 'delete') { b.delete(a); m.delete(a); }
          else {
            const to = Math.min(size, a + (y % 40));
            b.addRange(a, to);
            for (let i = a; i < to; i++) m.add(i);
          }
        }
        expect(b.count()).toBe(m.size);
        expect([...b.ascending()]).toEqual([...m].sort((p, q) => p - q));
        for (let a = 0; a < size; a++) expect(b.has(a)).toBe(m.has(a));
        const from = ops.length % size;
        expect([...b.ascending(from)]).toEqual([...m].filter((a) => a >= from).sort((p, q) => p - q));
      },
    ));
  });

  it('countCombined masks the bits past the size', () => {
    const a = new BitSet(13);
    const b = new BitSet(13);
    a.addRange(0, 13);
    b.add(3);
    const raw = Uint8Array.from([0xff, 0xff]); // garbage past bit 12
    expect(countCombined(13, [a.bytes, b.bytes], ([x, y]) => x! & ~y!)).toBe(12);
    expect(countCombined(13, [raw, b.bytes], ([x, y]) => x! & ~y!)).toBe(12);
  });

  it('runsOf groups consecutive addresses', () => {
    expect([...runsOf([2, 3, 4, 7, 9, 10])]).toEqual([{ address: 2, count: 3 }, { address: 7, count: 1 }, { address: 9, count: 2 }]);
    expect([...runsOf([1, 2, 3, 4, 5], 2)]).toEqual([{ address: 1, count: 2 }, { address: 3, count: 2 }, { address: 5, count: 1 }]);
    expect([...runsOf([])]).toEqual([]);
  });
});

describe('countSetInRange and lastSetBelow against a Set model', () => {
  it('agree with counting and searching a Set<number> over random bytes and ranges', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(), fc.nat(), fc.nat(),
      (bytes, x, y, z) => {
        const bits = bytes.length * 8;
        const m = new Set<number>();
        for (let a = 0; a < bits; a++) if ((bytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0) m.add(a);
        const from = x % (bits + 1);
        const to = from + (y % (bits - from + 1));
        let n = 0;
        for (const a of m) if (a >= from && a < to) n++;
        expect(countSetInRange(bytes, from, to)).toBe(n);
        const size = z % (bits + 1);
        let last = -1;
        for (const a of m) if (a < size && a > last) last = a;
        expect(lastSetBelow(bytes, size)).toBe(last);
      },
    ));
  });
});

describe('countUsage', () => {
  it('gives the same seven counts as countCombined, bits past the size masked', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 300 }), fc.uint8Array({ minLength: 38, maxLength: 38 }),
      fc.uint8Array({ minLength: 38, maxLength: 38 }), fc.uint8Array({ minLength: 38, maxLength: 38 }),
      (size, B, I, F) => {
        expect(countUsage(size, B, I, F)).toEqual({
          inIndexNotInFiles: countCombined(size, [I, F], ([i, f]) => i! & ~f!),
          inFilesNotInIndex: countCombined(size, [I, F], ([i, f]) => f! & ~i!),
          inFilesAndInIndex: countCombined(size, [I, F], ([i, f]) => i! & f!),
          inBlocksNotInFiles: countCombined(size, [B, F], ([b, f]) => b! & ~f!),
          inFilesNotInBlocks: countCombined(size, [B, F], ([b, f]) => f! & ~b!),
          inIndexNotInBlocks: countCombined(size, [B, I], ([b, i]) => i! & ~b!),
          inBlocksNotInIndex: countCombined(size, [B, I], ([b, i]) => b! & ~i!),
        });
      },
    ));
  });
});

describe('BitSet.isEmpty', () => {
  it('is true exactly when no address is set, at any size and position (fast-check)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 200 }), fc.array(fc.nat(), { maxLength: 3 }), (size, adds) => {
      const b = new BitSet(size);
      for (const a of adds) b.add(a % size);
      expect(b.isEmpty()).toBe(adds.length === 0);
    }));
  });
});
