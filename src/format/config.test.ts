/**
 * ddfs.cfg (spec §3): the worked examples of §3.4, the float32 detail of §3.3, both layouts, the upstream fixture
 * cfgs byte for byte, rejection of malformed files, and a derive → render → parse round trip property.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DdfsError } from '../errors.js';
import { FIXTURE_VOLS_DIR } from '../../test/helpers/fixtures.js';
import {
  bitmapWordBytes, deriveConfig, parseConfig, parseHashName, renderConfig, validateConfig, HASH_SIZES,
  type DdfsConfig, type GeometryInput, type HashName,
} from './config.js';

const FIXTURES = FIXTURE_VOLS_DIR;
const MiB = 1024 * 1024;

function derive(partitionSize: number, blockSize: number, hashName: HashName = 'TIGER', nodeOverflow = 1.3): DdfsConfig {
  return deriveConfig({ partitionSize, blockSize, hashName, nodeOverflow, reuseAsap: false });
}

/** The 1.1 text of `-s 1M -B 4k` (spec §3.4, VERIFIED). */
const CFG_1M = `file_header_size: 16
hash: TIGER
hash_size: 24
block_size: 4096
index_block_size: 4096
node_overflow: 1.30
reuse_asap: 0
auto_buffer_flush: 60
auto_sync: 120
partition_size: 1048576
block_count: 256
addr_size: 1
node_size: 25
node_count: 1146
node_block_count: 7
freeblock_offset: 65536
freeblock_size: 32
node_offset: 131072
index_size: 159744
index_block_count: 39
root_directory: ddfsroot
block_filename: ddfsblocks
index_filename: ddfsidx
`;

/** A pre-1.1 cfg: 10 GiB / 4k / TIGER, bitmap at 4096, no auto_* keys (spec §3.4). */
const CFG_PRE11 = `file_header_size: 16
hash: TIGER
hash_size: 24
block_size: 4096
index_block_size: 4096
node_overflow: 1.30
reuse_asap: 0
partition_size: 10737418240
block_count: 2621440
addr_size: 3
node_size: 27
node_count: 3408630
node_block_count: 22469
freeblock_offset: 4096
freeblock_size: 327680
node_offset: 331776
index_size: 92364800
index_block_count: 22550
root_directory: ddfsroot
block_filename: ddfsblocks
index_filename: ddfsidx
`;

function expectBadConfig(text: string, key: string, source = '/vol/ddfs.cfg'): DdfsError {
  let caught: unknown;
  try {
    parseConfig(text, source);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DdfsError);
  const e = caught as DdfsError;
  expect(e.code).toBe('BAD_CONFIG');
  expect(e.message).toContain(source);
  expect(e.message).toContain(key);
  expect(e.data.key).toBe(key);
  return e;
}

function replaceLine(text: string, key: string, line: string | null): string {
  const re = new RegExp(`^${key}:.*\\n`, 'm');
  expect(re.test(text)).toBe(true);
  return text.replace(re, line === null ? '' : `${line}\n`);
}

