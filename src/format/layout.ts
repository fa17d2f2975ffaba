/**
 * The layout names of a volume (spec §2): what lives in the parent directory and in the UFS root, by name.
 *
 * Pure names, no I/O (format/ imports nothing from node:), so fsck, ufs, copy and alter can share them without
 * importing the volume. Names are ASCII, so a name's string and its bytes are the same.
 *
 * | name                        | where                | meaning                                                 |
 * |-----------------------------|----------------------|---------------------------------------------------------|
 * | `ddfs.cfg`                  | parent               | the volume's configuration (spec §3)                    |
 * | `ddfsroot`                  | parent               | the UFS root, always this name (cfg's root_directory is informational) |
 * | `.autofsck`                 | parent               | "not cleanly unmounted": the next mount checks the volume |
 * | `.rebuildfsck`              | parent               | "rebuild in progress": no mount, only -r/-R may run     |
 * | `ddfsusedblocks`            | parent               | checkpoint: a copy of the allocation bitmap (spec §5.8) |
 * | `ddfsusedblocks.0`          | parent               | the next checkpoint, renamed over `ddfsusedblocks`      |
 * | `.ddumbfs`                  | root                 | the special directory (spec §8.9); never walked as data |
 * | `ddfsmirror`                | root                 | reserved: the mirror's state directory; never walked as data |
 * | `.ddumbfs/corrupted.txt`    | root                 | files fixed or corrupted by the last repair (spec §10.6) |
 * | `.ddumbfs/ddumbfs.log`      | root                 | the log of every tool and the daemon                    |
 */

/** The configuration file in the parent (spec §3). */
export const CONFIG_FILE = 'ddfs.cfg';
/** Name of the UFS root inside the parent (hard-coded upstream, spec §2). */
export const ROOT_DIRECTORY = 'ddfsroot';
/** The special directory inside the root (spec §8.9). */
export const SPECIAL_DIRECTORY = '.ddumbfs';
/**
 * Reserved inside the root for the mirror's state (journal, replica cursor). Walks of the UFS tree skip it like
 * `.ddumbfs`, so reclaim and fsck never take its files for user files.
 */
export const MIRROR_DIRECTORY = 'ddfsmirror';
/** Marker files in the parent (spec §2). */
export const AUTOFSCK_MARKER = '.autofsck';
export const REBUILDFSCK_MARKER = '.rebuildfsck';
/** The checkpoint of the allocation bitmap in the parent, and the next one written before the rename (spec §5.8). */
export const CHECKPOINT_FILE = 'ddfsusedblocks';
export const CHECKPOINT_NEXT_FILE = 'ddfsusedblocks.0';
/** The list of fixed and corrupted files, in the special directory (spec §2, §10.6). */
export const CORRUPTED_LIST_FILE = 'corrupted.txt';
/** The log file, in the special directory (spec §2). */
export const LOG_FILE = 'ddumbfs.log';

/** Names directly below the root that are not user data: walks of the UFS tree skip them. */
export const ROOT_RESERVED_NAMES: readonly string[] = [SPECIAL_DIRECTORY, MIRROR_DIRECTORY];
