/**
 * resizeddumbfs through `node bin/resizeddumbfs` (spec §13.1 as one command, cli/resize.ts): shrink 40M -> 16M of
 * 512-byte blocks (addr_size 3 -> 2, with a pack that moves blocks) and grow back (2 -> 3), every entry compared
 * (content and metadata) and `fsckddumbfs -C` clean; a SIGKILL after each step (DDUMBFS_RESIZE_KILL_AT) leaves
 * PARENT a complete, fsck-clean volume (old or new) and a re-run completes the resize; a shrink below the used blocks
 * is refused with exit 2 and nothing changed; bad arguments exit 1 with a usage message.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, runOk } from './helpers/run.js';
import { makeTempDir, removeTempDirs } from './helpers/fixtures.js';
import { createVolume } from '../src/volume/create.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { RESIZE_KILL_POINTS } from '../src/cli/resize.js';
import { buildResizeTree, snapshotVolume } from './helpers/resize_tree.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BS = 512;
let template = '';
let original: string[] = [];

async function tool(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [join(REPO, 'bin', name), ...args], { cwd: REPO, env: { ...process.env, ...env } });
  return { code: r.code, signal: r.signal, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A copy (cp -a: times, xattrs, owners and hard links kept) of the template volume. */
async function copyOfTemplate(): Promise<string> {
  const parent = join(await makeTempDir('ddfs-resize-'), 'vol');
  await runOk('cp', ['-a', template, parent]);
  return parent;
}

async function expectClean(parent: string): Promise<void> {
  const f = await tool('fsckddumbfs', ['-C', parent]);
  expect(f.stdout).toMatch(/Filesystem status\s*: OK/);
  expect(f.code).toBe(0);
}

/** Nothing of a resize is left beside the parent. */
function expectNoLeftovers(parent: string): void {
  const siblings = fs.readdirSync(dirname(parent));
  expect(siblings.filter((n) => n.includes('resize'))).toEqual([]);
}

