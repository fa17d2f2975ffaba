/**
 * DDMS v1 codec (mirroring spec §4.5; invariant 5 of §4.18; §5 scenarios 5, 13, 14): round trip of random record
 * sequences split at random chunk boundaries, and rejection, with the seq named, of every single bit flip, every
 * truncation, a duplicated, dropped, swapped or substituted record, an oversize body_len (refused before any body
 * byte is buffered), hostile paths, and unknown types, flags and tags as the spec says.
 */
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { DdfsError } from '../errors.js';
import { HASH_SIZE_MAX, STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX, STREAM_RECORD_BODY_SIZE_MAX } from '../limits.js';
import { Crc32c } from './crc32c.js';
import { RECORD_TYPES, blocksPerRecordMax, encodeBody, type DirEntry, type HelloRecord, type Meta, type MirrorRecord, type Xattr } from './record_body.js';
import {
  FLAG_COMPRESSED,
  FLAG_MUST_UNDERSTAND,
  RECORD_HEADER_SIZE,
  STREAM_MAGIC,
  StreamDecoder,
  StreamEncoder,
  decodeStream,
  encodeFrame,
  type DecodedRecord,
  type RecordInput,
} from './stream_codec.js';

const crc = await Crc32c.load();

// ---- arbitraries -----------------------------------------------------------------------------------------------

const buf = (a: Uint8Array): Buffer => Buffer.from(a);
const bytes = (minLength: number, maxLength: number) => fc.uint8Array({ minLength, maxLength }).map(buf);
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const i64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const id128 = bytes(16, 16);
const digest = bytes(32, 32);

/** A name component: arbitrary bytes but NUL and '/', not '.' or '..'; now and then 255 bytes long. */
const nameByte = fc.integer({ min: 1, max: 255 }).filter((b) => b !== 0x2f);
const name = fc
  .oneof({ weight: 8, arbitrary: fc.array(nameByte, { minLength: 1, maxLength: 10 }) }, { weight: 1, arbitrary: fc.array(nameByte, { minLength: 255, maxLength: 255 }) })
  .map((a) => Buffer.from(a))
  .filter((b) => !(b.equals(Buffer.from('.')) || b.equals(Buffer.from('..'))));
const path = fc.array(name, { maxLength: 4 }).map((parts) => Buffer.from(parts.map((p) => p.toString('latin1')).join('/'), 'latin1'));

const sortedUnique = <T>(items: T[], key: (t: T) => Buffer): T[] => {
  const sorted = [...items].sort((a, b) => Buffer.compare(key(a), key(b)));
  return sorted.filter((t, i) => i === 0 || !key(sorted[i - 1]!).equals(key(t)));
};
const xattrs = fc
  .array(fc.record({ name: fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a)), value: bytes(0, 40) }), { maxLength: 3 })
  .map((xs): Xattr[] => sortedUnique(xs, (x) => x.name));
const meta: fc.Arbitrary<Meta> = fc.record(
  { mode: u32, uid: u32, gid: u32, mtimeNs: i64, atimeNs: i64, xattrs: fc.option(xattrs, { nil: undefined }) },
  { requiredKeys: ['mode', 'uid', 'gid', 'mtimeNs', 'atimeNs'] },
);
const entryType = fc.constantFrom('file' as const, 'dir' as const, 'symlink' as const, 'special' as const);
const entries = fc
  .array(fc.record({ name, entryType, tid: u64, digest: fc.option(digest, { nil: undefined }) }, { requiredKeys: ['name', 'entryType', 'tid'] }), { maxLength: 5 })
  .map((es): DirEntry[] => sortedUnique(es, (e) => e.name));

const hello: fc.Arbitrary<HelloRecord> = fc.record(
  {
    type: fc.constant('HELLO' as const),
    version: fc.constant(1),
    role: fc.constantFrom('master' as const, 'slave' as const),
    sharedUuid: id128,
    uniqueUuid: id128,
    generation: u32,
    blockSize: fc.constantFrom(512, 1024, 4096),
    hashAlgo: fc.constantFrom('TIGER', 'SHA1', 'TIGER128', 'TIGER160'),
    hashSize: fc.constantFrom(16, 20, 24),
    syncBegTid: u64,
    syncEndTid: u64,
    claimKind: fc.constantFrom('none' as const, 'exact' as const, 'atleast' as const),
    pendingPass: fc.option(fc.record({ passId: id128, tidBeg: u64, tidEnd: u64, keyCur: path, runningDigest: digest }), { nil: undefined }),
    capabilities: u32,
  },
  { requiredKeys: ['type', 'version', 'role', 'sharedUuid', 'uniqueUuid', 'generation', 'blockSize', 'hashAlgo', 'hashSize', 'syncBegTid', 'syncEndTid', 'claimKind', 'capabilities'] },
);

