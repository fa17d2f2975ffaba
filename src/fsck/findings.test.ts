import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fixtureSidePath } from '../../test/helpers/fixtures.js';
import {
  emptySummary, exitCodeOf, fileFlags, isBadFile, renderSummary, statusLine, statusOf, usageBar, type FileRepairStatus,
} from './findings.js';

describe('summary', () => {
  it('renders the upstream table byte for byte', () => {
    const s = { ...emptySummary(), usedBlocks: 37, freeBlocks: 987, lastUsedBlock: 36, totalBlocks: 1024, usageBar: '3.........',
      indexBlocks: 37, files: 7, filesBlocks: 37, inFilesAndInIndex: 37 };
    const want = readFileSync(fixtureSidePath('v11-4k-tiger', 'fsck-c.out'), 'utf8').split('\n');
    const start = want.indexOf('== Summary   ');
    expect(renderSummary(s, statusOf(s))).toEqual(want.slice(start, start + 22));
  });

  it('verdicts: errors ⇒ ERROR (1), only lost blocks ⇒ WARNING (2), else OK (0)', () => {
    const ok = emptySummary();
    expect([statusOf(ok), exitCodeOf(statusOf(ok))]).toEqual(['OK', 0]);
    const war = { ...ok, filesLostBlocks: 3, inIndexNotInFiles: 5, inBlocksNotInFiles: 5 };
    expect([statusOf(war), exitCodeOf(statusOf(war))]).toEqual(['WARNING', 2]);
    for (const k of ['indexErrors', 'indexBlocksDup', 'blockErrors', 'filesErrors', 'wrongHashes', 'inFilesNotInIndex',
      'inFilesNotInBlocks', 'inIndexNotInBlocks', 'inBlocksNotInIndex'] as const) {
      expect(statusOf({ ...war, [k]: 1 }), k).toBe('ERROR');
    }
    expect(exitCodeOf('ERROR')).toBe(1);
  });

  it("the status line keeps upstream's words and suffixes (ddfs_check): scripts match on them", () => {
    const ok = emptySummary();
    expect(statusLine(ok, statusOf(ok))).toBe('Filesystem status        : OK ');
    for (const k of ['inIndexNotInFiles', 'inBlocksNotInFiles'] as const) {
      const reclaim = { ...ok, [k]: 4 };
      expect(statusOf(reclaim), k).toBe('OK');
      expect(statusLine(reclaim, statusOf(reclaim)), k).toBe('Filesystem status        : OK blocks can be reclaimed');
    }
    const lost = { ...ok, filesLostBlocks: 3 };
    expect(statusLine(lost, statusOf(lost))).toBe('Filesystem status        : WARNING (files were already corrupted)');
    const lostReclaim = { ...lost, inBlocksNotInFiles: 2 };
    expect(statusLine(lostReclaim, statusOf(lostReclaim)))
      .toBe('Filesystem status        : WARNING (files were already corrupted), blocks can be reclaimed');
    const error = { ...lostReclaim, filesErrors: 1 };
    expect(statusLine(error, statusOf(error))).toBe('Filesystem status        : ERROR');
    // the table ends with that line
    expect(renderSummary(lostReclaim, statusOf(lostReclaim)).at(-1)).toBe(statusLine(lostReclaim, 'WARNING'));
    // upstream prints "corrupted files" here without an ERR prefix
    expect(renderSummary({ ...ok, inFilesNotInBlocks: 1 }, 'ERROR')).toContain('in files & not in blocks :          1 corrupted files');
  });

  it('extra bitmap lines appear only when non-zero', () => {
    const s = { ...emptySummary(), inBlocksNotInIndex: 5 };
    expect(renderSummary(s, statusOf(s))).toContain('in blocks & not in index :          5 ERR leaked blocks');
    expect(renderSummary(emptySummary(), 'OK').some((l) => l.includes('not in index :'))).toBe(false);
  });

  it('usage bar: . empty, * full, digit = tenths used', () => {
    const used = (set: Set<number>) => (from: number, to: number) => [...set].filter((a) => a >= from && a < to).length;
    expect(usageBar(1024, used(new Set(Array.from({ length: 37 }, (_, i) => i))))).toBe('3.........');
    expect(usageBar(10, used(new Set([0, 1, 2, 9])))).toBe('***......*');
    expect(usageBar(100, used(new Set([0])))).toBe('1.........');
    expect(usageBar(1000, used(new Set([0])))).toBe('0.........');
    expect(usageBar(512, used(new Set(Array.from({ length: 512 }, (_, i) => i))))).toBe('**********');
  });
});

describe('per-file flags (spec §10.6)', () => {
  const base: FileRepairStatus = { path: '/p', fixed: false, corrupted: false, size: 'ok', length: 'ok', badHeader: false };
  it('renders the 4 columns', () => {
    expect(fileFlags({ ...base, fixed: true, size: 'fixed' })).toBe('F s ');
    expect(fileFlags({ ...base, corrupted: true, size: 'fixed' })).toBe(' Cs ');
    expect(fileFlags({ ...base, fixed: true, length: 'fixed' })).toBe('F  l');
    expect(fileFlags({ ...base, size: 'failed', length: 'failed' })).toBe('  SL');
    expect(fileFlags({ ...base, badHeader: true })).toBe(' H  ');
  });
  it('bad = C, unfixed S or L, or H', () => {
    expect(isBadFile({ ...base, fixed: true, size: 'fixed' })).toBe(false);
    expect(isBadFile({ ...base, corrupted: true })).toBe(true);
    expect(isBadFile({ ...base, size: 'failed' })).toBe(true);
    expect(isBadFile({ ...base, length: 'failed' })).toBe(true);
    expect(isBadFile({ ...base, badHeader: true })).toBe(true);
  });
});
