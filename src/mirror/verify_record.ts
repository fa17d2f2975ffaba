/**
 * The result of the last verify of a volume, `<parent>/ddfsmirror/verify` (mirroring spec §4.2 "last verify result",
 * §4.16 status): JSON version 1 with `time` (ISO 8601), `differences` (count of verify lines), `deep`, `mtime` (the
 * options of that verify) and `peer` (the other volume's resolved parent directory).
 *
 * Invariants:
 * - Written only for a volume that is NOT mounted (a running daemon owns its volume; a verify reading a mounted
 *   volume is not exact anyway) and that already has `ddfsmirror/` (a volume that was never mirrored gets nothing:
 *   verify of two plain volumes changes nothing at all). Nothing else of the volume is written by verify.
 * - Rewritten atomically (io/mirror_fs.ts writeAtomic), never through a symlink; a damaged file reads as null.
 */
import * as path from 'node:path';
import { lstatOrNull, readNoFollow, writeAtomic } from '../io/mirror_fs.js';
import { pathBytes } from '../util/path_text.js';
import { mirrorDirectory } from './state.js';

/** The name of the file in `ddfsmirror/`. */
export const VERIFY_FILE = 'verify';

/** One verify result. */
export interface VerifyResult {
  time: string;
  differences: number;
  deep: boolean;
  mtime: boolean;
  peer: string;
}

/**
 * Record `result` as the last verify of the volume at `parentDir`, when it has `ddfsmirror/` (see the invariants;
 * the caller checks that it is not mounted).
 * @returns whether it was written
 * @throws Node errors of the write
 */
export function recordVerify(parentDir: string, result: VerifyResult): boolean {
  const dir = mirrorDirectory(parentDir);
  if (lstatOrNull(pathBytes(dir))?.kind !== 'dir') return false;
  writeAtomic(dir, VERIFY_FILE, Buffer.from(`${JSON.stringify({ version: 1, ...result })}\n`, 'utf8'));
  return true;
}

/**
 * The last verify recorded for `parentDir`, or null (none, or a damaged file: status only shows it).
 * @throws DdfsError INVALID when the file is a symlink
 */
export function readLastVerify(parentDir: string): VerifyResult | null {
  const dir = mirrorDirectory(parentDir);
  if (lstatOrNull(pathBytes(dir))?.kind !== 'dir') return null;
  const bytes = readNoFollow(path.join(dir, VERIFY_FILE));
  if (bytes === null) return null;
  try {
    const d = JSON.parse(bytes.toString('utf8')) as Partial<VerifyResult> & { version?: number };
    if (d.version !== 1 || typeof d.time !== 'string' || !Number.isInteger(d.differences) || typeof d.deep !== 'boolean' || typeof d.peer !== 'string') return null;
    return { time: d.time, differences: d.differences!, deep: d.deep, mtime: d.mtime === true, peer: d.peer };
  } catch {
    return null;
  }
}