describe('deriveConfig: spec §3.4 worked examples', () => {
  it('-s 500M -B 4k -H TIGER -o 1.3', () => {
    expect(derive(500 * MiB, 4096)).toMatchObject({
      blockCount: 128000, addrSize: 3, nodeSize: 27, nodeCount: 167177, nodeBlockCount: 1102, freeblockOffset: 65536,
      freeblockSize: 16000, nodeOffset: 131072, indexSize: 4644864, indexBlockCount: 1134,
    });
  });

  it('-s 240M -B 4k: addr_size 2', () => {
    expect(derive(240 * MiB, 4096)).toMatchObject({
      blockCount: 61440, addrSize: 2, nodeSize: 26, nodeCount: 80659, nodeBlockCount: 512, freeblockSize: 7680,
      nodeOffset: 131072, indexSize: 2228224, indexBlockCount: 544,
    });
  });

  it('-s 1M -B 4k: the full cfg text', () => {
    expect(renderConfig(derive(MiB, 4096))).toBe(CFG_1M);
    expect(parseConfig(CFG_1M)).toEqual(derive(MiB, 4096));
  });

  it('the fixture volumes: mkddumbfs options give the stored cfg byte for byte', () => {
    const cases: Array<[string, number, number, HashName]> = [
      ['v11-4k-tiger', 4 * MiB, 4096, 'TIGER'],
      ['v11-8k-sha1', 4 * MiB, 8192, 'SHA1'],
      ['v11-4k-tiger128', 2 * MiB, 4096, 'TIGER128'],
      ['v11-16k-tiger160', 8 * MiB, 16384, 'TIGER160'],
    ];
    for (const [vol, size, bs, hash] of cases) {
      expect(renderConfig(derive(size, bs, hash))).toBe(readFileSync(`${FIXTURES}/${vol}/ddfs.cfg`, 'utf8'));
    }
  });

  it('addr_size is the smallest n with 2^(8n) >= block_count', () => {
    expect(derive(256 * 512, 512).addrSize).toBe(1);
    expect(derive(257 * 512, 512).addrSize).toBe(2);
    expect(derive(65536 * 512, 512).addrSize).toBe(2);
    expect(derive(65537 * 512, 512).addrSize).toBe(3);
  });

  it('refuses a partition of fewer than 2 blocks', () => {
    expect(() => derive(8191, 4096)).toThrow(DdfsError);
    expect(derive(8192, 4096).blockCount).toBe(2);
  });
});

describe('deriveConfig: the float32 overflow factor (spec §3.3 note)', () => {
  const n0 = (blockCount: number, ov: number): number => Math.trunc(blockCount * ov + 512 * ov);

  it('block_count 1008: n0 differs by one between float32 and double; ours follows float32', () => {
    const f32 = Math.fround(1.3);
    expect(f32).toBe(1.2999999523162842);
    expect(n0(1008, 1.3)).toBe(1976);
    expect(n0(1008, f32)).toBe(1975);
    const cfg = derive(1008 * 4096, 4096);
    expect(cfg.nodeSize).toBe(26);
    // 1975 and 1976 nodes fill the same 13 pages: the difference disappears after page rounding here
    expect(cfg.nodeBlockCount).toBe(Math.ceil((n0(1008, f32) * 26) / 4096));
    expect(cfg.nodeBlockCount).toBe(13);
    expect(cfg.nodeCount).toBe(2048);
  });

  it('block_count 458: the difference survives page rounding, and we match the float32 computation', () => {
    const f32 = Math.fround(1.3);
    expect(n0(458, 1.3)).toBe(1261);
    expect(n0(458, f32)).toBe(1260);
    const withDouble = Math.ceil((1261 * 26) / 4096);
    const withFloat = Math.ceil((1260 * 26) / 4096);
    expect(withDouble).toBe(9);
    expect(withFloat).toBe(8);
    const cfg = derive(458 * 4096, 4096);
    expect(cfg.nodeBlockCount).toBe(withFloat);
    expect(cfg.nodeCount).toBe(Math.floor((8 * 4096) / 26));
  });

  it('the cfg keeps the two-decimal text of the factor, not the float32 value', () => {
    expect(derive(MiB, 4096, 'TIGER', 1.3).nodeOverflow).toBe(1.3);
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 1.1))).toContain('node_overflow: 1.10\n');
  });

  it('renders exact binary ties like glibc printf %.2f (round half to even)', () => {
    // 1.125, 1.625, 9.875 are exact in binary: printf gives 1.12, 1.62, 9.88; toFixed would give 1.13, 1.63
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 1.125))).toContain('node_overflow: 1.12\n');
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 1.375))).toContain('node_overflow: 1.38\n');
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 1.625))).toContain('node_overflow: 1.62\n');
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 9.875))).toContain('node_overflow: 9.88\n');
    expect(renderConfig(derive(MiB, 4096, 'TIGER', 1.15))).toContain('node_overflow: 1.15\n');
  });
});

