/**
 * What a read-only check (spec §10.5) reports: typed findings, the summary counters of the upstream table, the
 * verdict and its exit code, and the renderers of the upstream text (`%-25s: %10lld` + status word).
 *
 * Verdict rule (spec §10.5): ERROR when any structural counter is non-zero (index errors, duplicate addresses,
 * block errors, file errors, wrong recent hashes, file addresses missing from the index or free in the bitmap, or a
 * bitmap that disagrees with the index); otherwise WARNING when files hold lost blocks (address 1, already known
 * and listed in corrupted.txt by an earlier repair); otherwise OK. Exit codes: 0 OK, 2 WARNING, 1 ERROR.
 */

import type { UsageCounts } from './bitset.js';

export type Severity = 'ERR' | 'WAR';

/** Stable kinds of findings; never renamed (tests and scripts match on them). */
export type FindingKind =
  // index scan (spec §10.5 step 1)
  | 'INDEX_EMPTY_NODE_HASH'
  | 'INDEX_LOST_ADDRESS'
  | 'INDEX_ADDRESS_OUT_OF_RANGE'
  | 'INDEX_BEFORE_IDEAL'
  | 'INDEX_GAP'
  | 'INDEX_EQUAL_HASH'
  | 'INDEX_ORDER'
  | 'INDEX_ZERO_HASH'
  | 'INDEX_DUPLICATE_ADDRESS'
  // -C block re-hash (step 2)
  | 'BLOCK_UNREADABLE'
  | 'BLOCK_ZERO'
  | 'BLOCK_HASH_MISMATCH'
  // file walk (step 3)
  | 'FILE_UNREADABLE'
  | 'FILE_BAD_HEADER'
  | 'FILE_PARTIAL_NODE'
  | 'FILE_SIZE_MISMATCH'
  | 'FILE_ZERO_WRONG_HASH'
  | 'FILE_LOST_BLOCK'
  | 'FILE_LOST_BUT_INDEXED'
  | 'FILE_NOT_IN_INDEX'
  | 'FILE_OTHER_ADDRESS'
  | 'FILE_ZERO_HASH_ADDRESS'
  // crash-flag re-hash (step 4)
  | 'CHECKPOINT_MISSING'
  | 'RECENT_UNREADABLE'
  | 'RECENT_WRONG_HASH'
  // used block past the end of the block file (step 4b)
  | 'BLOCK_PAST_END'
  // bitmap vs index
  | 'BITMAP_FREE_IN_INDEX'
  | 'BITMAP_NOT_IN_INDEX';

export interface Finding {
  kind: FindingKind;
  severity: Severity;
  /** The line as printed (upstream wording where upstream has one). */
  message: string;
  /** Index node position, for index findings. */
  node?: number;
  /** Block address concerned. */
  address?: number;
  /** The address the index gives instead (FILE_OTHER_ADDRESS: the other block; FILE_NOT_IN_INDEX: 1). */
  expectedAddress?: number;
  /** Absolute UFS path as text (path_text.ts pathText: bytes of invalid UTF-8 escaped as \xNN), for file findings. */
  path?: string;
  /** Node number inside the file, for file findings. */
  fileNode?: number;
}

/** At most this many findings are kept in a report (counters keep counting); a wrecked index can have millions. */
export const FINDINGS_STORED_MAX = 10_000;

/** The upstream summary table (spec §10.5 step 5), plus two bitmap/index counters upstream does not print. */
export interface CheckSummary extends UsageCounts {
  usedBlocks: number;
  freeBlocks: number;
  /** Highest allocated address ("Last used blocks"). */
  lastUsedBlock: number;
  totalBlocks: number;
  /** 10 characters, one per tenth of the address range. */
  usageBar: string;
  indexErrors: number;
  /** Distinct addresses in the index, including 0 and 1. */
  indexBlocks: number;
  indexBlocksDup: number;
  blockErrors: number;
  files: number;
  filesErrors: number;
  /** Distinct addresses referenced by files, including 0 and 1. */
  filesBlocks: number;
  filesLostBlocks: number;
  testedHashes: number;
  wrongHashes: number;
}

