/**
 * The TLV bodies of DDMS v1 records (mirroring spec §4.5): the record types, their typed shapes, one schema per type,
 * and the schema-driven encoder and decoder. The byte layout of every body is tabled at the top of
 * stream_codec.ts, which frames these bodies; this file keeps the schema that table describes.
 *
 * Invariants:
 * - A body is a sequence of fields `u16 tag, u32 len, value`, tags strictly increasing (so no duplicates and one
 *   canonical encoding). Tags 0x0001..0x7FFF are optional to understand: a receiver skips one it does not know.
 *   Tags 0x8000..0xFFFF must be understood: an unknown one aborts (spec §4.5 "unknown required tags abort").
 * - Every field a schema does not mark optional must be present.
 * - Paths are raw bytes (Buffer) end to end and are never decoded as text: components of 1..255 bytes joined by
 *   `/`, no NUL, no `.` or `..`, no empty component; the empty path is the root (ddfsroot itself).
 * - Every hash in a body has the HELLO's hash_size; BLOCK data is at most the HELLO's block_size; BLOCKS data is
 *   exactly one whole block_size per hash, 1..blocksPerRecordMax(block_size) of them.
 * - u64 values are bigint; nothing above 2^32 is ever a JS number.
 * - Decoding never allocates more than the body it was given (values are views or copies of its bytes).
 */
import {
  BLOCK_SIZE_MAX,
  BLOCK_SIZE_MIN,
  HASH_SIZE_MAX,
  STREAM_HASH_NAME_SIZE_MAX,
  STREAM_BLOCKS_DATA_SIZE_BYTES,
  STREAM_NAME_SIZE_MAX,
  STREAM_PATH_SIZE_MAX,
  STREAM_SYMLINK_TARGET_SIZE_MAX,
  STREAM_TEXT_SIZE_MAX,
  STREAM_XATTR_NAME_SIZE_MAX,
  STREAM_XATTR_VALUE_SIZE_MAX,
} from '../limits.js';

/** Record type codes (the header's `type` field). */
export const RECORD_TYPES = {
  HELLO: 1,
  PASS_BEGIN: 2,
  HASHQ: 3,
  HAVE: 4,
  BLOCK: 5,
  FILE_BEGIN: 6,
  FILE_NODES: 7,
  FILE_END: 8,
  DIR: 9,
  SYMLINK: 10,
  SPECIAL: 11,
  LINK: 12,
  DIRLIST: 13,
  NEED: 14,
  DELETE: 15,
  RENAME: 16,
  SKIP: 17,
  DIGESTQ: 18,
  DIGESTA: 19,
  CHECKPOINT: 20,
  COMMIT: 21,
  ACK: 22,
  IDLE: 23,
  TERM: 24,
  ERROR: 25,
  VQUERY: 26,
  VENTRY: 27,
  VFINDING: 28,
  VDONE: 29,
  BLOCKS: 30,
} as const;

/**
 * HELLO capabilities bits (u32). Bit 0: the sender reads BLOCKS records (type 30); a master sends BLOCKS only to a
 * peer whose HELLO sets it, and then with flags bit 15 (must understand), so no reader ever skips blocks silently.
 */
export const CAPABILITY_BLOCKS = 0x1;

/** Most blocks one BLOCKS record may carry at `blockSize`: STREAM_BLOCKS_DATA_SIZE_BYTES of data, at least one. */
export function blocksPerRecordMax(blockSize: number): number {
  return Math.max(1, Math.floor(STREAM_BLOCKS_DATA_SIZE_BYTES / blockSize));
}

export type RecordTypeName = keyof typeof RECORD_TYPES;

const TYPE_NAMES = new Map<number, RecordTypeName>(
  Object.entries(RECORD_TYPES).map(([name, code]) => [code, name as RecordTypeName]),
);

/** The name of a record type code, or undefined if v1 does not define it. */
export function recordTypeName(code: number): RecordTypeName | undefined {
  return TYPE_NAMES.get(code);
}

/** Tags at or above this value must be understood by the receiver. */
export const TAG_MUST_UNDERSTAND = 0x8000;
/** Bytes of a TLV field header: u16 tag + u32 len. */
export const TLV_HEADER_SIZE = 6;
/** Size of pass ids and volume uuids. */
export const ID_SIZE = 16;
/** Size of a running digest, Merkle digest or hash-list digest (SHA-256). */
export const DIGEST_SIZE = 32;

// ---- typed shapes ----------------------------------------------------------------------------------------------

export type Role = 'master' | 'slave';
export type ClaimKind = 'none' | 'exact' | 'atleast';
export type CommitClaimKind = 'exact' | 'atleast';
export type PassMode = 'incremental' | 'full' | 'strict';
export type EntryType = 'file' | 'dir' | 'symlink' | 'special';
export type SpecialKind = 'fifo' | 'char' | 'block' | 'socket';

export interface Xattr {
  name: Buffer;
  value: Buffer;
}

/** Metadata of a namespace record. Times are nanoseconds since the epoch (signed). */
export interface Meta {
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  atimeNs: bigint;
  /** Sorted by name bytes, names unique; absent means none. */
  xattrs?: Xattr[];
}

/** A pass the slave had in progress, as its HELLO reports it for resume (spec §4.9). */
export interface PendingPass {
  passId: Buffer;
  tidBeg: bigint;
  tidEnd: bigint;
  keyCur: Buffer;
  runningDigest: Buffer;
}

/** One entry of an authoritative directory listing. */
export interface DirEntry {
  name: Buffer;
  entryType: EntryType;
  tid: bigint;
  digest?: Buffer;
}