describe('parseConfig / renderConfig', () => {
  it('parses a pre-1.1 layout cfg (bitmap at 4096, no auto_* keys) and renders it back identically', () => {
    const cfg = parseConfig(CFG_PRE11);
    expect(cfg).toMatchObject({
      hashName: 'TIGER', blockCount: 2621440, addrSize: 3, nodeSize: 27, nodeCount: 3408630, nodeBlockCount: 22469,
      freeblockOffset: 4096, freeblockSize: 327680, nodeOffset: 331776, indexSize: 92364800, indexBlockCount: 22550,
      autoBufferFlush: null, autoSync: null, nodeOverflow: 1.3, reuseAsap: false,
    });
    expect(renderConfig(cfg)).toBe(CFG_PRE11);
    // the stored values are used, not recomputed: a 1.1 mkfs would have put the bitmap at 65536
    expect(derive(10 * 1024 * MiB, 4096).freeblockOffset).toBe(65536);
    expect(derive(10 * 1024 * MiB, 4096).nodeCount).toBe(cfg.nodeCount);
  });

  it('parses the 100 GiB / 64k pre-1.1 example', () => {
    let text = CFG_PRE11;
    for (const [k, v] of Object.entries({
      block_size: 65536, partition_size: 107374182400, block_count: 1638400, node_count: 2130678, node_block_count: 14045,
      freeblock_size: 204800, node_offset: 208896, index_size: 57737216, index_block_count: 14096,
    })) text = replaceLine(text, k, `${k}: ${v}`);
    const cfg = parseConfig(text);
    expect(cfg.nodeOffset).toBe(cfg.freeblockOffset + bitmapWordBytes(cfg));
    expect(renderConfig(cfg)).toBe(text);
  });

  it('render(parse(x)) === x for the four distinct fixture cfgs', () => {
    const seen = new Set<string>();
    for (const vol of ['v11-4k-tiger', 'v11-8k-sha1', 'v11-4k-tiger128', 'v11-16k-tiger160']) {
      const text = readFileSync(`${FIXTURES}/${vol}/ddfs.cfg`, 'utf8');
      seen.add(text);
      expect(renderConfig(parseConfig(text, vol))).toBe(text);
    }
    expect(seen.size).toBe(4);
  });

  it('tolerates CRLF, spaces around the colon, unknown keys and any key order; TIGER192 is TIGER', () => {
    const lines = CFG_1M.trimEnd().split('\n').reverse();
    lines.push('some_future_key: 42', 'no colon here');
    const text = lines.map((l) => l.replace(': ', '  :   ')).join('\r\n').replace('hash  :   TIGER', 'hash: TIGER192');
    expect(parseConfig(text)).toEqual(parseConfig(CFG_1M));
    expect(parseHashName('tiger192')).toBe('TIGER');
    expect(parseHashName('MD5')).toBeNull();
  });

  it('bitmapWordBytes = 4·ceil(block_count/32)', () => {
    expect(bitmapWordBytes({ blockCount: 256 })).toBe(32);
    expect(bitmapWordBytes({ blockCount: 10240 })).toBe(1280);
    expect(bitmapWordBytes({ blockCount: 33 })).toBe(8);
  });
});

