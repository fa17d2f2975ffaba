/**
 * Reading directories of the UFS tree (the walker's only contact with node:fs): a directory's names as raw bytes,
 * packed and sorted bytewise, lstat of one entry, and which entries of a directory are mount points. Paths are
 * Buffers, so names that are not UTF-8 reach the file system unchanged; nothing here decodes a name.
 *
 * Invariants of a `DirectoryListing`: names are stored back to back in one Buffer (no Buffer object per entry, so a
 * directory of millions of entries costs its name bytes plus 9 bytes per entry); `order` lists entry numbers in
 * bytewise order of their names; a listing never holds more than the `entryCountMax` it was read with.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { DdfsError } from '../errors.js';
import { pathText } from '../util/path_text.js';

/** What an entry is, never following a symlink; 'unknown' when the directory did not say (d_type DT_UNKNOWN). */
export type TreeEntryType = 'file' | 'directory' | 'symlink' | 'other' | 'unknown';

const TYPES: readonly TreeEntryType[] = ['file', 'directory', 'symlink', 'other', 'unknown'];

/** Entries read per readdir batch: bounds the transient Dirent objects of a huge directory. */
const READDIR_BATCH_COUNT = 256;
/** st_size up to which readDirectorySyncCalls lists a directory with one readdirSync (ext4: 16 blocks, ~2,000 names). */
const READDIR_WHOLE_SIZE_MAX = 64 * 1024;

/** The entries of one directory, sorted bytewise by name. */
export class DirectoryListing {
  constructor(
    private readonly pool: Buffer,
    private readonly starts: Uint32Array,
    private readonly types: Uint8Array,
    /** Entry numbers in bytewise order of their names. */
    readonly order: Uint32Array,
  ) {}

  /** Number of entries ('.' and '..' never included). */
  get count(): number {
    return this.order.length;
  }

  /** Name bytes of the entry at sorted position `k` (a view into the listing: copy it to keep it). */
  name(k: number): Buffer {
    const i = this.order[k]!;
    return this.pool.subarray(this.starts[i]!, this.starts[i + 1]!);
  }

  /** The type the directory gave for the entry at sorted position `k`. */
  type(k: number): TreeEntryType {
    return TYPES[this.types[this.order[k]!]!]!;
  }
}

function typeOf(d: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): number {
  if (d.isFile()) return 0;
  if (d.isDirectory()) return 1;
  if (d.isSymbolicLink()) return 2;
  if (d.isFIFO() || d.isSocket() || d.isBlockDevice() || d.isCharacterDevice()) return 3;
  return 4;
}

/** A listing being read: names packed as they come, sorted once at the end (see DirectoryListing). */
class ListingBuilder {
  private pool = Buffer.allocUnsafe(4096);
  private used = 0;
  private starts = new Uint32Array(64);
  private types = new Uint8Array(64);
  private count = 0;

  constructor(private readonly dir: Buffer, private readonly entryCountMax: number) {}

  /** @throws DdfsError INVALID past entryCountMax entries */
  add(d: fs.Dirent): void {
    const name = d.name as unknown as Buffer;
    if (this.count >= this.entryCountMax) {
      throw new DdfsError('INVALID', `${pathText(this.dir)}: more than ${this.entryCountMax} entries in one directory`, { path: this.dir, entryCountMax: this.entryCountMax });
    }
    if (this.used + name.length > this.pool.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.pool.length * 2, this.used + name.length));
      this.pool.copy(grown, 0, 0, this.used);
      this.pool = grown;
    }
    if (this.count + 2 > this.starts.length) {
      const s = new Uint32Array(this.starts.length * 2);
      s.set(this.starts);
      this.starts = s;
      const t = new Uint8Array(this.types.length * 2);
      t.set(this.types);
      this.types = t;
    }
    this.starts[this.count] = this.used;
    this.types[this.count] = typeOf(d);
    name.copy(this.pool, this.used);
    this.used += name.length;
    this.count++;
  }

  finish(): DirectoryListing {
    const { pool, starts, count } = this;
    starts[count] = this.used;
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    order.sort((a, b) => pool.compare(pool, starts[b]!, starts[b + 1]!, starts[a]!, starts[a + 1]!));
    return new DirectoryListing(pool, starts, this.types, order);
  }
}

