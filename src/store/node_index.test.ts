/**
 * The node table (spec §5.3–§5.6) against a Map model, over random operation sequences that force long runs.
 *
 * Every property runs twice: on the NodeIndex as built (one in-memory chunk for these sizes) and on a second copy of
 * the module loaded with INDEX_CHUNK_SIZE_MAX mocked down to a few hundred bytes, so runs, shifts and dirty ranges
 * constantly cross chunk boundaries.
 */
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import type { DdfsError } from '../errors.js';
import { deriveConfig, type HashName } from '../format/config.js';
import { idealSlot } from '../format/node.js';
import { NodeIndex as SingleChunkNodeIndex, type NodeIndexGeometry } from './node_index.js';

type NodeIndexClass = typeof SingleChunkNodeIndex;
type NodeIndexT = InstanceType<NodeIndexClass>;

/** A second instance of node_index.ts whose chunks hold at most `chunkBytes` bytes. */
async function loadChunkedNodeIndex(chunkBytes: number): Promise<NodeIndexClass> {
  vi.resetModules();
  vi.doMock('../limits.js', async (importOriginal) => ({
    ...(await importOriginal<typeof import('../limits.js')>()),
    INDEX_CHUNK_SIZE_MAX: chunkBytes,
  }));
  try {
    return (await import('./node_index.js')).NodeIndex;
  } finally {
    vi.doUnmock('../limits.js');
  }
}

const CHUNKED_BYTES = 300;
const ChunkedNodeIndex = await loadChunkedNodeIndex(CHUNKED_BYTES);

const IMPLEMENTATIONS: Array<[string, NodeIndexClass]> = [
  ['single chunk', SingleChunkNodeIndex],
  [`chunks of ${CHUNKED_BYTES} bytes`, ChunkedNodeIndex],
];

const HASH_BY_SIZE: Record<number, HashName> = { 16: 'TIGER128', 20: 'SHA1', 24: 'TIGER' };

/** The mkddumbfs geometry of a volume of `blockCount` 512-byte blocks. */
function geometry(blockCount: number, hashSize: number, ov = 1.3): NodeIndexGeometry {
  const cfg = deriveConfig({ partitionSize: blockCount * 512, blockSize: 512, hashName: HASH_BY_SIZE[hashSize]!, nodeOverflow: ov, reuseAsap: false });
  return { blockCount: cfg.blockCount, nodeOverflow: cfg.nodeOverflow, nodeCount: cfg.nodeCount, addrSize: cfg.addrSize, hashSize: cfg.hashSize, nodeSize: cfg.nodeSize };
}

/** A hash whose ideal slot is exactly `slot`, with the given tail bytes. */
function hashForSlot(geo: NodeIndexGeometry, slot: number, tail = 0): Buffer {
  const coefNum = BigInt(Math.round(geo.blockCount * geo.nodeOverflow * 100));
  const h64 = (BigInt(slot) * (1n << 64n) * 100n) / coefNum + (1n << 20n);
  const h = Buffer.alloc(geo.hashSize);
  h.writeBigUInt64BE(h64);
  h.writeUInt32BE(tail, geo.hashSize - 4);
  expect(idealSlot(h, 0, geo.blockCount, geo.nodeOverflow)).toBe(slot);
  return h;
}

/** The whole node array as one buffer (chunks concatenated). */
function flat(idx: NodeIndexT): Buffer {
  return Buffer.concat(idx.chunks);
}

/** Every (hash, address) in the table. */
function tableContent(idx: NodeIndexT): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < idx.nodeCount; i++) {
    const a = idx.address(i);
    if (a === 0) continue;
    const k = idx.hash(i).toString('hex');
    expect(m.has(k)).toBe(false);
    m.set(k, a);
  }
  return m;
}

/**
 * Check that takeDirtyRanges covers every changed byte and describes its chunks correctly.
 * @returns the number of changed bytes
 */
