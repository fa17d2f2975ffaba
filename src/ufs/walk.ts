/**
 * THE walker of the UFS tree (spec §7, §9 step 2, §10.3 step 2): every entry below a directory of `ddfsroot`, as raw
 * byte paths, for reclaim, fsck and anything else that walks the tree.
 *
 * Invariants:
 * - Paths are Buffers relative to the root (no leading '/'), built from the raw name bytes: never decoded.
 * - Order is stable: names sorted bytewise per directory, pre-order (a directory is yielded before its contents, and
 *   its contents before its next sibling).
 * - Symlinks are yielded as 'symlink' and never followed. A directory on another device than the root (a mount
 *   point) is not yielded and not entered: it is reported to `onError` as DdfsError CROSS_DEVICE.
 * - Nesting is bounded (`depthMax`): a directory whose entries would lie deeper is reported (DdfsError INVALID) and
 *   not entered. One directory's listing is bounded too (WALK_DIRECTORY_ENTRY_COUNT_MAX, io/tree_read.ts).
 * - Nothing is swallowed: every readdir or lstat error (including ENOENT of an entry that vanished, and ENOTDIR of a
 *   directory replaced by a file after it was listed) goes to `onError`, which returns 'skip' to go on without that
 *   entry or directory, or throws to abort the walk (the error then leaves the generator). An error of the root
 *   itself (lstat or readdir of `rootDir`) is reported with the empty path; after 'skip' the walk yields nothing.
 * - Directory handles are open only while a directory is listed, never across a yield, so a walk holds at most one
 *   descriptor whatever the tree's depth (a daemon near its descriptor limit still walks).
 * - `<root>/.ddumbfs` and `<root>/ddfsmirror` are skipped unless `skipSpecial` is false (only directly below the root).
 *
 * Memory: one sorted listing per directory on the current path (bounded by depth), names packed (io/tree_read.ts).
 * All file-system access goes through io/tree_read.ts.
 */
import { DdfsError } from '../errors.js';
import { WALK_DEPTH_MAX, WALK_DIRECTORY_ENTRY_COUNT_MAX } from '../limits.js';
import { ROOT_RESERVED_NAMES } from '../format/layout.js';
import { lstatEntry as lstatEntryAsync, lstatEntrySyncCall, readDirectory as readDirectoryAsync, readDirectorySyncCalls, type DirectoryListing } from '../io/tree_read.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';

export type UfsEntryKind = 'file' | 'directory' | 'symlink' | 'other';

export interface UfsTreeEntry {
  /** Relative to the root, no leading '/', raw bytes. */
  path: Buffer;
  kind: UfsEntryKind;
  /** Path components: 1 for an entry directly below the root. */
  depth: number;
}

export interface UfsWalkOptions {
  /** Called for every error (readdir, lstat, depth bound exceeded, device change). Return 'skip' to go on without
   *  that entry/directory, or throw to abort the walk. Nothing is ever swallowed without asking this. */
  onError: (path: Buffer, err: Error) => 'skip';
  /** Deepest nesting (default WALK_DEPTH_MAX in limits.ts). */
  depthMax?: number;
  /** Skip <root>/.ddumbfs and <root>/ddfsmirror (default true). */
  skipSpecial?: boolean;
  /**
   * Read directories and lstat entries with synchronous system calls (io/tree_read.ts readDirectorySyncCalls), for a
   * caller with nothing else to do meanwhile (fsck): same entries, order and errors, without a thread-pool round trip
   * per call. Default false: a daemon's walk must not block its event loop on a huge directory.
   */
  syncCalls?: boolean;
}

const RESERVED = ROOT_RESERVED_NAMES.map((n) => Buffer.from(n, 'latin1'));

interface Frame {
  /** The directory, relative to the root. */
  path: Buffer;
  /** Depth of its entries. */
  depth: number;
  listing: DirectoryListing;
  next: number;
}

/** An Error for `onError`: Node errors pass unchanged, anything else is wrapped. */
function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Number of path components of a relative path (0 for the empty path). */
function componentCount(p: Buffer): number {
  if (p.length === 0) return 0;
  let n = 1;
  for (let k = 0; k < p.length; k++) if (p[k] === 0x2f && k > 0 && k < p.length - 1 && p[k - 1] !== 0x2f) n++;
  return n;
}

