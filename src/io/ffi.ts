/**
 * The one importer of koffi (the C foreign-function interface): native libraries the product calls directly
 * (libgcrypt's TIGER in store/hash.ts, glibc's utimensat and mknod in io/libc.ts) are loaded through here.
 */
import koffi from 'koffi';

/** A loaded native library: declare a function by its C prototype, then call it. */
export type NativeLibrary = ReturnType<typeof koffi.load>;

/**
 * Load a shared library by soname (`libc.so.6`).
 * @throws Error from the dynamic loader when it cannot be found
 */
export function loadNativeLibrary(soname: string): NativeLibrary {
  return koffi.load(soname);
}

/** errno as the last native call through koffi left it (read right after the call). */
export function lastNativeErrno(): number {
  return koffi.errno();
}
