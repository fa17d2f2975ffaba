/**
 * The word-at-a-time skip of sound empty nodes in check's index scan (check.ts skipSoundEmptyNodes) against the
 * byte-by-byte rule: a node is skipped only when its address is 0 and its hash is the null or the zero-block hash;
 * and the sound-node loop of the same scan (scanSoundNodes) against step 1's rules applied node by node.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodeIndex } from '../store/node_index.js';
import { scanSoundNodes, skipSoundEmptyNodes } from './check.js';
import type { FsckVolume } from './context.js';

const GEO = { blockCount: 64, nodeOverflow: 1.3, nodeCount: 83, addrSize: 3, hashSize: 24, nodeSize: 27 };

function soundEmpty(idx: NodeIndex, i: number, zeroHash: Buffer): boolean {
  if (idx.address(i) !== 0) return false;
  const h = idx.hashView(i);
  return h.every((b) => b === 0) || h.equals(zeroHash);
}

describe('skipSoundEmptyNodes', () => {
  it('returns the first node from `from` that is used or an empty node with a foreign hash (fast-check)', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.nat(GEO.nodeCount - 1), fc.constantFrom('address', 'hash-byte', 'zero-hash'), fc.nat(23)), { maxLength: 12 }),
      fc.nat(GEO.nodeCount), fc.boolean(),
      (edits, from, misaligned) => {
        // a misaligned chunk takes the byte-by-byte path, an aligned one the 32-bit words
        const bytes = GEO.nodeCount * GEO.nodeSize;
        const chunk = misaligned ? Buffer.alloc(bytes + 1).subarray(1) : Buffer.alloc(bytes);
        const idx = new NodeIndex(GEO, [chunk]);
        const zeroHash = Buffer.alloc(24, 0x5a);
        for (const [i, what, b] of edits) {
          const o = i * GEO.nodeSize;
          if (what === 'address') chunk[o + (b % 3)] = 1 + b;
          else if (what === 'hash-byte') chunk[o + 3 + b] = 1 + b;
          else zeroHash.copy(chunk, o + 3);
        }
        let want = from;
        while (want < GEO.nodeCount && soundEmpty(idx, want, zeroHash)) want++;
        expect(skipSoundEmptyNodes(idx, from, zeroHash)).toBe(want);
      },
    ), { numRuns: 2000 });
  });
});

describe('scanSoundNodes', () => {
  const zeroHash = Buffer.alloc(24, 0x5a);
  const nullHash = Buffer.alloc(24);
  const cfg = { ...GEO, hashName: 'TIGER' };

  /** The rules of check step 1, node by node: the first node from 0 with a finding (or a foreign empty hash). */
  function firstFinding(idx: NodeIndex): { stop: number; passed: number[] } {
    const seen = new Set<number>();
    const passed: number[] = [];
    for (let i = 0; i < idx.nodeCount; i++) {
      const a = idx.address(i);
      const h = idx.hashView(i);
      const special = h.equals(zeroHash) || h.equals(nullHash);
      if (a === 0) {
        if (!special) return { stop: i, passed };
        continue;
      }
      const prevEmpty = i === 0 || idx.address(i - 1) === 0;
      const ideal = idx.idealSlotOf(i);
      if (a < 2 || a >= GEO.blockCount || seen.has(a) || special || i < ideal) return { stop: i, passed };
      if (prevEmpty ? i > ideal : idx.compareHash(i - 1, h) >= 0) return { stop: i, passed };
      seen.add(a);
      passed.push(i);
    }
    return { stop: idx.nodeCount, passed };
  }

  it('passes over exactly the nodes without a finding, recording their addresses as the general loop does (fast-check)', () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.integer({ min: 2, max: GEO.blockCount - 1 }), { maxLength: 40 }),
      fc.array(fc.tuple(fc.nat(GEO.nodeCount - 1), fc.nat(GEO.nodeCount - 1), fc.constantFrom('swap', 'lost', 'range', 'dup', 'zero', 'byte', 'empty-hash', 'equal', 'left'), fc.nat(255)), { maxLength: 3 }),
      fc.nat(1 << 30),
      (addresses, edits, seed) => {
        const idx = new NodeIndex(GEO);
        let x = seed;
        for (const a of addresses) {
          const h = Buffer.alloc(24);
          for (let k = 0; k < 24; k++) h[k] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
          try {
            idx.add(a, h, 'duplicates');
          } catch {
            break; // the table's tail is full (no wrap-around): the nodes added so far make the table
          }
        }
        const c = idx.chunks[0]!;
        const ns = GEO.nodeSize;
        // most edits on used nodes, where the findings are
        const used: number[] = [];
        for (let i = 0; i < GEO.nodeCount; i++) if (idx.address(i) !== 0) used.push(i);
        for (const [i0, j0, what, b] of edits) {
          const pick = (n: number): number => (used.length > 0 && b % 4 !== 0 ? used[n % used.length]! : n);
          const i = pick(i0);
          const j = pick(j0);
          const o = i * ns;
          if (what === 'swap') {
            const t = Buffer.from(c.subarray(o, o + ns));
            c.copy(c, o, j * ns, j * ns + ns);
            t.copy(c, j * ns);
          } else if (what === 'lost') c.writeUIntLE(1, o, 3);
          else if (what === 'range') c.writeUIntLE(GEO.blockCount + b, o, 3);
          else if (what === 'dup') c.copy(c, o, j * ns, j * ns + 3);
          else if (what === 'zero') zeroHash.copy(c, o + 3);
          else if (what === 'byte') c[o + 3 + (b % 24)] = b;
          else if (what === 'left') {
            // one slot before where the table put it
            if (i > 0) {
              c.copy(c, o - ns, o, o + ns);
              c.fill(0, o, o + ns);
            }
          } else if (what === 'equal') {
            if (i > 0) c.copy(c, o + 3, o - ns + 3, o);
          }
          else c.fill(0, o, o + 3);
        }
        // the BlockStore surface the scan uses: its index, and isZeroHash (the zero-block or the null hash, spec §7)
        const isZeroHash = (h: Buffer, o = 0): boolean => h.subarray(o, o + 24).equals(zeroHash) || h.subarray(o, o + 24).equals(nullHash);
        const v = { cfg, store: { index: { nodes: idx }, zeroHash, nullHash, isZeroHash } } as unknown as FsckVolume;
        const nodeOfAddress = new Uint32Array(GEO.blockCount);
        const inIndex = new Uint8Array(GEO.blockCount / 8);
        const st = { prevEmpty: true };
        const got = scanSoundNodes(v, 0, GEO.nodeCount, st, nodeOfAddress, inIndex);
        const want = firstFinding(idx);
        expect(got).toBe(want.stop);
        for (const i of want.passed) {
          const a = idx.address(i);
          expect(nodeOfAddress[a]).toBe(i + 1);
          expect(inIndex[a >>> 3]! & (0x80 >>> (a & 7))).not.toBe(0);
        }
        expect(nodeOfAddress.filter((n) => n !== 0).length).toBe(want.passed.length);
        if (got < GEO.nodeCount) expect(st.prevEmpty).toBe(got === 0 || idx.address(got - 1) === 0);
        // without a node map (a plain -c): the same stop and the same addresses
        const inIndexOnly = new Uint8Array(GEO.blockCount / 8);
        expect(scanSoundNodes(v, 0, GEO.nodeCount, { prevEmpty: true }, null, inIndexOnly)).toBe(got);
        expect(inIndexOnly).toEqual(inIndex);
      },
    ), { numRuns: 2000 });
  });
});