export interface HelloRecord {
  type: 'HELLO';
  version: number;
  role: Role;
  sharedUuid: Buffer;
  uniqueUuid: Buffer;
  generation: number;
  blockSize: number;
  hashAlgo: string;
  hashSize: number;
  syncBegTid: bigint;
  syncEndTid: bigint;
  claimKind: ClaimKind;
  pendingPass?: PendingPass;
  capabilities: number;
  /** The sender's lineage id (§4.14; optional tag 14: absent from older peers = the initial lineage, the shared uuid). */
  lineageId?: Buffer;
  /**
   * The master the sender serves or is bound to (§4.12 one master per slave; optional tag 15): a master's own unique
   * uuid, a relay's or a slave's bound master uuid; absent from older peers and from a slave not bound yet.
   */
  masterUuid?: Buffer;
}
export interface PassBeginRecord {
  type: 'PASS_BEGIN';
  passId: Buffer;
  tidBeg: bigint;
  tidEnd: bigint;
  mode: PassMode;
  resumeKey?: Buffer;
}
export interface HashqRecord {
  type: 'HASHQ';
  hashes: Buffer[];
}
export interface HaveRecord {
  type: 'HAVE';
  passId: Buffer;
  hashCount: number;
  /** Bit i (LSB first within each byte) set: the slave lacks hash i of the last HASHQ. */
  missing: Buffer;
}
export interface BlockRecord {
  type: 'BLOCK';
  hash: Buffer;
  data: Buffer;
}
/**
 * Many blocks in one record (type 30, a batched BLOCK): `hashes[i]` names `data[i * block_size, (i + 1) * block_size)`.
 * Each block is as a BLOCK's (the receiver hashes it and rejects a mismatch); only whole blocks (the master's block
 * file holds whole blocks). Sent only to a peer with CAPABILITY_BLOCKS.
 */
export interface BlocksRecord {
  type: 'BLOCKS';
  hashes: Buffer[];
  data: Buffer;
}
export interface FileBeginRecord {
  type: 'FILE_BEGIN';
  path: Buffer;
  meta: Meta;
  sizeBytes: bigint;
  nodeCount: bigint;
  tid: bigint;
  linkGroup: bigint;
}
export interface FileNodesRecord {
  type: 'FILE_NODES';
  firstIndex: bigint;
  hashes: Buffer[];
}
export interface FileEndRecord {
  type: 'FILE_END';
  digest: Buffer;
}
export interface DirRecord {
  type: 'DIR';
  path: Buffer;
  meta: Meta;
  tid: bigint;
}
export interface SymlinkRecord {
  type: 'SYMLINK';
  path: Buffer;
  target: Buffer;
  meta: Meta;
  tid: bigint;
}
export interface SpecialRecord {
  type: 'SPECIAL';
  path: Buffer;
  kind: SpecialKind;
  rdev: bigint;
  meta: Meta;
  tid: bigint;
}
export interface LinkRecord {
  type: 'LINK';
  path: Buffer;
  linkGroup: bigint;
}
export interface DirlistRecord {
  type: 'DIRLIST';
  path: Buffer;
  /** Strictly increasing by raw byte comparison of the names. */
  entries: DirEntry[];
  /** Another DIRLIST of the same directory follows (a long listing in pieces). */
  continues: boolean;
}
export interface NeedRecord {
  type: 'NEED';
  paths: Buffer[];
}
export interface DeleteRecord {
  type: 'DELETE';
  path: Buffer;
  tid: bigint;
}
export interface RenameRecord {
  type: 'RENAME';
  from: Buffer;
  to: Buffer;
  tid: bigint;
  fromType: EntryType;
  fromDigest: Buffer;
}
export interface SkipRecord {
  type: 'SKIP';
  from: Buffer;
  /** Absent: to the end of the tree. */
  to?: Buffer;
}
export interface DigestqRecord {
  type: 'DIGESTQ';
  path: Buffer;
  digest: Buffer;
}
export interface DigestaRecord {
  type: 'DIGESTA';
  path: Buffer;
  match: boolean;
  /** RENAME hint (optional): on a mismatch, a path of the slave's own tree whose entry has the asked digest. */
  source?: Buffer;
}
export interface CheckpointRecord {
  type: 'CHECKPOINT';
  keyCur: Buffer;
  /** Records of this stream before this one (= seq - 1); filled by the encoder. */
  recordCount: bigint;
  /** SHA-256 over (seq, crc32c) of every earlier record of this stream; filled by the encoder. */
  runningDigest: Buffer;
}
export interface CommitRecord {
  type: 'COMMIT';
  passId: Buffer;
  tidEnd: bigint;
  claimKind: CommitClaimKind;
  recordCount: bigint;
  runningDigest: Buffer;
}
export interface AckRecord {
  type: 'ACK';
  passId: Buffer;
  committedTid?: bigint;
  error?: number;
  keyCur?: Buffer;
}
export interface IdleRecord {
  type: 'IDLE';
  headTid: bigint;
}
/** Error reason codes of ERROR/TERM records (spec §4.5). */
export const REASON = { OK: 0, INCOMPATIBLE: 1, REFUSED: 2, CORRUPT: 3, IO: 4 } as const;

export interface TermRecord {
  type: 'TERM';
  reason: number;
}
export interface ErrorRecord {
  type: 'ERROR';
  reason: number;
  /** The seq of the record the error is about. */
  seq?: bigint;
  message?: string;
}

