/**
 * cpddumbfs end to end through `node bin/cpddumbfs` (spec §11): round trips at the block-size edges, no extra node
 * for multiples of the block size (spec §17.1), zero blocks, stdin/stdout, directory targets, integrity statuses
 * (err, corrected, corrupted, bad header, partial node), refusals and usage errors, and the exact -v upload output
 * of the upstream fixtures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { decodeAddress } from '../src/format/node.js';
import { run } from './helpers/run.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';
import {
  FIXTURE_SRC_DIR, fixtureSidePath, listFiles, makeTempDir, readUploadLog, removeTempDirs,
} from './helpers/fixtures.js';
import { lcgBytes } from './helpers/bytes.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(REPO, 'bin', 'cpddumbfs');
const BS = 4096;
/** node_size of the test volumes: 4 MiB / 4 KiB = 1024 blocks → addr_size 2, TIGER 24 → 26 */
const NS = 26;
const AS = 2;

interface CpResult { code: number | null; stdout: Buffer; stderr: string }

/** Run cpddumbfs in a child process (helpers/run.ts); stderr decoded as UTF-8. */
async function cp(args: string[], options: { input?: Buffer; cwd?: string } = {}): Promise<CpResult> {
  const r = await run(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, input: options.input });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** A fresh 4 MiB / 4 KiB / TIGER volume; returns its parent. */
