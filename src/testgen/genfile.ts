/**
 * Writing, comparing and reading testddumbfs files (spec §14 operations F, C and the speed tests' files).
 *
 * A generated file is `ceil(fileSize/blockSize)` generator blocks (BlockGenerator), so its length is a whole number
 * of blocks. I/O goes through large sequential transfers of whole blocks (about TRANSFER_SIZE bytes, at least one
 * block) with two buffers, so the next batch is generated (or read) while the previous one is in flight: with 4 KiB
 * blocks that is 256 blocks per system call instead of one.
 *
 * Invariants: a write is at offset 0 and never truncates (upstream opens with O_WRONLY|O_CREAT, no O_TRUNC: bytes
 * past the generated length survive); every call closes its file, also on error, after its last I/O has settled.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DdfsError } from '../errors.js';
import { assert } from '../util/assert.js';
import { BlockGenerator, blockCountOf } from './lcg.js';

/** Bytes per write/read call: large enough to amortise system calls (and FUSE round trips), small enough to cache. */
export const TRANSFER_SIZE = 1024 * 1024;
/** Largest block size accepted: the generator and each transfer buffer hold whole blocks in memory. */
export const TEST_BLOCK_SIZE_MAX = 256 * 1024 * 1024;

/** What defines a generated file's content and length (spec §14 options -B -S -s -m -f). */
export interface GenerateOptions {
  /** Generator block size in bytes (`-B`); a positive multiple of 8. */
  blockSize: number;
  /** Requested size in bytes (`-S`); the file holds ceil(fileSize/blockSize) blocks. */
  fileSize: number;
  /** Initial LCG state (`-s`), modulo 2^64. */
  seed: bigint;
  /** OR-ed into each 64-bit word (`-m`). */
  mask: bigint;
  /** Fast mode (`-f`). */
  fast: boolean;
}

export type CompareResult =
  | { equal: true; size: number }
  /** `offset` = byte offset of the first generator block that differs or is incomplete in the file. */
  | { equal: false; offset: number; size: number };

/** Blocks per transfer for this block size (at least 1). */
export function blocksPerTransfer(blockSize: number): number {
  return Math.max(1, Math.floor(TRANSFER_SIZE / blockSize));
}

function checkOptions(options: GenerateOptions): void {
  const { blockSize, fileSize } = options;
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0 || blockSize % 8 !== 0 || blockSize > TEST_BLOCK_SIZE_MAX) {
    throw new DdfsError(
      'USAGE',
      `block size must be a multiple of 8 between 8 and ${TEST_BLOCK_SIZE_MAX} bytes: ${blockSize}`,
      { blockSize },
    );
  }
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new DdfsError('USAGE', `invalid file size: ${fileSize}`, { fileSize });
  }
}

/** Write `buffer[0, length)` at `position`, looping over short writes. */
async function writeFull(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done);
    if (bytesWritten <= 0) {
      throw new DdfsError('IO', `write returned ${bytesWritten} at offset ${position + done}`, {
        offset: position + done,
      });
    }
    done += bytesWritten;
  }
}

/** Read up to `length` bytes at `position` into `buffer`, looping over short reads; returns bytes read (< length only at EOF). */
async function readFull(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Wait for an in-flight operation before closing its file; its error, if any, is already being reported elsewhere. */
async function settle(pending: Promise<unknown> | null): Promise<void> {
  if (pending !== null) await pending.catch(() => undefined);
}

/**
 * fsync, tolerating targets that cannot be synced (EINVAL/ENOTSUP: /dev/null, pipes, some devices) as upstream does;
 * a real failure (EIO, ENOSPC of delayed writes) is thrown, because it means the data did not reach the disk.
 */
async function syncUnlessUnsupported(handle: FileHandle): Promise<void> {
  try {
    await handle.sync();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
  }
}

/**
 * Operation `F`: create (or overwrite in place) `path` with the generated content, then fsync.
 *
 * @returns bytes written = ceil(fileSize/blockSize)·blockSize.
 * @throws DdfsError USAGE for bad options; Node system errors (ENOENT, ENOSPC, EIO…) from open/write/fsync.
 */
export async function writeGeneratedFile(path: string, options: GenerateOptions): Promise<number> {
  checkOptions(options);
  const { blockSize } = options;
  const generator = new BlockGenerator(blockSize, options.seed, options.mask, options.fast);
  const blockCount = blockCountOf(options.fileSize, blockSize);
  const perTransfer = blocksPerTransfer(blockSize);
  const buffers = [Buffer.allocUnsafe(perTransfer * blockSize), Buffer.allocUnsafe(perTransfer * blockSize)];

  const handle = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT, 0o644);
  let pending: Promise<void> | null = null;
  try {
    let blockIndex = 0;
    let turn = 0;
    while (blockIndex < blockCount) {
      const count = Math.min(perTransfer, blockCount - blockIndex);
      const buffer = buffers[turn & 1]!;
      // This buffer's previous write was awaited one turn ago.
      generator.fillBlocks(buffer, 0, count);
      if (pending !== null) await pending;
      pending = writeFull(handle, buffer, count * blockSize, blockIndex * blockSize);
      blockIndex += count;
      turn++;
    }
    if (pending !== null) await pending;
    pending = null;
    await syncUnlessUnsupported(handle);
  } finally {
    await settle(pending);
    await handle.close();
  }
  return blockCount * blockSize;
}

