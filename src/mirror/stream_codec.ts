/**
 * DDMS v1, the mirror stream (mirroring spec §4.5; receiver checks §4.15; corruption scenarios §5.5, §5.13, §5.14;
 * invariant 5 of §4.18): the preamble, the 24-byte record header, the running digest, an encoder (records -> bytes)
 * and an incremental decoder (chunks of a Node stream -> records, split anywhere). Bodies: record_body.ts.
 *
 * Stream (one per direction of a connection, or one file)
 * | OFFSET | SIZE     | DESCRIPTION                                                                            |
 * |--------|----------|----------------------------------------------------------------------------------------|
 * | 0      | 8        | magic `DDMSTRM1` (44 44 4D 53 54 52 4D 31)                                             |
 * | 8      | 24 + n   | record seq 1, always HELLO (no other record may be seq 1, nor HELLO any later seq)    |
 * | ...    | 24 + n   | records seq 2, 3, ... back to back                                                     |
 * | end    |          | the last record is TERM or ERROR; a byte after it, or an end before it, is an error    |
 *
 * Record header (all little-endian, written field by field, never as a struct dump)
 * | OFFSET | SIZE     | DESCRIPTION                                                                            |
 * |--------|----------|----------------------------------------------------------------------------------------|
 * | 0      | 4        | sig u32 = 0x444D5352, bytes 52 53 4D 44; read as 0x52534D44 it is a byte-swapped peer  |
 * | 4      | 4        | body_len u32: bytes after the header; at most STREAM_RECORD_BODY_SIZE_MAX, a BLOCK at   |
 * |        |          | most block_size + STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX (block_size from the HELLO), a   |
 * |        |          | BLOCKS at most n x (block_size + HASH_SIZE_MAX) + that overhead, n = blocksPerRecordMax |
 * |        |          | checked as soon as the header is in, before a byte of the body is buffered             |
 * | 8      | 2        | type u16 (RECORD_TYPES); an unknown type is skipped unless flags bit 15 is set         |
 * | 10     | 2        | flags u16: bit 0 body is raw deflate (RFC 1951), inflated size bounded like body_len;   |
 * |        |          | bit 15 the record must be understood; bits 1..14 are reserved and must be 0            |
 * | 12     | 8        | seq u64: 1 for the HELLO, +1 per record, so a drop, duplicate or reorder shows         |
 * | 20     | 4        | crc32c u32 (Castagnoli) over header bytes 0..19 then the body as sent (crc32c.ts)      |
 * | 24     | body_len | body                                                                                   |
 *
 * Body: TLV fields back to back, tags strictly increasing; a nested struct (meta, pending) is again TLV fields
 * | OFFSET | SIZE     | DESCRIPTION                                                                            |
 * |--------|----------|----------------------------------------------------------------------------------------|
 * | 0      | 2        | tag u16: < 0x8000 skipped when unknown; >= 0x8000 must be understood, unknown aborts   |
 * | 2      | 4        | len u32 (the value's bytes; never past the body)                                      |
 * | 6      | len      | value                                                                                  |
 *
 * Value kinds (every field below has one)
 * | KIND    | SIZE               | DESCRIPTION                                                                   |
 * |---------|--------------------|-------------------------------------------------------------------------------|
 * | u8..u64 | 1, 2, 4, 8         | unsigned LE, exactly that size; i64 is two's complement LE (times in ns)      |
 * | bool    | 1                  | 0 or 1                                                                        |
 * | enum    | 1                  | code: role 1 master 2 slave; claim 0 none 1 exact 2 atleast; mode 1           |
 * |         |                    | incremental 2 full 3 strict; entry 1 file 2 dir 3 symlink 4 special; special  |
 * |         |                    | 1 fifo 2 char 3 block 4 socket                                                |
 * | id128   | 16                 | pass id or volume uuid                                                        |
 * | digest  | 32                 | SHA-256                                                                       |
 * | hash    | hash_size          | the HELLO's hash_size exactly                                                 |
 * | block   | 1..block_size      | raw block bytes                                                               |
 * | path    | 0..4095            | raw bytes, never text: components 1..255 bytes joined by `/`, no NUL, no `.`  |
 * |         |                    | or `..`, no empty component; the empty path is the root (ddfsroot)            |
 * | text    | 0..max             | printable ASCII                                                               |
 * | hashes  | 1 + count × size   | u8 hash_size (0 iff no hash), then the hashes                                 |
 * | paths   | repeated 2 + len   | u16 len, path                                                                 |
 * | xattrs  | repeated           | u8 name_len (1..255), name (no NUL), u32 value_len (<= 65536), value; names   |
 * |         |                    | strictly increasing bytewise                                                  |
 * | entries | repeated           | u8 name_len, name (a component), u8 entry type, u64 tid, u8 digest_len (0 or  |
 * |         |                    | 32), digest; names strictly increasing bytewise (Buffer.compare)              |
 * | meta    | TLV                | 1 mode u32, 2 uid u32, 3 gid u32, 4 mtime_ns i64, 5 atime_ns i64, 6 xattrs?   |
 * | pending | TLV                | 1 pass_id id128, 2 tid_beg u64, 3 tid_end u64, 4 key_cur path,                |
 * |         |                    | 5 running_digest digest                                                       |
 *
 * Record bodies: TYPE code, then TAG KIND FIELD ("?" optional; every other field must be present)
 * |  1 HELLO      | 1 u16 version (must be 1), 2 enum role, 3 id128 shared_uuid, 4 id128 unique_uuid,            |
 * |               | 5 u32 generation, 6 u32 block_size (512..2 MiB), 7 text hash_algo (<= 16), 8 u8 hash_size    |
 * |               | (1..64), 9 u64 sync_beg_tid, 10 u64 sync_end_tid, 11 enum claim_kind, 12 pending             |
 * |               | pending_pass?, 13 u32 capabilities (bit 0 CAPABILITY_BLOCKS: the sender reads BLOCKS),      |
 * |               | 14 id128 lineage_id?, 15 id128 master_uuid? (the master the sender serves or is bound to,   |
 * |               | §4.12 one master per slave)                                                                 |
 * |  2 PASS_BEGIN | 1 id128 pass_id, 2 u64 tid_beg, 3 u64 tid_end, 4 enum mode, 5 path resume_key?              |
 * |  3 HASHQ      | 1 hashes hashes                                                                             |
 * |  4 HAVE       | 1 id128 pass_id, 2 u32 hash_count, 3 bitmap missing: ceil(hash_count / 8) bytes, bit i      |
 * |               | (LSB first) set = the slave lacks hash i of the last HASHQ, no bit past hash_count         |
 * |  5 BLOCK      | 1 hash hash, 2 block data                                                                   |
 * |  6 FILE_BEGIN | 1 path path, 2 meta meta, 3 u64 size, 4 u64 node_count, 5 u64 tid, 6 u64 link_group (0 none) |
 * |  7 FILE_NODES | 1 u64 first_index, 2 hashes hashes (a zero block as the canonical zero-block hash)          |
 * |  8 FILE_END   | 1 digest digest (of the whole hash list)                                                    |
 * |  9 DIR        | 1 path path, 2 meta meta, 3 u64 tid                                                         |
 * | 10 SYMLINK    | 1 path path, 2 bytes target (1..4095), 3 meta meta, 4 u64 tid                               |
 * | 11 SPECIAL    | 1 path path, 2 enum kind, 3 u64 rdev, 4 meta meta, 5 u64 tid                                |
 * | 12 LINK       | 1 path path, 2 u64 link_group                                                               |
 * | 13 DIRLIST    | 1 path path, 2 entries entries, 3 bool continues (another DIRLIST of this directory follows) |
 * | 14 NEED       | 1 paths paths                                                                               |
 * | 15 DELETE     | 1 path path, 2 u64 tid                                                                      |
 * | 16 RENAME     | 1 path from, 2 path to, 3 u64 tid, 4 enum from_type, 5 digest from_digest                   |
 * | 17 SKIP       | 1 path from, 2 path to? (absent: to the end of the tree)                                    |
 * | 18 DIGESTQ    | 1 path path, 2 digest digest                                                                |
 * | 19 DIGESTA    | 1 path path, 2 bool match, 3 path source (optional: RENAME hint, §4.5)                      |
 * | 20 CHECKPOINT | 1 path key_cur, 2 u64 record_count, 3 digest running_digest                                 |
 * | 21 COMMIT     | 1 id128 pass_id, 2 u64 tid_end, 3 enum claim_kind (exact or atleast), 4 u64 record_count,  |
 * |               | 5 digest running_digest                                                                     |
 * | 22 ACK        | 1 id128 pass_id, 2 u64 committed_tid?, 3 u32 error?, 4 path key_cur?                        |
 * | 23 IDLE       | 1 u64 head_tid                                                                              |
 * | 24 TERM       | 1 u32 reason                                                                                |
 * | 25 ERROR      | 1 u32 reason, 2 u64 seq? (the record it is about), 3 text message? (<= 1024)                |
 * | 26 VQUERY     | 1 enum op (1 open 2 entry 3 list 4 nodes 5 findings), 2 path path, 3 u64 first_index?       |
 * |               | (nodes), 4 bool deep? (open), 5 bool mtime? (open): a verify session's question               |
 * | 27 VENTRY     | 1 path path, 2 enum kind (1 file 2 dir 3 symlink 4 fifo 5 char 6 block 7 socket), 3 u32 mode, |
 * |               | 4 u32 uid, 5 u32 gid, 6 i64 mtime_ns? (absent: not compared), 7 u64 size, 8 u64 node_count,  |
 * |               | 9 path link (empty: one name), 10 bytes target (0..4095), 11 u64 rdev, 12 digest             |
 * |               | content_digest, 13 digest digest (mirror/digest.ts)                                          |
 * | 28 VFINDING   | 1 enum kind (1 corrupt 2 dangling), 2 path path, 3 u64 block_index?, 4 hash hash?            |
 * | 29 VDONE      | 1 u64 count (records of the answer before it), 2 bool more (nodes: the list goes on)        |
 * | 30 BLOCKS     | 1 hashes hashes (1..n, n = blocksPerRecordMax(block_size)), 2 blocks data: exactly           |
 * |               | count x block_size bytes, block i = bytes [i x block_size, (i + 1) x block_size) under hash  |
 * |               | i. A batched BLOCK (one header, one CRC for up to STREAM_BLOCKS_DATA_SIZE_BYTES of blocks),  |
 * |               | sent with flags bit 15 and only to a peer whose HELLO sets CAPABILITY_BLOCKS               |
 *
 * Running digest (spec §4.5, the ZFS running-checksum idea): in the record with seq n (CHECKPOINT or COMMIT),
 * record_count = n - 1 and running_digest = SHA-256(seq_1 u64 LE ‖ crc_1 u32 LE ‖ ... ‖ seq_{n-1} ‖ crc_{n-1}) over
 * every earlier record of the same stream, HELLO, unknown and earlier CHECKPOINT records included. The encoder fills
 * both in; the decoder recomputes and compares them. A record replaced by another valid one with the same seq
 * changes the digest, so it is caught at the next CHECKPOINT or COMMIT although its own CRC is valid.
 *
 * Decoder invariants: it never buffers more than one header plus the body bound of the record being read, whatever
 * body_len claims; records come out only after their CRC, seq, flags, type and body have been checked; the first
 * fault is final (every later call throws it again); every fault is a DdfsError whose message and `data` name the
 * seq of the record at fault (data: { seq, offset, reason }). The codec checks framing and field syntax only: which
 * record may follow which within a pass (PASS_BEGIN before FILE_*, HAVE answering HASHQ...) is the pass layer's job.
 */
