/**
 * The op table of the daemon (spec §8.3–§8.9): metadata passes through to the UFS tree `ddfsroot` (the process cwd,
 * see byte_path.ts); regular files outside `/.ddumbfs/` go through the dedup layer (UfsFile); files inside
 * `/.ddumbfs/` are raw pass-through, and its special files regenerate on open (special_files.ts).
 *
 * Invariants:
 * - a caller's O_DIRECT and O_APPEND never reach a UFS file; O_WRONLY becomes O_RDWR (spec §8.4);
 * - every change of the tree goes through the volume (volume/tree.ts), which gives new objects to the caller;
 * - st_size of a deduplicated file is its logical size (the open UfsFile's, else the UFS header's),
 *   st_blksize = block size, st_blocks = stored blocks·bs/512: of a closed file its nodes with data (the holes of
 *   a sparse node file are not stored, so du shows what a sparse file really costs; issue 10), of an open file
 *   ceil(size/bs) (spec §8.3, as upstream);
 * - times set on an open file are the last word: its buffered data is stored first, and they are set again after
 *   any later write of the UFS file that is not a new write of the user (cp -p, rsync -t, tar keep their times).
 * Metadata syscalls on the UFS are synchronous: a few µs each on a cached inode, against ≈250 µs through the libuv
 * pool, where they would also queue behind block I/O (getattr runs several times per file created: the kernel keeps
 * no attributes, and the FUSE threads' attribute cache, fuse_binding.ts setAttrCache, answers only repeated ones).
 * They only ever touch the UFS, never a FUSE mount. The data path (UfsFile) stays asynchronous.
 * Every method may throw; op_guard.ts answers the errno.
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { constants as osc } from 'node:os';
import { DdfsError } from '../errors.js';
import type { UfsFile } from '../ufs/ufs_file.js';
import type { Logger } from '../util/log.js';
import type { Volume } from '../volume/volume.js';
import { byteStringOf, displayPath, isInSpecialDir, specialFileOf, ufsPathOf } from './byte_path.js';
import {
  AT_SYMLINK_NOFOLLOW,
  FI_DIRECT_IO,
  hostMknod,
  hostUtimensat,
  type BytePath,
  type FuseContext,
  type FuseStat,
  type FuseStatfs,
  type FuseTimespec,
} from './fuse_binding.js';
import type { DirListing, FsOps, OpenResult } from './op_guard.js';
import { OpenFiles, type OpenFile, type UfsHandle } from './open_files.js';
import { regenerateSpecialFile } from './special_files.js';
import { recordsWithData } from '../io/sparse_records.js';
import { STAT_BLOCKS_CACHE_ENTRIES, STAT_NODE_SCAN_SIZE_MAX, UFS_HEADER_SIZE } from '../limits.js';

const O_ACCMODE = 3;
/** chown's "leave unchanged" value as FUSE passes it ((uid_t)-1). */
const ID_UNCHANGED = 0xffffffff;
/** Default name length limit reported by statfs. */
const NAME_LENGTH_MAX = 255;

function codeError(code: string, message: string): NodeJS.ErrnoException {
  const errno = (osc.errno as Record<string, number>)[code] ?? osc.errno.EIO;
  return Object.assign(new Error(`${code}: ${message}`), { errno: -errno, code });
}

/** Flags for a UFS open: O_DIRECT / O_APPEND stripped, O_WRONLY → O_RDWR, no O_CREAT/O_EXCL (spec §8.4). */
export function ufsOpenFlags(flags: number): number {
  let f = flags & ~(fsc.O_DIRECT | fsc.O_APPEND | fsc.O_CREAT | fsc.O_EXCL);
  if ((f & O_ACCMODE) === fsc.O_WRONLY) f = (f & ~O_ACCMODE) | fsc.O_RDWR;
  return f;
}

function isReadOnly(flags: number): boolean {
  return (flags & O_ACCMODE) === fsc.O_RDONLY;
}

export class DdumbfsOps implements FsOps {
  readonly openFiles = new OpenFiles();
  /** Stored-node counts of closed files (storedNodes), oldest first. */
  private readonly storedNodesCache = new Map<string, { ctimeNs: bigint; size: bigint; nodes: number }>();
  private readonly blockSize: number;