describe('parseConfig rejects malformed cfgs with BAD_CONFIG naming the file and the key', () => {
  it('missing key', () => {
    expectBadConfig(replaceLine(CFG_1M, 'node_count', null), 'node_count');
    expectBadConfig(replaceLine(CFG_1M, 'block_size', 'block_size:'), 'block_size');
  });
  it('non-numeric value', () => {
    expectBadConfig(replaceLine(CFG_1M, 'block_count', 'block_count: lots'), 'block_count');
    expectBadConfig(replaceLine(CFG_1M, 'node_overflow', 'node_overflow: 1.3x'), 'node_overflow');
    expectBadConfig(replaceLine(CFG_1M, 'index_size', 'index_size: 0x27000'), 'index_size');
    expectBadConfig(replaceLine(CFG_1M, 'partition_size', 'partition_size: 99999999999999999999'), 'partition_size');
  });
  it('absurd block_size', () => {
    for (const v of ['0', '1000', '256', '4194304']) expectBadConfig(replaceLine(CFG_1M, 'block_size', `block_size: ${v}`), 'block_size');
  });
  it('hash_size mismatch and unknown hash', () => {
    expectBadConfig(replaceLine(CFG_1M, 'hash_size', 'hash_size: 20'), 'hash_size');
    expectBadConfig(replaceLine(CFG_1M, 'hash', 'hash: MD5'), 'hash');
  });
  it('node_size mismatch', () => {
    expectBadConfig(replaceLine(CFG_1M, 'node_size', 'node_size: 26'), 'node_size');
  });
  it('addr_size not the smallest for block_count', () => {
    let t = replaceLine(CFG_1M, 'block_count', 'block_count: 257');
    t = replaceLine(t, 'partition_size', `partition_size: ${257 * 4096}`);
    expectBadConfig(t, 'addr_size');
    expectBadConfig(replaceLine(CFG_1M, 'addr_size', 'addr_size: 0'), 'addr_size');
    expectBadConfig(replaceLine(CFG_1M, 'addr_size', 'addr_size: 2'), 'addr_size');
  });
  it('node_count is not what node_block_count pages hold', () => {
    // 7 pages of 25-byte nodes hold 1146 nodes: fewer would leave the tail unused, more would run past the pages
    expectBadConfig(replaceLine(CFG_1M, 'node_count', 'node_count: 332'), 'node_count');
    expectBadConfig(replaceLine(CFG_1M, 'node_count', 'node_count: 1145'), 'node_count');
    expectBadConfig(replaceLine(CFG_1M, 'node_count', 'node_count: 1147'), 'node_count');
  });
  it('incoherent layout (node array past the index, bitmap over the nodes)', () => {
    expectBadConfig(replaceLine(CFG_1M, 'index_size', 'index_size: 131072'), 'index_size');
    expectBadConfig(replaceLine(CFG_1M, 'node_offset', 'node_offset: 65536'), 'node_offset');
    expectBadConfig(replaceLine(CFG_1M, 'node_block_count', 'node_block_count: 6'), 'node_block_count');
    expectBadConfig(replaceLine(CFG_1M, 'file_header_size', 'file_header_size: 8'), 'file_header_size');
  });
  it('block_size changed to another power of two, or block_count changed: the fuzz cases of issue 6', () => {
    for (const bs of [512, 2048, 8192, 2 * MiB]) {
      const e = expectBadConfig(replaceLine(CFG_1M, 'block_size', `block_size: ${bs}`), 'block_count');
      expect(e.message).toContain(`partition_size / block_size = 1048576 / ${bs} gives ${Math.floor(MiB / bs)}`);
    }
    expectBadConfig(replaceLine(CFG_1M, 'block_count', 'block_count: 2'), 'block_count');
    expectBadConfig(replaceLine(CFG_1M, 'partition_size', 'partition_size: 2097152'), 'block_count');
    // a partition_size that is not a whole number of blocks keeps its block count (as mkddumbfs -s 1M+100 does)
    expect(parseConfig(replaceLine(CFG_1M, 'partition_size', 'partition_size: 1048676')).blockCount).toBe(256);
  });
  it('every derived key must be what mkddumbfs derives (1.1 layout)', () => {
    const cases: Array<[string, string, string]> = [
      ['node_block_count', 'node_block_count: 8', 'node_block_count'],
      ['node_overflow', 'node_overflow: 2.00', 'node_block_count'],
      ['freeblock_offset', 'freeblock_offset: 4096', 'node_offset'],
      ['freeblock_offset', 'freeblock_offset: 8192', 'freeblock_offset'],
      ['freeblock_size', 'freeblock_size: 33', 'freeblock_size'],
      ['node_offset', 'node_offset: 196608', 'node_offset'],
      ['index_size', 'index_size: 163840', 'index_size'],
      ['index_block_count', 'index_block_count: 40', 'index_block_count'],
      ['index_block_size', 'index_block_size: 2048', 'index_block_size'],
      ['node_size', 'node_size: 24', 'node_size'],
    ];
    for (const [key, line, named] of cases) expectBadConfig(replaceLine(CFG_1M, key, line), named);
  });
  it('every derived key must be what mkddumbfs derives (pre-1.1 layout)', () => {
    expectBadConfig(replaceLine(CFG_PRE11, 'node_offset', 'node_offset: 393216'), 'node_offset');
    expectBadConfig(replaceLine(CFG_PRE11, 'freeblock_offset', 'freeblock_offset: 65536'), 'node_offset');
    expectBadConfig(replaceLine(CFG_PRE11, 'block_size', 'block_size: 8192'), 'block_count');
    expectBadConfig(replaceLine(CFG_PRE11, 'node_count', 'node_count: 3408631'), 'node_count');
  });
  it('a factor typed with more digits than the cfg keeps (upstream mkddumbfs -o 1.333) is accepted', () => {
    const typed = deriveConfig({ partitionSize: 500 * MiB, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.334, reuseAsap: false });
    const text = renderConfig(typed);
    expect(text).toContain('node_overflow: 1.33\n');
    const parsed = parseConfig(text);
    expect(parsed.nodeBlockCount).toBe(typed.nodeBlockCount);
    expect(parsed.nodeBlockCount).not.toBe(derive(500 * MiB, 4096, 'TIGER', 1.33).nodeBlockCount);
  });
  it('validateConfig uses the given source name', () => {
    const cfg = { ...parseConfig(CFG_1M), nodeSize: 99 };
    expect(() => validateConfig(cfg, 'X.cfg')).toThrow(/X\.cfg.*node_size/);
  });
});

