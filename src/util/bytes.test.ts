import { describe, expect, it } from 'vitest';
import { bytesEqual, copyBytes } from './bytes.js';

describe('bytesEqual', () => {
  it('compares ranges at offsets, as Buffer#compare of those ranges does', () => {
    const x = Buffer.from('00112233445566', 'hex');
    const y = Buffer.from('ff2233445500', 'hex');
    expect(bytesEqual(x, 2, y, 1, 4)).toBe(true);
    expect(bytesEqual(x, 2, y, 1, 5)).toBe(false); // 0x66 against 0x00
    expect(bytesEqual(x, 0, y, 0, 1)).toBe(false);
    expect(bytesEqual(x, 3, y, 2, 0)).toBe(true);
    for (let n = 1; n <= 24; n++) {
      const a = Buffer.alloc(n, 7);
      const b = Buffer.from(a);
      expect(bytesEqual(a, 0, b, 0, n)).toBe(true);
      b[n - 1] = 8; // the last byte alone differs
      expect(bytesEqual(a, 0, b, 0, n)).toBe(Buffer.compare(a, b) === 0);
    }
  });

  it('never matches past the end of a buffer', () => {
    const x = Buffer.alloc(4);
    expect(bytesEqual(x, 2, Buffer.alloc(4), 0, 4)).toBe(false);
    expect(bytesEqual(Buffer.alloc(4), 0, x, 1, 4)).toBe(false);
  });

  it('copyBytes moves exactly the range asked for', () => {
    const to = Buffer.alloc(8, 0xaa);
    copyBytes(Buffer.from('0011223344', 'hex'), 1, to, 3, 3);
    expect(to.toString('hex')).toBe('aaaaaa112233aaaa');
  });
});
