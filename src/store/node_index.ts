/**
 * The node table of the index file (spec §5.3–§5.6): an open-addressing hash table with sorted linear probing and
 * backward-shift deletion, mapping hash → block address.
 *
 * Invariants (spec §5.5), checked by `checkInvariants` in tests:
 *  1. every non-empty node sits at i ≥ cidx(hash);
 *  2. within a run of non-empty nodes, hashes strictly increase (memcmp order);
 *  3. a node with i > cidx has a non-empty predecessor;
 *  4. addresses are unique, never 0 or 1; 5. the zero-block and null hashes are never stored.
 *
 * The table lives in memory in chunks of whole nodes (limits.ts INDEX_CHUNK_SIZE_MAX), so a multi-TiB volume's index
 * never needs one Buffer over 4 GiB. Dirty 4 KiB pages (relative to node_offset) are tracked for write-back.
 * Probe loops are bounded by node_count: there is no wrap-around (the tail reserve of spec §3.3 absorbs overflow).
 */
import { assert } from '../util/assert.js';
import { DdfsError } from '../errors.js';
import { INDEX_CHUNK_SIZE_MAX, INDEX_PAGE_SIZE } from '../limits.js';
import { decodeAddress, encodeAddress, idealSlot } from '../format/node.js';

const TWO_64 = 18446744073709551616;

export interface NodeIndexGeometry {
  blockCount: number;
  nodeOverflow: number;
  nodeCount: number;
  addrSize: number;
  hashSize: number;
  nodeSize: number;
}

/** Result of a lookup: `address` ≥ 2 when found, else -1 with the insertion slot. */
export interface LookupResult {
  found: boolean;
  address: number;
  slot: number;
}

export class NodeIndex {
  readonly nodeCount: number;
  readonly nodeSize: number;
  readonly addrSize: number;
  readonly hashSize: number;
  private readonly blockCount: number;
  private readonly overflow: number;
  /** block_count·node_overflow / 2^64, the factor of the ideal slot (format/node.ts idealSlot computes the same). */
  private readonly slotScale: number;
  private readonly nodesPerChunk: number;
  readonly chunks: Buffer[];
  /**
   * Dirty 4 KiB pages of the node array, one bit each (MSB-first), and how many are set: a rebuild or repair marks a
   * page for every node it writes, and a Set's add cost more than the node's own write (fsck -r: ~90 ms of 333,000).
   */
  private readonly dirtyPages: Uint8Array;
  private dirtyPageCount = 0;
  private readonly scratch: Buffer;

  /**
   * @param geo the cfg geometry
   * @param chunks node bytes, chunk k holding nodes [k·npc, (k+1)·npc); when omitted, an all-empty table
   */
  constructor(geo: NodeIndexGeometry, chunks?: Buffer[]) {
    this.nodeCount = geo.nodeCount;
    this.nodeSize = geo.nodeSize;
    this.addrSize = geo.addrSize;
    this.hashSize = geo.hashSize;
    this.blockCount = geo.blockCount;
    this.overflow = geo.nodeOverflow;
    this.slotScale = (geo.blockCount * geo.nodeOverflow) / TWO_64;
    this.nodesPerChunk = NodeIndex.nodesPerChunk(geo.nodeSize);
    this.scratch = Buffer.alloc(geo.nodeSize);
    this.dirtyPages = new Uint8Array(Math.ceil(Math.ceil((this.nodeCount * this.nodeSize) / INDEX_PAGE_SIZE) / 8));
    if (chunks) {
      this.chunks = chunks;
    } else {
      this.chunks = [];
      for (let first = 0; first < this.nodeCount; first += this.nodesPerChunk) {
        this.chunks.push(Buffer.alloc(Math.min(this.nodesPerChunk, this.nodeCount - first) * this.nodeSize));
      }
    }
    assert(this.chunks.length === Math.ceil(this.nodeCount / this.nodesPerChunk), 'index chunk count');
  }

  /** Nodes per in-memory chunk for a node size. */
  static nodesPerChunk(nodeSize: number): number {
    return Math.floor(INDEX_CHUNK_SIZE_MAX / nodeSize);
  }