describe('property: deriveConfig → renderConfig → parseConfig is the identity', () => {
  const hashNames = Object.keys(HASH_SIZES) as HashName[];
  const input: fc.Arbitrary<GeometryInput> = fc
    .record({
      log2Bs: fc.integer({ min: 9, max: 21 }),
      blockCount: fc.oneof(fc.integer({ min: 2, max: 5000 }), fc.integer({ min: 2, max: 2 ** 32 })),
      extra: fc.nat(),
      hashName: fc.constantFrom(...hashNames),
      overflowHundredths: fc.integer({ min: 110, max: 1000 }),
      reuseAsap: fc.boolean(),
      names: fc.option(fc.tuple(fc.constantFrom('/dev/sdb1', 'blocks', '/srv/b'), fc.constantFrom('/dev/sdc1', 'idx')), { nil: undefined }),
    })
    .filter(({ log2Bs, blockCount }) => blockCount * 2 ** log2Bs < 2 ** 52)
    .map(({ log2Bs, blockCount, extra, hashName, overflowHundredths, reuseAsap, names }) => ({
      partitionSize: blockCount * 2 ** log2Bs + (extra % 2 ** log2Bs),
      blockSize: 2 ** log2Bs,
      hashName,
      nodeOverflow: overflowHundredths / 100,
      reuseAsap,
      blockFilename: names?.[0],
      indexFilename: names?.[1],
    }));

  it('round trips and satisfies the §3.3 geometry', () => {
    fc.assert(
      fc.property(input, (inp) => {
        const cfg = deriveConfig(inp);
        const text = renderConfig(cfg);
        expect(parseConfig(text)).toEqual(cfg);
        expect(renderConfig(parseConfig(text))).toBe(text);
        // independent checks of the layout
        expect(cfg.blockCount).toBe(Math.floor(inp.partitionSize / inp.blockSize));
        expect(2 ** (8 * cfg.addrSize)).toBeGreaterThanOrEqual(cfg.blockCount);
        if (cfg.addrSize > 1) expect(2 ** (8 * (cfg.addrSize - 1))).toBeLessThan(cfg.blockCount);
        expect(cfg.nodeCount * cfg.nodeSize).toBeLessThanOrEqual(cfg.nodeBlockCount * 4096);
        expect((cfg.nodeCount + 1) * cfg.nodeSize).toBeGreaterThan(cfg.nodeBlockCount * 4096);
        expect(cfg.nodeCount).toBeGreaterThan(Math.floor(cfg.blockCount * cfg.nodeOverflow));
        expect(cfg.nodeOffset % 65536).toBe(0);
        expect(cfg.nodeOffset).toBeGreaterThanOrEqual(cfg.freeblockOffset + cfg.freeblockSize);
        expect(cfg.indexSize).toBe(cfg.nodeOffset + cfg.nodeBlockCount * 4096);
        expect(cfg.reuseAsap).toBe(inp.reuseAsap);
        expect(cfg.blockFilename).toBe(inp.blockFilename ?? 'ddfsblocks');
      }),
      { numRuns: 300 },
    );
  });
});

