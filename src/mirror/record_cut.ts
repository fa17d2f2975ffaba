/**
 * A cut of the master-to-slave direction of a DDMS stream after its next CHECKPOINT (mirroring spec §4.9, §4.10: a
 * stream stopped by SIGTERM with a remote slave). The slave applies that CHECKPOINT's window and records it as its
 * resume point, then reads the end of the stream and stops with its pass pending; the next pass resumes from it.
 *
 * It follows the framing only (stream_codec.ts: the 8-byte magic, then records of a 24-byte header whose body_len
 * is the u32 at offset 4 and type the u16 at offset 8); bodies, compressed or not, are passed through unread.
 *
 * Invariants: bytes leave in order and unchanged up to the end of the first CHECKPOINT record that ends after arm();
 * then the readable side ends and every later byte is dropped. Unarmed, it is a pass-through.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { RECORD_TYPES } from './record_body.js';
import { RECORD_HEADER_SIZE, STREAM_MAGIC } from './stream_codec.js';

export class CheckpointCut extends Transform {
  /** Bytes of the current unit (magic, header or body) still to pass. */
  private left = STREAM_MAGIC.length;
  private unit: 'magic' | 'header' | 'body' = 'magic';
  /** The partial header being read (the header may be split across chunks). */
  private header = Buffer.alloc(RECORD_HEADER_SIZE);
  private type = 0;
  private armed = false;
  private cut = false;
  private onCut: (() => void) | null = null;

  /** Cut after the next CHECKPOINT record; `onCut` is called once the stream was ended there. */
  arm(onCut: () => void): void {
    this.armed = true;
    this.onCut = onCut;
  }

  /** Whether the stream was cut. */
  get wasCut(): boolean {
    return this.cut;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.cut) {
      cb();
      return;
    }
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(this.left, chunk.length - at);
      if (this.unit === 'header') chunk.copy(this.header, RECORD_HEADER_SIZE - this.left, at, at + n);
      at += n;
      this.left -= n;
      if (this.left > 0) break; // the chunk ends inside the unit
      if (this.unit === 'magic') {
        this.unit = 'header';
        this.left = RECORD_HEADER_SIZE;
      } else if (this.unit === 'header') {
        this.type = this.header.readUInt16LE(8);
        this.unit = 'body';
        this.left = this.header.readUInt32LE(4);
        if (this.left === 0 && this.endRecord(chunk, at)) break;
      } else if (this.endRecord(chunk, at)) {
        break;
      }
    }
    if (!this.cut) this.push(chunk);
    cb();
  }

  /** At the end of a record (its last byte at chunk[at - 1]): cut there when armed and it was a CHECKPOINT. */
  private endRecord(chunk: Buffer, at: number): boolean {
    this.unit = 'header';
    this.left = RECORD_HEADER_SIZE;
    if (!this.armed || this.type !== RECORD_TYPES.CHECKPOINT) return false;
    this.cut = true;
    this.push(chunk.subarray(0, at));
    this.push(null);
    this.onCut?.();
    return true;
  }
}