/** Every record type but HELLO, COMMIT and TERM/ERROR, with hashes and blocks of the HELLO's sizes. */
function middleRecord(h: HelloRecord): fc.Arbitrary<RecordInput> {
  const hash = bytes(h.hashSize, h.hashSize);
  const hashes = fc.array(hash, { maxLength: 6 });
  const have = fc.integer({ min: 0, max: 20 }).chain((hashCount) =>
    bytes(Math.ceil(hashCount / 8), Math.ceil(hashCount / 8)).map((missing) => {
      if (hashCount % 8 !== 0) missing[missing.length - 1]! &= (1 << hashCount % 8) - 1;
      return missing;
    }).map((missing) => ({ hashCount, missing })),
  );
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const rec = <T extends Record<string, unknown>>(shape: { [K in keyof T]: fc.Arbitrary<T[K]> }, required: (keyof T)[]) =>
    fc.record(shape, { requiredKeys: required as never }) as unknown as fc.Arbitrary<RecordInput>;
  return fc.oneof(
    rec({ type: fc.constant('PASS_BEGIN'), passId: id128, tidBeg: u64, tidEnd: u64, mode: fc.constantFrom('incremental', 'full', 'strict'), resumeKey: opt(path) }, ['type', 'passId', 'tidBeg', 'tidEnd', 'mode']),
    rec({ type: fc.constant('HASHQ'), hashes }, ['type', 'hashes']),
    fc.record({ passId: id128, have }).map(({ passId, have }) => ({ type: 'HAVE' as const, passId, ...have })),
    rec({ type: fc.constant('BLOCK'), hash, data: bytes(1, h.blockSize) }, ['type', 'hash', 'data']),
    fc.array(hash, { minLength: 1, maxLength: 3 }).chain((hs) => bytes(hs.length * h.blockSize, hs.length * h.blockSize).map((data) => ({ type: 'BLOCKS' as const, hashes: hs, data }))),
    rec({ type: fc.constant('FILE_BEGIN'), path, meta, sizeBytes: u64, nodeCount: u64, tid: u64, linkGroup: u64 }, ['type', 'path', 'meta', 'sizeBytes', 'nodeCount', 'tid', 'linkGroup']),
    rec({ type: fc.constant('FILE_NODES'), firstIndex: u64, hashes }, ['type', 'firstIndex', 'hashes']),
    rec({ type: fc.constant('FILE_END'), digest }, ['type', 'digest']),
    rec({ type: fc.constant('DIR'), path, meta, tid: u64 }, ['type', 'path', 'meta', 'tid']),
    rec({ type: fc.constant('SYMLINK'), path, target: bytes(1, 300), meta, tid: u64 }, ['type', 'path', 'target', 'meta', 'tid']),
    rec({ type: fc.constant('SPECIAL'), path, kind: fc.constantFrom('fifo', 'char', 'block', 'socket'), rdev: u64, meta, tid: u64 }, ['type', 'path', 'kind', 'rdev', 'meta', 'tid']),
    rec({ type: fc.constant('LINK'), path, linkGroup: u64 }, ['type', 'path', 'linkGroup']),
    rec({ type: fc.constant('DIRLIST'), path, entries, continues: fc.boolean() }, ['type', 'path', 'entries', 'continues']),
    rec({ type: fc.constant('NEED'), paths: fc.array(path, { maxLength: 4 }) }, ['type', 'paths']),
    rec({ type: fc.constant('DELETE'), path, tid: u64 }, ['type', 'path', 'tid']),
    rec({ type: fc.constant('RENAME'), from: path, to: path, tid: u64, fromType: entryType, fromDigest: digest }, ['type', 'from', 'to', 'tid', 'fromType', 'fromDigest']),
    rec({ type: fc.constant('SKIP'), from: path, to: opt(path) }, ['type', 'from']),
    rec({ type: fc.constant('DIGESTQ'), path, digest }, ['type', 'path', 'digest']),
    rec({ type: fc.constant('DIGESTA'), path, match: fc.boolean(), source: opt(path) }, ['type', 'path', 'match']),
    rec({ type: fc.constant('CHECKPOINT'), keyCur: path }, ['type', 'keyCur']),
    rec({ type: fc.constant('ACK'), passId: id128, committedTid: opt(u64), error: opt(u32), keyCur: opt(path) }, ['type', 'passId']),
    rec({ type: fc.constant('IDLE'), headTid: u64 }, ['type', 'headTid']),
    rec({ type: fc.constant('VQUERY'), op: fc.constantFrom('open', 'entry', 'list', 'nodes', 'findings'), path, firstIndex: opt(u64), deep: opt(fc.boolean()), mtime: opt(fc.boolean()) }, ['type', 'op', 'path']),
    rec({
      type: fc.constant('VENTRY'), path, kind: fc.constantFrom('file', 'directory', 'symlink', 'fifo', 'char', 'block', 'socket'), mode: u32, uid: u32, gid: u32,
      mtimeNs: opt(i64), sizeBytes: u64, nodeCount: u64, link: path, target: bytes(0, 300), rdev: u64, contentDigest: digest, digest,
    }, ['type', 'path', 'kind', 'mode', 'uid', 'gid', 'sizeBytes', 'nodeCount', 'link', 'target', 'rdev', 'contentDigest', 'digest']),
    rec({ type: fc.constant('VFINDING'), kind: fc.constantFrom('corrupt', 'dangling'), path, blockIndex: opt(u64), hash: opt(hash) }, ['type', 'kind', 'path']),
    rec({ type: fc.constant('VDONE'), count: u64, more: fc.boolean() }, ['type', 'count', 'more']),
  );
}

