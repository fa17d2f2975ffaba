/**
 * mlock(2) of Buffers (glibc's, through io/ffi.ts): what ddumbfs 1.1's `-o lock_index` does with the bitmap and the
 * node table (spec §8.1), so that index lookups never wait for a page to come back from swap. The memory of a
 * Buffer of this size is allocated outside the JavaScript heap and never moved, so its pages stay the ones locked.
 */
import { constants as osc } from 'node:os';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

type MlockFn = (addr: Uint8Array, len: number) => number;
const libc = nativeFunctions<{ mlock: MlockFn }>('libc.so.6', {
  mlock: 'int mlock(const uint8_t *addr, size_t len)',
});

/**
 * Lock the pages of every buffer of `buffers` into RAM.
 * @returns null when every buffer is locked, else the errno name of the first failure (ENOMEM past RLIMIT_MEMLOCK,
 *   EPERM without CAP_IPC_LOCK); the buffers locked before it stay locked
 */
export function lockInMemory(buffers: Iterable<Uint8Array>): string | null {
  const c = libc();
  for (const b of buffers) {
    if (b.length === 0) continue;
    if (c.mlock(b, b.length) !== 0) {
      const errno = lastNativeErrno();
      return Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    }
  }
  return null;
}
