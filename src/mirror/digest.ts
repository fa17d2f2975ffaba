/**
 * Merkle digests of a volume's UFS tree (mirroring spec §4.11, §4.6 step 5): what `mirrorddumbfs verify` compares and
 * what DIGESTQ/DIGESTA (§4.5) will carry. Computed from node lists and metadata only: no block is read (except with
 * `deep`, the scrub of §4.11, which re-hashes every referenced block).
 *
 * Entry digest = SHA-256 over (all integers little-endian):
 *
 * | offset | size | description                                                                  |
 * |--------|------|------------------------------------------------------------------------------|
 * | 0      | 8    | ASCII `DDVRFYE1` (domain tag and encoding version)                           |
 * | 8      | 1    | kind: 1 file, 2 directory, 3 symlink, 4 FIFO, 5 char device, 6 block device, 7 socket |
 * | 9      | 4    | mode & 0o7777 (permission, setuid/setgid/sticky bits; the type is the kind)  |
 * | 13     | 4    | uid                                                                          |
 * | 17     | 4    | gid                                                                          |
 * | 21     | 1    | 1 when mtime is compared, else 0 (directories: always 0)                     |
 * | 22     | 8    | mtime in ns since the epoch, signed (0 when not compared)                    |
 * | 30     | 8    | size in bytes (file; 0 for every other kind)                                 |
 * | 38     | 8    | rdev (char and block devices; 0 for every other kind)                        |
 * | 46     | 4    | L = length of the link group (0 when the file has one name)                  |
 * | 50     | L    | link group: the first path of the file's hard-link group, canonical order    |
 * | 50+L   | 32   | content digest of the kind (below)                                           |
 * | 82+L   | ...  | only when the entry has extended attributes, and then the tag is `DDVRFYE2`: u32 count, then |
 * |        |      | per attribute in raw byte order of names: u8 name length, name, u32 value length, value      |
 *
 * An entry without extended attributes keeps its `DDVRFYE1` digest (digests of trees without them are unchanged);
 * an attribute set or removed changes the entry's digest and its directories' (spec §4.11: xattrs are in the file
 * digest; here in every kind's). Attributes of RESERVED_XATTR_PREFIXES are never in a digest.
 *
 * Content digests, SHA-256 over:
 * - file: `DDVRFYF1`, u64 node count n = ceil(size / block_size), u8 hash_size, then n hashes of hash_size bytes in
 *   order. A zero block is written in canonical form, the hash of a zero block: a node whose address is 0 (a hole or
 *   a written zero block, whatever its hash bytes), a node holding the zero-block hash, and a node past the end of
 *   the node list. Nodes past n are not content. A lost block (address 1) keeps its hash here: the content it should
 *   hold is known, and verify reports the loss as CORRUPT, not as a difference.
 * - directory: `DDVRFYD1`, u64 entry count, then per entry in raw byte order of names (Buffer.compare):
 *   u16 name length, name bytes, the entry's 32-byte digest.
 * - symlink: `DDVRFYS1`, u32 target length, target bytes.
 * - FIFO, device, socket: `DDVRFYX1` (their facts are in the entry header).
 *
 * Invariants:
 * - Names and paths are bytes, never decoded. A digest never depends on readdir order, inode numbers, block
 *   addresses or the volume's uuid: two volumes holding the same tree give the same digests.
 * - Hard links: a link group is the set of names of one inode within one volume (files whose nlink > 1); its
 *   identity in digests is the group's first path in canonical order (a pre-order walk with names sorted bytewise,
 *   spec §4.5), found by one walk of the tree before any digest is given out.
 * - The volume is opened read-only and nothing of it is written; no claim, state or journal is read (§4.11).
 *   A mounted volume is read from its UFS tree the same way: its daemon's index lives in memory and the index file
 *   may lag behind it, so an index miss is not reported as DANGLING for it, and the result is only exact when
 *   nothing writes during the verify.
 * - Extended attributes are covered (TreeEntryMeta.xattrs, read by the injected TreeAccess); atime is not.
 * - A file whose other names lie outside the walked tree (nlink > 1 through a name in `.ddumbfs` or outside the
 *   volume) is its own group's first path: a difference from a volume where it has one name, which it is.
 * - Lazy: the first request walks the tree once (the UFS walker) and keeps one digest per directory; a listing or a
 *   node list is read again only when the comparison asks for it, so comparing two trees lists only directories
 *   whose digests differ.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { bytesEqual, copyBytes } from '../util/bytes.js';
import { assert } from '../util/assert.js';
import { ADDR_LOST, ADDR_ZERO, WALK_DEPTH_MAX, WALK_DIRECTORY_ENTRY_COUNT_MAX } from '../limits.js';
import type { HashName } from '../format/config.js';
import { ROOT_DIRECTORY, ROOT_RESERVED_NAMES } from '../format/layout.js';
import { decodeAddress } from '../format/node.js';
import { fileDevices } from '../io/device.js';
import { mountsIn, readDirectory, realPathBytes, type DirectoryMounts } from '../io/tree_read.js';
import { Bitmap } from '../store/bitmap.js';
import { BlockStore } from '../store/block_store.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { walkUfsTree } from '../ufs/walk.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';
import type { DigestCache } from './digest_cache.js';
import type { Xattr } from './record_body.js';

/** What an entry of the tree is. */
export type EntryKind = 'file' | 'directory' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

const KIND_CODE: Record<EntryKind, number> = { file: 1, directory: 2, symlink: 3, fifo: 4, char: 5, block: 6, socket: 7 };

/** What lstat says about one entry of the UFS tree (the UFS file itself for a regular file). */
export interface TreeEntryMeta {
  kind: EntryKind;
  /** st_mode & 0o7777. */
  mode: number;
  uid: number;
  gid: number;
  /** st_mtime in ns. */
  mtimeNs: bigint;
  ino: bigint;
  nlink: number;
  rdev: number;
  dev: number;
  /** st_ctime in ns and st_size (of the UFS file itself): the digest cache's key (absent: no cache use). */
  ctimeNs?: bigint;
  sizeOnDiskBytes?: number;
  /** Extended attributes (ACLs included) sorted by name bytes, reserved ones left out; absent or empty: none. */
  xattrs?: Xattr[];
}

