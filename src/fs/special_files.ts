/**
 * The special files of `/.ddumbfs/` (spec §8.9): opening one read-only rewrites its underlying UFS file with fresh
 * content, then reads pass through raw. The handle is opened with direct_io, so the kernel neither caches the old
 * content nor trusts the old size, and no attr_timeout sleep is needed (upstream sleeps ≈1.1 s instead).
 *
 * Permissions: the mount uses default_permissions, so the kernel decides who may open a special file from the mode
 * and owner of its UFS file. At every mount `prepareSpecialFiles` sets them (whatever mkddumbfs or an older version
 * left): `stats` and `stats.json` are readable by everyone; `stats0` (resets the counters), `reclaim` (runs a reclaim) and `test` are
 * the daemon user's only (root's, as the daemon runs as root); `corrupted.txt` (names of damaged files of every
 * user) and `ddumbfs.log` likewise. Content is written without following a symlink (io/no_follow.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError, messageOf } from '../errors.js';
import type { Logger } from '../util/log.js';
import type { Volume } from '../volume/volume.js';
import type { SpecialFileName } from './byte_path.js';
import { CORRUPTED_LIST_FILE, DAEMON_SPECIAL_FILES, LOG_FILE, STATS_JSON_FILE } from '../format/layout.js';
import { openNoFollow, writeFileNoFollow } from '../volume/special_paths.js';

/** Mode of each file of the special directory, set at every mount (file comment). */
export const SPECIAL_FILE_MODES: Readonly<Record<string, number>> = {
  stats: 0o644,
  [STATS_JSON_FILE]: 0o644,
  stats0: 0o600,
  reclaim: 0o600,
  test: 0o600,
  [CORRUPTED_LIST_FILE]: 0o600,
  [LOG_FILE]: 0o600,
};

/**
 * Give the files of the special directory `specialDir` their modes (SPECIAL_FILE_MODES) and, when the daemon runs
 * as root, root's ownership; a missing special file (stats, stats.json, stats0, reclaim, test) is created empty, a missing
 * corrupted.txt or log is left missing. Never follows a symlink (the volume was refused before if one was there).
 * @throws DdfsError ACCESS naming the file (ELOOP for a symlink planted since, EPERM...)
 */
export function prepareSpecialFiles(specialDir: string): void {
  const root = process.getuid?.() === 0;
  for (const [name, mode] of Object.entries(SPECIAL_FILE_MODES)) {
    const required = (DAEMON_SPECIAL_FILES as readonly string[]).includes(name);
    const p = path.join(specialDir, name);
    let fd: number;
    try {
      fd = openNoFollow(p, { access: 'read', create: required, mode });
    } catch (err) {
      if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new DdfsError('ACCESS', `${p}: cannot open special file: ${messageOf(err)}`, { path: p }, err);
    }
    try {
      if (root) fs.fchownSync(fd, 0, 0);
      fs.fchmodSync(fd, mode);
    } catch (err) {
      throw new DdfsError('ACCESS', `${p}: cannot set mode ${mode.toString(8)}: ${messageOf(err)}`, { path: p }, err);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/**
 * Regenerate the content of special file `name` at UFS path `ufsPath` (relative to the daemon's cwd).
 * `stats`: the counters; `stats.json`: the same facts as JSON (Volume.statsJson); `stats0`: the counters, then reset; `reclaim`: run the online reclaim and write its
 * report; `test` (the destructive 8 GiB benchmark of upstream) is not run: the file is left as it is.
 * @throws what the volume throws (e.g. DdfsError NOT_SUPPORTED for reclaim), Node errors of the write
 */
export async function regenerateSpecialFile(volume: Volume, name: SpecialFileName, ufsPath: Buffer, logger: Logger): Promise<void> {
  let text: string;
  switch (name) {
    case 'stats':
      text = volume.statsText(false);
      break;
    case 'stats.json':
      text = volume.statsJson();
      break;
    case 'stats0':
      text = volume.statsText(true);
      break;
    case 'reclaim':
      text = await volume.reclaimText();
      break;
    case 'test':
      logger.warn('/.ddumbfs/test: the write benchmark is not implemented; use testddumbfs');
      return;
  }
  writeFileNoFollow(ufsPath, text, { mode: SPECIAL_FILE_MODES[name] });
}