import { createHash, type Hash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { DdfsError, type DdfsErrorCode } from '../errors.js';
import { HASH_SIZE_MAX, STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX, STREAM_FRAME_SLAB_SIZE_BYTES, STREAM_RECORD_BODY_SIZE_MAX } from '../limits.js';
import { assert } from '../util/assert.js';
import { Crc32c } from './crc32c.js';
import {
  BodyError,
  RECORD_TYPES,
  blocksPerRecordMax,
  decodeBody,
  encodeBodyParts,
  recordTypeName,
  TLV_HEADER_SIZE,
  type BodyContext,
  type CheckpointRecord,
  type CommitRecord,
  type MirrorRecord,
  type UnknownRecord,
} from './record_body.js';

/** The stream preamble (spec §4.5). */
export const STREAM_MAGIC = Buffer.from('DDMSTRM1', 'latin1');
/** The record signature, as a u32 read little-endian. */
export const RECORD_SIG = 0x444d5352;
/** The signature as a peer of the other byte order would have written it. */
export const RECORD_SIG_SWAPPED = 0x52534d44;
/** Bytes of a record header. */
export const RECORD_HEADER_SIZE = 24;
/** The stream version a HELLO must carry. */
export const STREAM_VERSION = 1;
/** flags bit 0: the body is raw deflate. */
export const FLAG_COMPRESSED = 0x0001;
/** flags bit 15: a receiver that does not know the type must reject the record. */
export const FLAG_MUST_UNDERSTAND = 0x8000;
const FLAGS_KNOWN = FLAG_COMPRESSED | FLAG_MUST_UNDERSTAND;

/** Stable reasons a stream is refused (DdfsError.data.reason). */
export type StreamFault =
  | 'magic'
  | 'sig'
  | 'sig-swapped'
  | 'oversize'
  | 'crc'
  | 'seq'
  | 'flags'
  | 'unknown-type'
  | 'unknown-tag'
  | 'field'
  | 'first-not-hello'
  | 'hello-repeated'
  | 'version'
  | 'decompress'
  | 'count'
  | 'digest'
  | 'truncated'
  | 'trailing';

const FAULT_CODES: Record<StreamFault, DdfsErrorCode> = {
  magic: 'BAD_MAGIC',
  sig: 'CORRUPT',
  'sig-swapped': 'CORRUPT',
  oversize: 'CORRUPT',
  crc: 'CORRUPT',
  seq: 'CORRUPT',
  flags: 'NOT_SUPPORTED',
  'unknown-type': 'NOT_SUPPORTED',
  'unknown-tag': 'NOT_SUPPORTED',
  field: 'CORRUPT',
  'first-not-hello': 'CORRUPT',
  'hello-repeated': 'CORRUPT',
  version: 'NOT_SUPPORTED',
  decompress: 'CORRUPT',
  count: 'CORRUPT',
  digest: 'CORRUPT',
  truncated: 'TOO_SHORT',
  trailing: 'CORRUPT',
};

/** A decoded record with its framing. */
export interface DecodedRecord {
  seq: bigint;
  flags: number;
  /** Byte offset of the record header in the stream (the magic is at 0). */
  offset: number;
  /** Header plus body as sent, in bytes. */
  sizeBytes: number;
  record: MirrorRecord | UnknownRecord;
}

/** What the encoder is given: CHECKPOINT and COMMIT without the fields it computes. */
export type RecordInput =
  | Exclude<MirrorRecord, CheckpointRecord | CommitRecord>
  | Omit<CheckpointRecord, 'recordCount' | 'runningDigest'>
  | Omit<CommitRecord, 'recordCount' | 'runningDigest'>;

/**
 * Largest body_len a record of `typeCode` may declare (spec §4.5: BLOCK <= block_size + overhead, BLOCKS <= its most
 * blocks and their hashes + overhead, others 1 MiB).
 * @param blockSize the stream's block_size from its HELLO, undefined before it
 */
export function bodySizeMaxOf(typeCode: number, blockSize: number | undefined): number {
  if (typeCode === RECORD_TYPES.BLOCK && blockSize !== undefined) return blockSize + STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX;
  if (typeCode === RECORD_TYPES.BLOCKS && blockSize !== undefined) return blocksPerRecordMax(blockSize) * (blockSize + HASH_SIZE_MAX) + STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX;
  return STREAM_RECORD_BODY_SIZE_MAX;
}

/** The fields of one frame, for encodeFrame. */
export interface Frame {
  typeCode: number;
  flags: number;
  seq: bigint;
  /** The body as sent (already deflated if flags say so). */
  body: Uint8Array;
}

/**
 * One record as bytes: header (with its CRC32C) then body. No check of the body: the encoder uses it, and tests use it
 * to forge frames with valid CRCs.
 */
export function encodeFrame(crc: Crc32c, frame: Frame): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER_SIZE + frame.body.length);
  writeFrame(crc, out, frame.typeCode, frame.flags, frame.seq, [frame.body]);
  return out;
}