/**
 * The metadata calls digests need beyond listing a directory. node:fs stays out of mirror/ (style.md: volume data
 * and directories only in io/ and cli/), so the command injects them, as fs/startup_check.ts injects fsck.
 */
export interface TreeAccess {
  /** lstat of a byte path. @throws Node errors unchanged */
  lstat(p: Buffer): Promise<TreeEntryMeta>;
  /** readlink of a byte path, the target's raw bytes. @throws Node errors unchanged */
  readlink(p: Buffer): Promise<Buffer>;
}

/** One entry as the comparison sees it: its facts, its content digest and its entry digest. */
export interface EntryRecord {
  /** Last path component, raw bytes (empty for the root). */
  name: Buffer;
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  /** mtime in ns when compared, else null (always null for a directory). */
  mtimeNs: bigint | null;
  /** Logical size of a file in bytes; 0 for every other kind. */
  sizeBytes: number;
  /** Canonical node count of a file (ceil(size / block_size)); 0 for every other kind. */
  nodeCount: number;
  /** First path of the file's hard-link group; empty when it has one name. */
  link: Buffer;
  /** Target bytes of a symlink; empty for every other kind. */
  target: Buffer;
  /** rdev of a device; 0 for every other kind. */
  rdev: number;
  /** Content digest of the kind (byte table). */
  contentDigest: Buffer;
  /** Entry digest (byte table). */
  digest: Buffer;
  /** Extended attributes sorted by name bytes (empty: none); absent when not known (a remote verify's record). */
  xattrs?: Xattr[];
}

/** What a volume side found wrong with itself while computing its digests. */
export type IntegrityFinding =
  | { kind: 'CORRUPT'; path: Buffer; blockIndex: number }
  | { kind: 'DANGLING'; path: Buffer; hash: Buffer };

/** The format facts two trees must share to be compared (spec §4.1 non-goals). */
export interface TreeFormat {
  blockSize: number;
  hashName: HashName;
  hashSize: number;
}

/**
 * A tree that gives digests, listings and node lists by path: what verify compares. A local volume implements it
 * here; a volume on the far side of a verify session (verify_remote.ts: VQUERY/VENTRY, FILE_NODES) implements it too.
 * Paths are relative byte paths, no leading '/', the root is the empty path.
 */
export interface DigestTree {
  /** For messages: the volume's parent directory or `host:path`. */
  readonly label: string;
  format(): Promise<TreeFormat>;
  /**
   * The record of `p` (its digest covers the subtree), or null when nothing is there.
   * @throws DdfsError IO when the tree cannot be read (a walk or lstat error, a bad UFS header): no exact answer
   */
  entry(p: Buffer): Promise<EntryRecord | null>;
  /**
   * The entries of directory `p`, sorted bytewise by name, each with its digests (a DIRLIST with entry digests).
   * @throws DdfsError IO as entry(), also when a directory's digest changed since the first walk
   */
  list(p: Buffer): Promise<EntryRecord[]>;
  /**
   * The canonical node list of file `p`: ceil(size / block_size) hashes of hash_size bytes, zero blocks as the
   * zero-block hash (byte table), in chunks from node 0 (FILE_NODES pieces).
   * @throws DdfsError IO as entry()
   */
  nodes(p: Buffer): AsyncIterable<Buffer>;
  /** CORRUPT and DANGLING findings of the whole tree, in canonical order (complete once the root is known). */
  findings(): Promise<IntegrityFinding[]>;
  /**
   * Start the first walk now, before anything asks for it (a verify's two sides then walk at once); its error, if
   * any, is thrown by the next call that needs the walk. Absent where there is nothing to start.
   */
  prefetch?(): void;
  close(): Promise<void>;
}

const TAG_ENTRY = Buffer.from('DDVRFYE1', 'latin1');
const TAG_ENTRY_XATTRS = Buffer.from('DDVRFYE2', 'latin1');
const TAG_FILE = Buffer.from('DDVRFYF1', 'latin1');
const TAG_DIRECTORY = Buffer.from('DDVRFYD1', 'latin1');
const TAG_SYMLINK = Buffer.from('DDVRFYS1', 'latin1');
const TAG_SPECIAL = Buffer.from('DDVRFYX1', 'latin1');

/** The facts of an entry that go into its digest, besides its content digest. */
export interface EntryFacts {
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint | null;
  sizeBytes: number;
  rdev: number;
  link: Buffer;
  /** Sorted by name bytes; absent or empty: none. */
  xattrs?: Xattr[];
}

/** The entry digest of `facts` with `contentDigest` (byte table). */
export function entryDigest(facts: EntryFacts, contentDigest: Buffer): Buffer {
  const head = Buffer.alloc(50);
  const xattrs = facts.xattrs ?? [];
  (xattrs.length > 0 ? TAG_ENTRY_XATTRS : TAG_ENTRY).copy(head, 0);
  head[8] = KIND_CODE[facts.kind];
  head.writeUInt32LE(facts.mode & 0o7777, 9);
  head.writeUInt32LE(facts.uid >>> 0, 13);
  head.writeUInt32LE(facts.gid >>> 0, 17);
  const withMtime = facts.mtimeNs !== null && facts.kind !== 'directory';
  head[21] = withMtime ? 1 : 0;
  head.writeBigInt64LE(withMtime ? facts.mtimeNs! : 0n, 22);
  head.writeBigUInt64LE(BigInt(facts.kind === 'file' ? facts.sizeBytes : 0), 30);
  head.writeBigUInt64LE(BigInt(facts.kind === 'char' || facts.kind === 'block' ? facts.rdev : 0), 38);
  const link = facts.kind === 'file' ? facts.link : Buffer.alloc(0);
  head.writeUInt32LE(link.length, 46);
  const h = createHash('sha256').update(head).update(link).update(contentDigest);
  if (xattrs.length > 0) {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(xattrs.length, 0);
    h.update(n);
    for (const x of xattrs) {
      const len = Buffer.alloc(5);
      len.writeUInt8(x.name.length, 0);
      len.writeUInt32LE(x.value.length, 1);
      h.update(len.subarray(0, 1)).update(x.name).update(len.subarray(1)).update(x.value);
    }
  }
  return h.digest();
}