beforeAll(async () => {
  template = join(await makeTempDir('ddfs-resize-template-'), 'vol');
  fs.mkdirSync(template);
  await createVolume(template, { partitionSize: 40 << 20, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  await buildResizeTree(template);
  original = await snapshotVolume(template);
}, TEST_TIMEOUT_MS);

afterAll(removeTempDirs);

describe('resizeddumbfs', () => {
  it('shrinks across addr_size 3 -> 2 (packing) and grows back, keeping every entry', { timeout: TEST_TIMEOUT_MS }, async () => {
    const p = await copyOfTemplate();
    expect((await readVolumeConfig(p)).addrSize).toBe(3);
    // what the administrator keeps in the parent stays there
    fs.mkdirSync(join(p, 'notes'));
    fs.writeFileSync(join(p, 'notes', 'README'), 'kept\n');
    const s = await tool('resizeddumbfs', ['-p', p, '16M']);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/81920 -> 32768 blocks, addr_size 3 -> 2/);
    expect(s.stderr).toMatch(/Pack: \d+ blocks used, move [1-9]\d* blocks/);
    const cfg = await readVolumeConfig(p);
    expect([cfg.blockCount, cfg.addrSize, cfg.partitionSize]).toEqual([32768, 2, 16 << 20]);
    expect(fs.statSync(join(p, 'ddfsblocks')).size).toBeLessThanOrEqual(32768 * BS);
    expect(await snapshotVolume(p)).toEqual(original);
    await expectClean(p);
    expectNoLeftovers(p);
    expect(fs.readFileSync(join(p, 'notes', 'README'), 'utf8')).toBe('kept\n');
    expect(fs.existsSync(join(p, 'ddfs.lock'))).toBe(false);
    // the run is in the volume's log, which the new volume carries over
    expect(fs.readFileSync(join(p, 'ddfsroot', '.ddumbfs', 'ddumbfs.log'), 'utf8')).toMatch(/INF Resize .*81920 → 32768 blocks/);

    // through a symlink to the parent: the real directory is resized, the symlink stays
    const alias = join(dirname(p), 'alias');
    fs.symlinkSync(p, alias);
    const g = await tool('resizeddumbfs', [alias, '40M']);
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/32768 -> 81920 blocks, addr_size 2 -> 3/);
    expect(fs.lstatSync(alias).isSymbolicLink()).toBe(true);
    expect((await readVolumeConfig(p)).addrSize).toBe(3);
    expect(await snapshotVolume(p)).toEqual(original);
    await expectClean(p);
    expectNoLeftovers(p);

    const same = await tool('resizeddumbfs', [p, '40M']);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/nothing to do/);
  });

  for (const step of RESIZE_KILL_POINTS) {
    it(`a SIGKILL at ${step} leaves a complete volume, and a re-run completes`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const p = await copyOfTemplate();
      const k = await tool('resizeddumbfs', [p, '16M'], { DDUMBFS_RESIZE_KILL_AT: step });
      expect(k.signal).toBe('SIGKILL');
      // PARENT is a whole volume, the old one or the new one, with every file
      const addr = (await readVolumeConfig(p)).addrSize;
      expect(addr).toBe(step === 'exchange' || step === 'cleanup' ? 2 : 3);
      expect(await snapshotVolume(p)).toEqual(original);
      await expectClean(p);

      const r = await tool('resizeddumbfs', [p, '16M']);
      expect(r.stderr).not.toMatch(/ ERR /);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(step === 'exchange' || step === 'cleanup' ? /interrupted resize completed/ : /interrupted resize rolled-back/);
      expect((await readVolumeConfig(p)).addrSize).toBe(2);
      expect(await snapshotVolume(p)).toEqual(original);
      await expectClean(p);
      expectNoLeftovers(p);
    });
  }

  it('refuses a shrink below the used blocks with exit 2 and changes nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const p = await copyOfTemplate();
    const cfgBefore = fs.readFileSync(join(p, 'ddfs.cfg'), 'utf8');
    const r = await tool('resizeddumbfs', [p, '32k']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/blocks are in use .* hold only 64 blocks/);
    expect(fs.readFileSync(join(p, 'ddfs.cfg'), 'utf8')).toBe(cfgBefore);
    expect(await snapshotVolume(p)).toEqual(original);
    expectNoLeftovers(p);
  });

  it('stops and rolls back when a file cannot be migrated (bad header), exit 1', { timeout: TEST_TIMEOUT_MS }, async () => {
    const p = await copyOfTemplate();
    fs.writeFileSync(join(p, 'ddfsroot', 'broken'), 'not a UFS header');
    const cfgBefore = fs.readFileSync(join(p, 'ddfs.cfg'), 'utf8');
    const r = await tool('resizeddumbfs', [p, '60M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/broken: invalid header/);
    expect(r.stderr).toMatch(/1 files could not be migrated .*nothing changed/);
    expect(fs.readFileSync(join(p, 'ddfs.cfg'), 'utf8')).toBe(cfgBefore);
    fs.rmSync(join(p, 'ddfsroot', 'broken'));
    expect(await snapshotVolume(p)).toEqual(original);
    expectNoLeftovers(p);
  });

  it('refuses a volume whose block file is outside the parent, with exit 1 and nothing changed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = join(await makeTempDir('ddfs-resize-ext-'), 'vol');
    fs.mkdirSync(parent);
    const blocks = join(await makeTempDir('ddfs-resize-ext-blocks-'), 'blocks');
    await createVolume(parent, { partitionSize: 4 << 20, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false, blockFilename: blocks });
    const cfgBefore = fs.readFileSync(join(parent, 'ddfs.cfg'), 'utf8');
    const r = await tool('resizeddumbfs', [parent, '8M']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/block_filename is .*blocks: resizeddumbfs resizes volumes whose block and index files are files in the parent/);
    expect(fs.readFileSync(join(parent, 'ddfs.cfg'), 'utf8')).toBe(cfgBefore);
    expectNoLeftovers(parent);
  });

  it('exits 1 with a usage message for bad arguments', { timeout: TEST_TIMEOUT_MS }, async () => {
    const missing = await tool('resizeddumbfs', [template]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/resizeddumbfs: missing required argument 'newsize'/);
    const bad = await tool('resizeddumbfs', [template, 'lots']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/resizeddumbfs: invalid size/);
    const notVolume = await tool('resizeddumbfs', [await makeTempDir('ddfs-resize-none-'), '1M']);
    expect(notVolume.code).toBe(1);
    expect(notVolume.stderr).toMatch(/not inside a ddumbfs volume/);
  });
});