async function newVolume(): Promise<string> {
  const parent = join(await makeTempDir('ddfs-cp-'), 'vol');
  await mkdir(parent);
  await createVolume(parent, { partitionSize: 4 * 1024 * 1024, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  return parent;
}

async function usedBlocks(parent: string): Promise<number> {
  const v = await Volume.open(parent, { readOnly: true });
  try {
    return v.store.blockCountUsed;
  } finally {
    await v.close();
  }
}

/** Addresses of the nodes of a UFS file. */
async function nodeAddresses(ufsPath: string): Promise<number[]> {
  const b = await readFile(ufsPath);
  const out: number[] = [];
  for (let o = 16; o + NS <= b.length; o += NS) out.push(decodeAddress(b, o, AS));
  return out;
}

/** Overwrite the block at `address` of the volume's block file. */
async function writeBlock(parent: string, address: number, data: Buffer): Promise<void> {
  const fh = await open(join(parent, 'ddfsblocks'), 'r+');
  try {
    await fh.write(data, 0, data.length, address * BS);
  } finally {
    await fh.close();
  }
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l !== '');
}

beforeAll(async () => {
  try {
    // asynchronous: a worker blocked for a minute on a slow machine fails vitest's own RPC. Its exit status is
    // ignored: type errors elsewhere in the tree still emit JavaScript; the check below is what matters
    await run('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, timeoutMs: TEST_TIMEOUT_MS });
    // tsc rewrote every dist/cli entry, so the bundles are now older and the shims would run dist/cli: bundle again
    // when the checkout was bundled, so the rest of the suite runs the commands as setup.sh builds them
    if (existsSync(join(REPO, 'dist', 'bundle'))) await run('node', [join(REPO, 'scripts', 'build-bundle.mjs')], { cwd: REPO, timeoutMs: TEST_TIMEOUT_MS });
  } catch {
    // npx could not be started: the check below says whether dist/ is there anyway
  }
  expect(existsSync(join(REPO, 'dist', 'cli', 'cpddumbfs.js'))).toBe(true);
}, TEST_TIMEOUT_MS);

afterAll(removeTempDirs);

describe('cpddumbfs round trips', () => {
  const sizes = [0, 1, BS - 1, BS, BS + 1, 3 * BS, 1024 * 1024 + 7];

  it(`upload + download of sizes ${sizes.join(', ')}: same bytes, ceil(size/bs) nodes, -c OK`, async () => {
    await Promise.all(sizes.map(async (size, k) => {
      const parent = await newVolume();
      const host = join(dirname(parent), 'in.bin');
      const data = lcgBytes(size, 1000 + k);
      await writeFile(host, data);
      const ufs = join(parent, 'ddfsroot', 'f.bin');

      const up = await cp([host, ufs]);
      expect(up.stderr, `size ${size}`).toBe('');
      expect(up.code).toBe(0);
      const raw = await readFile(ufs);
      expect(raw.subarray(0, 8).toString()).toBe('DDUMBFSF');
      expect(Number(raw.readBigUInt64BE(8))).toBe(size);
      // no extra zero node for multiples of the block size (spec §17.1)
      expect(raw.length, `size ${size}`).toBe(16 + Math.ceil(size / BS) * NS);
      expect((await nodeAddresses(ufs)).every((a) => a >= 2)).toBe(true);
      expect(await usedBlocks(parent)).toBe(2 + Math.ceil(size / BS));

      const out = join(dirname(parent), 'out.bin');
      const down = await cp([ufs, out]);
      expect(down.code).toBe(0);
      expect(down.stderr).toBe('');
      expect((await readFile(out)).equals(data), `size ${size}`).toBe(true);

      const checked = await cp(['-c', ufs, '-']);
      expect(checked.code).toBe(0);
      expect(lines(checked.stderr)).toEqual(['OK']);
      expect(checked.stdout.equals(data)).toBe(true);
    }));
  });

  it('all-zero blocks take no space: addresses 0, block_allocated unchanged', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'zeros.bin');
    const data = Buffer.alloc(5 * BS + 100);
    await writeFile(host, data);
    const before = await usedBlocks(parent);
    const ufs = join(parent, 'ddfsroot', 'zeros.bin');
    const up = await cp(['-v', host, ufs]);
    expect(up.code).toBe(0);
    expect(lines(up.stderr)).toEqual([
      `upload ${host} ${ufs}`,
      ...[0, 1, 2, 3, 4, 5].map((i) => `${String(i).padStart(6)}      0 c50b60fa710aa94f...`),
    ]);
    expect(await usedBlocks(parent)).toBe(before);
    expect(await nodeAddresses(ufs)).toEqual([0, 0, 0, 0, 0, 0]);
    const down = await cp(['-c', ufs, '-']);
    expect(down.code).toBe(0);
    expect(down.stdout.equals(data)).toBe(true);
  });

  it('stdin upload equals a file upload (short pipe reads still give whole blocks); stdout download', async () => {
    const parent = await newVolume();
    const data = lcgBytes(300 * 1024 + 5, 77);
    const host = join(dirname(parent), 'p.bin');
    await writeFile(host, data);
    const viaFile = join(parent, 'ddfsroot', 'file.bin');
    const viaPipe = join(parent, 'ddfsroot', 'pipe.bin');
    expect((await cp([host, viaFile])).code).toBe(0);
    const used = await usedBlocks(parent);
    const up = await cp(['-', viaPipe], { input: data });
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect((await readFile(viaPipe)).equals(await readFile(viaFile))).toBe(true);
    expect(await usedBlocks(parent)).toBe(used);
    const down = await cp(['-v', viaPipe, '-']);
    expect(down.code).toBe(0);
    expect(down.stdout.equals(data)).toBe(true);
    const err = lines(down.stderr);
    expect(err[0]).toBe(`download ${viaPipe} -`);
    expect(err.slice(-2)).toEqual([`        size: ${data.length}`, `written size: ${data.length}`]);
    expect(err.length).toBe(1 + Math.ceil(data.length / BS) + 2);
    expect(err[1]).toMatch(/^ {5}0 +\d+ [0-9a-f]{16}$/);
  });

  it('directory targets take the source basename', async () => {
    const parent = await newVolume();
    const hostDir = join(dirname(parent), 'host');
    await mkdir(hostDir);
    const data = lcgBytes(BS + 3, 5);
    await writeFile(join(hostDir, 'name.bin'), data);
    await mkdir(join(parent, 'ddfsroot', 'sub'));
    expect((await cp([join(hostDir, 'name.bin'), join(parent, 'ddfsroot', 'sub')])).code).toBe(0);
    expect(existsSync(join(parent, 'ddfsroot', 'sub', 'name.bin'))).toBe(true);
    // the parent itself stands for its ddfsroot
    expect((await cp([join(hostDir, 'name.bin'), parent])).code).toBe(0);
    expect((await readFile(join(parent, 'ddfsroot', 'name.bin'))).equals(await readFile(join(parent, 'ddfsroot', 'sub', 'name.bin')))).toBe(true);
    const outDir = join(dirname(parent), 'outdir');
    await mkdir(outDir);
    expect((await cp([join(parent, 'ddfsroot', 'sub', 'name.bin'), outDir])).code).toBe(0);
    expect((await readFile(join(outDir, 'name.bin'))).equals(data)).toBe(true);
    // stdin has no name to give
    const r = await cp(['-', join(parent, 'ddfsroot', 'sub')], { input: data });
    expect(r.code).toBe(1); // a usage error exits 1, as upstream
    expect(r.stderr).toMatch(/^cpddumbfs: [^\n]+\n$/);
  });
});

