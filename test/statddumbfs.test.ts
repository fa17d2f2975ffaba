/**
 * statddumbfs through `node bin/statddumbfs` on an offline temp volume: --json parses and its numbers match files
 * written with cpddumbfs with a known dedup (three copies of the same 10-block file), the text output, .autofsck
 * and corrupted.txt, and the usage / not-a-volume exit codes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { lcgBytes } from './helpers/bytes.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { makeTempDir, removeTempDirs } from './helpers/fixtures.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BS = 4096;
const vols: TempVolume[] = [];

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
