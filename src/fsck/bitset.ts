/**
 * A fixed-size set of block addresses for fsck's bookkeeping (found in files, suspect, in index...).
 *
 * Same byte layout as the allocation bitmap (spec §5.2: MSB-first, address a ↔ byte a>>3, mask 0x80 >> (a & 7)), so
 * set algebra with a `Bitmap`'s bytes works byte by byte. Bits ≥ size are always zero.
 */
import { assert } from '../util/assert.js';

const POPCOUNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1]!;

export class BitSet {
  readonly bytes: Uint8Array;

  constructor(readonly size: number) {
    this.bytes = new Uint8Array(Math.ceil(size / 8));
  }

  has(a: number): boolean {
    return a >= 0 && a < this.size && (this.bytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0;
  }

  add(a: number): void {
    assert(a >= 0 && a < this.size, `bitset address ${a} out of range`);
    this.bytes[a >>> 3] = this.bytes[a >>> 3]! | (0x80 >>> (a & 7));
  }

  delete(a: number): void {
    if (a < 0 || a >= this.size) return;
    this.bytes[a >>> 3] = this.bytes[a >>> 3]! & ~(0x80 >>> (a & 7));
  }

  /** Set every address in [from, to). */
  addRange(from: number, to: number): void {
    for (let a = from; a < to; a++) {
      if ((a & 7) === 0 && a + 8 <= to) {
        this.bytes[a >>> 3] = 0xff;
        a += 7;
      } else {
        this.add(a);
      }
    }
  }

  count(): number {
    let n = 0;
    for (let i = 0; i < this.bytes.length; i++) n += POPCOUNT[this.bytes[i]!]!;
    return n;
  }

  /** Set addresses in ascending order, from `from` (whole zero bytes are skipped). */
  *ascending(from = 0): Generator<number> {
    let a = Math.max(0, from);
    while (a < this.size) {
      const byte = this.bytes[a >>> 3]!;
      if (byte === 0) {
        a = ((a >>> 3) + 1) * 8;
        continue;
      }
      if ((byte & (0x80 >>> (a & 7))) !== 0) yield a;
      a++;
    }
  }
}

/** popcount of one byte. */
export function popcount8(b: number): number {
  return POPCOUNT[b & 0xff]!;
}

/**
 * Count addresses a < size with f(aByte, bByte...) bits set, byte-wise. `pick` receives the bytes of each operand at
 * the same position and returns the byte of the combination; bits ≥ size are masked off.
 */
export function countCombined(size: number, operands: ReadonlyArray<Uint8Array>, pick: (bytes: number[]) => number): number {
  const full = Math.floor(size / 8);
  const tmp: number[] = new Array<number>(operands.length).fill(0);
  let n = 0;
  for (let i = 0; i < full; i++) {
    for (let k = 0; k < operands.length; k++) tmp[k] = operands[k]![i]!;
    n += POPCOUNT[pick(tmp) & 0xff]!;
  }
  const rest = size - full * 8;
  if (rest > 0) {
    for (let k = 0; k < operands.length; k++) tmp[k] = operands[k]![full]!;
    const mask = (0xff << (8 - rest)) & 0xff;
    n += POPCOUNT[pick(tmp) & mask]!;
  }
  return n;
}
