/**
 * Reclaim through the daemon (issue 6 §2), child-process mounts of reuse_asap volumes (mkddumbfs -a: freed blocks
 * are reused at once, so a block freed while a file still referenced it is overwritten by the next writes):
 * - `cat MNT/.ddumbfs/reclaim` repeated while a shell loop renames directories back and forth;
 * - the daemon limited to 64 descriptors (prlimit on its pid) with files held open until its opens fail: the
 *   reclaim's walk cannot read the tree, so it must fail with nothing freed and say so in the log;
 * - a file created through the mount with a name that is not UTF-8 keeps its blocks.
 * Every file is then read back through the mount and compared byte for byte.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MKDDUMBFS_BIN, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

const BLOCK_SIZE = 4096;
const TEST_TIMEOUT_MS = 300_000;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await unmountAll();
});

async function mountAsap(): Promise<{ m: MountedVolume; mnt: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-reclaimd-'));
  cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  const parent = path.join(dir, 'vol');
  const mnt = path.join(dir, 'mnt');
  await fsp.mkdir(parent);
  await fsp.mkdir(mnt);
  const r = await sh(process.execPath, [MKDDUMBFS_BIN, '-a', '-s', '32M', '-B', String(BLOCK_SIZE), parent]);
  expect(r.code, r.stderr).toBe(0);
  const m = await mountVolume(parent, mnt);
  cleanups.push(() => m.unmount());
  return { m, mnt };
}

/** Every regular file below `dir` (byte names) and its content, keyed by latin1 relative path. */
async function readAll(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const visit = async (rel: Buffer): Promise<void> => {
    const abs = Buffer.concat([Buffer.from(dir), rel.length ? Buffer.from('/') : Buffer.alloc(0), rel]);
    for (const name of await fsp.readdir(abs, { encoding: 'buffer' })) {
      const childRel = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      if (childRel.toString('latin1') === '.ddumbfs') continue;
      const child = Buffer.concat([abs, Buffer.from('/'), name]);
      const st = await fsp.lstat(child);
      if (st.isDirectory()) await visit(childRel);
      else if (st.isFile()) out.set(childRel.toString('latin1'), await fsp.readFile(child));
    }
  };
  await visit(Buffer.alloc(0));
  return out;
}

function diff(actual: Map<string, Buffer>, model: Map<string, Buffer>): string {
  const bad: string[] = [];
  for (const [p, want] of model) if (!actual.get(p)?.equals(want)) bad.push(p);
  for (const p of actual.keys()) if (!model.has(p)) bad.push(`unexpected ${p}`);
  return bad.length ? `${bad.length} files wrong, e.g. ${JSON.stringify(bad.slice(0, 5))}` : '';
}

/** Write unique data through the mount (reusing every freed block), then compare the whole tree with the model. */
async function fillAndCheck(mnt: string, model: Map<string, Buffer>): Promise<void> {
  for (let i = 0; i < 4; i++) {
    const data = randomBytes(256 * BLOCK_SIZE);
    await fsp.writeFile(path.join(mnt, `filler.${i}`), data);
    model.set(`filler.${i}`, data);
  }
  expect(diff(await readAll(mnt), model)).toBe('');
}

function blockAllocated(mnt: string): number {
  const text = fs.readFileSync(path.join(mnt, '.ddumbfs', 'stats'), 'utf8');
  const m = /^block_allocated\s+(\d+)$/m.exec(text);
  if (!m) throw new Error(`no block_allocated in stats:\n${text}`);
  return Number(m[1]);
}

