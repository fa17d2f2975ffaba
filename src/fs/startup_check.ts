/**
 * The automatic check at mount (spec §8.2 step 4): runs when `.autofsck` was found in the parent (the volume was
 * not cleanly unmounted) or when `-o check` asks for it, on the closed volume, before the file system is served.
 *
 * The repair itself is fsckddumbfs's `-n` algorithm (spec §10.3). `fs/` and `fsck/` are siblings that never import
 * each other, so the command line (cli/ddumbfs.ts) hands the repair in as a `StartupRepair`.
 */
import type { Logger } from '../util/log.js';

/**
 * Repair the closed volume in `parentDir`; `crashed` re-hashes blocks added since the last checkpoint.
 * Resolves when the volume is consistent (corrupted files may remain, listed in corrupted.txt); throws when it
 * cannot be repaired.
 */
export type StartupRepair = (parentDir: string, crashed: boolean, logger: Logger) => Promise<void>;

/**
 * Check (and repair) the volume in `parentDir` before it is mounted.
 * @param crashed true when `.autofsck` existed at mount (else the check was requested with `-o check`)
 * @returns true when the volume is known to be consistent now (a clean unmount may then remove `.autofsck`);
 *   false when no repair was available, so `.autofsck` stays after unmount and the next mount checks again
 * @throws when the volume is corrupted beyond automatic repair (the mount is then refused)
 */
export async function runStartupCheck(parentDir: string, crashed: boolean, log: Logger, repair?: StartupRepair): Promise<boolean> {
  log.info(`check filesystem ${parentDir}${crashed ? ' (not cleanly unmounted)' : ''}`);
  if (!repair) {
    log.warn('no repair available: the volume is served unchecked and stays marked for a check');
    return false;
  }
  await repair(parentDir, crashed, log);
  log.info(`filesystem ${parentDir} checked`);
  return true;
}
