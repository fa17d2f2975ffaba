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
 * | `ddfsusedblocks.0`          | parent               | ddumbfs 1.1's next checkpoint; loaded if the other is missing |
 * | `ddfsusedblocks.tmp`        | parent               | our next checkpoint, renamed over `ddfsusedblocks`      |
 * | `ddfs.lock`                 | parent               | the volume lock's record: who holds the volume (volume/lock.ts); ignored by ddumbfs 1.1 |
 * | `.ddumbfs`                  | root                 | the special directory (spec §8.9); never walked as data |
 * | `ddfsmirror`                | root                 | reserved: the mirror's state directory; never walked as data |
 * | `ddfsmirror/control`        | parent               | the daemon's control socket: mirror passes of a mounted volume |
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
/**
 * The UNIX socket a mounted volume's daemon serves mirror passes on, in the mirror's state directory (issue 7 item
 * 0): mode 0600, removed at unmount.
 */
export const MIRROR_CONTROL_SOCKET = 'control';
/** Marker files in the parent (spec §2). */
export const AUTOFSCK_MARKER = '.autofsck';
export const REBUILDFSCK_MARKER = '.rebuildfsck';
/**
 * The checkpoint of the allocation bitmap in the parent, and the next one as ddumbfs 1.1 writes it before the
 * rename (spec §5.8): loaded when `ddfsusedblocks` is missing, removed by our next checkpoint.
 */
export const CHECKPOINT_FILE = 'ddfsusedblocks';
export const CHECKPOINT_NEXT_FILE = 'ddfsusedblocks.0';
/** Our next checkpoint, written and synced before it is renamed over `ddfsusedblocks`; never loaded. */
export const CHECKPOINT_TEMPORARY_FILE = 'ddfsusedblocks.tmp';
/** The files of the special directory that the daemon regenerates on open (spec §8.9). */
export const SPECIAL_FILES = ['stats', 'stats0', 'reclaim', 'test'] as const;
/** The JSON twin of `stats` (issue 10): created by the daemon at mount (not by mkddumbfs), regenerated on open. */
export const STATS_JSON_FILE = 'stats.json';
/** Every file of the special directory that the daemon regenerates on open: 1.1's four and `stats.json`. */
export const DAEMON_SPECIAL_FILES = [...SPECIAL_FILES, STATS_JSON_FILE] as const;
/**
 * The volume lock file in the parent (volume/lock.ts, format/lock_record.ts): present while a daemon or a writing
 * tool holds the volume, naming it. ddumbfs 1.1's tools neither create nor read it.
 */
export const LOCK_FILE = 'ddfs.lock';
/**
 * The record of the last fsckddumbfs run in the parent (format/fsck_record.ts): written when a check, repair or
 * rebuild finished, read by statddumbfs. ddumbfs 1.1's tools neither create nor read it.
 */
export const FSCK_RECORD_FILE = 'ddfs.fsck';
/** The list of fixed and corrupted files, in the special directory (spec §2, §10.6). */
export const CORRUPTED_LIST_FILE = 'corrupted.txt';
/** The log file, in the special directory (spec §2). */
export const LOG_FILE = 'ddumbfs.log';

/**
 * Extended-attribute namespaces kept for the product itself (a future ddumbfs attribute on UFS files): never
 * listed, read or written through the mount, never shipped by a mirror (an attribute the daemon relies on cannot
 * be forged from the mount).
 */
export const RESERVED_XATTR_PREFIXES: readonly Buffer[] = [Buffer.from('user.ddumbfs.'), Buffer.from('trusted.ddumbfs.')];

/** Whether attribute `name` lies in a namespace of RESERVED_XATTR_PREFIXES. */
export function isReservedXattr(name: Buffer): boolean {
  return RESERVED_XATTR_PREFIXES.some((prefix) => name.length >= prefix.length && name.subarray(0, prefix.length).equals(prefix));
}

/** Names directly below the root that are not user data: walks of the UFS tree skip them. */
export const ROOT_RESERVED_NAMES: readonly string[] = [SPECIAL_DIRECTORY, MIRROR_DIRECTORY];

/**
 * Modes of what mkddumbfs creates, as ddumbfs 1.1 does (mkddumbfs.c), less the umask: the block and index files are
 * private to their owner (they hold every backed-up byte), and so are the root and the special directory; the
 * special files and ddfs.cfg are created 0666 (upstream: open(…, 0666) and fopen).
 */
export const VOLUME_FILE_MODE = 0o600;
export const VOLUME_DIRECTORY_MODE = 0o700;
export const SPECIAL_FILE_MODE = 0o666;
export const CONFIG_FILE_MODE = 0o666;