  /**
   * @param writeBehindSizeMax bytes of accepted writes a file may have pending (0 = every write is stored before
   *   it is answered: mount option pool=0)
   */
  constructor(
    private readonly volume: Volume,
    private readonly logger: Logger,
    private readonly writeBehindSizeMax = 0,
  ) {
    this.blockSize = volume.config.blockSize;
    volume.tree.native = {
      mknod: (p, mode, dev) => hostMknod(p.toString('latin1'), mode, dev),
      utimensat: (p, atime, mtime) => hostUtimensat(p.toString('latin1'), atime, mtime, AT_SYMLINK_NOFOLLOW),
    };
  }

  private count(name: Parameters<Volume['store']['counters']['add']>[0]): void {
    this.volume.store.counters.add(name);
  }

  // ---- helpers -------------------------------------------------------------------------------------------------

  /**
   * Logical size of a closed deduplicated file from its header (spec §7, §8.3). Read with O_NOATIME: a stat must
   * not move the file's atime (relatime would, after touch/utimens). An invalid header is reported and shown as
   * size 0, so the file can still be listed and removed.
   */
  private async readSize(ufsPath: Buffer, mountPath: BytePath): Promise<number> {
    this.count('header_load');
    try {
      return await this.volume.readTreeFileSize(ufsPath);
    } catch (err) {
      if (err instanceof DdfsError && err.code === 'BAD_HEADER') {
        this.logger.warn(`${displayPath(mountPath)}: ${err.message} (shown with size 0; run fsckddumbfs)`);
        return 0;
      }
      throw err;
    }
  }

  /** The stat answer for a UFS object; `raw` objects (files of /.ddumbfs/) keep their UFS size. */
  private async statOf(mountPath: BytePath, ufsPath: Buffer, st: BigIntStats, open?: OpenFile, raw = isInSpecialDir(mountPath)): Promise<FuseStat> {
    const out: FuseStat = {
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: st.size,
      dev: st.dev,
      nlink: st.nlink,
      ino: st.ino,
      rdev: st.rdev,
      blksize: st.blksize,
      blocks: st.blocks,
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
    };
    if (st.isFile() && !raw) {
      const entry = open ?? this.openFiles.find(st.ino);
      const size = entry ? entry.file.size : await this.readSize(ufsPath, mountPath);
      const bs = this.blockSize;
      out.size = size;
      out.blksize = bs;
      out.blocks = (Math.min(Math.ceil(size / bs), entry ? Infinity : this.storedNodes(ufsPath, st)) * bs) / 512;
    }
    return out;
  }

  /**
   * Nodes of the closed file at `ufsPath` (lstat `st`) that hold data, holes of a sparse node list left out;
   * remembered while its UFS ctime and size stay (STAT_BLOCKS_CACHE_ENTRIES). Infinity when it cannot be read.
   */
  private storedNodes(ufsPath: Buffer, st: BigIntStats): number {
    const key = `${st.dev}:${st.ino}`;
    const known = this.storedNodesCache.get(key);
    if (known && known.ctimeNs === st.ctimeNs && known.size === st.size) return known.nodes;
    let nodes: number;
    try {
      nodes = recordsWithData(ufsPath, UFS_HEADER_SIZE, this.volume.config.nodeSize, STAT_NODE_SCAN_SIZE_MAX).withData;
    } catch {
      return Infinity; // gone or unreadable since the lstat: the apparent size stands
    }
    this.storedNodesCache.delete(key);
    if (this.storedNodesCache.size >= STAT_BLOCKS_CACHE_ENTRIES) {
      this.storedNodesCache.delete(this.storedNodesCache.keys().next().value!); // the oldest entry
    }
    this.storedNodesCache.set(key, { ctimeNs: st.ctimeNs, size: st.size, nodes });
    return nodes;
  }

  private openUfsFile(ufsPath: Buffer, create: boolean): Promise<UfsFile> {
    return this.volume.openTreeFile(ufsPath, { create });
  }

