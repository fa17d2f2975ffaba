/**
 * The block store: the dedup engine (spec §4, §5.7, §5.8, §8.6 step 5).
 *
 * `storeBlocks` hashes whole blocks; the zero block becomes address 0 (no I/O); a hash found in the index is
 * referenced ("ghost write"); a new hash gets a next-fit address, an index node, and its data written once, with
 * contiguous new blocks written by one pwrite. Lookup, allocation and insertion run synchronously (no await between
 * them), so concurrent writers in the event loop never race on the index. Until a new block's data is on disk its
 * address sits in the in-flight map, and reads of it wait (spec §8.5 "being-written" list).
 *
 * On-disk write order, as upstream: block data → index (memory, written back on sync) → UFS node.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { bytesEqual } from '../util/bytes.js';
import {
  ADDR_LOST, ADDR_ZERO, BACKING_FREE_RESERVE_BYTES, BACKING_RECHECK_BLOCK_COUNT, BLOCK_FILE_MAGIC, CHECKPOINT_CHANGE_COUNT,
} from '../limits.js';
import type { DdfsConfig } from '../format/config.js';
import { bitmapWordBytes } from '../format/config.js';
import { encodeAddress } from '../format/node.js';
import { CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE, CHECKPOINT_TEMPORARY_FILE } from '../format/layout.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices, isBlockDevicePath } from '../io/device.js';
import { fileSizeOf, filesystemSpaceOf, unallocatedBytesOf } from '../io/free_space.js';
import { createHasher, type BlockHasher } from './hash.js';
import { Bitmap } from './bitmap.js';
import { IndexFile, type CapturedPages } from './index_file.js';
import type { LookupResult } from './node_index.js';
import { Counters } from './stats.js';

const BLOCK_MAGIC = Buffer.from(BLOCK_FILE_MAGIC, 'ascii');

export interface BlockStoreOptions {
  readOnly?: boolean;
  devices?: DeviceFactory;
  /** Writes fail with NO_SPACE when fewer blocks than this are free (daemon: 1000, spec §8.6 step 0). */
  freeBlockReserve?: number;
  /** Skip the block-file magic check (fsck -f). */
  skipBlockMagic?: boolean;
}

/** Resolve a cfg file name: absolute as is, else relative to the parent directory (spec §3.2 keys 22, 23). */
export function resolveVolumePath(parentDir: string, name: string): string {
  return path.isAbsolute(name) ? name : path.join(parentDir, name);
}

export class BlockStore {
  readonly hasher: BlockHasher;
  readonly zeroHash: Buffer;
  readonly nullHash: Buffer;
  readonly counters = new Counters();
  /** Blocks being written: address → promise settled when the data is on disk. */
  private readonly inFlight = new Map<number, Promise<void>>();
  /** In-flight addresses another caller deduplicated against before their data was written. */
  private readonly referencedInFlight = new Set<number>();
  /** Net changes of the used-block count since the last checkpoint (spec §5.8). */
  changesSinceCheckpoint = 0;
  /** When this store's last checkpoint was saved (`checkpoint`), null before the first one (stats.json). */
  lastCheckpointTime: Date | null = null;
  private readonly hashScratch: Buffer;
  /** Set by reclaim: every address allocated or referenced while reclaim runs is marked here (spec §9 step 1). */
  reclaimFound: Bitmap | null = null;
  /** Calls of storeBlocks so far (monotonic, unlike the stats counters): tells a reader that something was written. */
  storeCallCount = 0;
  freeBlockReserve: number;
  /** Bytes of writes answered and not yet stored, over every open file (UfsFile.writeBehind). */
  bytesAhead = 0;
  /** The UFS root, whose filesystem takes a node for every new block (set by the volume; null offline). */
  ufsRootDir: string | null = null;
  /** New blocks allocated by this process: the backing space estimate counts them down between two statfs. */
  private allocationCount = 0;
  private backingEstimate = { blockCountFree: 0, allocationCount: Number.NEGATIVE_INFINITY };