/** What a verify session asks of the far side (verify_remote.ts). */
export type VerifyOp = 'open' | 'entry' | 'list' | 'nodes' | 'findings';
/** Entry kinds of a verify session (digest.ts EntryKind). */
export type VerifyEntryKind = 'file' | 'directory' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';
export interface VqueryRecord {
  type: 'VQUERY';
  op: VerifyOp;
  path: Buffer;
  /** nodes: the first node index asked for. */
  firstIndex?: bigint;
  /** open: re-hash every referenced block. */
  deep?: boolean;
  /** open: compare mtimes. */
  mtime?: boolean;
}
/** One entry record of a verify session (digest.ts EntryRecord, the name being the last component of path). */
export interface VentryRecord {
  type: 'VENTRY';
  path: Buffer;
  kind: VerifyEntryKind;
  mode: number;
  uid: number;
  gid: number;
  /** Absent: mtimes are not compared (and never for a directory). */
  mtimeNs?: bigint;
  sizeBytes: bigint;
  nodeCount: bigint;
  /** First path of the hard-link group; empty when the file has one name. */
  link: Buffer;
  target: Buffer;
  rdev: bigint;
  contentDigest: Buffer;
  digest: Buffer;
}
export interface VfindingRecord {
  type: 'VFINDING';
  kind: 'corrupt' | 'dangling';
  path: Buffer;
  blockIndex?: bigint;
  hash?: Buffer;
}
export interface VdoneRecord {
  type: 'VDONE';
  /** Records of the answer before this one. */
  count: bigint;
  /** nodes: the node list goes on past this piece (ask again from the next index). */
  more: boolean;
}

/** Every v1 record, as the codec encodes and decodes it. */
export type MirrorRecord =
  | HelloRecord
  | PassBeginRecord
  | HashqRecord
  | HaveRecord
  | BlockRecord
  | BlocksRecord
  | FileBeginRecord
  | FileNodesRecord
  | FileEndRecord
  | DirRecord
  | SymlinkRecord
  | SpecialRecord
  | LinkRecord
  | DirlistRecord
  | NeedRecord
  | DeleteRecord
  | RenameRecord
  | SkipRecord
  | DigestqRecord
  | DigestaRecord
  | CheckpointRecord
  | CommitRecord
  | AckRecord
  | IdleRecord
  | TermRecord
  | ErrorRecord
  | VqueryRecord
  | VentryRecord
  | VfindingRecord
  | VdoneRecord;

/** A record of a type v1 does not know, without the must-understand flag: skipped, body kept raw. */
export interface UnknownRecord {
  type: 'UNKNOWN';
  typeCode: number;
  body: Buffer;
}

// ---- schema ----------------------------------------------------------------------------------------------------

export type Kind =
  | { k: 'u8' | 'u16' | 'u32'; min?: number; max?: number }
  | { k: 'u64' | 'i64' | 'bool' | 'id128' | 'digest' | 'hash' | 'block' | 'blocks' | 'path' | 'hashes' | 'paths' | 'xattrs' | 'entries' | 'bitmap' }
  | { k: 'bytes'; min: number; max: number }
  | { k: 'text'; max: number }
  | { k: 'enum'; values: readonly string[] }
  | { k: 'struct'; fields: readonly Field[] };

/** One field of a body: its tag, its JS property, its wire name (dump and byte table), and its value kind. */
export interface Field {
  tag: number;
  name: string;
  wire: string;
  kind: Kind;
  optional?: true;
}

const f = (tag: number, name: string, wire: string, kind: Kind, optional?: 'optional'): Field =>
  optional ? { tag, name, wire, kind, optional: true } : { tag, name, wire, kind };

// Enum values are indexed by their wire code (u8).
const ROLES = ['', 'master', 'slave'] as const;
const CLAIM_KINDS = ['none', 'exact', 'atleast'] as const;
const COMMIT_CLAIM_KINDS = ['', 'exact', 'atleast'] as const;
const PASS_MODES = ['', 'incremental', 'full', 'strict'] as const;
const ENTRY_TYPES = ['', 'file', 'dir', 'symlink', 'special'] as const;
const SPECIAL_KINDS = ['', 'fifo', 'char', 'block', 'socket'] as const;
const VERIFY_OPS = ['', 'open', 'entry', 'list', 'nodes', 'findings'] as const;
const VERIFY_ENTRY_KINDS = ['', 'file', 'directory', 'symlink', 'fifo', 'char', 'block', 'socket'] as const;
const VERIFY_FINDINGS = ['', 'corrupt', 'dangling'] as const;

const META: readonly Field[] = [
  f(1, 'mode', 'mode', { k: 'u32' }),
  f(2, 'uid', 'uid', { k: 'u32' }),
  f(3, 'gid', 'gid', { k: 'u32' }),
  f(4, 'mtimeNs', 'mtime_ns', { k: 'i64' }),
  f(5, 'atimeNs', 'atime_ns', { k: 'i64' }),
  f(6, 'xattrs', 'xattrs', { k: 'xattrs' }, 'optional'),
];
const PENDING: readonly Field[] = [
  f(1, 'passId', 'pass_id', { k: 'id128' }),
  f(2, 'tidBeg', 'tid_beg', { k: 'u64' }),
  f(3, 'tidEnd', 'tid_end', { k: 'u64' }),
  f(4, 'keyCur', 'key_cur', { k: 'path' }),
  f(5, 'runningDigest', 'running_digest', { k: 'digest' }),
];
const meta = (tag: number): Field => f(tag, 'meta', 'meta', { k: 'struct', fields: META });

