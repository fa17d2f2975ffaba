import { describe, expect, it } from 'vitest';
import { createHasher } from './hash.js';

describe('block hashes (spec §6)', () => {
  it('TIGER uses mhash byte order', () => {
    const t = createHasher('TIGER');
    expect(t.hash(Buffer.alloc(0)).toString('hex')).toBe('24f0130c63ac9332' + '16166e76b1bb925f' + 'f373de2d49584e7a');
    expect(t.hash(Buffer.from('abc')).toString('hex')).toBe('f258c1e88414ab2a527ab541ffc5b8bf935f7b951c132951');
  });
  it('TIGER160 and TIGER128 are prefixes', () => {
    expect(createHasher('TIGER160').hash(Buffer.from('abc')).toString('hex')).toBe('f258c1e88414ab2a527ab541ffc5b8bf935f7b95');
    expect(createHasher('TIGER128').hash(Buffer.from('abc')).toString('hex')).toBe('f258c1e88414ab2a527ab541ffc5b8bf');
  });
  const zeroTable: [number, string, string][] = [
    [4096, 'c50b60fa710aa94f3e5615b4d4a194e3cdfacf95e0253b6a', '1ceaf73df40e531df3bfb26b4fb7cd95fb7bff1d'],
    [8192, 'a38d81d73123502c6b345d96379d6318050b253db7618968', '0631457264ff7f8d5fb1edc2c0211992a67c73e6'],
    [16384, '6caf3c31c1f4b1253813478bc3e989639fdeac7b2306b542', '897256b6709e1a4da9daba92b6bde39ccfccd8c1'],
    [32768, 'a0281efd4a052a0e7f82281a93cfe35ec83cb8fd3e96aa01', '5188431849b4613152fd7bdba6a3ff0a4fd6424b'],
    [65536, 'f4bb1d4eef0d32c309555c669cf8c3282889ab62bbcfc433', '1adc95bebe9eea8c112d40cd04ab7a8d75c4f961'],
    [131072, 'a9ca99c3f44c87e44c8b04ff8723d6055f4e8f9e29d80202', '67dfd19f3eb3649d6f3f6631e44d0bd36b8d8d19'],
  ];
  it.each(zeroTable)('zero block of %i bytes', (bs, tiger, sha1) => {
    const zero = Buffer.alloc(bs);
    expect(createHasher('TIGER').hash(zero).toString('hex')).toBe(tiger);
    expect(createHasher('SHA1').hash(zero).toString('hex')).toBe(sha1);
    expect(createHasher('TIGER128').hash(zero).toString('hex')).toBe(tiger.slice(0, 32));
  });
  it('hashes a subarray view, not its parent buffer', () => {
    const big = Buffer.alloc(8192, 0);
    Buffer.from('abc').copy(big, 4096);
    const out = Buffer.alloc(30);
    createHasher('TIGER').hashInto(big.subarray(4096, 4099), out, 3);
    expect(out.subarray(3, 27).toString('hex')).toBe('f258c1e88414ab2a527ab541ffc5b8bf935f7b951c132951');
  });
});
