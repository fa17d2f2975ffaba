/**
 * testddumbfs (spec §14): the generator against an independent BigInt model, the file rules, the CLI's F/C/speed
 * operations and exit codes, and the upstream fixtures made by the C testddumbfs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockGenerator, generatedSizeOf, lcgStep } from '../src/testgen/lcg.js';
import { compareGeneratedFile, writeGeneratedFile, TRANSFER_SIZE } from '../src/testgen/genfile.js';
import { speedFileName } from '../src/testgen/speed.js';
import { main, parseMask, parseOperations } from '../src/cli/testddumbfs.js';
import { FIXTURE_SRC_DIR } from './helpers/fixtures.js';

const TWO_64 = 1n << 64n;
const FIXTURES = FIXTURE_SRC_DIR;

/**
 * Reference model, written straight from the spec's prose with BigInt and DataView (no shared code with lcg.ts):
 * returns the first `blockCount` blocks concatenated.
 */
function referenceBlocks(blockSize: number, seed: bigint, mask: bigint, fast: boolean, blockCount: number): Buffer {
  const wordsPerBlock = blockSize / 8;
  const words: bigint[] = new Array<bigint>(wordsPerBlock).fill(0n);
  let state = ((seed % TWO_64) + TWO_64) % TWO_64;
  const maskU = ((mask % TWO_64) + TWO_64) % TWO_64;
  const step = (): bigint => {
    state = (state * 1103515245n + 12345n) % TWO_64;
    return state | maskU;
  };
  let rolling = 0;
  const out = Buffer.alloc(blockSize * blockCount);
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  for (let b = 0; b < blockCount; b++) {
    if (b === 0 || !fast) {
      for (let w = 0; w < wordsPerBlock; w++) words[w] = step();
    } else {
      for (let k = 0; k < 3; k++) {
        words[rolling % wordsPerBlock] = step();
        rolling++;
      }
    }
    for (let w = 0; w < wordsPerBlock; w++) view.setBigUint64(b * blockSize + w * 8, words[w]!, true);
  }
  return out;
}

/** Concatenate `blockCount` blocks from BlockGenerator.next(). */
function generatedBlocks(blockSize: number, seed: bigint, mask: bigint, fast: boolean, blockCount: number): Buffer {
  const generator = new BlockGenerator(blockSize, seed, mask, fast);
  const parts: Buffer[] = [];
  for (let b = 0; b < blockCount; b++) parts.push(Buffer.from(generator.next()));
  return Buffer.concat(parts);
}