/** opendir options: raw name bytes ('buffer': Node supports it, its typings only list string encodings). */
const OPENDIR_OPTIONS = { encoding: 'buffer' as BufferEncoding, bufferSize: READDIR_BATCH_COUNT };

/**
 * Read the names of directory `dir` (raw bytes, sorted bytewise).
 * @param entryCountMax more entries than this is an error (the listing must fit in memory to be sorted)
 * @param _sizeHint not used (the signature of readDirectorySyncCalls, so a walk takes either)
 * @throws Node system errors of opendir/readdir unchanged (ENOENT, ENOTDIR, EACCES, EMFILE…);
 *   DdfsError INVALID when the directory holds more than `entryCountMax` entries
 */
export async function readDirectory(dir: Buffer, entryCountMax: number, _sizeHint = -1): Promise<DirectoryListing> {
  const handle = await fsp.opendir(dir, OPENDIR_OPTIONS);
  const b = new ListingBuilder(dir, entryCountMax);
  try {
    for (;;) {
      const d = await handle.read();
      if (d === null) break;
      b.add(d);
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
  return b.finish();
}

/**
 * readDirectory with synchronous system calls, for a caller whose thread has nothing else to do meanwhile (fsck's
 * walk): each asynchronous opendir, readdir batch and close is a thread-pool round trip, and a walk of many small
 * directories spent half its time waiting for them (issue 9). A failing call is redone by readDirectory, so the error
 * thrown is the asynchronous one, message included (node's opendirSync errors do not name the path).
 * A directory whose st_size (`sizeHint`, from the walk's lstat) is at most READDIR_WHOLE_SIZE_MAX is listed with one
 * readdirSync instead: node's Dir object costs ~0.3 ms to make (it promisifies its methods), more than listing a
 * small directory; the bound keeps the Dirent objects of one call few (a few thousand entries at most).
 * @param sizeHint the directory's st_size, or -1 when not known
 * @throws as readDirectory
 */
export async function readDirectorySyncCalls(dir: Buffer, entryCountMax: number, sizeHint = -1): Promise<DirectoryListing> {
  if (sizeHint >= 0 && sizeHint <= READDIR_WHOLE_SIZE_MAX) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { encoding: 'buffer' as BufferEncoding, withFileTypes: true });
    } catch {
      return readDirectory(dir, entryCountMax);
    }
    const b = new ListingBuilder(dir, entryCountMax);
    for (const d of entries) b.add(d);
    return b.finish();
  }
  let handle: fs.Dir;
  try {
    handle = fs.opendirSync(dir, OPENDIR_OPTIONS);
  } catch {
    return readDirectory(dir, entryCountMax);
  }
  const b = new ListingBuilder(dir, entryCountMax);
  let failed = false;
  try {
    for (;;) {
      let d: fs.Dirent | null;
      try {
        d = handle.readSync();
      } catch {
        failed = true;
        break;
      }
      if (d === null) break;
      b.add(d);
    }
  } finally {
    try {
      handle.closeSync();
    } catch {
      // as readDirectory: a failed close loses nothing that was read
    }
  }
  return failed ? readDirectory(dir, entryCountMax) : b.finish();
}

/** What lstat says about a path: its type (never 'unknown'), the device it lives on and its st_size. */
export interface TreeEntryStat {
  type: Exclude<TreeEntryType, 'unknown'>;
  dev: number;
  size: number;
}

/**
 * lstat `p` (a symlink is reported as one, not followed).
 * @throws Node system errors unchanged (ENOENT when it vanished, EACCES…)
 */
export async function lstatEntry(p: Buffer): Promise<TreeEntryStat> {
  return entryStat(await fsp.lstat(p));
}