interface Encoded {
  inputs: RecordInput[];
  /** One frame per record (the first without the magic). */
  frames: Buffer[];
  stream: Buffer;
}

/** A whole stream: HELLO, random records, COMMIT, then TERM or ERROR. */
const streamArb: fc.Arbitrary<{ inputs: RecordInput[]; compress: boolean[] }> = hello.chain((h) =>
  fc.record({
    middle: fc.array(middleRecord(h), { maxLength: 10 }),
    commit: fc.record({ type: fc.constant('COMMIT' as const), passId: id128, tidEnd: u64, claimKind: fc.constantFrom('exact' as const, 'atleast' as const) }),
    last: fc.oneof(
      fc.record({ type: fc.constant('TERM' as const), reason: u32 }),
      fc.record({ type: fc.constant('ERROR' as const), reason: u32, seq: fc.option(u64, { nil: undefined }), message: fc.option(fc.stringMatching(/^[ -~]{0,40}$/), { nil: undefined }) }, { requiredKeys: ['type', 'reason'] }),
    ),
    compress: fc.array(fc.boolean(), { minLength: 14, maxLength: 14 }),
  }).map(({ middle, commit, last, compress }) => ({ inputs: [h, ...middle, commit, last] as RecordInput[], compress })),
);

async function encodeAll(inputs: RecordInput[], compress: boolean[] = []): Promise<Encoded> {
  const encoder = await StreamEncoder.create();
  const frames = inputs.map((r, i) => encoder.encode(r, { compress: compress[i] ?? false }));
  frames[0] = frames[0]!.subarray(STREAM_MAGIC.length);
  return { inputs, frames, stream: Buffer.concat([STREAM_MAGIC, ...frames]) };
}

/** What the decoder must give back: the inputs, CHECKPOINT/COMMIT completed from the frames' own seq and CRC. */
function expectedRecords(e: Encoded): MirrorRecord[] {
  const running = createHash('sha256');
  return e.inputs.map((r, i) => {
    const out = r.type === 'CHECKPOINT' || r.type === 'COMMIT' ? ({ ...r, recordCount: BigInt(i), runningDigest: running.copy().digest() } as MirrorRecord) : (r as MirrorRecord);
    const pair = Buffer.alloc(12);
    pair.writeBigUInt64LE(BigInt(i + 1));
    pair.writeUInt32LE(e.frames[i]!.readUInt32LE(20), 8);
    running.update(pair);
    return out;
  });
}

/** Decode `chunks` to the end; return the records and the fault (null if none). */
function decodeChunks(chunks: Buffer[]): { records: DecodedRecord[]; fault: DdfsError | null } {
  const decoder = new StreamDecoder(crc);
  const records: DecodedRecord[] = [];
  try {
    for (const chunk of chunks) {
      decoder.push(chunk);
      for (let r = decoder.read(); r !== null; r = decoder.read()) records.push(r);
    }
    decoder.finish();
    return { records, fault: null };
  } catch (err) {
    if (!(err instanceof DdfsError)) throw err;
    return { records, fault: err };
  }
}

/** Split `b` at the given cut points. */
function split(b: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, b.length]) {
    out.push(b.subarray(at, p));
    at = p;
  }
  return out;
}

/** Start offset in the stream of the frame with seq n (1-based). */
function frameStart(e: Encoded, n: number): number {
  let at = STREAM_MAGIC.length;
  for (let i = 0; i < n - 1; i++) at += e.frames[i]!.length;
  return at;
}

/** The seq of the frame holding stream byte `offset` (the preamble counts as seq 1). */
function seqAt(e: Encoded, offset: number): bigint {
  let at = STREAM_MAGIC.length;
  for (let i = 0; i < e.frames.length; i++) {
    at += e.frames[i]!.length;
    if (offset < at) return BigInt(i + 1);
  }
  throw new Error('offset past the stream');
}

/** Assert a fault named `seq`, with nothing of that record or later delivered. */
function expectFault(result: { records: DecodedRecord[]; fault: DdfsError | null }, seq: bigint, reason?: string): DdfsError {
  expect(result.fault, 'the mutated stream was accepted').not.toBeNull();
  const fault = result.fault!;
  expect(fault.data.seq).toBe(seq);
  expect(fault.message).toContain(`seq ${seq}`);
  if (reason !== undefined) expect(fault.data.reason).toBe(reason);
  expect(fault.message).not.toContain('\n');
  for (const r of result.records) expect(r.seq).toBeLessThan(seq);
  return fault;
}

// ---- fixed records for the deterministic tests -----------------------------------------------------------------

const HELLO: HelloRecord = {
  type: 'HELLO',
  version: 1,
  role: 'master',
  sharedUuid: Buffer.alloc(16, 0xaa),
  uniqueUuid: Buffer.alloc(16, 0xbb),
  generation: 3,
  blockSize: 4096,
  hashAlgo: 'TIGER',
  hashSize: 24,
  syncBegTid: 0n,
  syncEndTid: 0n,
  claimKind: 'none',
  capabilities: 0,
};
const CTX = { blockSize: HELLO.blockSize, hashSize: HELLO.hashSize };
const HELLO_STREAM = (await encodeAll([HELLO])).stream;

