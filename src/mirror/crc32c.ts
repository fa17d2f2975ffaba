/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every DDMS record (mirroring spec §4.5,
 * §4.17). Node's `zlib.crc32` is CRC-32/IEEE and must not be used for this.
 *
 * The only importer of hash-wasm. hash-wasm compiles its WebAssembly asynchronously, so the API is
 * "async once, sync after" (and the module itself is imported by the first load): `await Crc32c.load()` resolves to a checksummer whose `compute()` is synchronous.
 * Callers load it once (the stream encoder and decoder factories do) and then checksum every record without
 * awaiting. load() caches one promise per process; each Crc32c owns its own wasm hasher.
 *
 * Invariants: `compute(parts)` equals the CRC32C of the concatenation of `parts` (no copy is made); it never
 * yields to the event loop, so a hasher is never shared by two interleaved computations (one JS thread).
 * Values are unsigned 32-bit numbers; on the DDMS wire they are written little-endian.
 */
import type { createCRC32, IHasher } from 'hash-wasm';

type CreateCrc32 = typeof createCRC32;

/** The reflected Castagnoli polynomial (RFC 3720 §12.1, B.4). */
export const CRC32C_POLYNOMIAL = 0x82f63b78;

let loading: Promise<Crc32c> | null = null;

/**
 * Only hash-wasm's CRC build (7 KB, ~20 ms to load and compile): its index bundles every algorithm (280 KB, ~95 ms),
 * the biggest item of module loading in an incremental pass's profile. That file has no type declarations: the
 * package's own type of createCRC32 is asserted.
 */
function importCrc32Build(): Promise<{ default: { createCRC32: CreateCrc32 } }> {
  // @ts-expect-error TS7016: a UMD file of the package without a .d.ts of its own
  return import('hash-wasm/dist/crc32.umd.min.js') as Promise<{ default: { createCRC32: CreateCrc32 } }>;
}

/** A loaded CRC32C checksummer: synchronous after `Crc32c.load()`. */
export class Crc32c {
  private constructor(private readonly hasher: IHasher) {}

  /**
   * The process-wide checksummer, compiling hash-wasm's CRC module on the first call.
   * @throws whatever WebAssembly instantiation throws (not expected on Node 20)
   */
  static load(): Promise<Crc32c> {
    // imported here, not at the top: loading hash-wasm costs ~0.1 s, which every command importing the mirror
    // modules (fsckddumbfs, the daemon) paid at startup even when it never checksums a record
    loading ??= importCrc32Build().then(({ default: { createCRC32 } }) => createCRC32(CRC32C_POLYNOMIAL)).then(
      (hasher) => new Crc32c(hasher),
      (err: unknown) => {
        loading = null;
        throw err;
      },
    );
    return loading;
  }

  /**
   * CRC32C of the concatenation of `parts`, as an unsigned 32-bit number.
   * @param parts byte ranges checksummed in order (subarrays are fine; nothing is copied on the JS side)
   */
  compute(...parts: Uint8Array[]): number {
    this.hasher.init();
    for (const part of parts) if (part.length > 0) this.hasher.update(part);
    const digest = this.hasher.digest('binary');
    // hash-wasm renders the CRC value most significant byte first.
    return ((digest[0]! << 24) | (digest[1]! << 16) | (digest[2]! << 8) | digest[3]!) >>> 0;
  }
}