  /** Take a use of the deduplicated file at `ufsPath` (which must be a regular file). */
  private acquireFile(ufsPath: Buffer, create: boolean): Promise<OpenFile> {
    const st = fs.lstatSync(ufsPath, { bigint: true });
    if (st.isDirectory()) throw codeError('EISDIR', `open '${ufsPath.toString('utf8')}'`);
    if (!st.isFile()) throw codeError('EACCES', `open '${ufsPath.toString('utf8')}': not a regular file`);
    return this.openFiles.acquire(st.ino, () => this.openUfsFile(ufsPath, create));
  }

  /**
   * What to await before a data change of `openFile` (write, ftruncate, O_TRUNC): the tree sink's record (a mirror
   * master's journal, spec mirroring §4.3: the first change of a file in a window waits, later ones get null), or
   * null at no cost when there is no sink.
   */
  private beforeData(openFile: OpenFile): Promise<void> | null {
    const sink = this.volume.tree.sink;
    if (!sink?.beforeWrite) return null;
    const p = openFile.file.ufsPath;
    return sink.beforeWrite(openFile.ino, typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
  }

  private ufsHandle(fh: number): UfsHandle | null {
    const h = this.openFiles.handle(fh);
    return h.kind === 'ufs' ? h : null;
  }

  private async addUfsHandle(openFile: OpenFile, flags: number, created: boolean): Promise<OpenResult> {
    try {
      if (!created && flags & fsc.O_TRUNC && openFile.file.size !== 0) {
        const wait = this.beforeData(openFile);
        if (wait) await wait;
        await openFile.file.truncate(0);
      }
      return { fh: this.openFiles.addHandle({ kind: 'ufs', openFile }) };
    } catch (err) {
      await this.openFiles.release(openFile);
      throw err;
    }
  }

  /** Open a file of /.ddumbfs/ raw; a special file opened read-only is regenerated first (spec §8.9). */
  private async openRaw(mountPath: BytePath, flags: number): Promise<OpenResult> {
    const ufsPath = ufsPathOf(mountPath);
    const special = specialFileOf(mountPath);
    if (special) {
      if (!isReadOnly(flags)) throw codeError('EACCES', `${displayPath(mountPath)}: special files are read-only`);
      await regenerateSpecialFile(this.volume, special, ufsPath, this.logger);
    }
    // a file of the special directory is never reached through a symlink (issue 6 §3)
    const fileHandle = await fsp.open(ufsPath, ufsOpenFlags(flags) | fsc.O_NOFOLLOW);
    const fh = this.openFiles.addHandle({ kind: 'raw', fileHandle });
    return { fh, fiFlags: special ? FI_DIRECT_IO : 0 };
  }

  // ---- metadata --------------------------------------------------------------------------------------------------

  async getattr(mountPath: BytePath): Promise<FuseStat> {
    this.count('getattr');
    const ufsPath = ufsPathOf(mountPath);
    return this.statOf(mountPath, ufsPath, fs.lstatSync(ufsPath, { bigint: true }));
  }

  async fgetattr(mountPath: BytePath | null, fh: number): Promise<FuseStat> {
    this.count('fgetattr');
    const h = this.openFiles.handle(fh);
    if (h.kind === 'raw') {
      const st = await h.fileHandle.stat({ bigint: true });
      return this.statOf(mountPath ?? '', Buffer.alloc(0), st, undefined, true);
    }
    if (mountPath === null) throw codeError('ENOENT', 'fgetattr of an unlinked file');
    const ufsPath = ufsPathOf(mountPath);
    const st = fs.lstatSync(ufsPath, { bigint: true });
    return this.statOf(mountPath, ufsPath, st, st.ino === h.openFile.ino ? h.openFile : undefined);
  }

  async readdir(mountPath: BytePath): Promise<DirListing> {
    const dir = ufsPathOf(mountPath);
    const entries = fs.readdirSync(dir, { encoding: 'buffer' });
    const self = fs.lstatSync(dir, { bigint: true });
    const up = mountPath === '/' ? self : fs.lstatSync(Buffer.concat([dir, Buffer.from('/..')]), { bigint: true });
    const names: BytePath[] = ['.', '..'];
    const stats: FuseStat[] = [this.entryStat(self), this.entryStat(up)];
    const slash = Buffer.from('/');
    for (const name of entries) {
      const st = fs.lstatSync(Buffer.concat([dir, slash, name]), { bigint: true, throwIfNoEntry: false });
      if (!st) continue; // removed meanwhile
      names.push(byteStringOf(name));
      stats.push(this.entryStat(st));
    }
    return { names, stats };
  }

  /** What readdir needs of an entry: type and inode (libfuse uses nothing else without readdirplus). */
  private entryStat(st: BigIntStats): FuseStat {
    return { mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: st.size, nlink: st.nlink, ino: st.ino };
  }

  async access(mountPath: BytePath, mode: number): Promise<void> {
    fs.accessSync(ufsPathOf(mountPath), mode);
  }

  /** spec §8.3: f_bsize = f_frsize = bs, f_blocks = block_count, free = min(UFS free × (frsize / addr_size), free bits). */
  async statfs(): Promise<FuseStatfs> {
    const u = fs.statfsSync('.', { bigint: true });
    const { blockSize, blockCount, blockCountFree } = this.volume.statfs();
    const perBlock = BigInt(Math.max(1, Math.floor(Number(u.bsize) / this.volume.config.addrSize)));
    const free = BigInt(blockCountFree);
    const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);
    return {
      bsize: blockSize,
      frsize: blockSize,
      blocks: blockCount,
      bfree: min(u.bfree * perBlock, free),
      bavail: min(u.bavail * perBlock, free),
      files: u.files,
      ffree: u.ffree,
      favail: u.ffree,
      namemax: NAME_LENGTH_MAX,
    };
  }