function checkDirty(idx: NodeIndexT, before: Buffer): number {
  const after = flat(idx);
  const ranges = idx.takeDirtyRanges();
  const chunkBytes = idx.chunks[0]!.length;
  let prevEnd = 0;
  let changed = 0;
  const gaps: Array<[number, number]> = [];
  for (const r of ranges) {
    const k = idx.chunks.indexOf(r.chunk);
    expect(k).toBeGreaterThanOrEqual(0);
    expect(r.offset).toBe(k * chunkBytes + r.chunkOffset);
    expect(r.chunkOffset + r.length).toBeLessThanOrEqual(r.chunk.length);
    expect(r.offset).toBeGreaterThanOrEqual(prevEnd);
    gaps.push([prevEnd, r.offset]);
    prevEnd = r.offset + r.length;
  }
  gaps.push([prevEnd, after.length]);
  for (const [s, e] of gaps) {
    if (!before.subarray(s, e).equals(after.subarray(s, e))) {
      for (let i = s; i < e; i++) if (before[i] !== after[i]) changed++;
    }
  }
  expect(changed, 'bytes changed outside the dirty ranges').toBe(0);
  return changed;
}

/** Build the table a set of entries should give, by inserting them in ascending hash order into a fresh index. */
function canonical(Impl: NodeIndexClass, geo: NodeIndexGeometry, entries: Map<string, number>): Buffer {
  const idx = new Impl(geo);
  const keys = [...entries.keys()].sort();
  for (const k of keys) {
    const h = Buffer.from(k, 'hex');
    const r = idx.lookup(h);
    expect(r.found).toBe(false);
    idx.insertAt(r.slot, entries.get(k)!, h);
  }
  return flat(idx);
}

/**
 * Hash pools that force long runs: a few 8-byte prefixes shared by many hashes (same ideal slot, sorted by the tail),
 * prefixes at the extremes (slot 0 and the last ideal slot), and some fully random hashes.
 */
function hashPoolArb(hashSize: number): fc.Arbitrary<Buffer[]> {
  const prefix = fc.oneof(
    fc.uint8Array({ minLength: 8, maxLength: 8 }),
    fc.constant(new Uint8Array(8)),
    fc.constant(new Uint8Array(8).fill(0xff)),
    fc.constant(Uint8Array.from([0x80, 0, 0, 0, 0, 0, 0, 0])),
  );
  const tailByte = fc.oneof(fc.constantFrom(0, 1, 0xff), fc.integer({ min: 0, max: 255 }));
  return fc
    .tuple(
      fc.array(prefix, { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(), fc.array(tailByte, { minLength: hashSize - 8, maxLength: hashSize - 8 }), fc.boolean(), fc.uint8Array({ minLength: hashSize, maxLength: hashSize })), { minLength: 5, maxLength: 70 }),
    )
    .map(([prefixes, specs]) => {
      const seen = new Set<string>();
      const out: Buffer[] = [];
      for (const [p, tail, random, rnd] of specs) {
        const h = random ? Buffer.from(rnd) : Buffer.concat([Buffer.from(prefixes[p % prefixes.length]!), Buffer.from(tail)]);
        // the index never stores the all-zero (null) hash (spec §5.5 rule 5)
        if (h.every((b) => b === 0)) h[hashSize - 1] = 1;
        const k = h.toString('hex');
        if (!seen.has(k)) {
          seen.add(k);
          out.push(h);
        }
      }
      return out;
    });
}

type Op =
  | { kind: 'insert'; h: number; a: number }
  | { kind: 'delete'; h: number }
  | { kind: 'lookup'; h: number }
  | { kind: 'fix'; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('insert' as const), h: fc.nat(), a: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), h: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('lookup' as const), h: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fix' as const), n: fc.nat() }) },
);

const scenarioArb = fc
  .record({ blockCount: fc.integer({ min: 64, max: 300 }), hashSize: fc.constantFrom(16, 20, 24) })
  .chain(({ blockCount, hashSize }) =>
    fc.record({
      blockCount: fc.constant(blockCount),
      hashSize: fc.constant(hashSize),
      pool: hashPoolArb(hashSize),
      ops: fc.array(opArb, { minLength: 1, maxLength: 150 }),
    }),
  );

