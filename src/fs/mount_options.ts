/**
 * The `-o` options of ddumbfs (spec §8.1): ddumbfs's own keys are taken out, everything else goes to libfuse as
 * given ("unknown -o options are passed to libfuse raw").
 */
import { DdfsError } from '../errors.js';
import { FUSE_CACHE_TIMEOUT_S, RECLAIM_PERCENT_DEFAULT } from '../limits.js';

/** Default writer-pool setting: −100 = one writer per CPU (spec §8.1). */
export const POOL_DEFAULT = -100;

/**
 * Options that `fuse_default` prepends (spec §8.1); user options come after them and win.
 *
 * Deviation from spec §8.1 (upstream: negative_timeout=0,entry_timeout=0): the kernel keeps names and missing names
 * for FUSE_CACHE_TIMEOUT_S. With zero timeouts every path walk was a lookup round trip to the daemon per component
 * (≈100 µs each through fuse-native), a large part of the ~9 getattr per small file copied (issue 9). It is safe
 * because the daemon is the only writer of the UFS tree while mounted and every change of a name goes through the
 * mount, which updates the kernel's names. The kernel keeps no attributes (attr_timeout=0, see below): the daemon's
 * FUSE threads do, and drop them at every change through the mount (-o attr_cache, fuse_binding.ts). A mirror slave,
 * whose tree its passes change behind the mount, keeps zero timeouts (FUSE_NO_CACHE_OPTIONS).
 */
export const FUSE_DEFAULT_OPTIONS: readonly string[] = [
  'use_ino',
  'readdir_ino',
  'default_permissions',
  'allow_other',
  'big_writes',
  'max_read=131072',
  'max_write=131072',
  // Sequential reads of 128 KiB requests doubled (about 430 → 870 MB/s after drop_caches here) with 1 MiB of
  // kernel read-ahead instead of libfuse 2's 128 KiB default.
  'max_readahead=1048576',
  `negative_timeout=${FUSE_CACHE_TIMEOUT_S}`,
  `entry_timeout=${FUSE_CACHE_TIMEOUT_S}`,
  // attributes are not cached: libfuse 2's path API gives each name of a hard-linked file its own kernel inode, so
  // a write through one name would leave the other showing its old size (and reads cut at it) until the timeout
  'attr_timeout=0',
];

/**
 * Zero timeouts (upstream's defaults): the kernel asks the daemon again for every lookup and stat. Added after
 * FUSE_DEFAULT_OPTIONS (before the user's options) where the tree changes behind the mount: a mirror slave.
 */
export const FUSE_NO_CACHE_OPTIONS: readonly string[] = ['negative_timeout=0', 'entry_timeout=0', 'attr_timeout=0'];

/**
 * The libfuse -o list of a mount, in order: fuse_default's options (when on), zero cache timeouts for a mirror slave
 * (its passes change the tree behind the mount), the user's options (which win over both), then `ro` when served
 * read-only, the subtype and the fsname (the parent directory, escaped).
 */
export function libfuseOptions(
  options: Pick<DdumbfsMountOptions, 'fuseDefault' | 'fuseOptions'>,
  served: { mirrorSlave: boolean; servedReadOnly: boolean; parentDir: string },
): string[] {
  return [
    ...(options.fuseDefault ? FUSE_DEFAULT_OPTIONS : []),
    ...(served.mirrorSlave ? FUSE_NO_CACHE_OPTIONS : []),
    ...options.fuseOptions,
    ...(served.servedReadOnly ? ['ro'] : []),
    'subtype=ddumbfs',
    `fsname=${escapeOptionValue(served.parentDir)}`,
  ];
}

export interface DdumbfsMountOptions {
  /** `parent=` as typed (any path inside the parent works, spec §2); null when absent. */
  parent: string | null;
  /** Writer pool (spec §8.1): 0 = synchronous, N > 0 threads, N < 0 = −N % of the CPUs. */
  pool: number;
  lockIndex: boolean;
  /** O_DIRECT for the block file: null = auto (on iff it is a block device). */
  directIo: boolean | null;
  reclaimPercent: number;
  check: boolean;
  /**
   * `ro`: serve the volume read-only (block file, index and UFS opened O_RDONLY, every write EROFS, no .autofsck,
   * checkpoint or reclaim); the mount is flagged `ro` for the kernel too. `rw` (the default) undoes it.
   */
  readOnly: boolean;
  fuseDefault: boolean;
  /** `syslog` (default) / `nosyslog`: the daemon's log lines go to syslog too (io/syslog.ts), or only to its log file. */
  syslog: boolean;
  /**
   * `attr_cache` (default) / `noattr_cache`: the daemon's FUSE threads answer a repeated getattr of an unchanged path
   * from their own cache (fuse_binding.ts setAttrCache). Never on for a mirror slave, whose tree changes behind it.
   */
  attrCache: boolean;
  /** Options for libfuse, in the order given. */
  fuseOptions: string[];
}

