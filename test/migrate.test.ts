/**
 * migrateddumbfs through `node bin/migrateddumbfs` (spec §13.1): a tree with subdirectories, hard links, symlinks, a
 * FIFO, xattrs, sparse, empty and zero files, a non-UTF-8 name, modes, owners and ns times is migrated across the
 * addr_size boundary (3 → 2 bytes, 81920 → 32768 blocks of 512 bytes) and back; every entry is compared (content
 * through the volume's reader, metadata by lstat and xattrs) and `fsckddumbfs -C` is clean once the block file is
 * moved. Refusals: a destination too small, not empty or of another block size; bad files (reported, exit 0 as
 * upstream); usage errors.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/run.js';
import { makeTempDir, removeTempDirs } from './helpers/fixtures.js';
import { createVolume } from '../src/volume/create.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { buildResizeTree, snapshotVolume } from './helpers/resize_tree.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BS = 512;

async function tool(name: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [join(REPO, 'bin', name), ...args], { cwd: REPO });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

async function volume(size: number, blockSize = BS): Promise<string> {
  const parent = join(await makeTempDir('ddfs-migrate-'), 'vol');
  fs.mkdirSync(parent);
  await createVolume(parent, { partitionSize: size, blockSize, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  return parent;
}

/** Migrate `src` into `dst`, then move a copy of the block file as the reminder says. */
async function migrate(src: string, dst: string): Promise<void> {
  const r = await tool('migrateddumbfs', ['-p', src, dst]);
  expect(r.stderr).not.toMatch(/ERR/);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("don't forget to handle the blockfile manually");
  expect(r.stderr).toMatch(/INF progress migrate: files: \d+\/\d+ files \(100%\)/);
  fs.copyFileSync(join(src, 'ddfsblocks'), join(dst, 'ddfsblocks'));
}

afterAll(removeTempDirs);

describe('migrateddumbfs', () => {
  it('migrates every entry and its metadata across addr_size 3 -> 2 -> 3', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await volume(40 << 20);
    await buildResizeTree(a);
    const before = await snapshotVolume(a);
    expect(before.length).toBeGreaterThan(10);

    const b = await volume(16 << 20);
    expect((await readVolumeConfig(a)).addrSize).toBe(3);
    expect((await readVolumeConfig(b)).addrSize).toBe(2);
    await migrate(a, b);
    expect(await snapshotVolume(b)).toEqual(before);
    const fb = await tool('fsckddumbfs', ['-C', b]);
    expect(fb.stdout).toMatch(/Filesystem status\s*: OK/);
    expect(fb.code).toBe(0);
    // the source is left as it was
    expect(await snapshotVolume(a)).toEqual(before);

    const c = await volume(40 << 20);
    await migrate(b, c);
    expect(await snapshotVolume(c)).toEqual(before);
    const fc = await tool('fsckddumbfs', ['-C', c]);
    expect(fc.code).toBe(0);
  });

  it('refuses a destination too small, not empty, or of another block size', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await volume(40 << 20);
    await buildResizeTree(a);
    const small = await volume(64 << 10);
    const r1 = await tool('migrateddumbfs', [a, small]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/free blocks, fewer than/);

    const other = await volume(16 << 20, 1024);
    const r2 = await tool('migrateddumbfs', [a, other]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/block sizes differ/);

    const full = await volume(16 << 20);
    fs.writeFileSync(join(full, 'ddfsroot', 'x'), '');
    const r3 = await tool('migrateddumbfs', [a, full]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toMatch(/destination is not empty/);
    expect(fs.readdirSync(join(full, 'ddfsroot')).sort()).toEqual(['.ddumbfs', 'x']);
  });

  it('reports a file with a bad header, migrates the others and exits 0 as upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await volume(40 << 20);
    await buildResizeTree(a);
    fs.writeFileSync(join(a, 'ddfsroot', 'sub', 'broken'), 'not a UFS header');
    const b = await volume(16 << 20);
    const r = await tool('migrateddumbfs', [a, b]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/broken: invalid header.*not migrated/);
    expect(r.stderr).toMatch(/warning: 1 bad files were not migrated/);
    expect(r.stdout).toMatch(/bad files: 1/);
    expect(fs.existsSync(join(b, 'ddfsroot', 'sub', 'broken'))).toBe(false);
    expect(fs.existsSync(join(b, 'ddfsroot', 'sub', 'deep', 'b.bin'))).toBe(true);
  });

  it('exits 1 with a usage message for bad arguments', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await tool('migrateddumbfs', ['only-one']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/migrateddumbfs: missing required argument/);
    const h = await tool('migrateddumbfs', ['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/Exit status/);
  });
});