/** The schema of every v1 record type, fields in tag order. */
export const SCHEMAS: Readonly<Record<RecordTypeName, readonly Field[]>> = {
  HELLO: [
    f(1, 'version', 'version', { k: 'u16' }),
    f(2, 'role', 'role', { k: 'enum', values: ROLES }),
    f(3, 'sharedUuid', 'shared_uuid', { k: 'id128' }),
    f(4, 'uniqueUuid', 'unique_uuid', { k: 'id128' }),
    f(5, 'generation', 'generation', { k: 'u32' }),
    f(6, 'blockSize', 'block_size', { k: 'u32', min: BLOCK_SIZE_MIN, max: BLOCK_SIZE_MAX }),
    f(7, 'hashAlgo', 'hash_algo', { k: 'text', max: STREAM_HASH_NAME_SIZE_MAX }),
    f(8, 'hashSize', 'hash_size', { k: 'u8', min: 1, max: HASH_SIZE_MAX }),
    f(9, 'syncBegTid', 'sync_beg_tid', { k: 'u64' }),
    f(10, 'syncEndTid', 'sync_end_tid', { k: 'u64' }),
    f(11, 'claimKind', 'claim_kind', { k: 'enum', values: CLAIM_KINDS }),
    f(12, 'pendingPass', 'pending_pass', { k: 'struct', fields: PENDING }, 'optional'),
    f(13, 'capabilities', 'capabilities', { k: 'u32' }),
    f(14, 'lineageId', 'lineage_id', { k: 'id128' }, 'optional'),
    f(15, 'masterUuid', 'master_uuid', { k: 'id128' }, 'optional'),
  ],
  PASS_BEGIN: [
    f(1, 'passId', 'pass_id', { k: 'id128' }),
    f(2, 'tidBeg', 'tid_beg', { k: 'u64' }),
    f(3, 'tidEnd', 'tid_end', { k: 'u64' }),
    f(4, 'mode', 'mode', { k: 'enum', values: PASS_MODES }),
    f(5, 'resumeKey', 'resume_key', { k: 'path' }, 'optional'),
  ],
  HASHQ: [f(1, 'hashes', 'hashes', { k: 'hashes' })],
  HAVE: [
    f(1, 'passId', 'pass_id', { k: 'id128' }),
    f(2, 'hashCount', 'hash_count', { k: 'u32' }),
    f(3, 'missing', 'missing', { k: 'bitmap' }),
  ],
  BLOCK: [f(1, 'hash', 'hash', { k: 'hash' }), f(2, 'data', 'data', { k: 'block' })],
  FILE_BEGIN: [
    f(1, 'path', 'path', { k: 'path' }),
    meta(2),
    f(3, 'sizeBytes', 'size', { k: 'u64' }),
    f(4, 'nodeCount', 'node_count', { k: 'u64' }),
    f(5, 'tid', 'tid', { k: 'u64' }),
    f(6, 'linkGroup', 'link_group', { k: 'u64' }),
  ],
  FILE_NODES: [f(1, 'firstIndex', 'first_index', { k: 'u64' }), f(2, 'hashes', 'hashes', { k: 'hashes' })],
  FILE_END: [f(1, 'digest', 'digest', { k: 'digest' })],
  DIR: [f(1, 'path', 'path', { k: 'path' }), meta(2), f(3, 'tid', 'tid', { k: 'u64' })],
  SYMLINK: [
    f(1, 'path', 'path', { k: 'path' }),
    f(2, 'target', 'target', { k: 'bytes', min: 1, max: STREAM_SYMLINK_TARGET_SIZE_MAX }),
    meta(3),
    f(4, 'tid', 'tid', { k: 'u64' }),
  ],
  SPECIAL: [
    f(1, 'path', 'path', { k: 'path' }),
    f(2, 'kind', 'kind', { k: 'enum', values: SPECIAL_KINDS }),
    f(3, 'rdev', 'rdev', { k: 'u64' }),
    meta(4),
    f(5, 'tid', 'tid', { k: 'u64' }),
  ],
  LINK: [f(1, 'path', 'path', { k: 'path' }), f(2, 'linkGroup', 'link_group', { k: 'u64' })],
  DIRLIST: [
    f(1, 'path', 'path', { k: 'path' }),
    f(2, 'entries', 'entries', { k: 'entries' }),
    f(3, 'continues', 'continues', { k: 'bool' }),
  ],
  NEED: [f(1, 'paths', 'paths', { k: 'paths' })],
  DELETE: [f(1, 'path', 'path', { k: 'path' }), f(2, 'tid', 'tid', { k: 'u64' })],
  RENAME: [
    f(1, 'from', 'from', { k: 'path' }),
    f(2, 'to', 'to', { k: 'path' }),
    f(3, 'tid', 'tid', { k: 'u64' }),
    f(4, 'fromType', 'from_type', { k: 'enum', values: ENTRY_TYPES }),
    f(5, 'fromDigest', 'from_digest', { k: 'digest' }),
  ],
  SKIP: [f(1, 'from', 'from', { k: 'path' }), f(2, 'to', 'to', { k: 'path' }, 'optional')],
  DIGESTQ: [f(1, 'path', 'path', { k: 'path' }), f(2, 'digest', 'digest', { k: 'digest' })],
  DIGESTA: [f(1, 'path', 'path', { k: 'path' }), f(2, 'match', 'match', { k: 'bool' }), f(3, 'source', 'source', { k: 'path' }, 'optional')],
  CHECKPOINT: [
    f(1, 'keyCur', 'key_cur', { k: 'path' }),
    f(2, 'recordCount', 'record_count', { k: 'u64' }),
    f(3, 'runningDigest', 'running_digest', { k: 'digest' }),
  ],
  COMMIT: [
    f(1, 'passId', 'pass_id', { k: 'id128' }),
    f(2, 'tidEnd', 'tid_end', { k: 'u64' }),
    f(3, 'claimKind', 'claim_kind', { k: 'enum', values: COMMIT_CLAIM_KINDS }),
    f(4, 'recordCount', 'record_count', { k: 'u64' }),
    f(5, 'runningDigest', 'running_digest', { k: 'digest' }),
  ],
  ACK: [
    f(1, 'passId', 'pass_id', { k: 'id128' }),
    f(2, 'committedTid', 'committed_tid', { k: 'u64' }, 'optional'),
    f(3, 'error', 'error', { k: 'u32' }, 'optional'),
    f(4, 'keyCur', 'key_cur', { k: 'path' }, 'optional'),
  ],
  IDLE: [f(1, 'headTid', 'head_tid', { k: 'u64' })],
  TERM: [f(1, 'reason', 'reason', { k: 'u32' })],
  ERROR: [
    f(1, 'reason', 'reason', { k: 'u32' }),
    f(2, 'seq', 'seq', { k: 'u64' }, 'optional'),
    f(3, 'message', 'message', { k: 'text', max: STREAM_TEXT_SIZE_MAX }, 'optional'),
  ],
  VQUERY: [
    f(1, 'op', 'op', { k: 'enum', values: VERIFY_OPS }),
    f(2, 'path', 'path', { k: 'path' }),
    f(3, 'firstIndex', 'first_index', { k: 'u64' }, 'optional'),
    f(4, 'deep', 'deep', { k: 'bool' }, 'optional'),
    f(5, 'mtime', 'mtime', { k: 'bool' }, 'optional'),
  ],
  VENTRY: [
    f(1, 'path', 'path', { k: 'path' }),
    f(2, 'kind', 'kind', { k: 'enum', values: VERIFY_ENTRY_KINDS }),
    f(3, 'mode', 'mode', { k: 'u32' }),
    f(4, 'uid', 'uid', { k: 'u32' }),
    f(5, 'gid', 'gid', { k: 'u32' }),
    f(6, 'mtimeNs', 'mtime_ns', { k: 'i64' }, 'optional'),
    f(7, 'sizeBytes', 'size', { k: 'u64' }),
    f(8, 'nodeCount', 'node_count', { k: 'u64' }),
    f(9, 'link', 'link', { k: 'path' }),
    f(10, 'target', 'target', { k: 'bytes', min: 0, max: STREAM_SYMLINK_TARGET_SIZE_MAX }),
    f(11, 'rdev', 'rdev', { k: 'u64' }),
    f(12, 'contentDigest', 'content_digest', { k: 'digest' }),
    f(13, 'digest', 'digest', { k: 'digest' }),
  ],
  VFINDING: [
    f(1, 'kind', 'kind', { k: 'enum', values: VERIFY_FINDINGS }),
    f(2, 'path', 'path', { k: 'path' }),
    f(3, 'blockIndex', 'block_index', { k: 'u64' }, 'optional'),
    f(4, 'hash', 'hash', { k: 'hash' }, 'optional'),
  ],
  VDONE: [f(1, 'count', 'count', { k: 'u64' }), f(2, 'more', 'more', { k: 'bool' })],
  BLOCKS: [f(1, 'hashes', 'hashes', { k: 'hashes' }), f(2, 'data', 'data', { k: 'blocks' })],
};