/**
 * Options of mount(8) and fstab(5) that mean nothing to a FUSE daemon: mount(8) and Debian's mount.fuse pass some of
 * them on (`nofail`, `defaults` from a hand call) and libfuse would refuse them as unknown ("fuse: unknown option").
 * They are accepted and dropped, as are every `x-*`/`X-*` (userspace options: x-systemd.automount, X-mount.mkdir) and
 * `comment=`.
 */
export const MOUNT_ONLY_OPTIONS: ReadonlySet<string> = new Set([
  'defaults', '_netdev', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', 'nofail',
]);

/** Whether `-o` item `key` (the part before `=`) is a mount(8)-only option that ddumbfs drops. */
export function isMountOnlyOption(key: string): boolean {
  return MOUNT_ONLY_OPTIONS.has(key) || key.startsWith('x-') || key.startsWith('X-') || key === 'comment';
}

/** Split one -o argument at commas; a backslash escapes the next character (libfuse's own rule). */
export function splitOptionList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) {
      cur += c + text[i + 1];
      i++;
    } else if (c === ',') {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

/** Escape a value for a libfuse option list (commas and backslashes). */
export function escapeOptionValue(value: string): string {
  return value.replace(/[\\,]/g, (c) => `\\${c}`);
}

function unescapeOptionValue(value: string): string {
  return value.replace(/\\(.)/g, '$1');
}

function integerOf(key: string, value: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(value)) throw new DdfsError('USAGE', `invalid -o ${key}=${value}: not an integer`);
  const n = Number(value);
  if (n < min || n > max) throw new DdfsError('USAGE', `invalid -o ${key}=${value}: must be between ${min} and ${max}`);
  return n;
}

/**
 * Parse the -o arguments (each a comma-separated list).
 * @throws DdfsError USAGE for a bad value of a ddumbfs option
 */
export function parseMountOptions(args: readonly string[]): DdumbfsMountOptions {
  const o: DdumbfsMountOptions = {
    parent: null,
    pool: POOL_DEFAULT,
    lockIndex: true,
    directIo: null,
    reclaimPercent: RECLAIM_PERCENT_DEFAULT,
    check: false,
    readOnly: false,
    fuseDefault: true,
    syslog: true,
    attrCache: true,
    fuseOptions: [],
  };
  for (const arg of args) {
    for (const item of splitOptionList(arg)) {
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const value = eq < 0 ? null : item.slice(eq + 1);
      const need = (): string => {
        if (value === null || value === '') throw new DdfsError('USAGE', `-o ${key} needs a value (${key}=...)`);
        return value;
      };
      switch (key) {
        case 'parent':
          o.parent = unescapeOptionValue(need());
          break;
        case 'pool':
          o.pool = integerOf(key, need(), -10000, 1024);
          break;
        case 'reclaim':
          o.reclaimPercent = integerOf(key, need(), 0, 100);
          break;
        case 'lock_index':
          o.lockIndex = true;
          break;
        case 'nolock_index':
          o.lockIndex = false;
          break;
        case 'dio':
          o.directIo = true;
          break;
        case 'nodio':
          o.directIo = false;
          break;
        case 'check':
          o.check = true;
          break;
        case 'ro':
          o.readOnly = true;
          break;
        case 'rw':
          o.readOnly = false;
          break;
        case 'fuse_default':
          o.fuseDefault = true;
          break;
        case 'nofuse_default':
          o.fuseDefault = false;
          break;
        case 'syslog':
          o.syslog = true;
          break;
        case 'nosyslog':
          o.syslog = false;
          break;
        case 'attr_cache':
          o.attrCache = true;
          break;
        case 'noattr_cache':
          o.attrCache = false;
          break;
        default:
          if (!isMountOnlyOption(key)) o.fuseOptions.push(item);
      }
    }
  }
  return o;
}

/** Writer threads a pool setting stands for (spec §8.1): N < 0 ⇒ max(1, trunc(−N/100 · cpus)). */
export function writerCount(pool: number, cpuCount: number): number {
  if (pool >= 0) return pool;
  return Math.max(1, Math.trunc((-pool / 100) * cpuCount));
}