describe.each(IMPLEMENTATIONS)('NodeIndex (%s)', (_name, Impl) => {
  it('firstNonZeroNodeFrom returns the first node with a non-zero byte, across chunks (fast-check)', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.nat(10_000), fc.nat(26), fc.integer({ min: 1, max: 255 })), { maxLength: 8 }), fc.nat(10_000),
      (edits, from) => {
        const idx = new Impl(geometry(64, 24));
        const start = from % (idx.nodeCount + 1);
        for (const [n, b, v] of edits) idx.chunkOfNode(n % idx.nodeCount)[idx.nodeOffsetInChunk(n % idx.nodeCount) + (b % idx.nodeSize)] = v;
        let want = start;
        const zero = (i: number): boolean => idx.chunkOfNode(i).subarray(idx.nodeOffsetInChunk(i), idx.nodeOffsetInChunk(i) + idx.nodeSize).every((x) => x === 0);
        while (want < idx.nodeCount && zero(want)) want++;
        expect(idx.firstNonZeroNodeFrom(start)).toBe(want);
      },
    ), { numRuns: 300 });
  });

  it('chunk layout: chunks hold whole nodes and cover node_count', () => {
    const geo = geometry(256, 24);
    const idx = new Impl(geo);
    expect(idx.chunks.reduce((s, c) => s + c.length, 0)).toBe(geo.nodeCount * geo.nodeSize);
    for (const c of idx.chunks) expect(c.length % geo.nodeSize).toBe(0);
    expect(Impl.chunkSizes(geo)).toEqual(idx.chunks.map((c) => c.length));
    if (Impl === ChunkedNodeIndex) expect(idx.chunks.length).toBe(Math.ceil(geo.nodeCount / Math.floor(CHUNKED_BYTES / geo.nodeSize)));
    else expect(idx.chunks.length).toBe(1);
  });

  it('spec §5.4 example: hash 05fdd7a4… on a 1M/4k volume lands in node 7 (byte 7·25 of the node array)', () => {
    const geo = geometry(256, 24);
    expect(geo.nodeCount).toBe(1146);
    const idx = new Impl(geo);
    const h = Buffer.from('05fdd7a474ca4d3f7a56d038202dd6b030ca3afe68b01c2d', 'hex');
    const r = idx.lookup(h);
    expect(r).toEqual({ found: false, address: -1, slot: 7 });
    idx.insertAt(r.slot, 2, h);
    expect(flat(idx).subarray(7 * 25, 8 * 25).toString('hex')).toBe('02' + h.toString('hex'));
    expect(idx.lookup(h)).toEqual({ found: true, address: 2, slot: 7 });
    const ranges = idx.takeDirtyRanges();
    expect(ranges.length).toBeGreaterThan(0);
    expect(ranges[0]!.offset).toBe(0);
  });

  it('sorted insertion and backward-shift deletion on a hand-made run', () => {
    const geo = geometry(256, 24);
    const idx = new Impl(geo);
    const A = hashForSlot(geo, 5, 1);
    const B = hashForSlot(geo, 5, 2);
    const C = hashForSlot(geo, 6, 0);
    const D = hashForSlot(geo, 8, 0);
    for (const [h, a] of [[D, 5], [B, 3], [C, 4], [A, 2]] as const) {
      const r = idx.lookup(h);
      idx.insertAt(r.slot, a, h);
    }
    expect([4, 5, 6, 7, 8, 9].map((i) => idx.address(i))).toEqual([0, 2, 3, 4, 5, 0]); // A B C D, D pushed from 8
    expect(idx.checkInvariants()).toEqual([]);
    idx.delete(5); // A: B and C slide back, D (displaced to 8? no: at its ideal slot 8) stays
    expect([4, 5, 6, 7, 8].map((i) => idx.address(i))).toEqual([0, 3, 4, 0, 5]);
    expect(idx.checkInvariants()).toEqual([]);
    idx.delete(6); // C: nothing follows but D at home
    expect([5, 6, 7, 8].map((i) => idx.address(i))).toEqual([3, 0, 0, 5]);
    expect(idx.checkInvariants()).toEqual([]);
  });

  it('checkInvariants reports a node before its ideal slot, a gap, a bad order, a duplicate address; fix repairs', () => {
    const geo = geometry(256, 24);
    const idx = new Impl(geo);
    const h = hashForSlot(geo, 50);
    idx.writeNode(10, 7, h);
    expect(idx.checkInvariants().join()).toMatch(/node 10: before its ideal slot 50/);
    idx.fix(10);
    expect(idx.checkInvariants()).toEqual([]);
    expect(idx.lookup(h)).toEqual({ found: true, address: 7, slot: 50 });
    idx.writeNode(55, 8, hashForSlot(geo, 52));
    expect(idx.checkInvariants().join()).toMatch(/node 55: gap/);
    idx.fix(55);
    expect(idx.checkInvariants()).toEqual([]);
    idx.writeNode(51, 9, hashForSlot(geo, 50, 0)); // smaller than the hash at 50 but after it
    expect(idx.checkInvariants().join()).toMatch(/not sorted/);
    idx.writeNode(51, 7, hashForSlot(geo, 50, 0xffffffff));
    expect(idx.checkInvariants().join()).toMatch(/address 7 twice/);
    idx.writeNode(51, 1, hashForSlot(geo, 50, 0xffffffff));
    expect(idx.checkInvariants().join()).toMatch(/bad address 1/);
  });

  it('index exhausted: lookup, insertAt and add throw NO_SPACE and leave the table unchanged', () => {
    const base = geometry(64, 16);
    const last = Math.floor(base.blockCount * base.nodeOverflow);
    const geo = { ...base, nodeCount: last + 3 };
    const idx = new Impl(geo);
    const top = (tail: number): Buffer => {
      const h = Buffer.alloc(16, 0xff);
      h.writeUInt32BE(tail, 12);
      return h;
    };
    for (const t of [10, 20, 30]) {
      const r = idx.lookup(top(t));
      idx.insertAt(r.slot, t, top(t));
    }
    expect(idx.checkInvariants()).toEqual([]);
    const before = flat(idx);
    // (the chunked copy of the module has its own DdfsError class: match on the stable code)
    expect(() => idx.lookup(top(40))).toThrow(expect.objectContaining({ code: 'NO_SPACE' }));
    expect(() => idx.lookupAddress(top(40))).toThrow(expect.objectContaining({ code: 'NO_SPACE' }));
    const r = idx.lookup(top(5)); // smaller than all: insertion slot inside the full tail
    expect(r).toEqual({ found: false, address: -1, slot: last });
    let caught: unknown;
    try {
      idx.insertAt(r.slot, 5, top(5));
    } catch (err) {
      caught = err;
    }
    expect((caught as DdfsError).code).toBe('NO_SPACE');
    expect(() => idx.add(6, top(6), 'duplicates')).toThrow(/exhausted/);
    expect(flat(idx).equals(before)).toBe(true);
  });

  it('insert/lookup/delete/fix vs a Map model: invariants after every operation, dirty ranges, canonical layout (fast-check)', () => {
    fc.assert(
      fc.property(scenarioArb, ({ blockCount, hashSize, pool, ops }) => {
        const geo = geometry(blockCount, hashSize);
        const idx = new Impl(geo);
        const model = new Map<string, number>();
        const usedAddresses = new Set<number>();
        for (const op of ops) {
          const before = flat(idx);
          if (op.kind === 'fix') {
            if (model.size === 0) continue;
            const slots: number[] = [];
            for (let i = 0; i < idx.nodeCount; i++) if (!idx.isEmpty(i)) slots.push(i);
            idx.fix(slots[op.n % slots.length]!);
          } else {
            const h = pool[op.h % pool.length]!;
            const key = h.toString('hex');
            const r = idx.lookup(h);
            expect(r.found).toBe(model.has(key));
            // the allocation-free lookup of fsck's file walk agrees, from an offset inside a larger buffer too
            expect(idx.lookupAddress(h)).toBe(model.get(key) ?? -1);
            expect(idx.lookupAddress(Buffer.concat([Buffer.from([7, 7, 7]), h]), 3)).toBe(model.get(key) ?? -1);
            if (r.found) {
              expect(r.address).toBe(model.get(key));
              expect(idx.hash(r.slot).equals(h)).toBe(true);
            } else {
              expect(r.address).toBe(-1);
              expect(r.slot).toBeGreaterThanOrEqual(idx.idealSlot(h));
            }
            if (op.kind === 'insert' && !r.found && usedAddresses.size < blockCount - 2) {
              let a = 2 + (op.a % (blockCount - 2));
              while (usedAddresses.has(a)) a = a + 1 >= blockCount ? 2 : a + 1;
              idx.insertAt(r.slot, a, h);
              model.set(key, a);
              usedAddresses.add(a);
            } else if (op.kind === 'delete' && r.found) {
              idx.delete(r.slot);
              usedAddresses.delete(model.get(key)!);
              model.delete(key);
            }
          }
          expect(idx.checkInvariants()).toEqual([]);
          expect(idx.countUsed()).toBe(model.size);
          checkDirty(idx, before);
        }
        expect(tableContent(idx)).toEqual(model);
        for (const h of pool) {
          const r = idx.lookup(h);
          expect(r.found ? r.address : undefined).toBe(model.get(h.toString('hex')));
        }
        // sorted linear probing with backward-shift deletion is history independent
        expect(flat(idx).equals(canonical(Impl, geo, model))).toBe(true);
        // deleting everything leaves an all-zero table
        for (const h of pool) {
          const r = idx.lookup(h);
          if (r.found) idx.delete(r.slot);
          expect(idx.checkInvariants()).toEqual([]);
        }
        expect(flat(idx).every((b) => b === 0)).toBe(true);
      }),
      { numRuns: 120 },
    );
  });

  it("add 'duplicates': equal hashes in descending address order, identical nodes not re-added; 'unique' collapses them (fast-check)", () => {
    const arb = fc
      .record({ blockCount: fc.integer({ min: 64, max: 300 }), hashSize: fc.constantFrom(16, 20, 24) })
      .chain(({ blockCount, hashSize }) =>
        fc.record({
          blockCount: fc.constant(blockCount),
          hashSize: fc.constant(hashSize),
          pool: hashPoolArb(hashSize).filter((p) => p.length >= 2),
          adds: fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.nat()), { minLength: 1, maxLength: 80 }),
          finals: fc.array(fc.nat(), { maxLength: 20 }),
        }),
      );
    fc.assert(
      fc.property(arb, ({ blockCount, hashSize, pool, adds, finals }) => {
        const geo = geometry(blockCount, hashSize);
        const idx = new Impl(geo);
        const model = new Map<string, Set<number>>();
        const added: Array<[Buffer, number]> = [];
        let nextAddress = 2;
        for (const [hi, again, pick] of adds) {
          let h: Buffer;
          let a: number;
          if (again && added.length > 0) {
            [h, a] = added[pick % added.length]!; // re-adding an identical node is a no-op
          } else {
            if (nextAddress >= blockCount) break;
            h = pool[hi % pool.length]!;
            a = nextAddress++;
            added.push([h, a]);
          }
          const before = flat(idx);
          idx.add(a, h, 'duplicates');
          checkDirty(idx, before);
          const k = h.toString('hex');
          if (!model.has(k)) model.set(k, new Set());
          model.get(k)!.add(a);
        }
        // relaxed invariants: ideal slot respected, no gap, order (hash asc, address desc)
        const seen = new Map<string, number[]>();
        for (let i = 0; i < idx.nodeCount; i++) {
          if (idx.isEmpty(i)) continue;
          const ideal = idx.idealSlotOf(i);
          expect(i).toBeGreaterThanOrEqual(ideal);
          if (i > ideal) expect(idx.isEmpty(i - 1)).toBe(false);
          if (i > 0 && !idx.isEmpty(i - 1)) {
            const c = idx.compareHash(i - 1, idx.hashView(i));
            expect(c).toBeLessThanOrEqual(0);
            if (c === 0) {
              expect(idx.address(i - 1)).toBeGreaterThan(idx.address(i));
              expect(seen.get(idx.hash(i).toString('hex'))!.at(-1)).toBe(i - 1); // equal hashes are adjacent
            }
          }
          const k = idx.hash(i).toString('hex');
          seen.set(k, [...(seen.get(k) ?? []), i]);
        }
        expect(new Set(seen.keys())).toEqual(new Set(model.keys()));
        for (const [k, addresses] of model) {
          const slots = seen.get(k)!;
          expect(slots.map((i) => idx.address(i))).toEqual([...addresses].sort((x, y) => y - x));
          // lookup returns the first of the equal hashes: the highest address
          expect(idx.lookup(Buffer.from(k, 'hex'))).toEqual({ found: true, address: Math.max(...addresses), slot: slots[0] });
        }
        // 'unique': each hash ends with exactly one node; pick its final address among its own (addresses stay unique)
        const final = new Map<string, number>();
        let f = 0;
        for (const [k, addresses] of model) {
          const list = [...addresses];
          const a = list[(finals[f++ % Math.max(1, finals.length)] ?? 0) % list.length]!;
          const before = flat(idx);
          idx.add(a, Buffer.from(k, 'hex'), 'unique');
          checkDirty(idx, before);
          final.set(k, a);
        }
        expect(idx.checkInvariants()).toEqual([]);
        expect(tableContent(idx)).toEqual(final);
        expect(flat(idx).equals(canonical(Impl, geo, final))).toBe(true);
        // 'unique' on a new hash inserts it; on a present one it only changes the address
        if (nextAddress < blockCount) {
          const h = Buffer.alloc(hashSize, 0xab);
          idx.add(nextAddress, h, 'unique');
          expect(idx.lookup(h)).toMatchObject({ found: true, address: nextAddress });
          expect(idx.checkInvariants()).toEqual([]);
        }
      }),
      { numRuns: 120 },
    );
  });
});