describe('cpddumbfs integrity checks', () => {
  it('a garbage block is `err` with -c (exit 1, ERR), silent without -c', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'g.bin');
    const data = lcgBytes(3 * BS, 9);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'g.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const addrs = await nodeAddresses(ufs);
    await writeBlock(parent, addrs[1]!, Buffer.alloc(BS, 0xa5));

    const plain = await cp([ufs, '-']);
    expect(plain.code).toBe(0); // not detected without -c, and no per-block noise (spec §17.4 not reproduced)
    expect(plain.stderr).toBe('');

    const checked = await cp(['-c', ufs, '-']);
    expect(checked.code).toBe(1);
    const err = lines(checked.stderr);
    expect(err).toHaveLength(2);
    expect(err[0]).toMatch(new RegExp(`^ {5}1 +${addrs[1]} [0-9a-f]{16} err$`));
    expect(err[1]).toBe('ERR');
    expect(checked.stdout.subarray(BS, 2 * BS).equals(Buffer.alloc(BS, 0xa5))).toBe(true);
  });

  it('a duplicate good copy in the index makes it `corrected` (exit 0, OK, good bytes)', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'c.bin');
    const data = lcgBytes(3 * BS, 11);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'c.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const addrs = await nodeAddresses(ufs);
    const raw = await readFile(ufs);
    const hash = raw.subarray(16 + NS + AS, 16 + 2 * NS);

    // a second copy of block 1 at a new address, indexed with the same hash (as fsck's duplicates mode leaves it)
    const v = await Volume.open(parent);
    let copyAddress: number;
    try {
      copyAddress = v.store.index.bitmap.allocate();
      await v.store.blockDevice.write(data.subarray(BS, 2 * BS), copyAddress * BS);
      v.store.index.nodes.add(copyAddress, Buffer.from(hash), 'duplicates');
    } finally {
      await v.close();
    }
    expect(copyAddress).toBeGreaterThan(addrs[2]!);
    await writeBlock(parent, addrs[1]!, Buffer.alloc(BS, 0x5a));

    const r = await cp(['-c', ufs, '-']);
    expect(lines(r.stderr)).toEqual([`     1 ${String(copyAddress).padStart(6)} ${hash.subarray(0, 8).toString('hex')} corrected`, 'OK']);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(data)).toBe(true);
    // the UFS file is not modified
    expect((await readFile(ufs)).equals(raw)).toBe(true);
  });

  it('an address-1 node is `corrupted` (zeros, exit 1), with or without -c', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'l.bin');
    const data = lcgBytes(2 * BS + 10, 13);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'l.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const raw = await readFile(ufs);
    raw.writeUIntLE(1, 16, AS);
    await writeFile(ufs, raw);
    const hex = raw.subarray(16 + AS, 16 + AS + 8).toString('hex');

    const plain = await cp([ufs, '-']);
    expect(plain.code).toBe(1);
    expect(lines(plain.stderr)).toEqual([`     0      1 ${hex} corrupted`]);
    expect(plain.stdout.length).toBe(data.length);
    expect(plain.stdout.subarray(0, BS).equals(Buffer.alloc(BS))).toBe(true);
    expect(plain.stdout.subarray(BS).equals(data.subarray(BS))).toBe(true);

    const checked = await cp(['-c', ufs, '-']);
    expect(checked.code).toBe(1);
    expect(lines(checked.stderr)).toEqual([`     0      1 ${hex} corrupted`, 'ERR']);
  });

  it('an unreadable block fails without -f and is zero-filled with -f; a foreign hash at address 0 is `bad`', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'u.bin');
    const data = lcgBytes(2 * BS, 23);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'u.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const raw = await readFile(ufs);
    const hex = raw.subarray(16 + NS + AS, 16 + NS + AS + 8).toString('hex');
    raw.writeUIntLE(1000, 16 + NS, AS); // below block_count, beyond the end of the block file
    await writeFile(ufs, raw);
    const noForce = await cp([ufs, '-']);
    expect(noForce.code).toBe(1);
    expect(lines(noForce.stderr)).toHaveLength(1);
    expect(noForce.stderr).toContain('cannot read block 1000');
    const forced = await cp(['-f', ufs, '-']);
    expect(forced.code).toBe(1);
    expect(lines(forced.stderr)).toEqual([`     1   1000 ${hex} unreadable`]);
    expect(forced.stdout.equals(Buffer.concat([data.subarray(0, BS), Buffer.alloc(BS)]))).toBe(true);

    raw.writeUIntLE(0, 16 + NS, AS); // address 0 with the hash of a data block
    await writeFile(ufs, raw);
    const plain = await cp([ufs, '-']);
    expect(plain.code).toBe(0);
    const checked = await cp(['-c', ufs, '-']);
    expect(checked.code).toBe(1);
    expect(lines(checked.stderr)).toEqual([`     1      0 ${hex} bad`, 'ERR']);
  });

  it('bad header and partial node: error without -f (no output file), lost with -f', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'h.bin');
    const data = lcgBytes(2 * BS + 1, 17);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'h.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const good = await readFile(ufs);

    const out = join(dirname(parent), 'h.out');
    await writeFile(ufs, Buffer.concat([Buffer.from('XXXXXXXX'), good.subarray(8)]));
    const noForce = await cp([ufs, out]);
    expect(noForce.code).toBe(1);
    expect(lines(noForce.stderr)).toHaveLength(1);
    expect(noForce.stderr).toContain(ufs);
    expect(existsSync(out)).toBe(false);
    const forced = await cp(['-f', ufs, out]);
    expect(forced.code).toBe(1); // size unknown: integrity not established
    expect((await readFile(out)).equals(Buffer.concat([data, Buffer.alloc(3 * BS - data.length)]))).toBe(true);

    await writeFile(ufs, good.subarray(0, good.length - 5));
    const partial = await cp(['-c', ufs, '-']);
    expect(partial.code).toBe(1);
    expect(partial.stdout.length).toBe(0);
    expect(lines(partial.stderr).at(-1)).toBe('ERR');
    const partialForced = await cp(['-f', ufs, '-']);
    expect(partialForced.code).toBe(1);
    expect(partialForced.stdout.subarray(0, 2 * BS).equals(data.subarray(0, 2 * BS))).toBe(true);
    expect(partialForced.stdout.subarray(2 * BS).equals(Buffer.alloc(1))).toBe(true);
    expect(partialForced.stderr).toMatch(/^ {5}2 {6}1 0{16} corrupted$/m);
  });

  it('a file written by upstream with its extra zero node (spec §17.1) downloads intact', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'u.bin');
    const data = lcgBytes(BS, 19);
    await writeFile(host, data);
    const ufs = join(parent, 'ddfsroot', 'u.bin');
    expect((await cp([host, ufs])).code).toBe(0);
    const zeroNode = Buffer.alloc(NS);
    Buffer.from('c50b60fa710aa94f3e5615b4d4a194e3cdfacf95e0253b6a', 'hex').copy(zeroNode, AS);
    await writeFile(ufs, Buffer.concat([await readFile(ufs), zeroNode]));
    const r = await cp(['-c', ufs, '-']);
    expect(lines(r.stderr)).toEqual(['OK']);
    expect(r.code).toBe(0);
    expect(r.stdout.equals(data)).toBe(true);
  });
});

