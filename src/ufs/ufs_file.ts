/**
 * An open regular file of the volume: its UFS file (header + node list, spec §7) and the dedup read/write paths
 * (spec §8.5, §8.6). One UfsFile per inode is shared by every handle of that inode, so handles see each other's
 * buffered data (spec §8.4).
 *
 * State and invariants:
 * - `cache` (node_cache.ts) is the node list as this process sees it, never held whole in memory: a bounded set of
 *   node pages read on demand from the UFS file, plus the nodes held back or not written. It is write-through: a node
 *   is written to the UFS file as soon as its block is stored, after the block data, keeping upstream's order block
 *   data → index → UFS node. Holes are all-zero nodes, as 1.1's ftruncate leaves them (spec §7): a terabyte sparse
 *   file is a sparse UFS file on the host and a few pages in memory (issue 9).
 * - The size never exceeds `sizeMax` (UFS_FILE_NODE_COUNT_MAX blocks): a truncate or write beyond it is refused
 *   with FILE_TOO_BIG (EFBIG) before anything changes.
 * - At most one partial block is buffered (`buffer`); its content is the full logical block with zeros past EOF.
 * - Bytes past EOF in the last block are always stored as zeros (upstream may store stale bytes there, spec §17.9),
 *   so identical files always produce identical nodes and dedup completely.
 * - The header is rewritten whenever the size changes (Changelog 1.0b6: "more crash safe").
 * - `nodesOnDisk` = whole nodes present in the UFS file; a block below ceil(size/bs) that is neither buffered nor on
 *   disk is a missing node and reads fail with EIO (spec §8.5).
 * - An acknowledged write is stored or marked lost, never dropped: the writer was told it is done (write-behind, or a
 *   partial block left in the buffer), so a block that could not be stored gets an address-1 node (lost, spec §7)
 *   with the hash of the bytes it should hold; reads of it fail with EIO, fsck reports it, and `onBlocksLost` lets the
 *   volume list the file in corrupted.txt. While space is short nothing is answered ahead of storing.
 * - Times set by utimens are the last word (`pinTimes`): every later write of the UFS file that is not a new write
 *   of the user (held nodes, a buffered block, the header at close) is followed by setting them again.
 * All operations run under a readers–writer lock: reads share, everything else is exclusive.
 */
import { DdfsError } from '../errors.js';
import {
  ADDR_LOST, ADDR_ZERO, HELD_NODE_COUNT_MAX, UFS_FILE_NODE_COUNT_MAX, UFS_HEADER_SIZE, UFS_NODE_CHUNK_COUNT,
  UFS_NODE_PAGE_COUNT_RESIDENT_MAX, UFS_NODE_PAGE_NODE_COUNT,
} from '../limits.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import type { Bitmap } from '../store/bitmap.js';
import type { BlockStore } from '../store/block_store.js';
import { dirnameBytes, pathText } from '../util/path_text.js';
import { RwLock } from '../util/rwlock.js';
import { NodeCache } from './node_cache.js';
import { peekUfsSize, readUfsHeader } from './ufs_reader.js';

export interface UfsOpenOptions {
  create?: boolean;
  truncate?: boolean;
  mode?: number;
  readOnly?: boolean;
  devices?: DeviceFactory;
  /** Nodes per page of the node cache (default UFS_NODE_PAGE_NODE_COUNT; tests use tiny pages). */
  nodePageNodeCount?: number;
  /** Node pages kept in memory at most (default UFS_NODE_PAGE_COUNT_RESIDENT_MAX). */
  nodePageCountResidentMax?: number;
}

interface BlockBuffer {
  index: number;
  data: Buffer;
  dirty: boolean;
}

/**
 * Sets the times utimens asked for again, on `handlePath` (a path naming the open UFS file itself, or its UFS path
 * when the device has none; a Buffer for a byte path).
 */
export type TimesReapply = (handlePath: string | Buffer) => void;

/** How a write reaches the store: `answered` = the writer was already told it is done (write-behind). */
type WriteMode = 'plain' | 'answered' | 'storeNow';

export class UfsFile {
  private sizeBytes: number;
  private readonly cache: NodeCache;
  private buffer: BlockBuffer | null = null;
  private readonly lock = new RwLock();
  private readonly bs: number;
  private readonly ns: number;
  private closed = false;
  /** Size the header on disk says; -1 while the UFS file has no header (a 0-byte file). */
  private headerSizeOnDisk: number;
  /** Called after an overwrite or shrink: reclaim may find free blocks (spec §8.6 step 1). */
  onBlocksReleased: (() => void) | null = null;
  /** Called once when the file is closed. */
  onClosed: (() => void) | null = null;
  /**
   * Called by every fsync after the UFS file is synced: makes the file's name as durable as its content (POSIX: fsync
   * of a file does not commit its directory entry), when it may not be yet. By default, for a file opened with
   * `create` (this open or an earlier one may have made it), it syncs the file's directory at the first fsync only.
   * The volume replaces it with its record of the entries made in this session (volume.ts `syncNewEntry`), which
   * outlives this UfsFile: a file created, closed and opened again still gets its directory synced once.
   */
  /**
   * Called when acknowledged blocks could not be stored and were marked lost (address 1): `blocks` are their
   * indexes, `handlePath` names the open UFS file (see TimesReapply), `cause` the storing error.
   */
  onBlocksLost: ((blocks: number[], handlePath: string | Buffer, cause: unknown) => void) | null = null;
  /** Times set by utimens, set again after later writes of the UFS file (see pinTimes); null when none. */
  private pinnedTimes: TimesReapply | null = null;
  /** The UFS file was written since the times were pinned. */
  private writtenSincePin = false;
  syncEntry: (() => Promise<void>) | null = null;

