/**
 * UFS file header (spec §7). The content of the spec's 10000-byte example file is not published (nor in the fixtures),
 * so the example is checked piecewise: its header bytes, its first node's encoding, and its UFS length.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DdfsError } from '../errors.js';
import { encodeAddress } from './node.js';
import { decodeUfsHeader, encodeUfsHeader, nodeCountForSize, ufsLengthForSize } from './ufs_header.js';

function expectBadHeader(head: Buffer): void {
  let caught: unknown;
  try {
    decodeUfsHeader(head, '/p/ddfsroot/f');
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DdfsError);
  expect((caught as DdfsError).code).toBe('BAD_HEADER');
  expect((caught as DdfsError).message).toContain('/p/ddfsroot/f');
}

describe('UFS header (spec §7)', () => {
  it('the 10000-byte example: header bytes, first node, 91-byte UFS file', () => {
    expect(encodeUfsHeader(10000).toString('hex')).toBe('4444554d42465346' + '0000000000002710');
    const node = Buffer.alloc(25);
    encodeAddress(node, 0, 1, 2);
    Buffer.from('05fdd7a474ca4d3f7a56d038202dd6b030ca3afe68b01c2d', 'hex').copy(node, 1);
    expect(node.toString('hex')).toBe('02' + '05fdd7a474ca4d3f7a56d038202dd6b030ca3afe68b01c2d');
    expect(nodeCountForSize(10000, 4096)).toBe(3);
    expect(ufsLengthForSize(10000, 4096, 25)).toBe(91);
    expect(decodeUfsHeader(Buffer.from('4444554d424653460000000000002710', 'hex'))).toBe(10000);
  });

  it('a 0-byte UFS file is an empty file', () => {
    expect(decodeUfsHeader(Buffer.alloc(0))).toBe(0);
    expect(ufsLengthForSize(0, 4096, 25)).toBe(16);
    expect(nodeCountForSize(0, 4096)).toBe(0);
  });

  it('short headers (1..15 bytes) are rejected', () => {
    const full = encodeUfsHeader(5);
    for (let n = 1; n < 16; n++) expectBadHeader(full.subarray(0, n));
  });

  it('a wrong magic is rejected, including the website erratum DDUMBSFF', () => {
    const h = encodeUfsHeader(5);
    h.write('DDUMBSFF', 0, 'ascii');
    expectBadHeader(h);
    expectBadHeader(Buffer.alloc(16));
  });

  it('a size beyond 2^53 is rejected; 2^53−1 is accepted', () => {
    const h = encodeUfsHeader(0);
    h.writeBigUInt64BE(2n ** 53n, 8);
    expectBadHeader(h);
    h.writeBigUInt64BE(2n ** 53n - 1n, 8);
    expect(decodeUfsHeader(h)).toBe(2 ** 53 - 1);
  });

  it('extra bytes after 16 are ignored by the decoder', () => {
    expect(decodeUfsHeader(Buffer.concat([encodeUfsHeader(77), Buffer.alloc(30, 1)]))).toBe(77);
  });

  it('round trips any size; the size is big-endian (fast-check)', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (size) => {
        const h = encodeUfsHeader(size);
        expect(h.length).toBe(16);
        expect(h.readBigUInt64BE(8)).toBe(BigInt(size));
        expect(decodeUfsHeader(h)).toBe(size);
      }),
      { numRuns: 500 },
    );
  });

  it('any change to a magic byte is rejected (fast-check)', () => {
    fc.assert(
      fc.property(fc.nat(7), fc.integer({ min: 1, max: 255 }), fc.maxSafeNat(), (i, x, size) => {
        const h = encodeUfsHeader(size);
        h[i] = h[i]! ^ x;
        expectBadHeader(h);
      }),
      { numRuns: 300 },
    );
  });

  it('node count and UFS length: k = ceil(size/bs), length = 16 + k·node_size', () => {
    fc.assert(
      fc.property(fc.nat(2 ** 40), fc.integer({ min: 9, max: 21 }), fc.integer({ min: 17, max: 72 }), (size, log2, ns) => {
        const bs = 2 ** log2;
        const k = nodeCountForSize(size, bs);
        expect(k * bs).toBeGreaterThanOrEqual(size);
        expect((k - 1) * bs).toBeLessThan(Math.max(size, 1));
        expect(ufsLengthForSize(size, bs, ns)).toBe(16 + k * ns);
      }),
      { numRuns: 300 },
    );
  });
});