/** lstatEntry with a synchronous lstat (see readDirectorySyncCalls; lstatSync's errors are the asynchronous ones). */
export async function lstatEntrySyncCall(p: Buffer): Promise<TreeEntryStat> {
  return entryStat(fs.lstatSync(p));
}

function entryStat(st: fs.Stats): TreeEntryStat {
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
  return { type, dev: st.dev, size: st.size };
}

/** What /proc/self/mountinfo says about one directory (mountsIn). */
export interface DirectoryMounts {
  /** Type of the file system the directory is on (the mount with the longest mount point at or above it). */
  fsType: string;
  /** Names of its entries that are mount points, as latin1 keys of their raw bytes. */
  mountedNames: Set<string>;
}

/** Decode the octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) of a mountinfo path field. */
function unescapeMountPath(field: Buffer): Buffer {
  if (!field.includes(0x5c)) return field;
  const out = Buffer.alloc(field.length);
  let n = 0;
  for (let i = 0; i < field.length; i++) {
    const c = field[i]!;
    if (c === 0x5c && i + 3 < field.length && /^[0-7]{3}$/.test(field.toString('latin1', i + 1, i + 4))) {
      out[n++] = parseInt(field.toString('latin1', i + 1, i + 4), 8);
      i += 3;
    } else {
      out[n++] = c;
    }
  }
  return out.subarray(0, n);
}

/**
 * The file system type of directory `dir` and the names of its entries that are mount points, from
 * /proc/self/mountinfo (proc(5): field 5 the mount point, octal-escaped; the file system type after the ` - `
 * separator). Bytes end to end: a mount point whose name is not UTF-8 is matched exactly.
 * @param dir an absolute path with no symlink in it (a realPathBytes result joined with real directory names)
 * @returns null when mountinfo cannot be read or holds no mount at or above `dir` (not Linux, no /proc)
 */
export function mountsIn(dir: Buffer): DirectoryMounts | null {
  let text: Buffer;
  try {
    text = fs.readFileSync('/proc/self/mountinfo');
  } catch {
    return null;
  }
  const base = dir.length > 1 && dir[dir.length - 1] === 0x2f ? dir.subarray(0, dir.length - 1) : dir;
  let fsType: string | null = null;
  let bestLength = -1;
  const mountedNames = new Set<string>();
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    const line = text.subarray(start, end);
    start = end + 1;
    const fields: Buffer[] = [];
    for (let o = 0; o <= line.length;) {
      let sp = line.indexOf(0x20, o);
      if (sp < 0) sp = line.length;
      fields.push(line.subarray(o, sp));
      o = sp + 1;
    }
    const dash = fields.findIndex((f, i) => i >= 6 && f.length === 1 && f[0] === 0x2d);
    if (fields.length < 5 || dash < 0 || dash + 1 >= fields.length) continue;
    const point = unescapeMountPath(fields[4]!);
    // the mount the directory is on: the longest mount point equal to it or above it (a later one of the same
    // length is mounted over the earlier)
    const above = point.equals(base) || (point.length === 1 && point[0] === 0x2f)
      || (base.length > point.length && base[point.length] === 0x2f && base.subarray(0, point.length).equals(point));
    if (above && point.length >= bestLength) {
      bestLength = point.length;
      fsType = fields[dash + 1]!.toString('latin1');
    }
    // an entry of the directory that is a mount point
    if (point.length > base.length + 1 && point[base.length] === 0x2f && point.subarray(0, base.length).equals(base)
      && point.indexOf(0x2f, base.length + 1) < 0) {
      mountedNames.add(point.subarray(base.length + 1).toString('latin1'));
    }
  }
  return fsType === null ? null : { fsType, mountedNames };
}

/**
 * The canonical absolute path of `p` (symlinks resolved, realpath(3)), as raw bytes.
 * @throws Node system errors unchanged
 */
export function realPathBytes(p: Buffer): Buffer {
  return fs.realpathSync.native(p, { encoding: 'buffer' });
}
