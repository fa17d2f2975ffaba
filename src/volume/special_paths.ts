/**
 * The paths of a volume that its tools create or write themselves (issue 6 §3): markers, checkpoints, the special
 * directory `ddfsroot/.ddumbfs` and its files (special files, corrupted.txt, ddumbfs.log and their rolled copies).
 * None of them may be a symlink: a tool writing through one would truncate or write a file outside the volume.
 * Every tool calls `refuseSpecialSymlinks` before it writes anything (Volume.open, fsck, alterddumbfs); the writers
 * open these files with O_NOFOLLOW (io/no_follow.ts), which also covers a symlink planted after the check.
 */
import * as path from 'node:path';
import { CORRUPTED_BACKUP_COUNT, LOG_FILE_BACKUP_COUNT } from '../limits.js';
import { refuseSymlinks } from '../io/no_follow.js';

/**
 * The writers of these paths (io/no_follow.ts), for the layers above: `writeFileNoFollow` for markers and special
 * files, `openNoFollow` for corrupted.txt, `openLogFileNoFollow` for ddumbfs.log (`Logger.attachFile`).
 */
export { openLogFileNoFollow, openNoFollow, writeFileNoFollow } from '../io/no_follow.js';
import { CHECKPOINT_FILE_NAMES } from '../store/block_store.js';

/** Names of the UFS root, the special directory and the markers (spec §2, §8.9); re-exported by volume.ts. */
export const ROOT_DIRECTORY = 'ddfsroot';
export const SPECIAL_DIRECTORY = '.ddumbfs';
export const AUTOFSCK_MARKER = '.autofsck';
export const REBUILDFSCK_MARKER = '.rebuildfsck';
/** The files of the special directory that the daemon regenerates on open (spec §8.9). */
export const SPECIAL_FILES = ['stats', 'stats0', 'reclaim', 'test'] as const;
/** The repair's list of damaged files, in the special directory (spec §10.3). */
export const CORRUPTED_LIST_NAME = 'corrupted.txt';
/** The daemon's log, in the special directory (spec §2, §8.9). */
export const LOG_FILE_NAME = 'ddumbfs.log';

/** Every path of the volume in `parentDir` that must not be a symlink, the special directory among them. */
export function specialPaths(parentDir: string): string[] {
  const special = path.join(parentDir, ROOT_DIRECTORY, SPECIAL_DIRECTORY);
  const rolled = (name: string, count: number): string[] => [name, ...Array.from({ length: count }, (_, i) => `${name}.${i + 1}`)];
  return [
    ...[AUTOFSCK_MARKER, REBUILDFSCK_MARKER, ...CHECKPOINT_FILE_NAMES].map((n) => path.join(parentDir, n)),
    special,
    ...[...SPECIAL_FILES, ...rolled(CORRUPTED_LIST_NAME, CORRUPTED_BACKUP_COUNT), ...rolled(LOG_FILE_NAME, LOG_FILE_BACKUP_COUNT)]
      .map((n) => path.join(special, n)),
  ];
}

/**
 * Refuse the volume in `parentDir` when one of its special paths is a symlink; nothing is written.
 * @throws DdfsError SYMLINK, one line naming the path
 */
export function refuseSpecialSymlinks(parentDir: string): void {
  refuseSymlinks(specialPaths(parentDir));
}
