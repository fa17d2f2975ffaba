/**
 * Byte sources and sinks of the offline copy (cpddumbfs, spec §11): a host file or a stream (stdin/stdout) seen
 * through two tiny function types, so upload/download never care where the bytes come from or go to.
 *
 * These are the user's own files, not volume data: volume data (block file, index, UFS files) still goes through
 * io/device.ts only.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

/**
 * Target size of one copy chunk: the upload reads and stores, and the download reads and writes, this many bytes at
 * a time (rounded to whole blocks). Big enough that a 128 KiB-block volume moves 8 blocks per call, small enough to
 * keep memory flat.
 */
export const COPY_CHUNK_SIZE_TARGET = 1024 * 1024;

/** Bytes per copy chunk for a block size: the largest multiple of `blockSize` ≤ 1 MiB, at least one block. */
export function copyChunkSize(blockSize: number): number {
  return Math.max(blockSize, Math.floor(COPY_CHUNK_SIZE_TARGET / blockSize) * blockSize);
}

/**
 * Read up to `length` bytes into `buf` at `offset`.
 * @returns bytes read, ≥ 1, or 0 at end of input
 */
export type ByteReader = (buf: Buffer, offset: number, length: number) => Promise<number>;

/** Write all of `data`; the caller may reuse `data` once the promise settles. */
export type ByteWriter = (data: Buffer) => Promise<void>;

/**
 * Fill `buf` completely unless the input ends first (a pipe gives short reads; the upload needs whole blocks).
 * @returns bytes placed in `buf`; less than `buf.length` only at end of input
 */
export async function readFull(read: ByteReader, buf: Buffer): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = await read(buf, done, buf.length - done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * A reader over an open file from its current position. Reads are sequential (position null), so a FIFO or a
 * character device given by name (`/dev/stdin`) works as well as a regular file.
 */
export function fileReader(fh: FileHandle): ByteReader {
  return async (buf, offset, length) => {
    const { bytesRead } = await fh.read(buf, offset, length, null);
    return bytesRead;
  };
}

/** A reader over an async iterable of chunks (process.stdin, a Readable). */
export function streamReader(stream: AsyncIterable<Buffer | string>): ByteReader {
  const it = stream[Symbol.asyncIterator]();
  let pending: Buffer | null = null;
  let ended = false;
  return async (buf, offset, length) => {
    while (!pending || pending.length === 0) {
      if (ended) return 0;
      const r = await it.next();
      if (r.done) {
        ended = true;
        return 0;
      }
      pending = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    }
    const n = Math.min(length, pending.length);
    pending.copy(buf, offset, 0, n);
    pending = pending.subarray(n);
    return n;
  };
}

/** A writer appending to an open file from position 0. */
export function fileWriter(fh: FileHandle): ByteWriter {
  let position = 0;
  return async (data) => {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
      done += bytesWritten;
    }
    position += data.length;
  };
}

/** A writer to a stream (stdout) that waits until each chunk is handed to the OS, so the caller may reuse it. */
export function streamWriter(stream: Writable): ByteWriter {
  return (data) => new Promise<void>((resolve, reject) => {
    if (data.length === 0) {
      resolve();
      return;
    }
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}