  private constructor(
    readonly parentDir: string,
    readonly cfg: DdfsConfig,
    readonly blockDevice: Device,
    readonly index: IndexFile,
    private readonly readOnly: boolean,
    private readonly devices: DeviceFactory,
    options: BlockStoreOptions,
    hasher: BlockHasher,
  ) {
    this.hasher = hasher;
    this.zeroHash = this.hasher.hash(Buffer.alloc(cfg.blockSize));
    this.nullHash = Buffer.alloc(cfg.hashSize);
    this.hashScratch = Buffer.alloc(cfg.hashSize);
    this.freeBlockReserve = options.freeBlockReserve ?? 0;
  }

  /**
   * Open the block file and the index of a volume whose cfg is already parsed (and so consistent in itself,
   * format/config.ts). The real sizes of both files are checked against the cfg first (`checkBlockFileSize`,
   * `checkIndexFileSize`), before a byte is read with its geometry.
   * @throws DdfsError NOT_FOUND (a file is missing), BAD_CONFIG (a file's size contradicts the cfg), BAD_MAGIC,
   *   TOO_SHORT (naming the file)
   */
  static async open(parentDir: string, cfg: DdfsConfig, options: BlockStoreOptions = {}): Promise<BlockStore> {
    const devices = options.devices ?? fileDevices;
    const readOnly = options.readOnly ?? false;
    const blockPath = resolveVolumePath(parentDir, cfg.blockFilename);
    const indexPath = resolveVolumePath(parentDir, cfg.indexFilename);
    const blockDevice = await openExisting(devices, blockPath, readOnly, 'block file');
    let indexDevice: Device | null = null;
    try {
      checkBlockFileSize(cfg, blockPath, await blockDevice.size(), isBlockDevicePath(blockPath));
      if (!options.skipBlockMagic) {
        const head = Buffer.alloc(BLOCK_MAGIC.length);
        const n = await blockDevice.read(head, 0, head.length, 0);
        if (n < head.length) throw new DdfsError('TOO_SHORT', `${blockPath}: block file too short (no header block)`, { path: blockPath });
        if (!head.equals(BLOCK_MAGIC)) throw new DdfsError('BAD_MAGIC', `${blockPath}: bad block file magic (expected ${BLOCK_FILE_MAGIC})`, { path: blockPath });
      }
      indexDevice = await openExisting(devices, indexPath, readOnly, 'index file');
      checkIndexFileSize(cfg, indexPath, await indexDevice.size(), isBlockDevicePath(indexPath));
      const loading = IndexFile.load(indexDevice, cfg);
      loading.catch(() => undefined); // awaited below; not unhandled while the hash loads
      // the hash (koffi and libgcrypt, ~20 ms of loading) is made while the thread pool reads the node table: the
      // immediate lets the load run up to that read first
      await new Promise((resolve) => setImmediate(resolve));
      let hasher: BlockHasher | null = null;
      let hasherError: unknown = null;
      try {
        hasher = createHasher(cfg.hashName);
      } catch (err) {
        hasherError = err;
      }
      const index = await loading; // the index's errors first, as when the hash was made after it
      if (hasher === null) throw hasherError;
      return new BlockStore(parentDir, cfg, blockDevice, index, readOnly, devices, options, hasher);
    } catch (err) {
      await blockDevice.close().catch(() => undefined);
      await indexDevice?.close().catch(() => undefined);
      throw err;
    }
  }

  get blockCountUsed(): number {
    return this.index.bitmap.countSet;
  }

  get blockCountFree(): number {
    return this.cfg.blockCount - this.index.bitmap.countSet;
  }