/** What the body codec needs from the stream's HELLO: the sizes hashes and blocks must have. */
export interface BodyContext {
  /** The HELLO's block_size; undefined before the HELLO (no BLOCK is valid then). */
  blockSize?: number;
  /** The HELLO's hash_size; undefined before the HELLO (no hash is valid then). */
  hashSize?: number;
}

/** Why a body was refused: a stable reason and whether it is an unknown must-understand tag. */
export class BodyError extends Error {
  constructor(
    readonly reason: 'field' | 'unknown-tag',
    message: string,
  ) {
    super(message);
    this.name = 'BodyError';
  }
}

function fail(message: string): never {
  throw new BodyError('field', message);
}

// ---- paths -----------------------------------------------------------------------------------------------------

const SLASH = 0x2f;
const DOT = 0x2e;

/** Why `name` is not a valid path component (1..255 bytes, no `/`, no NUL, not `.` or `..`), or null. */
export function nameProblem(name: Uint8Array): string | null {
  if (name.length === 0) return 'empty component';
  if (name.length > STREAM_NAME_SIZE_MAX) return `component of ${name.length} bytes (max ${STREAM_NAME_SIZE_MAX})`;
  if (name.length <= 2 && name[0] === DOT && (name.length === 1 || name[1] === DOT)) return `'${name.length === 1 ? '.' : '..'}' component`;
  for (const b of name) {
    if (b === 0) return 'NUL byte';
    if (b === SLASH) return "'/' in a name";
  }
  return null;
}

/**
 * Why `path` is not a valid stream path (mirroring spec §4.5, §4.15), or null. The empty path is the root; otherwise
 * components joined by single `/`, none empty (so no leading, trailing or double slash), each valid per nameProblem.
 */
export function pathProblem(path: Uint8Array): string | null {
  if (path.length > STREAM_PATH_SIZE_MAX) return `path of ${path.length} bytes (max ${STREAM_PATH_SIZE_MAX})`;
  if (path.length === 0) return null;
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      const problem = nameProblem(path.subarray(start, i));
      if (problem !== null) return problem;
      start = i + 1;
    }
  }
  return null;
}

// ---- value codec -----------------------------------------------------------------------------------------------

