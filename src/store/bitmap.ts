/**
 * The allocation bitmap (spec §5.2, §5.7): one bit per block address, 1 = allocated, MSB-first within each byte
 * (block a ↔ byte a>>3, mask 0x80 >> (a & 7)). Kept in memory; dirty 4 KiB pages are tracked for write-back into the
 * index file. Allocation is next-fit from a cursor, wrapping to 0 once; addresses 0 and 1 are never handed out.
 */
import { assert } from '../util/assert.js';
import { INDEX_PAGE_SIZE } from '../limits.js';

export class Bitmap {
  /** The bitmap words as stored: 4·ceil(blockCount/32) bytes. */
  readonly bytes: Buffer;
  private countSetCache: number;
  /** Next-fit cursor (spec §5.7); 0 at every process start. */
  cursor = 0;
  /** Dirty 4 KiB pages of `bytes`, a flag each: fsck's fix files sets a bit per used block (a Set.add each before). */
  private readonly dirtyPages: Uint8Array;

  /**
   * @param blockCount number of addresses (bits) that are meaningful
   * @param bytes the stored words (copied by reference); bits ≥ blockCount are ignored
   */
  constructor(readonly blockCount: number, bytes: Buffer) {
    assert(bytes.length >= Math.ceil(blockCount / 8), 'bitmap too short for block_count');
    this.bytes = bytes;
    this.dirtyPages = new Uint8Array(Math.ceil(bytes.length / INDEX_PAGE_SIZE));
    this.countSetCache = this.recount();
  }

  /** A bitmap with only blocks 0 and 1 set (a fresh volume). */
  static fresh(blockCount: number): Bitmap {
    const b = Buffer.alloc(Math.ceil(blockCount / 32) * 4);
    b[0] = 0xc0;
    return new Bitmap(blockCount, b);
  }

  has(address: number): boolean {
    return (this.bytes[Math.floor(address / 8)]! & (0x80 >>> (address & 7))) !== 0;
  }

  set(address: number): void {
    if (!(address >= 0 && address < this.blockCount)) assert(false, `bitmap address ${address} out of range`); // message only on failure: hot path
    const i = Math.floor(address / 8);
    const m = 0x80 >>> (address & 7);
    if ((this.bytes[i]! & m) === 0) {
      this.bytes[i] = this.bytes[i]! | m;
      this.countSetCache++;
      this.dirtyPages[Math.floor(i / INDEX_PAGE_SIZE)] = 1;
    }
  }

  clear(address: number): void {
    if (!(address >= 0 && address < this.blockCount)) assert(false, `bitmap address ${address} out of range`); // message only on failure: hot path
    const i = Math.floor(address / 8);
    const m = 0x80 >>> (address & 7);
    if ((this.bytes[i]! & m) !== 0) {
      this.bytes[i] = this.bytes[i]! & ~m;
      this.countSetCache--;
      this.dirtyPages[Math.floor(i / INDEX_PAGE_SIZE)] = 1;
    }
  }

  /** Number of set bits below blockCount. */
  get countSet(): number {
    return this.countSetCache;
  }

  /** Recount set bits (spec §5.2: the used count is a popcount at open). */
  recount(): number {
    let n = 0;
    const full = Math.floor(this.blockCount / 8);
    for (let i = 0; i < full; i++) n += POPCOUNT[this.bytes[i]!]!;
    for (let a = full * 8; a < this.blockCount; a++) if (this.has(a)) n++;
    this.countSetCache = n;
    return n;
  }

  /**
   * Next-fit allocation (spec §5.7): the first clear bit from the cursor, wrapping to 0 once; skips 0 and 1.
   * @returns the allocated address, or -1 when every bit is set
   */
  allocate(): number {
    if (this.countSetCache >= this.blockCount) return -1;
    let a = this.findClear(Math.max(this.cursor, 2), this.blockCount);
    if (a < 0) a = this.findClear(2, Math.min(Math.max(this.cursor, 2), this.blockCount));
    if (a < 0) return -1;
    this.set(a);
    this.cursor = a + 1;
    return a;
  }

  /**
   * Next-fit allocation restricted to addresses below `limit` (a block file that cannot grow: its filesystem is full,
   * so only the blocks already in it can be reused). Same cursor and wrap rule as `allocate`.
   * @returns the allocated address, or -1 when every bit below `limit` is set
   */
  allocateBelow(limit: number): number {
    const end = Math.min(limit, this.blockCount);
    if (end <= 2) return -1;
    const start = Math.min(Math.max(this.cursor, 2), end);
    let a = this.findClear(start, end);
    if (a < 0) a = this.findClear(2, start);
    if (a < 0) return -1;
    this.set(a);
    this.cursor = a + 1;
    return a;
  }

  /** Number of clear bits in [2, limit): blocks that can be reused without growing the block file. */
  countClearBelow(limit: number): number {
    const end = Math.min(limit, this.blockCount);
    let set = 0;
    let a = 2;
    for (; a < end && (a & 7) !== 0; a++) if (this.has(a)) set++;
    for (; a + 8 <= end; a += 8) set += POPCOUNT[this.bytes[a >>> 3]!]!;
    for (; a < end; a++) if (this.has(a)) set++;
    return Math.max(0, end - 2 - set);
  }

  private findClear(from: number, to: number): number {
    let a = from;
    while (a < to) {
      const byte = this.bytes[Math.floor(a / 8)]!;
      if (byte === 0xff && (a & 7) === 0) {
        a += 8;
        continue;
      }
      if ((byte & (0x80 >>> (a & 7))) === 0) return a;
      a++;
    }
    return -1;
  }

  /** Replace the content (fsck rebuild) and mark everything dirty. */
  assign(bytes: Buffer): void {
    bytes.copy(this.bytes, 0, 0, this.bytes.length);
    this.recount();
    this.markAllDirty();
  }

  markAllDirty(): void {
    this.dirtyPages.fill(1);
  }

  /** Dirty byte ranges [offset, end) relative to the bitmap start, and clear the dirty set. */
  takeDirtyRanges(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let p = 0; p < this.dirtyPages.length; p++) {
      if (this.dirtyPages[p] === 0) continue;
      this.dirtyPages[p] = 0;
      out.push([p * INDEX_PAGE_SIZE, Math.min((p + 1) * INDEX_PAGE_SIZE, this.bytes.length)]);
    }
    return out;
  }

  /**
   * The set addresses (blocks in use) from `from` up to blockCount, in ascending order; whole zero bytes are skipped.
   * The bitmap must not change while the generator is consumed.
   * @param from the first address looked at (default 0; negative counts as 0)
   */
  *setAscending(from = 0): Generator<number> {
    const bytes = this.bytes;
    let a = Math.max(0, from);
    while (a < this.blockCount) {
      const byte = bytes[a >>> 3]!;
      if (byte === 0) {
        a = ((a >>> 3) + 1) * 8;
        continue;
      }
      if ((byte & (0x80 >>> (a & 7))) !== 0) yield a;
      a++;
    }
  }
}

const POPCOUNT = new Uint8Array(256);
for (let i = 0; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1]!;