  /**
   * New blocks the filesystems under the volume can still take (issue 6 §3): per filesystem (block file, index,
   * checkpoint, UFS tree; the same filesystem counted once), its free bytes less BACKING_FREE_RESERVE_BYTES, less the
   * holes of the sparse index (its write-back fills them), less two checkpoints (the new one is written before the old
   * one goes), divided by what a new block costs there (block_size on the block file's, node_size on the UFS tree's).
   * Infinity when no volume file is on a filesystem (block devices, memory devices). Between two statfs the estimate
   * is counted down by the blocks allocated; `fresh` forces the statfs (the statfs op).
   */
  backingBlockCountFree(fresh = false): number {
    const since = this.allocationCount - this.backingEstimate.allocationCount;
    if (!fresh && since < BACKING_RECHECK_BLOCK_COUNT && this.backingEstimate.blockCountFree - since > 4 * BACKING_RECHECK_BLOCK_COUNT) {
      return this.backingEstimate.blockCountFree - since;
    }
    const { blockSize, nodeSize } = this.cfg;
    const byFilesystem = new Map<number, { freeBytes: number; perBlockBytes: number; reservedBytes: number }>();
    const need = (p: string | null, perBlockBytes: number, reservedBytes: number): void => {
      if (p === null) return;
      const space = filesystemSpaceOf(p);
      if (space === null) return;
      const e = byFilesystem.get(space.deviceId) ?? { freeBytes: space.freeBytes, perBlockBytes: 0, reservedBytes: BACKING_FREE_RESERVE_BYTES };
      e.perBlockBytes += perBlockBytes;
      e.reservedBytes += reservedBytes;
      byFilesystem.set(space.deviceId, e);
    };
    need(this.blockDevice.path, blockSize, 0);
    need(this.index.device.path, 0, unallocatedBytesOf(this.index.device.path));
    need(this.parentDir, 0, 2 * bitmapWordBytes(this.cfg));
    need(this.ufsRootDir, nodeSize, 0);
    let free = Number.POSITIVE_INFINITY;
    for (const e of byFilesystem.values()) {
      const avail = Math.max(0, e.freeBytes - e.reservedBytes);
      // blocks allocated but still being written are not in the statfs yet: they will take their space too
      if (e.perBlockBytes > 0) free = Math.min(free, Math.max(0, Math.floor(avail / e.perBlockBytes) - this.inFlight.size));
      else if (avail === 0) free = 0;
    }
    this.backingEstimate = { blockCountFree: free, allocationCount: this.allocationCount };
    return free;
  }

  /**
   * Free blocks a writer can really fill: the free bits of the bitmap, but no more than the filesystems under the
   * volume can take (fresh statfs) plus the free blocks inside the block file (statfs of the volume, spec §8.3).
   */
  blockCountFreeBacked(): number {
    const free = this.blockCountFree;
    const backing = this.backingBlockCountFree(true);
    if (backing >= free) return free;
    const size = fileSizeOf(this.blockDevice.path);
    const inFile = size === null ? 0 : this.index.bitmap.countClearBelow(Math.floor(size / this.cfg.blockSize));
    return Math.min(free, backing + inFile);
  }

  /**
   * Whether `bytes` more may be answered before they are stored (write-behind): the block store and the filesystems
   * under it can take every block answered so far and not stored yet, plus these. When not, the caller stores first,
   * so an ENOSPC reaches the writer of the data it concerns instead of a later write (issue 6 §3).
   */
  canWriteAhead(bytes: number): boolean {
    const blocks = Math.ceil((this.bytesAhead + bytes) / this.cfg.blockSize);
    if (this.blockCountFree - this.freeBlockReserve < blocks) return false;
    return this.backingBlockCountFree() >= blocks;
  }

  /**
   * Highest address + 1 a new block may get: block_count, or, when the filesystem under the block file cannot take
   * `blockCountNeeded` more blocks, the blocks already in the block file (freed ones are rewritten in place).
   */
  private allocationLimit(blockCountNeeded: number): number {
    if (this.backingBlockCountFree() >= blockCountNeeded) return this.cfg.blockCount;
    const size = fileSizeOf(this.blockDevice.path);
    return size === null ? this.cfg.blockCount : Math.floor(size / this.cfg.blockSize);
  }

  /** True for the zero-block hash and the all-zero (hole) hash (spec §7). */
  isZeroHash(h: Buffer, offset = 0): boolean {
    const hs = this.cfg.hashSize;
    return bytesEqual(h, offset, this.zeroHash, 0, hs) || bytesEqual(h, offset, this.nullHash, 0, hs);
  }