describe('reclaim through the daemon (issue 6 §2)', () => {
  it('cat .ddumbfs/reclaim while a shell loop renames directories frees no live block', async () => {
    const { mnt } = await mountAsap();
    const model = new Map<string, Buffer>();
    for (const d of ['d/v1', 'daily.1', 'daily.2']) {
      await fsp.mkdir(path.join(mnt, d), { recursive: true });
      for (let i = 0; i < 40; i++) {
        const data = randomBytes(BLOCK_SIZE + 512 + i);
        await fsp.writeFile(path.join(mnt, d, `f${i}`), data);
        model.set(`${d}/f${i}`, data);
      }
    }
    // the loop ends on an even number of iterations of each pair, so the tree ends as it began
    const script = `cd '${mnt}'; while [ ! -e stop ]; do mv d/v1 d/w1; mv d/w1 d/v1; mv daily.2 daily.3; mv daily.1 daily.2; mv daily.2 daily.1; mv daily.3 daily.2; done`;
    const loop = spawn('bash', ['-c', script], { stdio: 'ignore' });
    const loopDone = new Promise<number | null>((res) => loop.on('exit', (code) => res(code)));
    try {
      for (let i = 0; i < 6; i++) {
        const text = await fsp.readFile(path.join(mnt, '.ddumbfs', 'reclaim'), 'utf8');
        expect(text).toMatch(/^node_deleted\s+\d+$/m);
      }
    } finally {
      await fsp.writeFile(path.join(mnt, 'stop'), '');
      await loopDone;
      await fsp.rm(path.join(mnt, 'stop'));
    }
    await fillAndCheck(mnt, model);
  }, TEST_TIMEOUT_MS);

  it('with the daemon out of descriptors the reclaim fails and frees nothing', async () => {
    const { m, mnt } = await mountAsap();
    const model = new Map<string, Buffer>();
    await fsp.mkdir(path.join(mnt, 'held'));
    for (let i = 0; i < 80; i++) {
      const data = randomBytes(BLOCK_SIZE + i);
      await fsp.writeFile(path.join(mnt, 'held', `f${i}`), data);
      model.set(`held/f${i}`, data);
    }
    const doomed = randomBytes(5 * BLOCK_SIZE);
    await fsp.writeFile(path.join(mnt, 'doomed'), doomed);
    await fsp.rm(path.join(mnt, 'doomed'));
    const before = blockAllocated(mnt);
    const limited = await sh('prlimit', [`--pid=${m.pid}`, '--nofile=64:64']);
    expect(limited.code, limited.stderr).toBe(0);
    const held: fsp.FileHandle[] = [];
    try {
      // each open through the mount costs the daemon one descriptor (its UFS file): open until it has none left
      let exhausted = false;
      for (let i = 0; i < 80 && !exhausted; i++) {
        try {
          held.push(await fsp.open(path.join(mnt, 'held', `f${i}`), 'r'));
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toMatch(/EMFILE|ENFILE/);
          exhausted = true;
        }
      }
      expect(exhausted).toBe(true);
      const r = await fsp.readFile(path.join(mnt, '.ddumbfs', 'reclaim'), 'utf8').catch((err: Error) => `open failed: ${err.message}`);
      expect(r).not.toMatch(/^node_deleted/m);
    } finally {
      for (const h of held) await h.close();
    }
    await sh('prlimit', [`--pid=${m.pid}`, '--nofile=4096:4096']);
    expect(blockAllocated(mnt)).toBe(before);
    await fillAndCheck(mnt, model);
    expect(m.stderr()).toMatch(/reclaim.*(EMFILE|too many open files).*nothing freed|reclaim.*nothing freed.*(EMFILE|too many open files)/i);
    // with descriptors back, the reclaim runs and frees exactly the 5 blocks of the removed file
    const text = await fsp.readFile(path.join(mnt, '.ddumbfs', 'reclaim'), 'utf8');
    expect(text).toMatch(/^node_deleted\s+5$/m);
  }, TEST_TIMEOUT_MS);

  it('a file created through the mount with a non-UTF-8 name survives reclaim', async () => {
    const { mnt } = await mountAsap();
    const model = new Map<string, Buffer>();
    const name = Buffer.from('bad\xff\xfename', 'latin1');
    const data = randomBytes(7 * BLOCK_SIZE + 3);
    await fsp.writeFile(Buffer.concat([Buffer.from(`${mnt}/`), name]), data);
    model.set(name.toString('latin1'), data);
    const text = await fsp.readFile(path.join(mnt, '.ddumbfs', 'reclaim'), 'utf8');
    expect(text).toMatch(/^files\s+1$/m);
    expect(text).toMatch(/^node_deleted\s+0$/m);
    await fillAndCheck(mnt, model);
  }, TEST_TIMEOUT_MS);
});
