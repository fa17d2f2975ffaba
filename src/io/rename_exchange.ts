/**
 * renameat2(2) with RENAME_EXCHANGE: swap two directory entries in one atomic step, so that at every instant each
 * name holds one of the two objects (resizeddumbfs swaps the old and the new volume directory with it). glibc's,
 * called through io/ffi.ts. Paths are raw bytes or strings (NUL-terminated here), never followed at the last
 * component (rename never follows).
 */
import { constants as osc } from 'node:os';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

type Renameat2Fn = (olddirfd: number, oldpath: Buffer, newdirfd: number, newpath: Buffer, flags: number) => number;
const libc = nativeFunctions<{ renameat2: Renameat2Fn }>('libc.so.6', {
  renameat2: 'int renameat2(int olddirfd, const uint8_t *oldpath, int newdirfd, const uint8_t *newpath, unsigned int flags)',
});

function cPath(p: Buffer | string): Buffer {
  return Buffer.concat([typeof p === 'string' ? Buffer.from(p, 'utf8') : p, Buffer.alloc(1)]);
}

/**
 * Atomically exchange the entries `a` and `b` (both must exist, on one file system).
 * @throws a Node-style system error (code, errno, syscall): EINVAL or ENOSYS when the file system or kernel has no
 *   RENAME_EXCHANGE, ENOENT, EXDEV, EACCES...
 */
export function exchangeEntries(a: Buffer | string, b: Buffer | string): void {
  if (libc().renameat2(AT_FDCWD, cPath(a), AT_FDCWD, cPath(b), RENAME_EXCHANGE) === 0) return;
  const errno = lastNativeErrno();
  const code = Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? 'EIO';
  throw Object.assign(new Error(`${code}: renameat2 RENAME_EXCHANGE '${String(a)}' '${String(b)}'`), { errno: -errno, code, syscall: 'renameat2' });
}