  /**
   * Store `count` whole blocks taken from `data` (count·block_size bytes) and write their nodes (address LE + hash,
   * node_size bytes each) into `nodesOut` from `nodesOffset`.
   *
   * @returns the number of blocks stored; fewer than `count` only when the volume filled up (then `error` is set)
   * @throws DdfsError IO (NO_SPACE when the device said ENOSPC) when a block-file write fails, this call's or that of
   *   a block in flight it deduplicated against: the blocks that were not written are taken out of the index, and
   *   `data.stored` nodes are in `nodesOut`, those of the unwritten blocks with address 1 (lost, spec §7) and listed
   *   by their index in the call in `data.lost`. A caller that had not answered the write yet may ignore the nodes;
   *   one that had must write them (the data is lost, and must read as lost, not as other bytes).
   * @param hashes the blocks' hashes (hashSize bytes each) when the caller computed them from these bytes (a hash
   *   worker, HashWorkers); default: hashed here
   */
  async storeBlocks(data: Buffer, count: number, nodesOut: Buffer, nodesOffset: number, hashes?: Buffer): Promise<{ stored: number; error: DdfsError | null }> {
    this.storeCallCount++;
    const { blockSize: bs, nodeSize: ns, addrSize: as, hashSize: hs } = this.cfg;
    const index = this.index.nodes;
    const bitmap = this.index.bitmap;
    const newAddresses: number[] = [];
    const newBlockIndexes: number[] = [];
    /** Blocks deduplicated against a block still being written: [index in the call, that write]. */
    const dependencies: Array<[number, Promise<void>]> = [];
    let stored = 0;
    let error: DdfsError | null = null;
    let addressLimit = -1;
    const t0 = performance.now();
    for (let k = 0; k < count; k++) {
      const block = data.subarray(k * bs, (k + 1) * bs);
      const nodeOff = nodesOffset + k * ns;
      if (hashes) hashes.copy(nodesOut, nodeOff + as, k * hs, (k + 1) * hs);
      else this.hasher.hashInto(block, nodesOut, nodeOff + as);
      this.counters.add('hash');
      if (bytesEqual(nodesOut, nodeOff + as, this.zeroHash, 0, hs)) {
        encodeAddress(nodesOut, nodeOff, as, ADDR_ZERO);
        stored++;
        continue;
      }
      let found: LookupResult;
      try {
        found = index.lookup(nodesOut, nodeOff + as);
      } catch (err) {
        // index exhausted: stop here so the new blocks of this call so far still get their data written
        error = err instanceof DdfsError ? err : new DdfsError('NO_SPACE', String(err));
        break;
      }
      if (found.found) {
        encodeAddress(nodesOut, nodeOff, as, found.address);
        const writing = this.inFlight.get(found.address);
        if (writing) {
          this.referencedInFlight.add(found.address);
          dependencies.push([k, writing]);
        }
        this.counters.add('ghost_write');
        this.reclaimFound?.set(found.address);
        stored++;
        continue;
      }
      if (this.readOnly) { error = new DdfsError('ACCESS', 'volume is open read-only'); break; }
      if (this.blockCountFree < this.freeBlockReserve) {
        error = new DdfsError('NO_SPACE', 'no space left in the block file');
        break;
      }
      if (addressLimit < 0) addressLimit = this.allocationLimit(count - k);
      const address = addressLimit >= this.cfg.blockCount ? bitmap.allocate() : bitmap.allocateBelow(addressLimit);
      if (address < 0) {
        error = addressLimit >= this.cfg.blockCount
          ? new DdfsError('NO_SPACE', 'no free block')
          : new DdfsError('NO_SPACE', `${this.blockDevice.path}: the filesystem holding the volume is full`, { path: this.blockDevice.path });
        break;
      }
      this.allocationCount++;
      try {
        index.insertAt(found.slot, address, nodesOut, nodeOff + as);
      } catch (err) {
        bitmap.clear(address);
        error = err instanceof DdfsError ? err : new DdfsError('NO_SPACE', String(err));
        break;
      }
      this.changesSinceCheckpoint++;
      this.reclaimFound?.set(address);
      encodeAddress(nodesOut, nodeOff, as, address);
      newAddresses.push(address);
      newBlockIndexes.push(k);
      stored++;
    }
    this.counters.add('calc_hash', Math.round((performance.now() - t0) * 1000));
    const lost: number[] = [];
    let writeError: unknown = null;
    if (newAddresses.length > 0) {
      try {
        await this.writeNewBlocks(data, newAddresses, newBlockIndexes);
      } catch (err) {
        const failed = (err as DdfsError).data?.failed as Set<number> | undefined;
        this.forgetUnwritten(newAddresses, newBlockIndexes, nodesOut, nodesOffset, failed);
        for (let i = 0; i < newAddresses.length; i++) {
          if (failed && !failed.has(newAddresses[i]!)) continue;
          encodeAddress(nodesOut, nodesOffset + newBlockIndexes[i]! * ns, as, ADDR_LOST);
          lost.push(newBlockIndexes[i]!);
        }
        writeError = err;
      }
    }
    for (const [k, writing] of dependencies) {
      const written = await writing.then(() => true, (err: unknown) => {
        writeError ??= err;
        return false;
      });
      if (written) continue;
      encodeAddress(nodesOut, nodesOffset + k * ns, as, ADDR_LOST);
      lost.push(k);
    }
    if (lost.length > 0) {
      const cause = writeError instanceof DdfsError ? writeError.cause ?? writeError : writeError;
      const code = writeError instanceof DdfsError ? writeError.code : (cause as NodeJS.ErrnoException)?.code === 'ENOSPC' ? 'NO_SPACE' : 'IO';
      const message = writeError instanceof DdfsError ? writeError.message : `${this.blockDevice.path}: block write failed: ${(cause as Error)?.message ?? String(cause)}`;
      throw new DdfsError(code, message, { ...(writeError instanceof DdfsError ? writeError.data : {}), stored, lost: lost.sort((x, y) => x - y) }, cause);
    }
    if (writeError !== null) throw writeError;
    return { stored, error };
  }

