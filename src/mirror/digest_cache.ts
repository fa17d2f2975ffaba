/**
 * The pass's digest cache (issue 7 benchmark; mirroring spec §4.6 step 5 digests): a persistent map, under
 * `<parent>/ddfsmirror/digest-cache`, from the identity of a UFS file as lstat sees it — (dev, ino, size on disk,
 * mtime ns, ctime ns) — to its logical size and content digest, so an unchanged file's node list is not read again
 * by the next pass. Only the digests of a PASS (the master's DIGESTQ, the slave's DIGESTA) use it; verify never does
 * (§4.11 independence: verify and --deep compute from node lists).
 *
 * File format (integers little-endian):
 *
 * | offset   | size | description                                                                       |
 * |----------|------|-----------------------------------------------------------------------------------|
 * | 0        | 8    | ASCII `DDMDCAC1` (magic and version)                                              |
 * | 8        | 4    | hash_size of the volume (a cache of another geometry is not used)                 |
 * | 12       | 4    | N = entry count (≤ MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX)                           |
 * | 16       | 80·N | entries: dev u64, ino u64, size on disk u64, mtime ns i64, ctime ns i64, logical size u64, content digest 32 |
 * | 16+80·N  | 32   | SHA-256 of every byte before it                                                   |
 *
 * Invariants:
 * - A rewrite of a UFS file always changes its key: ctime cannot be set by users and changes on every write, chmod,
 *   chown, utimens and rename of the file. Timestamps are coarse (a kernel tick), so an entry is only KEPT when the
 *   file's ctime is older than the pass's start by MIRROR_DIGEST_CACHE_RACY_MS: a change in the same tick as the
 *   read that filled it could otherwise keep the key ("racily clean", as git's index).
 * - A damaged file (bad magic, length, checksum, or another hash_size) is ignored whole: the pass computes every
 *   digest from node lists, as without a cache. The file is written atomically (temp, fsync, rename), bounded, and
 *   holds only the entries seen by the pass that wrote it (deleted files drop out).
 * - A lookup miss is never an error; the cache never answers for a directory, symlink or special file.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX, MIRROR_DIGEST_CACHE_RACY_MS } from '../limits.js';
import { lstatOrNull, readNoFollow, writeAtomic } from '../io/mirror_fs.js';
import { pathBytes } from '../util/path_text.js';
import { mirrorDirectory } from './state.js';

const MAGIC = Buffer.from('DDMDCAC1', 'latin1');
const HEAD_SIZE = 16;
const ENTRY_SIZE = 80;
const SUM_SIZE = 32;
const CACHE_NAME = 'digest-cache';
const NS_PER_MS = 1_000_000n;

/** The lstat identity of a UFS file: what must be equal for a cached digest to be used. */
export interface UfsFileIdentity {
  dev: number;
  ino: bigint;
  /** st_size of the UFS file (header and node list), not the logical size. */
  sizeOnDiskBytes: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** What the cache gives for a file: its logical size and content digest (digest.ts byte table). */
export interface CachedFileDigest {
  sizeBytes: number;
  contentDigest: Buffer;
}

function keyOf(id: UfsFileIdentity): string {
  return `${id.dev}:${id.ino}:${id.sizeOnDiskBytes}:${id.mtimeNs}:${id.ctimeNs}`;
}

/** Counters of one pass's use of the cache (tests prove hits and misses with them). */
export interface DigestCacheCounters {
  hits: number;
  misses: number;
}

/**
 * The digest cache of one volume for one pass: loaded at open, looked up and filled by VolumeDigests, saved at the
 * end of the pass.
 */
export class DigestCache {
  readonly counters: DigestCacheCounters = { hits: 0, misses: 0 };
  /** Entries of the file read at open. */
  private readonly loaded = new Map<string, { id: UfsFileIdentity; value: CachedFileDigest }>();
  /** Entries seen (hit or computed) by this pass and old enough to keep: what save() writes. */
  private readonly seen = new Map<string, { id: UfsFileIdentity; value: CachedFileDigest }>();
  /**
   * Every digest computed by this pass, racy or not: the tree is stable under the volume lock for the pass (only the
   * pass itself changes the slave, each file it places is a new inode), so a second request in the same pass (the
   * listing after the first walk, a DIGESTQ) is answered without reading the node list again. Not saved.
   */
  private readonly memo = new Map<string, CachedFileDigest>();
  private readonly racyBeforeNs: bigint;

  private constructor(private readonly parentDir: string, private readonly hashSize: number, startNs: bigint) {
    this.racyBeforeNs = startNs - BigInt(MIRROR_DIGEST_CACHE_RACY_MS) * NS_PER_MS;
  }

  /**
   * Open the cache of the volume at `parentDir` (a missing or damaged file gives an empty cache). Its file is read
   * at the first lookup, not here: an incremental pass, which never looks up, does not decode it.
   * @param startNs the pass's start, ns since the epoch: entries of files changed after startNs − racy margin are not kept
   */
  static open(parentDir: string, hashSize: number, startNs: bigint = BigInt(Date.now()) * NS_PER_MS): DigestCache {
    return new DigestCache(path.resolve(parentDir), hashSize, startNs);
  }

