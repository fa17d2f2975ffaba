/**
 * Extended attributes of host files (the UFS files, directories and symlinks under ddfsroot), which Node cannot
 * reach: glibc's lgetxattr(2), lsetxattr(2), llistxattr(2) and lremovexattr(2), called through io/ffi.ts. The l*
 * variants never follow a symlink at the last component: an attribute set on a symlink of the mount lands on the
 * UFS symlink itself, as on any file system.
 *
 * Paths and attribute names are Buffers of raw bytes (NUL-terminated here), never decoded; values are bytes.
 * Failures throw Node-style system errors (code, errno, syscall) as node:fs does: ENODATA (no such attribute),
 * ERANGE (the value or list is larger than the buffer given), E2BIG (a value larger than the host allows),
 * ENOTSUP (the host file system or namespace has no extended attributes), EEXIST / ENODATA for XATTR_CREATE /
 * XATTR_REPLACE, ENOENT, EACCES, EPERM...
 */
import { constants as osc } from 'node:os';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

/** setxattr flag: fail with EEXIST when the attribute exists (sys/xattr.h). */
export const XATTR_CREATE = 1;
/** setxattr flag: fail with ENODATA when the attribute does not exist (sys/xattr.h). */
export const XATTR_REPLACE = 2;
/** Linux XATTR_SIZE_MAX: the largest value or name list the kernel moves in one call (bytes). */
export const XATTR_LIST_SIZE_MAX = 65536;

type GetFn = (path: Buffer, name: Buffer, value: Buffer | null, size: number) => number;
type SetFn = (path: Buffer, name: Buffer, value: Buffer, size: number, flags: number) => number;
type ListFn = (path: Buffer, list: Buffer | null, size: number) => number;
type RemoveFn = (path: Buffer, name: Buffer) => number;
type XattrCalls = {
  get: GetFn;
  set: SetFn;
  list: ListFn;
  remove: RemoveFn;
};
const libc = nativeFunctions<XattrCalls>('libc.so.6', {
  get: 'long lgetxattr(const uint8_t *path, const uint8_t *name, _Out_ uint8_t *value, size_t size)',
  set: 'int lsetxattr(const uint8_t *path, const uint8_t *name, const uint8_t *value, size_t size, int flags)',
  list: 'long llistxattr(const uint8_t *path, _Out_ uint8_t *list, size_t size)',
  remove: 'int lremovexattr(const uint8_t *path, const uint8_t *name)',
});

function cString(b: Buffer): Buffer {
  return Buffer.concat([b, Buffer.alloc(1)]);
}

/** A Node-style system error for the errno of the last call. */
function systemError(syscall: string, p: Buffer, name?: Buffer): NodeJS.ErrnoException {
  const errno = lastNativeErrno();
  // ENOTSUP and EOPNOTSUPP are the same number on Linux: name it as the man pages of xattr do
  const code = errno === osc.errno.ENOTSUP ? 'ENOTSUP' : (Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? 'EIO');
  const what = name ? ` ${name.toString('latin1')}` : '';
  return Object.assign(new Error(`${code}: ${syscall} '${p.toString('latin1')}'${what}`), { errno: -errno, code, syscall });
}

/**
 * The value of attribute `name` of `p` (not following a symlink).
 * @param sizeMax the caller's buffer size in bytes: a larger value throws ERANGE (the size-probe protocol of
 *   getxattr(2): the caller asks again with a buffer of the size `xattrSize` gave)
 * @throws ENODATA when `p` has no such attribute; ERANGE; ENOTSUP; ENOENT...
 */
export function getXattr(p: Buffer, name: Buffer, sizeMax = XATTR_LIST_SIZE_MAX): Buffer {
  const c = libc();
  const cp = cString(p);
  const cn = cString(name);
  const out = Buffer.alloc(Math.min(sizeMax, XATTR_LIST_SIZE_MAX));
  const n = c.get(cp, cn, out, out.length);
  if (n < 0) throw systemError('lgetxattr', p, name);
  return out.subarray(0, n);
}

/**
 * The size in bytes of the value of attribute `name` of `p` (getxattr(2) with size 0).
 * @throws ENODATA when `p` has no such attribute; ENOTSUP; ENOENT...
 */
export function xattrSize(p: Buffer, name: Buffer): number {
  const n = libc().get(cString(p), cString(name), null, 0);
  if (n < 0) throw systemError('lgetxattr', p, name);
  return n;
}

/**
 * Set attribute `name` of `p` to `value` (not following a symlink).
 * @param flags 0, XATTR_CREATE or XATTR_REPLACE
 * @throws EEXIST (XATTR_CREATE and it exists), ENODATA (XATTR_REPLACE and it does not), E2BIG, ENOSPC, ENOTSUP,
 *   EPERM (user.* on a symlink, trusted.* without CAP_SYS_ADMIN)...
 */
export function setXattr(p: Buffer, name: Buffer, value: Buffer, flags = 0): void {
  if (libc().set(cString(p), cString(name), value, value.length, flags) !== 0) throw systemError('lsetxattr', p, name);
}

/**
 * Remove attribute `name` of `p` (not following a symlink).
 * @throws ENODATA when there is no such attribute; ENOTSUP; EPERM...
 */
export function removeXattr(p: Buffer, name: Buffer): void {
  if (libc().remove(cString(p), cString(name)) !== 0) throw systemError('lremovexattr', p, name);
}

/**
 * The attribute names of `p` (not following a symlink), in the host's order, each without its NUL. A host
 * without extended attributes gives an empty list.
 * @throws ENOENT, EACCES...; ERANGE only if the list keeps growing between two calls (retried a few times first)
 */
export function listXattrs(p: Buffer): Buffer[] {
  const c = libc();
  const cp = cString(p);
  for (let attempt = 0; ; attempt++) {
    const size = c.list(cp, null, 0);
    if (size < 0) {
      if (lastNativeErrno() === osc.errno.ENOTSUP) return [];
      throw systemError('llistxattr', p);
    }
    if (size === 0) return [];
    const out = Buffer.alloc(size);
    const n = c.list(cp, out, size);
    if (n < 0) {
      // the list grew between the two calls: ask for its size again
      if (lastNativeErrno() === osc.errno.ERANGE && attempt < 3) continue;
      throw systemError('llistxattr', p);
    }
    const names: Buffer[] = [];
    let start = 0;
    for (let i = 0; i < n; i++) {
      if (out[i] !== 0) continue;
      if (i > start) names.push(Buffer.from(out.subarray(start, i)));
      start = i + 1;
    }
    return names;
  }
}

/** One extended attribute: raw name bytes and value. */
export interface XattrEntry {
  name: Buffer;
  value: Buffer;
}

/**
 * Every extended attribute of `p` (not following a symlink) whose name `keep` accepts, sorted by name bytes
 * (Buffer.compare): what a mirror ships and digests. One llistxattr when there are none.
 * @throws ENOENT, EACCES...; an attribute removed between the list and its read is left out
 */
export function readAllXattrs(p: Buffer, keep: (name: Buffer) => boolean = () => true): XattrEntry[] {
  const out: XattrEntry[] = [];
  for (const name of listXattrs(p)) {
    if (!keep(name)) continue;
    try {
      out.push({ name, value: Buffer.from(getXattr(p, name)) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENODATA') throw err;
    }
  }
  return out.sort((a, b) => Buffer.compare(a.name, b.name));
}