  /**
   * After a failed block write: take the index nodes of the blocks whose data was not written out of the index, so
   * nothing dedups against a block that is not there; free their addresses unless another writer already
   * referenced one while it was in flight (that address then stays allocated without a node: a leak fsck frees).
   */
  private forgetUnwritten(addresses: number[], blockIndexes: number[], nodes: Buffer, nodesOffset: number, failed: Set<number> | undefined): void {
    const { nodeSize: ns, addrSize: as } = this.cfg;
    const index = this.index.nodes;
    for (let i = 0; i < addresses.length; i++) {
      const a = addresses[i]!;
      if (failed && !failed.has(a)) continue;
      const hashOffset = nodesOffset + blockIndexes[i]! * ns + as;
      try {
        const r = index.lookup(nodes, hashOffset);
        if (r.found && r.address === a) index.delete(r.slot);
      } catch {
        // probe ran off the table: the node is not there
      }
      if (!this.referencedInFlight.has(a)) {
        this.index.bitmap.clear(a);
        this.changesSinceCheckpoint--;
      }
      this.referencedInFlight.delete(a);
    }
  }

  /** Write new blocks, one pwrite per run of consecutive addresses taken from consecutive source blocks. */
  private async writeNewBlocks(data: Buffer, addresses: number[], blockIndexes: number[]): Promise<void> {
    const bs = this.cfg.blockSize;
    const writes: Promise<void>[] = [];
    let i = 0;
    while (i < addresses.length) {
      let j = i + 1;
      while (j < addresses.length && addresses[j] === addresses[j - 1]! + 1 && blockIndexes[j] === blockIndexes[j - 1]! + 1) j++;
      const first = addresses[i]!;
      const count = j - i;
      const buf = data.subarray(blockIndexes[i]! * bs, (blockIndexes[j - 1]! + 1) * bs);
      const p = this.blockDevice.write(buf, first * bs);
      for (let a = first; a < first + count; a++) this.inFlight.set(a, p);
      this.counters.add('block_write', count);
      writes.push(p.finally(() => {
        for (let a = first; a < first + count; a++) {
          if (this.inFlight.get(a) === p) this.inFlight.delete(a);
        }
      }).then(() => {
        for (let a = first; a < first + count; a++) this.referencedInFlight.delete(a);
      }, (err: unknown) => {
        throw Object.assign(new Error((err as Error)?.message ?? String(err)), { cause: err, first, count });
      }));
      i = j;
    }
    const results = await Promise.allSettled(writes);
    const failed = new Set<number>();
    let firstError: unknown = null;
    for (const r of results) {
      if (r.status === 'fulfilled') continue;
      const e = r.reason as { first: number; count: number; cause: unknown };
      for (let a = e.first; a < e.first + e.count; a++) failed.add(a);
      firstError ??= e.cause;
    }
    if (firstError !== null) {
      const errno = (firstError as NodeJS.ErrnoException).code === 'ENOSPC' ? 'NO_SPACE' : 'IO';
      throw new DdfsError(errno, `${this.blockDevice.path}: block write failed: ${(firstError as Error).message}`, { failed }, firstError);
    }
  }

