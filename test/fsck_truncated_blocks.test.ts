/**
 * A block file cut short of the blocks in use (issue 6 §3, "fsckddumbfs -c misses a truncated block file": ddfsblocks
 * cut from 8.9 MB to 1.4 MB, and `-c` said OK). Every mode checks used addresses against the block file's size:
 * - `-c` and `-C` report each used block past the end once, as upstream reports a block it cannot read
 *   ("node N cannot read block A (beyond the end of the block file).", a block error), and say ERROR;
 * - `-n`, `-N`, `-r`, `-R` mark exactly the files that used such a block as corrupted (their blocks are lost, address 1,
 *   listed with `C` in corrupted.txt), keep every other file intact, and the next `-c` only warns about the lost blocks.
 * On a copy of the upstream fixture volume v11-4k-tiger (37 blocks), cut to 20 blocks.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { FsckMode } from '../src/fsck/run.js';
import { fsck, md5Mismatches, readCorruptedList } from './helpers/crash.js';
import { copyFixtureVolume, readUploadLog, removeTempDirs } from './helpers/fixtures.js';

const NAME = 'v11-4k-tiger';
const BS = 4096;
const KEPT_BLOCKS = 20;

afterAll(removeTempDirs);

/** The fixture's files (relative to ddfsroot) and the block addresses each uses (from its .upload.out). */
async function addressesByFile(): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const f of await readUploadLog(NAME)) out.set(f.path, f.lines.map((l) => Number(l.trim().split(/\s+/)[1])));
  return out;
}

async function truncatedCopy(): Promise<string> {
  const parent = await copyFixtureVolume(NAME);
  await fsp.truncate(path.join(parent, 'ddfsblocks'), KEPT_BLOCKS * BS);
  return parent;
}

const PAST_END = /cannot read block (\d+) \(beyond the end of the block file\)/;

describe('a block file cut short of the blocks in use', () => {
  it('the fixture uses blocks past the cut (the reproduction is meaningful)', async () => {
    const used = [...(await addressesByFile()).values()].flat();
    expect(Math.max(...used)).toBeGreaterThanOrEqual(KEPT_BLOCKS + 10);
  });

  for (const [mode, crashed] of [['check', false], ['check-blocks', false], ['check', true], ['check-blocks', true]] as Array<[FsckMode, boolean]>) {
    it(`${mode}${crashed ? ' after a crash' : ''}: ERROR, each used block past the end reported once`, async () => {
      const parent = await truncatedCopy();
      if (crashed) await fsp.writeFile(path.join(parent, '.autofsck'), '');
      const r = await fsck(parent, mode);
      expect(r.exitCode, r.log.join('\n')).toBe(1);
      const reported = r.log.map((l) => PAST_END.exec(l)?.[1]).filter((a): a is string => a !== undefined).map(Number);
      const expected = [...new Set([...(await addressesByFile()).values()].flat().filter((a) => a >= KEPT_BLOCKS))].sort((a, b) => a - b);
      expect([...reported].sort((a, b) => a - b)).toEqual(expected);
      const s = r.result!.check!.summary;
      expect(s.blockErrors + s.wrongHashes).toBe(expected.length);
    });
  }

  for (const mode of ['repair', 'repair-relaxed', 'rebuild', 'rebuild-blocks'] as FsckMode[]) {
    it(`${mode}: exit 0 as upstream; the files that used a lost block are corrupted (C), the others intact; the next check only warns`, async () => {
      const parent = await truncatedCopy();
      const r = await fsck(parent, mode);
      expect(r.exitCode, r.log.join('\n')).toBe(0);
      expect(r.result!.repair!.corruptedFiles).toBeGreaterThan(0);
      const hit = [...(await addressesByFile())].filter(([, as]) => as.some((a) => a >= KEPT_BLOCKS)).map(([p]) => p).sort();
      expect(hit.length).toBeGreaterThan(0);
      const corrupted = readCorruptedList(parent);
      const listed = [...corrupted.keys()].map((p) => path.relative(path.join(parent, 'ddfsroot'), p)).sort();
      expect(listed).toEqual(hit);
      for (const flags of corrupted.values()) expect(flags[1]).toBe('C');
      expect((await md5Mismatches(parent)).map((m) => m.split(' ')[0]).sort()).toEqual(hit);
      const c = await fsck(parent, 'check');
      expect(c.exitCode, c.log.join('\n')).toBe(2);
      expect(c.result!.check!.status).toBe('WARNING');
      expect(c.log.some((l) => PAST_END.test(l))).toBe(false);
    });
  }
});
