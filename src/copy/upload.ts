/**
 * Offline upload: copy a byte stream into a regular file of an unmounted volume (cpddumbfs SRC DST with DST inside
 * the volume, spec §11).
 *
 * The bytes are stored through UfsFile (the same dedup write path as the daemon, spec §8.6 step 5: hash, zero block
 * → address 0, known hash → its address, new hash → next-fit address + sorted index insertion + one block write),
 * in chunks of whole blocks; the last partial block is zero-padded. The header carries the byte count.
 *
 * Differences from upstream, on purpose:
 * - no extra zero node when the size is a multiple of block_size (spec §17.1): a file of k·bs bytes has k nodes;
 * - a short read from a pipe does not end the copy (upstream stops at the first read shorter than a block).
 * Like upstream: the UFS file is created with mode 0600 (umask applied) or truncated in place keeping its mode;
 * no checkpoint (`ddfsusedblocks`) is written and no reserve of free blocks is kept (an offline tool may fill the
 * volume); the target must not be mounted and the volume must not carry `.autofsck` / `.rebuildfsck`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { UFS_HEADER_SIZE } from '../limits.js';
import { decodeAddress } from '../format/node.js';
import { fileDevices, type DeviceFactory } from '../io/device.js';
import { AUTOFSCK_MARKER, REBUILDFSCK_MARKER } from '../format/layout.js';
import { takeVolumeLock } from '../volume/lock.js';
import { Volume, mountPointOf } from '../volume/volume.js';
import { copyChunkSize, readFull, type ByteReader } from './stream_io.js';

/** Mode of a UFS file created by an upload (upstream cpddumbfs: open(…, O_CREAT | O_TRUNC, 0600)). */
export const UPLOAD_FILE_MODE = 0o600;

/** One stored block, as `cpddumbfs -v` reports it. */
export interface UploadBlockRecord {
  /** Block number within the file (0-based). */
  index: number;
  /** Block address in the block file: 0 for an all-zero block, else ≥ 2. */
  address: number;
  /** The block's hash (hash_size bytes, a copy). */
  hash: Buffer;
}

export interface UploadOptions {
  /** Called for each block in file order, once its node is in the UFS file. */
  onBlock?: (record: UploadBlockRecord) => void;
  /** Mode of a newly created UFS file (default 0600). */
  mode?: number;
  /** Must be the factory the volume was opened with (tests with a faulty device); default the real file system. */
  devices?: DeviceFactory;
  /** Called after each chunk is stored, with the bytes copied so far. */
  onProgress?: (bytes: number) => void;
  /**
   * Stop at the next chunk boundary once aborted (Ctrl-C): the UFS file then holds the bytes copied so far, with
   * that size in its header, and the volume is consistent (every node names a stored, indexed block).
   */
  signal?: AbortSignal;
}

export interface UploadResult {
  /** Bytes copied = the size in the header. */
  size: number;
  /** Nodes in the UFS file = ceil(size / block_size). */
  nodeCount: number;
  /** True when `signal` stopped the copy before the end of the input. */
  interrupted: boolean;
}

/**
 * Refuse to upload into `parentDir` unless it is offline and clean, then take the volume lock and open it for
 * writing; closing the volume releases the lock. Nothing on disk is changed when it refuses.
 * @throws DdfsError MOUNTED (a ddumbfs mount of the parent is active), LOCKED (another process holds the volume
 *   lock), NEEDS_CHECK (`.autofsck` or `.rebuildfsck`
 *   present: "The filesystem must be checked."), whatever `beforeChange` (called under the lock, before the volume
 *   is opened for writing) and Volume.open throw
 */
export async function openVolumeForUpload(parentDir: string, options: { devices?: DeviceFactory; beforeChange?: (parentDir: string) => void | Promise<void> } = {}): Promise<Volume> {
  const parent = path.resolve(parentDir);
  const mnt = mountPointOf(parent);
  if (mnt) throw new DdfsError('MOUNTED', `${parent}: filesystem already mounted on ${mnt}`, { path: parent });
  // the markers are looked at under the lock: a repair in progress is named as such, not as "must be checked"
  const lock = await takeVolumeLock(parent, 'cpddumbfs');
  try {
    for (const marker of [AUTOFSCK_MARKER, REBUILDFSCK_MARKER]) {
      const p = path.join(parent, marker);
      if (fs.existsSync(p)) {
        throw new DdfsError('NEEDS_CHECK', `${parent}: The filesystem must be checked (${marker} is present).`, { path: p });
      }
    }
    // under the lock and before anything changes (the CLI opens a mirror master's journal here, spec §4.3)
    await options.beforeChange?.(parent);
    return await Volume.open(parent, { freeBlockReserve: 0, devices: options.devices, lock });
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/**
 * Copy everything `read` yields into the UFS file `ufsPath` of `volume` (created, or truncated if it exists).
 * The parent directory of `ufsPath` must exist.
 *
 * @returns the size copied, the node count, and whether `options.signal` stopped the copy early
 * @throws DdfsError NO_SPACE (block file or index full: the UFS file then holds the blocks stored so far), IO,
 *   BAD_HEADER; Node errors of the source reader and of opening `ufsPath` (ENOENT, EISDIR, EACCES…) unchanged
 */
export async function uploadFile(volume: Volume, read: ByteReader, ufsPath: string, options: UploadOptions = {}): Promise<UploadResult> {
  const { blockSize: bs, nodeSize: ns, addrSize: as } = volume.config;
  const chunk = Buffer.alloc(copyChunkSize(bs));
  const file = await volume.openFile(ufsPath, { create: true, truncate: true, mode: options.mode ?? UPLOAD_FILE_MODE });
  const onBlock = options.onBlock;
  // -v needs each block's address and hash: read the nodes back from the UFS file (write-through, see UfsFile)
  // rather than hashing every block twice.
  const nodeReader = onBlock ? await (options.devices ?? fileDevices).open(ufsPath, { readOnly: true }) : null;
  let size = 0;
  let interrupted = false;
  let reported = 0;
  const report = async (upTo: number): Promise<void> => {
    if (!onBlock || !nodeReader || upTo <= reported) return;
    const nodes = Buffer.alloc((upTo - reported) * ns);
    const n = await nodeReader.read(nodes, 0, nodes.length, UFS_HEADER_SIZE + reported * ns);
    if (n !== nodes.length) throw new DdfsError('IO', `${ufsPath}: short read of the nodes just written`, { path: ufsPath });
    for (let j = reported; j < upTo; j++) {
      const o = (j - reported) * ns;
      onBlock({ index: j, address: decodeAddress(nodes, o, as), hash: Buffer.from(nodes.subarray(o + as, o + ns)) });
    }
    reported = upTo;
  };
  try {
    try {
      for (;;) {
        if (options.signal?.aborted) {
          interrupted = true;
          break;
        }
        const n = await readFull(read, chunk);
        // an abort during the read (an abortable reader gives end of input): what was read is stored, then stop
        if (options.signal?.aborted) interrupted = true;
        if (n === 0) break;
        await file.write(size, chunk.subarray(0, n));
        size += n;
        await report(Math.floor(size / bs));
        options.onProgress?.(size);
        if (n < chunk.length) break;
      }
    } finally {
      await file.close();
    }
    await report(Math.ceil(size / bs));
  } finally {
    await nodeReader?.close();
  }
  return { size, nodeCount: Math.ceil(size / bs), interrupted };
}