/** Content digest of a directory from its entries (any order: they are sorted bytewise here). */
export function directoryContentDigest(entries: ReadonlyArray<{ name: Buffer; digest: Buffer }>): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.name, b.name));
  const h = createHash('sha256').update(TAG_DIRECTORY);
  h.update(u64(sorted.length));
  const len = Buffer.alloc(2);
  for (const e of sorted) {
    len.writeUInt16LE(e.name.length, 0);
    h.update(len).update(e.name).update(e.digest);
  }
  return h.digest();
}

/** Content digest of a symlink target. */
export function symlinkContentDigest(target: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(target.length, 0);
  return createHash('sha256').update(TAG_SYMLINK).update(len).update(target).digest();
}

/** Content digest of a FIFO, device or socket (constant: their facts are in the entry header). */
export function specialContentDigest(): Buffer {
  return createHash('sha256').update(TAG_SPECIAL).digest();
}

/** An incremental file content digest: feed the n canonical hashes in order, then `digest()`. */
export class FileContentHasher {
  private readonly h: Hash;
  constructor(nodeCount: number, hashSize: number) {
    this.h = createHash('sha256').update(TAG_FILE).update(u64(nodeCount)).update(Buffer.from([hashSize]));
  }
  update(canonicalHashes: Buffer): void {
    this.h.update(canonicalHashes);
  }
  digest(): Buffer {
    return this.h.digest();
  }
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n), 0);
  return b;
}

/** Options of a local volume's digests. */
export interface VolumeDigestsOptions {
  access: TreeAccess;
  /** Compare mtimes of files, symlinks and special files (default true). */
  mtime?: boolean;
  /** Re-read and re-hash every referenced block (default false). */
  deep?: boolean;
  /**
   * Called once per entry of the first walk (not the root) with its path and entry digest, leaves before their
   * directory: what a slave indexes for RENAME hints (spec §4.5). `singleName` is false for a file with nlink > 1.
   */
  onDigest?: (p: Buffer, kind: EntryKind, digest: Buffer, singleName: boolean) => void;
  /**
   * A pass's digest cache (digest_cache.ts): a file's content digest is taken from it when its lstat identity is
   * cached, and stored in it when computed. Never given by verify (§4.11). Needs `findings: false` and no `deep`.
   */
  cache?: DigestCache;
  /** Collect CORRUPT/DANGLING findings in the first walk (default true; a pass does not use them). */
  findings?: boolean;
  /**
   * The tree may be written while it is read (a master pass of a mounted volume, §4.9: changes made during a pass go
   * out in the next one). An entry gone since it was listed is left out, and a directory the first walk did not see
   * (created or replaced since) gets digests that match nothing, so a pass descends into it and sends what it finds.
   * Default false: verify aborts instead (its answer would not describe one tree).
   */
  liveTree?: boolean;
}

/** How often each request was answered: lets a test prove an unchanged subtree is not descended. */
export interface DigestTreeCounters {
  entry: number;
  list: number;
  nodes: number;
  /** Node lists of files read to give a listing (after the first walk). */
  fileScans: number;
  /** Requests answered without the first walk (an incremental pass): entryNow, listNow, listTypes. */
  entryNow: number;
  listNow: number;
  listTypes: number;
  /** Directories on the way looked at by name only (namedEntries: their entries did not change in the range). */
  namedEntries: number;
  /** lstat calls of tree entries (TreeAccess.lstat, the root's at open not counted). */
  lstat: number;
}

/** One entry of a listing without digests (listTypes): its name, kind and lstat facts. */
export interface TypedEntry {
  name: Buffer;
  kind: EntryKind;
  /**
   * The entry's lstat facts: for a directory whose meta was asked for (listTypes' needMeta), or that may be a mount
   * point, or when no needMeta was given; for a file or symlink only when the listing gave no type.
   */
  meta?: TreeEntryMeta;
}

/**
 * File systems on which every directory has the st_dev of its super block (the kernel's generic getattr), so a
 * directory of a tree on one of them is on another device only if it is a mount point: listTypes may take a
 * directory by its d_type once mountinfo says it is not one. Not btrfs (a subvolume has its own st_dev without a
 * mount), nor bcachefs, NFS (a server-side export crossed), overlay, ZFS, FUSE or anything unlisted: there every
 * directory is lstat'ed, as before.
 */
const SAME_DEVICE_FS_TYPES: ReadonlySet<string> = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'tmpfs', 'f2fs']);

const RESERVED = ROOT_RESERVED_NAMES.map((n) => Buffer.from(n, 'latin1'));
const SLASH = 0x2f;

function lastComponent(p: Buffer): Buffer {
  return p.subarray(p.lastIndexOf(SLASH) + 1);
}

/** Map key of a byte path (latin1 maps each byte to one char, so distinct paths give distinct keys). */
function keyOf(p: Buffer): string {
  return p.toString('latin1');
}

/** A directory whose entries are being collected during the first walk. */
interface OpenDirectory {
  path: Buffer;
  /** Depth of its entries. */
  childDepth: number;
  meta: TreeEntryMeta;
  entries: Array<{ name: Buffer; digest: Buffer }>;
}

/**
 * The digests of one local volume, opened offline and read-only (the DigestTree of a plain path).
 */
export class VolumeDigests implements DigestTree {
  readonly counters: DigestTreeCounters = { entry: 0, list: 0, nodes: 0, fileScans: 0, entryNow: 0, listNow: 0, listTypes: 0, namedEntries: 0, lstat: 0 };
  private readonly rootDir: Buffer;
  private readonly directories = new Map<string, { meta: TreeEntryMeta; contentDigest: Buffer; digest: Buffer }>();
  /** Inode → first path of its link group (files with nlink > 1 only). */
  private readonly linkFirst = new Map<bigint, Buffer>();
  private readonly found: IntegrityFinding[] = [];
  private readonly blockCountInFile: number;
  private readonly zeroHash: Buffer;
  private readonly mtime: boolean;
  private readonly deep: boolean;
  private readonly access: TreeAccess;
  private readonly onDigest: VolumeDigestsOptions['onDigest'];
  private readonly cache: DigestCache | null;
  private readonly collectFindings: boolean;
  private readonly liveTree: boolean;
  /** --deep: addresses already re-hashed, and those whose bytes did not match. */
  private readonly scrubbed: Bitmap | null;
  private readonly scrubbedBad: Bitmap | null;
  private readonly blockScratch: Buffer;
  private readonly hashScratch: Buffer;
  private rootDev = -1;
  /** The root directory's canonical path (listTypes' mountinfo look-ups), once asked for; null: not resolvable. */
  private realRoot: Buffer | null | undefined;
  private walked: Promise<void> | null = null;
  /** Directory digests computed by entryNow/listNow (no first walk), by path; valid while the inode is the same. */
  private readonly fresh = new Map<string, { ino: bigint; contentDigest: Buffer; digest: Buffer }>();