/** Strip leading and trailing '/' of a relative path. */
function trimSlashes(p: Buffer): Buffer {
  let a = 0;
  let b = p.length;
  while (a < b && p[a] === 0x2f) a++;
  while (b > a && p[b - 1] === 0x2f) b--;
  return p.subarray(a, b);
}

/**
 * Walk the subtree `start` (relative byte path, default the root itself) of the UFS root directory `rootDir`:
 * yields every entry below it (not `start` itself) in a stable order (names sorted bytewise per directory),
 * directories before their contents, never following symlinks, never crossing into another device (a mount point
 * is reported to onError as DdfsError CROSS_DEVICE), depth-bounded (DdfsError INVALID).
 * @param rootDir the UFS root (`<parent>/ddfsroot`); a string is taken as UTF-8, as node:fs does
 * @throws whatever `onError` throws; nothing else
 */
export async function* walkUfsTree(rootDir: string | Buffer, options: UfsWalkOptions, start?: Buffer): AsyncGenerator<UfsTreeEntry> {
  const root = pathBytes(rootDir);
  const depthMax = options.depthMax ?? WALK_DEPTH_MAX;
  const skipSpecial = options.skipSpecial ?? true;
  const startRel = trimSlashes(start ?? Buffer.alloc(0));
  const abs = (rel: Buffer): Buffer => joinPathBytes(root, rel);
  const lstatEntry = options.syncCalls ? lstatEntrySyncCall : lstatEntryAsync;
  const readDirectory = options.syncCalls ? readDirectorySyncCalls : readDirectoryAsync;

  let rootDev: number;
  /** st_size of the directory listed next (a hint for readDirectorySyncCalls; -1: not known). */
  let sizeHint = -1;
  try {
    const st = await lstatEntry(root);
    rootDev = st.dev;
    sizeHint = st.size;
  } catch (err) {
    options.onError(Buffer.alloc(0), asError(err));
    return;
  }
  const startDepth = componentCount(startRel);
  if (startRel.length > 0) {
    try {
      const st = await lstatEntry(abs(startRel));
      if (st.type !== 'directory') {
        throw new DdfsError('INVALID', `${pathText(abs(startRel))}: not a directory`, { path: startRel });
      }
      if (st.dev !== rootDev) throw crossDevice(abs(startRel));
      sizeHint = st.size;
    } catch (err) {
      options.onError(startRel, asError(err));
      return;
    }
  }
  const frames: Frame[] = [];
  const enter = async (rel: Buffer, depth: number, dirSize: number): Promise<void> => {
    let listing: DirectoryListing;
    try {
      listing = await readDirectory(abs(rel), WALK_DIRECTORY_ENTRY_COUNT_MAX, dirSize);
    } catch (err) {
      options.onError(rel, asError(err));
      return;
    }
    if (listing.count > 0 && depth > depthMax) {
      options.onError(rel, new DdfsError('INVALID', `${pathText(abs(rel))}: directory nesting deeper than ${depthMax}`, { path: rel, depthMax }));
      return;
    }
    frames.push({ path: rel, depth, listing, next: 0 });
  };
  await enter(startRel, startDepth + 1, sizeHint);

  while (frames.length > 0) {
    const f = frames[frames.length - 1]!;
    if (f.next >= f.listing.count) {
      frames.pop();
      continue;
    }
    const k = f.next++;
    const name = f.listing.name(k);
    if (skipSpecial && f.path.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
    const rel = joinPathBytes(f.path, Buffer.from(name));
    let type = f.listing.type(k);
    let dirSize = -1;
    if (type === 'unknown' || type === 'directory') {
      // a directory's device must be known before it is yielded or entered; unknown d_type needs lstat anyway
      try {
        const st = await lstatEntry(abs(rel));
        type = st.type;
        dirSize = st.size;
        if (type === 'directory' && st.dev !== rootDev) throw crossDevice(abs(rel));
      } catch (err) {
        options.onError(rel, asError(err));
        continue;
      }
    }
    const kind: UfsEntryKind = type;
    yield { path: rel, kind, depth: f.depth };
    if (kind === 'directory') await enter(rel, f.depth + 1, dirSize);
  }
}

function crossDevice(p: Buffer): DdfsError {
  return new DdfsError('CROSS_DEVICE', `${pathText(p)}: a mount point (another device): not walked`, { path: p });
}
