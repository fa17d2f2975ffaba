/**
 * NodeCache against a trivially correct model (an array of node values and a map of overrides): random writes of
 * the UFS file, overrides, cuts and extensions, with reads checked after every step; pages are tiny so they are
 * dropped and read again all the time. Then the bounds: resident pages never exceed the maximum, and a node list of
 * 2^28 nodes costs only the pages touched.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { UFS_HEADER_SIZE } from '../limits.js';
import { MemoryDeviceFactory } from '../io/memory_device.js';
import { NodeCache } from './node_cache.js';

const NS = 5; // 1-byte address + 4-byte "hash"
const GEO = { nodeSize: NS, addrSize: 1, pageNodeCount: 3, pageCountResidentMax: 2 };

function node(seed: number): Buffer {
  return Buffer.from([seed & 0xff, (seed >> 8) & 0xff, 1, 2, 3]);
}

type Op =
  | { kind: 'write'; first: number; count: number; seed: number }
  | { kind: 'override'; j: number; seed: number }
  | { kind: 'cut'; count: number }
  | { kind: 'extend'; count: number }
  | { kind: 'read'; first: number; count: number };

const SPAN = 20;
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), first: fc.nat(SPAN), count: fc.integer({ min: 1, max: 7 }), seed: fc.nat(60000) }),
  fc.record({ kind: fc.constant('override' as const), j: fc.nat(SPAN), seed: fc.nat(60000) }),
  fc.record({ kind: fc.constant('cut' as const), count: fc.nat(SPAN) }),
  fc.record({ kind: fc.constant('extend' as const), count: fc.nat(SPAN + 5) }),
  fc.record({ kind: fc.constant('read' as const), first: fc.nat(SPAN + 5), count: fc.integer({ min: 1, max: 10 }) }),
);

describe('NodeCache', () => {
  it('reads what the model says after any sequence of writes, overrides, cuts and extensions (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 50 }), async (ops) => {
        const devices = new MemoryDeviceFactory();
        const device = await devices.open('/ufs', { create: true });
        await device.write(Buffer.alloc(UFS_HEADER_SIZE), 0);
        const cache = new NodeCache(device, 0, GEO);
        let disk: Buffer[] = []; // nodes in the UFS file
        const overrides = new Map<number, Buffer>();
        const expected = (j: number): Buffer => overrides.get(j) ?? (j < disk.length ? disk[j]! : Buffer.alloc(NS));
        for (const o of ops) {
          if (o.kind === 'write') {
            const nodes = Buffer.concat(Array.from({ length: o.count }, (_, k) => node(o.seed + k)));
            await device.write(nodes, UFS_HEADER_SIZE + o.first * NS);
            cache.wrote(o.first, nodes);
            while (disk.length < o.first) disk.push(Buffer.alloc(NS)); // the gap is a hole of the host file
            for (let k = 0; k < o.count; k++) {
              disk[o.first + k] = node(o.seed + k);
              overrides.delete(o.first + k);
            }
          } else if (o.kind === 'override') {
            cache.setOverride(o.j, node(o.seed));
            overrides.set(o.j, node(o.seed));
          } else if (o.kind === 'cut') {
            if (o.count < disk.length) await device.truncate(UFS_HEADER_SIZE + o.count * NS);
            cache.cut(o.count);
            disk = disk.slice(0, o.count);
            for (const k of [...overrides.keys()]) if (k >= o.count) overrides.delete(k);
          } else if (o.kind === 'extend') {
            if (o.count > disk.length) {
              await device.truncate(UFS_HEADER_SIZE + o.count * NS);
              while (disk.length < o.count) disk.push(Buffer.alloc(NS));
            }
            cache.extendTo(o.count);
          } else {
            const got = await cache.read(o.first, o.count);
            const want = Buffer.concat(Array.from({ length: o.count }, (_, k) => expected(o.first + k)));
            expect(got.toString('hex')).toBe(want.toString('hex'));
            for (let k = 0; k < o.count; k++) expect(await cache.address(o.first + k)).toBe(want[k * NS]);
          }
          expect(cache.nodeCountOnDisk).toBe(disk.length);
          expect(cache.pageCount).toBeLessThanOrEqual(GEO.pageCountResidentMax);
          expect(cache.sizeBytes).toBe(cache.pageCount * GEO.pageNodeCount * NS + overrides.size * NS);
        }
        // what is held in memory: pages hold the UFS file's nodes (zeros past it), single nodes are the overrides
        let overridesSeen = 0;
        cache.forEachInMemory((nodes, first) => {
          if (nodes.length === NS) {
            overridesSeen++;
            expect(nodes.equals(overrides.get(first)!)).toBe(true);
            return;
          }
          for (let k = 0; k < GEO.pageNodeCount; k++) {
            const j = first + k;
            expect(nodes.subarray(k * NS, (k + 1) * NS).equals(j < disk.length ? disk[j]! : Buffer.alloc(NS))).toBe(true);
          }
        });
        expect(overridesSeen).toBe(overrides.size);
        await device.close();
      }),
      { numRuns: 300 },
    );
  });

  it('a node list of 2^28 nodes costs only the pages touched, and a page is read once while resident', async () => {
    const reads: number[] = [];
    const device = {
      path: '/huge',
      read: async (buf: Buffer, _off: number, length: number, position: number): Promise<number> => {
        reads.push(position);
        buf.fill(0, 0, length); // a hole
        return length;
      },
      write: async () => undefined,
      sync: async () => undefined,
      size: async () => UFS_HEADER_SIZE + 2 ** 28 * 26,
      truncate: async () => undefined,
      close: async () => undefined,
    };
    const cache = new NodeCache(device, 2 ** 28, { nodeSize: 26, addrSize: 1, pageNodeCount: 256, pageCountResidentMax: 4 });
    for (const j of [0, 1, 255, 2 ** 27, 2 ** 27 + 1, 2 ** 28 - 1]) expect(await cache.address(j)).toBe(0);
    expect(reads.length).toBe(3);
    expect(cache.pageCount).toBe(3);
    expect(cache.sizeBytes).toBe(3 * 256 * 26);
    expect(cache.fullyResident).toBe(false);
    for (let p = 0; p < 10; p++) await cache.read(p * 1000 * 256, 2);
    expect(cache.pageCount).toBe(4);
  });
});