function encodeValue(kind: Kind, value: unknown, ctx: BodyContext, where: string): Buffer {
  const bad = (why: string): never => fail(`${where}: ${why}`);
  switch (kind.k) {
    case 'u8':
    case 'u16':
    case 'u32': {
      const size = kind.k === 'u8' ? 1 : kind.k === 'u16' ? 2 : 4;
      const n = value as number;
      if (!Number.isInteger(n) || n < (kind.min ?? 0) || n > (kind.max ?? 2 ** (8 * size) - 1)) bad(`${String(n)} out of range`);
      const b = Buffer.alloc(size);
      b.writeUIntLE(n, 0, size);
      return b;
    }
    case 'u64':
    case 'i64': {
      const n = value as bigint;
      const b = Buffer.alloc(8);
      if (typeof n !== 'bigint') bad('not a bigint');
      if (kind.k === 'u64') {
        if (n < 0n || n > 0xffff_ffff_ffff_ffffn) bad(`${n} out of u64 range`);
        b.writeBigUInt64LE(n);
      } else {
        if (n < -(2n ** 63n) || n >= 2n ** 63n) bad(`${n} out of i64 range`);
        b.writeBigInt64LE(n);
      }
      return b;
    }
    case 'bool':
      if (typeof value !== 'boolean') bad('not a boolean');
      return Buffer.from([value ? 1 : 0]);
    case 'id128':
    case 'digest': {
      const size = kind.k === 'id128' ? ID_SIZE : DIGEST_SIZE;
      const b = value as Buffer;
      if (!Buffer.isBuffer(b) || b.length !== size) bad(`must be ${size} bytes`);
      return b;
    }
    case 'hash':
      checkHash(value as Buffer, ctx, bad);
      return value as Buffer;
    case 'block': {
      const b = value as Buffer;
      if (!Buffer.isBuffer(b) || b.length === 0 || ctx.blockSize === undefined || b.length > ctx.blockSize) bad('block data of a wrong size');
      return b;
    }
    case 'blocks': {
      const b = value as Buffer;
      if (!Buffer.isBuffer(b) || ctx.blockSize === undefined || !wholeBlocks(b.length, ctx.blockSize)) bad('blocks data of a wrong size');
      return b;
    }
    case 'bytes': {
      const b = value as Buffer;
      if (!Buffer.isBuffer(b) || b.length < kind.min || b.length > kind.max) bad(`must be ${kind.min}..${kind.max} bytes`);
      return b;
    }
    case 'text': {
      const s = value as string;
      if (typeof s !== 'string' || s.length > kind.max || !/^[\x20-\x7e]*$/.test(s)) bad('must be printable ASCII');
      return Buffer.from(s, 'latin1');
    }
    case 'path': {
      const b = value as Buffer;
      if (!Buffer.isBuffer(b)) bad('not a Buffer');
      const problem = pathProblem(b);
      if (problem !== null) bad(problem);
      return b;
    }
    case 'hashes': {
      const hashes = value as Buffer[];
      if (!Array.isArray(hashes)) bad('not a list');
      if (hashes.length === 0) return Buffer.alloc(1);
      if (ctx.hashSize === undefined) bad('hashes before the HELLO gave hash_size');
      const out = Buffer.alloc(1 + hashes.length * ctx.hashSize!);
      out[0] = ctx.hashSize!;
      hashes.forEach((h, i) => {
        checkHash(h, ctx, bad);
        h.copy(out, 1 + i * ctx.hashSize!);
      });
      return out;
    }
    case 'paths': {
      const paths = value as Buffer[];
      const parts: Buffer[] = [];
      for (const p of paths) {
        const problem = Buffer.isBuffer(p) ? pathProblem(p) : 'not a Buffer';
        if (problem !== null) bad(problem);
        const len = Buffer.alloc(2);
        len.writeUInt16LE(p.length);
        parts.push(len, p);
      }
      return Buffer.concat(parts);
    }
    case 'xattrs': {
      const xattrs = value as Xattr[];
      const parts: Buffer[] = [];
      xattrs.forEach((x, i) => {
        if (!Buffer.isBuffer(x.name) || x.name.length === 0 || x.name.length > STREAM_XATTR_NAME_SIZE_MAX || x.name.includes(0)) bad('bad xattr name');
        if (!Buffer.isBuffer(x.value) || x.value.length > STREAM_XATTR_VALUE_SIZE_MAX) bad('bad xattr value');
        if (i > 0 && Buffer.compare(xattrs[i - 1]!.name, x.name) >= 0) bad('xattr names not strictly increasing');
        const head = Buffer.alloc(1 + x.name.length + 4);
        head[0] = x.name.length;
        x.name.copy(head, 1);
        head.writeUInt32LE(x.value.length, 1 + x.name.length);
        parts.push(head, x.value);
      });
      return Buffer.concat(parts);
    }
    case 'entries': {
      const entries = value as DirEntry[];
      const parts: Buffer[] = [];
      entries.forEach((e, i) => {
        const problem = Buffer.isBuffer(e.name) ? nameProblem(e.name) : 'not a Buffer';
        if (problem !== null) bad(problem);
        if (i > 0 && Buffer.compare(entries[i - 1]!.name, e.name) >= 0) bad('entry names not strictly increasing');
        const code = ENTRY_TYPES.indexOf(e.entryType as (typeof ENTRY_TYPES)[number]);
        if (code < 1) bad(`unknown entry type ${String(e.entryType)}`);
        if (e.digest !== undefined && (!Buffer.isBuffer(e.digest) || e.digest.length !== DIGEST_SIZE)) bad(`entry digest must be ${DIGEST_SIZE} bytes`);
        const b = Buffer.alloc(1 + e.name.length + 1 + 8 + 1);
        b[0] = e.name.length;
        e.name.copy(b, 1);
        let at = 1 + e.name.length;
        b[at++] = code;
        b.writeBigUInt64LE(e.tid, at);
        at += 8;
        b[at] = e.digest === undefined ? 0 : DIGEST_SIZE;
        parts.push(b);
        if (e.digest !== undefined) parts.push(e.digest);
      });
      return Buffer.concat(parts);
    }
    case 'bitmap': {
      const b = value as Buffer;
      if (!Buffer.isBuffer(b)) bad('not a Buffer');
      return b;
    }
    case 'enum': {
      const code = kind.values.indexOf(value as string);
      if (code < 0 || kind.values[code] === '') bad(`unknown value ${String(value)}`);
      return Buffer.from([code]);
    }
    case 'struct':
      return encodeFields(kind.fields, value as Record<string, unknown>, ctx, where);
  }
}

/** Whether `length` bytes are 1..blocksPerRecordMax(blockSize) whole blocks. */
function wholeBlocks(length: number, blockSize: number): boolean {
  return length > 0 && length % blockSize === 0 && length / blockSize <= blocksPerRecordMax(blockSize);
}

