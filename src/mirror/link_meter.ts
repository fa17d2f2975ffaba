/**
 * One direction of a stream's link (mirroring spec §4.10): a pass-through that counts the bytes crossing it, notes
 * when the last ones did (a dead-link timeout watches that), and with a rate applies the `-b` bandwidth limit as a
 * token bucket on the bytes as they go on the wire (after any compression of the records, unlike HAMMER).
 *
 * Invariants: bytes leave in order and unchanged; with a rate of R bytes/s, at most R * MIRROR_BANDWIDTH_BURST_S
 * bytes (at least one chunk piece of 16 KiB) leave in a burst and the long-run rate is R; backpressure is kept (a
 * delayed chunk holds the writer's callback), so the producer slows down rather than buffering without bound.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { MIRROR_BANDWIDTH_BURST_S } from '../limits.js';

/** Largest piece pushed at once under a rate, in bytes (keeps the bucket's steps small). */
const PIECE_SIZE = 16 * 1024;

export class LinkMeter extends Transform {
  /** Bytes that crossed. */
  bytes = 0;
  /** Date.now() of the last bytes that crossed (or of the creation). */
  lastActivityMs = Date.now();
  private tokens: number;
  private refillAt = Date.now();
  private readonly burst: number;

  /** @param rateBytesPerS the limit in bytes per second, or null for none */
  constructor(private readonly rateBytesPerS: number | null) {
    super();
    this.burst = rateBytesPerS === null ? 0 : Math.max(PIECE_SIZE, rateBytesPerS * MIRROR_BANDWIDTH_BURST_S);
    this.tokens = this.burst;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.rateBytesPerS === null) {
      this.note(chunk.length);
      cb(null, chunk);
      return;
    }
    void this.paced(chunk).then(() => cb(), (err: Error) => cb(err));
  }

  private note(n: number): void {
    this.bytes += n;
    this.lastActivityMs = Date.now();
  }

  /** Push `chunk` piece by piece, each when the bucket holds enough tokens. */
  private async paced(chunk: Buffer): Promise<void> {
    const rate = this.rateBytesPerS!;
    for (let at = 0; at < chunk.length; at += PIECE_SIZE) {
      const piece = chunk.subarray(at, at + PIECE_SIZE);
      for (;;) {
        const now = Date.now();
        this.tokens = Math.min(this.burst, this.tokens + ((now - this.refillAt) / 1000) * rate);
        this.refillAt = now;
        if (this.tokens >= piece.length) break;
        const waitMs = Math.ceil(((piece.length - this.tokens) / rate) * 1000);
        await new Promise((r) => setTimeout(r, Math.max(1, waitMs)));
        if (this.destroyed) return;
      }
      this.tokens -= piece.length;
      this.note(piece.length);
      this.push(piece);
    }
  }
}