  async readlink(mountPath: BytePath): Promise<BytePath> {
    return byteStringOf(fs.readlinkSync(ufsPathOf(mountPath), { encoding: 'buffer' }));
  }

  async mkdir(mountPath: BytePath, mode: number, ctx: FuseContext): Promise<void> {
    await this.volume.tree.mkdir(ufsPathOf(mountPath), mode, ctx);
  }

  async rmdir(mountPath: BytePath): Promise<void> {
    await this.volume.tree.rmdir(ufsPathOf(mountPath));
  }

  async unlink(mountPath: BytePath): Promise<void> {
    await this.volume.tree.unlink(ufsPathOf(mountPath));
  }

  async rename(src: BytePath, dest: BytePath): Promise<void> {
    await this.volume.tree.rename(ufsPathOf(src), ufsPathOf(dest));
  }

  async link(src: BytePath, dest: BytePath): Promise<void> {
    await this.volume.tree.link(ufsPathOf(src), ufsPathOf(dest));
  }

  async symlink(target: BytePath, mountPath: BytePath, ctx: FuseContext): Promise<void> {
    await this.volume.tree.symlink(Buffer.from(target, 'latin1'), ufsPathOf(mountPath), ctx);
  }

  async chmod(mountPath: BytePath, mode: number): Promise<void> {
    await this.volume.tree.chmod(ufsPathOf(mountPath), mode);
  }

  // ---- extended attributes and POSIX ACLs: on the UFS object itself (volume/tree.ts) -------------------------

  /** Set an attribute; the files of /.ddumbfs/ are the daemon's own and take none (EPERM). */
  async setxattr(mountPath: BytePath, name: BytePath, value: Buffer, flags: number): Promise<void> {
    if (isInSpecialDir(mountPath)) throw codeError('EPERM', `${displayPath(mountPath)}: files of /.ddumbfs/ take no extended attributes`);
    await this.volume.tree.setXattr(ufsPathOf(mountPath), Buffer.from(name, 'latin1'), value, flags);
  }

  /** @param size the caller's buffer (0: a size probe). @throws ENODATA, ERANGE when the value is longer than a non-zero size */
  async getxattr(mountPath: BytePath, name: BytePath, size: number): Promise<Buffer> {
    return this.volume.tree.getXattr(ufsPathOf(mountPath), Buffer.from(name, 'latin1'), size);
  }

