/**
 * CRC32C against RFC 3720 appendix B.4 and against hash-wasm's one-shot `crc32(data, 0x82F63B78)`.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32 } from 'hash-wasm';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { CRC32C_POLYNOMIAL, Crc32c } from './crc32c.js';

const crc = await Crc32c.load();

describe('Crc32c', () => {
  it('gives the check value of "123456789" (RFC 3720, CRC catalogue)', () => {
    expect(crc.compute(Buffer.from('123456789', 'latin1'))).toBe(0xe3069283);
  });

  it('gives the RFC 3720 B.4 values of the four 32-byte patterns', () => {
    const inc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const dec = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));
    expect(crc.compute(Buffer.alloc(32, 0x00))).toBe(0x8a9136aa);
    expect(crc.compute(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc.compute(inc)).toBe(0x46dd794e);
    expect(crc.compute(dec)).toBe(0x113fdb5c);
  });

  it('is 0 for no bytes and is not CRC-32/IEEE', () => {
    expect(crc.compute()).toBe(0);
    expect(crc.compute(Buffer.alloc(0))).toBe(0);
    expect(zlibCrc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc.compute(Buffer.from('123456789'))).not.toBe(0xcbf43926);
  });

  it('load() is cached and the polynomial is the reflected Castagnoli one', async () => {
    expect(await Crc32c.load()).toBe(crc);
    expect(CRC32C_POLYNOMIAL).toBe(0x82f63b78);
  });

  it('of split parts equals hash-wasm crc32 of the whole', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
        const data = Buffer.from(bytes);
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        const parts: Buffer[] = [];
        let at = 0;
        for (const p of [...points, data.length]) {
          parts.push(data.subarray(at, p));
          at = p;
        }
        const expected = parseInt(await crc32(data, CRC32C_POLYNOMIAL), 16) >>> 0;
        expect(crc.compute(...parts)).toBe(expected);
      }),
      { numRuns: 200 },
    );
  });
});