/** A frame with a valid CRC for an arbitrary header and body. */
const forge = (seq: bigint, typeCode: number, body: Uint8Array, flags = 0): Buffer => encodeFrame(crc, { typeCode, flags, seq, body });
const term = (seq: bigint): Buffer => forge(seq, RECORD_TYPES.TERM, encodeBody({ type: 'TERM', reason: 0 }, CTX));
/** A bare 24-byte header claiming `bodyLen`. */
function header(seq: bigint, typeCode: number, bodyLen: number): Buffer {
  const h = forge(seq, typeCode, Buffer.alloc(0)).subarray(0, RECORD_HEADER_SIZE);
  h.writeUInt32LE(bodyLen, 4);
  return h;
}

// ---- properties ------------------------------------------------------------------------------------------------

describe('DDMS round trip', () => {
  it('decodes every random record sequence, split at random chunk boundaries, to the records encoded', async () => {
    await fc.assert(
      fc.asyncProperty(streamArb, fc.array(fc.nat(), { maxLength: 12 }), async ({ inputs, compress }, cuts) => {
        const e = await encodeAll(inputs, compress);
        const { records, fault } = decodeChunks(split(e.stream, cuts));
        expect(fault).toBeNull();
        expect(records.map((r) => r.record)).toEqual(expectedRecords(e));
        expect(records.map((r) => r.seq)).toEqual(inputs.map((_, i) => BigInt(i + 1)));
        expect(records.map((r) => r.offset)).toEqual(inputs.map((_, i) => frameStart(e, i + 1)));
      }),
      { numRuns: 300 },
    );
  });

  it('delivers bytes that are not UTF-8 unchanged, and decodes one byte at a time through decodeStream', async () => {
    const weird = Buffer.from([0xff, 0xfe, 0x2f, 0xc3, 0x28, 0x2f, 0x80]); // "\xff\xfe/\xc3(/\x80"
    const e = await encodeAll([HELLO, { type: 'DELETE', path: weird, tid: 2n ** 64n - 1n }, { type: 'TERM', reason: 0 }]);
    async function* bytewise(): AsyncGenerator<Buffer> {
      for (let i = 0; i < e.stream.length; i++) yield e.stream.subarray(i, i + 1);
    }
    const records: DecodedRecord[] = [];
    for await (const r of decodeStream(bytewise())) records.push(r);
    expect(records.map((r) => r.record.type)).toEqual(['HELLO', 'DELETE', 'TERM']);
    const del = records[1]!.record as { path: Buffer; tid: bigint };
    expect(Buffer.isBuffer(del.path)).toBe(true);
    expect(del.path.equals(weird)).toBe(true);
    expect(del.tid).toBe(2n ** 64n - 1n);
  });
});

describe('DDMS frames of many BLOCKs (encoder slab, decoder views)', () => {
  it('keeps every frame intact across slabs, byte-equal to encodeFrame of its body, and decodes each chunk in place', async () => {
    const enc = await StreamEncoder.create();
    const frames: Buffer[] = [enc.encode(HELLO)];
    const blocks: Array<{ hash: Buffer; data: Buffer }> = [];
    for (let k = 0; k < 700; k++) {
      // 700 frames of 4 KiB + 58 bytes: three slabs of 1 MiB; every third block short (a file's tail)
      const data = Buffer.alloc(k % 3 === 0 ? 4096 - k : 4096, k & 0xff);
      const hash = Buffer.alloc(24, (k * 7) & 0xff);
      blocks.push({ hash, data });
      frames.push(enc.encode({ type: 'BLOCK', hash, data }));
    }
    frames.push(enc.encode({ type: 'TERM', reason: 0 }));
    for (let k = 0; k < blocks.length; k++) {
      const expected = encodeFrame(crc, { typeCode: RECORD_TYPES.BLOCK, flags: 0, seq: BigInt(k + 2), body: encodeBody({ type: 'BLOCK', ...blocks[k]! }, CTX) });
      expect(frames[k + 1]!.equals(expected), `frame ${k + 2}`).toBe(true);
    }
    const dec = await StreamDecoder.create();
    const got: DecodedRecord[] = [];
    for (const f of frames) {
      dec.push(f);
      for (let r = dec.read(); r !== null; r = dec.read()) got.push(r);
    }
    dec.finish();
    expect(got.length).toBe(frames.length);
    for (let k = 0; k < blocks.length; k++) {
      const r = got[k + 1]!.record as { type: string; hash: Buffer; data: Buffer };
      expect(r.type).toBe('BLOCK');
      expect(r.data.equals(blocks[k]!.data)).toBe(true);
      expect(r.hash.equals(blocks[k]!.hash)).toBe(true);
    }
  });
});