  private constructor(
    readonly ufsPath: string | Buffer,
    private readonly device: Device,
    private readonly store: BlockStore,
    size: number,
    nodesOnDisk: number,
    hasHeader: boolean,
    options: UfsOpenOptions,
  ) {
    this.headerSizeOnDisk = hasHeader ? size : -1;
    this.sizeBytes = size;
    this.bs = store.cfg.blockSize;
    this.ns = store.cfg.nodeSize;
    this.cache = new NodeCache(device, nodesOnDisk, {
      nodeSize: this.ns,
      addrSize: store.cfg.addrSize,
      pageNodeCount: options.nodePageNodeCount ?? UFS_NODE_PAGE_NODE_COUNT,
      pageCountResidentMax: options.nodePageCountResidentMax ?? UFS_NODE_PAGE_COUNT_RESIDENT_MAX,
    });
    this.sizeMax = Math.min(UFS_FILE_NODE_COUNT_MAX * this.bs, Number.MAX_SAFE_INTEGER);
  }

  /** The largest size this file may have on this volume, in bytes (UFS_FILE_NODE_COUNT_MAX blocks). */
  readonly sizeMax: number;

  /** Bytes of node state held in memory (node pages and held nodes): bounded whatever the file's size. */
  get nodeCacheSizeBytes(): number {
    return this.cache.sizeBytes;
  }

  /** Node pages held in memory (at most nodePageCountResidentMax). */
  get nodeCachePageCount(): number {
    return this.cache.pageCount;
  }

  /** Whole nodes in the UFS file. */
  private get nodesOnDisk(): number {
    return this.cache.nodeCountOnDisk;
  }

  /** @throws DdfsError FILE_TOO_BIG when `sizeBytes` is beyond sizeMax */
  private assertSizeAddressable(sizeBytes: number): void {
    if (sizeBytes <= this.sizeMax) return;
    throw new DdfsError(
      'FILE_TOO_BIG',
      `${pathText(this.ufsPath)}: size ${sizeBytes} is beyond the largest file this volume can address (${this.sizeMax} bytes, ${UFS_FILE_NODE_COUNT_MAX} blocks of ${this.bs})`,
      { path: this.ufsPath, size: sizeBytes, sizeMax: this.sizeMax },
    );
  }

  /**
   * Open (or create) the UFS file at `ufsPath`.
   * A created or truncated file gets its 16-byte header at once, so it is valid after a crash (spec §8.4).
   * @param ufsPath a Buffer for a byte path of the UFS tree
   * @throws DdfsError BAD_HEADER for a header that is not valid (spec §7); Node errors (ENOENT, EACCES…) unchanged
   */
  static async open(store: BlockStore, ufsPath: string | Buffer, options: UfsOpenOptions = {}): Promise<UfsFile> {
    const devices = options.devices ?? fileDevices;
    const device = await devices.open(ufsPath, {
      readOnly: options.readOnly, create: options.create, truncate: options.truncate, mode: options.mode,
    });
    try {
      const header = await readUfsHeader(device, ufsPath);
      const length = header.length;
      const ns = store.cfg.nodeSize;
      if (header.state === 'empty') {
        const writeHeader = !options.readOnly && (options.create === true || options.truncate === true);
        if (writeHeader) await device.write(encodeUfsHeader(0), 0);
        return UfsFile.withEntry(new UfsFile(ufsPath, device, store, 0, 0, writeHeader, options), options, devices);
      }
      if (header.error) throw header.error;
      const size = header.size;
      store.counters.add('header_load');
      // nothing of the node list is read now: the cache reads its pages when they are needed
      const onDisk = Math.floor((length - UFS_HEADER_SIZE) / ns);
      return UfsFile.withEntry(new UfsFile(ufsPath, device, store, size, onDisk, true, options), options, devices);
    } catch (err) {
      await device.close().catch(() => undefined);
      throw err;
    }
  }

  /** An open with `create` may have made the file, now or in an earlier open: its first fsync syncs the directory. */
  private static withEntry(file: UfsFile, options: UfsOpenOptions, devices: DeviceFactory): UfsFile {
    if (options.create && !options.readOnly) {
      let synced = false;
      file.syncEntry = async () => {
        if (synced) return;
        await devices.syncDirectory(dirnameBytes(file.ufsPath));
        synced = true;
      };
    }
    return file;
  }

  /** Logical size in bytes. */
  get size(): number {
    return this.pendingOps > 0 ? this.logicalSize : this.sizeBytes;
  }

  /** Mutations accepted (write-behind) or queued (truncate) but not yet applied. */
  private pendingOps = 0;
  private pendingBytes = 0;
  /** The size callers see while mutations are pending: the size they will leave. */
  private logicalSize = 0;
  private readonly pendingDone = new Set<Promise<void>>();
  /** The first error of a write-behind: reported by the next write, flush, fsync or close (spec §8.6 step 6). */
  private deferredError: unknown = null;

