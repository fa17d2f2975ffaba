/**
 * Reclaim under concurrent namespace changes, in process and deterministic (issue 6 §2): a test-only hook runs
 * between walk steps, so each change happens at an exact point of the walk. Every volume is reuse_asap (freed
 * blocks are reused at once), and after the reclaim more unique data is written, so a block freed while a file
 * still referenced it is overwritten and the file reads back different bytes: every file is then checked byte for
 * byte against the model.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTempVolume, openTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { bytes, readTree, SELF, treeDiff, writeTreeFile } from './helpers/ufs_model.js';
import type { Volume } from '../src/volume/volume.js';
import { Logger } from '../src/util/log.js';

const quiet = new Logger(() => undefined);
import type { ReclaimReport } from '../src/volume/reclaim.js';

const BLOCK_SIZE = 4096;

interface Setup {
  tv: TempVolume;
  vol: Volume;
  model: Map<string, Buffer>;
}

const setups: Setup[] = [];

afterEach(async () => {
  for (const s of setups.splice(0)) {
    await s.vol.close().catch(() => undefined);
    await s.tv.cleanup();
  }
});

/** A reuse_asap volume holding `dirs` (created in order) and files of 3 unique blocks each. */
async function setup(dirs: string[], files: string[]): Promise<Setup> {
  const tv = await makeTempVolume({ blockSize: BLOCK_SIZE, size: '8M', reuseAsap: true });
  const vol = await openTempVolume(tv.parent, { logger: quiet });
  const s: Setup = { tv, vol, model: new Map() };
  setups.push(s);
  for (const d of dirs) await vol.tree.mkdir(bytes(d), 0o755, SELF);
  for (const f of files) {
    const data = randomBytes(3 * BLOCK_SIZE - 100);
    await writeTreeFile(vol, f, data);
    s.model.set(f, data);
  }
  return s;
}

/** Move every model entry under `from` (a file or a directory) to `to`. */
function modelRename(model: Map<string, Buffer>, from: string, to: string): void {
  for (const [p, data] of [...model]) {
    if (p === from || p.startsWith(`${from}/`)) {
      model.delete(p);
      model.set(to + p.slice(from.length), data);
    }
  }
}

/** Write unique data until every block freed by the reclaim has been reused, then compare the whole tree. */
async function overwriteFreedAndCheck(s: Setup): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const data = randomBytes(64 * BLOCK_SIZE);
    await writeTreeFile(s.vol, `filler.${i}`, data);
    s.model.set(`filler.${i}`, data);
  }
  expect(treeDiff(await readTree(s.vol), s.model)).toBe('');
}

/** Run a reclaim whose walk calls `step` after reaching each entry (latin1 path). */
function reclaimWith(vol: Volume, step: (p: string) => Promise<void>): Promise<ReclaimReport> {
  return vol.runReclaim({ afterWalkStep: (p) => step(p.toString('latin1')) });
}