/**
 * Bytes of the frame of a BLOCKS record of `count` blocks (1..blocksPerRecordMax): the header, the hashes field
 * (tag, length, hash size byte, the hashes) and the data field (tag, length, the blocks), which ends the frame. The
 * blocks are its last count x blockSize bytes (RecordWriter.blocksFrame reads them there before it is encoded).
 */
export function blocksFrameSize(count: number, hashSize: number, blockSize: number): number {
  return RECORD_HEADER_SIZE + TLV_HEADER_SIZE + 1 + count * hashSize + TLV_HEADER_SIZE + count * blockSize;
}

/**
 * Write one record into `out` (exactly header + body bytes long, every byte written): the header with its CRC32C,
 * then the body given as the pieces whose concatenation it is (each copied once, straight into the frame).
 */
function writeFrame(crc: Crc32c | null, out: Buffer, typeCode: number, flags: number, seq: bigint, parts: readonly Uint8Array[]): void {
  out.writeUInt32LE(RECORD_SIG, 0);
  out.writeUInt32LE(out.length - RECORD_HEADER_SIZE, 4);
  out.writeUInt16LE(typeCode, 8);
  out.writeUInt16LE(flags, 10);
  out.writeBigUInt64LE(seq, 12);
  let at = RECORD_HEADER_SIZE;
  for (const part of parts) {
    // a part already in place (blocks read into their frame, StreamEncoder.encode `frame`) is not copied onto itself
    if (part.buffer !== out.buffer || part.byteOffset !== out.byteOffset + at) out.set(part, at);
    at += part.length;
  }
  assert(at === out.length, 'DDMS encoder: frame size');
  out.writeUInt32LE(crc === null ? 0 : crc.compute(out.subarray(0, 20), out.subarray(RECORD_HEADER_SIZE)), 20);
}

