/**
 * The one importer of koffi (the C foreign-function interface): native libraries the product calls directly
 * (libgcrypt's TIGER in store/hash.ts; glibc's utimensat, mknod, syncfs, lseek, the l*xattr calls and sendto in io/)
 * are loaded through here.
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

/**
 * Functions of a shared library declared by their C prototypes and bound at the first call of the returned getter
 * (so a module that declares them costs nothing until it is used, and a missing library fails where it is needed).
 * `prototypes` maps a name of the result to a prototype, e.g. `{ syncfs: 'int syncfs(int fd)' }`.
 * @returns a getter of the bound functions (the same object every time)
 * @throws Error from the dynamic loader or koffi's prototype parser, at the getter's first call
 */
export function nativeFunctions<T extends Record<string, unknown>>(soname: string, prototypes: { [K in keyof T]: string }): () => T {
  let bound: T | null = null;
  return () => {
    if (bound !== null) return bound;
    const lib = loadNativeLibrary(soname);
    const out: Record<string, unknown> = {};
    for (const [name, prototype] of Object.entries(prototypes)) out[name] = lib.func(prototype as string);
    bound = out as T;
    return bound;
  };
}