  /**
   * Write `data` (block_size bytes whose hash the index maps to `address`) over the block at `address`: the repair
   * of a block found damaged (its bytes no longer hash to its hash). The index and bitmap are unchanged; durable at
   * the next sync().
   * @throws DdfsError INVALID for address 0, 1 or ≥ block_count, or data of another size; IO when the write fails
   */
  async rewriteBlock(address: number, data: Buffer): Promise<void> {
    const bs = this.cfg.blockSize;
    if (address < 2 || address >= this.cfg.blockCount || data.length !== bs) {
      throw new DdfsError('INVALID', `${this.blockDevice.path}: cannot rewrite block ${address} with ${data.length} bytes`, { address });
    }
    const p = this.inFlight.get(address);
    if (p) await p.catch(() => undefined);
    try {
      await this.blockDevice.write(data, address * bs);
    } catch (err) {
      throw new DdfsError('IO', `${this.blockDevice.path}: block write failed: ${(err as Error).message}`, { address }, err);
    }
    this.counters.add('block_write', 1);
  }

  /**
   * Read the block at `address` into `out` at `outOffset` (block_size bytes). Addresses 0 and 1 read as zeros.
   * @throws DdfsError CORRUPT for an address ≥ block_count or a short read (spec §8.5)
   */
  async readBlock(address: number, out: Buffer, outOffset: number): Promise<void> {
    await this.readBlocks(address, 1, out, outOffset);
  }

  /** Read `count` consecutive blocks from `address` (none of them 0 or 1) with one pread. */
  async readBlocks(address: number, count: number, out: Buffer, outOffset: number): Promise<void> {
    const bs = this.cfg.blockSize;
    if (address === ADDR_ZERO || address === ADDR_LOST) {
      out.fill(0, outOffset, outOffset + count * bs);
      this.counters.add('block_read_zero', count);
      return;
    }
    if (address + count > this.cfg.blockCount) {
      throw new DdfsError('CORRUPT', `block address ${address + count - 1} beyond block_count ${this.cfg.blockCount}`, { address });
    }
    for (let a = address; a < address + count; a++) {
      const p = this.inFlight.get(a);
      if (p) await p.catch(() => undefined);
    }
    const n = await this.blockDevice.read(out, outOffset, count * bs, address * bs);
    this.counters.add('block_read', count);
    if (n !== count * bs) {
      throw new DdfsError('CORRUPT', `${this.blockDevice.path}: cannot read block ${address + Math.floor(n / bs)} (beyond end of block file)`, { address });
    }
  }

  /** Wait until every in-flight block write has settled. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...new Set(this.inFlight.values())]);
  }

  /**
   * Make block data and index durable (spec §8.7): the index pages and the bitmap are captured at a moment when no
   * block write is in flight, the block file is synced, and only then are the captured pages written and the index
   * synced. So the index on disk never names a block whose data is not on disk, even while other writers go on
   * (their newer pages stay dirty for the next sync). Syncs and checkpoints run one at a time.
   * @returns the bitmap words as captured (what a checkpoint saves)
   * @throws Node errors of the block or index device
   */
  sync(): Promise<Buffer> {
    const run = this.durability.then(() => this.syncNow());
    this.durability = run.then(() => undefined, () => undefined);
    return run;
  }