/** The 12 bytes (seq u64 LE, crc u32 LE) a record adds to the running digest. */
function digestPair(seq: bigint, crc: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64LE(seq, 0);
  b.writeUInt32LE(crc, 8);
  return b;
}

/** Options of one encoded record. */
export interface EncodeOptions {
  /** Deflate the body, kept only if that makes it smaller. */
  compress?: boolean;
  /** Set flags bit 15. */
  mustUnderstand?: boolean;
  /**
   * The frame goes only to a StreamDecoder of this process, in memory and untouched (channel.ts LocalFrames), which
   * takes the CRC32C field as written instead of computing it (StreamDecoder.push `local`): no CRC is computed for
   * it, the field is 0 (and the running digest is over that value on both sides). Never for bytes that leave the
   * process or that anything else may read.
   */
  localOnly?: boolean;
}

/**
 * Records -> bytes for one stream (spec §4.5). The first record must be a HELLO; its bytes come after the magic in
 * the first Buffer returned, so the concatenation of every returned Buffer is the stream. Assigns seq 1, 2, ...;
 * fills record_count and running_digest of CHECKPOINT and COMMIT. Nothing may follow TERM or ERROR.
 */
export class StreamEncoder {
  private seq = 1n;
  private readonly digest: Hash = createHash('sha256');
  private readonly ctx: BodyContext = {};
  private ended = false;
  private slab: Buffer | null = null;
  private slabUsed = 0;
  /**
   * Where frames too large for the slab (a BLOCKS record, a long FILE_NODES) come from, or null: a new Buffer each.
   * A local copy reuses them (channel.ts LocalFrames): a pass of 2 GiB of blocks otherwise allocates 2 GiB of 1 MiB
   * ArrayBuffers, whose external memory made V8 run a full GC every 64 MiB.
   */
  largeFrames: ((size: number) => Buffer) | null = null;

