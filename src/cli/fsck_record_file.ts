/**
 * `PARENT/ddfs.fsck`, the record of the last fsckddumbfs run (format/fsck_record.ts): written by fsckddumbfs,
 * read by statddumbfs. Written tmp + rename without following a symlink (io/no_follow.ts replaceFileNoFollow).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FSCK_RECORD_FILE } from '../format/layout.js';
import { parseFsckRecord, renderFsckRecord, type FsckRecord } from '../format/fsck_record.js';
import { replaceFileNoFollow } from '../io/no_follow.js';

/** The text after `Filesystem status   : ` of a report line, or null for another line (fsck/findings.ts statusLine). */
export function statusOfReportLine(line: string | Buffer): string | null {
  const text = typeof line === 'string' ? line : line.toString('latin1');
  const m = /^Filesystem status\s*: (.*)$/.exec(text);
  return m ? m[1]!.trimEnd() : null;
}

/**
 * Replace the record of the volume in `parentDir` (mode 0644: the result is no secret).
 * @throws Node system errors (EROFS on a read-only parent, ENOSPC...)
 */
export function writeFsckRecord(parentDir: string, record: FsckRecord): void {
  replaceFileNoFollow(path.join(parentDir, FSCK_RECORD_FILE), renderFsckRecord(record), 0o644);
}

/**
 * The record of the volume in `parentDir`.
 * @returns null when there is none (no fsck recorded yet), it is a symlink, or it does not parse
 */
export function readFsckRecord(parentDir: string): FsckRecord | null {
  const p = path.join(parentDir, FSCK_RECORD_FILE);
  try {
    if (!fs.lstatSync(p).isFile()) return null;
    return parseFsckRecord(fs.readFileSync(p, 'utf8'));
  } catch {
    return null;
  }
}
