/**
 * Node codec and hash → ideal slot (spec §5.3, §5.4).
 *
 * | offset    | size      | description                            |
 * |-----------|-----------|----------------------------------------|
 * | 0         | addr_size | block address, unsigned little-endian  |
 * | addr_size | hash_size | hash of the block (spec §6 byte order) |
 *
 * An empty index node has address 0. In a UFS node, address 0 means "all-zero block" and 1 means "lost block".
 */

/** Read an unsigned little-endian address of `addrSize` bytes at `offset` (addresses stay below 2^53). */
export function decodeAddress(buf: Buffer, offset: number, addrSize: number): number {
  // indexed byte reads for the usual widths (every node of every walk and probe comes here; readUIntLE's checks
  // and dispatch cost more than the read); an offset outside `buf` still throws readUIntLE's RangeError
  if (addrSize <= 6 && !(Number.isInteger(offset) && offset >= 0 && offset + addrSize <= buf.length)) return buf.readUIntLE(offset, addrSize);
  if (addrSize === 3) return buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16);
  if (addrSize === 4) return (buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16)) + buf[offset + 3]! * 0x1000000;
  if (addrSize <= 6) return buf.readUIntLE(offset, addrSize);
  let v = 0;
  for (let i = addrSize - 1; i >= 0; i--) v = v * 256 + buf[offset + i]!;
  return v;
}

/** Write `address` as `addrSize` little-endian bytes at `offset`. */
export function encodeAddress(buf: Buffer, offset: number, addrSize: number, address: number): void {
  if (addrSize <= 6) {
    buf.writeUIntLE(address, offset, addrSize);
    return;
  }
  let v = address;
  for (let i = 0; i < addrSize; i++) {
    buf[offset + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

const TWO_64 = 18446744073709551616;

/**
 * The ideal slot of a hash in the node table (spec §5.4): trunc(h64 · block_count·ov / 2^64), where h64 is the
 * hash's first 8 bytes as a big-endian uint64 converted to double with round-to-nearest.
 * @param hash at least 8 bytes, read from `offset`
 */
export function idealSlot(hash: Buffer, offset: number, blockCount: number, nodeOverflow: number): number {
  // hi·2^32 and lo are exact doubles, so their sum is the uint64 rounded to nearest once: the same double that
  // x86-64 gcc's uint64 → double conversion gives.
  const h64 = hash.readUInt32BE(offset) * 4294967296 + hash.readUInt32BE(offset + 4);
  return Math.floor(h64 * ((blockCount * nodeOverflow) / TWO_64));
}