  private read = false;

  /** Read and decode the file once (at the first lookup). */
  private load(): void {
    if (this.read) return;
    this.read = true;
    let bytes: Buffer | null = null;
    try {
      bytes = readNoFollow(this.file());
    } catch {
      bytes = null; // a symlink or unreadable file: ignored
    }
    if (bytes !== null) this.decode(bytes);
  }

  private file(): string {
    return path.join(mirrorDirectory(this.parentDir), CACHE_NAME);
  }

  private decode(bytes: Buffer): void {
    if (bytes.length < HEAD_SIZE + SUM_SIZE || !bytes.subarray(0, 8).equals(MAGIC)) return;
    if (bytes.readUInt32LE(8) !== this.hashSize) return;
    const n = bytes.readUInt32LE(12);
    if (n > MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX || bytes.length !== HEAD_SIZE + n * ENTRY_SIZE + SUM_SIZE) return;
    const body = bytes.subarray(0, HEAD_SIZE + n * ENTRY_SIZE);
    if (!createHash('sha256').update(body).digest().equals(bytes.subarray(body.length))) return;
    for (let k = 0; k < n; k++) {
      const at = HEAD_SIZE + k * ENTRY_SIZE;
      const id: UfsFileIdentity = {
        dev: Number(bytes.readBigUInt64LE(at)),
        ino: bytes.readBigUInt64LE(at + 8),
        sizeOnDiskBytes: Number(bytes.readBigUInt64LE(at + 16)),
        mtimeNs: bytes.readBigInt64LE(at + 24),
        ctimeNs: bytes.readBigInt64LE(at + 32),
      };
      const value = { sizeBytes: Number(bytes.readBigUInt64LE(at + 40)), contentDigest: Buffer.from(bytes.subarray(at + 48, at + 80)) };
      this.loaded.set(keyOf(id), { id, value });
    }
  }

  /** The cached digest of the file with identity `id`, or null (a miss). */
  lookup(id: UfsFileIdentity): CachedFileDigest | null {
    const key = keyOf(id);
    const m = this.memo.get(key);
    if (m !== undefined) {
      this.counters.hits++;
      return m;
    }
    this.load();
    const e = this.seen.get(key) ?? this.loaded.get(key);
    if (e === undefined) {
      this.counters.misses++;
      return null;
    }
    this.counters.hits++;
    this.keep(key, e.id, e.value);
    return e.value;
  }

  /** Record the digest just computed from the node list of the file with identity `id`. */
  store(id: UfsFileIdentity, value: CachedFileDigest): void {
    const copy = { sizeBytes: value.sizeBytes, contentDigest: Buffer.from(value.contentDigest) };
    if (this.memo.size < MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX) this.memo.set(keyOf(id), copy);
    this.keep(keyOf(id), id, copy);
  }

  private keep(key: string, id: UfsFileIdentity, value: CachedFileDigest): void {
    if (id.ctimeNs >= this.racyBeforeNs || id.mtimeNs >= this.racyBeforeNs) return; // racily clean: not kept
    if (this.seen.size >= MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX && !this.seen.has(key)) return;
    this.seen.set(key, { id, value });
  }

  /**
   * Write the entries seen by this pass, atomically, when `ddfsmirror/` exists (nothing is created for it).
   * @throws Node errors of the write (the caller may ignore them: a cache not written costs only time)
   */
  save(): void {
    const dir = mirrorDirectory(this.parentDir);
    if (lstatOrNull(pathBytes(dir))?.kind !== 'dir') return;
    const n = this.seen.size;
    const out = Buffer.alloc(HEAD_SIZE + n * ENTRY_SIZE + SUM_SIZE);
    MAGIC.copy(out, 0);
    out.writeUInt32LE(this.hashSize, 8);
    out.writeUInt32LE(n, 12);
    let at = HEAD_SIZE;
    for (const { id, value } of this.seen.values()) {
      out.writeBigUInt64LE(BigInt(id.dev), at);
      out.writeBigUInt64LE(id.ino, at + 8);
      out.writeBigUInt64LE(BigInt(id.sizeOnDiskBytes), at + 16);
      out.writeBigInt64LE(id.mtimeNs, at + 24);
      out.writeBigInt64LE(id.ctimeNs, at + 32);
      out.writeBigUInt64LE(BigInt(value.sizeBytes), at + 40);
      value.contentDigest.copy(out, at + 48);
      at += ENTRY_SIZE;
    }
    createHash('sha256').update(out.subarray(0, at)).digest().copy(out, at);
    // two master passes of one volume may save at once (a shared volume lock): each writes its own temp
    writeAtomic(dir, CACHE_NAME, out, 0o600, true);
  }
}
