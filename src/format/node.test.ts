/**
 * Node codec and hash → ideal slot (spec §5.3, §5.4).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeAddress, encodeAddress, idealSlot } from './node.js';

const TWO_64 = 2n ** 64n;

/** Independent cidx: BigInt h64, Number() rounding to nearest, as spec §5.4 writes it for TS. */
function referenceSlot(hash: Buffer, blockCount: number, ov: number): number {
  const h64 = BigInt(`0x${hash.subarray(0, 8).toString('hex')}`);
  return Math.floor(Number(h64) * (blockCount * ov / 18446744073709551616));
}

describe('idealSlot (cidx, spec §5.4)', () => {
  it('block_count 256, ov 1.30, hash 05fdd7a474ca4d3f… → 7', () => {
    const h = Buffer.from('05fdd7a474ca4d3f7a56d038202dd6b030ca3afe68b01c2d', 'hex');
    expect(idealSlot(h, 0, 256, 1.3)).toBe(7);
  });

  it('SHA1 zero-block hash (bs 4096), block_count 10240, ov 1.10 → 1272', () => {
    const h = Buffer.from('1ceaf73df40e531df3bfb26b4fb7cd95fb7bff1d', 'hex');
    expect(idealSlot(h, 0, 10240, 1.1)).toBe(1272);
  });

  it('h64 = 2^64−1, 2621440 blocks, ov 1.3 → 3407872 = floor(block_count·ov)', () => {
    const h = Buffer.alloc(24, 0xff);
    expect(idealSlot(h, 0, 2621440, 1.3)).toBe(3407872);
    expect(Math.floor(2621440 * 1.3)).toBe(3407872);
  });

  it('reads the hash at an offset (inside a node) and ignores bytes after the first 8', () => {
    const node = Buffer.from('0205fdd7a474ca4d3f' + 'ff'.repeat(16), 'hex');
    expect(idealSlot(node, 1, 256, 1.3)).toBe(7);
    expect(idealSlot(Buffer.alloc(8), 0, 256, 1.3)).toBe(0);
  });

  it('agrees with an independent BigInt computation for random hashes and geometries (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 24 }),
        fc.integer({ min: 2, max: 2 ** 40 }),
        fc.integer({ min: 110, max: 1000 }),
        (bytes, blockCount, hundredths) => {
          const h = Buffer.from(bytes);
          const ov = hundredths / 100;
          const slot = idealSlot(h, 0, blockCount, ov);
          expect(slot).toBe(referenceSlot(h, blockCount, ov));
          expect(slot).toBeGreaterThanOrEqual(0);
          expect(slot).toBeLessThanOrEqual(Math.floor(blockCount * ov));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('agrees on h64 values whose conversion to double needs rounding (ties and near-ties)', () => {
    // h64 with more than 53 significant bits: the low bits decide the rounding direction
    fc.assert(
      fc.property(fc.bigInt({ min: 2n ** 53n, max: TWO_64 - 1n }), fc.constantFrom(0n, 1n, 0x400n, 0x3ffn, 0x401n, 0x7ffn, 0x800n), fc.integer({ min: 2, max: 2 ** 36 }), (hi, low, blockCount) => {
        const h64 = (hi & ~0xfffn) | low;
        const h = Buffer.alloc(8);
        h.writeBigUInt64BE(h64);
        expect(idealSlot(h, 0, blockCount, 1.3)).toBe(referenceSlot(h, blockCount, 1.3));
      }),
      { numRuns: 1000 },
    );
  });

  it('is monotone in the hash (sorted probing relies on it)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.integer({ min: 2, max: 2 ** 32 }), (a, b, blockCount) => {
        const [x, y] = Buffer.compare(Buffer.from(a), Buffer.from(b)) <= 0 ? [a, b] : [b, a];
        expect(idealSlot(Buffer.from(x), 0, blockCount, 1.3)).toBeLessThanOrEqual(idealSlot(Buffer.from(y), 0, blockCount, 1.3));
      }),
      { numRuns: 500 },
    );
  });
});

describe('address codec (spec §5.3: little-endian, addr_size bytes)', () => {
  it('writes little-endian bytes', () => {
    const b = Buffer.alloc(10, 0xee);
    encodeAddress(b, 1, 3, 0x010203);
    expect(b.toString('hex')).toBe('ee030201eeeeeeeeeeee');
    encodeAddress(b, 0, 8, 2 ** 53 - 1);
    expect(b.subarray(0, 8).toString('hex')).toBe('ffffffffffff1f00');
    expect(decodeAddress(b, 0, 8)).toBe(2 ** 53 - 1);
    encodeAddress(b, 0, 7, 0x0102030405060);
    expect(b.subarray(0, 7).toString('hex')).toBe('60504030201000');
  });

  it('the node of the spec §7 example: address 2 in one byte', () => {
    const b = Buffer.alloc(1);
    encodeAddress(b, 0, 1, 2);
    expect(b.toString('hex')).toBe('02');
    expect(decodeAddress(Buffer.from('0a00', 'hex'), 0, 2)).toBe(10);
  });

  it('reads the top values of 3- and 4-byte addresses and refuses a read past the buffer', () => {
    expect(decodeAddress(Buffer.from('ffffff', 'hex'), 0, 3)).toBe(2 ** 24 - 1);
    expect(decodeAddress(Buffer.from('00ffffffff', 'hex'), 1, 4)).toBe(2 ** 32 - 1);
    expect(decodeAddress(Buffer.from('00000080', 'hex'), 0, 4)).toBe(2 ** 31);
    for (const size of [3, 4]) {
      expect(() => decodeAddress(Buffer.alloc(size + 1), 2, size)).toThrow(RangeError);
      expect(() => decodeAddress(Buffer.alloc(size), -1, size)).toThrow(RangeError);
    }
  });

  it('round trips for every addr_size 1..8 and touches only its bytes (fast-check)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(16), (size, frac, offset) => {
        const max = Math.min(2 ** (8 * size), 2 ** 53) - 1;
        const address = Math.floor(frac * max);
        const b = Buffer.alloc(offset + size + 4, 0xa5);
        encodeAddress(b, offset, size, address);
        expect(decodeAddress(b, offset, size)).toBe(address);
        // same bytes as a BigInt little-endian encoding
        let v = BigInt(address);
        for (let i = 0; i < size; i++) {
          expect(b[offset + i]).toBe(Number(v & 0xffn));
          v >>= 8n;
        }
        for (let i = 0; i < offset; i++) expect(b[i]).toBe(0xa5);
        for (let i = offset + size; i < b.length; i++) expect(b[i]).toBe(0xa5);
      }),
      { numRuns: 1000 },
    );
  });
});
