/**
 * The automatic check at mount (spec §8.2 step 4): runs when `.autofsck` was found in the parent (the volume was
 * not cleanly unmounted) or when `-o check` asks for it, before the file system is served.
 *
 * Hook for the fsck work (issue 3): it is to run the `fsckddumbfs -n` repair algorithm (spec §10.3, non-verbose)
 * here and throw when the volume cannot be repaired; the daemon then prints "ERROR filesystem corrupted. Run fsck !",
 * exits 1 and leaves `.autofsck` in place.
 */
import type { Volume } from '../volume/volume.js';

/**
 * Check (and repair) `volume` before it is mounted.
 * @param crashed true when `.autofsck` existed at mount (else the check was requested with `-o check`)
 * @returns true when the volume is known to be consistent now (a clean unmount may then remove `.autofsck`);
 *   false when it was not checked, so `.autofsck` stays after unmount and the next mount checks again
 * @throws when the volume is corrupted beyond automatic repair (the mount is then refused)
 */
export async function runStartupCheck(volume: Volume, crashed: boolean): Promise<boolean> {
  const log = volume.logger;
  log.info(`check filesystem ${volume.parentDir}`);
  if (crashed) log.warn('volume was not cleanly unmounted; automatic repair not implemented yet');
  else log.warn('check requested (-o check); automatic repair not implemented yet');
  return !crashed;
}
