/**
 * Offline download: copy a regular file of a volume out to a byte sink, reading its UFS nodes and the block file
 * directly (cpddumbfs SRC DST with SRC inside the volume, spec §11). Safe on a mounted volume (open it read-only):
 * nothing of the volume is written.
 *
 * Rules (spec §11, upstream cpddumbfs.c):
 * - A 0-byte UFS file is an empty file. A missing/short header is an error, unless `force`: then the size is unknown,
 *   every node gives a full block, and integrity is lost.
 * - A trailing partial node is an error, unless `force`: it is then a lost block (address 1, `corrupted`).
 * - Node j gives min(bs, size − written) bytes; nodes past the size give nothing (a file uploaded by upstream with its
 *   extra zero node, spec §17.1, downloads intact).
 * - Fewer nodes than ceil(size/bs) is an error, unless `force`: the missing blocks are then lost (zeros).
 *   (Upstream silently writes a short file; ours never returns fewer bytes than the header says.)
 * - Address 1 = lost block: zeros, status `corrupted`.
 * - An unreadable block (address ≥ block_count, beyond the end of the block file, I/O error) is an error unless
 *   `force` (then what can be read is kept, the rest is zero, status `unreadable`). With `check`, another copy of
 *   the block is looked for in the index first, as for `err`.
 * - With `check`: address 0 must carry the zero-block or null hash, else `bad`; other blocks are re-hashed: equal
 *   to the node hash ⇒ `ok`, else other index nodes with the same hash (at other addresses) are tried and a block
 *   whose content matches is written instead (`corrected`, counts as intact; the UFS file is not modified);
 *   otherwise `err` and the data as read is written.
 * Integrity is intact iff the header was valid and no block ended `corrupted`, `bad`, `err` or `unreadable`.
 */
import { DdfsError } from '../errors.js';
import { ADDR_LOST, ADDR_ZERO, UFS_HEADER_SIZE } from '../limits.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { fileDevices, type DeviceFactory } from '../io/device.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { pathText } from '../util/path_text.js';
import type { Volume } from '../volume/volume.js';
import { copyChunkSize, type ByteWriter } from './stream_io.js';

/** Verdict on one node; '' when the block was copied without checking (no `check`). */
export type BlockStatus = '' | 'ok' | 'corrupted' | 'bad' | 'err' | 'corrected' | 'unreadable';

/** Statuses that break integrity (exit 1). */
const BAD_STATUSES: ReadonlySet<BlockStatus> = new Set(['corrupted', 'bad', 'err', 'unreadable']);

/** One node of the downloaded file, as `cpddumbfs -v` / `-c` reports it. */
export interface DownloadBlockRecord {
  /** Node number within the file (0-based). */
  index: number;
  /** Address read: the node's own, or for `corrected` the address of the good copy used. */
  address: number;
  /** The node's hash (hash_size bytes, a copy; zeros for a partial or missing node). */
  hash: Buffer;
  status: BlockStatus;
}

export interface DownloadOpenOptions {
  /** Go on past a bad header, a partial node or missing nodes (they become lost blocks). */
  force?: boolean;
  /** Must be the factory the volume was opened with; default the real file system. */
  devices?: DeviceFactory;
}

export interface DownloadCopyOptions {
  /** Re-hash every block and compare with its node (cpddumbfs -c). */
  check?: boolean;
  /** Zero-fill unreadable blocks instead of failing. */
  force?: boolean;
  /** Called for each node in order, after its bytes were written. */
  onBlock?: (record: DownloadBlockRecord) => void;
  /** Called after each chunk is written, with the bytes written so far. */
  onProgress?: (bytes: number) => void;
  /** Stop at the next chunk boundary once aborted (Ctrl-C): the sink then holds the first `writtenSize` bytes. */
  signal?: AbortSignal;
}

export interface DownloadResult {
  /** Size from the header; null when the header is invalid (force). */
  size: number | null;
  /** Bytes written to the sink. */
  writtenSize: number;
  /** Nodes processed (on disk, partial, and missing ones). */
  nodeCount: number;
  /** True iff the header was valid and no node ended in a bad status (of the nodes copied, when interrupted). */
  intact: boolean;
  /** True when `signal` stopped the copy before the last node. */
  interrupted: boolean;
}

/** Sector size of the forced read of an unreadable block (upstream: 1 KiB units, failures zero-filled). */
const FORCED_READ_SECTOR_SIZE = 1024;

/**
 * An open UFS file to download: header and node layout are validated at open, before anything is written out.
 */
export class UfsDownload {
  /** Messages about problems that `force` let through (bad header, partial node, missing nodes). */
  readonly warnings: string[] = [];

  private constructor(
    private readonly volume: Volume,
    readonly ufsPath: string | Buffer,
    private readonly file: UfsNodeFile,
    /** Size from the header, or null when unknown. */
    readonly size: number | null,
    /** Whole nodes present in the UFS file. */
    private readonly nodesOnDisk: number,
    /** Nodes processed in all: on disk + a partial one + missing ones (force). */
    readonly nodeCount: number,
  ) {}