function checkHash(h: Buffer, ctx: BodyContext, bad: (why: string) => never): void {
  if (ctx.hashSize === undefined) bad('hash before the HELLO gave hash_size');
  if (!Buffer.isBuffer(h) || h.length !== ctx.hashSize) bad(`hash of ${Buffer.isBuffer(h) ? h.length : '?'} bytes, HELLO says ${ctx.hashSize}`);
}

function encodeFields(fields: readonly Field[], value: Record<string, unknown>, ctx: BodyContext, where: string): Buffer {
  return Buffer.concat(encodeFieldParts(fields, value, ctx, where));
}

/** The TLV fields of `value` as the pieces whose concatenation is the body (values are not copied). */
function encodeFieldParts(fields: readonly Field[], value: Record<string, unknown>, ctx: BodyContext, where: string): Buffer[] {
  const parts: Buffer[] = [];
  for (const field of fields) {
    const v = value[field.name];
    if (v === undefined) {
      if (field.optional) continue;
      fail(`${where}.${field.wire}: missing`);
    }
    const bytes = encodeValue(field.kind, v, ctx, `${where}.${field.wire}`);
    const head = Buffer.alloc(TLV_HEADER_SIZE);
    head.writeUInt16LE(field.tag, 0);
    head.writeUInt32LE(bytes.length, 2);
    parts.push(head, bytes);
  }
  return parts;
}

function decodeValue(kind: Kind, b: Buffer, ctx: BodyContext, where: string): unknown {
  const bad = (why: string): never => fail(`${where}: ${why}`);
  const size = (n: number): void => {
    if (b.length !== n) bad(`${b.length} bytes, expected ${n}`);
  };
  switch (kind.k) {
    case 'u8':
    case 'u16':
    case 'u32': {
      const n = kind.k === 'u8' ? 1 : kind.k === 'u16' ? 2 : 4;
      size(n);
      const v = b.readUIntLE(0, n);
      if (v < (kind.min ?? 0) || v > (kind.max ?? 2 ** (8 * n) - 1)) bad(`${v} out of range ${kind.min ?? 0}..${kind.max ?? 2 ** (8 * n) - 1}`);
      return v;
    }
    case 'u64':
      size(8);
      return b.readBigUInt64LE(0);
    case 'i64':
      size(8);
      return b.readBigInt64LE(0);
    case 'bool':
      size(1);
      if (b[0]! > 1) bad(`boolean byte ${b[0]}`);
      return b[0] === 1;
    case 'id128':
      size(ID_SIZE);
      return b;
    case 'digest':
      size(DIGEST_SIZE);
      return b;
    case 'hash':
      checkHash(b, ctx, bad);
      return b;
    case 'block':
      if (ctx.blockSize === undefined) bad('block before the HELLO gave block_size');
      if (b.length === 0 || b.length > ctx.blockSize!) bad(`${b.length} bytes of block data, block_size is ${ctx.blockSize}`);
      return b;
    case 'blocks':
      if (ctx.blockSize === undefined) bad('blocks before the HELLO gave block_size');
      if (!wholeBlocks(b.length, ctx.blockSize!)) bad(`${b.length} bytes of blocks data: not 1..${blocksPerRecordMax(ctx.blockSize!)} whole blocks of ${ctx.blockSize}`);
      return b;
    case 'bytes':
      if (b.length < kind.min || b.length > kind.max) bad(`${b.length} bytes, allowed ${kind.min}..${kind.max}`);
      return b;
    case 'text':
      if (b.length > kind.max) bad(`${b.length} bytes of text, max ${kind.max}`);
      for (const c of b) if (c < 0x20 || c > 0x7e) bad('text that is not printable ASCII');
      return b.toString('latin1');
    case 'path': {
      const problem = pathProblem(b);
      if (problem !== null) bad(problem);
      return b;
    }
    case 'hashes': {
      if (b.length === 0) bad('empty hash list value');
      const hashSize = b[0]!;
      if (hashSize === 0) {
        if (b.length !== 1) bad('hash size 0 with hashes');
        return [];
      }
      if (hashSize !== ctx.hashSize) bad(`hash size ${hashSize}, HELLO says ${ctx.hashSize ?? 'nothing yet'}`);
      if ((b.length - 1) % hashSize !== 0) bad(`${b.length - 1} bytes is not a whole number of hashes`);
      const hashes: Buffer[] = [];
      for (let at = 1; at < b.length; at += hashSize) hashes.push(b.subarray(at, at + hashSize));
      return hashes;
    }
    case 'paths': {
      const paths: Buffer[] = [];
      let at = 0;
      while (at < b.length) {
        if (at + 2 > b.length) bad('truncated path length');
        const len = b.readUInt16LE(at);
        at += 2;
        if (at + len > b.length) bad('truncated path');
        const p = b.subarray(at, at + len);
        const problem = pathProblem(p);
        if (problem !== null) bad(problem);
        paths.push(p);
        at += len;
      }
      return paths;
    }
    case 'xattrs': {
      const xattrs: Xattr[] = [];
      let at = 0;
      while (at < b.length) {
        const nameLen = b[at]!;
        if (nameLen === 0 || at + 1 + nameLen + 4 > b.length) bad('truncated or empty xattr name');
        const name = b.subarray(at + 1, at + 1 + nameLen);
        if (name.includes(0)) bad('NUL in an xattr name');
        at += 1 + nameLen;
        const valueLen = b.readUInt32LE(at);
        at += 4;
        if (valueLen > STREAM_XATTR_VALUE_SIZE_MAX || at + valueLen > b.length) bad('xattr value too long or truncated');
        if (xattrs.length > 0 && Buffer.compare(xattrs[xattrs.length - 1]!.name, name) >= 0) bad('xattr names not strictly increasing');
        xattrs.push({ name, value: b.subarray(at, at + valueLen) });
        at += valueLen;
      }
      return xattrs;
    }
    case 'entries': {
      const entries: DirEntry[] = [];
      let at = 0;
      while (at < b.length) {
        const nameLen = b[at]!;
        if (at + 1 + nameLen + 10 > b.length) bad('truncated entry');
        const name = b.subarray(at + 1, at + 1 + nameLen);
        const problem = nameProblem(name);
        if (problem !== null) bad(`entry name: ${problem}`);
        if (entries.length > 0 && Buffer.compare(entries[entries.length - 1]!.name, name) >= 0) bad('entry names not strictly increasing');
        at += 1 + nameLen;
        const code = b[at++]!;
        const entryType = ENTRY_TYPES[code];
        if (entryType === undefined || entryType === '') bad(`unknown entry type ${code}`);
        const tid = b.readBigUInt64LE(at);
        at += 8;
        const digestLen = b[at++]!;
        if (digestLen !== 0 && digestLen !== DIGEST_SIZE) bad(`entry digest of ${digestLen} bytes`);
        if (at + digestLen > b.length) bad('truncated entry digest');
        const entry: DirEntry = { name, entryType: entryType as EntryType, tid };
        if (digestLen > 0) entry.digest = b.subarray(at, at + digestLen);
        at += digestLen;
        entries.push(entry);
      }
      return entries;
    }
    case 'bitmap':
      return b;
    case 'enum': {
      size(1);
      const v = kind.values[b[0]!];
      if (v === undefined || v === '') bad(`unknown value ${b[0]}`);
      return v;
    }
    case 'struct':
      return decodeFields(kind.fields, b, ctx, where);
  }
}

