/**
 * queryddumbfs through `node bin/queryddumbfs` (spec §13.3): -b, -H and -n on a temp volume written with cpddumbfs
 * (three copies of one file: every data block is referenced by three file nodes and one index node), on a copy of
 * the ddumbfs 1.1 fixture v11-4k-tiger (the addresses and hash prefixes of its upload log), and usage errors.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { copyFixtureVolume, makeTempDir, readUploadLog, removeTempDirs } from './helpers/fixtures.js';
import { lcgBytes } from './helpers/bytes.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BS = 4096;
const vols: TempVolume[] = [];

async function tool(name: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [join(REPO, 'bin', name), ...args], { cwd: REPO });
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

afterAll(async () => {
  for (const v of vols) await v.cleanup();
  await removeTempDirs();
});

describe('queryddumbfs', () => {
  it('-b, -H and -n list the index node and every file node of a block', { timeout: TEST_TIMEOUT_MS }, async () => {
    const v = await makeTempVolume({ blockSize: BS, size: '4M' });
    vols.push(v);
    const src = join(await makeTempDir('ddfs-statq-'), 'q-src.bin');
    await writeFile(src, lcgBytes(3 * BS, 11));
    const root = join(v.parent, 'ddfsroot');
    await mkdir(join(root, 'sub'));
    for (const dst of ['a', 'b', 'sub/c']) expect((await tool('cpddumbfs', [src, join(root, dst)])).code).toBe(0);

    const b = await tool('queryddumbfs', ['-b', '3', v.parent]);
    expect(b.code).toBe(0);
    const lines = b.stdout.trim().split('\n');
    const index = lines.filter((l) => l.startsWith('index: '));
    expect(index).toHaveLength(1);
    const [, node, addr, hash] = /^index: (\d+) addr=(\d+) ([0-9a-f]{48})$/.exec(index[0]!)!;
    expect(addr).toBe('3');
    const files = lines.filter((l) => l.startsWith('file: ')).sort();
    expect(files).toEqual([`file: 1 addr=3 ${hash} a`, `file: 1 addr=3 ${hash} b`, `file: 1 addr=3 ${hash} sub/c`]);

    const h = await tool('queryddumbfs', ['-H', hash!.toUpperCase(), v.parent]);
    expect(h.code).toBe(0);
    expect(h.stdout).toBe(b.stdout);

    const n = await tool('queryddumbfs', ['-n', node!, v.parent]);
    expect(n.code).toBe(0);
    expect(n.stdout.split('\n')[0]).toBe(`node ${node}: addr=3 hash=${hash}`);
    expect(n.stdout.split('\n').slice(1).join('\n')).toBe(b.stdout);
  });

  it('finds the blocks of the ddumbfs 1.1 fixture from its upload log', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await copyFixtureVolume('v11-4k-tiger');
    const log = await readUploadLog('v11-4k-tiger');
    const file = log.find((f) => f.lines.some((l) => Number(l.trim().split(/\s+/)[1]) >= 2))!;
    const line = file.lines.find((l) => Number(l.trim().split(/\s+/)[1]) >= 2)!;
    const [pos, address, prefix] = line.replace(/\.\.\.$/, '').trim().split(/\s+/);
    const r = await tool('queryddumbfs', ['-b', address!, parent]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^index: \\d+ addr=${address} ${prefix}[0-9a-f]{32}$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^file: ${Number(pos)} addr=${address} ${prefix}[0-9a-f]{32} ${file.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  });

  it('exits 1 on usage errors and out-of-range values', { timeout: TEST_TIMEOUT_MS }, async () => {
    const v = await makeTempVolume({ blockSize: BS, size: '4M' });
    vols.push(v);
    expect((await tool('queryddumbfs', [v.parent])).code).toBe(1);
    expect((await tool('queryddumbfs', ['-n', '1', '-b', '2', v.parent])).code).toBe(1);
    const bad = await tool('queryddumbfs', ['-H', 'zz', v.parent]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^queryddumbfs: -H: zz: not 48 hex digits/);
    const far = await tool('queryddumbfs', ['-b', '99999', v.parent]);
    expect(far.code).toBe(1);
    expect(far.stderr).toMatch(/out of range/);
    expect(far.stderr).not.toMatch(/\n\s+at /);
    expect((await tool('queryddumbfs', ['-n', '0', v.parent])).stdout).toBe('node 0: empty\n');
  });
});