  private durability: Promise<void> = Promise.resolve();

  private async syncNow(): Promise<Buffer> {
    let pages: CapturedPages;
    let words: Buffer;
    for (;;) {
      await this.drain();
      // no await between this check and the capture: no block can start being written in between
      if (this.inFlight.size === 0) {
        pages = this.readOnly ? [] : this.index.capture();
        words = Buffer.from(this.index.bitmap.bytes.subarray(0, bitmapWordBytes(this.cfg)));
        break;
      }
    }
    if (this.readOnly) return words;
    try {
      await this.blockDevice.sync();
    } catch (err) {
      this.index.markDirtyAgain(pages);
      throw err;
    }
    await this.index.writeCaptured(pages);
    await this.index.device.sync();
    return words;
  }

  /** Path of the checkpoint file (spec §5.8). */
  get checkpointPath(): string {
    return path.join(this.parentDir, CHECKPOINT_FILE);
  }

  /**
   * Save a checkpoint (spec §5.8): sync (block file, then the index captured with the bitmap), then replace
   * `ddfsusedblocks` by the captured bitmap words through the device seam: write them to a new temporary file
   * (`ddfsusedblocks.tmp`, created O_EXCL|O_NOFOLLOW, so a symlink planted there is never followed), fsync it,
   * rename it over `ddfsusedblocks`, fsync the parent directory. A crash at any point leaves the old checkpoint or
   * the new one, each whole; once this resolves, the new one survives a crash. A stale `ddfsusedblocks.0` (the
   * temporary of ddumbfs 1.1) is removed afterwards: `ddfsusedblocks` is loaded first. Afterwards "allocated in the
   * checkpoint" means "data and index node are on disk". Concurrent calls run one after the other.
   * @throws Node errors of the devices (the old checkpoint stays then)
   */
  checkpoint(): Promise<void> {
    const run = this.checkpointChain.then(() => this.checkpointNow());
    this.checkpointChain = run.then(() => undefined, () => undefined);
    return run;
  }

  private checkpointChain: Promise<void> = Promise.resolve();

  private async checkpointNow(): Promise<void> {
    if (this.readOnly) return;
    const changes = this.changesSinceCheckpoint;
    const words = await this.sync();
    const tmp = path.join(this.parentDir, CHECKPOINT_TEMPORARY_FILE);
    await removeIfPresent(this.devices, tmp); // left by a crash: never loaded, so never needed
    const dev = await this.devices.open(tmp, { create: true, exclusive: true, noFollow: true, mode: 0o600 });
    try {
      await dev.write(words, 0);
      await dev.sync();
    } finally {
      await dev.close();
    }
    await this.devices.rename(tmp, this.checkpointPath);
    await this.devices.syncDirectory(this.parentDir);
    await removeIfPresent(this.devices, path.join(this.parentDir, CHECKPOINT_NEXT_FILE));
    this.changesSinceCheckpoint -= changes;
    this.lastCheckpointTime = new Date();
  }

  /** True when enough blocks changed for a checkpoint (spec §5.8: every 16000 net changes). */
  get checkpointDue(): boolean {
    return this.changesSinceCheckpoint >= CHECKPOINT_CHANGE_COUNT;
  }

  async close(): Promise<void> {
    try {
      await this.sync();
    } finally {
      await this.blockDevice.close().catch(() => undefined);
      await this.index.device.close().catch(() => undefined);
    }
  }
}