  /** Byte size of chunk k (for loading from the index file). */
  static chunkSizes(geo: NodeIndexGeometry): number[] {
    const npc = NodeIndex.nodesPerChunk(geo.nodeSize);
    const out: number[] = [];
    for (let first = 0; first < geo.nodeCount; first += npc) out.push(Math.min(npc, geo.nodeCount - first) * geo.nodeSize);
    return out;
  }

  private chunkOf(i: number): Buffer {
    return this.chunks[Math.floor(i / this.nodesPerChunk)]!;
  }

  private offsetOf(i: number): number {
    return (i % this.nodesPerChunk) * this.nodeSize;
  }

  /** Mark the pages of bytes [offset, offset+length) of the node array dirty (a write-back that failed). */
  markDirtyBytes(offset: number, length: number): void {
    const p0 = Math.floor(offset / INDEX_PAGE_SIZE);
    const p1 = Math.floor((offset + length - 1) / INDEX_PAGE_SIZE);
    for (let p = p0; p <= p1; p++) this.markPage(p);
  }

  private markPage(p: number): void {
    if (p < 0 || p >>> 3 >= this.dirtyPages.length) return; // past the node array: nothing to write there
    const m = 0x80 >>> (p & 7);
    const b = this.dirtyPages[p >>> 3]!;
    if ((b & m) !== 0) return;
    this.dirtyPages[p >>> 3] = b | m;
    this.dirtyPageCount++;
  }

  private markDirty(first: number, last: number): void {
    const p0 = Math.floor((first * this.nodeSize) / INDEX_PAGE_SIZE);
    const p1 = Math.floor(((last + 1) * this.nodeSize - 1) / INDEX_PAGE_SIZE);
    for (let p = p0; p <= p1; p++) this.markPage(p);
  }

  /**
   * The chunk holding node i and node i's byte offset in it, for scans that read nodes in place (fsck's index scan:
   * a `hashView` per node would allocate a Buffer for each of millions of nodes). Read-only use.
   */
  chunkOfNode(i: number): Buffer {
    return this.chunkOf(i);
  }

  /** Byte offset of node i in `chunkOfNode(i)`. */
  nodeOffsetInChunk(i: number): number {
    return this.offsetOf(i);
  }

  /** 32-bit views of the chunks for firstNonZeroNodeFrom (null: chunk not 4-byte aligned), made on first use. */
  private chunkWords: Array<Uint32Array | null> | null = null;

  /**
   * The first node at or after `from` with any non-zero byte (a used node, or an empty one with a stray hash), or
   * node_count. Scans a 32-bit word at a time in place: most of a table is all-zero empty nodes (node_overflow ≥ 1),
   * and the scans of fsck visit every node.
   */
  firstNonZeroNodeFrom(from: number): number {
    const npc = this.nodesPerChunk;
    const ns = this.nodeSize;
    if (from >= 0 && from < this.nodeCount) {
      // the scans call it at every used node: one whose first byte is set answers at once
      const k0 = Math.floor(from / npc);
      if (this.chunks[k0]![(from - k0 * npc) * ns] !== 0) return from;
    }
    this.chunkWords ??= this.chunks.map((c) => (c.byteOffset % 4 === 0 ? new Uint32Array(c.buffer, c.byteOffset, c.length >>> 2) : null));
    let i = Math.max(0, from);
    while (i < this.nodeCount) {
      const k = Math.floor(i / npc);
      const c = this.chunks[k]!;
      const words = this.chunkWords[k]!;
      const first = k * npc;
      const limit = (Math.min(this.nodeCount, first + npc) - first) * ns;
      let z = (i - first) * ns;
      if (words) {
        while (z < limit && (z & 3) !== 0 && c[z] === 0) z++;
        if (z < limit && (z & 3) === 0) {
          let w = z >>> 2;
          const wEnd = limit >>> 2;
          while (w < wEnd && words[w] === 0) w++;
          z = w << 2;
        }
      }
      while (z < limit && c[z] === 0) z++;
      if (z < limit) return first + Math.floor(z / ns);
      i = first + npc;
    }
    return this.nodeCount;
  }

  /** Address of node i (0 = empty). */
  address(i: number): number {
    return decodeAddress(this.chunkOf(i), this.offsetOf(i), this.addrSize);
  }

  isEmpty(i: number): boolean {
    return this.address(i) === 0;
  }

