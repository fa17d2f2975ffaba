/**
 * treeCensus (the seal's census, mirroring spec §4.3): the entry count and the EXACT highest ctime in ns, the same
 * as a plain bigint lstat walk gives, though the walk itself reads number stats; and each kind of offline edit of a
 * ddumbfs 1.1 tool or a hand edit (a file's content rewritten in place, a new file in a deep directory, a rename)
 * moves the census away from the one taken before it.
 * startTreeCensus (the census beside an incremental pass): the same census from its worker thread (the compiled
 * dist/ worker, as the commands run it) and inline; a walk that fails, or a thread stopped before it answered, is a
 * rejection, never a census; startSealCheck maps that to a verdict that proves nothing (`changed` false).
 * nativeTreeCensus (the worker's walk: getdents64 + statx): the same census as treeCensus, before and after each edit;
 * split in shares, each share counts exactly the entries of the directories it owns, and the shares add up to it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTreeCensus, treeCensus } from '../src/io/journal_dir.js';
import { censusShareOf, nativeTreeCensus } from '../src/io/tree_census_native.js';
import { startSealCheck, type MirrorSeal } from '../src/mirror/master_journal.js';

/** journal_dir as the commands load it (dist/): its startTreeCensus runs on a worker thread. */
const DIST_JOURNAL_DIR = path.resolve(__dirname, '../dist/io/journal_dir.js');
type JournalDirModule = typeof import('../src/io/journal_dir.js');

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function naive(root: string): { entryCount: number; ctimeMaxNs: bigint } {
  let entryCount = 0;
  let ctimeMaxNs = fs.lstatSync(root, { bigint: true }).ctimeNs;
  const walk = (d: string): void => {
    for (const n of fs.readdirSync(d)) {
      const st = fs.lstatSync(path.join(d, n), { bigint: true });
      entryCount++;
      if (st.ctimeNs > ctimeMaxNs) ctimeMaxNs = st.ctimeNs;
      if (st.isDirectory()) walk(path.join(d, n));
    }
  };
  walk(root);
  return { entryCount, ctimeMaxNs };
}

function tree(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'census-'));
  dirs.push(root);
  for (let d = 0; d < 5; d++) {
    fs.mkdirSync(path.join(root, `d${d}`, 'deep', 'er'), { recursive: true });
    for (let f = 0; f < 20; f++) fs.writeFileSync(path.join(root, `d${d}`, 'deep', 'er', `f${f}`), `x${f}`);
  }
  fs.symlinkSync('d0', path.join(root, 'link'));
  return root;
}

describe('treeCensus', () => {
  it('gives the exact entry count and highest ctime in ns of a plain bigint walk', () => {
    const root = tree();
    expect(treeCensus(Buffer.from(root), 64)).toEqual(naive(root));
  });

  it('an offline edit (content rewritten in place, a new deep file, a rename) changes the census', async () => {
    const root = tree();
    const edits: Array<() => void> = [
      () => {
        // in place: same size, no directory changes; only the file's own ctime moves
        const fd = fs.openSync(path.join(root, 'd1', 'deep', 'er', 'f3'), 'r+');
        fs.writeSync(fd, 'y3', 0);
        fs.closeSync(fd);
      },
      () => fs.writeFileSync(path.join(root, 'd2', 'deep', 'er', 'new'), 'n'),
      () => fs.renameSync(path.join(root, 'd3', 'deep', 'er', 'f1'), path.join(root, 'd4', 'deep', 'f1')),
    ];
    for (const edit of edits) {
      const before = treeCensus(Buffer.from(root), 64);
      // a ctime strictly newer than the census's highest: the file system's clock may be coarse (a few ms)
      await new Promise((r) => setTimeout(r, 30));
      edit();
      const after = treeCensus(Buffer.from(root), 64);
      expect(after).toEqual(naive(root));
      expect(nativeTreeCensus(Buffer.from(root), 64)).toEqual(after);
      expect(after.entryCount !== before.entryCount || after.ctimeMaxNs > before.ctimeMaxNs).toBe(true);
    }
  });
});

