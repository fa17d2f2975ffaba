/**
 * fsckddumbfs as a command (node bin/fsckddumbfs, compiled dist/ — run `npx tsc -p tsconfig.json` first): exit
 * codes, usage errors, markers, refusals, the hash workers on a volume big enough to start them, and pack.
 *
 * Not covered here: the refusal of a mounted volume ("filesystem is online") needs a FUSE mount of the daemon; it is
 * a one-line test of mountPointOf() and is left to the FUSE integration suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { copyFixtureVolume } from './helpers/crash.js';
import { FIXTURE_VOLS_DIR } from './helpers/fixtures.js';
import { run } from './helpers/run.js';
import { COMMAND_TIMEOUT_MS } from './helpers/timeouts.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/fsckddumbfs');
const VOLS = FIXTURE_VOLS_DIR;

const work = mkdtempSync(path.join(tmpdir(), 'fsck-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  if (!existsSync(path.join(ROOT, 'dist/cli/fsckddumbfs.js')) || !existsSync(path.join(ROOT, 'dist/store/hash_worker.js'))) {
    throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  }
});

/** Run fsckddumbfs (asynchronously: helpers/run.ts); status -1 when it ended by a signal. */
async function fsck(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [BIN, ...args], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
  return { status: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Assert an exit status, showing the command's output when it differs. */
function expectStatus(r: { status: number; stdout: string; stderr: string }, status: number): void {
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(status);
}

let copies = 0;
/** A private, writable copy of a fixture volume. */
async function copyVolume(name: string): Promise<string> {
  return copyFixtureVolume(name, path.join(work, `${copies++}-${name}`));
}

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** Create a volume with our own tools and write `files` (name → content) through the Volume API. */
async function makeVolume(name: string, sizeBytes: number, files: Record<string, Buffer>): Promise<string> {
  const dir = path.join(work, `${copies++}-${name}`);
  mkdirSync(dir);
  await createVolume(dir, { partitionSize: sizeBytes, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  const vol = await Volume.open(dir);
  try {
    for (const [rel, data] of Object.entries(files)) {
      mkdirSync(path.dirname(vol.ufsPath(rel)), { recursive: true });
      const f = await vol.openFile(vol.ufsPath(rel), { create: true, mode: 0o644 });
      await f.write(0, data);
      await f.close();
    }
  } finally {
    await vol.close();
  }
  return dir;
}

async function readBack(dir: string, rel: string): Promise<string> {
  const vol = await Volume.open(dir, { readOnly: true });
  try {
    const f = await vol.openFile(vol.ufsPath(rel), { readOnly: true });
    const data = await f.read(0, f.size);
    await f.close();
    return md5(data);
  } finally {
    await vol.close();
  }
}

describe('usage', () => {
  it('exactly one mode is required (exit 1, upstream message)', async () => {
    const dir = await copyVolume('v11-4k-tiger');
    for (const args of [[dir], ['-c', '-n', dir], ['-r', '-R', dir]]) {
      const r = await fsck(...args);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('One of the options c, C, n, N, r, R must be selected, and only one !');
    }
  });

  it('unknown options and missing arguments exit 1; --help exits 0 and lists the exit codes', async () => {
    expectStatus(await fsck('--bogus', '-c', work), 1);
    expectStatus(await fsck('-c'), 1);
    const h = await fsck('--help');
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--repair-relaxed');
    expect(h.stdout).toContain('2    WARNING');
  });

  it('a path outside any volume is an error', async () => {
    const r = await fsck('-c', work);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ERR .*not inside a ddumbfs volume/);
  });
});

describe('modes and exit codes', () => {
  it('check of a clean volume: 0, upstream lines on stdout, OK with -v; a path inside the volume works', async () => {
    const dir = await copyVolume('v11-8k-sha1');
    const r = await fsck('-c', '-v', path.join(dir, 'ddfsroot/dir/sub'));
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`root directory: ${dir}/ddfsroot\nblockfile: ${dir}/ddfsblocks\nindexfile: ${dir}/ddfsidx\n`);
    expect(r.stdout).toContain('Filesystem status        : OK \nOK\n');
    expectStatus(await fsck('--check-block', dir), 0);
    // a check writes nothing, not even the log
    expect(readFileSync(path.join(dir, 'ddfsroot/.ddumbfs/ddumbfs.log'), 'utf8')).toBe('');
  });

  it('crash-u: -c 1, -n 0 as upstream (a corrupted file), then -c 2; markers and log', async () => {
    const dir = await copyVolume('crash-u');
    expectStatus(await fsck('-c', dir), 1);
    const n = await fsck('--normal', dir);
    expectStatus(n, 0);
    expect(n.stderr).toMatch(/\d\d:\d\d:\d\d WAR  C   .*ff_unexpected_shutdown_bad\n/);
    expect(n.stderr).toContain('INF Fixed:0  Corrupted:1  Total:9 files in ');
    expect(existsSync(path.join(dir, '.autofsck'))).toBe(false);
    expect(existsSync(path.join(dir, '.autofck'))).toBe(false);
    const log = readFileSync(path.join(dir, 'ddfsroot/.ddumbfs/ddumbfs.log'), 'utf8');
    expect(log).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INF Check and repair node order in index: fixed 0 errors\.$/m);
    const c = await fsck('-c', '-v', dir);
    expect(c.status).toBe(2);
    expect(c.stdout).toContain('Filesystem status        : WARNING (files were already corrupted)\nWARNING\n');
  });

  it('-r of a volume with a corrupted file exits 0 as upstream, -v says OK; the file is listed and the next check warns', async () => {
    // crash-u after upstream's -n: ff_unexpected_shutdown_bad still names block 38, which is not in the block file
    const dir = await copyVolume('crash-u.after-n');
    expectStatus(await fsck('-c', dir), 1);
    for (const mode of ['-r', '-R']) {
      const r = await fsck(mode, '-v', dir);
      expectStatus(r, 0);
      expect(r.stdout).toMatch(/\nOK\n$/);
      expect(r.stderr).toMatch(/WAR  C   .*ff_unexpected_shutdown_bad\n/);
      expect(readFileSync(path.join(dir, 'ddfsroot/.ddumbfs/corrupted.txt'), 'utf8')).toBe(` C   ${dir}/ddfsroot/ff_unexpected_shutdown_bad\n`);
      expect(existsSync(path.join(dir, '.rebuildfsck'))).toBe(false);
      expect(existsSync(path.join(dir, '.autofsck'))).toBe(false);
      const c = await fsck('-c', '-v', dir);
      expectStatus(c, 2);
      expect(c.stdout).toContain('Filesystem status        : WARNING (files were already corrupted)\nWARNING\n');
    }
  });

  it('a file deleted offline: -c says "OK blocks can be reclaimed" (exit 0); with a lost block too, the WARNING gets the suffix', async () => {
    const dir = await copyVolume('v11-4k-tiger');
    unlinkSync(path.join(dir, 'ddfsroot/hello.txt'));
    const c = await fsck('-c', '-v', dir);
    expectStatus(c, 0);
    expect(c.stdout).toMatch(/in index & not in files  : +1 OK can be reclaimed\n/);
    expect(c.stdout).toContain('Filesystem status        : OK blocks can be reclaimed\nOK\n');
    const lost = await copyVolume('crash-u');
    expectStatus(await fsck('-n', lost), 0);
    unlinkSync(path.join(lost, 'ddfsroot/hello.txt'));
    const w = await fsck('-c', '-v', lost);
    expectStatus(w, 2);
    expect(w.stdout).toContain('Filesystem status        : WARNING (files were already corrupted), blocks can be reclaimed\nWARNING\n');
    expectStatus(await fsck('-n', lost), 0);
    const after = await fsck('-c', '-v', lost);
    expect(after.stdout).toContain('Filesystem status        : WARNING (files were already corrupted)\nWARNING\n');
  });

  it('index-i: -n then -c: 0', async () => {
    const dir = await copyVolume('index-i');
    expectStatus(await fsck('-n', dir), 0);
    expectStatus(await fsck('-C', dir), 0);
  });

  it('.rebuildfsck left by a rebuild: only -r/-R run, and remove it', async () => {
    const dir = await copyVolume('v11-4k-tiger');
    writeFileSync(path.join(dir, '.rebuildfsck'), '');
    for (const m of ['-n', '-N', '-c', '-C']) {
      const r = await fsck(m, dir);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('only -r or -R can run');
    }
    expectStatus(await fsck('-r', dir), 0);
    expect(existsSync(path.join(dir, '.rebuildfsck'))).toBe(false);
    expectStatus(await fsck('-c', dir), 0);
  });

  it('a missing index: -c and -n fail and point at -r; -r rebuilds it', async () => {
    const dir = await copyVolume('v11-16k-tiger160');
    unlinkSync(path.join(dir, 'ddfsidx'));
    expectStatus(await fsck('-c', dir), 1);
    const n = await fsck('-n', dir);
    expect(n.status).toBe(1);
    expect(existsSync(path.join(dir, '.autofsck'))).toBe(true); // failed repair: the next mount must check
    const r = await fsck('-r', dir);
    expect(r.status).toBe(0);
    expectStatus(await fsck('-C', dir), 0);
  });

  it('a block file without magic needs -f', async () => {
    const dir = await copyVolume('v11-4k-tiger');
    writeFileSync(path.join(dir, 'ddfsblocks'), Buffer.from('garbage!'), { flag: 'r+' });
    const r = await fsck('-n', dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('use -f');
    expectStatus(await fsck('-f', '-n', dir), 0);
    expect(readFileSync(path.join(dir, 'ddfsblocks')).subarray(0, 8).toString()).toBe('DDUMBFSB');
    expectStatus(await fsck('-C', dir), 0);
  });

});

describe('bigger volumes: hash workers, rebuild and pack', () => {
  // 64 MiB of 4 KiB blocks = 16384 blocks; ~13000 written, so -C/-r/-R start the hash workers (≥ 2048 blocks)
  const files: Record<string, Buffer> = {
    a: randomBytes(20 * 1024 * 1024 + 123),
    b: randomBytes(12 * 1024 * 1024),
    'sub/c': randomBytes(18 * 1024 * 1024 + 4095),
  };
  const sums = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, md5(v)]));

  it('-C, -r, -R with workers keep every byte; -p prints progress lines', async () => {
    const dir = await makeVolume('big', 64 * 1024 * 1024, files);
    const c = await fsck('-C', '-p', dir);
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/started 2 hashing thread\(s\)|started \d+ hashing thread\(s\)/);
    expect(c.stderr).toContain('INF progress check block hash:');
    const idx = readFileSync(path.join(dir, 'ddfsidx'));
    expectStatus(await fsck('-r', dir), 0);
    expect(readFileSync(path.join(dir, 'ddfsidx')).equals(idx)).toBe(true);
    unlinkSync(path.join(dir, 'ddfsidx'));
    expectStatus(await fsck('-R', dir), 0);
    expect(readFileSync(path.join(dir, 'ddfsidx')).equals(idx)).toBe(true);
    expectStatus(await fsck('-C', dir), 0);
    for (const [rel, sum] of Object.entries(sums)) expect(await readBack(dir, rel), rel).toBe(sum);
  });

  it('deleting a file, then -n -k: blocks freed, the rest moved down, block file cut, files intact', async () => {
    const dir = await makeVolume('pack', 64 * 1024 * 1024, files);
    const usedBefore = Math.ceil(files.a!.length / 4096) + Math.ceil(files.b!.length / 4096) + Math.ceil(files['sub/c']!.length / 4096) + 2;
    unlinkSync(path.join(dir, 'ddfsroot/b'));
    const r = await fsck('-n', '-k', dir);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/Deleted 3072 useless nodes\./);
    // c (8195..12803) moves down past U = 9732: 12803 - 9732 + 1 = 3072 blocks
    expect(r.stderr).toMatch(/Pack: moved 3072 blocks/);
    const used = usedBefore - 3072;
    expect(statSync(path.join(dir, 'ddfsblocks')).size).toBe(used * 4096);
    const c = await fsck('-C', dir);
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(new RegExp(`Used blocks +: +${used}\\n`));
    expect(c.stdout).toMatch(new RegExp(`Last used blocks +: +${used - 1}\\n`));
    for (const rel of ['a', 'sub/c']) expect(await readBack(dir, rel), rel).toBe(sums[rel]);
    // the checkpoint was rewritten for the new addresses
    expect(statSync(path.join(dir, 'ddfsusedblocks')).size).toBe(Math.ceil(16384 / 32) * 4);
  });
});
