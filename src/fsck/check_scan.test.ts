/**
 * The word-at-a-time skip of sound empty nodes in check's index scan (check.ts skipSoundEmptyNodes) against the
 * byte-by-byte rule: a node is skipped only when its address is 0 and its hash is the null or the zero-block hash.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodeIndex } from '../store/node_index.js';
import { skipSoundEmptyNodes } from './check.js';

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
    ), { numRuns: 500 });
  });
});