describe('property: a cfg with one derived key changed is refused', () => {
  /** Keys whose every other value makes the geometry a lie (partition_size only when the block count changes). */
  const DERIVED_KEYS = [
    'file_header_size', 'hash_size', 'block_size', 'index_block_size', 'block_count', 'addr_size', 'node_size',
    'node_count', 'node_block_count', 'freeblock_offset', 'freeblock_size', 'node_offset', 'index_size',
    'index_block_count',
  ] as const;

  it('BAD_CONFIG naming a key, for any volume and any other value of any derived key', () => {
    fc.assert(
      fc.property(
        fc.record({
          log2Bs: fc.integer({ min: 9, max: 21 }),
          blockCount: fc.oneof(fc.integer({ min: 2, max: 5000 }), fc.integer({ min: 2, max: 2 ** 32 })),
          hashName: fc.constantFrom(...(Object.keys(HASH_SIZES) as HashName[])),
          overflowHundredths: fc.integer({ min: 110, max: 1000 }),
          key: fc.constantFrom(...DERIVED_KEYS),
          delta: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 2 ** 20 })),
          down: fc.boolean(),
        }).filter(({ log2Bs, blockCount }) => blockCount * 2 ** log2Bs < 2 ** 52),
        ({ log2Bs, blockCount, hashName, overflowHundredths, key, delta, down }) => {
          const text = renderConfig(deriveConfig({
            partitionSize: blockCount * 2 ** log2Bs, blockSize: 2 ** log2Bs, hashName, nodeOverflow: overflowHundredths / 100, reuseAsap: false,
          }));
          const m = new RegExp(`^${key}: (\\d+)$`, 'm').exec(text)!;
          const old = Number(m[1]);
          const value = down && old >= delta ? old - delta : old + delta;
          const lied = text.replace(m[0], `${key}: ${value}`);
          expect(() => parseConfig(lied)).toThrow(DdfsError);
          try {
            parseConfig(lied);
          } catch (err) {
            expect((err as DdfsError).code).toBe('BAD_CONFIG');
            expect(typeof (err as DdfsError).data.key).toBe('string');
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('partition_size: refused exactly when it changes the block count', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 100000 }), fc.integer({ min: 0, max: 3 * 4096 }), (blockCount, extra) => {
        const text = renderConfig(derive(blockCount * 4096, 4096));
        const lied = replaceLine(text, 'partition_size', `partition_size: ${blockCount * 4096 + extra}`);
        if (extra < 4096) expect(parseConfig(lied).blockCount).toBe(blockCount);
        else expect(() => parseConfig(lied)).toThrow(/key 'block_count'/);
      }),
      { numRuns: 200 },
    );
  });
});
