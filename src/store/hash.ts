/**
 * Block hashes (spec §6): TIGER (Tiger/192, 3 passes, mhash byte order), TIGER160 and TIGER128 (prefixes of it) and
 * SHA1. A block is always hashed at its full block size (a short last block is zero-padded by the caller).
 *
 * TIGER comes from libgcrypt's GCRY_MD_TIGER (algorithm 6), which emits each 64-bit state word most-significant byte
 * first: exactly mhash's order that ddumbfs stores. libgcrypt is loaded through io/ffi.ts. SHA1 comes from node:crypto.
 */
import { createHash } from 'node:crypto';
import { loadNativeLibrary, type NativeLibrary } from '../io/ffi.js';
import { DdfsError } from '../errors.js';
import type { HashName } from '../format/config.js';
import { HASH_SIZES } from '../format/config.js';

const GCRY_MD_TIGER = 6;
const GCRYCTL_DISABLE_SECMEM = 37;
const GCRYCTL_INITIALIZATION_FINISHED = 38;

type HashBufferFn = (algo: number, digest: Buffer, data: Buffer, length: number) => void;
let gcryHashBuffer: HashBufferFn | null = null;

function loadGcrypt(): HashBufferFn {
  if (gcryHashBuffer) return gcryHashBuffer;
  let lib: NativeLibrary;
  try {
    lib = loadNativeLibrary('libgcrypt.so.20');
  } catch (err) {
    throw new DdfsError('NOT_SUPPORTED', 'libgcrypt.so.20 not found: install the libgcrypt20 package', {}, err);
  }
  const checkVersion = lib.func('const char *gcry_check_version(const char *req)');
  const control = lib.func('int gcry_control(int cmd, ...)');
  checkVersion(null);
  control(GCRYCTL_DISABLE_SECMEM, 'int', 0);
  control(GCRYCTL_INITIALIZATION_FINISHED, 'int', 0);
  gcryHashBuffer = lib.func('void gcry_md_hash_buffer(int algo, _Out_ uint8_t *digest, const uint8_t *buffer, size_t length)') as HashBufferFn;
  return gcryHashBuffer;
}

/** A hash function bound to one algorithm. */
export interface BlockHasher {
  readonly name: HashName;
  /** Bytes per hash as stored in nodes. */
  readonly hashSize: number;
  /**
   * Hash `data` (any length; for blocks, exactly block_size bytes) and write hashSize bytes into `out` at `outOffset`.
   * @returns `out`
   */
  hashInto(data: Buffer, out: Buffer, outOffset: number): Buffer;
  /** Hash `data` into a new Buffer of hashSize bytes. */
  hash(data: Buffer): Buffer;
}

class TigerHasher implements BlockHasher {
  readonly hashSize: number;
  private readonly digest = Buffer.alloc(24);
  private readonly fn = loadGcrypt();
  constructor(readonly name: HashName) {
    this.hashSize = HASH_SIZES[name];
  }
  hashInto(data: Buffer, out: Buffer, outOffset: number): Buffer {
    // koffi passes a view's own bytes, so `data` may be a subarray of a larger request buffer.
    this.fn(GCRY_MD_TIGER, this.digest, data, data.length);
    this.digest.copy(out, outOffset, 0, this.hashSize);
    return out;
  }
  hash(data: Buffer): Buffer {
    return this.hashInto(data, Buffer.alloc(this.hashSize), 0);
  }
}

class Sha1Hasher implements BlockHasher {
  readonly name: HashName = 'SHA1';
  readonly hashSize = 20;
  hashInto(data: Buffer, out: Buffer, outOffset: number): Buffer {
    createHash('sha1').update(data).digest().copy(out, outOffset);
    return out;
  }
  hash(data: Buffer): Buffer {
    return createHash('sha1').update(data).digest();
  }
}

/**
 * A hasher for one of the format's algorithms (spec §6).
 * @throws DdfsError NOT_SUPPORTED when libgcrypt cannot be loaded for a TIGER variant
 */
export function createHasher(name: HashName): BlockHasher {
  return name === 'SHA1' ? new Sha1Hasher() : new TigerHasher(name);
}
