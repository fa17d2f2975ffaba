/**
 * The namespace system calls of mirroring (mirroring spec §4.2 `ddfsmirror/`, §4.8 slave apply): atomic small-file
 * replace (temp, fsync, rename, fsync dir), reading without following symlinks, and the tree edits a slave applies
 * (mkdir, rename, recursive remove, symlink, mknod, link, chmod/chown, ns-exact mtimes). mirror/ may not import
 * node:fs (test/layering.test.ts), so they live here.
 *
 * Invariants:
 * - Paths are bytes (Buffer) or text paths of the volume's parent; a UFS name is never decoded.
 * - readNoFollow and writeAtomic refuse a symlink at the final component (O_NOFOLLOW): `ddfsmirror/state` is never
 *   read or written through a link planted in its place.
 * - mtimes are set with nanosecond precision (node's utimes takes a double of seconds and loses the last digits;
 *   verify compares mtimes in ns) through utimensat(2) (io/libc.ts).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { DdfsError } from '../errors.js';
import { makeNode, setTimesNoFollow, syncFilesystemOfFd } from './libc.js';

/**
 * Read the whole file `p` without following a symlink at its last component.
 * @returns its bytes, or null when it does not exist
 * @throws DdfsError INVALID when `p` is a symlink; Node errors otherwise
 */
