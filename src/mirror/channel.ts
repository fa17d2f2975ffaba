/**
 * One direction of a DDMS v1 stream over a Node stream (mirroring spec §4.15 "same code on both sides"): a
 * RecordWriter encodes records onto a Writable (with backpressure, counting bytes and BLOCK records), a RecordReader
 * pulls checked records from a Readable (any chunking). The pass code sees only these two.
 *
 * Heartbeat (§4.10): a writer that sent nothing for MIRROR_HEARTBEAT_INTERVAL_S sends an IDLE record (head TID 0, no
 * claim change), so a peer busy computing (a root digest of a big tree, a slave applying a window) still shows a live
 * link, and a silent link can be declared dead by a timeout (cli/mirror_stream.ts). A reader skips IDLE records: the
 * pass code never sees a heartbeat (they stay in the codec's seq count and running digest, as every record).
 *
 * Invariants: a reader yields a record only after every check of the codec; a fault or a premature end throws the
 * codec's DdfsError naming the seq. A writer never writes after TERM or ERROR (the encoder asserts it), and sends no
 * heartbeat before its first record (HELLO) nor after its stream ended or closed.
 */
import type { Readable, Writable } from 'node:stream';
import { MIRROR_HEARTBEAT_INTERVAL_S, STREAM_BLOCKS_DATA_SIZE_BYTES } from '../limits.js';
import { blocksFrameSize, StreamDecoder, StreamEncoder, type DecodedRecord, type EncodeOptions, type RecordInput } from './stream_codec.js';

/** Counters of what one side wrote. */
export interface WireCounters {
  records: number;
  bytes: number;
  /** Blocks sent: one per BLOCK record, the count of each BLOCKS record. */
  blockRecords: number;
  /** Bytes of the BLOCK and BLOCKS records (headers included). */
  blockBytes: number;
}

/**
 * The frames a local copy's writers handed to its readers in memory (both sides in one process, copy.ts copyLocal):
 * a reader told of a chunk that is one of them does not compute its CRC32C again (StreamDecoder.push `local`). A
 * writer with an onBytes hook (a test that may alter or cut the bytes) never adds its frames.
 *
 * Large frames (BLOCKS records) are also reused: a writer takes them from here (take) and the reader gives each back
 * (release) once its decoder has read the whole frame AND its caller asked for the next record, so no record the
 * caller still handles is ever overwritten. A caller must therefore copy what it keeps of a BLOCK/BLOCKS record
 * (its data and hashes are views of the frame) before it asks for the next record.
 */
export class LocalFrames {
  private readonly frames = new WeakSet<Buffer>();
  private readonly pooled = new WeakSet<Buffer>();
  private readonly spare: Buffer[] = [];

  /** Record `frame` as one of this process's own, handed over in memory untouched. */
  add(frame: Buffer): void {
    this.frames.add(frame);
  }

  /** Whether `chunk` is a frame of this process's writers (add). */
  has(chunk: Buffer): boolean {
    return this.frames.has(chunk);
  }

  /**
   * A frame of `size` bytes, reused when a released one is large enough (its contents are garbage). Its memory is a
   * SharedArrayBuffer of its own (the frame starts it), so a BLOCKS record's blocks are hashed in place by the hash
   * threads of either side (HashWorkers.hash), never copied out for them.
   */
  take(size: number): Buffer {
    let base = this.spare.pop();
    if (base === undefined || base.length < size) base = Buffer.from(new SharedArrayBuffer(Math.max(size, LOCAL_FRAME_SIZE_BYTES)));
    const frame = base.length === size ? base : base.subarray(0, size);
    this.pooled.add(frame);
    return frame;
  }

  /** Whether `chunk` came from take (and is to be released by its reader). */
  isPooled(chunk: Buffer): boolean {
    return this.pooled.has(chunk);
  }

  /** Give back a frame of take, read whole and no longer used by its reader's caller. */
  release(frame: Buffer): void {
    if (!this.pooled.has(frame)) return;
    this.pooled.delete(frame);
    this.frames.delete(frame);
    if (this.spare.length < LOCAL_FRAME_SPARE_COUNT_MAX) this.spare.push(Buffer.from(frame.buffer, frame.byteOffset, frame.buffer.byteLength - frame.byteOffset));
  }
}

/** Bytes of a reused frame: one BLOCKS record of STREAM_BLOCKS_DATA_SIZE_BYTES with its hashes fits. */
const LOCAL_FRAME_SIZE_BYTES = STREAM_BLOCKS_DATA_SIZE_BYTES + 64 * 1024;
/**
 * Released frames kept for reuse; more are dropped. The frames of a local copy in use at once stay below it (the
 * master's read-ahead, the in-memory pipe, the slave's batches being hashed and stored), so the hash threads, which
 * keep every shared buffer they were given, see a bounded set of them.
 */