/** Remove `p` through the device seam; a missing `p` is fine. */
async function removeIfPresent(devices: DeviceFactory, p: string): Promise<void> {
  try {
    await devices.remove(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function badSize(source: string, key: string, message: string): DdfsError {
  return new DdfsError('BAD_CONFIG', `${source}: ${message}: key '${key}' of ddfs.cfg does not describe it`, { path: source, key });
}

/**
 * Cross-check the block file's real size with the cfg (spec §4): a regular block file starts with 2 blocks and grows
 * as blocks are written at address · block_size, so it never holds more than block_count blocks; a block device has
 * a fixed size that must hold them all. (A regular file shorter than block_count blocks is normal; one cut short of
 * the blocks in use is what fsck reports as lost blocks.)
 * @param sizeBytes the file's size, or the device's
 * @throws DdfsError BAD_CONFIG naming the file and the key `block_count`
 */
export function checkBlockFileSize(cfg: DdfsConfig, blockPath: string, sizeBytes: number, isBlockDevice: boolean): void {
  const capacity = cfg.blockCount * cfg.blockSize;
  if (!isBlockDevice && sizeBytes > capacity) {
    throw badSize(blockPath, 'block_count', `block file is ${sizeBytes} bytes, more than block_count × block_size = ` +
      `${cfg.blockCount} × ${cfg.blockSize} = ${capacity}`);
  }
  if (isBlockDevice && sizeBytes < capacity) {
    throw badSize(blockPath, 'block_count', `block device holds ${sizeBytes} bytes, fewer than block_count × block_size = ` +
      `${cfg.blockCount} × ${cfg.blockSize} = ${capacity}`);
  }
}

/**
 * Cross-check the index file's real size with the cfg (spec §5.1): mkddumbfs makes a regular index file exactly
 * index_size bytes and nothing extends it, so a longer one was laid out by another geometry; a block device must be at
 * least index_size. A shorter regular file is not a geometry lie: IndexFile.load refuses it (TOO_SHORT) and a rebuild
 * extends it.
 * @throws DdfsError BAD_CONFIG naming the file and the key `index_size`
 */
export function checkIndexFileSize(cfg: DdfsConfig, indexPath: string, sizeBytes: number, isBlockDevice: boolean): void {
  if (!isBlockDevice && sizeBytes > cfg.indexSize) {
    throw badSize(indexPath, 'index_size', `index file is ${sizeBytes} bytes, more than index_size ${cfg.indexSize}`);
  }
  if (isBlockDevice && sizeBytes < cfg.indexSize) {
    throw badSize(indexPath, 'index_size', `index device holds ${sizeBytes} bytes, fewer than index_size ${cfg.indexSize}`);
  }
}

/**
 * Check, before a tool writes anything, that the real block and index files agree with the cfg's geometry
 * (`checkBlockFileSize`, `checkIndexFileSize`): each file is opened read-only, measured and closed. A missing file,
 * a short index or a bad magic is not checked here: `BlockStore.open` refuses those, and a rebuild repairs the index.
 * @throws DdfsError BAD_CONFIG; IO when a file exists but cannot be opened
 */
export async function checkVolumeFileSizes(parentDir: string, cfg: DdfsConfig, devices: DeviceFactory = fileDevices): Promise<void> {
  const files: Array<[string, 'block file' | 'index file', typeof checkBlockFileSize]> = [
    [resolveVolumePath(parentDir, cfg.blockFilename), 'block file', checkBlockFileSize],
    [resolveVolumePath(parentDir, cfg.indexFilename), 'index file', checkIndexFileSize],
  ];
  for (const [p, what, check] of files) {
    let dev: Device;
    try {
      dev = await openExisting(devices, p, true, what);
    } catch (err) {
      if (err instanceof DdfsError && err.code === 'NOT_FOUND') continue;
      throw err;
    }
    try {
      check(cfg, p, await dev.size(), isBlockDevicePath(p));
    } finally {
      await dev.close();
    }
  }
}

async function openExisting(devices: DeviceFactory, p: string, readOnly: boolean, what: string): Promise<Device> {
  try {
    return await devices.open(p, { readOnly });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DdfsError('NOT_FOUND', `${p}: ${what} not found`, { path: p }, err);
    throw new DdfsError('IO', `${p}: cannot open ${what}: ${(err as Error).message}`, { path: p }, err);
  }
}