  async listxattr(mountPath: BytePath): Promise<Buffer[]> {
    return this.volume.tree.listXattrs(ufsPathOf(mountPath));
  }

  async removexattr(mountPath: BytePath, name: BytePath): Promise<void> {
    if (isInSpecialDir(mountPath)) throw codeError('EPERM', `${displayPath(mountPath)}: files of /.ddumbfs/ take no extended attributes`);
    await this.volume.tree.removeXattr(ufsPathOf(mountPath), Buffer.from(name, 'latin1'));
  }

  async chown(mountPath: BytePath, uid: number, gid: number): Promise<void> {
    await this.volume.tree.chown(ufsPathOf(mountPath), uid === ID_UNCHANGED ? -1 : uid, gid === ID_UNCHANGED ? -1 : gid);
  }

  /**
   * Set times on the UFS object. On an open deduplicated file they are pinned (UfsFile.pinTimes): data still being
   * stored (held nodes, the header at close) would move the UFS mtime again, so the times read back after setting
   * (UTIME_NOW resolved) are set again after each such write: tar, cp -p and rsync -t keep exactly what they set.
   */
  async utimens(mountPath: BytePath, atime: FuseTimespec, mtime: FuseTimespec): Promise<void> {
    const ufsPath = ufsPathOf(mountPath);
    const st = isInSpecialDir(mountPath) ? null : fs.lstatSync(ufsPath, { bigint: true });
    const open = st?.isFile() ? this.openFiles.find(st.ino) : undefined;
    if (!open) {
      await this.volume.tree.utimens(ufsPath, atime, mtime);
      return;
    }
    const timespecOf = (ns: bigint): FuseTimespec => {
      const nsec = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n; // times before 1970 are negative
      return { sec: Number((ns - nsec) / 1_000_000_000n), nsec: Number(nsec) };
    };
    await open.file.pinTimes(async () => {
      await this.volume.tree.utimens(ufsPath, atime, mtime);
      const now = fs.lstatSync(ufsPath, { bigint: true });
      const a = timespecOf(now.atimeNs);
      const m = timespecOf(now.mtimeNs);
      // the handle path is the open file's own /proc/self/fd link: following it is following to the file itself
      return (handlePath) => {
        const bytes = typeof handlePath === 'string' ? Buffer.from(handlePath, 'utf8') : handlePath;
        const res = hostUtimensat(bytes.toString('latin1'), a, m, 0);
        if (res < 0) {
          const code = Object.entries(osc.errno).find(([, n]) => n === -res)?.[0] ?? 'EIO';
          throw codeError(code, `utimensat '${bytes.toString('latin1')}'`);
        }
      };
    });
  }

  async mknod(mountPath: BytePath, mode: number, dev: number, ctx: FuseContext): Promise<void> {
    await this.volume.tree.mknod(ufsPathOf(mountPath), mode, dev, ctx);
  }

  async truncate(mountPath: BytePath, size: number): Promise<void> {
    this.count('truncate');
    const ufsPath = ufsPathOf(mountPath);
    if (isInSpecialDir(mountPath)) {
      fs.truncateSync(ufsPath, size);
      return;
    }
    const openFile = await this.acquireFile(ufsPath, false);
    try {
      await this.volume.tree.truncate(ufsPath, () => openFile.file.truncate(size));
    } finally {
      await this.openFiles.release(openFile);
    }
  }

  async ftruncate(_mountPath: BytePath | null, fh: number, size: number): Promise<void> {
    this.count('ftruncate');
    const h = this.openFiles.handle(fh);
    if (h.kind === 'raw') {
      await h.fileHandle.truncate(size);
      return;
    }
    const wait = this.beforeData(h.openFile);
    if (wait) await wait;
    await h.openFile.file.truncate(size);
  }

  // ---- file handles ----------------------------------------------------------------------------------------------

  async open(mountPath: BytePath, flags: number): Promise<OpenResult> {
    this.count('open');
    if (isInSpecialDir(mountPath)) return this.openRaw(mountPath, flags);
    const openFile = await this.acquireFile(ufsPathOf(mountPath), false);
    return this.addUfsHandle(openFile, flags, false);
  }

