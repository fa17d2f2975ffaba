/**
 * Mount paths <-> UFS paths (spec §8.3: metadata passes through to `ddfsroot`).
 *
 * FUSE hands over paths as byte strings (one char per byte, see fuse_binding.ts). The daemon's cwd is `ddfsroot`,
 * so a mount path "/a/b" becomes the relative UFS path "a/b" ("/" becomes "."): no absolute prefix, so a deep tree
 * never hits ENAMETOOLONG earlier than on the UFS itself. UFS paths are Buffers, so names that are not UTF-8 reach
 * the UFS unchanged.
 */
import type { BytePath } from './fuse_binding.js';

/** The special directory, as a mount path prefix (spec §8.9). */
export const SPECIAL_PREFIX = '/.ddumbfs/';
/** Names of the special files that regenerate on open (spec §8.9, and stats.json, the JSON twin of stats). */
export const SPECIAL_FILE_NAMES = ['stats', 'stats.json', 'stats0', 'reclaim', 'test'] as const;
export type SpecialFileName = (typeof SPECIAL_FILE_NAMES)[number];

/** The relative UFS path (bytes) of a mount path. */
export function ufsPathOf(path: BytePath): Buffer {
  const rel = path.replace(/^\/+/, '');
  return Buffer.from(rel === '' ? '.' : rel, 'latin1');
}

/** A byte string of raw bytes (names read from the UFS). */
export function byteStringOf(bytes: Buffer): BytePath {
  return bytes.toString('latin1');
}

/** A mount path for log lines (bytes decoded as UTF-8, invalid bytes replaced). */
export function displayPath(path: BytePath | null): string {
  if (path === null) return '(unlinked)';
  return Buffer.from(path, 'latin1').toString('utf8');
}

/** Whether a mount path lies inside `/.ddumbfs/` (the directory itself excluded): raw, not deduplicated. */
export function isInSpecialDir(path: BytePath): boolean {
  return path.startsWith(SPECIAL_PREFIX) && path.length > SPECIAL_PREFIX.length;
}

/** The special file a mount path names, if any (`/.ddumbfs/stats` → 'stats'). */
export function specialFileOf(path: BytePath): SpecialFileName | null {
  if (!isInSpecialDir(path)) return null;
  const name = path.slice(SPECIAL_PREFIX.length);
  return (SPECIAL_FILE_NAMES as readonly string[]).includes(name) ? (name as SpecialFileName) : null;
}