  /** An encoder for a new stream, given a loaded CRC32C (or use `await StreamEncoder.create()`). */
  constructor(private readonly crc: Crc32c) {}

  /** An encoder for a new stream (loads CRC32C once; encode() is synchronous). */
  static async create(): Promise<StreamEncoder> {
    return new StreamEncoder(await Crc32c.load());
  }

  /** The seq the next record will get. */
  get nextSeq(): bigint {
    return this.seq;
  }

  /** SHA-256 over (seq, crc) of every record encoded so far (what the next CHECKPOINT will carry). */
  runningDigest(): Buffer {
    return this.digest.copy().digest();
  }

  /**
   * Encode the next record, into `into` when given (its size must be the frame's; a body part already at its place
   * in it, the blocks of blocksFrameSize's layout, is not copied). `into` is never the HELLO's.
   * @returns its bytes (for the HELLO, preceded by the magic)
   * @throws DdfsError INVALID for a value out of range (bad path, hash not of the HELLO's hash_size, body over the
   *   type's bound); nothing is consumed then (the seq stays)
   */
  encode(input: RecordInput, options: EncodeOptions = {}, into?: Buffer): Buffer {
    assert(!this.ended, 'DDMS encoder: record after TERM or ERROR');
    assert((this.seq === 1n) === (input.type === 'HELLO'), 'DDMS encoder: the HELLO is record 1 and only record 1');
    const record = this.complete(input);
    const ctx: BodyContext = record.type === 'HELLO' ? { blockSize: record.blockSize, hashSize: record.hashSize } : this.ctx;
    if (record.type === 'HELLO' && record.version !== STREAM_VERSION) throw new DdfsError('INVALID', `DDMS encoder: HELLO version ${record.version}, this codec writes ${STREAM_VERSION}`);
    let parts: Buffer[];
    try {
      parts = encodeBodyParts(record, ctx);
    } catch (err) {
      if (err instanceof BodyError) throw new DdfsError('INVALID', `DDMS encoder: seq ${this.seq}: ${err.message}`, { seq: this.seq });
      throw err;
    }
    let bodyLength = 0;
    for (const part of parts) bodyLength += part.length;
    let flags = options.mustUnderstand ? FLAG_MUST_UNDERSTAND : 0;
    if (options.compress) {
      const body = Buffer.concat(parts, bodyLength);
      const deflated = deflateRawSync(body);
      if (deflated.length < body.length) {
        parts = [deflated];
        bodyLength = deflated.length;
        flags |= FLAG_COMPRESSED;
      }
    }
    const typeCode = RECORD_TYPES[record.type];
    const max = bodySizeMaxOf(typeCode, ctx.blockSize);
    if (bodyLength > max) throw new DdfsError('INVALID', `DDMS encoder: seq ${this.seq}: ${record.type} body of ${bodyLength} bytes exceeds ${max}; split it`, { seq: this.seq });
    if (into !== undefined && into.length !== RECORD_HEADER_SIZE + bodyLength) throw new DdfsError('INVALID', `DDMS encoder: seq ${this.seq}: a frame of ${into.length} bytes for a record of ${RECORD_HEADER_SIZE + bodyLength}`, { seq: this.seq });
    const frame = into ?? this.frameBuffer(RECORD_HEADER_SIZE + bodyLength);
    writeFrame(options.localOnly ? null : this.crc, frame, typeCode, flags, this.seq, parts);
    if (record.type === 'HELLO') Object.assign(this.ctx, ctx);
    this.digest.update(digestPair(this.seq, frame.readUInt32LE(20)));
    this.seq++;
    if (record.type === 'TERM' || record.type === 'ERROR') this.ended = true;
    return this.seq === 2n ? Buffer.concat([STREAM_MAGIC, frame]) : frame;
  }