  async create(mountPath: BytePath, mode: number, flags: number, ctx: FuseContext): Promise<OpenResult> {
    this.count('create');
    if (isInSpecialDir(mountPath) || mountPath === '/.ddumbfs') {
      throw codeError('EACCES', `${displayPath(mountPath)}: no new files in /.ddumbfs/`);
    }
    const ufsPath = ufsPathOf(mountPath);
    // an existing file (a lost race with another creator) is simply opened, unless the caller wanted O_EXCL
    const created = await this.volume.tree.createFile(ufsPath, mode, ctx, (flags & fsc.O_EXCL) !== 0);
    // create: true writes the header of the new (0-byte) UFS file at once (spec §8.4)
    const openFile = await this.acquireFile(ufsPath, true);
    return this.addUfsHandle(openFile, flags, created);
  }

  async read(_mountPath: BytePath | null, fh: number, length: number, offset: number): Promise<Buffer> {
    this.count('read');
    const h = this.openFiles.handle(fh);
    if (h.kind === 'raw') {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await h.fileHandle.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    }
    return h.openFile.file.read(offset, length);
  }

  async write(_mountPath: BytePath | null, fh: number, data: Buffer, offset: number): Promise<number> {
    this.count('write');
    const h = this.openFiles.handle(fh);
    if (h.kind === 'raw') {
      const { bytesWritten } = await h.fileHandle.write(data, 0, data.length, offset);
      return bytesWritten;
    }
    // as on any file (POSIX write): what fits below the largest size is written; a write starting at it is EFBIG
    const room = h.openFile.file.sizeMax - offset;
    const piece = room > 0 && room < data.length ? data.subarray(0, room) : data;
    const wait = this.beforeData(h.openFile);
    if (wait) await wait;
    if (this.writeBehindSizeMax > 0) await h.openFile.file.writeBehind(offset, piece, this.writeBehindSizeMax);
    else await h.openFile.file.write(offset, piece);
    this.volume.maybeCheckpoint().catch((err: unknown) => this.logger.error(`checkpoint: ${(err as Error).message}`));
    return piece.length;
  }

  async flush(_mountPath: BytePath | null, fh: number): Promise<void> {
    this.count('flush');
    const h = this.ufsHandle(fh);
    if (h) await h.openFile.file.flush();
  }

  /**
   * fsync and fdatasync: the file's data, then its name when this session made it and its directory was not synced
   * since (volume.ts `syncNewEntry`: by the path the file was opened at, and by its current one after a rename).
   */
  async fsync(mountPath: BytePath | null, _datasync: boolean, fh: number): Promise<void> {
    this.count('fsync');
    const h = this.openFiles.handle(fh);
    if (h.kind === 'raw') {
      await h.fileHandle.sync();
      return;
    }
    await h.openFile.file.fsync();
    if (mountPath !== null) await this.volume.syncNewTreeEntry(ufsPathOf(mountPath));
  }

  /**
   * fsync of a directory (FUSE fsyncdir; fuse-native passes it, and without the op the kernel answers a directory
   * fsync itself): commits the mkdir, create, rename and unlink of its entries. Counted as an fsync in the stats.
   */
  async fsyncdir(mountPath: BytePath): Promise<void> {
    this.count('fsync');
    await this.volume.syncTreeDirectory(ufsPathOf(mountPath));
  }

  async release(_mountPath: BytePath | null, fh: number): Promise<void> {
    this.count('release');
    const h = this.openFiles.removeHandle(fh);
    if (h.kind === 'raw') await h.fileHandle.close();
    else await this.openFiles.release(h.openFile);
  }

  /** Push every open file's buffered partial block (background sweep, spec §8.7). */
  async flushAll(): Promise<void> {
    for (const f of this.openFiles.files()) await f.file.flush();
  }

  async opendir(mountPath: BytePath): Promise<OpenResult> {
    const st = fs.lstatSync(ufsPathOf(mountPath));
    if (!st.isDirectory()) throw codeError('ENOTDIR', `opendir '${displayPath(mountPath)}'`);
    return { fh: 0 };
  }

  async releasedir(): Promise<void> {
    // opendir keeps no state
  }
}