const LOCAL_FRAME_SPARE_COUNT_MAX = 96;

/** Records -> a Writable. */
export class RecordWriter {
  readonly counters: WireCounters = { records: 0, bytes: 0, blockRecords: 0, blockBytes: 0 };
  /** Called with every record's bytes before they are written (tests cut a stream with it). */
  onBytes: ((bytes: Buffer, record: RecordInput) => void) | null = null;

  /** Heartbeat IDLE records sent. */
  heartbeats = 0;
  private lastSendMs = 0;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;

  private constructor(private readonly encoder: StreamEncoder, private readonly out: Writable, private readonly waitForDrain: boolean, heartbeatMs: number, private readonly localFrames: LocalFrames | null) {
    if (localFrames !== null) encoder.largeFrames = (size) => (this.onBytes === null ? localFrames.take(size) : Buffer.allocUnsafe(size));
    if (heartbeatMs > 0) {
      this.timer = setInterval(() => this.beat(heartbeatMs), Math.max(10, Math.floor(heartbeatMs / 4)));
      this.timer.unref();
      const stop = (): void => this.stopHeartbeat();
      out.once('close', stop);
      out.once('finish', stop);
      out.once('error', stop);
    }
  }

  /**
   * @param waitForDrain await 'drain' when the Writable is full (a master); a side that only answers questions
   *   never waits, so two peers can never block on each other's full buffers
   * @param options.heartbeatMs milliseconds without a record before an IDLE heartbeat (0: none); default
   *   MIRROR_HEARTBEAT_INTERVAL_S
   * @param options.localFrames `out` is an in-memory pipe to a RecordReader of this process given the same set: each
   *   frame is written as one chunk and recorded in it (see LocalFrames)
   */
  static async create(out: Writable, waitForDrain: boolean, options: { heartbeatMs?: number; localFrames?: LocalFrames } = {}): Promise<RecordWriter> {
    return new RecordWriter(await StreamEncoder.create(), out, waitForDrain, options.heartbeatMs ?? MIRROR_HEARTBEAT_INTERVAL_S * 1000, options.localFrames ?? null);
  }

  /** Send an IDLE when nothing was sent for `heartbeatMs` (never before the first record or after the end). */
  private beat(heartbeatMs: number): void {
    if (this.closed || this.lastSendMs === 0 || Date.now() - this.lastSendMs < heartbeatMs) return;
    if (this.out.destroyed || this.out.writableEnded) {
      this.stopHeartbeat();
      return;
    }
    this.heartbeats++;
    // never awaits drain: a heartbeat is a few dozen bytes, and a full stream means the peer is not reading anyway
    this.send({ type: 'IDLE', headTid: 0n }).catch(() => this.stopHeartbeat());
  }

  private stopHeartbeat(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Whether blocksFrame gives frames: the reader is this process's, in memory (localFrames), and no onBytes hook. */
  get framesInPlace(): boolean {
    return this.localFrames !== null && this.onBytes === null;
  }

  /**
   * A frame for a BLOCKS record of `count` blocks whose data the caller writes in place (at its tail, the last
   * count x blockSize bytes), for sendBlocksFrame: the blocks are read straight into the frame the reader of this
   * process gets, never copied into it. Only to an in-memory reader of this process (localFrames, no onBytes);
   * otherwise null. The frame is the caller's until it gives it to sendBlocksFrame or back by dropFrame.
   */
  blocksFrame(count: number, hashSize: number, blockSize: number): Buffer | null {
    if (!this.framesInPlace || this.closed) return null;
    return this.localFrames!.take(blocksFrameSize(count, hashSize, blockSize));
  }

  /** Give back a frame of blocksFrame that will not be sent (its blocks did not all hash to their hashes). */
  dropFrame(frame: Buffer): void {
    this.localFrames?.release(frame);
  }

  /**
   * Send the BLOCKS record of `hashes` whose blocks are already at the tail of `frame` (blocksFrame): the header and
   * hashes are written before them in the same buffer, which goes to the reader as the record's frame.
   * @throws as send
   */
  async sendBlocksFrame(frame: Buffer, hashes: Buffer[], blockSize: number): Promise<void> {
    const data = frame.subarray(frame.length - hashes.length * blockSize);
    await this.send({ type: 'BLOCKS', hashes, data }, { mustUnderstand: true }, frame);
  }

  /**
   * Encode and write one record (into `frame` when given: a frame of blocksFrame of exactly the record's size).
   * @throws DdfsError INVALID from the encoder; the Writable's error
   */
  async send(record: RecordInput, options: EncodeOptions = {}, frame?: Buffer): Promise<void> {
    if (this.closed) throw new Error('the stream is closed');
    if (record.type === 'TERM' || record.type === 'ERROR') {
      this.closed = true;
      this.stopHeartbeat();
    }
    this.lastSendMs = Date.now();
    // a frame only this process's reader sees: it takes the CRC field as written, so none is computed (stream_codec)
    const local = this.framesInPlace;
    const bytes = this.encoder.encode(record, local ? { ...options, localOnly: true } : options, frame);
    this.onBytes?.(bytes, record);
    this.counters.records++;
    this.counters.bytes += bytes.length;
    if (record.type === 'BLOCK') {
      this.counters.blockRecords++;
      this.counters.blockBytes += bytes.length;
    } else if (record.type === 'BLOCKS') {
      this.counters.blockRecords += record.hashes.length;
      this.counters.blockBytes += bytes.length;
    }
    if (this.out.destroyed || this.out.writableEnded) throw new Error('the stream is closed');
    if (local) this.localFrames!.add(bytes);
    const ok = this.out.write(bytes);
    if (!ok && this.waitForDrain) await this.drained();
  }

  /** Wait for 'drain'; reject when the Writable closes first. Leaves no listener behind. */
  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        this.out.off('drain', onDrain);
        this.out.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(new Error('the stream closed'));
      this.out.on('drain', onDrain);
      this.out.on('close', onClose);
    });
  }

  /** End the Writable (after TERM or ERROR) and wait until its bytes are handed on. */
  async end(): Promise<void> {
    this.closed = true;
    this.stopHeartbeat();
    if (this.out.writableEnded || this.out.destroyed) return;
    await new Promise<void>((resolve) => {
      const done = (): void => resolve();
      this.out.once('finish', done);
      this.out.once('close', done);
      this.out.once('error', done);
      this.out.end();
    });
  }
}