  private constructor(
    readonly label: string,
    readonly parentDir: string,
    private readonly store: BlockStore,
    blockFileSizeBytes: number,
    /** The mount point when the volume is mounted, else null. */
    readonly mountPoint: string | null,
    options: VolumeDigestsOptions,
  ) {
    const cfg = store.cfg;
    this.rootDir = pathBytes(path.join(parentDir, ROOT_DIRECTORY));
    this.blockCountInFile = Math.min(cfg.blockCount, Math.floor(blockFileSizeBytes / cfg.blockSize));
    this.zeroHash = store.zeroHash;
    this.mtime = options.mtime ?? true;
    this.deep = options.deep ?? false;
    const access = options.access;
    this.access = {
      lstat: (p) => {
        this.counters.lstat++;
        return access.lstat(p);
      },
      readlink: (p) => access.readlink(p),
    };
    this.onDigest = options.onDigest;
    this.collectFindings = options.findings ?? true;
    this.liveTree = options.liveTree ?? false;
    this.cache = options.cache !== undefined && !this.deep && !this.collectFindings ? options.cache : null;
    this.scrubbed = this.deep ? Bitmap.fresh(cfg.blockCount) : null;
    this.scrubbedBad = this.deep ? Bitmap.fresh(cfg.blockCount) : null;
    this.blockScratch = Buffer.alloc(this.deep ? cfg.blockSize : 0);
    this.hashScratch = Buffer.alloc(cfg.hashSize);
  }

  /**
   * Open the volume whose parent directory is `parentDir` read-only: its cfg, block file and index (loaded for
   * lookups). Nothing is written.
   * @throws DdfsError NOT_FOUND (no ddfs.cfg, ddfsroot, block or index file), BAD_CONFIG, BAD_MAGIC, TOO_SHORT
   */
  static async open(parentDir: string, options: VolumeDigestsOptions): Promise<VolumeDigests> {
    const parent = path.resolve(parentDir);
    const cfg = await readVolumeConfig(parent);
    const root = path.join(parent, ROOT_DIRECTORY);
    let meta: TreeEntryMeta;
    try {
      meta = await options.access.lstat(pathBytes(root));
    } catch (err) {
      throw new DdfsError('NOT_FOUND', `${root}: root directory not found`, { path: root }, err);
    }
    if (meta.kind !== 'directory') throw new DdfsError('NOT_FOUND', `${root}: not a directory`, { path: root });
    const store = await BlockStore.open(parent, cfg, { readOnly: true });
    try {
      const size = await store.blockDevice.size();
      const v = new VolumeDigests(parentDir, parent, store, size, mountPointOf(parent), options);
      v.rootDev = meta.dev;
      return v;
    } catch (err) {
      await closeStore(store);
      throw err;
    }
  }

  async format(): Promise<TreeFormat> {
    const cfg = this.store.cfg;
    return { blockSize: cfg.blockSize, hashName: cfg.hashName, hashSize: cfg.hashSize };
  }

  async entry(p: Buffer): Promise<EntryRecord | null> {
    this.counters.entry++;
    await this.walk();
    const meta = await this.lstatOrNull(p);
    if (meta === null) return null;
    return this.recordOf(p, meta);
  }

  async list(p: Buffer): Promise<EntryRecord[]> {
    this.counters.list++;
    await this.walk();
    const out: EntryRecord[] = [];
    for (const c of await this.lstatChildren(p)) out.push(await this.recordOf(joinPathBytes(p, c.name), c.meta));
    return out;
  }