describe('DDMS frames handed over in memory (a local copy: push `local`)', () => {
  it('decodes local frames to the same records, computing no CRC for them, and still checks seq and the running digest', async () => {
    const enc = await StreamEncoder.create();
    const frames = [enc.encode(HELLO), enc.encode({ type: 'IDLE', headTid: 5n }), enc.encode({ type: 'CHECKPOINT', keyCur: Buffer.from('a') }), enc.encode({ type: 'TERM', reason: 0 })];
    const decodeAs = async (chunks: Buffer[], local: boolean) => {
      const dec = await StreamDecoder.create();
      const spy = vi.spyOn(Crc32c.prototype, 'compute');
      const got: DecodedRecord[] = [];
      try {
        for (const f of chunks) {
          dec.push(f, local);
          for (let r = dec.read(); r !== null; r = dec.read()) got.push(r);
        }
        dec.finish();
        return { got, crcCalls: spy.mock.calls.length, fault: null as DdfsError | null };
      } catch (err) {
        return { got, crcCalls: spy.mock.calls.length, fault: err as DdfsError };
      } finally {
        spy.mockRestore();
      }
    };
    const checked = await decodeAs(frames, false);
    const local = await decodeAs(frames, true);
    expect(checked.fault).toBeNull();
    expect(checked.crcCalls).toBe(frames.length);
    expect(local.fault).toBeNull();
    expect(local.crcCalls).toBe(0);
    expect(local.got.map((r) => r.record)).toEqual(checked.got.map((r) => r.record));
    // a dropped frame: caught by seq although no CRC is computed
    expect((await decodeAs([frames[0]!, frames[2]!, frames[3]!], true)).fault?.data).toMatchObject({ seq: 2n, reason: 'seq' });
    // a frame split over two chunks is not wholly in one local chunk: its CRC is computed
    const split = await decodeAs([frames[0]!, frames[1]!.subarray(0, 10), frames[1]!.subarray(10), frames[2]!, frames[3]!], true);
    expect(split.fault).toBeNull();
    expect(split.crcCalls).toBe(1);
  });
});

