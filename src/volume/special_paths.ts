/**
 * The paths of a volume that its tools create or write themselves (issue 6 §3): markers, checkpoints, the special
 * directory `ddfsroot/.ddumbfs` and its files (special files, corrupted.txt, ddumbfs.log and their rolled copies).
 * None of them may be a symlink: a tool writing through one would truncate or write a file outside the volume.
 * Every tool calls `refuseSpecialSymlinks` before it writes anything (Volume.open, fsck, alterddumbfs, the mount);
 * the writers open these files with O_NOFOLLOW (io/no_follow.ts), which also covers a symlink planted after the
 * check.
 */
import * as path from 'node:path';
import { CORRUPTED_BACKUP_COUNT, LOG_FILE_BACKUP_COUNT } from '../limits.js';
import {
  AUTOFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, CHECKPOINT_TEMPORARY_FILE, CORRUPTED_LIST_FILE, LOG_FILE,
  REBUILDFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY, DAEMON_SPECIAL_FILES,
} from '../format/layout.js';
import { refuseSymlinks } from '../io/no_follow.js';

/**
 * The writers of these paths (io/no_follow.ts), for the layers above: `writeFileNoFollow` for markers and special
 * files, `openNoFollow` for corrupted.txt, `openLogFileNoFollow` for ddumbfs.log (`Logger.attachFile`).
 */
export { openLogFileNoFollow, openNoFollow, writeFileNoFollow } from '../io/no_follow.js';

/** Every path of the volume in `parentDir` that must not be a symlink, the special directory among them. */
export function specialPaths(parentDir: string): string[] {
  const special = path.join(parentDir, ROOT_DIRECTORY, SPECIAL_DIRECTORY);
  const rolled = (name: string, count: number): string[] => [name, ...Array.from({ length: count }, (_, i) => `${name}.${i + 1}`)];
  return [
    ...[AUTOFSCK_MARKER, REBUILDFSCK_MARKER, CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, CHECKPOINT_TEMPORARY_FILE].map((n) => path.join(parentDir, n)),
    special,
    ...[...DAEMON_SPECIAL_FILES, ...rolled(CORRUPTED_LIST_FILE, CORRUPTED_BACKUP_COUNT), ...rolled(LOG_FILE, LOG_FILE_BACKUP_COUNT)]
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