  /**
   * `size` bytes for one frame: small frames (a BLOCK of a 4 KiB block included) are carved from a slab of
   * STREAM_FRAME_SLAB_SIZE_BYTES, as Buffer.allocUnsafe carves its pool, so a pass does not allocate (and collect)
   * one ArrayBuffer per record. A slab is never written again once carved: its frames stay valid for their holders.
   */
  private frameBuffer(size: number): Buffer {
    if (size > STREAM_FRAME_SLAB_SIZE_BYTES / 8) return this.largeFrames?.(size) ?? Buffer.allocUnsafe(size);
    if (this.slab === null || this.slabUsed + size > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(STREAM_FRAME_SLAB_SIZE_BYTES);
      this.slabUsed = 0;
    }
    const out = this.slab.subarray(this.slabUsed, this.slabUsed + size);
    this.slabUsed += (size + 7) & ~7; // 8-byte aligned, as Buffer's pool
    return out;
  }

  private complete(input: RecordInput): MirrorRecord {
    if (input.type === 'CHECKPOINT' || input.type === 'COMMIT') {
      return { ...input, recordCount: this.seq - 1n, runningDigest: this.runningDigest() } as MirrorRecord;
    }
    return input;
  }
}

type DecoderState = 'magic' | 'header' | 'body' | 'done';

interface PendingHeader {
  header: Buffer;
  bodyLen: number;
  typeCode: number;
  flags: number;
  seq: bigint;
  crc: number;
  /** The whole record lies in one chunk pushed as a frame of this process's own encoder (see push). */
  local: boolean;
}

/**
 * Bytes -> records for one stream (spec §4.5, §4.15), fed in chunks split anywhere:
 * `push(chunk)` as bytes arrive, `read()` until it returns null, and `finish()` at the end of the input.
 */
export class StreamDecoder {
  private readonly chunks: Buffer[] = [];
  /** The chunks pushed as `local` (frames this process's encoder made, handed over in memory). */
  private readonly localChunks = new WeakSet<Buffer>();
  /** Bytes already consumed from chunks[0]. */
  private chunkOffset = 0;
  private bufferedSize = 0;
  /** Stream offset of the first buffered byte. */
  private offset = 0;
  private state: DecoderState = 'magic';
  private pending: PendingHeader | null = null;
  private expectedSeq = 1n;
  private readonly digest: Hash = createHash('sha256');
  private readonly ctx: BodyContext = {};
  private fault: DdfsError | null = null;

  /** A decoder for a new stream, given a loaded CRC32C (or use `await StreamDecoder.create()`). */
  constructor(private readonly crc: Crc32c) {}

  /** A decoder for a new stream (loads CRC32C once; push/read/finish are synchronous). */
  static async create(): Promise<StreamDecoder> {
    return new StreamDecoder(await Crc32c.load());
  }

  /** True once a TERM or ERROR record has been read: the stream is complete. */
  get complete(): boolean {
    return this.state === 'done' && this.fault === null;
  }

  /** The HELLO's block_size, once read. */
  get blockSize(): number | undefined {
    return this.ctx.blockSize;
  }

  /** Whether the decoder still holds (a part of) `chunk`: its bytes are not all read yet. */
  retains(chunk: Buffer): boolean {
    return this.chunks.includes(chunk);
  }

  /**
   * Hand the decoder the next bytes of the stream. The decoder keeps the chunk until it has read past it, and a BLOCK
   * record's data may be a view of it: the caller must never reuse its memory (Node streams never do).
   * @param local the chunk is a frame (or the magic and HELLO frame) exactly as a StreamEncoder of THIS process
   *   returned it, handed over in memory untouched (a local copy, channel.ts LocalFrames): the CRC32C its header
   *   carries was computed over these very bytes, so a record lying wholly in it is not hashed again. Every other
   *   check (seq, flags, type, body, record count, running digest over (seq, crc)) is made as for any chunk.
   * @throws the decoder's fault, if it already has one
   */
  push(chunk: Uint8Array, local = false): void {
    if (this.fault) throw this.fault;
    if (chunk.length === 0) return;
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    if (local) this.localChunks.add(b);
    this.chunks.push(b);
    this.bufferedSize += chunk.length;
  }

