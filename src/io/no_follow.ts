/**
 * Writing the volume's own files without following a symlink (issue 6 §3): markers (`.autofsck`, `.rebuildfsck`),
 * checkpoints, logs, corrupted.txt and the special files of `ddfsroot/.ddumbfs/`. A symlink planted at one of those
 * paths must never make a tool truncate or write a file outside the volume.
 *
 * Invariants
 * - Every open here passes O_NOFOLLOW (the last component is never a symlink: ELOOP instead), and O_EXCL when it
 *   creates a file that must be new (a marker whose presence means something).
 * - `refuseSymlinks` is the up-front check of a tool: any of the paths it is given (volume/special_paths.ts lists
 *   them, the directory `ddfsroot/.ddumbfs` among them) that is a symlink refuses the whole volume with one line
 *   naming it, before anything is written. O_NOFOLLOW only covers the last component of a path; the check covers
 *   the special directory on the way to its files.
 * This is the one place where these flags are spelled; callers never build the flags themselves.
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import { DdfsError } from '../errors.js';

/**
 * Fail with DdfsError SYMLINK when any of `paths` is a symbolic link (a missing path is fine).
 * @throws DdfsError SYMLINK naming the first such path: "<path>: is a symbolic link: refusing to use this volume"
 */
export function refuseSymlinks(paths: Iterable<string>): void {
  for (const p of paths) {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) {
      throw new DdfsError('SYMLINK', `${p}: is a symbolic link: refusing to use this volume (remove the link)`, { path: p });
    }
  }
}

/** How `openNoFollow` opens: `create` makes the file (mode applies then), `exclusive` also fails when it exists. */
export interface NoFollowOpenOptions {
  /** 'read', 'write' (O_WRONLY|O_TRUNC), 'append' (O_WRONLY|O_APPEND) or 'update' (O_RDWR). */
  access: 'read' | 'write' | 'append' | 'update';
  create?: boolean;
  exclusive?: boolean;
  /** Permission bits of a created file (default 0600). */
  mode?: number;
}

/**
 * open(2) with O_NOFOLLOW (and O_EXCL for `exclusive`): returns the descriptor, which the caller closes.
 * @throws Node system errors unchanged: ELOOP when `p` is a symlink, EEXIST for an exclusive create, ENOENT...
 */
export function openNoFollow(p: string | Buffer, options: NoFollowOpenOptions): number {
  const access = {
    read: fsc.O_RDONLY,
    write: fsc.O_WRONLY | fsc.O_TRUNC,
    append: fsc.O_WRONLY | fsc.O_APPEND,
    update: fsc.O_RDWR,
  }[options.access];
  let flags = access | fsc.O_NOFOLLOW;
  if (options.create) flags |= fsc.O_CREAT;
  if (options.exclusive) flags |= fsc.O_CREAT | fsc.O_EXCL;
  return fs.openSync(p, flags, options.mode ?? 0o600);
}

/**
 * Write `data` as the whole content of `p` without following a symlink: truncate an existing file, or create it
 * (`exclusive`: it must not exist). The descriptor is closed whatever happens.
 * @throws Node system errors unchanged (ELOOP, EEXIST, ENOSPC...)
 */
export function writeFileNoFollow(p: string | Buffer, data: string | Buffer, options: { mode?: number; exclusive?: boolean } = {}): void {
  const fd = openNoFollow(p, { access: 'write', create: true, exclusive: options.exclusive, mode: options.mode });
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let done = 0;
    while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replace the file `p` by one holding `data`, whole or not at all: write `p.tmp` (a stale one removed first; created
 * O_EXCL|O_NOFOLLOW, so a symlink planted there is never followed), fsync it, rename it over `p` (rename replaces a
 * symlink at `p` itself, never its target). Not followed by a directory fsync: for small records where losing the
 * newest version in a power cut is acceptable.
 * @throws Node system errors unchanged (EROFS, ENOSPC, EACCES...); the tmp file is removed then
 */
export function replaceFileNoFollow(p: string, data: string | Buffer, mode = 0o600): void {
  const tmp = `${p}.tmp`;
  removeFileIfPresent(tmp);
  const fd = openNoFollow(tmp, { access: 'write', exclusive: true, mode });
  try {
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      let done = 0;
      while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, p);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Remove the marker file `p` if it is there, never following a symlink (unlink removes a link itself).
 * @throws Node system errors other than ENOENT
 */
export function removeFileIfPresent(p: string): void {
  try {
    fs.unlinkSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * The opener of the daemon's and fsck's log file (util/log.ts `attachFile`): append, create 0600, O_NOFOLLOW.
 * @throws Node system errors unchanged (ELOOP for a symlink)
 */
export function openLogFileNoFollow(p: string): number {
  return openNoFollow(p, { access: 'append', create: true, mode: 0o600 });
}
