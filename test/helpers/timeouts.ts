/**
 * Time limits of the test suite, in one place. They are hang detectors, never measurements: a test waits for an
 * event (a mount served, a daemon exited, a command finished, a byte count reached) and a limit only ends a wait
 * that would otherwise never end. Every limit is generous on purpose: the suite must pass on a machine ten times
 * slower than a developer's (2 cores at load average 20, CI sharing its machine), so a limit is at least 20 times
 * what the wait takes on an idle machine. No test decides anything from elapsed time.
 */

/** A child command (mkddumbfs, fsckddumbfs, a daemon that must refuse, fusermount...): seconds idle, minutes slow. */
export const COMMAND_TIMEOUT_MS = 300_000;

/** A daemon until it serves its mount: includes the automatic repair a crashed volume gets at mount time. */
export const MOUNT_TIMEOUT_MS = 300_000;

/** `fusermount -u` / `umount -l` themselves. */
export const UNMOUNT_TIMEOUT_MS = 120_000;

/** A daemon from its unmount to its exit: it stores what is still buffered, checkpoints and closes the volume. */
export const EXIT_TIMEOUT_MS = 300_000;

/**
 * The default per-test and per-hook limit (vitest.config.ts). Tests that do more (a real tree copied through the
 * mount, many seeds, many kill points) set their own, scaled by their count.
 */
export const TEST_TIMEOUT_MS = 300_000;
