/**
 * statddumbfs through `node bin/statddumbfs` on an offline temp volume: --json parses and its numbers match files
 * written with cpddumbfs with a known dedup (three copies of the same 10-block file), the text output, .autofsck
 * and corrupted.txt, and the usage / not-a-volume exit codes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { lstatSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { lcgBytes } from './helpers/bytes.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { makeTempDir, removeTempDirs } from './helpers/fixtures.js';
import { validateJson, type JsonSchema } from './helpers/json_schema.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BS = 4096;
const vols: TempVolume[] = [];
const SCHEMA = JSON.parse(readFileSync(join(REPO, 'contrib', 'schema', 'statddumbfs.schema.json'), 'utf8')) as JsonSchema;

/** statddumbfs --json of `target`, checked against the schema. */
async function summary(target: string): Promise<Record<string, any>> {
  const r = await tool('statddumbfs', ['--json', target]);
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout);
  expect(validateJson(SCHEMA, s)).toEqual([]);
  return s;
}

async function tool(name: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [join(REPO, 'bin', name), ...args], { cwd: REPO });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

afterAll(async () => {
  await unmountAll();
  for (const v of vols) await v.cleanup();
  await removeTempDirs();
});

describe('statddumbfs', () => {
  it('--json numbers match three cpddumbfs copies of one file', { timeout: TEST_TIMEOUT_MS }, async () => {
    const v = await makeTempVolume({ blockSize: BS, size: '4M' });
    vols.push(v);
    const src = join(await makeTempDir('ddfs-statq-'), 'src.bin');
    await writeFile(src, lcgBytes(10 * BS - 100, 7));
    const root = join(v.parent, 'ddfsroot');
    await mkdir(join(root, 'sub'));
    for (const dst of ['a', 'b', 'sub/c']) expect((await tool('cpddumbfs', [src, join(root, dst)])).code).toBe(0);
    const empty = await tool('statddumbfs', ['--json', v.parent]);
    expect(empty.code).toBe(0);
    const s = JSON.parse(empty.stdout);
    expect(s.mounted).toBe(false);
    expect(s.needs_fsck).toBe(false);
    expect(s.files).toBe(3);
    expect(s.logical_bytes).toBe(3 * (10 * BS - 100));
    expect(s.block_size).toBe(BS);
    expect(s.block_count).toBe(1024);
    // 10 data blocks stored once, plus the 2 blocks mkddumbfs reserves (spec §12)
    expect(s.blocks_used).toBe(12);
    expect(s.blocks_free).toBe(1024 - 12);
    expect(s.stored_bytes).toBe(12 * BS);
    expect(s.dedup_ratio).toBeCloseTo(s.logical_bytes / s.stored_bytes, 6);
    expect(s.corrupted_files).toBe(0);
    expect(s.hash).toBe('TIGER');

    const text = await tool('statddumbfs', [join(root, 'sub')]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^Files:\s+3$/m);
    expect(text.stdout).toMatch(/^Mounted:\s+no$/m);

    await writeFile(join(root, '.ddumbfs', 'corrupted.txt'), 'a\nb\n');
    await writeFile(join(v.parent, '.autofsck'), '');
    const s2 = JSON.parse((await tool('statddumbfs', ['--json', v.parent])).stdout);
    expect(s2.corrupted_files).toBe(2);
    expect(s2.needs_fsck).toBe(true);
  });

  it('reclaimable estimate, last checkpoint and last fsck with its result; the output fits the schema', { timeout: TEST_TIMEOUT_MS }, async () => {
    const v = await makeTempVolume({ blockSize: BS, size: '4M' });
    vols.push(v);
    const src = join(await makeTempDir('ddfs-statq-'), 'src3.bin');
    await writeFile(src, lcgBytes(6 * BS, 11));
    const root = join(v.parent, 'ddfsroot');
    for (const dst of ['a', 'b']) expect((await tool('cpddumbfs', [src, join(root, dst)])).code).toBe(0);
    const s0 = await summary(v.parent);
    expect(s0.blocks_reclaimable).toBe(0);
    expect(s0.last_fsck).toBeNull();
    const checkpoint = lstatSync(join(v.parent, 'ddfsusedblocks'), { throwIfNoEntry: false });
    expect(s0.last_checkpoint).toBe(checkpoint ? checkpoint.mtime.toISOString() : null);
    // one copy gone: its blocks are still referenced by the other
    await rm(join(root, 'a'));
    expect((await summary(v.parent)).blocks_reclaimable).toBe(0);
    await rm(join(root, 'b'));
    expect((await summary(v.parent)).blocks_reclaimable).toBe(6);

    const check = await tool('fsckddumbfs', ['-c', v.parent]);
    expect(check.code).toBe(0);
    const s1 = await summary(v.parent);
    expect(s1.last_fsck).toMatchObject({
      version: 1, tool: 'fsckddumbfs', mode: 'check', option: '-c', pack: false, status: 'OK blocks can be reclaimed', exit_code: 0, fixed_files: null, corrupted_files: null,
    });
    expect(check.stdout).toContain(`: ${s1.last_fsck.status}`);
    expect(Date.parse(s1.last_fsck.time)).toBeGreaterThan(Date.now() - 3_600_000);
    const text = await tool('statddumbfs', [v.parent]);
    expect(text.stdout).toMatch(/^Last fsck:\s+\S+ -c: OK blocks can be reclaimed \(exit 0\)$/m);
    expect(text.stdout).toMatch(/^Reclaimable:\s+6 blocks \(estimate\)$/m);

    const repair = await tool('fsckddumbfs', ['-n', '-k', v.parent]);
    expect(repair.code, repair.stderr).toBe(0);
    const s2 = await summary(v.parent);
    expect(s2.last_fsck).toMatchObject({ mode: 'repair', option: '-n', pack: true, status: 'OK', exit_code: 0, fixed_files: 0, corrupted_files: 0 });
    expect(s2.blocks_reclaimable).toBe(0);
    expect(s2.last_checkpoint).toBe(lstatSync(join(v.parent, 'ddfsusedblocks')).mtime.toISOString());
    // the record is one JSON line, written whole (no temporary left behind)
    expect((await readFile(join(v.parent, 'ddfs.fsck'), 'utf8')).split('\n')).toHaveLength(2);
    expect(lstatSync(join(v.parent, 'ddfs.fsck.tmp'), { throwIfNoEntry: false })).toBeUndefined();

    // a mount after an unclean shutdown repairs first and records it; then a refused run (volume mounted) keeps
    // that record, and so does a check of the mounted volume (a reader whose result is not accurate writes nothing)
    await writeFile(join(v.parent, '.autofsck'), '');
    const mnt = join(await makeTempDir('ddfs-statq-'), 'mnt');
    await mkdir(mnt);
    const m = await mountVolume(v.parent, mnt);
    try {
      const s3 = await summary(mnt);
      expect(s3.mounted).toBe(true);
      expect(s3.last_fsck).toMatchObject({ tool: 'ddumbfs', mode: 'repair', option: '-n', exit_code: 0, fixed_files: 0, corrupted_files: 0 });
      expect(Date.parse(s3.last_fsck.time)).toBeGreaterThanOrEqual(Date.parse(s2.last_fsck.time));
      expect((await tool('fsckddumbfs', ['-n', v.parent])).code).not.toBe(0);
      expect((await tool('fsckddumbfs', ['-c', v.parent])).stderr).toMatch(/filesystem is online/);
      const s4 = await summary(mnt);
      expect(s4.last_fsck).toEqual(s3.last_fsck);
      expect(s4.blocks_reclaimable).toBe(0);
    } finally {
      await m.unmount();
    }
  });

  it('a mounted volume: from MNT (the daemon\'s stats) and from PARENT, the same numbers', { timeout: TEST_TIMEOUT_MS }, async () => {
    const v = await makeTempVolume({ blockSize: BS, size: '4M' });
    vols.push(v);
    const src = join(await makeTempDir('ddfs-statq-'), 'src2.bin');
    await writeFile(src, lcgBytes(5 * BS, 9));
    for (const dst of ['x', 'y']) expect((await tool('cpddumbfs', [src, join(v.parent, 'ddfsroot', dst)])).code).toBe(0);
    const offline = JSON.parse((await tool('statddumbfs', ['--json', v.parent])).stdout);
    const mnt = join(await makeTempDir('ddfs-statq-'), 'mnt');
    await mkdir(mnt);
    const m = await mountVolume(v.parent, mnt);
    try {
      for (const target of [mnt, v.parent]) {
        const r = await tool('statddumbfs', ['--json', target]);
        expect(r.code).toBe(0);
        const s = JSON.parse(r.stdout);
        expect(s.mounted).toBe(true);
        expect(s.mount_point).toBe(mnt);
        expect(s.parent).toBe(v.parent);
        for (const k of ['files', 'logical_bytes', 'blocks_used', 'blocks_free', 'stored_bytes', 'block_count', 'hash']) expect(s[k]).toEqual(offline[k]);
        expect(s.files).toBe(2);
        expect(s.blocks_used).toBe(2 + 5);
      }
    } finally {
      await m.unmount();
    }
  });

  it('exits 1 on a usage error and on a path outside any volume', { timeout: TEST_TIMEOUT_MS }, async () => {
    expect((await tool('statddumbfs', [])).code).toBe(1);
    const r = await tool('statddumbfs', ['/']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^statddumbfs: .*not inside a ddumbfs volume/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