describe('NodeIndex over chunks', () => {
  it('a run that crosses a chunk boundary is shifted and written back per chunk', () => {
    const geo = geometry(256, 24); // 25-byte nodes, 12 nodes per 300-byte chunk
    const idx = new ChunkedNodeIndex(geo);
    const npc = Math.floor(CHUNKED_BYTES / 25);
    expect(idx.chunks[0]!.length).toBe(npc * 25);
    const slot = 2 * npc - 2; // two slots before the end of chunk 1
    const hashes = [0, 1, 2, 3, 4].map((t) => hashForSlot(geo, slot, 100 - t * 10)); // descending tails
    idx.takeDirtyRanges();
    hashes.forEach((h, n) => {
      const r = idx.lookup(h);
      idx.insertAt(r.slot, 10 + n, h); // every insert lands at `slot` and shifts the run up, across the boundary
    });
    expect(idx.checkInvariants()).toEqual([]);
    expect([0, 1, 2, 3, 4].map((n) => idx.address(slot + n))).toEqual([14, 13, 12, 11, 10]);
    const ranges = idx.takeDirtyRanges();
    expect(ranges.map((r) => idx.chunks.indexOf(r.chunk))).toEqual([...new Set(ranges.map((r) => idx.chunks.indexOf(r.chunk)))]);
    expect(ranges.some((r) => r.chunk === idx.chunks[1])).toBe(true);
    expect(ranges.some((r) => r.chunk === idx.chunks[2])).toBe(true);
    idx.delete(slot); // backward shift across the boundary
    expect([0, 1, 2, 3, 4].map((n) => idx.address(slot + n))).toEqual([13, 12, 11, 10, 0]);
    expect(idx.checkInvariants()).toEqual([]);
  });
});