describe('DDMS corruption is rejected with the seq named (invariant 5)', () => {
  it('rejects any single bit flip anywhere', async () => {
    await fc.assert(
      fc.asyncProperty(streamArb, fc.nat(), fc.integer({ min: 0, max: 7 }), fc.array(fc.nat(), { maxLength: 4 }), async ({ inputs, compress }, at, bit, cuts) => {
        const e = await encodeAll(inputs, compress);
        const offset = at % e.stream.length;
        const mutated = Buffer.from(e.stream);
        mutated[offset]! ^= 1 << bit;
        const result = decodeChunks(split(mutated, cuts));
        if (offset < STREAM_MAGIC.length) expectFault(result, 1n, 'magic');
        else expectFault(result, seqAt(e, offset));
      }),
      { numRuns: 500 },
    );
  });

  it('rejects a flip of every bit of one small pass, naming the record it hit', async () => {
    const e = await encodeAll([
      HELLO,
      { type: 'PASS_BEGIN', passId: Buffer.alloc(16, 9), tidBeg: 1n, tidEnd: 2n, mode: 'incremental' },
      { type: 'DELETE', path: Buffer.from('a/b'), tid: 2n },
      { type: 'CHECKPOINT', keyCur: Buffer.from('a') },
      { type: 'COMMIT', passId: Buffer.alloc(16, 9), tidEnd: 2n, claimKind: 'exact' },
      { type: 'TERM', reason: 0 },
    ]);
    let flips = 0;
    for (let offset = 0; offset < e.stream.length; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const mutated = Buffer.from(e.stream);
        mutated[offset]! ^= 1 << bit;
        expectFault(decodeChunks([mutated]), offset < STREAM_MAGIC.length ? 1n : seqAt(e, offset));
        flips++;
      }
    }
    expect(flips).toBe(8 * e.stream.length);
  });

  it('rejects every truncation, naming the first incomplete or missing seq', async () => {
    await fc.assert(
      fc.asyncProperty(streamArb, fc.nat(), async ({ inputs, compress }, at) => {
        const e = await encodeAll(inputs, compress);
        const length = at % e.stream.length;
        const complete = e.frames.filter((_, i) => frameStart(e, i + 1) + e.frames[i]!.length <= length).length;
        expectFault(decodeChunks([e.stream.subarray(0, length)]), BigInt(complete + 1), 'truncated');
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every truncation of one small stream, at each byte offset', async () => {
    const e = await encodeAll([HELLO, { type: 'IDLE', headTid: 7n }, { type: 'CHECKPOINT', keyCur: Buffer.from('a') }, { type: 'TERM', reason: 0 }]);
    for (let length = 0; length < e.stream.length; length++) {
      const result = decodeChunks([e.stream.subarray(0, length)]);
      expect(result.fault?.code, `cut at ${length}`).toBe('TOO_SHORT');
      const complete = e.frames.filter((_, i) => frameStart(e, i + 1) + e.frames[i]!.length <= length).length;
      expect(result.fault?.data.seq, `cut at ${length}`).toBe(BigInt(complete + 1));
    }
    expect(decodeChunks([e.stream]).fault).toBeNull();
  });

  it('rejects a duplicated, dropped or swapped record', async () => {
    await fc.assert(
      fc.asyncProperty(streamArb, fc.nat(), fc.constantFrom('duplicate', 'drop', 'swap'), async ({ inputs, compress }, pick, how) => {
        const e = await encodeAll(inputs, compress);
        const count = e.frames.length;
        const n = (pick % (how === 'swap' ? count - 1 : count)) + 1; // seq of the record acted on
        const frames = [...e.frames];
        if (how === 'duplicate') frames.splice(n, 0, frames[n - 1]!);
        if (how === 'drop') frames.splice(n - 1, 1);
        if (how === 'swap') [frames[n - 1], frames[n]] = [frames[n]!, frames[n - 1]!];
        const result = decodeChunks([STREAM_MAGIC, ...frames]);
        const fault = expectFault(result, BigInt(how === 'duplicate' ? n + 1 : n));
        if (how === 'duplicate') expect(fault.data.reason).toBe(n === count ? 'trailing' : 'seq');
        if (how === 'drop') expect(fault.data.reason).toBe(n === count ? 'truncated' : 'seq');
        if (how === 'swap') expect(fault.data.reason).toBe('seq');
      }),
      { numRuns: 300 },
    );
  });

  it('rejects a record replaced by another valid one of the same seq at the next COMMIT (running digest)', async () => {
    await fc.assert(
      fc.asyncProperty(streamArb, fc.nat(), u64, async ({ inputs, compress }, pick, headTid) => {
        const e = await encodeAll(inputs, compress);
        const commitSeq = inputs.findIndex((r) => r.type === 'COMMIT') + 1;
        fc.pre(commitSeq > 2);
        const n = (pick % (commitSeq - 2)) + 2; // 2..commitSeq-1
        const frames = [...e.frames];
        frames[n - 1] = forge(BigInt(n), RECORD_TYPES.IDLE, encodeBody({ type: 'IDLE', headTid }, CTX));
        fc.pre(!frames[n - 1]!.equals(e.frames[n - 1]!));
        const firstCheck = inputs.findIndex((r, i) => i >= n && (r.type === 'CHECKPOINT' || r.type === 'COMMIT')) + 1;
        expectFault(decodeChunks([STREAM_MAGIC, ...frames]), BigInt(firstCheck), 'digest');
      }),
      { numRuns: 200 },
    );
  });
});

// ---- deterministic cases ---------------------------------------------------------------------------------------

describe('DDMS body_len bound (spec §4.5, §5 scenario 14)', () => {
  it('refuses a header claiming a 4 GiB body before any body byte arrives, without allocating it', () => {
    const decoder = new StreamDecoder(crc);
    decoder.push(HELLO_STREAM);
    expect(decoder.read()?.record.type).toBe('HELLO');
    const claim = header(2n, RECORD_TYPES.FILE_BEGIN, 0xffff_ffff);
    const alloc = vi.spyOn(Buffer, 'alloc');
    const allocUnsafe = vi.spyOn(Buffer, 'allocUnsafe');
    const allocUnsafeSlow = vi.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      for (let i = 0; i < RECORD_HEADER_SIZE - 1; i++) {
        decoder.push(claim.subarray(i, i + 1));
        expect(decoder.read()).toBeNull(); // an incomplete header: nothing decided, nothing allocated
      }
      decoder.push(claim.subarray(RECORD_HEADER_SIZE - 1));
      let fault: unknown;
      try {
        decoder.read();
      } catch (err) {
        fault = err;
      }
      expect(fault).toBeInstanceOf(DdfsError);
      const e = fault as DdfsError;
      expect(e.code).toBe('CORRUPT');
      expect(e.data).toMatchObject({ seq: 2n, reason: 'oversize', bodyLen: 0xffff_ffff, offset: HELLO_STREAM.length });
      expect(e.message).toContain('seq 2');
      expect(e.message).toContain('4294967295');
      const sizes = [...alloc.mock.calls, ...allocUnsafe.mock.calls, ...allocUnsafeSlow.mock.calls].map((c) => c[0] as number);
      expect(sizes.length).toBeGreaterThan(0); // the spies see the decoder's allocations (the split header's copy)
      expect(Math.max(...sizes)).toBeLessThanOrEqual(RECORD_HEADER_SIZE);
      expect(() => decoder.read()).toThrow(e); // the fault is final
      expect(() => decoder.push(Buffer.alloc(1))).toThrow(e);
    } finally {
      alloc.mockRestore();
      allocUnsafe.mockRestore();
      allocUnsafeSlow.mockRestore();
    }
  });

  it('bounds BLOCK by the HELLO block_size + overhead, BLOCKS by its most blocks and hashes + overhead, every other type by 1 MiB', () => {
    const blockMax = HELLO.blockSize + STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX;
    const blocksMax = blocksPerRecordMax(HELLO.blockSize) * (HELLO.blockSize + HASH_SIZE_MAX) + STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX;
    const cases: Array<[number, number, boolean]> = [
      [RECORD_TYPES.BLOCK, blockMax, true],
      [RECORD_TYPES.BLOCK, blockMax + 1, false],
      [RECORD_TYPES.BLOCKS, blocksMax, true],
      [RECORD_TYPES.BLOCKS, blocksMax + 1, false],
      [RECORD_TYPES.DIRLIST, STREAM_RECORD_BODY_SIZE_MAX, true],
      [RECORD_TYPES.DIRLIST, STREAM_RECORD_BODY_SIZE_MAX + 1, false],
      [999, STREAM_RECORD_BODY_SIZE_MAX + 1, false],
    ];
    for (const [typeCode, bodyLen, accepted] of cases) {
      const result = decodeChunks([HELLO_STREAM, header(2n, typeCode, bodyLen)]);
      // accepted: the decoder waits for the body and then reports the stream cut inside it
      expectFault(result, 2n, accepted ? 'truncated' : 'oversize');
    }
  });

  it('refuses a compressed body that inflates past its bound', () => {
    const bomb = deflateRawSync(Buffer.alloc(2 * STREAM_RECORD_BODY_SIZE_MAX));
    expect(bomb.length).toBeLessThan(STREAM_RECORD_BODY_SIZE_MAX);
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.FILE_NODES, bomb, FLAG_COMPRESSED)]), 2n, 'oversize');
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.FILE_NODES, Buffer.from('not deflate'), FLAG_COMPRESSED)]), 2n, 'decompress');
  });
});