  /** A copy of node i's hash. */
  hash(i: number): Buffer {
    const o = this.offsetOf(i) + this.addrSize;
    return Buffer.from(this.chunkOf(i).subarray(o, o + this.hashSize));
  }

  /** View (no copy) of node i's hash: valid until the table changes. */
  hashView(i: number): Buffer {
    const o = this.offsetOf(i) + this.addrSize;
    return this.chunkOf(i).subarray(o, o + this.hashSize);
  }

  /** memcmp(node[i].hash, h) sign. */
  compareHash(i: number, h: Buffer, hOffset = 0): number {
    const c = this.chunkOf(i);
    const o = this.offsetOf(i) + this.addrSize;
    // A JS loop: hashes almost always differ in the first byte, and Buffer#compare costs a native call (~1 µs).
    for (let k = 0; k < this.hashSize; k++) {
      const d = c[o + k]! - h[hOffset + k]!;
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return 0;
  }

  /** Ideal slot of a hash (spec §5.4). */
  idealSlot(h: Buffer, hOffset = 0): number {
    return idealSlot(h, hOffset, this.blockCount, this.overflow);
  }

  /** Ideal slot of the hash stored in node i. */
  idealSlotOf(i: number): number {
    return idealSlot(this.chunkOf(i), this.offsetOf(i) + this.addrSize, this.blockCount, this.overflow);
  }

  /** Write node i (address + hash). */
  writeNode(i: number, address: number, h: Buffer, hOffset = 0): void {
    const c = this.chunkOf(i);
    const o = this.offsetOf(i);
    encodeAddress(c, o, this.addrSize, address);
    h.copy(c, o + this.addrSize, hOffset, hOffset + this.hashSize);
    this.markDirty(i, i);
  }

  /** Change only node i's address. */
  writeAddress(i: number, address: number): void {
    encodeAddress(this.chunkOf(i), this.offsetOf(i), this.addrSize, address);
    this.markDirty(i, i);
  }

  /** Zero node i. */
  clearNode(i: number): void {
    const o = this.offsetOf(i);
    this.chunkOf(i).fill(0, o, o + this.nodeSize);
    this.markDirty(i, i);
  }

  private copyNode(from: number, to: number): void {
    const src = this.chunkOf(from);
    const so = this.offsetOf(from);
    src.copy(this.scratch, 0, so, so + this.nodeSize);
    this.scratch.copy(this.chunkOf(to), this.offsetOf(to));
  }

  /** Move nodes [first, last] one slot up to [first+1, last+1] (last+1 must be empty). */
  private shiftUp(first: number, last: number): void {
    if (last < first) return;
    const c = this.chunkOf(first);
    if (c === this.chunkOf(last + 1)) {
      const o = this.offsetOf(first);
      c.copyWithin(o + this.nodeSize, o, this.offsetOf(last) + this.nodeSize);
    } else {
      for (let j = last; j >= first; j--) this.copyNode(j, j + 1);
    }
    this.markDirty(first, last + 1);
  }

  /** Move nodes [first, last] one slot down to [first-1, last-1]. */
  private shiftDown(first: number, last: number): void {
    if (last < first) return;
    const c = this.chunkOf(first - 1);
    if (c === this.chunkOf(last)) {
      const o = this.offsetOf(first);
      c.copyWithin(o - this.nodeSize, o, this.offsetOf(last) + this.nodeSize);
    } else {
      for (let j = first; j <= last; j++) this.copyNode(j, j - 1);
    }
    this.markDirty(first - 1, last);
  }

  /**
   * Lookup (spec §5.6): probe from cidx(h) while nodes are non-empty and smaller than h.
   * The zero-block and null hashes are the caller's business (they never reach the index).
   * @throws DdfsError NO_SPACE when the probe runs off the end of the table (index exhausted)
   */
  lookup(h: Buffer, hOffset = 0): LookupResult {
    for (let i = this.idealSlot(h, hOffset); i < this.nodeCount; i++) {
      const a = this.address(i);
      if (a === 0) return { found: false, address: -1, slot: i };
      const c = this.compareHash(i, h, hOffset);
      if (c === 0) return { found: true, address: a, slot: i };
      if (c > 0) return { found: false, address: -1, slot: i };
    }
    throw new DdfsError('NO_SPACE', 'index exhausted: no free node after the ideal slot');
  }

  /**
   * `lookup` without the result object, for loops over every node of every file (fsck's file walk): the address
   * (≥ 2) of the hash at `h[hOffset…]`, or -1 when it is not in the index.
   * @throws DdfsError NO_SPACE when the probe runs off the end of the table (index exhausted)
   */
  lookupAddress(h: Buffer, hOffset = 0): number {
    const npc = this.nodesPerChunk;
    const ns = this.nodeSize;
    const as = this.addrSize;
    const hs = this.hashSize;
    const n = this.nodeCount;
    // idealSlot inline, from the bytes: the same two exact 32-bit halves and the same double operations
    const hi = h[hOffset]! * 16777216 + ((h[hOffset + 1]! << 16) | (h[hOffset + 2]! << 8) | h[hOffset + 3]!);
    const lo = h[hOffset + 4]! * 16777216 + ((h[hOffset + 5]! << 16) | (h[hOffset + 6]! << 8) | h[hOffset + 7]!);
    let i = Math.floor((hi * 4294967296 + lo) * this.slotScale);
    if (i >= n) throw new DdfsError('NO_SPACE', 'index exhausted: no free node after the ideal slot');
    let k = Math.floor(i / npc);
    let c = this.chunks[k]!;
    let o = (i - k * npc) * ns;
    // the probe walks the chunk in place (one division per lookup, not per node); addresses of 3 and 4 bytes inline
    for (; i < n; i++, o += ns) {
      if (o >= c.length) {
        c = this.chunks[++k]!;
        o = 0;
      }
      const a = as === 3 ? c[o]! | (c[o + 1]! << 8) | (c[o + 2]! << 16)
        : as === 4 ? (c[o]! | (c[o + 1]! << 8) | (c[o + 2]! << 16)) + c[o + 3]! * 16777216
          : decodeAddress(c, o, as);
      if (a === 0) return -1;
      const ho = o + as;
      let d = 0;
      for (let j = 0; j < hs; j++) {
        d = c[ho + j]! - h[hOffset + j]!;
        if (d !== 0) break;
      }
      if (d === 0) return a;
      if (d > 0) return -1;
    }
    throw new DdfsError('NO_SPACE', 'index exhausted: no free node after the ideal slot');
  }

  /** First empty slot at or after `from`, or -1. */
  private firstEmptyFrom(from: number): number {
    for (let f = from; f < this.nodeCount; f++) if (this.address(f) === 0) return f;
    return -1;
  }

  /**
   * Insert-new (spec §5.6, write path): put (address, h) at `slot` as returned by a failed lookup, shifting the run
   * that starts there one position up.
   * @throws DdfsError NO_SPACE when no empty node follows the slot
   */
  insertAt(slot: number, address: number, h: Buffer, hOffset = 0): void {
    if (!(address >= 2)) assert(false, `cannot index address ${address}`); // message only on failure: hot path (rebuild)
    if (this.address(slot) !== 0) {
      const f = this.firstEmptyFrom(slot + 1);
      if (f < 0) throw new DdfsError('NO_SPACE', 'index exhausted: no empty node to shift into');
      this.shiftUp(slot, f - 1);
    }
    this.writeNode(slot, address, h, hOffset);
  }

  /**
   * node_add (spec §5.6, fsck/rebuild) in one of two modes.
   * - 'duplicates': equal hashes end up in descending address order; an identical (hash, address) is not re-added.
   * - 'unique': the existing node of an equal hash takes the new address; following equal-hash nodes are deleted.
   * @throws DdfsError NO_SPACE when the table is exhausted
   */
  add(address: number, h: Buffer, mode: 'duplicates' | 'unique'): void {
    if (!(address >= 2)) assert(false, `cannot index address ${address}`); // message only on failure: hot path (rebuild)
    let i = this.idealSlot(h);
    for (; i < this.nodeCount; i++) {
      const a = this.address(i);
      if (a === 0) {
        this.writeNode(i, address, h);
        return;
      }
      const c = this.compareHash(i, h);
      if (c < 0) continue;
      if (c > 0) {
        this.insertAt(i, address, h);
        return;
      }
      if (mode === 'unique') {
        this.writeAddress(i, address);
        while (i + 1 < this.nodeCount && this.address(i + 1) !== 0 && this.compareHash(i + 1, h) === 0) this.delete(i + 1);
        return;
      }
      if (address < a) continue;
      if (address === a) return;
      this.insertAt(i, address, h);
      return;
    }
    throw new DdfsError('NO_SPACE', 'index exhausted while adding a node');
  }

  /**
   * node_delete (spec §5.6): backward-shift deletion. Scans j = i+1… up to the first empty node or node already at
   * (or before) its ideal slot, shifts (i, last] down by one and zeroes `last`.
   */
  delete(i: number): void {
    let j = i + 1;
    while (j < this.nodeCount && this.address(j) !== 0 && this.idealSlotOf(j) < j) j++;
    const last = j - 1;
    this.shiftDown(i + 1, last);
    this.clearNode(last);
  }

  /** node_fix (spec §5.6): take node i out and add it back, duplicates allowed. */
  fix(i: number): void {
    const a = this.address(i);
    const h = this.hash(i);
    this.delete(i);
    this.add(a, h, 'duplicates');
  }

  /** Count of non-empty nodes (a full scan). */
  countUsed(): number {
    let n = 0;
    for (let i = 0; i < this.nodeCount; i++) if (this.address(i) !== 0) n++;
    return n;
  }

  /** Zero every node (rebuild). */
  clearAll(): void {
    for (const c of this.chunks) c.fill(0);
    const pages = Math.ceil((this.nodeCount * this.nodeSize) / INDEX_PAGE_SIZE);
    for (let p = 0; p < pages; p++) this.markPage(p);
  }

  /**
   * Dirty ranges as [byteOffset, length] relative to node_offset, in ascending order; clears the dirty set.
   * Each range lies within one chunk.
   */
  takeDirtyRanges(): Array<{ offset: number; chunk: Buffer; chunkOffset: number; length: number }> {
    const pages: number[] = [];
    if (this.dirtyPageCount > 0) {
      const d = this.dirtyPages;
      for (let i = 0; i < d.length; i++) {
        const b = d[i]!;
        if (b === 0) continue;
        for (let j = 0; j < 8; j++) if ((b & (0x80 >>> j)) !== 0) pages.push(i * 8 + j);
        d[i] = 0;
      }
      this.dirtyPageCount = 0;
    }
    const chunkBytes = this.nodesPerChunk * this.nodeSize;
    const total = this.nodeCount * this.nodeSize;
    const out: Array<{ offset: number; chunk: Buffer; chunkOffset: number; length: number }> = [];
    for (const p of pages) {
      let start = p * INDEX_PAGE_SIZE;
      const end = Math.min(start + INDEX_PAGE_SIZE, total);
      while (start < end) {
        const k = Math.floor(start / chunkBytes);
        const co = start - k * chunkBytes;
        const len = Math.min(end - start, chunkBytes - co);
        const prev = out[out.length - 1];
        if (prev && prev.chunk === this.chunks[k] && prev.offset + prev.length === start) prev.length += len;
        else out.push({ offset: start, chunk: this.chunks[k]!, chunkOffset: co, length: len });
        start += len;
      }
    }
    return out;
  }

  /**
   * Check the §5.5 invariants 1–4; returns a list of violations (empty when sound). For tests and fsck.
   */
  checkInvariants(): string[] {
    const problems: string[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < this.nodeCount; i++) {
      const a = this.address(i);
      if (a === 0) continue;
      if (a === 1 || a >= this.blockCount) problems.push(`node ${i}: bad address ${a}`);
      if (seen.has(a)) problems.push(`node ${i}: address ${a} twice`);
      seen.add(a);
      const ideal = this.idealSlotOf(i);
      if (i < ideal) problems.push(`node ${i}: before its ideal slot ${ideal}`);
      if (i > ideal) {
        if (this.address(i - 1) === 0) problems.push(`node ${i}: gap before it`);
        else if (this.compareHash(i - 1, this.hashView(i)) >= 0) problems.push(`node ${i}: not sorted`);
      } else if (i > 0 && this.address(i - 1) !== 0 && this.compareHash(i - 1, this.hashView(i)) >= 0) {
        problems.push(`node ${i}: not sorted`);
      }
    }
    return problems;
  }
}
