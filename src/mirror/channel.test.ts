import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { LocalFrames, RecordReader, RecordWriter } from './channel.js';
import type { HelloRecord } from './record_body.js';

const BS = 4096;
const HELLO: HelloRecord = {
  type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.alloc(16, 0xaa), uniqueUuid: Buffer.alloc(16, 0xbb), generation: 1,
  blockSize: BS, hashAlgo: 'TIGER', hashSize: 24, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
};

/** Record k's blocks: `count` blocks filled with bytes k, k + 1, ... and hashes of byte 0x80 + k. */
const blocksOf = (k: number, count: number) => {
  const data = Buffer.alloc(count * BS);
  for (let i = 0; i < count; i++) data.fill((k + i) & 0xff, i * BS, (i + 1) * BS);
  return { hashes: Array.from({ length: count }, () => Buffer.alloc(24, 0x80 + (k & 0x7f))), data };
};

describe('RecordWriter/RecordReader over an in-memory pipe (LocalFrames)', () => {
  it('reuses BLOCKS frames only after the reader moved past them: every record reads back as sent', async () => {
    const frames = new LocalFrames();
    let taken = 0;
    const take = frames.take.bind(frames);
    const allocated = new Set<ArrayBufferLike>();
    frames.take = (size: number) => {
      taken++;
      const f = take(size);
      allocated.add(f.buffer);
      return f;
    };
    const pipe = new PassThrough({ readableObjectMode: true });
    // a writer that never waits: the test decides when it writes (3 records ahead of the reader)
    const writer = await RecordWriter.create(pipe, false, { heartbeatMs: 0, localFrames: frames });
    const reader = await RecordReader.create(pipe, { localFrames: frames });
    const RECORDS = 200;
    const AHEAD = 3;
    const send = (k: number) => (k < RECORDS ? writer.send({ type: 'BLOCKS', ...blocksOf(k, 256) }, { mustUnderstand: true }) : Promise.resolve());
    await writer.send(HELLO);
    for (let k = 0; k < AHEAD; k++) await send(k);
    expect((await reader.next()).record.type).toBe('HELLO');
    for (let k = 0; k < RECORDS; k++) {
      const r = (await reader.next()).record;
      if (r.type !== 'BLOCKS') throw new Error(`record ${k} is ${r.type}`);
      // the writer goes on while this record is handled: a frame reused too early is overwritten by now
      await send(k + AHEAD);
      await new Promise((resolve) => setImmediate(resolve));
      const want = blocksOf(k, 256);
      expect(r.data.equals(want.data), `record ${k} data`).toBe(true);
      expect(r.hashes.every((h) => h.equals(want.hashes[0]!)), `record ${k} hashes`).toBe(true);
    }
    await writer.send({ type: 'TERM', reason: 0 });
    const sending = writer.end();
    expect((await reader.next()).record.type).toBe('TERM');
    await sending;
    expect(taken).toBe(RECORDS);
    // a few dozen frames in flight at most, not one per record
    expect(allocated.size).toBeLessThan(RECORDS / 4);
  });

  it('a BLOCKS frame whose blocks were written in place reads back whole, and a held frame is not reused until released', async () => {
    const frames = new LocalFrames();
    const pipe = new PassThrough({ readableObjectMode: true });
    const writer = await RecordWriter.create(pipe, false, { heartbeatMs: 0, localFrames: frames });
    const reader = await RecordReader.create(pipe, { localFrames: frames });
    await writer.send(HELLO);
    expect((await reader.next()).record.type).toBe('HELLO');
    const want = blocksOf(5, 40);
    const frame = writer.blocksFrame(40, 24, BS)!;
    expect(frame.buffer).toBeInstanceOf(SharedArrayBuffer);
    want.data.copy(frame, frame.length - want.data.length);
    await writer.sendBlocksFrame(frame, want.hashes, BS);
    const r = (await reader.next()).record;
    if (r.type !== 'BLOCKS') throw new Error(r.type);
    // the record's data is the frame's tail itself: nothing was copied on either side
    expect(r.data.buffer).toBe(frame.buffer);
    expect(r.data.equals(want.data)).toBe(true);
    expect(r.hashes.every((h) => h.equals(want.hashes[0]!))).toBe(true);
    const release = reader.hold(r.data)!;
    expect(release).not.toBeNull();
    // held: the next records' frames are never this one, whatever the reader reads meanwhile
    for (let k = 0; k < 4; k++) {
      await writer.send({ type: 'BLOCKS', ...blocksOf(k, 64) }, { mustUnderstand: true });
      const next = (await reader.next()).record;
      if (next.type !== 'BLOCKS') throw new Error(next.type);
      expect(next.data.buffer).not.toBe(frame.buffer);
    }
    expect(r.data.equals(want.data)).toBe(true);
    release();
    // a view that is in no pooled frame is not held
    expect(reader.hold(Buffer.alloc(BS))).toBeNull();
    // a frame given back unsent is reused
    const dropped = writer.blocksFrame(1, 24, BS)!;
    writer.dropFrame(dropped);
    expect(writer.blocksFrame(1, 24, BS)!.buffer).toBe(dropped.buffer);
  });

  it('a writer with an onBytes hook gives no frames to write in place', async () => {
    const pipe = new PassThrough({ readableObjectMode: true });
    const writer = await RecordWriter.create(pipe, false, { heartbeatMs: 0, localFrames: new LocalFrames() });
    writer.onBytes = () => undefined;
    expect(writer.framesInPlace).toBe(false);
    expect(writer.blocksFrame(4, 24, BS)).toBeNull();
    const remote = await RecordWriter.create(new PassThrough(), false, { heartbeatMs: 0 });
    expect(remote.blocksFrame(4, 24, BS)).toBeNull();
  });

  it('a writer with an onBytes hook (a test that may cut the bytes) takes no reused frames', async () => {
    const frames = new LocalFrames();
    let taken = 0;
    const take = frames.take.bind(frames);
    frames.take = (size: number) => {
      taken++;
      return take(size);
    };
    const pipe = new PassThrough({ readableObjectMode: true });
    const writer = await RecordWriter.create(pipe, false, { heartbeatMs: 0, localFrames: frames });
    writer.onBytes = () => undefined;
    await writer.send(HELLO);
    await writer.send({ type: 'BLOCKS', ...blocksOf(1, 64) }, { mustUnderstand: true });
    expect(taken).toBe(0);
  });
});