describe('DDMS framing refusals (spec §5 scenarios 5, 13)', () => {
  const idle = (seq: bigint, flags = 0) => forge(seq, RECORD_TYPES.IDLE, encodeBody({ type: 'IDLE', headTid: 1n }, CTX), flags);

  it('names a byte-swapped signature as the wrong byte order', () => {
    const swapped = idle(2n);
    swapped.writeUInt32BE(0x444d5352, 0);
    const fault = expectFault(decodeChunks([HELLO_STREAM, swapped]), 2n, 'sig-swapped');
    expect(fault.message).toContain('byte order');
  });

  it('refuses a stream without the magic, and bytes after TERM', () => {
    expectFault(decodeChunks([Buffer.from('DDMSTRM2'), HELLO_STREAM.subarray(8)]), 1n, 'magic');
    expectFault(decodeChunks([HELLO_STREAM, term(2n), Buffer.from('x')]), 3n, 'trailing');
  });

  it('skips an unknown type without the must-understand flag and refuses one with it', () => {
    const ok = decodeChunks([HELLO_STREAM, forge(2n, 4000, Buffer.from('future')), term(3n)]);
    expect(ok.fault).toBeNull();
    expect(ok.records[1]!.record).toEqual({ type: 'UNKNOWN', typeCode: 4000, body: Buffer.from('future') });
    const fault = expectFault(decodeChunks([HELLO_STREAM, forge(2n, 4000, Buffer.from('future'), FLAG_MUST_UNDERSTAND), term(3n)]), 2n, 'unknown-type');
    expect(fault.code).toBe('NOT_SUPPORTED');
  });

  it('refuses reserved flag bits', () => {
    for (const bit of [1, 2, 7, 14]) expectFault(decodeChunks([HELLO_STREAM, idle(2n, 1 << bit), term(3n)]), 2n, 'flags');
    expect(decodeChunks([HELLO_STREAM, idle(2n, FLAG_MUST_UNDERSTAND), term(3n)]).fault).toBeNull();
  });

  it('skips an unknown optional tag and refuses an unknown required tag', () => {
    const body = encodeBody({ type: 'IDLE', headTid: 5n }, CTX);
    const tlv = (tag: number, value: Buffer) => {
      const h = Buffer.alloc(6);
      h.writeUInt16LE(tag, 0);
      h.writeUInt32LE(value.length, 2);
      return Buffer.concat([h, value]);
    };
    const optional = decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.IDLE, Buffer.concat([body, tlv(0x7000, Buffer.from('new'))])), term(3n)]);
    expect(optional.fault).toBeNull();
    expect(optional.records[1]!.record).toEqual({ type: 'IDLE', headTid: 5n });
    const required = decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.IDLE, Buffer.concat([body, tlv(0x8001, Buffer.from('new'))])), term(3n)]);
    expect(expectFault(required, 2n, 'unknown-tag').code).toBe('NOT_SUPPORTED');
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.IDLE, Buffer.concat([body, body])), term(3n)]), 2n, 'field'); // tag 1 twice
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.IDLE, Buffer.alloc(0)), term(3n)]), 2n, 'field'); // head_tid missing
  });

  it('refuses a HELLO of another version, a first record that is not HELLO, and a second HELLO', () => {
    const v2 = forge(1n, RECORD_TYPES.HELLO, encodeBody({ ...HELLO, version: 2 }, CTX));
    expect(expectFault(decodeChunks([STREAM_MAGIC, v2]), 1n, 'version').code).toBe('NOT_SUPPORTED');
    expectFault(decodeChunks([STREAM_MAGIC, idle(1n)]), 1n, 'first-not-hello');
    expectFault(decodeChunks([HELLO_STREAM, Buffer.from(HELLO_STREAM.subarray(8))]), 2n, 'seq');
    const second = forge(2n, RECORD_TYPES.HELLO, encodeBody(HELLO, CTX));
    expectFault(decodeChunks([HELLO_STREAM, second]), 2n, 'hello-repeated');
  });

  it('refuses a hash of another size than the HELLO says, and block data over block_size', () => {
    const shortHash = forge(2n, RECORD_TYPES.BLOCK, encodeBody({ type: 'BLOCK', hash: Buffer.alloc(20, 1), data: Buffer.alloc(10) }, { ...CTX, hashSize: 20 }));
    expectFault(decodeChunks([HELLO_STREAM, shortHash, term(3n)]), 2n, 'field');
    const bigBlock = forge(2n, RECORD_TYPES.BLOCK, encodeBody({ type: 'BLOCK', hash: Buffer.alloc(24, 1), data: Buffer.alloc(4097) }, { ...CTX, blockSize: 8192 }));
    expectFault(decodeChunks([HELLO_STREAM, bigBlock, term(3n)]), 2n, 'field');
  });

  it('refuses BLOCKS whose data is not exactly one whole block per hash, or more blocks than one record may carry', () => {
    const hashes = (n: number) => Array.from({ length: n }, (_, i) => Buffer.alloc(24, i + 1));
    const ok = forge(2n, RECORD_TYPES.BLOCKS, encodeBody({ type: 'BLOCKS', hashes: hashes(2), data: Buffer.alloc(2 * 4096, 7) }, CTX), FLAG_MUST_UNDERSTAND);
    const good = decodeChunks([HELLO_STREAM, ok, term(3n)]);
    expect(good.fault).toBeNull();
    expect(good.records[1]!.record).toMatchObject({ type: 'BLOCKS', hashes: hashes(2) });
    // (hashes, data bytes): fewer or more blocks than hashes, a partial block, one block more than a record may carry
    const cases: Array<[number, number]> = [[2, 4096], [1, 2 * 4096], [2, 2 * 4096 - 1], [blocksPerRecordMax(4096) + 1, (blocksPerRecordMax(4096) + 1) * 4096]];
    for (const [n, size] of cases) {
      const body = Buffer.concat([
        encodeBody({ type: 'HASHQ', hashes: hashes(n) }, CTX), // tag 1: the hashes
        (() => { const h = Buffer.alloc(6); h.writeUInt16LE(2, 0); h.writeUInt32LE(size, 2); return h; })(), Buffer.alloc(size),
      ]);
      expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.BLOCKS, body, FLAG_MUST_UNDERSTAND), term(3n)]), 2n, 'field');
    }
    expect(() => encodeBody({ type: 'BLOCKS', hashes: hashes(2), data: Buffer.alloc(4096) }, CTX)).toThrow(/2 hashes for 4096 bytes/);
  });

  it('refuses a CHECKPOINT whose running digest or record count is wrong although its CRC is valid', () => {
    const body = (recordCount: bigint, runningDigest: Buffer) => encodeBody({ type: 'CHECKPOINT', keyCur: Buffer.alloc(0), recordCount, runningDigest }, CTX);
    const pair = Buffer.alloc(12);
    pair.writeBigUInt64LE(1n);
    pair.writeUInt32LE(HELLO_STREAM.readUInt32LE(8 + 20), 8);
    const right = createHash('sha256').update(pair).digest();
    expect(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.CHECKPOINT, body(1n, right)), term(3n)]).fault).toBeNull();
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.CHECKPOINT, body(1n, Buffer.alloc(32))), term(3n)]), 2n, 'digest');
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.CHECKPOINT, body(2n, right)), term(3n)]), 2n, 'count');
  });
});

