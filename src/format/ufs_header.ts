/**
 * UFS file header and node list (spec §7).
 *
 * | offset | size        | description                                      |
 * |--------|-------------|--------------------------------------------------|
 * | 0      | 8           | ASCII `DDUMBFSF`                                  |
 * | 8      | 8           | logical file size, unsigned big-endian (bytes)    |
 * | 16     | k·node_size | node j = (address LE, hash) of bytes [j·bs, (j+1)·bs) |
 *
 * k = ceil(size / block_size). A 0-byte UFS file (no header) is a valid empty file.
 */
import { DdfsError } from '../errors.js';
import { UFS_FILE_MAGIC, UFS_HEADER_SIZE } from '../limits.js';

const MAGIC = Buffer.from(UFS_FILE_MAGIC, 'ascii');

/** Encode a 16-byte header for a file of `size` bytes. */
export function encodeUfsHeader(size: number): Buffer {
  const b = Buffer.alloc(UFS_HEADER_SIZE);
  MAGIC.copy(b, 0);
  b.writeBigUInt64BE(BigInt(size), 8);
  return b;
}

/**
 * Decode the logical size from the first bytes of a UFS file.
 * @param head the file's first min(16, length) bytes
 * @param path for messages
 * @returns size in bytes; 0 for a 0-byte file
 * @throws DdfsError BAD_HEADER for any other length < 16, a wrong magic, or a size beyond 2^53
 */
export function decodeUfsHeader(head: Buffer, path = 'UFS file'): number {
  if (head.length === 0) return 0;
  if (head.length < UFS_HEADER_SIZE) throw new DdfsError('BAD_HEADER', `${path}: header truncated (${head.length} bytes)`, { path });
  if (!head.subarray(0, 8).equals(MAGIC)) throw new DdfsError('BAD_HEADER', `${path}: bad header magic`, { path });
  const size = head.readBigUInt64BE(8);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new DdfsError('BAD_HEADER', `${path}: absurd size ${size}`, { path });
  return Number(size);
}

/** Number of nodes a file of `size` bytes has: ceil(size / blockSize). */
export function nodeCountForSize(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** UFS length of a file of `size` bytes: 16 + ceil(size/bs)·node_size. */
export function ufsLengthForSize(size: number, blockSize: number, nodeSize: number): number {
  return UFS_HEADER_SIZE + nodeCountForSize(size, blockSize) * nodeSize;
}