function collector(): { out: string[]; err: string[]; io: { out(t: string): void; err(t: string): void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (t) => void out.push(t), err: (t) => void err.push(t) } };
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = collector();
  const code = await main(argv, c.io);
  return { code, out: c.out.join(''), err: c.err.join('') };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'testddumbfs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('BlockGenerator (spec §14)', () => {
  it('first words for seed 0, computed by hand from the formula', () => {
    // seed1 = 0·1103515245 + 12345 = 12345
    // seed2 = 12345·1103515245 + 12345 = 13622895699525 + 12345 = 13622895711870
    // seed3 = seed2·1103515245 + 12345 mod 2^64
    const seed1 = 12345n;
    const seed2 = 13622895711870n;
    const seed3 = (seed2 * 1103515245n + 12345n) % TWO_64;
    expect(seed2).toBe(12345n * 1103515245n + 12345n);
    expect(seed3).toBe(0xf1cc6efda70427dfn);
    const block = new BlockGenerator(4096, 0n, 0n, false).next();
    expect(block.readBigUInt64LE(0)).toBe(seed1);
    expect(block.readBigUInt64LE(8)).toBe(seed2);
    expect(block.readBigUInt64LE(16)).toBe(seed3);
    expect(block.subarray(0, 8)).toEqual(Buffer.from([0x39, 0x30, 0, 0, 0, 0, 0, 0]));
    expect(lcgStep(0n)).toBe(seed1);
    expect(lcgStep(seed2)).toBe(seed3);
  });

  it('the mask is OR-ed into each word after the step', () => {
    const block = new BlockGenerator(16, 0n, 0x60e0e0e0n, false).next();
    expect(block.readBigUInt64LE(0)).toBe(12345n | 0x60e0e0e0n);
    expect(block.readBigUInt64LE(8)).toBe(13622895711870n | 0x60e0e0e0n);
  });

  const seeds = [0n, 1n, 3n, 9n, 0xdeadbeefcafebaben, TWO_64 - 1n, -5n];
  const masks = [0n, 0x60606060n, 0xe0e0e0e0n, 0xffffffff00000000n, TWO_64 - 1n];
  const shapes: Array<[number, number]> = [
    [8, 40],
    [16, 30],
    [24, 30],
    [4096, 9],
    [131072, 3],
  ];
  for (const fast of [false, true]) {
    for (const [blockSize, blockCount] of shapes) {
      it(`matches the BigInt model: ${fast ? 'fast' : 'full'} bs=${blockSize}`, () => {
        for (const seed of seeds) {
          for (const mask of masks) {
            const expected = referenceBlocks(blockSize, seed, mask, fast, blockCount);
            const actual = generatedBlocks(blockSize, seed, mask, fast, blockCount);
            expect(actual.equals(expected), `seed=${seed} mask=${mask}`).toBe(true);
          }
        }
      });
    }
  }

  it('nextInto/fillBlocks give the same bytes as next(), at aligned and unaligned offsets', () => {
    for (const fast of [false, true]) {
      const expected = referenceBlocks(64, 77n, 0x1234n, fast, 10);
      for (const offset of [0, 3, 8]) {
        const target = Buffer.alloc(offset + 640);
        new BlockGenerator(64, 77n, 0x1234n, fast).fillBlocks(target, offset, 10);
        expect(target.subarray(offset).equals(expected)).toBe(true);
      }
    }
  });

  it('fast mode rewrites exactly 3 words per block at rolling positions (wrapping)', () => {
    const g = new BlockGenerator(40, 5n, 0n, true); // 5 words
    const blocks = [0, 1, 2, 3].map(() => Buffer.from(g.next()));
    const changed = (a: Buffer, b: Buffer): number[] =>
      [0, 1, 2, 3, 4].filter((w) => a.readBigUInt64LE(w * 8) !== b.readBigUInt64LE(w * 8));
    expect(changed(blocks[0]!, blocks[1]!)).toEqual([0, 1, 2]);
    expect(changed(blocks[1]!, blocks[2]!)).toEqual([0, 3, 4]); // positions 3, 4, 0
    expect(changed(blocks[2]!, blocks[3]!)).toEqual([1, 2, 3]);
    expect(g.blockIndex).toBe(4);
  });

  it('full mode is one continuous word stream, independent of the block size', () => {
    const a = generatedBlocks(4096, 42n, 0n, false, 8);
    const b = generatedBlocks(32768, 42n, 0n, false, 1);
    expect(a.equals(b)).toBe(true);
  });

  it('rejects block sizes that are not positive multiples of 8', () => {
    for (const bs of [0, -8, 12, 4097, 1.5]) expect(() => new BlockGenerator(bs, 0n)).toThrow(/multiple of 8/);
  });
});

describe('fixtures made by upstream testddumbfs 1.1', () => {
  it('gen-s3.bin (-B 4096 -s 3, cut to 20000 B) = full mode, bs 4096, seed 3, mask 0', () => {
    const fixture = readFileSync(join(FIXTURES, 'gen-s3.bin'));
    expect(fixture.length).toBe(20000);
    const ours = generatedBlocks(4096, 3n, 0n, false, 5);
    expect(ours.subarray(0, 20000).equals(fixture)).toBe(true);
    // Fast mode would differ from the second block on: the fixture is the default (non-fast) mode.
    const fast = generatedBlocks(4096, 3n, 0n, true, 5);
    expect(fast.subarray(0, 20000).equals(fixture)).toBe(false);
    expect(fast.subarray(0, 4096).equals(fixture.subarray(0, 4096))).toBe(true);
  });

  it('random-100k.bin (-s 9, default -B 128K, cut to 99999 B) = seed 9, mask 0, first 128K block', () => {
    const fixture = readFileSync(join(FIXTURES, 'random-100k.bin'));
    expect(fixture.length).toBe(99999);
    const ours = generatedBlocks(131072, 9n, 0n, false, 1);
    expect(ours.subarray(0, 99999).equals(fixture)).toBe(true);
    // 99999 B lie inside the first 128K block, which fast mode fills completely too, so -f cannot be told apart;
    // with 4 KiB blocks only the full mode matches.
    expect(generatedBlocks(131072, 9n, 0n, true, 1).subarray(0, 99999).equals(fixture)).toBe(true);
    expect(generatedBlocks(4096, 9n, 0n, false, 25).subarray(0, 99999).equals(fixture)).toBe(true);
    expect(generatedBlocks(4096, 9n, 0n, true, 25).subarray(0, 99999).equals(fixture)).toBe(false);
  });

  it('testddumbfs -o C accepts a file made from the fixture bytes plus our tail', async () => {
    const path = join(dir, 'fixture-gen-s3.bin');
    const fixture = readFileSync(join(FIXTURES, 'gen-s3.bin'));
    const full = generatedBlocks(4096, 3n, 0n, false, 5);
    await writeFile(path, Buffer.concat([fixture, full.subarray(20000)]));
    expect(await run(['-o', 'C', '-B', '4096', '-S', '20000', '-s', '3', path])).toEqual({ code: 0, out: '', err: '' });
  });
});