export type CheckStatus = 'OK' | 'WARNING' | 'ERROR';

/** Exit codes of fsckddumbfs (ddumbfs's own, spec §10.5). */
export const FSCK_EXIT = { OK: 0, ERROR: 1, WARNING: 2 } as const;
export type FsckExitCode = (typeof FSCK_EXIT)[keyof typeof FSCK_EXIT];

export function emptySummary(): CheckSummary {
  return {
    usedBlocks: 0, freeBlocks: 0, lastUsedBlock: 0, totalBlocks: 0, usageBar: '',
    indexErrors: 0, indexBlocks: 0, indexBlocksDup: 0, blockErrors: 0,
    files: 0, filesErrors: 0, filesBlocks: 0, filesLostBlocks: 0,
    testedHashes: 0, wrongHashes: 0,
    inIndexNotInFiles: 0, inFilesNotInIndex: 0, inFilesAndInIndex: 0, inBlocksNotInFiles: 0, inFilesNotInBlocks: 0,
    inIndexNotInBlocks: 0, inBlocksNotInIndex: 0,
  };
}

/** The verdict of a summary (rule in the file comment). */
export function statusOf(s: CheckSummary): CheckStatus {
  const errors = s.indexErrors + s.indexBlocksDup + s.blockErrors + s.filesErrors + s.wrongHashes
    + s.inFilesNotInIndex + s.inFilesNotInBlocks + s.inIndexNotInBlocks + s.inBlocksNotInIndex;
  if (errors > 0) return 'ERROR';
  if (s.filesLostBlocks > 0) return 'WARNING';
  return 'OK';
}

export function exitCodeOf(status: CheckStatus): FsckExitCode {
  return status === 'OK' ? FSCK_EXIT.OK : status === 'WARNING' ? FSCK_EXIT.WARNING : FSCK_EXIT.ERROR;
}

/** C `%10lld`. */
function num(n: number): string {
  return String(n).padStart(10);
}

function label(l: string): string {
  return `${l.padEnd(25)}: `;
}

function word(n: number, nonZero: string, zero = 'OK'): string {
  return n === 0 ? ` ${zero}` : ` ${nonZero}`;
}

/** The summary table exactly as upstream prints it (spec §10.5 step 5), without the trailing verdict line. */
export function renderSummary(s: CheckSummary, status: CheckStatus): string[] {
  const lines = [
    '== Summary   ',
    `${label('Used blocks')}${num(s.usedBlocks)}`,
    `${label('Free blocks')}${num(s.freeBlocks)}`,
    `${label('Last used blocks')}${num(s.lastUsedBlock)}`,
    `${label('Total blocks')}${num(s.totalBlocks)}`,
    `${label('Blocks usage')}${s.usageBar}`,
    `${label('Index errors')}${num(s.indexErrors)}${word(s.indexErrors, 'ERR')}`,
    `${label('Index blocks')}${num(s.indexBlocks)}`,
    `${label('Index blocks dup')}${num(s.indexBlocksDup)}${word(s.indexBlocksDup, 'ERR')}`,
    `${label('Block errors')}${num(s.blockErrors)}${word(s.blockErrors, 'ERR')}`,
    `${label('Files')}${num(s.files)}`,
    `${label('Files errors')}${num(s.filesErrors)}${word(s.filesErrors, 'ERR')}`,
    `${label('Files blocks')}${num(s.filesBlocks)}`,
    `${label('Files lost blocks')}${num(s.filesLostBlocks)}${word(s.filesLostBlocks, 'WAR')}`,
    `${label('Tested hashes')}${num(s.testedHashes)}`,
    `${label('Wrong hashes')}${num(s.wrongHashes)}${word(s.wrongHashes, 'ERR')}`,
    `${label('in index & not in files')}${num(s.inIndexNotInFiles)}${word(s.inIndexNotInFiles, 'OK can be reclaimed')}`,
    `${label('in files & not in index')}${num(s.inFilesNotInIndex)}${word(s.inFilesNotInIndex, 'ERR corrupted index')}`,
    `${label('in files & in index')}${num(s.inFilesAndInIndex)}`,
    `${label('in blocks & not in files')}${num(s.inBlocksNotInFiles)}${word(s.inBlocksNotInFiles, 'OK can be reclaimed')}`,
    // upstream's word here has no ERR prefix (the verdict is still ERROR)
    `${label('in files & not in blocks')}${num(s.inFilesNotInBlocks)}${word(s.inFilesNotInBlocks, 'corrupted files')}`,
  ];
  // Not in upstream's table: printed only when they matter, so clean output stays byte-identical to upstream's.
  if (s.inIndexNotInBlocks > 0) lines.push(`${label('in index & not in blocks')}${num(s.inIndexNotInBlocks)} ERR corrupted bitmap`);
  if (s.inBlocksNotInIndex > 0) lines.push(`${label('in blocks & not in index')}${num(s.inBlocksNotInIndex)} ERR leaked blocks`);
  lines.push(statusLine(s, status));
  return lines;
}