  /**
   * The next complete, checked record, or null when more bytes are needed.
   * @throws DdfsError (data: { seq, offset, reason: StreamFault }): bad magic or sig, body_len over the type's bound
   *   (thrown as soon as the header is in), CRC mismatch, seq gap/duplicate/reorder, reserved flags, unknown
   *   must-understand type or tag, malformed body, HELLO not first, wrong version, record_count or running digest
   *   mismatch, bytes after TERM/ERROR
   */
  read(): DecodedRecord | null {
    if (this.fault) throw this.fault;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof DdfsError) this.fault = err;
      throw err;
    }
  }

  /**
   * Declare the end of the input. Call after read() has returned null.
   * @throws DdfsError TOO_SHORT (reason 'truncated') naming the seq that is incomplete or missing, unless the stream
   *   ended right after its TERM or ERROR
   */
  finish(): void {
    if (this.fault) throw this.fault;
    if (this.state === 'done' && this.bufferedSize === 0) return;
    const seq = this.expectedSeq;
    let what: string;
    if (this.state === 'magic') what = `truncated: the stream ended in the preamble (${this.bufferedSize} of ${STREAM_MAGIC.length} bytes)`;
    else if (this.state === 'body') what = `truncated: the stream ended inside the body (${this.bufferedSize} of ${this.pending!.bodyLen} bytes)`;
    else if (this.bufferedSize > 0) what = `truncated: the stream ended inside the header (${this.bufferedSize} of ${RECORD_HEADER_SIZE} bytes)`;
    else what = `missing: the stream ended after seq ${seq - 1n} without TERM`;
    this.fault = this.error('truncated', seq, this.offset + this.bufferedSize, what);
    throw this.fault;
  }

  private step(): DecodedRecord | null {
    for (;;) {
      if (this.state === 'done') {
        if (this.bufferedSize > 0) throw this.error('trailing', this.expectedSeq, this.offset, `${this.bufferedSize} bytes after the stream's TERM/ERROR`);
        return null;
      }
      if (this.state === 'magic') {
        if (this.bufferedSize < STREAM_MAGIC.length) return null;
        const magic = this.take(STREAM_MAGIC.length);
        if (!magic.equals(STREAM_MAGIC)) throw this.error('magic', 1n, 0, `not a DDMS v1 stream (magic ${magic.toString('hex')}, expected ${STREAM_MAGIC.toString('hex')})`);
        this.state = 'header';
      }
      if (this.state === 'header') {
        if (this.bufferedSize < RECORD_HEADER_SIZE) return null;
        this.pending = this.readHeader();
        this.state = 'body';
      }
      const p = this.pending!;
      if (this.bufferedSize < p.bodyLen) return null;
      const recordOffset = this.offset - RECORD_HEADER_SIZE;
      // a BLOCK's or BLOCKS's body (its receiver copies the data at once) is a view of the chunk when it lies in one; any other body
      // is copied out, so a record kept for a window (paths, node lists) never holds a whole chunk alive
      let body: Buffer;
      if ((p.typeCode === RECORD_TYPES.BLOCK || p.typeCode === RECORD_TYPES.BLOCKS) && p.bodyLen > 0) {
        body = this.take(p.bodyLen);
      } else {
        body = Buffer.allocUnsafe(p.bodyLen);
        this.copyOut(body);
      }
      this.pending = null;
      this.state = 'header';
      const record = this.checkRecord(p, body, recordOffset);
      if (record.type === 'TERM' || record.type === 'ERROR') this.state = 'done';
      return { seq: p.seq, flags: p.flags, offset: recordOffset, sizeBytes: RECORD_HEADER_SIZE + p.bodyLen, record };
    }
  }

  /** Header checks that need no body: sig, and body_len against the type's bound (before any body byte is kept). */
  private readHeader(): PendingHeader {
    const at = this.offset;
    const first = this.chunks[0]!;
    const room = first.length - this.chunkOffset;
    const header = this.take(RECORD_HEADER_SIZE);
    const seq = this.expectedSeq;
    const sig = header.readUInt32LE(0);
    if (sig === RECORD_SIG_SWAPPED) throw this.error('sig-swapped', seq, at, `byte-swapped record signature 0x${sig.toString(16)} (a peer of the other byte order)`);
    if (sig !== RECORD_SIG) throw this.error('sig', seq, at, `bad record signature 0x${sig.toString(16).padStart(8, '0')}`);
    const bodyLen = header.readUInt32LE(4);
    const typeCode = header.readUInt16LE(8);
    const max = bodySizeMaxOf(typeCode, this.ctx.blockSize);
    if (bodyLen > max) {
      throw this.error('oversize', seq, at, `body_len ${bodyLen} of type ${recordTypeName(typeCode) ?? typeCode} exceeds its maximum ${max}`, { bodyLen });
    }
    const local = room >= RECORD_HEADER_SIZE + bodyLen && this.localChunks.has(first);
    return { header, bodyLen, typeCode, flags: header.readUInt16LE(10), seq: header.readBigUInt64LE(12), crc: header.readUInt32LE(20), local };
  }

  /** Every check that needs the body, in order: CRC, seq, flags, type, body, version, running digest. */
  private checkRecord(p: PendingHeader, body: Buffer, at: number): MirrorRecord | UnknownRecord {
    const seq = this.expectedSeq;
    // a local frame's CRC was computed by this process's encoder over these bytes (push): it is not computed twice
    const crc = p.local ? p.crc : this.crc.compute(p.header.subarray(0, 20), body);
    if (crc !== p.crc) throw this.error('crc', seq, at, `CRC32C mismatch (header says 0x${p.crc.toString(16)}, bytes give 0x${crc.toString(16)})`);
    if (p.seq !== seq) {
      const why = p.seq < seq ? `duplicate or reordered record: seq ${p.seq} again` : `seq ${seq}${p.seq - seq > 1n ? `..${p.seq - 1n}` : ''} missing: got seq ${p.seq}`;
      throw this.error('seq', seq, at, `expected seq ${seq}, ${why}`, { seqDeclared: p.seq });
    }
    if ((p.flags & ~FLAGS_KNOWN) !== 0) throw this.error('flags', seq, at, `reserved flags 0x${(p.flags & ~FLAGS_KNOWN).toString(16)} set`);
    const name = recordTypeName(p.typeCode);
    if (seq === 1n && name !== 'HELLO') throw this.error('first-not-hello', seq, at, `the first record is ${name ?? `type ${p.typeCode}`}, not HELLO`);
    if (seq > 1n && name === 'HELLO') throw this.error('hello-repeated', seq, at, 'a second HELLO');
    let record: MirrorRecord | UnknownRecord;
    if (name === undefined) {
      if (p.flags & FLAG_MUST_UNDERSTAND) throw this.error('unknown-type', seq, at, `unknown record type ${p.typeCode} that must be understood`);
      record = { type: 'UNKNOWN', typeCode: p.typeCode, body };
    } else {
      const plain = p.flags & FLAG_COMPRESSED ? this.inflate(body, bodySizeMaxOf(p.typeCode, this.ctx.blockSize), seq, at) : body;
      try {
        record = decodeBody(name, plain, this.ctx);
      } catch (err) {
        if (err instanceof BodyError) throw this.error(err.reason, seq, at, err.message);
        throw err;
      }
    }
    if (record.type === 'HELLO') {
      if (record.version !== STREAM_VERSION) throw this.error('version', seq, at, `stream version ${record.version}, this codec reads ${STREAM_VERSION}`);
      this.ctx.blockSize = record.blockSize;
      this.ctx.hashSize = record.hashSize;
    }
    if (record.type === 'CHECKPOINT' || record.type === 'COMMIT') {
      if (record.recordCount !== seq - 1n) throw this.error('count', seq, at, `${record.type} counts ${record.recordCount} records before it, the stream has ${seq - 1n}`);
      const expected = this.digest.copy().digest();
      if (!record.runningDigest.equals(expected)) throw this.error('digest', seq, at, `${record.type} running digest mismatch: a record before it was replaced, dropped or reordered`);
    }
    this.digest.update(digestPair(seq, crc));
    this.expectedSeq = seq + 1n;
    return record;
  }

  private inflate(body: Buffer, max: number, seq: bigint, at: number): Buffer {
    try {
      return inflateRawSync(body, { maxOutputLength: max });
    } catch (err) {
      const tooLarge = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
      throw this.error(tooLarge ? 'oversize' : 'decompress', seq, at, tooLarge ? `compressed body inflates past its maximum ${max}` : 'compressed body does not inflate');
    }
  }

  private error(reason: StreamFault, seq: bigint, offset: number, what: string, extra: Record<string, unknown> = {}): DdfsError {
    return new DdfsError(FAULT_CODES[reason], `DDMS stream: seq ${seq}: ${what} (stream offset ${offset})`, { seq, offset, reason, ...extra });
  }

  /** Remove `n` buffered bytes (n <= bufferedSize), as a view when they lie in one chunk. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.chunkOffset >= n) {
      const out = first.subarray(this.chunkOffset, this.chunkOffset + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyOut(out);
    return out;
  }

  /** Fill `out` from the buffered bytes and remove them. */
  private copyOut(out: Buffer): void {
    let filled = 0;
    while (filled < out.length) {
      const chunk = this.chunks[0]!;
      const n = Math.min(chunk.length - this.chunkOffset, out.length - filled);
      chunk.copy(out, filled, this.chunkOffset, this.chunkOffset + n);
      filled += n;
      this.advance(n);
    }
  }

  private advance(n: number): void {
    this.chunkOffset += n;
    this.bufferedSize -= n;
    this.offset += n;
    while (this.chunks.length > 0 && this.chunkOffset >= this.chunks[0]!.length) {
      this.chunkOffset -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}

/**
 * Decode a whole stream from an async source of chunks (a Node Readable, split anywhere), yielding each record once
 * it is checked. Records before a fault are yielded before the fault is thrown.
 * @throws DdfsError as StreamDecoder.read() and finish() do
 */
export async function* decodeStream(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<DecodedRecord> {
  const decoder = await StreamDecoder.create();
  for await (const chunk of source) {
    assert(typeof chunk !== 'string', 'DDMS decoder: a text-mode stream (set no encoding)');
    decoder.push(chunk);
    for (let r = decoder.read(); r !== null; r = decoder.read()) yield r;
  }
  for (let r = decoder.read(); r !== null; r = decoder.read()) yield r;
  decoder.finish();
}