describe('generated files', () => {
  const base = { blockSize: 4096, seed: 11n, mask: 0n, fast: false };

  it('length is ceil(size/bs)·bs', async () => {
    const cases: Array<[number, number]> = [
      [0, 0],
      [1, 4096],
      [4096, 4096],
      [4097, 8192],
      [TRANSFER_SIZE + 3 * 4096 + 1, TRANSFER_SIZE + 4 * 4096],
    ];
    for (const [fileSize, length] of cases) {
      expect(generatedSizeOf(fileSize, 4096)).toBe(length);
      const path = join(dir, `len-${fileSize}.bin`);
      expect(await writeGeneratedFile(path, { ...base, fileSize })).toBe(length);
      expect((await stat(path)).size).toBe(length);
    }
  });

  it('content across several transfers equals the model, for both modes', async () => {
    for (const fast of [false, true]) {
      const fileSize = 2 * TRANSFER_SIZE + 5 * 4096;
      const path = join(dir, `multi-${fast}.bin`);
      await writeGeneratedFile(path, { ...base, fast, fileSize });
      const expected = referenceBlocks(4096, 11n, 0n, fast, fileSize / 4096);
      expect((await readFile(path)).equals(expected)).toBe(true);
      expect(await compareGeneratedFile(path, { ...base, fast, fileSize })).toEqual({ equal: true, size: fileSize });
    }
  });

  it('F does not truncate an existing longer file (upstream: O_CREAT without O_TRUNC)', async () => {
    const path = join(dir, 'notrunc.bin');
    await writeFile(path, Buffer.alloc(3 * 4096, 0xab));
    await writeGeneratedFile(path, { ...base, fileSize: 4096 });
    const data = await readFile(path);
    expect(data.length).toBe(3 * 4096);
    expect(data.subarray(4096).every((b) => b === 0xab)).toBe(true);
  });
});