  /**
   * readdir of directory `p` and one lstat per entry, in the listing's order: at the root the reserved names are
   * left out, and so is a directory of another device (a mount point: the walker does not enter it); with liveTree
   * an entry removed since the listing is left out too (a mounted master being written).
   * @throws DdfsError IO when the directory or an entry cannot be read
   */
  private async lstatChildren(p: Buffer): Promise<Array<{ name: Buffer; meta: TreeEntryMeta }>> {
    let listing;
    try {
      listing = await readDirectory(this.abs(p), WALK_DIRECTORY_ENTRY_COUNT_MAX);
    } catch (err) {
      throw this.readError(p, err);
    }
    const out: Array<{ name: Buffer; meta: TreeEntryMeta }> = [];
    for (let k = 0; k < listing.count; k++) {
      const name = Buffer.from(listing.name(k));
      if (p.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
      const meta = await this.lstatListed(p, name);
      if (meta !== null) out.push({ name, meta });
    }
    return out;
  }

  /**
   * lstat of entry `name` of directory `p`, as a listing sees it: null for a directory of another device (a mount
   * point, left out as the walker does) and, with liveTree, for an entry removed since the listing.
   * @throws DdfsError IO when the entry cannot be read
   */
  private async lstatListed(p: Buffer, name: Buffer): Promise<TreeEntryMeta | null> {
    const rel = joinPathBytes(p, name);
    let meta: TreeEntryMeta;
    try {
      meta = await this.access.lstat(this.abs(rel));
    } catch (err) {
      if (this.liveTree && (err as NodeJS.ErrnoException).code === 'ENOENT') return null; // removed since the listing
      throw this.readError(rel, err);
    }
    return meta.kind === 'directory' && meta.dev !== this.rootDev ? null : meta;
  }

  /**
   * The entries of directory `p` without digests: readdir, no node list read and no first walk (what an incremental
   * pass lists for a directory on the way to a dirty path, spec §4.6 step 4). A file or symlink is known by the type
   * the directory gives (d_type): it is sent by name and type only, so it is not lstat'ed (nor its xattrs listed:
   * on a 200k-file tree with 100 dirty files in 100 directories that was 10,000 lstat + llistxattr calls, the biggest
   * item of the master's side). So is a directory whose meta the caller does not need (`needMeta` says no), unless it
   * may be on another device: on a file system of SAME_DEVICE_FS_TYPES a directory that /proc/self/mountinfo does
   * not name as a mount point has the device of `p`, elsewhere every directory is lstat'ed. A directory `needMeta`
   * asks for (or every directory, without `needMeta`), a special file and an entry of unknown type get one lstat each.
   * Sorted bytewise by name; at the root the reserved names are left out; a directory of another device (a mount
   * point) is left out, as the walker does; with liveTree an entry lstat'ed and found removed since the listing is
   * left out (a directory taken by type and removed since is listed: a file is too, and the next pass has its TID).
   * @param p a directory of the root's device (the root, or one a listing lstat'ed)
   * @param needMeta whether the directory entry `name` of `p` needs its lstat facts (TypedEntry.meta)
   * @throws DdfsError IO when the directory or an entry cannot be read
   */
  async listTypes(p: Buffer, needMeta?: (name: Buffer) => boolean): Promise<TypedEntry[]> {
    this.counters.listTypes++;
    let listing;
    try {
      listing = await readDirectory(this.abs(p), WALK_DIRECTORY_ENTRY_COUNT_MAX);
    } catch (err) {
      throw this.readError(p, err);
    }
    const out: TypedEntry[] = [];
    let mounts: DirectoryMounts | null | undefined;
    for (let k = 0; k < listing.count; k++) {
      const name = Buffer.from(listing.name(k));
      if (p.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
      const type = listing.type(k);
      if (type === 'file' || type === 'symlink') {
        out.push({ name, kind: type });
        continue;
      }
      if (type === 'directory' && needMeta !== undefined && !needMeta(name)) {
        // mountinfo once per listing, and only when a directory could be taken by type
        mounts ??= this.mountsOf(p);
        if (mounts !== null && !mounts.mountedNames.has(keyOf(name))) {
          out.push({ name, kind: 'directory' });
          continue;
        }
      }
      const meta = await this.lstatListed(p, name);
      if (meta !== null) out.push({ name, kind: meta.kind, meta });
    }
    return out;
  }

  /**
   * The entries `names` of directory `p` with their lstat facts, without listing `p` (an incremental pass's
   * directory on the way to dirty paths whose entries did not change in its range, spec §4.6 step 2: only its
   * dirty children and the children on the way are looked at). Sorted bytewise by name; a name not there (ENOENT,
   * ENOTDIR, ELOOP: removed since the range, a change the next pass has the TID of), '.', '..', a reserved name at
   * the root and a directory of another device (a mount point, left out as listings leave it out) are left out. One
   * lstat each.
   * @param p a directory of the root's device
   * @throws DdfsError IO when an entry cannot be read for another reason
   */
  async namedEntries(p: Buffer, names: readonly Buffer[]): Promise<Array<{ name: Buffer; kind: EntryKind; meta: TreeEntryMeta }>> {
    this.counters.namedEntries++;
    const out: Array<{ name: Buffer; kind: EntryKind; meta: TreeEntryMeta }> = [];
    for (const name of [...names].sort(Buffer.compare)) {
      // no listing names '.' or '..' (a journal record of the root itself may name it '.')
      if (name.length === 0 || (name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e)))) continue;
      if (p.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
      const rel = joinPathBytes(p, name);
      let meta: TreeEntryMeta;
      try {
        meta = await this.access.lstat(this.abs(rel));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') continue;
        throw this.readError(rel, err);
      }
      if (meta.kind === 'directory' && meta.dev !== this.rootDev) continue;
      out.push({ name, kind: meta.kind, meta });
    }
    return out;
  }

  /**
   * The mount points among the entries of directory `p` when `p` is on a file system of SAME_DEVICE_FS_TYPES, else
   * null (every directory must be lstat'ed to find those of another device).
   */
  private mountsOf(p: Buffer): DirectoryMounts | null {
    if (this.realRoot === undefined) {
      try {
        this.realRoot = realPathBytes(this.rootDir);
      } catch {
        this.realRoot = null;
      }
    }
    if (this.realRoot === null) return null;
    const found = mountsIn(p.length === 0 ? this.realRoot : joinPathBytes(this.realRoot, p));
    return found !== null && SAME_DEVICE_FS_TYPES.has(found.fsType) ? found : null;
  }

  /** listTypes with every entry's lstat facts (lstatChildren), for the digests of listNow and recordNow. */
  private async listTypesWithMeta(p: Buffer): Promise<Array<{ name: Buffer; kind: EntryKind; meta: TreeEntryMeta }>> {
    this.counters.listTypes++;
    return (await this.lstatChildren(p)).map(({ name, meta }) => ({ name, kind: meta.kind, meta }));
  }

  /** lstat of tree path `p`, or null when nothing is there. @throws DdfsError IO for any other error */
  private async lstatOrNull(p: Buffer): Promise<TreeEntryMeta | null> {
    try {
      return await this.access.lstat(this.abs(p));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw this.readError(p, err);
    }
  }

  /**
   * The record of `p` computed now from its own subtree only, without the first walk of the whole tree: O(the
   * subtree), what an incremental pass asks of a dirty path (spec §4.6 step 4). Equal to entry()'s record for a
   * subtree without hard links.
   * @returns the record, or null when nothing is there
   * @throws DdfsError NOT_SUPPORTED (data.hardLink: the path) when the subtree holds a file with nlink > 1 (its
   *   digest names its link group's first path, which only the whole-tree walk knows); IO as entry()
   */
  async entryNow(p: Buffer): Promise<EntryRecord | null> {
    this.counters.entryNow++;
    const meta = await this.lstatOrNull(p);
    if (meta === null) return null;
    return this.recordNow(p, meta, 0);
  }

  /**
   * The entries of directory `p` with their digests, as list() gives them, each computed from its own subtree
   * (entryNow): O(the subtree of `p`), no first walk.
   * @throws DdfsError NOT_SUPPORTED, IO as entryNow()
   */
  async listNow(p: Buffer): Promise<EntryRecord[]> {
    this.counters.listNow++;
    const out: EntryRecord[] = [];
    for (const e of await this.listTypesWithMeta(p)) out.push(await this.recordNow(joinPathBytes(p, e.name), e.meta, 1));
    return out;
  }

  private async recordNow(p: Buffer, meta: TreeEntryMeta, depth: number): Promise<EntryRecord> {
    if (meta.kind === 'file' && meta.nlink > 1) {
      throw new DdfsError('NOT_SUPPORTED', `${this.label}: ${pathText(this.abs(p))}: a hard link: its digest needs the whole tree`, { path: p, hardLink: true });
    }
    // no digest cache: its file would be decoded whole (every file of the last content pass) for the few dirty files
    // an incremental pass reads, each changed since anyway
    if (meta.kind !== 'directory') return this.leafRecord(p, meta, false, false);
    const key = keyOf(p);
    let d = this.fresh.get(key);
    if (d === undefined || d.ino !== meta.ino) {
      if (depth > WALK_DEPTH_MAX) throw new DdfsError('IO', `${this.label}: ${pathText(this.abs(p))}: deeper than ${WALK_DEPTH_MAX} levels`, { path: p });
      const entries: Array<{ name: Buffer; digest: Buffer }> = [];
      for (const e of await this.listTypesWithMeta(p)) entries.push({ name: e.name, digest: (await this.recordNow(joinPathBytes(p, e.name), e.meta, depth + 1)).digest });
      const contentDigest = directoryContentDigest(entries);
      d = { ino: meta.ino, contentDigest, digest: entryDigest(this.facts(meta, 0, Buffer.alloc(0)), contentDigest) };
      this.fresh.set(key, d);
    }
    return { ...this.emptyRecord(p, meta), contentDigest: d.contentDigest, digest: d.digest };
  }

  async *nodes(p: Buffer): AsyncGenerator<Buffer> {
    this.counters.nodes++;
    const f = await this.openUfs(p);
    try {
      const { hashSize, nodeSize, addrSize, blockSize } = this.store.cfg;
      const count = Math.ceil(f.size / blockSize);
      let done = 0;
      for await (const chunk of f.chunks()) {
        const n = Math.min(chunk.count, count - done);
        if (n <= 0) break;
        const out = Buffer.allocUnsafe(n * hashSize);
        for (let j = 0; j < n; j++) this.canonicalHash(chunk.nodes, j * nodeSize, addrSize, out, j * hashSize);
        done += n;
        yield out;
      }
      if (done < count) yield this.zeroRun(count - done);
    } finally {
      await f.close().catch(() => undefined);
    }
  }

  /**
   * The entry digest of whatever is at the absolute byte path `abs` NOW (not from the first walk), computed from its
   * subtree: the precondition of a RENAME on the slave (spec §4.5), whose source may also sit in `ddfsmirror/undo/`.
   * @returns the digest, or null when nothing is there, when it is or holds a file with nlink > 1 (its digest names
   *   its link group's first path, which only a whole-tree walk knows), or when it cannot be read
   */
  async digestAt(abs: Buffer): Promise<Buffer | null> {
    try {
      return await this.digestNow(abs, 0);
    } catch {
      return null;
    }
  }

  private async digestNow(abs: Buffer, depth: number): Promise<Buffer | null> {
    if (depth > WALK_DEPTH_MAX) return null;
    let meta: TreeEntryMeta;
    try {
      meta = await this.access.lstat(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (meta.kind === 'file') {
      if (meta.nlink > 1) return null;
      const { sizeBytes, contentDigest } = await this.scanFile(Buffer.alloc(0), false, abs);
      return entryDigest(this.facts(meta, sizeBytes, Buffer.alloc(0)), contentDigest);
    }
    if (meta.kind === 'symlink') return entryDigest(this.facts(meta, 0, Buffer.alloc(0)), symlinkContentDigest(await this.access.readlink(abs)));
    if (meta.kind !== 'directory') return entryDigest(this.facts(meta, 0, Buffer.alloc(0)), specialContentDigest());
    if (meta.dev !== this.rootDev) return null;
    const listing = await readDirectory(abs, WALK_DIRECTORY_ENTRY_COUNT_MAX);
    const entries: Array<{ name: Buffer; digest: Buffer }> = [];
    for (let k = 0; k < listing.count; k++) {
      const name = Buffer.from(listing.name(k));
      const child = joinPathBytes(abs, name);
      const cm = await this.access.lstat(child);
      if (cm.kind === 'directory' && cm.dev !== this.rootDev) continue; // the walk does not enter a mount point
      const digest = await this.digestNow(child, depth + 1);
      if (digest === null) return null;
      entries.push({ name, digest });
    }
    return entryDigest(this.facts(meta, 0, Buffer.alloc(0)), directoryContentDigest(entries));
  }

  async findings(): Promise<IntegrityFinding[]> {
    await this.walk();
    return this.found;
  }

  async close(): Promise<void> {
    await closeStore(this.store);
  }

  prefetch(): void {
    this.walk().catch(() => undefined); // kept in this.walked: entry(), list() and findings() throw it
  }

  /** The first walk: every directory's digest, the link groups and the findings (once, on the first request). */
  private walk(): Promise<void> {
    this.walked ??= this.walkOnce();
    return this.walked;
  }

  private async walkOnce(): Promise<void> {
    let rootMeta: TreeEntryMeta;
    try {
      rootMeta = await this.access.lstat(this.rootDir);
    } catch (err) {
      throw this.readError(Buffer.alloc(0), err);
    }
    const stack: OpenDirectory[] = [{ path: Buffer.alloc(0), childDepth: 1, meta: rootMeta, entries: [] }];
    const closeTop = (): void => {
      const d = stack.pop()!;
      const contentDigest = directoryContentDigest(d.entries);
      const digest = entryDigest(this.facts(d.meta, 0, Buffer.alloc(0)), contentDigest);
      this.directories.set(keyOf(d.path), { meta: d.meta, contentDigest, digest });
      if (d.path.length > 0) this.onDigest?.(d.path, 'directory', digest, true);
      stack[stack.length - 1]?.entries.push({ name: Buffer.from(lastComponent(d.path)), digest });
    };
    const walk = walkUfsTree(this.rootDir, {
      onError: (rel, err) => {
        if (err instanceof DdfsError && err.code === 'CROSS_DEVICE') return 'skip';
        throw this.readError(rel, err);
      },
    });
    for await (const e of walk) {
      while (stack[stack.length - 1]!.childDepth > e.depth) closeTop();
      assert(stack[stack.length - 1]!.childDepth === e.depth, 'walk order: an entry below the open directory');
      let meta: TreeEntryMeta;
      try {
        meta = await this.access.lstat(this.abs(e.path));
      } catch (err) {
        if (this.liveTree && (err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed since the listing
        throw this.readError(e.path, err);
      }
      if (meta.kind === 'directory') {
        stack.push({ path: e.path, childDepth: e.depth + 1, meta, entries: [] });
        continue;
      }
      if (meta.kind === 'file' && meta.nlink > 1 && !this.linkFirst.has(meta.ino)) this.linkFirst.set(meta.ino, e.path);
      const record = await this.leafRecord(e.path, meta, this.collectFindings);
      this.onDigest?.(e.path, meta.kind, record.digest, !(meta.kind === 'file' && meta.nlink > 1));
      stack[stack.length - 1]!.entries.push({ name: Buffer.from(lastComponent(e.path)), digest: record.digest });
    }
    while (stack.length > 0) closeTop();
  }

  /** The record of `p` (lstat given): a directory from the first walk, anything else read now. */
  private async recordOf(p: Buffer, meta: TreeEntryMeta): Promise<EntryRecord> {
    if (meta.kind !== 'directory') {
      if (meta.kind === 'file') this.counters.fileScans++;
      return this.leafRecord(p, meta, false);
    }
    const d = this.directories.get(keyOf(p));
    if ((d === undefined || d.meta.ino !== meta.ino) && this.liveTree) {
      // created or replaced since the first walk: unknown content, never equal to a digest of the peer
      return { ...this.emptyRecord(p, meta), contentDigest: randomBytes(32), digest: randomBytes(32) };
    }
    if (d === undefined || d.meta.ino !== meta.ino) {
      throw new DdfsError('IO', `${this.label}: ${pathText(this.abs(p))}: the tree changed during the verify: verify aborted`, { path: p });
    }
    return { ...this.emptyRecord(p, meta), contentDigest: d.contentDigest, digest: d.digest };
  }

  private facts(meta: TreeEntryMeta, sizeBytes: number, link: Buffer): EntryFacts {
    return {
      kind: meta.kind,
      mode: meta.mode,
      uid: meta.uid,
      gid: meta.gid,
      mtimeNs: this.mtime && meta.kind !== 'directory' ? meta.mtimeNs : null,
      sizeBytes,
      rdev: meta.rdev,
      link,
      xattrs: meta.xattrs ?? [],
    };
  }

  private emptyRecord(p: Buffer, meta: TreeEntryMeta): Omit<EntryRecord, 'contentDigest' | 'digest'> {
    const f = this.facts(meta, 0, Buffer.alloc(0));
    return {
      name: Buffer.from(lastComponent(p)),
      kind: f.kind,
      mode: f.mode & 0o7777,
      uid: f.uid,
      gid: f.gid,
      mtimeNs: f.mtimeNs,
      sizeBytes: 0,
      nodeCount: 0,
      link: Buffer.alloc(0),
      target: Buffer.alloc(0),
      rdev: f.kind === 'char' || f.kind === 'block' ? f.rdev : 0,
      xattrs: f.xattrs ?? [],
    };
  }

  /** Record of a file, symlink or special file; `collect` records CORRUPT/DANGLING findings (first walk only). */
  private async leafRecord(p: Buffer, meta: TreeEntryMeta, collect: boolean, cached = true): Promise<EntryRecord> {
    const base = this.emptyRecord(p, meta);
    if (meta.kind === 'symlink') {
      let target: Buffer;
      try {
        target = await this.access.readlink(this.abs(p));
      } catch (err) {
        throw this.readError(p, err);
      }
      const contentDigest = symlinkContentDigest(target);
      return { ...base, target, contentDigest, digest: entryDigest(this.facts(meta, 0, Buffer.alloc(0)), contentDigest) };
    }
    if (meta.kind !== 'file') {
      const contentDigest = specialContentDigest();
      return { ...base, contentDigest, digest: entryDigest(this.facts(meta, 0, Buffer.alloc(0)), contentDigest) };
    }
    const link = meta.nlink > 1 ? this.linkFirst.get(meta.ino) ?? p : Buffer.alloc(0);
    const { sizeBytes, nodeCount, contentDigest } = cached ? await this.fileContent(p, meta, collect) : await this.scanFile(p, collect);
    return { ...base, sizeBytes, nodeCount, link, contentDigest, digest: entryDigest(this.facts(meta, sizeBytes, link), contentDigest) };
  }

  /** The content of file `p` from the pass's digest cache when its identity is cached, else from its node list. */
  private async fileContent(p: Buffer, meta: TreeEntryMeta, collect: boolean): Promise<{ sizeBytes: number; nodeCount: number; contentDigest: Buffer }> {
    const cache = this.cache;
    if (cache === null || collect || meta.ctimeNs === undefined || meta.sizeOnDiskBytes === undefined) return this.scanFile(p, collect);
    const id = { dev: meta.dev, ino: meta.ino, sizeOnDiskBytes: meta.sizeOnDiskBytes, mtimeNs: meta.mtimeNs, ctimeNs: meta.ctimeNs };
    const hit = cache.lookup(id);
    if (hit !== null) return { sizeBytes: hit.sizeBytes, nodeCount: Math.ceil(hit.sizeBytes / this.store.cfg.blockSize), contentDigest: hit.contentDigest };
    const r = await this.scanFile(p, false);
    // under the identity read BEFORE the node list: a file changed since has a newer ctime, so the entry (whatever
    // was read) can only answer for a state that no longer exists
    cache.store(id, { sizeBytes: r.sizeBytes, contentDigest: r.contentDigest });
    return r;
  }

  /** Read the node list of file `p`: its size, canonical node count and content digest (and findings). */
  private async scanFile(p: Buffer, collect: boolean, abs = this.abs(p)): Promise<{ sizeBytes: number; nodeCount: number; contentDigest: Buffer }> {
    const { hashSize, nodeSize, addrSize, blockSize } = this.store.cfg;
    const f = await this.openUfs(p, abs);
    try {
      const count = Math.ceil(f.size / blockSize);
      const hasher = new FileContentHasher(count, hashSize);
      let done = 0;
      let out: Buffer | null = null;
      const danglingSeen = new Set<string>();
      for await (const chunk of f.chunks()) {
        const n = Math.min(chunk.count, count - done);
        if (n <= 0) break;
        if (out === null || out.length < n * hashSize) out = Buffer.allocUnsafe(n * hashSize);
        for (let j = 0; j < n; j++) {
          const at = j * nodeSize;
          this.canonicalHash(chunk.nodes, at, addrSize, out, j * hashSize);
          // the deep check (a block read) only for a node the index check leaves to it: no await per node otherwise
          if (collect) {
            const indexed = this.checkNode(p, done + j, chunk.nodes, at, danglingSeen);
            if (indexed !== null && this.deep) await this.scrubNode(p, done + j, chunk.nodes, at, indexed);
          }
        }
        hasher.update(out.subarray(0, n * hashSize));
        done += n;
      }
      if (done < count) hasher.update(this.zeroRun(count - done));
      return { sizeBytes: f.size, nodeCount: count, contentDigest: hasher.digest() };
    } finally {
      await f.close().catch(() => undefined);
    }
  }

  /** Write the canonical hash of the node at `nodes[at]` into `out[outAt]` (byte table: zero blocks canonical). */
  private canonicalHash(nodes: Buffer, at: number, addrSize: number, out: Buffer, outAt: number): void {
    const hashSize = this.store.cfg.hashSize;
    const address = decodeAddress(nodes, at, addrSize);
    // copyBytes: a Buffer.copy call costs more than the 16..24 bytes it would move (one per node of the tree)
    if (address === ADDR_ZERO) copyBytes(this.zeroHash, 0, out, outAt, hashSize);
    else copyBytes(nodes, at + addrSize, out, outAt, hashSize);
  }

  /** `count` zero-block hashes back to back (nodes past the end of a node list). */
  private zeroRun(count: number): Buffer {
    const hs = this.store.cfg.hashSize;
    const out = Buffer.allocUnsafe(count * hs);
    for (let j = 0; j < count; j++) this.zeroHash.copy(out, j * hs);
    return out;
  }

  /**
   * The integrity checks of one node: address 1 (lost) is CORRUPT; an address past the block file, or a hash the
   * index does not map to this address (unmounted volumes only), is DANGLING. Synchronous: a walk pays no await
   * per node.
   * @returns null when the node names no block inside the block file (nothing for the deep check, scrubNode, to
   *   read); else whether the index maps its hash to its address (always false on a mounted volume)
   */
  private checkNode(p: Buffer, blockIndex: number, nodes: Buffer, at: number, danglingSeen: Set<string>): boolean | null {
    const { addrSize, hashSize } = this.store.cfg;
    const address = decodeAddress(nodes, at, addrSize);
    if (address === ADDR_ZERO) return null;
    const hashAt = at + addrSize;
    if (bytesEqual(nodes, hashAt, this.zeroHash, 0, hashSize)) return null;
    if (address === ADDR_LOST) {
      this.found.push({ kind: 'CORRUPT', path: p, blockIndex });
      return null;
    }
    const inFile = address < this.blockCountInFile;
    const indexed = inFile && this.mountPoint === null && this.indexed(nodes, hashAt, address);
    if (!inFile || (this.mountPoint === null && !indexed)) {
      const hash = Buffer.from(nodes.subarray(hashAt, hashAt + hashSize));
      const key = hash.toString('latin1');
      if (!danglingSeen.has(key)) {
        danglingSeen.add(key);
        this.found.push({ kind: 'DANGLING', path: p, hash });
      }
    }
    return inFile ? indexed : null;
  }

  /** Whether the index maps the hash at `nodes[hashAt]` to `address` (false for a probe off a damaged table). */
  private indexed(nodes: Buffer, hashAt: number, address: number): boolean {
    try {
      const r = this.store.index.nodes.lookup(nodes, hashAt);
      return r.found && r.address === address;
    } catch {
      return false; // the probe ran off the end of a damaged table: not found
    }
  }

  /**
   * The deep check of a node checkNode passed on (an address inside the block file, not the zero block): its block
   * re-read and re-hashed; a block whose bytes do not hash to the node's hash is CORRUPT.
   * @param indexed checkNode's verdict: the index maps the node's hash to its address
   */
  private async scrubNode(p: Buffer, blockIndex: number, nodes: Buffer, at: number, indexed: boolean): Promise<void> {
    const { addrSize, hashSize, blockSize } = this.store.cfg;
    const address = decodeAddress(nodes, at, addrSize);
    const hashAt = at + addrSize;
    // one index node per address: the verdict on an address the index agrees with holds for every node naming it
    if (indexed && this.scrubbed!.has(address)) {
      if (this.scrubbedBad!.has(address)) this.found.push({ kind: 'CORRUPT', path: p, blockIndex });
      return;
    }
    const n = await this.store.blockDevice.read(this.blockScratch, 0, blockSize, address * blockSize);
    if (n < blockSize) this.blockScratch.fill(0, n);
    this.store.hasher.hashInto(this.blockScratch, this.hashScratch, 0);
    const good = this.hashScratch.compare(nodes, hashAt, hashAt + hashSize) === 0;
    if (indexed) {
      this.scrubbed!.set(address);
      if (!good) this.scrubbedBad!.set(address);
    }
    if (!good) this.found.push({ kind: 'CORRUPT', path: p, blockIndex });
  }

  private async openUfs(p: Buffer, abs = this.abs(p)): Promise<UfsNodeFile> {
    try {
      return await UfsNodeFile.open(fileDevices, abs, this.store.cfg.nodeSize, { strict: true });
    } catch (err) {
      throw this.readError(p, err);
    }
  }

  private abs(p: Buffer): Buffer {
    return joinPathBytes(this.rootDir, p);
  }

  private readError(p: Buffer, err: unknown): DdfsError {
    const what = err instanceof Error ? err.message : String(err);
    return new DdfsError('IO', `${this.label}: cannot read ${pathText(this.abs(p))}: ${what}: verify aborted`, { path: p }, err);
  }
}

async function closeStore(store: BlockStore): Promise<void> {
  await store.blockDevice.close().catch(() => undefined);
  await store.index.device.close().catch(() => undefined);
}