export function readNoFollow(p: string): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new DdfsError('INVALID', `${p}: is a symbolic link: refused`, { path: p });
    throw err;
  }
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync the directory `dir`. @throws Node errors */
export function syncDirectory(dir: string | Buffer): void {
  const fd = fs.openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Make everything written on the filesystem that holds the directory `dir` durable with one syncfs(2): the data and
 * metadata of every file written there (staged UFS files of a whole window, renames, new directories), instead of
 * one fsync per file (each of which commits the filesystem's journal on its own).
 * @throws Node errors of the open; a Node-style system error when syncfs fails
 */
export function syncFilesystem(dir: string | Buffer): void {
  const fd = fs.openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    syncFilesystemOfFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync the file `p` (opened without following a symlink). @throws Node errors */
export function syncFile(p: string | Buffer): void {
  const fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replace `dir/name` by `data` atomically: write `dir/name.tmp` (O_EXCL after removing a stale one, O_NOFOLLOW),
 * fsync it, rename it over `name`, fsync `dir`. With `ownTmp` the temp is `name.tmp.PID.RANDOM`, for a file that
 * two processes may rewrite at once (the last rename wins; neither removes the other's temp).
 * @throws DdfsError INVALID when `dir` is a symlink; Node errors
 */
export function writeAtomic(dir: string, name: string, data: Buffer, mode = 0o644, ownTmp = false): void {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new DdfsError('INVALID', `${dir}: not a directory: refused`, { path: dir });
  const tmp = ownTmp ? `${dir}/${name}.tmp.${process.pid}.${randomBytes(6).toString('hex')}` : `${dir}/${name}.tmp`;
  fs.rmSync(tmp, { force: true });
  const fd = fs.openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, `${dir}/${name}`);
  syncDirectory(dir);
}

/**
 * Append `data` to the file `p` (created with `mode` when missing, never through a symlink) and fsync it before
 * returning: one write-ahead record (the undo manifest of mirror/undo.ts). A new file's directory is fsynced too.
 * @throws Node errors of the open, write or fsync
 */
export function appendDurable(p: string, data: Buffer, mode = 0o600): void {
  let created = false;
  let fd: number;
  try {
    fd = fs.openSync(p, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    fd = fs.openSync(p, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    created = true;
  }
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (created) syncDirectory(p.slice(0, Math.max(1, p.lastIndexOf('/'))));
}

/**
 * Cut the file `p` to `sizeBytes` and fsync it (drops the torn tail of an append-only log). Never through a symlink.
 * @throws Node errors of the open, truncate or fsync
 */
export function truncateDurable(p: string, sizeBytes: number): void {
  const fd = fs.openSync(p, fsc.O_WRONLY | fsc.O_NOFOLLOW);
  try {
    fs.ftruncateSync(fd, sizeBytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Create directory `dir` (and its parents) unless it exists as a directory. @throws DdfsError INVALID for a symlink */
export function ensureDirectory(dir: string | Buffer, mode = 0o755): void {
  try {
    const st = fs.lstatSync(dir);
    if (st.isDirectory()) return;
    throw new DdfsError('INVALID', `${String(dir)}: not a directory`, { path: dir });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(dir, { recursive: true, mode });
}

/** What lstat says, or null when nothing is there. */
export interface EntryStat {
  kind: 'file' | 'dir' | 'symlink' | 'special';
  /** The kind of a special file, else null. */
  special: 'fifo' | 'char' | 'block' | 'socket' | null;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  ino: bigint;
  nlink: number;
  rdev: bigint;
  sizeBytes: bigint;
}

/**
 * lstat of `p`, or null when absent: nothing there (ENOENT), or a parent on the way that is not a directory
 * (ENOTDIR) or a symlink that loops (ELOOP; lstat never follows the last component, so only a parent can loop). A
 * tree path under a symlink is never an entry of the tree, whatever the symlink points at.
 * @throws Node errors other than ENOENT/ENOTDIR/ELOOP
 */
export function lstatOrNull(p: Buffer): EntryStat | null {
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
    throw err;
  }
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'special';
  const special = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isSocket() ? 'socket' : null;
  return {
    kind, special, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs, ino: st.ino,
    nlink: Number(st.nlink), rdev: st.rdev, sizeBytes: st.size,
  };
}

/** readlink of `p` as raw bytes, or null when it is not a symlink or absent. */
export function readLinkOrNull(p: Buffer): Buffer | null {
  try {
    return fs.readlinkSync(p, { encoding: 'buffer' });
  } catch {
    return null;
  }
}

/** The names in directory `dir` (raw bytes). @throws Node errors */
export function listNames(dir: Buffer): Buffer[] {
  return fs.readdirSync(dir, { encoding: 'buffer' });
}

/**
 * The entries of directory `dir` with their kinds, from readdir's d_type: one getdents for the whole directory
 * instead of one lstat per entry (Node lstats an entry itself where the file system reports DT_UNKNOWN). The kind is
 * that of the entry itself, never of a symlink's target.
 * @throws Node errors (ENOENT, ENOTDIR, EACCES...)
 */
export function listKinds(dir: Buffer): Array<{ name: Buffer; kind: EntryStat['kind'] }> {
  return fs.readdirSync(dir, { encoding: 'buffer', withFileTypes: true }).map((d) => ({
    name: d.name as unknown as Buffer,
    kind: d.isFile() ? 'file' : d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'symlink' : 'special',
  }));
}

/** Read a whole small file (a staged or target UFS file) without following a symlink; null when absent. */
export function readBytesOrNull(p: Buffer): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return null;
    throw err;
  }
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Append-write handle of a new file `p` (O_EXCL|O_NOFOLLOW). @returns the fd */
export function createExclusive(p: Buffer, mode = 0o600): number {
  return fs.openSync(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
}

/**
 * Runs the creates of writeNewFile calls given the same lane one at a time, in call order (their writes and closes
 * still run side by side). Creates in one directory take its inode lock: on Linux, thread-pool threads that create
 * there at once spin on that lock, burning the CPU the hash threads and the block writes need (the profile of a 2 GiB
 * copy staging 16000 files into one directory showed 2 to 3 s of CPU in that spin, on 2 cores).
 */
export class CreateLane {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `create` once every earlier create of this lane settled. */
  run<T>(create: () => Promise<T>): Promise<T> {
    const r = this.tail.then(create, create);
    this.tail = r.catch(() => undefined);
    return r;
  }
}

/**
 * Create the new file `p` (O_EXCL|O_NOFOLLOW) holding `data`, then close it (no fsync), on libuv's thread pool: the
 * JS thread goes on while the file is created (a slave stages thousands of small UFS files a pass). With `lane`, the
 * create waits for the lane's earlier creates (CreateLane).
 * @throws Node errors (EEXIST when `p` exists)
 */
export async function writeNewFile(p: Buffer, data: Buffer, mode = 0o600, lane?: CreateLane): Promise<void> {
  const open = () => fsp.open(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
  const h = await (lane === undefined ? open() : lane.run(open));
  try {
    let done = 0;
    while (done < data.length) done += (await h.write(data, done, data.length - done, done)).bytesWritten;
  } finally {
    await h.close();
  }
}

/** Write all of `data` to `fd` at `position`. */
export function writeAt(fd: number, data: Buffer, position: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

/** fsync and close `fd`. */
export function syncClose(fd: number): void {
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Close `fd` without syncing. */
export function closeFd(fd: number): void {
  fs.closeSync(fd);
}

/** rename(2). */
export function renamePath(from: Buffer | string, to: Buffer | string): void {
  fs.renameSync(from, to);
}

/** Remove `p` recursively; no-op when absent. */
export function removeTree(p: Buffer | string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/** removeTree on libuv's thread pool: the JS thread goes on while the tree goes (rm -rf; a missing tree is fine). */
export async function removeTreeAsync(p: Buffer | string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true });
}

/** mkdir(2) of one directory. */
export function makeDirectory(p: Buffer, mode: number): void {
  fs.mkdirSync(p, { mode });
}

/** symlink(2): `p` pointing at the raw `target` bytes. */
export function makeSymlink(target: Buffer, p: Buffer): void {
  fs.symlinkSync(target, p);
}

/** link(2). */
export function makeHardLink(existing: Buffer, p: Buffer): void {
  fs.linkSync(existing, p);
}

/**
 * mknod(2) of a FIFO, device or socket named `name` in `dir` (byte paths, never decoded).
 * @throws a Node-style system error when mknod fails
 */
export async function makeSpecial(dir: Buffer, name: Buffer, kind: 'fifo' | 'char' | 'block' | 'socket', rdev: bigint, mode: number): Promise<void> {
  const type = { fifo: 0o010000, char: 0o020000, block: 0o060000, socket: 0o140000 }[kind];
  makeNode(Buffer.concat([dir, Buffer.from('/'), name]), type | (mode & 0o7777), kind === 'char' || kind === 'block' ? rdev : 0n);
}

/** chmod(2) (not for symlinks). */
export function setMode(p: Buffer, mode: number): void {
  fs.chmodSync(p, mode & 0o7777);
}

/** lchown(2); EPERM is ignored when not running as root (owners then stay the receiver's). */
export function setOwner(p: Buffer, uid: number, gid: number): void {
  try {
    fs.lchownSync(p, uid, gid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
}

/**
 * Set the mtimes of many paths, ns-exact, without following symlinks (atimes unchanged).
 * @throws a Node-style system error when one cannot be set
 */
export async function setMtimes(items: Array<{ path: Buffer; mtimeNs: bigint }>): Promise<void> {
  for (const it of items) setTimesNoFollow(it.path, null, it.mtimeNs);
}

/**
 * The file system's clock as it stamps ctimes now (mirroring spec §4.3, the seal's ctime boundary): touch the probe
 * file `dir/name` (created 0600 if absent, never through a symlink) with futimens, then fstat it.
 * On a kernel whose ctimes come from the coarse clock (one jiffy, 1-10 ms), two calls in one tick give the same
 * value; on a multigrain kernel (Linux 6.13+, ext4/xfs/btrfs/tmpfs) the fstat marks the inode queried, so the next
 * touch gets a fine-grained stamp. Either way the value never runs ahead of the stamps of later changes.
 * @returns the probe's new ctime in ns
 * @throws DdfsError INVALID when the probe is a symlink; Node errors otherwise
 */
export function probeCtimeNs(dir: string, name: string): bigint {
  const p = `${dir}/${name}`;
  let fd: number;
  try {
    fd = fs.openSync(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new DdfsError('INVALID', `${p}: is a symbolic link: refused`, { path: p });
    throw err;
  }
  try {
    const now = Date.now() / 1000;
    fs.futimesSync(fd, now, now);
    return fs.fstatSync(fd, { bigint: true }).ctimeNs;
  } finally {
    fs.closeSync(fd);
  }
}