/** A Readable -> checked records, pulled one at a time. */
export class RecordReader {
  bytes = 0;
  private readonly iterator: AsyncIterator<Buffer>;
  private ended = false;

  private constructor(private readonly decoder: StreamDecoder, source: Readable | AsyncIterable<Buffer>, private readonly localFrames: LocalFrames | null) {
    this.iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** @param options.localFrames the set the writer of `source` (an in-memory pipe of this process) records its frames in */
  static async create(source: Readable | AsyncIterable<Buffer>, options: { localFrames?: LocalFrames } = {}): Promise<RecordReader> {
    return new RecordReader(await StreamDecoder.create(), source, options.localFrames ?? null);
  }

  /** Heartbeat IDLE records skipped. */
  heartbeats = 0;
  /** Reused frames pushed to the decoder (LocalFrames.take), released once read and the caller moved on. */
  private readonly pooled: Buffer[] = [];

  /**
   * The next record that is not an IDLE heartbeat. The data and hashes of a BLOCK/BLOCKS record are views valid
   * until the next call (a local copy's frames are reused after it: LocalFrames).
   * @throws DdfsError of the codec (a fault, or the end of the input before TERM/ERROR: TOO_SHORT)
   */
  async next(): Promise<DecodedRecord> {
    // the caller is done with the record it had: the frames the decoder read whole go back to the writer's pool
    if (this.pooled.length > 0) this.releaseRead();
    for (;;) {
      const r = this.decoder.read();
      if (r !== null && r.record.type === 'IDLE') {
        this.heartbeats++;
        continue;
      }
      if (r !== null) return r;
      if (this.ended) {
        this.decoder.finish();
        throw new Error('DDMS stream: no record after the end of the stream');
      }
      const chunk = await this.iterator.next();
      if (chunk.done) {
        this.ended = true;
        continue;
      }
      this.bytes += chunk.value.length;
      this.decoder.push(chunk.value, this.localFrames?.has(chunk.value) ?? false);
      if (this.localFrames?.isPooled(chunk.value)) this.pooled.push(chunk.value);
    }
  }

  /**
   * Keep the frame that `view` (the data of the BLOCKS/BLOCK record just returned by next) lies in past the next
   * call: a local copy's frame (LocalFrames) is not given back to the writer's pool until the returned function is
   * called, so the caller may hash and store the blocks in place (its frame's memory is a SharedArrayBuffer). Null
   * when `view` is not in such a frame (a real stream: the caller copies what it keeps, as before).
   */
  hold(view: Buffer): (() => void) | null {
    const k = this.pooled.findIndex((f) => f.buffer === view.buffer);
    if (k < 0) return null;
    const frame = this.pooled[k]!;
    this.pooled.splice(k, 1);
    return () => {
      // the decoder may still hold the frame's tail (never with frames of one record each): released by next then
      if (this.decoder.retains(frame)) this.pooled.push(frame);
      else this.localFrames!.release(frame);
    };
  }

  private releaseRead(): void {
    let kept = 0;
    for (const frame of this.pooled) {
      if (this.decoder.retains(frame)) this.pooled[kept++] = frame;
      else this.localFrames!.release(frame);
    }
    this.pooled.length = kept;
  }

  /** Stop reading the source. */
  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}