describe('testddumbfs command', () => {
  it('F then C passes (exit 0, no output)', async () => {
    const path = join(dir, 'fc.bin');
    const args = ['-B', '4096', '-S', '1M', '-s', '7', '-m', '0x60606060', '-f', path];
    expect(await run(['-o', 'F', ...args])).toEqual({ code: 0, out: '', err: '' });
    expect((await stat(path)).size).toBe(1048576);
    expect(await run(['-o', 'C', ...args])).toEqual({ code: 0, out: '', err: '' });
    expect((await run(['-o', 'FC', ...args])).code).toBe(0);
  });

  it('one flipped byte makes C fail at the start of its block (exit 1)', async () => {
    const path = join(dir, 'flip.bin');
    const args = ['-B', '4k', '-S', '3M', '-s', '1', path];
    expect((await run(['-o', 'F', ...args])).code).toBe(0);
    const original = await readFile(path);
    for (const at of [0, 4095, 4096, 1048576 + 12345, 3 * 1048576 - 1]) {
      const damaged = Buffer.from(original);
      damaged[at]! ^= 0x01;
      await writeFile(path, damaged);
      const blockStart = Math.floor(at / 4096) * 4096;
      expect(await run(['-o', 'C', ...args])).toEqual({
        code: 1,
        out: `difference in block starting at: ${blockStart}\n`,
        err: '',
      });
    }
  });

  it('a short file fails at the first incomplete block', async () => {
    const path = join(dir, 'short.bin');
    const args = ['-B', '4096', '-S', '40000', '-s', '2', path];
    await run(['-o', 'F', ...args]);
    await writeFile(path, (await readFile(path)).subarray(0, 20000));
    expect((await run(['-o', 'C', ...args])).out).toBe('difference in block starting at: 16384\n');
    await writeFile(path, Buffer.alloc(0));
    expect(await run(['-o', 'C', ...args])).toMatchObject({ code: 1, out: 'difference in block starting at: 0\n' });
  });

  it('C with other parameters than F reports a difference', async () => {
    const path = join(dir, 'params.bin');
    await run(['-o', 'F', '-B', '4096', '-S', '64k', '-s', '5', path]);
    expect((await run(['-o', 'C', '-B', '4096', '-S', '64k', '-s', '6', path])).out).toBe(
      'difference in block starting at: 0\n',
    );
    // Fast and full share the first block only.
    expect((await run(['-o', 'C', '-B', '4096', '-S', '64k', '-s', '5', '-f', path])).out).toBe(
      'difference in block starting at: 4096\n',
    );
  });

  it('I/O errors: one line, exit 1, no stack trace', async () => {
    const result = await run(['-o', 'C', '-S', '1M', join(dir, 'missing', 'file')]);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^testddumbfs: ENOENT: .*\n$/);
    expect(result.err.split('\n')).toHaveLength(2);
    const speed = await run(['-o', 'R', join(dir, 'no-such-dir')]);
    expect(speed).toMatchObject({ code: 1, err: `testddumbfs: target directory not found: ${join(dir, 'no-such-dir')}\n` });
  });

  it.each([
    [[]],
    [['-x', 'f']],
    [['-B', '12x', 'f']],
    [['-B', '12', 'f']],
    [['-S', '-1', 'f']],
    [['-c', 'two', 'f']],
    [['-m', '0x1g', 'f']],
    [['-o', 'FR', 'f']],
    [['-o', 'B', 'f']],
    [['-o', '', 'f']],
    [['a', 'b']],
  ])('usage error %j: exit 1 as upstream, one line', async (argv) => {
    const result = await run(argv);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err).toMatch(/^testddumbfs: [^\n]+\n$/);
  });

  it('-h prints help with the exit codes and exits 0', async () => {
    for (const flag of ['-h', '--help']) {
      const result = await run([flag]);
      expect(result.code).toBe(0);
      expect(result.out).toContain('Usage: testddumbfs [options] TARGET');
      expect(result.out).toContain('Exit status: 0 ok, 1 error, difference found or usage error.');
    }
  });

  it('speed tests 1, 2, R write identical -0/-1 files with seed SEED+i and print a summary', async () => {
    const target = join(dir, 'speed');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    const result = await run(['-o', 'R21', '-c', '2', '-S', '100000', '-B', '4k', '-s', '10', '-f', target]);
    expect(result.code).toBe(0);
    const headings = result.out.split('\n').filter((l) => l.startsWith('=='));
    expect(headings).toEqual(['== first write', '== second write', '== read', '== stats']);
    expect(result.out).toMatch(/^ {5}1 +\d+\.\d\d s +\d+\.\d\d MB\/s +\d+\.\d\d %$/m);
    expect(result.out).toMatch(/^ {2}avg: +\d+\.\d\d s/m);
    for (const i of [0, 1]) {
      const first = await readFile(join(target, speedFileName(i, 0)));
      const second = await readFile(join(target, speedFileName(i, 1)));
      expect(first.length).toBe(generatedSizeOf(100000, 4096));
      expect(first.equals(second)).toBe(true);
      expect(first.equals(referenceBlocks(4096, 10n + BigInt(i), 0n, true, 25))).toBe(true);
    }
    expect(speedFileName(12, 1)).toBe('data000012-1.bin');
  });

  it('R alone on missing files fails with exit 1', async () => {
    const target = join(dir, 'empty-speed');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    const result = await run(['-o', 'R', '-c', '1', '-S', '4k', target]);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^testddumbfs: ENOENT/);
  });

  it('a negative seed wraps modulo 2^64 like C', async () => {
    const path = join(dir, 'negseed.bin');
    expect((await run(['-o', 'F', '-B', '8', '-S', '8', '-s', '-1', path])).code).toBe(0);
    expect((await readFile(path)).readBigUInt64LE(0)).toBe(((TWO_64 - 1n) * 1103515245n + 12345n) % TWO_64);
  });
});

describe('option parsing', () => {
  it('parseMask follows strtoll base 0', () => {
    expect(parseMask('0')).toBe(0n);
    expect(parseMask('10')).toBe(10n);
    expect(parseMask('0x10')).toBe(16n);
    expect(parseMask('0XE0E0E0E0')).toBe(0xe0e0e0e0n);
    expect(parseMask('010')).toBe(8n);
    expect(parseMask('-1')).toBe(TWO_64 - 1n);
    expect(parseMask('0xffffffffffffffff')).toBe(TWO_64 - 1n);
    for (const bad of ['', '08', '0x', 'x10', '1e3', '0x10000000000000000']) expect(() => parseMask(bad)).toThrow();
  });

  it('parseOperations orders speed phases and keeps file operations in order', () => {
    expect(parseOperations('12R')).toEqual({ kind: 'speed', phases: ['first write', 'second write', 'read'] });
    expect(parseOperations('R1')).toEqual({ kind: 'speed', phases: ['first write', 'read'] });
    expect(parseOperations('CF')).toEqual({ kind: 'file', operations: ['C', 'F'] });
  });
});