  /**
   * Open and validate the UFS file `ufsPath` of `volume` (a Buffer for a byte path), through the UFS reader.
   * @throws DdfsError BAD_HEADER (missing magic, short header, absurd size), CORRUPT (partial node, fewer nodes than
   *   the size needs) unless `force`; Node errors of opening the file (ENOENT, EISDIR, EACCES…) unchanged
   */
  static async open(volume: Volume, ufsPath: string | Buffer, options: DownloadOpenOptions = {}): Promise<UfsDownload> {
    const { blockSize: bs, nodeSize: ns } = volume.config;
    const force = options.force ?? false;
    const name = pathText(ufsPath);
    const file = await UfsNodeFile.open(options.devices ?? fileDevices, ufsPath, ns);
    try {
      const warnings: string[] = [];
      let size: number | null = file.size;
      if (file.headerState === 'bad') {
        const message = file.headerError?.message ?? 'bad header';
        const why = message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message;
        if (!force) throw new DdfsError('BAD_HEADER', `${name}: ${why}, not a valid ddumbfs file`, { path: ufsPath });
        warnings.push(`${name}: ${why}, unknown file size, continue`);
        size = null;
      }
      const nodesOnDisk = file.nodeCount;
      let nodeCount = nodesOnDisk;
      if (file.partialBytes !== 0) {
        const offset = UFS_HEADER_SIZE + nodesOnDisk * ns;
        const msg = `${name}: partial node at offset ${offset} (${file.partialBytes} of ${ns} bytes)`;
        if (!force) throw new DdfsError('CORRUPT', msg, { path: ufsPath, offset });
        warnings.push(`${msg}: lost block`);
        nodeCount++;
      }
      if (size !== null) {
        const needed = Math.ceil(size / bs);
        if (nodeCount < needed) {
          const msg = `${name}: ${nodeCount} nodes for a size of ${size} bytes (${needed} needed)`;
          if (!force) throw new DdfsError('CORRUPT', msg, { path: ufsPath, size, nodeCount });
          warnings.push(`${msg}: missing blocks are lost`);
          nodeCount = needed;
        }
      }
      const dl = new UfsDownload(volume, ufsPath, file, size, nodesOnDisk, nodeCount);
      dl.warnings.push(...warnings);
      return dl;
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Copy the file's bytes to `write`, node by node (in chunks of about 1 MiB).
   * @returns sizes and the integrity verdict (bad blocks do not throw: they are reported and counted)
   * @throws DdfsError CORRUPT for an unreadable block without `force` (bytes before it were already written);
   *   errors of `write` unchanged
   */
  async copyTo(write: ByteWriter, options: DownloadCopyOptions = {}): Promise<DownloadResult> {
    const cfg = this.volume.config;
    const { blockSize: bs, nodeSize: ns, addrSize: as, hashSize: hs } = cfg;
    const store = this.volume.store;
    const check = options.check ?? false;
    const force = options.force ?? false;
    const batch = copyChunkSize(bs) / bs;
    const nodes = Buffer.alloc(batch * ns);
    const data = Buffer.alloc(batch * bs);
    const digest = Buffer.alloc(hs);
    const unreadable: boolean[] = new Array<boolean>(batch).fill(false);
    const fake: boolean[] = new Array<boolean>(batch).fill(false);
    let intact = this.size !== null;
    let written = 0;
    let interrupted = false;

    for (let first = 0; first < this.nodeCount; first += batch) {
      if (options.signal?.aborted) {
        interrupted = true;
        break;
      }
      const count = Math.min(batch, this.nodeCount - first);
      // nodes: whole ones from disk; a partial or missing one is a lost block with a null hash
      nodes.fill(0, 0, count * ns);
      const onDisk = Math.max(0, Math.min(count, this.nodesOnDisk - first));
      if (onDisk > 0) {
        try {
          await this.file.readNodes(first, onDisk, nodes);
        } catch (err) {
          if (!(err instanceof DdfsError && err.code === 'IO')) throw err;
          throw new DdfsError('CORRUPT', `${pathText(this.ufsPath)}: the UFS file shrank while being read`, { path: this.ufsPath }, err);
        }
      }
      for (let k = 0; k < count; k++) {
        fake[k] = k >= onDisk;
        if (fake[k]) encodeAddress(nodes, k * ns, as, ADDR_LOST);
      }
      await this.readBatch(nodes, count, data, unreadable);

      const records: DownloadBlockRecord[] = [];
      for (let k = 0; k < count; k++) {
        const address = decodeAddress(nodes, k * ns, as);
        const hashOffset = k * ns + as;
        const record: DownloadBlockRecord = {
          index: first + k,
          address,
          hash: Buffer.from(nodes.subarray(hashOffset, hashOffset + hs)),
          status: '',
        };
        records.push(record);
        if (fake[k] || address === ADDR_LOST) {
          record.status = 'corrupted';
          continue;
        }
        if (check) {
          if (address === ADDR_ZERO) {
            record.status = store.isZeroHash(nodes, hashOffset) ? 'ok' : 'bad';
            continue;
          }
          if (!unreadable[k]) {
            store.hasher.hashInto(data.subarray(k * bs, (k + 1) * bs), digest, 0);
            if (digest.compare(nodes, hashOffset, hashOffset + hs) === 0) {
              record.status = 'ok';
              continue;
            }
          }
          const other = await this.findGoodCopy(nodes, hashOffset, address, data, k * bs, digest);
          if (other >= 0) {
            record.status = 'corrected';
            record.address = other;
            continue;
          }
          if (!unreadable[k]) {
            record.status = 'err';
            continue;
          }
        }
        if (unreadable[k]) {
          if (!force) {
            throw new DdfsError('CORRUPT', `${pathText(this.ufsPath)}: cannot read block ${address} (node ${first + k}) of ${store.blockDevice.path}`,
              { path: this.ufsPath, address, node: first + k });
          }
          record.status = 'unreadable';
        }
      }

      let outLength = count * bs;
      if (this.size !== null) outLength = Math.max(0, Math.min(outLength, this.size - written));
      // lost blocks read as zeros; so do `bad` zero-address nodes (readBatch already zero-filled them)
      await write(data.subarray(0, outLength));
      written += outLength;
      for (const r of records) {
        if (BAD_STATUSES.has(r.status)) intact = false;
        options.onBlock?.(r);
      }
      options.onProgress?.(written);
    }
    return { size: this.size, writtenSize: written, nodeCount: this.nodeCount, intact, interrupted };
  }

  /**
   * Read the blocks of `count` nodes into `data` (block k at k·bs): addresses 0 and 1 give zeros; runs of consecutive
   * addresses are read with one pread; a block that cannot be read whole is marked in `unreadable` and holds
   * whatever could be read, zeros elsewhere.
   */
  private async readBatch(nodes: Buffer, count: number, data: Buffer, unreadable: boolean[]): Promise<void> {
    const { blockSize: bs, nodeSize: ns, addrSize: as, blockCount } = this.volume.config;
    const store = this.volume.store;
    let k = 0;
    while (k < count) {
      const a = decodeAddress(nodes, k * ns, as);
      unreadable[k] = false;
      if (a === ADDR_ZERO || a === ADDR_LOST) {
        data.fill(0, k * bs, (k + 1) * bs);
        k++;
        continue;
      }
      let end = k + 1;
      while (end < count && a + (end - k) < blockCount && decodeAddress(nodes, end * ns, as) === a + (end - k)) end++;
      try {
        await store.readBlocks(a, end - k, data, k * bs);
      } catch {
        for (let j = k; j < end; j++) unreadable[j] = !(await this.readOne(a + (j - k), data, j * bs));
      }
      k = end;
    }
  }

  /** Read one block; on failure keep what is readable (1 KiB sectors), zero the rest. @returns true when whole */
  private async readOne(address: number, out: Buffer, outOffset: number): Promise<boolean> {
    const bs = this.volume.config.blockSize;
    const store = this.volume.store;
    try {
      await store.readBlock(address, out, outOffset);
      return true;
    } catch {
      out.fill(0, outOffset, outOffset + bs);
      if (address >= this.volume.config.blockCount) return false;
      for (let s = 0; s < bs; s += FORCED_READ_SECTOR_SIZE) {
        try {
          const n = await store.blockDevice.read(out, outOffset + s, FORCED_READ_SECTOR_SIZE, address * bs + s);
          if (n < FORCED_READ_SECTOR_SIZE) break;
        } catch {
          out.fill(0, outOffset + s, outOffset + s + FORCED_READ_SECTOR_SIZE);
        }
      }
      return false;
    }
  }

  /**
   * Look for another index node with the node's hash whose block has the right content (spec §11 `corrected`).
   * On success the good block is in `data` at `dataOffset`.
   * @returns its address, or -1 (then `data` at `dataOffset` is unchanged)
   */
  private async findGoodCopy(nodes: Buffer, hashOffset: number, address: number, data: Buffer, dataOffset: number, digest: Buffer): Promise<number> {
    const cfg = this.volume.config;
    const index = this.volume.store.index.nodes;
    const hs = cfg.hashSize;
    const candidates: number[] = [];
    // equal hashes sit in one run from the ideal slot on (duplicates only exist transiently, spec §5.5); bounded by
    // node_count since there is no wrap-around
    for (let i = index.idealSlot(nodes, hashOffset); i < index.nodeCount; i++) {
      const a = index.address(i);
      if (a === 0) break;
      const c = index.compareHash(i, nodes, hashOffset);
      if (c > 0) break;
      if (c === 0 && a !== address && a !== ADDR_LOST && a < cfg.blockCount) candidates.push(a);
    }
    if (candidates.length === 0) return -1;
    const block = Buffer.alloc(cfg.blockSize);
    for (const a of candidates) {
      try {
        await this.volume.store.readBlock(a, block, 0);
      } catch {
        continue;
      }
      this.volume.store.hasher.hashInto(block, digest, 0);
      if (digest.compare(nodes, hashOffset, hashOffset + hs) === 0) {
        block.copy(data, dataOffset);
        return a;
      }
    }
    return -1;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