  private beginPending(sizeAfter: number): void {
    this.logicalSize = sizeAfter;
    this.pendingOps++;
  }

  private endPending(): void {
    this.pendingOps--;
  }

  /** Throw (once) the error of an earlier write-behind. */
  private throwDeferred(): void {
    const err = this.deferredError;
    if (err !== null) {
      this.deferredError = null;
      throw err;
    }
  }

  /**
   * Accept a write and apply it in the background, in call order with every other operation on this file (the
   * daemon's writer pool, spec §8.6 step 6): the caller's next request arrives while this one is hashed and stored.
   * `data` is copied. At most `pendingBytesMax` bytes wait at once; beyond that the call waits.
   * Reads, truncates, flush, fsync and close queue behind the accepted writes; `size` includes them at once.
   * When the block store or a filesystem under it could not take every block answered so far plus these
   * (BlockStore.canWriteAhead), the write is stored before the call returns, with its partial block: its error then
   * reaches this caller. An accepted write that fails later is marked lost (see the file comment).
   * @throws the deferred error of an earlier write-behind (then this write is not accepted); when stored at once,
   *   what `write` throws; DdfsError FILE_TOO_BIG when it would end past sizeMax (nothing is accepted)
   */
  async writeBehind(offset: number, data: Buffer, pendingBytesMax: number): Promise<void> {
    this.assertSizeAddressable(offset + data.length);
    this.throwDeferred();
    while (this.pendingBytes > 0 && this.pendingBytes + data.length > pendingBytesMax) {
      await Promise.race(this.pendingDone);
    }
    this.throwDeferred();
    this.assertOpen();
    if (!this.store.canWriteAhead(data.length)) {
      await this.lock.write(() => this.writeLocked(offset, data, 'storeNow'));
      this.throwDeferred();
      return;
    }
    const copy = Buffer.from(data);
    this.beginPending(Math.max(this.size, offset + copy.length));
    this.pendingBytes += copy.length;
    this.store.bytesAhead += copy.length;
    // The lock position is taken now (call order), but the work starts on a later turn of the event loop, after the
    // caller has answered: otherwise hashing would run in the microtasks before the answer and nothing would overlap.
    const done: Promise<void> = this.lock
      .write(async () => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        await this.writeLocked(offset, copy, 'answered');
      })
      .catch((err: unknown) => {
        this.deferredError ??= err;
      })
      .finally(() => {
        this.pendingBytes -= copy.length;
        this.store.bytesAhead -= copy.length;
        this.pendingDone.delete(done);
        this.endPending();
      });
    this.pendingDone.add(done);
  }

  /** Write to the UFS file (every write of it goes through here: see pinTimes). */
  private writeUfs(buf: Buffer, position: number): Promise<void> {
    this.writtenSincePin = true;
    return this.device.write(buf, position);
  }

  private truncateUfs(size: number): Promise<void> {
    this.writtenSincePin = true;
    return this.device.truncate(size);
  }

  /** A path naming the open UFS file. */
  private get handlePath(): string | Buffer {
    return this.device.handlePath ?? this.ufsPath;
  }

  /** After work that is not a new write of the user: set the pinned times again if the UFS file was written. */
  private reapplyPinnedTimes(): void {
    if (this.pinnedTimes === null || !this.writtenSincePin) return;
    this.pinnedTimes(this.handlePath);
    this.writtenSincePin = false;
  }

  /**
   * Make the times utimens sets the last word (tar, cp -p, rsync -t set them on the open file before close): after
   * every accepted write is applied, the buffered partial block is stored and the held nodes are written (one
   * block-store sync, only when nodes are held), `apply()` sets them on the UFS file
   * and returns how to set the very same times again; that is done after any later write of the UFS file that is not
   * a new write of the user (held nodes, the header at close), so a stat after close shows exactly what was set. A
   * later write or truncate of the user ends the pin (it moves the times, as on any file).
   * @throws what `apply` throws; DdfsError NO_SPACE / IO from storing the buffered block (the times are set anyway;
   *   the block stays buffered, see flushBuffer)
   */
  pinTimes(apply: () => TimesReapply | Promise<TimesReapply>): Promise<void> {
    return this.lock.write(async () => {
      this.assertOpen();
      let stored: unknown = null;
      try {
        // store what is buffered and held now, so that normally nothing is written after the times
        await this.flushBuffer();
        await this.writeHeldNodes();
      } catch (err) {
        stored = err;
      }
      this.pinnedTimes = await apply();
      this.writtenSincePin = false;
      if (stored !== null) throw stored;
    });
  }

  /** Address of block j in memory (the node cache: a page read when not resident). */
  private addressOf(j: number): Promise<number> {
    return this.cache.address(j);
  }

  private async writeHeader(): Promise<void> {
    await this.writeUfs(encodeUfsHeader(this.sizeBytes), 0);
    this.store.counters.add('header_save');
  }

  /** Write nodes [first, first+count) from `src` to the UFS file and the cache. */
  private async writeNodes(first: number, count: number, src: Buffer): Promise<void> {
    if (count === 0) return;
    const ns = this.ns;
    const as = this.store.cfg.addrSize;
    // the nodes these replace, as this process sees them (held ones included); none past the UFS file
    const oldCount = Math.max(0, Math.min(count, this.nodesOnDisk - first));
    const old = oldCount > 0 ? await this.cache.read(first, oldCount) : Buffer.alloc(0);
    // Runs of nodes to write now; a node that replaces one naming a stored block in the UFS file is held back.
    let runStart = -1;
    const writeRun = async (end: number): Promise<void> => {
      if (runStart < 0) return;
      const run = src.subarray((runStart - first) * ns, (end - first) * ns);
      try {
        await this.writeUfs(run, UFS_HEADER_SIZE + runStart * ns);
      } catch (err) {
        // not in the UFS file, but this process reads them as written (as it does a held node)
        for (let j = runStart; j < end; j++) this.cache.setOverride(j, run.subarray((j - runStart) * ns));
        throw err;
      }
      this.cache.wrote(runStart, run);
      runStart = -1;
    };
    for (let k = 0; k < count; k++) {
      const j = first + k;
      // a held node stays held (the UFS file still names the older block) until the block store is synced
      const hold = k < oldCount && (this.heldNodes.has(j) || (decodeAddress(old, k * ns, as) >= 2 &&
        src.compare(old, k * ns, (k + 1) * ns, k * ns, (k + 1) * ns) !== 0));
      // a reclaim running now keeps the block this node named (it was referenced during the walk)
      if (this.store.reclaimFound && k < oldCount) this.markAddress(this.store.reclaimFound, decodeAddress(old, k * ns, as));
      if (hold) {
        await writeRun(j);
        this.heldNodes.add(j);
        this.cache.setOverride(j, src.subarray(k * ns, (k + 1) * ns));
      } else if (runStart < 0) {
        runStart = j;
      }
    }
    await writeRun(first + count);
    if (this.heldNodes.size >= HELD_NODE_COUNT_MAX) await this.writeHeldNodes();
  }

  /**
   * Nodes held back: they replace a node of the UFS file that names a stored block (an overwrite, an append to the
   * last partial block, a shrinking truncate). Written only after the block file is synced, so a power cut can never
   * leave the UFS file naming a new block whose data did not reach the disk in place of the old, durable one: the
   * file then keeps its old content for that block instead of losing it (what fsync acknowledged stays intact).
   */
  private readonly heldNodes = new Set<number>();

  /** Sync the block store, then write the held nodes (under the file lock). */
  private async writeHeldNodes(): Promise<void> {
    if (this.heldNodes.size === 0) return;
    await this.store.sync();
    const held = [...this.heldNodes].sort((a, b) => a - b);
    this.heldNodes.clear();
    const ns = this.ns;
    let i = 0;
    while (i < held.length) {
      let j = i + 1;
      while (j < held.length && held[j] === held[j - 1]! + 1) j++;
      const first = held[i]!;
      const end = held[j - 1]! + 1;
      try {
        const nodes = await this.cache.read(first, end - first);
        await this.writeUfs(nodes, UFS_HEADER_SIZE + first * ns);
        this.cache.wrote(first, nodes);
      } catch (err) {
        for (const h of held.slice(i)) this.heldNodes.add(h);
        throw err;
      }
      i = j;
    }
  }

  /** Write the held nodes now (reclaim walks UFS files on disk; the background tick bounds how long they wait). */
  writeHeld(): Promise<void> {
    return this.lock.write(async () => {
      if (this.closed) return;
      await this.writeHeldNodes();
      this.reapplyPinnedTimes();
    });
  }

  /**
   * Read up to `length` bytes at `offset` (clamped at EOF; an offset past EOF gives 0 bytes).
   * @throws DdfsError CORRUPT (EIO) for a missing node, a lost block (address 1: its bytes are not known, and zeros
   *   would be other bytes than the ones written) or an unreadable block
   */
  read(offset: number, length: number): Promise<Buffer> {
    return this.lock.read(() => this.readLocked(offset, length));
  }

  private async readLocked(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(this.sizeBytes, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const bs = this.bs;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const out = Buffer.allocUnsafe((last - first + 1) * bs);
    const reads: Promise<void>[] = [];
    const ns = this.ns;
    const as = this.store.cfg.addrSize;
    const known = Math.min(last + 1, this.nodesOnDisk) - first;
    const nodes = known > 0 ? await this.cache.read(first, known) : Buffer.alloc(0);
    const addressOf = (k: number): number => decodeAddress(nodes, (k - first) * ns, as);
    let j = first;
    while (j <= last) {
      if (this.buffer && this.buffer.index === j) {
        this.buffer.data.copy(out, (j - first) * bs);
        j++;
        continue;
      }
      if (j >= this.nodesOnDisk) {
        throw new DdfsError('CORRUPT', `${pathText(this.ufsPath)}: node of block ${j} is missing`, { path: this.ufsPath, block: j });
      }
      const a = addressOf(j);
      if (a === ADDR_LOST) throw this.lostError(j);
      let k = j + 1;
      if (a >= 2) {
        while (k <= last && k < this.nodesOnDisk && !(this.buffer && this.buffer.index === k) && addressOf(k) === a + (k - j)) k++;
      }
      reads.push(this.store.readBlocks(a, k - j, out, (j - first) * bs));
      j = k;
    }
    await Promise.all(reads);
    return out.subarray(offset - first * bs, end - first * bs);
  }

  /**
   * Write `data` at `offset`, extending the file (a gap reads as zeros).
   * @throws DdfsError NO_SPACE when the block file is full; IO on a failed block or UFS write; FILE_TOO_BIG when it
   *   would end past sizeMax (nothing is written)
   */
  write(offset: number, data: Buffer): Promise<void> {
    try {
      this.assertSizeAddressable(offset + data.length);
      this.throwDeferred();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.lock.write(() => this.writeLocked(offset, data));
  }

  /**
   * Apply a write under the lock. `plain`: an error stops it and goes to the caller (what was stored stays).
   * `storeNow`: the same, and the partial block is stored too. `answered`: the writer was told it is done, so it
   * never stops half way: every block is stored or marked lost, the first error is deferred (spec §8.6 step 6).
   */
  private async writeLocked(offset: number, data: Buffer, mode: WriteMode = 'plain'): Promise<void> {
    this.assertOpen();
    this.pinnedTimes = null; // a new write of the user moves the times, as on any file
    if (data.length === 0) return;
    const answered = mode === 'answered';
    const bs = this.bs;
    const end = offset + data.length;
    let pos = offset;
    try {
      if (offset > this.sizeBytes) await this.growTo(offset);
      else if (offset < this.sizeBytes) this.onBlocksReleased?.();
      while (pos < end) {
        const j = Math.floor(pos / bs);
        const inBlock = pos - j * bs;
        const n = Math.min(bs - inBlock, end - pos);
        if (inBlock === 0 && n === bs) {
          let run = 1;
          while (pos + (run + 1) * bs <= end) run++;
          if (this.buffer && this.buffer.index >= j && this.buffer.index < j + run) this.buffer = null;
          await this.storeRun(j, data.subarray(pos - offset, pos - offset + run * bs), run, answered);
          pos += run * bs;
          continue;
        }
        if (answered && this.buffer?.dirty && this.buffer.index !== j) {
          try {
            await this.flushBuffer();
          } catch (err) {
            // the slot is needed for this answered piece: the other buffered block, answered too, is lost
            this.deferredError ??= err;
            await this.dropBufferAsLost(err);
          }
        }
        let buf: BlockBuffer;
        try {
          buf = await this.loadBuffer(j);
        } catch (err) {
          if (!answered) throw err;
          this.deferredError ??= err;
          const content = Buffer.alloc(bs);
          data.copy(content, inBlock, pos - offset, pos - offset + n);
          await this.markLost(j, content, 1, err);
          if (pos + n > this.sizeBytes) this.sizeBytes = pos + n;
          pos += n;
          continue;
        }
        data.copy(buf.data, inBlock, pos - offset, pos - offset + n);
        buf.dirty = true;
        if (pos + n > this.sizeBytes) this.sizeBytes = pos + n;
        pos += n;
        if (inBlock + n === bs) {
          try {
            await this.flushBuffer();
          } catch (err) {
            // still buffered: a later flush may store it, close marks it lost if none does
            if (!answered) throw err;
            this.deferredError ??= err;
          }
        }
      }
      if (mode === 'storeNow') await this.flushBuffer();
    } catch (err) {
      if (!answered) throw err;
      // a UFS write failed (or the extension): what is left of this answered write is lost
      this.deferredError ??= err;
      const first = Math.floor(pos / bs);
      const count = Math.ceil(end / bs) - first;
      const content = Buffer.alloc(count * bs);
      if (this.buffer && this.buffer.index === first) this.buffer.data.copy(content, 0);
      data.copy(content, pos - first * bs, pos - offset);
      await this.markLost(first, content, count, err).catch(() => undefined);
      this.sizeBytes = Math.max(this.sizeBytes, end);
      pos = end;
    } finally {
      if (pos > this.sizeBytes) this.sizeBytes = pos;
      if (pos > offset) {
        // the header follows every extension at once (upstream 1.0b6)
        const headerSize = this.sizeBytes;
        if (headerSize > this.headerSizeOnDisk) {
          await this.writeHeader();
          this.headerSizeOnDisk = headerSize;
        }
      }
    }
  }

  /**
   * Store a run of whole blocks and write their nodes. Not `answered`: an error goes to the caller after the nodes of
   * the blocks stored before it are written. `answered`: the blocks that could not be stored are marked lost, the
   * size covers the whole run, and the error is deferred.
   */
  private async storeRun(first: number, data: Buffer, count: number, answered: boolean): Promise<void> {
    // zeroed: nodes not filled in yet read as address 0 when reclaim marks the nodes in transit
    const nodes = Buffer.alloc(count * this.ns);
    this.nodesInTransit.add(nodes);
    try {
      await this.storeRunNodes(first, data, count, nodes, answered);
    } finally {
      this.nodesInTransit.delete(nodes);
    }
  }

  private async storeRunNodes(first: number, data: Buffer, count: number, nodes: Buffer, answered: boolean): Promise<void> {
    let stored = 0;
    let error: unknown = null;
    let lost: number[] = [];
    try {
      ({ stored, error } = await this.store.storeBlocks(data, count, nodes, 0));
    } catch (err) {
      if (!answered) throw err;
      const d = err instanceof DdfsError ? err.data : {};
      if (typeof d.stored === 'number' && Array.isArray(d.lost)) {
        stored = d.stored;
        lost = d.lost as number[];
      }
      error = err;
    }
    if (answered && error !== null) {
      this.deferredError ??= error;
      await this.writeNodes(first, stored, nodes); // the unwritten ones among them have address 1
      if (lost.length > 0) this.onBlocksLost?.(lost.map((k) => first + k), this.handlePath, error);
      if (stored < count) await this.markLost(first + stored, data.subarray(stored * this.bs), count - stored, error);
      this.sizeBytes = Math.max(this.sizeBytes, (first + count) * this.bs);
      return;
    }
    await this.writeNodes(first, stored, nodes);
    if (stored > 0 && (first + stored) * this.bs > this.sizeBytes) {
      this.sizeBytes = Math.min((first + stored) * this.bs, (first + count) * this.bs);
    }
    if (error) throw error;
  }

  /** The error of reading lost block j. */
  private lostError(j: number): DdfsError {
    return new DdfsError('CORRUPT', `${pathText(this.ufsPath)}: block ${j} is lost (address 1): its bytes are not known`, { path: this.ufsPath, block: j, lost: true });
  }

  /**
   * Mark blocks [first, first+count) lost: nodes with address 1 and the hash of `content` (what they should hold, so
   * a repair can re-link one whose block turns up, spec §10.3 step 6); a block of zeros gets address 0 instead (its
   * content is known). The nodes reach the cache even when the UFS write fails, so this process reads them as lost
   * too. The volume is told (onBlocksLost).
   * @throws the UFS write error (after the cache and the volume were updated)
   */
  private async markLost(first: number, content: Buffer, count: number, cause: unknown): Promise<void> {
    const { bs, ns } = this;
    const as = this.store.cfg.addrSize;
    const nodes = Buffer.alloc(count * ns);
    const lost: number[] = [];
    for (let k = 0; k < count; k++) {
      this.store.hasher.hashInto(content.subarray(k * bs, (k + 1) * bs), nodes, k * ns + as);
      const zero = this.store.isZeroHash(nodes, k * ns + as);
      encodeAddress(nodes, k * ns, as, zero ? ADDR_ZERO : ADDR_LOST);
      if (!zero) lost.push(first + k);
    }
    if (this.buffer && this.buffer.index >= first && this.buffer.index < first + count) this.buffer = null;
    try {
      if (lost.length > 0) this.onBlocksLost?.(lost, this.handlePath, cause);
      await this.writeNodes(first, count, nodes);
    } catch (err) {
      for (let k = 0; k < count; k++) this.cache.setOverride(first + k, nodes.subarray(k * ns, (k + 1) * ns));
      throw err;
    }
  }

  /** Give up the dirty buffered block (it could not be stored and the buffer must go): it is lost. */
  private async dropBufferAsLost(cause: unknown): Promise<void> {
    const buf = this.buffer;
    if (!buf || !buf.dirty) return;
    buf.dirty = false;
    await this.markLost(buf.index, buf.data, 1, cause).catch(() => undefined);
    this.buffer = null;
  }

  /**
   * Make block j the buffered block: flush another dirty one, then read the existing bytes [j·bs, min(size, (j+1)·bs))
   * and zero the rest (read-before-write, spec §8.6 step 2). A stored block with bytes past EOF comes back dirty.
   * @throws DdfsError CORRUPT for a lost block (address 1) with bytes in the file: they are not known
   */
  private async loadBuffer(j: number): Promise<BlockBuffer> {
    if (this.buffer && this.buffer.index === j) return this.buffer;
    if (this.buffer?.dirty) await this.flushBuffer();
    const bs = this.bs;
    const data = this.buffer?.data ?? Buffer.alloc(bs);
    const valid = Math.max(0, Math.min(bs, this.sizeBytes - j * bs));
    const address = valid > 0 && j < this.nodesOnDisk ? await this.addressOf(j) : ADDR_ZERO;
    if (valid > 0 && j < this.nodesOnDisk && address === ADDR_LOST) throw this.lostError(j);
    this.buffer = null;
    let dirty = false;
    if (valid > 0 && j < this.nodesOnDisk) {
      await this.store.readBlock(address, data, 0);
      this.store.counters.add('read_before_write');
      for (let i = valid; i < bs; i++) {
        if (data[i] !== 0) {
          dirty = true;
          data.fill(0, valid);
          break;
        }
      }
    } else {
      data.fill(0);
      dirty = valid > 0; // a missing node within the file: store the zeros we now serve
    }
    this.buffer = { index: j, data, dirty };
    return this.buffer;
  }

  /**
   * Store the buffered block if dirty and write its node. On failure it stays buffered and dirty (a later flush may
   * store it; close marks it lost if none does).
   */
  private async flushBuffer(): Promise<void> {
    const buf = this.buffer;
    if (!buf || !buf.dirty) return;
    const nodes = Buffer.alloc(this.ns);
    this.nodesInTransit.add(nodes);
    try {
      const { stored, error } = await this.store.storeBlocks(buf.data, 1, nodes, 0);
      if (error || stored !== 1) throw error ?? new DdfsError('IO', `${pathText(this.ufsPath)}: block not stored`);
      await this.writeNodes(buf.index, 1, nodes);
    } finally {
      this.nodesInTransit.delete(nodes);
    }
    buf.dirty = false;
    this.store.counters.add('write_save');
  }

  /** Zero-extend from the current size to `newSize` (spec §7 "Truncate", growing). */
  private async growTo(newSize: number): Promise<void> {
    const bs = this.bs;
    const last = Math.floor(this.sizeBytes / bs);
    // the old last partial block gets zeros past its end; a lost one stays lost
    if (this.sizeBytes % bs !== 0 && !(last < this.nodesOnDisk && (await this.addressOf(last)) === ADDR_LOST)) await this.loadBuffer(last);
    const k = Math.ceil(newSize / bs);
    if (k > this.nodesOnDisk) {
      // the new nodes are holes: all-zero bytes, a hole of the host file as with 1.1's ftruncate (spec §7)
      await this.truncateUfs(UFS_HEADER_SIZE + k * this.ns);
      this.cache.extendTo(k);
    }
    this.sizeBytes = newSize;
    await this.writeHeader();
    this.headerSizeOnDisk = newSize;
    this.store.counters.add('do_truncate');
  }

  /**
   * Set the size to `newSize`. Shrinking rewrites the new last partial block with zeros past EOF and cuts the node
   * list; growing adds holes (spec §7).
   * @throws DdfsError NO_SPACE / IO; FILE_TOO_BIG beyond sizeMax (nothing changes)
   */
  truncate(newSize: number): Promise<void> {
    try {
      this.assertSizeAddressable(newSize);
    } catch (err) {
      return Promise.reject(err);
    }
    this.beginPending(newSize);
    return this.lock.write(async () => {
      this.assertOpen();
      this.pinnedTimes = null; // a truncate of the user moves the times, as on any file
      if (newSize === this.sizeBytes) {
        if (this.headerSizeOnDisk !== newSize) { await this.writeHeader(); this.headerSizeOnDisk = newSize; }
        return;
      }
      if (newSize > this.sizeBytes) {
        await this.growTo(newSize);
        return;
      }
      const bs = this.bs;
      const k = Math.ceil(newSize / bs);
      if (this.buffer && this.buffer.index >= k) this.buffer = null;
      for (const j of this.heldNodes) if (j >= k) this.heldNodes.delete(j);
      if (newSize % bs !== 0 && !(k - 1 < this.nodesOnDisk && (await this.addressOf(k - 1)) === ADDR_LOST)) {
        const buf = await this.loadBuffer(k - 1);
        const cut = newSize % bs;
        for (let i = cut; i < bs; i++) {
          if (buf.data[i] !== 0) {
            buf.data.fill(0, cut);
            buf.dirty = true;
            break;
          }
        }
      }
      this.sizeBytes = newSize;
      await this.flushBuffer();
      // a reclaim running now keeps the blocks the cut nodes named: those only in the UFS file are read before the cut
      const reclaimBefore = this.store.reclaimFound;
      const cutInMemory = this.cache.residentFrom(k);
      if (reclaimBefore && !cutInMemory) await this.markNodesOfUfs(reclaimBefore, k, this.nodesOnDisk);
      await this.truncateUfs(UFS_HEADER_SIZE + k * this.ns);
      const found = this.store.reclaimFound;
      if (found) {
        // a reclaim that started during the cut cannot be told every node it dropped: it frees nothing this time
        if (found !== reclaimBefore && !cutInMemory) this.markAllocated(found);
        this.markInMemory(found, k);
      }
      this.cache.cut(k);
      await this.writeHeader();
      this.headerSizeOnDisk = newSize;
      this.store.counters.add('do_truncate');
      this.onBlocksReleased?.();
    }).finally(() => this.endPending());
  }

  /** Push the buffered partial block to the block store and write its node (spec §8.7). */
  flush(): Promise<void> {
    return this.lock.write(async () => {
      if (this.closed) return;
      await this.flushBuffer();
      if (this.headerSizeOnDisk !== this.sizeBytes && this.headerSizeOnDisk !== -1) {
        await this.writeHeader();
        this.headerSizeOnDisk = this.sizeBytes;
      }
      this.reapplyPinnedTimes();
      this.throwDeferred();
    });
  }

  /** flush, then fsync the UFS file (and its directory entry when `syncEntry` says so), the block file and the index (spec §8.7). */
  async fsync(): Promise<void> {
    await this.flush();
    await this.lock.write(async () => {
      if (this.closed) return;
      await this.writeHeldNodes();
      this.reapplyPinnedTimes();
      await this.device.sync();
      if (this.syncEntry) await this.syncEntry();
    });
    await this.store.sync();
  }

  /**
   * flush, save the header if it differs from the size (spec §8.7 release: e.g. an earlier header write failed),
   * set pinned times again, and close the UFS file; further calls fail. Each step is tried even when an earlier one
   * failed, and the fd is always closed. A buffered block that cannot be stored now is marked lost (it was answered).
   * @throws the first error of these steps, else the deferred error of a write-behind
   */
  close(): Promise<void> {
    return this.lock.write(async () => {
      if (this.closed) return;
      let failure: unknown = null;
      const attempt = async (step: () => Promise<void> | void): Promise<void> => {
        try {
          await step();
        } catch (err) {
          failure ??= err;
        }
      };
      try {
        await attempt(() => this.flushBuffer());
        if (this.buffer?.dirty) await this.dropBufferAsLost(failure);
        await attempt(() => this.writeHeldNodes());
        await attempt(async () => {
          if (this.headerSizeOnDisk !== this.sizeBytes && (this.headerSizeOnDisk !== -1 || this.sizeBytes > 0)) {
            await this.writeHeader();
            this.headerSizeOnDisk = this.sizeBytes;
          }
        });
        await attempt(() => this.reapplyPinnedTimes());
      } finally {
        this.closed = true;
        this.buffer = null;
        this.onClosed?.();
        await this.device.close();
      }
      if (failure !== null) throw failure;
      this.throwDeferred();
    });
  }

  /**
   * Node buffers between the block store's answer and their write into `nodes` (storeRun, flushBuffer): the
   * addresses in them are referenced by this file already, though no node list shows them yet.
   */
  private readonly nodesInTransit = new Set<Buffer>();

  private markAddress(found: Bitmap, address: number): void {
    if (address >= 2 && address < this.store.cfg.blockCount) found.set(address);
  }

  private markNodes(found: Bitmap, nodes: Buffer): void {
    const { addrSize, nodeSize } = this.store.cfg;
    for (let off = 0; off + nodeSize <= nodes.length; off += nodeSize) this.markAddress(found, decodeAddress(nodes, off, addrSize));
  }

  /**
   * Mark in `found` every block this file references from memory (reclaim, spec §9): its node list (including the
   * nodes held back, whose UFS file still names the older block) and the nodes in transit. Synchronous, lock-free:
   * it reads only memory, so it sees one consistent moment.
   */
  markReferencedBlocks(found: Bitmap): void {
    this.markInMemory(found, 0);
    for (const nodes of this.nodesInTransit) this.markNodes(found, nodes);
  }

  /** Mark the addresses of the nodes from index `from` on that are in memory (node pages, held nodes). */
  private markInMemory(found: Bitmap, from: number): void {
    const ns = this.ns;
    this.cache.forEachInMemory((nodes, first) => {
      this.markNodes(found, first >= from ? nodes : nodes.subarray(Math.min(nodes.length, (from - first) * ns)));
    });
  }

  /** Mark every allocated block (a reclaim that could not see every reference frees nothing). */
  private markAllocated(found: Bitmap): void {
    const allocated = this.store.index.bitmap.bytes;
    for (let i = 0; i < found.bytes.length; i++) found.bytes[i]! |= allocated[i]!;
    found.recount();
  }

  /**
   * Mark the addresses of the UFS file's nodes [from, to), read in chunks of UFS_NODE_CHUNK_COUNT nodes (bounded
   * memory); a short read (the file is shorter) ends it. Caller holds the lock.
   */
  private async markNodesOfUfs(found: Bitmap, from: number, to: number): Promise<void> {
    const ns = this.ns;
    const chunk = Buffer.allocUnsafe(Math.min(UFS_NODE_CHUNK_COUNT, Math.max(0, to - from)) * ns);
    for (let first = from; first < to; first += UFS_NODE_CHUNK_COUNT) {
      const count = Math.min(UFS_NODE_CHUNK_COUNT, to - first);
      const n = await this.device.read(chunk, 0, count * ns, UFS_HEADER_SIZE + first * ns);
      this.markNodes(found, chunk.subarray(0, Math.floor(n / ns) * ns));
      if (n < count * ns) return;
    }
  }

  /** Whether markReferencedBlocks alone sees every block this file references (its node list is all in memory). */
  get referencesInMemory(): boolean {
    return this.closed || this.cache.fullyResident;
  }

  /**
   * Mark in `found` every block this file's node list references (reclaim, spec §9), reading from the UFS file what
   * is not in memory: an open file that was unlinked is not walked, and markReferencedBlocks sees only the node pages
   * in memory. Reads in chunks under the read lock, so writes go on between them (what they change is marked by
   * reclaim mode); a closed file is left (its name, if any, is walked).
   * @throws Device read errors
   */
  async markNodesOnDisk(found: Bitmap): Promise<void> {
    let first = 0;
    for (;;) {
      const done = await this.lock.read(async () => {
        if (this.closed) return true;
        const end = Math.min(this.nodesOnDisk, first + UFS_NODE_CHUNK_COUNT);
        if (first >= end) return true;
        await this.markNodesOfUfs(found, first, end);
        first = end;
        return false;
      });
      if (done) break;
    }
    this.markReferencedBlocks(found);
  }

  private assertOpen(): void {
    if (this.closed) throw new DdfsError('INVALID', `${pathText(this.ufsPath)}: file is closed`);
  }
}

/**
 * Logical size of a closed UFS file from its header (the cheap peek, ufs_reader.ts `peekUfsSize`).
 * @throws DdfsError BAD_HEADER for an invalid header; Node errors (ENOENT…) unchanged
 */
export function readUfsSize(ufsPath: string | Buffer, devices: DeviceFactory = fileDevices): Promise<number> {
  return peekUfsSize(devices, ufsPath);
}
