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
    // the message only on failure: a template argument would build a string on every call of this hot path
    if (!(a >= 0 && a < this.size)) assert(false, `bitset address ${a} out of range`);
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

  /** Whether no address is set (a scan of the bytes, a word at a time where aligned). */
  isEmpty(): boolean {
    const b = this.bytes;
    const words = b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2) : null;
    let i = 0;
    if (words !== null) {
      for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
      i = words.length * 4;
    }
    for (; i < b.length; i++) if (b[i] !== 0) return false;
    return true;
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

/**
 * Set bits of the MSB-first bit array `bytes` in [from, to): whole bytes by popcount (fsck's usage bar counts every
 * address of the bitmap, a million bit tests per GiB of 4 KiB blocks otherwise).
 */
export function countSetInRange(bytes: Uint8Array, from: number, to: number): number {
  let n = 0;
  let a = Math.max(0, from);
  for (; a < to && (a & 7) !== 0; a++) if ((bytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0) n++;
  for (; a + 8 <= to; a += 8) n += POPCOUNT[bytes[a >>> 3]!]!;
  for (; a < to; a++) if ((bytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0) n++;
  return n;
}

/** The highest set bit below `size` of the MSB-first bit array `bytes`, or -1 (scans back over zero bytes). */
export function lastSetBelow(bytes: Uint8Array, size: number): number {
  for (let a = size - 1; a >= 0; a--) {
    if ((a & 7) === 7 && bytes[a >>> 3] === 0) {
      a -= 7;
      continue;
    }
    if ((bytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0) return a;
  }
  return -1;
}

/** The seven set differences and intersections of fsck's summary (spec §10.5 step 5), in one pass. */
export interface UsageCounts {
  inIndexNotInFiles: number;
  inFilesNotInIndex: number;
  inFilesAndInIndex: number;
  inBlocksNotInFiles: number;
  inFilesNotInBlocks: number;
  /** Index nodes whose address is free in the bitmap (the allocator could overwrite them). */
  inIndexNotInBlocks: number;
  /** Allocated addresses without an index node (leaks only a repair frees). */
  inBlocksNotInIndex: number;
}

/**
 * `countCombined` of the seven combinations of the bitmap `b`, the index's addresses `i` and the files' addresses `f`
 * over addresses < size, in one pass over the bytes instead of seven with a callback per byte.
 */
export function countUsage(size: number, b: Uint8Array, i: Uint8Array, f: Uint8Array): UsageCounts {
  const c = { inIndexNotInFiles: 0, inFilesNotInIndex: 0, inFilesAndInIndex: 0, inBlocksNotInFiles: 0, inFilesNotInBlocks: 0, inIndexNotInBlocks: 0, inBlocksNotInIndex: 0 };
  const full = Math.floor(size / 8);
  const rest = size - full * 8;
  const n = rest > 0 ? full + 1 : full;
  for (let k = 0; k < n; k++) {
    const mask = k < full ? 0xff : (0xff << (8 - rest)) & 0xff;
    const bb = b[k]! & mask;
    const ib = i[k]! & mask;
    const fb = f[k]! & mask;
    if ((bb | ib | fb) === 0) continue;
    c.inIndexNotInFiles += POPCOUNT[ib & ~fb & 0xff]!;
    c.inFilesNotInIndex += POPCOUNT[fb & ~ib & 0xff]!;
    c.inFilesAndInIndex += POPCOUNT[ib & fb]!;
    c.inBlocksNotInFiles += POPCOUNT[bb & ~fb & 0xff]!;
    c.inFilesNotInBlocks += POPCOUNT[fb & ~bb & 0xff]!;
    c.inIndexNotInBlocks += POPCOUNT[ib & ~bb & 0xff]!;
    c.inBlocksNotInIndex += POPCOUNT[bb & ~ib & 0xff]!;
  }
  return c;
}
