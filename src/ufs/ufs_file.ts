/**
 * An open regular file of the volume: its UFS file (header + node list, spec §7) and the dedup read/write paths
 * (spec §8.5, §8.6). One UfsFile per inode is shared by every handle of that inode, so handles see each other's
 * buffered data (spec §8.4).
 *
 * State and invariants:
 * - `nodes` caches the node list in memory (write-through: a node is written to the UFS file as soon as its block is
 *   stored, after the block data, keeping upstream's order block data → index → UFS node).
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
import { ADDR_LOST, ADDR_ZERO, HELD_NODE_COUNT_MAX, UFS_HEADER_SIZE } from '../limits.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import type { Device, DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import type { Bitmap } from '../store/bitmap.js';
import type { BlockStore } from '../store/block_store.js';
import { dirnameBytes, pathText } from '../util/path_text.js';
import { RwLock } from '../util/rwlock.js';
import { peekUfsSize, readUfsHeader } from './ufs_reader.js';

export interface UfsOpenOptions {
  create?: boolean;
  truncate?: boolean;
  mode?: number;
  readOnly?: boolean;
  devices?: DeviceFactory;
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
  private nodes: Buffer;
  private nodesOnDisk: number;
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
    nodes: Buffer,
    nodesOnDisk: number,
    hasHeader: boolean,
  ) {
    this.headerSizeOnDisk = hasHeader ? size : -1;
    this.sizeBytes = size;
    this.nodes = nodes;
    this.nodesOnDisk = nodesOnDisk;
    this.bs = store.cfg.blockSize;
    this.ns = store.cfg.nodeSize;
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
        return UfsFile.withEntry(new UfsFile(ufsPath, device, store, 0, Buffer.alloc(0), 0, writeHeader), options, devices);
      }
      if (header.error) throw header.error;
      const size = header.size;
      store.counters.add('header_load');
      const onDisk = Math.floor((length - UFS_HEADER_SIZE) / ns);
      const expected = Math.ceil(size / store.cfg.blockSize);
      const nodes = Buffer.alloc(Math.max(onDisk, expected) * ns);
      const n = await device.read(nodes, 0, onDisk * ns, UFS_HEADER_SIZE);
      return UfsFile.withEntry(new UfsFile(ufsPath, device, store, size, nodes, Math.floor(n / ns), true), options, devices);
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
   *   what `write` throws
   */
  async writeBehind(offset: number, data: Buffer, pendingBytesMax: number): Promise<void> {
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

  /** Address of block j from the node cache. */
  private addressOf(j: number): number {
    return decodeAddress(this.nodes, j * this.ns, this.store.cfg.addrSize);
  }

  /** Grow the node cache to hold `count` nodes (new nodes are zero = holes). */
  private ensureNodeCapacity(count: number): void {
    const need = count * this.ns;
    if (this.nodes.length >= need) return;
    const grown = Buffer.alloc(Math.max(need, Math.min(this.nodes.length * 2, need + 64 * 1024 * 1024)));
    this.nodes.copy(grown, 0, 0, this.nodes.length);
    this.nodes = grown;
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
    this.ensureNodeCapacity(first + count);
    // Runs of nodes to write now; a node that replaces one naming a stored block in the UFS file is held back.
    let runStart = -1;
    const writeRun = async (end: number): Promise<void> => {
      if (runStart < 0) return;
      await this.writeUfs(this.nodes.subarray(runStart * ns, end * ns), UFS_HEADER_SIZE + runStart * ns);
      if (end > this.nodesOnDisk) this.nodesOnDisk = end;
      runStart = -1;
    };
    for (let k = 0; k < count; k++) {
      const j = first + k;
      const hold = j < this.nodesOnDisk && (this.heldNodes.has(j) || decodeAddress(this.nodes, j * ns, as) >= 2) &&
        src.compare(this.nodes, j * ns, (j + 1) * ns, k * ns, (k + 1) * ns) !== 0;
      // a reclaim running now keeps the block this node named (it was referenced during the walk)
      if (this.store.reclaimFound && j < this.nodesOnDisk) this.markAddress(this.store.reclaimFound, decodeAddress(this.nodes, j * ns, as));
      src.copy(this.nodes, j * ns, k * ns, (k + 1) * ns);
      if (hold) {
        await writeRun(j);
        this.heldNodes.add(j);
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
        await this.writeUfs(this.nodes.subarray(first * ns, end * ns), UFS_HEADER_SIZE + first * ns);
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
      const a = this.addressOf(j);
      if (a === ADDR_LOST) throw this.lostError(j);
      let k = j + 1;
      if (a >= 2) {
        while (k <= last && k < this.nodesOnDisk && !(this.buffer && this.buffer.index === k) && this.addressOf(k) === a + (k - j)) k++;
      }
      reads.push(this.store.readBlocks(a, k - j, out, (j - first) * bs));
      j = k;
    }
    await Promise.all(reads);
    return out.subarray(offset - first * bs, end - first * bs);
  }

  /**
   * Write `data` at `offset`, extending the file (a gap reads as zeros).
   * @throws DdfsError NO_SPACE when the block file is full; IO on a failed block or UFS write
   */
  write(offset: number, data: Buffer): Promise<void> {
    try {
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
      this.ensureNodeCapacity(Math.ceil(end / bs));
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
    this.ensureNodeCapacity(first + count);
    try {
      if (lost.length > 0) this.onBlocksLost?.(lost, this.handlePath, cause);
      await this.writeNodes(first, count, nodes);
    } catch (err) {
      nodes.copy(this.nodes, first * ns);
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
    if (valid > 0 && j < this.nodesOnDisk && this.addressOf(j) === ADDR_LOST) throw this.lostError(j);
    this.buffer = null;
    let dirty = false;
    if (valid > 0 && j < this.nodesOnDisk) {
      await this.store.readBlock(this.addressOf(j), data, 0);
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
    if (this.sizeBytes % bs !== 0 && !(last < this.nodesOnDisk && this.addressOf(last) === ADDR_LOST)) await this.loadBuffer(last);
    const k = Math.ceil(newSize / bs);
    this.ensureNodeCapacity(k);
    if (k > this.nodesOnDisk) {
      await this.truncateUfs(UFS_HEADER_SIZE + k * this.ns);
      this.nodes.fill(0, this.nodesOnDisk * this.ns, k * this.ns);
      this.nodesOnDisk = k;
    }
    this.sizeBytes = newSize;
    await this.writeHeader();
    this.headerSizeOnDisk = newSize;
    this.store.counters.add('do_truncate');
  }

  /**
   * Set the size to `newSize`. Shrinking rewrites the new last partial block with zeros past EOF and cuts the node
   * list; growing adds holes (spec §7).
   * @throws DdfsError NO_SPACE / IO
   */
  truncate(newSize: number): Promise<void> {
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
      if (newSize % bs !== 0 && !(k - 1 < this.nodesOnDisk && this.addressOf(k - 1) === ADDR_LOST)) {
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
      await this.truncateUfs(UFS_HEADER_SIZE + k * this.ns);
      if (this.nodesOnDisk > k) this.nodesOnDisk = k;
      if (this.store.reclaimFound) this.markNodes(this.store.reclaimFound, this.nodes.subarray(k * this.ns));
      this.nodes.fill(0, k * this.ns);
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
    this.markNodes(found, this.nodes);
    for (const nodes of this.nodesInTransit) this.markNodes(found, nodes);
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