/**
 * Operation `C`: regenerate the content and compare it with `path`, block by block, stopping at the first block
 * that differs or is incomplete (short file). Bytes past the generated length are not examined (as upstream).
 *
 * @throws DdfsError USAGE for bad options; Node system errors from open/read.
 */
export async function compareGeneratedFile(path: string, options: GenerateOptions): Promise<CompareResult> {
  checkOptions(options);
  const { blockSize } = options;
  const generator = new BlockGenerator(blockSize, options.seed, options.mask, options.fast);
  const blockCount = blockCountOf(options.fileSize, blockSize);
  const size = blockCount * blockSize;
  const perTransfer = blocksPerTransfer(blockSize);
  const expected = Buffer.allocUnsafe(perTransfer * blockSize);
  const buffers = [Buffer.allocUnsafe(perTransfer * blockSize), Buffer.allocUnsafe(perTransfer * blockSize)];

  const handle = await open(path, fsConstants.O_RDONLY);
  let pending: Promise<number> | null = null;
  try {
    const readBatch = (turn: number, blockIndex: number): Promise<number> => {
      const count = Math.min(perTransfer, blockCount - blockIndex);
      return readFull(handle, buffers[turn & 1]!, count * blockSize, blockIndex * blockSize);
    };
    let blockIndex = 0;
    let turn = 0;
    if (blockCount > 0) pending = readBatch(0, 0);
    while (blockIndex < blockCount) {
      const count = Math.min(perTransfer, blockCount - blockIndex);
      const actual = buffers[turn & 1]!;
      const bytesRead: number = await pending!;
      pending = null;
      const nextIndex = blockIndex + count;
      // Prefetch the next batch into the other buffer while this one is compared.
      if (bytesRead === count * blockSize && nextIndex < blockCount) pending = readBatch(turn + 1, nextIndex);
      generator.fillBlocks(expected, 0, count);
      const length = count * blockSize;
      if (bytesRead !== length || !actual.subarray(0, length).equals(expected.subarray(0, length))) {
        const first = firstDifferentBlock(actual, expected, bytesRead, count, blockSize);
        assert(first >= 0, 'compare: a differing batch must have a differing block');
        return { equal: false, offset: (blockIndex + first) * blockSize, size };
      }
      blockIndex = nextIndex;
      turn++;
    }
    return { equal: true, size };
  } finally {
    await settle(pending);
    await handle.close();
  }
}

/** Index of the first of `count` blocks that is incomplete (beyond `bytesRead`) or differs; -1 if none. */
function firstDifferentBlock(
  actual: Buffer,
  expected: Buffer,
  bytesRead: number,
  count: number,
  blockSize: number,
): number {
  for (let i = 0; i < count; i++) {
    const start = i * blockSize;
    const end = start + blockSize;
    if (bytesRead < end) return i;
    if (!actual.subarray(start, end).equals(expected.subarray(start, end))) return i;
  }
  return -1;
}

/**
 * Read test (`R`): read `ceil(fileSize/blockSize)·blockSize` bytes of `path` sequentially, discarding them.
 *
 * @returns bytes read.
 * @throws DdfsError IO on a short file (data: path, offset); Node system errors from open/read.
 */
export async function readGeneratedFile(path: string, options: GenerateOptions): Promise<number> {
  checkOptions(options);
  const { blockSize } = options;
  const size = blockCountOf(options.fileSize, blockSize) * blockSize;
  const transferSize = blocksPerTransfer(blockSize) * blockSize;
  // Nothing to compute between reads, so one buffer and one read in flight suffice.
  const buffer = Buffer.allocUnsafe(transferSize);
  const handle = await open(path, fsConstants.O_RDONLY);
  try {
    let offset = 0;
    while (offset < size) {
      const length = Math.min(transferSize, size - offset);
      const bytesRead = await readFull(handle, buffer, length, offset);
      if (bytesRead < length) {
        throw new DdfsError('IO', `short read in ${path} at offset ${offset + bytesRead}`, {
          path,
          offset: offset + bytesRead,
        });
      }
      offset += length;
    }
    return size;
  } finally {
    await handle.close();
  }
}