function decodeFields(fields: readonly Field[], body: Buffer, ctx: BodyContext, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let at = 0;
  let lastTag = 0;
  let fieldIndex = 0;
  while (at < body.length) {
    if (at + TLV_HEADER_SIZE > body.length) fail(`${where}: truncated field header at body offset ${at}`);
    const tag = body.readUInt16LE(at);
    const len = body.readUInt32LE(at + 2);
    at += TLV_HEADER_SIZE;
    if (len > body.length - at) fail(`${where}: field tag ${tag} of ${len} bytes overruns the body`);
    if (tag <= lastTag) fail(`${where}: field tag ${tag} after tag ${lastTag} (tags must strictly increase)`);
    lastTag = tag;
    const value = body.subarray(at, at + len);
    at += len;
    while (fieldIndex < fields.length && fields[fieldIndex]!.tag < tag) fieldIndex++;
    const field = fields[fieldIndex];
    if (field === undefined || field.tag !== tag) {
      if (tag >= TAG_MUST_UNDERSTAND) throw new BodyError('unknown-tag', `${where}: unknown required field tag 0x${tag.toString(16)}`);
      continue;
    }
    out[field.name] = decodeValue(field.kind, value, ctx, `${where}.${field.wire}`);
  }
  for (const field of fields) if (!field.optional && !(field.name in out)) fail(`${where}.${field.wire}: missing`);
  return out;
}

/**
 * Encode the TLV body of `record` (spec §4.5).
 * @throws BodyError ('field') when a value is out of its range: a bad path, a hash of the wrong size, a missing field
 */
export function encodeBody(record: MirrorRecord, ctx: BodyContext): Buffer {
  return Buffer.concat(encodeBodyParts(record, ctx));
}

/**
 * encodeBody as the pieces whose concatenation is the body, without copying the values (the stream encoder copies
 * them once, into the record's frame: a BLOCK's 4 KiB..2 MiB of data is not copied twice).
 * @throws BodyError as encodeBody
 */
export function encodeBodyParts(record: MirrorRecord, ctx: BodyContext): Buffer[] {
  if (record.type === 'HAVE') checkHaveBitmap(record.hashCount, record.missing);
  if (record.type === 'BLOCKS') checkBlocksCount(record.hashes, record.data, ctx);
  return encodeFieldParts(SCHEMAS[record.type], record as unknown as Record<string, unknown>, ctx, record.type);
}

/**
 * Decode the TLV body of a record of type `type` (spec §4.5). Values are views of `body`.
 * @throws BodyError: 'unknown-tag' for an unknown must-understand tag, 'field' for anything malformed or missing
 */
export function decodeBody(type: RecordTypeName, body: Buffer, ctx: BodyContext): MirrorRecord {
  const fields = decodeFields(SCHEMAS[type], body, ctx, type);
  if (type === 'HAVE') checkHaveBitmap(fields.hashCount as number, fields.missing as Buffer);
  if (type === 'BLOCKS') checkBlocksCount(fields.hashes as Buffer[], fields.data as Buffer, ctx);
  return { type, ...fields } as unknown as MirrorRecord;
}

/** A HAVE bitmap has exactly ceil(hash_count / 8) bytes and no bit set past hash_count (one canonical form). */
function checkHaveBitmap(count: number, missing: Buffer): void {
  if (!Buffer.isBuffer(missing) || missing.length !== Math.ceil(count / 8)) fail(`HAVE.missing: ${missing?.length} bytes for ${count} hashes`);
  if (count % 8 !== 0 && missing[missing.length - 1]! >> (count % 8) !== 0) fail('HAVE.missing: bits set past hash_count');
}

/** A BLOCKS record has one hash per whole block of its data, at least one. */
function checkBlocksCount(hashes: Buffer[], data: Buffer, ctx: BodyContext): void {
  if (!Array.isArray(hashes) || !Buffer.isBuffer(data) || ctx.blockSize === undefined) fail('BLOCKS: hashes and data required after the HELLO');
  if (hashes.length === 0 || hashes.length * ctx.blockSize! !== data.length) fail(`BLOCKS: ${hashes.length} hashes for ${data.length} bytes of ${ctx.blockSize}-byte blocks`);
}
