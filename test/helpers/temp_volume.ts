/**
 * Temporary volumes for tests.
 *
 * - `makeTempVolume(opts)`: mkddumbfs (createVolume) into a fresh mkdtemp directory; returns the parent and a
 *   `cleanup` that removes the whole directory (idempotent).
 * - `openTempVolume(parent, options)`: `Volume.open` on such a parent. Close the Volume before `cleanup`.
 * - `withTempVolume(opts, fn)`: make + open + run + close + cleanup, even when `fn` throws.
 * - `makeMemoryVolume(opts)`: the same block and index files in a `MemoryDeviceFactory` (no disk I/O), opened as a
 *   `BlockStore` with those devices; UFS files opened with the same factory live in memory too, and
 *   `BlockStore.checkpoint` writes `ddfsusedblocks` there (its rotation goes through the device seam).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deriveConfig, renderConfig, type DdfsConfig, type HashName } from '../../src/format/config.js';
import { BLOCK_FILE_MAGIC } from '../../src/limits.js';
import { MemoryDeviceFactory } from '../../src/io/memory_device.js';
import { BlockStore, type BlockStoreOptions } from '../../src/store/block_store.js';
import { encodeIndexHeader } from '../../src/store/index_file.js';
import { parseSize } from '../../src/util/size.js';
import { createVolume } from '../../src/volume/create.js';
import { Volume, type VolumeOpenOptions } from '../../src/volume/volume.js';

export interface TempVolumeOptions {
  /** Block size in bytes, or a size text such as "4k". */
  blockSize: number | string;
  /** Block-file size (mkddumbfs -s) in bytes, or a size text such as "1M". */
  size: number | string;
  hash?: HashName;
  overflow?: number;
  reuseAsap?: boolean;
}

export interface TempVolume {
  /** Absolute parent directory of the volume. */
  parent: string;
  /** The cfg mkddumbfs wrote. */
  config: DdfsConfig;
  /** Remove the temporary directory (idempotent). */
  cleanup: () => Promise<void>;
}

function bytesOf(v: number | string): number {
  return typeof v === 'number' ? v : parseSize(v);
}

/** Create a volume in a new temporary directory. */
export async function makeTempVolume(opts: TempVolumeOptions): Promise<TempVolume> {
  const parent = await mkdtemp(join(tmpdir(), 'ddfs-test-'));
  try {
    const config = await createVolume(parent, {
      partitionSize: bytesOf(opts.size),
      blockSize: bytesOf(opts.blockSize),
      hashName: opts.hash ?? 'TIGER',
      nodeOverflow: opts.overflow ?? 1.3,
      reuseAsap: opts.reuseAsap ?? false,
    });
    let done = false;
    return {
      parent,
      config,
      cleanup: async () => {
        if (done) return;
        done = true;
        await rm(parent, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(parent, { recursive: true, force: true });
    throw err;
  }
}

/** Open the volume of a parent made by makeTempVolume. */
export function openTempVolume(parent: string, options: VolumeOpenOptions = {}): Promise<Volume> {
  return Volume.open(parent, options);
}

/** Make, open, run `fn`, then close and remove the volume whatever happens. */
export async function withTempVolume<T>(
  opts: TempVolumeOptions,
  fn: (volume: Volume, tv: TempVolume) => Promise<T>,
  options: VolumeOpenOptions = {},
): Promise<T> {
  const tv = await makeTempVolume(opts);
  try {
    const volume = await openTempVolume(tv.parent, options);
    try {
      return await fn(volume, tv);
    } finally {
      await volume.close().catch(() => undefined);
    }
  } finally {
    await tv.cleanup();
  }
}

export interface MemoryVolume {
  devices: MemoryDeviceFactory;
  config: DdfsConfig;
  store: BlockStore;
  /** Parent "directory" used as the key prefix of the files in `devices`. */
  parent: string;
}

/**
 * A fresh volume's block and index files in memory (same bytes createVolume writes), opened as a BlockStore.
 */
export async function makeMemoryVolume(opts: TempVolumeOptions, storeOptions: Omit<BlockStoreOptions, 'devices'> = {}): Promise<MemoryVolume> {
  const config = deriveConfig({
    partitionSize: bytesOf(opts.size),
    blockSize: bytesOf(opts.blockSize),
    hashName: opts.hash ?? 'TIGER',
    nodeOverflow: opts.overflow ?? 1.3,
    reuseAsap: opts.reuseAsap ?? false,
  });
  const devices = new MemoryDeviceFactory();
  const parent = '/mem';
  const blocks = Buffer.alloc(2 * config.blockSize);
  blocks.write(BLOCK_FILE_MAGIC, 0, 'latin1');
  devices.writeFile(`${parent}/${config.blockFilename}`, blocks);
  const index = Buffer.alloc(config.indexSize);
  encodeIndexHeader().copy(index, 0);
  index[config.freeblockOffset] = 0xc0;
  devices.writeFile(`${parent}/${config.indexFilename}`, index);
  devices.writeFile(`${parent}/ddfs.cfg`, Buffer.from(renderConfig(config)));
  const store = await BlockStore.open(parent, config, { ...storeOptions, devices });
  return { devices, config, store, parent };
}

/**
 * '' when `a` and `b` hold the same bytes, else a short description of the first difference. Use as
 * `expect(bytesDiff(a, b)).toBe('')`: much faster than toEqual on large Buffers, and the message stays short.
 */
export function bytesDiff(a: Uint8Array, b: Uint8Array): string {
  const x = Buffer.from(a.buffer, a.byteOffset, a.length);
  const y = Buffer.from(b.buffer, b.byteOffset, b.length);
  if (x.equals(y)) return '';
  const n = Math.min(x.length, y.length);
  let i = 0;
  while (i < n && x[i] === y[i]) i++;
  const around = (z: Buffer): string => z.subarray(Math.max(0, i - 4), i + 12).toString('hex');
  return `lengths ${x.length}/${y.length}, first difference at byte ${i}: ${around(x)} vs ${around(y)}`;
}
