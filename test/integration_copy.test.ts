/**
 * The main job as a test: cp -a a real system tree into the mount, compare every byte and the metadata, copy it
 * again under another name (allocated blocks grow by less than 1 %), unmount, remount, compare again, and download
 * every file with cpddumbfs from the unmounted volume.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
// @ts-expect-error plain JS helper shared with scripts/main-job.sh
import { compareTrees } from '../scripts/compare-trees.mjs';
import { makeVolume, mountVolume, type MountedVolume } from './helpers/mount.js';
import { runOk } from './helpers/run.js';
import { Volume } from '../src/volume/volume.js';
import { UfsDownload } from '../src/copy/download.js';

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}

const SOURCE = process.env.DDUMBFS_TEST_TREE ?? '/usr/share/doc';
const ROOT = path.resolve(__dirname, '..');

/** Bytes of the regular files below `dir` (symbolic links not followed). */
function treeSizeBytes(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += treeSizeBytes(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

/**
 * Limit of each test below, scaled by the tree: a copy or a full comparison of /usr/share/doc (110 MiB in 4,238 files)
 * takes about 20 s on an idle machine (0.16 s per MiB); 5 s per MiB allows 30 times that, so a machine ten times
 * slower passes. A hang detector only.
 */
const STEP_TIMEOUT_MS = 120_000 + Math.ceil(treeSizeBytes(SOURCE) / (1024 * 1024)) * 5_000;

function blockAllocated(mnt: string): number {
  const text = fs.readFileSync(path.join(mnt, '.ddumbfs', 'stats'), 'utf8');
  const m = /^block_allocated\s+(\d+)/m.exec(text);
  if (!m) throw new Error(`no block_allocated in stats:\n${text}`);
  return Number(m[1]);
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

describe(`real tree (${SOURCE}) through the mount`, () => {
  let work: string;
  let parent: string;
  let mnt: string;
  let mounted: MountedVolume | null = null;

  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-copy-'));
    await fsp.chmod(work, 0o755);
    parent = path.join(work, 'parent');
    mnt = path.join(work, 'mnt');
    await fsp.mkdir(parent);
    await fsp.mkdir(mnt);
    await makeVolume(parent, { blockSize: 4096, size: 1024 * 1024 * 1024 });
    mounted = await mountVolume(parent, mnt);
  });

  afterAll(async () => {
    await mounted?.unmount();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('cp -a copies every byte and the metadata', { timeout: STEP_TIMEOUT_MS }, async () => {
    await runOk('cp', ['-a', SOURCE, path.join(mnt, 'copy1')], { timeoutMs: STEP_TIMEOUT_MS });
    const r = await compareTrees(SOURCE, path.join(mnt, 'copy1'));
    expect(r.differences).toEqual([]);
    expect(r.files).toBeGreaterThan(100);
  });

  it('a second copy under another name allocates less than 1 % more blocks', { timeout: STEP_TIMEOUT_MS }, async () => {
    const before = blockAllocated(mnt);
    await runOk('cp', ['-a', SOURCE, path.join(mnt, 'copy2')], { timeoutMs: STEP_TIMEOUT_MS });
    const after = blockAllocated(mnt);
    expect(before).toBeGreaterThan(100);
    expect(after - before).toBeLessThan(before * 0.01);
    const r = await compareTrees(SOURCE, path.join(mnt, 'copy2'));
    expect(r.differences).toEqual([]);
  });

  it('after unmount and remount the copy is still identical', { timeout: STEP_TIMEOUT_MS }, async () => {
    await mounted!.unmount();
    mounted = null;
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
    mounted = await mountVolume(parent, mnt);
    const r = await compareTrees(SOURCE, path.join(mnt, 'copy1'));
    expect(r.differences).toEqual([]);
  });

  it('cpddumbfs downloads every file of the unmounted volume byte for byte', { timeout: STEP_TIMEOUT_MS }, async () => {
    await mounted!.unmount();
    mounted = null;
    const files = await listFiles(SOURCE);
    // Every file through the download library that cpddumbfs runs; a sample through the command itself.
    const volume = await Volume.open(parent, { readOnly: true });
    try {
      for (const rel of files) {
        const dl = await UfsDownload.open(volume, path.join(parent, 'ddfsroot', 'copy1', rel));
        const chunks: Buffer[] = [];
        const result = await dl.copyTo(async (b) => { chunks.push(Buffer.from(b)); }, { check: true });
        await dl.close();
        expect(result.intact, rel).toBe(true);
        expect(sha1(Buffer.concat(chunks)), rel).toBe(sha1(await fsp.readFile(path.join(SOURCE, rel))));
      }
    } finally {
      await volume.close();
    }
    const out = path.join(work, 'dl');
    for (const rel of files.filter((_, i) => i % Math.ceil(files.length / 20) === 0)) {
      await runOk(process.execPath, [path.join(ROOT, 'bin', 'cpddumbfs'), '-c', path.join(parent, 'ddfsroot', 'copy2', rel), out], { timeoutMs: STEP_TIMEOUT_MS });
      expect(sha1(await fsp.readFile(out)), rel).toBe(sha1(await fsp.readFile(path.join(SOURCE, rel))));
    }
    expect(files.length).toBeGreaterThan(100);
  });
});
