import { describe, expect, it } from 'vitest';
import { parseFsckRecord, renderFsckRecord, type FsckRecord } from './fsck_record.js';

const RECORD: FsckRecord = {
  version: 1, tool: 'fsckddumbfs', time: '2026-12-03T07:50:00.000Z', mode: 'check', option: '-c', pack: false,
  status: 'WARNING (files were already corrupted), blocks can be reclaimed', exit_code: 2, fixed_files: null, corrupted_files: null,
};

describe('fsck record (PARENT/ddfs.fsck)', () => {
  it('renders one JSON line that parses back to the same record', () => {
    const text = renderFsckRecord(RECORD);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(2);
    expect(parseFsckRecord(text)).toEqual(RECORD);
    const repair: FsckRecord = { ...RECORD, tool: 'ddumbfs', mode: 'repair', option: '-n', pack: true, status: 'OK', exit_code: 0, fixed_files: 3, corrupted_files: 1 };
    expect(parseFsckRecord(renderFsckRecord(repair))).toEqual(repair);
  });

  it('is null for what is not a version-1 record', () => {
    for (const text of ['', 'garbage', '[]', 'null', renderFsckRecord(RECORD).slice(0, 40),
      JSON.stringify({ ...RECORD, version: 2 }), JSON.stringify({ ...RECORD, tool: 'cp' }), JSON.stringify({ ...RECORD, mode: 'format' }), JSON.stringify({ ...RECORD, time: 'yesterday' }),
      JSON.stringify({ ...RECORD, exit_code: '0' }), JSON.stringify({ ...RECORD, corrupted_files: 1.5 })]) {
      expect(parseFsckRecord(text), text).toBeNull();
    }
  });
});
