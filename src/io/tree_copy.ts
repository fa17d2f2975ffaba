/**
 * Copying a host tree entry by entry with everything lstat shows (migrateddumbfs, volume/migrate.ts): directories,
 * hard links, symlinks, FIFOs, sockets and device nodes made like their source, then owner, extended attributes,
 * mode and ns times copied onto them. Regular files' contents are the caller's (a UFS file is re-encoded, not copied).
 *
 * Paths are Buffers of raw bytes, never decoded; nothing follows a symlink at the last component.
 */
import * as fs from 'node:fs';
import { DdfsError, messageOf } from '../errors.js';
import { makeNode, setTimesNoFollow } from './libc.js';
import { setOwner } from './mirror_fs.js';
import { readAllXattrs, setXattr } from './xattr.js';

/** What a copy needs to know of a source entry (lstat, bigint: ns times and 64-bit inodes). */
export type SourceStat = fs.BigIntStats;

/** lstat of `p` with bigint fields. @throws Node system errors */
export function lstatSource(p: Buffer): SourceStat {
  return fs.lstatSync(p, { bigint: true });
}

/** Whether `st` is a directory, a regular file, a symlink, or something else (FIFO, socket, device). */
export function sourceKind(st: SourceStat): 'directory' | 'file' | 'symlink' | 'other' {
  return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/** Make the directory `to` (mode 0700 until copyMetadata gives it its own). @throws Node system errors */
export function makeDirectoryFor(to: Buffer): void {
  fs.mkdirSync(to, { mode: 0o700 });
}

/** link(2) `to` to the existing `existing`. @throws Node system errors */
export function makeHardLinkTo(existing: Buffer, to: Buffer): void {
  fs.linkSync(existing, to);
}

/** A symlink `to` with the target bytes of the symlink `from`. @throws Node system errors */
export function copySymlink(from: Buffer, to: Buffer): void {
  fs.symlinkSync(fs.readlinkSync(from, { encoding: 'buffer' }), to);
}

/** mknod(2) `to` of the type (FIFO, socket, device with its number) of `st`. @throws Node-style system errors */
export function makeSpecialLike(to: Buffer, st: SourceStat): void {
  makeNode(to, Number(st.mode), st.isCharacterDevice() || st.isBlockDevice() ? st.rdev : 0n);
}

/**
 * Owner, extended attributes (every namespace the process can read), mode (not of a symlink) and atime/mtime (ns)
 * of `from` onto `to` (the attributes `keepXattr` accepts), in that order: chown clears set-id bits and file capabilities, and the mode comes after the
 * ACL attributes so both agree. An owner that cannot be set without privilege stays the process's.
 * @throws DdfsError IO naming both paths and the cause
 */
export function copyMetadata(from: Buffer, to: Buffer, st: SourceStat, keepXattr: (name: Buffer) => boolean = () => true): void {
  try {
    setOwner(to, Number(st.uid), Number(st.gid));
    for (const x of readAllXattrs(from, keepXattr)) setXattr(to, x.name, x.value);
    if (!st.isSymbolicLink()) fs.chmodSync(to, Number(st.mode & 0o7777n));
    setTimesNoFollow(to, st.atimeNs, st.mtimeNs);
  } catch (err) {
    throw new DdfsError('IO', `${to.toString('latin1')}: cannot copy the metadata of ${from.toString('latin1')}: ${messageOf(err)}`, { path: to }, err);
  }
}

/** Remove the file `p` if present. @throws Node system errors other than ENOENT */
export function removeFileQuietly(p: Buffer): void {
  fs.rmSync(p, { force: true });
}

/** The names of directory `dir` (strings: the special directory's names are ASCII). @returns [] when unreadable */
export function namesOf(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Copy the regular file `from` to the new file `to` (not following symlinks: a source that is not a regular file
 * is skipped), keeping its permission bits.
 * @returns false when `from` is not a regular file
 * @throws Node system errors (EEXIST when `to` exists)
 */
export function copyPlainFile(from: string, to: string): boolean {
  const st = fs.lstatSync(from);
  if (!st.isFile()) return false;
  fs.copyFileSync(from, to, fs.constants.COPYFILE_EXCL);
  fs.chmodSync(to, st.mode & 0o7777);
  return true;
}

/** The entries of the directory `dir` other than `except`. @throws Node system errors */
export function entriesExcept(dir: string, except: string): string[] {
  return fs.readdirSync(dir).filter((n) => n !== except);
}

/** Whether `p` exists (lstat: a dangling symlink exists). */
export function entryExists(p: string): boolean {
  return fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;
}