describe('nativeTreeCensus', () => {
  it('is treeCensus: count and exact ctime, symlinks not followed, top names skipped, the depth bound, raw names', () => {
    const root = tree();
    fs.writeFileSync(Buffer.concat([Buffer.from(`${root}/d0/`), Buffer.from([0xff, 0x80])]), 'raw'); // not UTF-8
    expect(nativeTreeCensus(Buffer.from(root), 64)).toEqual(treeCensus(Buffer.from(root), 64));
    expect(nativeTreeCensus(Buffer.from(root), 64).entryCount).toBe(5 * 23 + 2); // d*, d*/deep, d*/deep/er, 20 files each; link; the raw name
    expect(nativeTreeCensus(Buffer.from(root), 64, new Set(['d0', 'link']))).toEqual(treeCensus(Buffer.from(root), 64, new Set(['d0', 'link'])));
    expect(nativeTreeCensus(Buffer.from(root), 2)).toEqual(treeCensus(Buffer.from(root), 2));
    expect(nativeTreeCensus(Buffer.from(root), 2).entryCount).toBe(5 * 2 + 2); // d*, d*/deep; link; the raw name (in d0)
  });

  it('in shares: each counts the entries of the directories it owns (censusShareOf), together the whole census', () => {
    const root = tree();
    fs.writeFileSync(Buffer.concat([Buffer.from(`${root}/d2/`), Buffer.from([0xfe])]), 'raw');
    const whole = nativeTreeCensus(Buffer.from(root), 64);
    // the entries of each directory, by a plain walk on raw names
    const perDirectory: Array<{ dir: Buffer; count: number }> = [];
    const walk = (d: Buffer): void => {
      const names = fs.readdirSync(d, { encoding: 'buffer' });
      perDirectory.push({ dir: d, count: names.length });
      for (const n of names) {
        const p = Buffer.concat([d, Buffer.from('/'), n]);
        if (fs.lstatSync(p).isDirectory()) walk(p);
      }
    };
    walk(Buffer.from(root));
    for (const parts of [1, 2, 3]) {
      let sum = 0;
      let max = 0n;
      for (let part = 0; part < parts; part++) {
        const share = nativeTreeCensus(Buffer.from(root), 64, new Set(), { part, parts });
        const owned = perDirectory.filter((e) => censusShareOf(e.dir, parts) === part).reduce((n, e) => n + e.count, 0);
        expect(share.entryCount).toBe(owned);
        sum += share.entryCount;
        if (share.ctimeMaxNs > max) max = share.ctimeMaxNs;
      }
      expect({ entryCount: sum, ctimeMaxNs: max }).toEqual(whole);
    }
    expect(() => nativeTreeCensus(Buffer.from(root), 64, new Set(), { part: 2, parts: 2 })).toThrow(/not a share/);
  });

  it('a root that cannot be read is an error naming it, never a census', () => {
    expect(() => nativeTreeCensus(Buffer.from('/nonexistent-census-root'), 64)).toThrow(/ENOENT.*nonexistent-census-root/);
  });
});

describe('startTreeCensus', () => {
  it('inline (from the TypeScript sources): the same census, after the caller\'s turn of the event loop', async () => {
    const root = tree();
    const job = startTreeCensus(Buffer.from(root), 64);
    expect(job.threaded).toBe(false);
    fs.writeFileSync(path.join(root, 'd0', 'late'), 'l'); // before the walk: the job's census includes it
    expect(await job.result).toEqual(naive(root));
    const stopped = startTreeCensus(Buffer.from(root), 64);
    await stopped.stop();
    await expect(stopped.result).rejects.toThrow(/stopped/);
  });

  it.runIf(fs.existsSync(DIST_JOURNAL_DIR))('on its worker thread (dist/): the same census; a failed walk and a stopped thread are rejections', async () => {
    const dist = (await import(DIST_JOURNAL_DIR)) as JournalDirModule;
    const root = tree();
    const job = dist.startTreeCensus(Buffer.from(root), 64, new Set(['d1']));
    expect(job.threaded).toBe(true);
    const want = naive(root);
    const d1 = naive(path.join(root, 'd1'));
    const got = await job.result;
    expect(got).toEqual(treeCensus(Buffer.from(root), 64, new Set(['d1'])));
    expect(got.entryCount).toBe(want.entryCount - d1.entryCount - 1); // d1 and all it holds left out
    await expect(dist.startTreeCensus(Buffer.from(path.join(root, 'absent')), 64).result).rejects.toThrow(/ENOENT/);
    // split between threads, and on one: the same census
    for (const threads of [1, 2]) expect(await dist.startTreeCensus(Buffer.from(root), 64, new Set(['d1']), { threads }).result).toEqual(got);
    // a stop asks each thread to end before its next directory: stop() resolves once they ended, the result rejects
    for (const threads of [1, 2]) {
      const stopped = dist.startTreeCensus(Buffer.from(root), 64, new Set(), { threads });
      await stopped.stop();
      await expect(stopped.result).rejects.toThrow(/stopped/);
      await stopped.stop(); // idempotent
    }
    // a stop once the census answered changes nothing
    const done = dist.startTreeCensus(Buffer.from(root), 64, new Set(['d1']));
    expect(await done.result).toEqual(got);
    await done.stop();
    expect(await done.result).toEqual(got);
  });

  it('startSealCheck: a census that does not complete is a verdict that proves nothing, a match is null', async () => {
    const root = tree();
    const c = treeCensus(Buffer.from(root), 64);
    const seal: MirrorSeal = { version: 2, lastTid: '1', nextTid: '2', generation: 1, sealedAt: new Date().toISOString(), entryCount: c.entryCount, ctimeMaxNs: c.ctimeMaxNs.toString(), ctimeBoundaryNs: (c.ctimeMaxNs + 1n).toString() };
    expect(await startSealCheck(seal, root).verdict).toBeNull();
    expect(await startSealCheck({ ...seal, entryCount: c.entryCount + 1 }, root).verdict).toMatchObject({ changed: true, reason: expect.stringMatching(/entries/) });
    expect(await startSealCheck(seal, path.join(root, 'absent')).verdict).toMatchObject({ changed: false, reason: expect.stringMatching(/did not complete/) });
    const stopped = startSealCheck(seal, root);
    await stopped.stop();
    expect(await stopped.verdict).toMatchObject({ changed: false });
  });
});