/**
 * The last line of the summary table, worded as upstream's `ddfs_check` (spec §10.5 step 5), which scripts match:
 * `OK ` (the space is upstream's), `OK blocks can be reclaimed`, `WARNING (files were already corrupted)` with
 * `, blocks can be reclaimed` appended when it applies, or `ERROR`. Blocks can be reclaimed when the index or the
 * bitmap holds addresses no file references ("in index & not in files" or "in blocks & not in files" non-zero).
 */
export function statusLine(s: CheckSummary, status: CheckStatus): string {
  const reclaimable = s.inIndexNotInFiles > 0 || s.inBlocksNotInFiles > 0;
  const text = status === 'OK' ? `OK ${reclaimable ? 'blocks can be reclaimed' : ''}`
    : status === 'WARNING' ? `WARNING (files were already corrupted)${reclaimable ? ', blocks can be reclaimed' : ''}`
      : 'ERROR';
  return `${label('Filesystem status')}${text}`;
}

/**
 * The "Blocks usage" bar: one character per tenth of [0, block_count): '.' none used, '*' all used, else the digit
 * floor(10·used/size).
 * @param usedIn returns the number of allocated addresses in [from, to)
 */
export function usageBar(blockCount: number, usedIn: (from: number, to: number) => number): string {
  let bar = '';
  for (let k = 0; k < 10; k++) {
    const from = Math.floor((k * blockCount) / 10);
    const to = Math.floor(((k + 1) * blockCount) / 10);
    const size = to - from;
    const used = size > 0 ? usedIn(from, to) : 0;
    if (used === 0) bar += '.';
    else if (used >= size) bar += '*';
    else bar += String(Math.floor((10 * used) / size));
  }
  return bar;
}

/** Per-file status of a repair (spec §10.6). */
export interface FileRepairStatus {
  /** Absolute UFS path as text (pathText); corrupted.txt itself holds the raw bytes. */
  path: string;
  /** F: modified and now good. */
  fixed: boolean;
  /** C: a node is lost (address 1) or the file could not be rewritten. */
  corrupted: boolean;
  /** S/s: size mismatch; 'fixed' = s, 'failed' = S. */
  size: 'ok' | 'fixed' | 'failed';
  /** L/l: partial trailing node; 'fixed' = l, 'failed' = L. */
  length: 'ok' | 'fixed' | 'failed';
  /** H: invalid header, the file is ignored. */
  badHeader: boolean;
}

/** The 4-character status column of corrupted.txt and the WAR log lines (spec §10.6). */
export function fileFlags(f: FileRepairStatus): string {
  if (f.badHeader) return ' H  ';
  const s = f.size === 'fixed' ? 's' : f.size === 'failed' ? 'S' : ' ';
  const l = f.length === 'fixed' ? 'l' : f.length === 'failed' ? 'L' : ' ';
  return `${f.fixed ? 'F' : ' '}${f.corrupted ? 'C' : ' '}${s}${l}`;
}

/** "Bad" files are counted as corrupted: C, an unfixed S or L, or an invalid header (spec §10.6). */
export function isBadFile(f: FileRepairStatus): boolean {
  return f.badHeader || f.corrupted || f.size === 'failed' || f.length === 'failed';
}