describe('DDMS paths are raw bytes and hostile ones are refused (spec §4.15, §5 scenario 14)', () => {
  const hostile: Array<[string, Buffer]> = [
    ['..', Buffer.from('..')],
    ['a/../b', Buffer.from('a/../b')],
    ['.', Buffer.from('.')],
    ['/etc/passwd', Buffer.from('/etc/passwd')],
    ['a//b', Buffer.from('a//b')],
    ['a/', Buffer.from('a/')],
    ['NUL', Buffer.from('a\0b')],
    ['256-byte component', Buffer.alloc(256, 0x61)],
    ['4096-byte path', Buffer.from(Array.from({ length: 2048 }, () => 'a').join('/') + 'x')],
  ];

  it.each(hostile)('refuses %s from a peer and in the encoder', async (_, bad) => {
    // Forge the TLV by hand: the encoder refuses to write it.
    const value = bad;
    const tlv = Buffer.alloc(6);
    tlv.writeUInt16LE(1, 0);
    tlv.writeUInt32LE(value.length, 2);
    const tid = encodeBody({ type: 'IDLE', headTid: 1n }, CTX); // tag 1 u64: reuse as DELETE tag 2 below
    tid.writeUInt16LE(2, 0);
    const body = Buffer.concat([tlv, value, tid]);
    expectFault(decodeChunks([HELLO_STREAM, forge(2n, RECORD_TYPES.DELETE, body), term(3n)]), 2n, 'field');
    const encoder = await StreamEncoder.create();
    encoder.encode(HELLO);
    expect(() => encoder.encode({ type: 'DELETE', path: bad, tid: 1n })).toThrow(DdfsError);
    expect(encoder.nextSeq).toBe(2n);
  });

  it('accepts the root (empty path), 255-byte names and bytes that are not UTF-8', async () => {
    const long = Buffer.alloc(255, 0xe9);
    const e = await encodeAll([HELLO, { type: 'DIR', path: Buffer.alloc(0), meta: { mode: 0o40755, uid: 0, gid: 0, mtimeNs: -1n, atimeNs: 0n }, tid: 1n }, { type: 'DELETE', path: Buffer.concat([long, Buffer.from('/'), long]), tid: 2n }, { type: 'TERM', reason: 0 }]);
    const { records, fault } = decodeChunks([e.stream]);
    expect(fault).toBeNull();
    expect(records.map((r) => r.record)).toEqual(expectedRecords(e));
  });
});