describe('local frames carry no CRC32C', () => {
  it('a frame of a LocalFrames writer is read by its local reader, and refused (CRC) by any other decoder', async () => {
    const frames = new LocalFrames();
    const pipe = new PassThrough({ readableObjectMode: true });
    const chunks: Buffer[] = [];
    pipe.on('data', (c: Buffer) => chunks.push(c));
    const writer = await RecordWriter.create(pipe, false, { heartbeatMs: 0, localFrames: frames });
    await writer.send(HELLO);
    await writer.send({ type: 'BLOCKS', ...blocksOf(3, 4) }, { mustUnderstand: true });
    await writer.send({ type: 'TERM', reason: 0 });
    await writer.end();
    expect(chunks.length).toBe(3);
    const local = await RecordReader.create((async function* () { yield* chunks; })(), { localFrames: frames });
    expect((await local.next()).record.type).toBe('HELLO');
    expect((await local.next()).record.type).toBe('BLOCKS');
    expect((await local.next()).record.type).toBe('TERM');
    // the same bytes out of this process: every frame is checked, and the missing CRC is a fault of seq 1
    const other = await RecordReader.create((async function* () { yield* chunks.map((c) => Buffer.from(c)); })());
    await expect(other.next()).rejects.toThrow(/seq 1: CRC32C mismatch/);
  });
});
