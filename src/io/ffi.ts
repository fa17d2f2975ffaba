/**
 * The one importer of koffi (the C foreign-function interface): native libraries the product calls directly
 * (libgcrypt's TIGER in store/hash.ts; glibc's utimensat, mknod, syncfs, lseek, the l*xattr calls and sendto in io/)
 * are loaded through here.
 *
 * koffi itself (a 2 MB native addon) is loaded at the first native call, not when this module is imported: a command
 * that never calls a native function (`--version`, `--help`, mirrorddumbfs status) does not pay for it (issue 9).
 * It is loaded with require(), synchronous like the callers. The bundled commands (scripts/build-bundle.mjs) keep
 * koffi external: this finds the installed package from the bundle's directory as from dist/io/.
 */
import { createRequire } from 'node:module';
import type Koffi from 'koffi';

/** A loaded native library: declare a function by its C prototype, then call it. */
export type NativeLibrary = ReturnType<typeof Koffi.load>;

let koffiModule: typeof Koffi | null = null;

/** koffi, loaded on the first call (its CommonJS entry, synchronously). */
function koffi(): typeof Koffi {
  koffiModule ??= createRequire(import.meta.url)('koffi') as typeof Koffi;
  return koffiModule;
}

/**
 * Load a shared library by soname (`libc.so.6`).
 * @throws Error from the dynamic loader when it cannot be found
 */
export function loadNativeLibrary(soname: string): NativeLibrary {
  return koffi().load(soname);
}

/**
 * Load koffi in this thread now, if it is not loaded yet. A thread that starts worker threads which load koffi too
 * calls it first, and starts them one after another: two threads initializing koffi at the same moment can abort
 * the process ("FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw" in the addon's registration; koffi
 * issue #190), which a copy did in about 1 run in 12 with two census threads.
 * @throws Error when koffi cannot be loaded
 */
export function loadKoffiHere(): void {
  koffi();
}

/** errno as the last native call through koffi left it (read right after the call). */
export function lastNativeErrno(): number {
  return koffi().errno();
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