describe('reclaim never frees a block a file references, under concurrent changes (issue 6 §2)', () => {
  it('rotating backup directories during the walk (mv daily.2 daily.3; mv daily.1 daily.2; mkdir daily.1)', async () => {
    const dirs = ['daily.1', 'daily.2', 'daily.3'];
    const files = dirs.flatMap((d) => [0, 1, 2, 3].map((i) => `${d}/f${i}`));
    const s = await setup(dirs, files);
    let rotated = false;
    const report = await reclaimWith(s.vol, async (p) => {
      if (rotated || p !== 'daily.1/f1') return;
      rotated = true;
      for (const [from, to] of [['daily.3', 'daily.4'], ['daily.2', 'daily.3'], ['daily.1', 'daily.2']]) {
        await s.vol.tree.rename(bytes(from!), bytes(to!));
        modelRename(s.model, from!, to!);
      }
      await s.vol.tree.mkdir(bytes('daily.1'), 0o755, SELF);
    });
    expect(rotated).toBe(true);
    expect(report.nodeDeleted).toBe(0);
    await overwriteFreedAndCheck(s);
  });

  it('toggling mv d/v1 d/w1; mv d/w1 d/v1 during the walk', async () => {
    const files = [0, 1, 2, 3, 4].map((i) => `d/v1/f${i}`);
    const s = await setup(['d', 'd/v1'], files);
    let steps = 0;
    const report = await reclaimWith(s.vol, async (p) => {
      if (!p.startsWith('d/v1/')) return;
      steps++;
      const [from, to] = steps % 2 === 1 ? ['d/v1', 'd/w1'] : ['d/w1', 'd/v1'];
      await s.vol.tree.rename(bytes(from), bytes(to));
      modelRename(s.model, from, to);
    });
    expect(steps).toBeGreaterThan(0);
    expect(report.nodeDeleted).toBe(0);
    await overwriteFreedAndCheck(s);
  });

  it('link into an already walked directory, then unlink the original', async () => {
    const s = await setup(['a', 'b'], ['a/first', 'a/second', 'b/orig']);
    let done = false;
    const report = await reclaimWith(s.vol, async (p) => {
      if (done || p !== 'a/second') return;
      done = true;
      await s.vol.tree.link(bytes('b/orig'), bytes('a/0link'));
      await s.vol.tree.unlink(bytes('b/orig'));
      s.model.set('a/0link', s.model.get('b/orig')!);
      s.model.delete('b/orig');
    });
    expect(done).toBe(true);
    expect(report.nodeDeleted).toBe(0);
    await overwriteFreedAndCheck(s);
  });

  it('a directory briefly replaced by a file during the walk', async () => {
    const s = await setup(['a', 'm', 'z'], ['a/first', 'm/f0', 'm/f1', 'm/f2', 'z/last']);
    let phase = 0;
    const report = await reclaimWith(s.vol, async (p) => {
      if (phase === 0 && p === 'a/first') {
        phase = 1;
        await s.vol.tree.rename(bytes('m'), bytes('c.save'));
        await s.vol.tree.createFile(bytes('m'), 0o644, SELF, true);
      } else if (phase === 1 && p.startsWith('z')) {
        phase = 2;
        await s.vol.tree.unlink(bytes('m'));
        await s.vol.tree.rename(bytes('c.save'), bytes('m'));
      }
    });
    expect(phase).toBe(2);
    expect(report.nodeDeleted).toBe(0);
    await overwriteFreedAndCheck(s);
  });

  it('a file replaced by a directory after its directory was listed', async () => {
    const s = await setup(['b'], ['b/e', 'b/f', 'b/g']);
    let done = false;
    const report = await reclaimWith(s.vol, async (p) => {
      if (done || p !== 'b/e') return;
      done = true;
      await s.vol.tree.unlink(bytes('b/f'));
      s.model.delete('b/f');
      await s.vol.tree.mkdir(bytes('b/f'), 0o755, SELF);
      const data = randomBytes(2 * BLOCK_SIZE);
      await writeTreeFile(s.vol, 'b/f/new', data);
      s.model.set('b/f/new', data);
    });
    expect(done).toBe(true);
    expect(report.nodeDeleted).toBe(3);
    await overwriteFreedAndCheck(s);
  });

  it('a readdir that fails with EMFILE aborts the reclaim with nothing freed', async () => {
    const s = await setup(['a', 'b'], ['a/f0', 'b/f0', 'gone']);
    await s.vol.tree.unlink(bytes('gone'));
    s.model.delete('gone');
    const usedBefore = s.vol.store.blockCountUsed;
    const emfile = (): Error => Object.assign(new Error('EMFILE: too many open files, scandir'), { code: 'EMFILE', errno: -24 });
    const run = s.vol.runReclaim({ directoryError: (p) => (p.toString('latin1') === 'b' ? emfile() : null) });
    await expect(run).rejects.toThrow(/EMFILE.*nothing freed|nothing freed.*EMFILE/);
    expect(s.vol.store.blockCountUsed).toBe(usedBefore);
    // what a read of /.ddumbfs/reclaim shows then
    const text = await s.vol.reclaimText({ directoryError: (p) => (p.length === 0 ? emfile() : null) });
    expect(text).toMatch(/^== Reclaim failed: reclaim aborted, nothing freed: .*EMFILE/);
    expect(s.vol.store.blockCountUsed).toBe(usedBefore);
    await overwriteFreedAndCheck(s);
    // the same volume reclaims normally once the walk can read everything: only the unlinked file's 3 blocks go
    const report = await s.vol.runReclaim();
    expect(report.nodeDeleted).toBe(3);
  });

  it('keeps the blocks of a file whose name is not UTF-8 (bad\\xff\\xfename)', async () => {
    const s = await setup(['d'], ['d/ok', 'd/tmp']);
    await s.vol.tree.rename(bytes('d/tmp'), bytes('d/bad\xff\xfename'));
    modelRename(s.model, 'd/tmp', 'd/bad\xff\xfename');
    const report = await s.vol.runReclaim();
    expect(report.files).toBe(2);
    expect(report.nodeDeleted).toBe(0);
    await overwriteFreedAndCheck(s);
  });

  it('still frees the blocks of unlinked and overwritten files', async () => {
    const s = await setup(['d'], ['d/keep', 'd/drop', 'd/over']);
    await s.vol.tree.unlink(bytes('d/drop'));
    s.model.delete('d/drop');
    const fresh = randomBytes(BLOCK_SIZE);
    await writeTreeFile(s.vol, 'd/over', fresh);
    s.model.set('d/over', fresh);
    const report = await s.vol.runReclaim();
    expect(report.nodeDeleted).toBe(3 + 3);
    await overwriteFreedAndCheck(s);
  });
});