describe('cpddumbfs refusals and usage', () => {
  it('upload is refused while .autofsck or .rebuildfsck exists, leaving the volume untouched', async () => {
    const parent = await newVolume();
    const host = join(dirname(parent), 'r.bin');
    await writeFile(host, lcgBytes(BS * 2, 21));
    expect((await cp([host, join(parent, 'ddfsroot', 'old.bin')])).code).toBe(0);
    for (const marker of ['.autofsck', '.rebuildfsck']) {
      await writeFile(join(parent, marker), '');
      const snapshot = async (): Promise<unknown> => ({
        files: await listFiles(parent),
        idx: (await readFile(join(parent, 'ddfsidx'))).toString('hex'),
        blocks: (await readFile(join(parent, 'ddfsblocks'))).toString('hex'),
        old: (await readFile(join(parent, 'ddfsroot', 'old.bin'))).toString('hex'),
      });
      const before = await snapshot();
      for (const target of [join(parent, 'ddfsroot', 'new.bin'), join(parent, 'ddfsroot', 'old.bin')]) {
        const r = await cp([host, target]);
        expect(r.code).toBe(1);
        expect(lines(r.stderr)).toHaveLength(1);
        expect(r.stderr).toContain('The filesystem must be checked');
        expect(r.stderr).toContain(marker);
      }
      expect(await snapshot()).toEqual(before);
      expect(existsSync(join(parent, 'ddfsroot', 'new.bin'))).toBe(false);
      await rm(join(parent, marker));
    }
  });

  it('usage errors exit 1 as upstream; missing files exit 1; each with one line and no stack trace', async () => {
    const parent = await newVolume();
    const tmp = dirname(parent);
    const none = await cp([]);
    expect(none.code).toBe(1);
    expect(lines(none.stderr)).toHaveLength(1);
    const one = await cp(['only-one']);
    expect(one.code).toBe(1);
    expect(lines(one.stderr)).toHaveLength(1);
    const outside = await cp([join(tmp, 'a'), join(tmp, 'b')]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/^cpddumbfs: .*inside a ddumbfs volume\n$/);
    const both = await cp([join(parent, 'ddfsroot', 'x'), join(parent, 'ddfsroot', 'y')]);
    expect(both.code).toBe(1);
    expect(lines(both.stderr)).toHaveLength(1);
    const bogus = await cp(['--bogus', join(tmp, 'a'), parent]);
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toMatch(/^cpddumbfs: .*--bogus/);

    const missingSrc = await cp([join(tmp, 'missing.bin'), join(parent, 'ddfsroot', 'm.bin')]);
    expect(missingSrc.code).toBe(1);
    expect(missingSrc.stderr).toBe(`cpddumbfs: ${join(tmp, 'missing.bin')}: No such file or directory\n`);
    expect(existsSync(join(parent, 'ddfsroot', 'm.bin'))).toBe(false);

    const missingUfs = await cp([join(parent, 'ddfsroot', 'missing.bin'), join(tmp, 'o.bin')]);
    expect(missingUfs.code).toBe(1);
    expect(lines(missingUfs.stderr)).toHaveLength(1);
    expect(missingUfs.stderr).toContain('missing.bin');
    expect(missingUfs.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(tmp, 'o.bin'))).toBe(false);

    // the index and block file are not UFS files
    expect((await cp([join(parent, 'ddfsidx'), join(tmp, 'i.bin')])).code).toBe(1);
    expect((await cp(['-l', join(parent, 'ddfsroot', 'missing.bin'), join(tmp, 'o.bin')])).code).toBe(1);
  });
});

describe('cpddumbfs -v matches upstream', () => {
  it('uploading the fixture sources prints exactly v11-4k-tiger.upload.out', async () => {
    const work = await makeTempDir('ddfs-cp-up-');
    const parent = join(work, 'v11-4k-tiger');
    await mkdir(parent);
    await createVolume(parent, { partitionSize: 4 * 1024 * 1024, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
    await symlink(FIXTURE_SRC_DIR, join(work, 'src'));
    let stderr = '';
    for (const entry of await readUploadLog('v11-4k-tiger')) {
      await mkdir(join(parent, 'ddfsroot', dirname(entry.path)), { recursive: true });
      const r = await cp(['-v', `src/${entry.path}`, `v11-4k-tiger/ddfsroot/./${entry.path}`], { cwd: work });
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(0);
      stderr += r.stderr;
    }
    expect(stderr).toBe(await readFile(fixtureSidePath('v11-4k-tiger', 'upload.out'), 'utf8'));
  });
});
