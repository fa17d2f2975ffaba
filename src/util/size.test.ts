import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DdfsError } from '../errors.js';
import { formatSize, parseSize } from './size.js';

describe('parseSize', () => {
  it.each([
    ['0', 0],
    ['4096', 4096],
    ['512b', 512],
    ['64k', 65536],
    ['64K', 65536],
    ['128K', 131072],
    ['64kB', 65536],
    ['64KiB', 65536],
    ['1m', 1048576],
    ['1024M', 1073741824],
    ['100G', 107374182400],
    ['2g', 2147483648],
    ['1t', 1099511627776],
    ['3T', 3 * 1099511627776],
    [' 8k ', 8192],
  ])('%s -> %d', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'k', '-1', '1.5G', '12x', '64kk', '0x10', '1 000', '10P', '64KBB'])('rejects %j', (text) => {
    expect(() => parseSize(text)).toThrow(DdfsError);
    try {
      parseSize(text);
    } catch (err) {
      expect((err as DdfsError).code).toBe('USAGE');
    }
  });

  it('rejects values beyond the safe integer range', () => {
    expect(() => parseSize('99999999T')).toThrow(/too large/);
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0'],
    [1000, '1000'],
    [1024, '1K'],
    [65536, '64K'],
    [131072, '128K'],
    [1048576, '1M'],
    [107374182400, '100G'],
    [1099511627776, '1T'],
    [1536, '1.5K'],
    [1500000, '1.43M'],
  ])('%d -> %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('rejects negative and fractional counts', () => {
    expect(() => formatSize(-1)).toThrow(DdfsError);
    expect(() => formatSize(1.5)).toThrow(DdfsError);
  });

  it('exact renderings (multiples of 1024, or below 1024) parse back (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(1024, 1024 ** 2, 1024 ** 3), (n, unit) => {
        const bytes = n * unit;
        expect(parseSize(formatSize(bytes))).toBe(bytes);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1023 }), (bytes) => {
        expect(parseSize(formatSize(bytes))).toBe(bytes);
      }),
    );
  });
});
