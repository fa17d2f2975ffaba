/**
 * The index file (spec §5.1):
 *
 * | range                                  | content                                            |
 * |----------------------------------------|----------------------------------------------------|
 * | [0, 4096)                              | header page: `DDUMBFSI`, then zeros                |
 * | [4096, freeblock_offset)               | unused (a sparse hole in 1.1 files)                |
 * | [freeblock_offset, node_offset)        | allocation bitmap, 4·ceil(block_count/32) bytes used |
 * | [node_offset, +node_count·node_size)   | node array                                         |
 *
 * The file must be at least index_size bytes long. The whole bitmap and node array are loaded into memory at open;
 * `flush` writes back dirty pages only.
 */
import { DdfsError } from '../errors.js';
import { INDEX_FILE_MAGIC, INDEX_PAGE_SIZE } from '../limits.js';
import type { DdfsConfig } from '../format/config.js';
import { bitmapWordBytes } from '../format/config.js';
import type { Device } from '../io/device.js';
import { Bitmap } from './bitmap.js';
import { NodeIndex } from './node_index.js';

const MAGIC = Buffer.from(INDEX_FILE_MAGIC, 'ascii');

/** The header page of a new index file. */
export function encodeIndexHeader(): Buffer {
  const b = Buffer.alloc(INDEX_PAGE_SIZE);
  MAGIC.copy(b, 0);
  return b;
}

/** Index pages taken at one moment: bytes to write at a file position. */
export type CapturedPages = Array<{ position: number; bytes: Buffer }>;

export class IndexFile {
  private constructor(
    readonly device: Device,
    readonly cfg: DdfsConfig,
    readonly bitmap: Bitmap,
    readonly nodes: NodeIndex,
  ) {}

  /**
   * Load the bitmap and node table from an index device.
   * @param checkMagic false only for rebuild, which rewrites a damaged header (spec §10.1)
   * @throws DdfsError BAD_MAGIC when page 0 lacks `DDUMBFSI`; TOO_SHORT when the file is shorter than index_size
   */
  static async load(device: Device, cfg: DdfsConfig, checkMagic = true): Promise<IndexFile> {
    const size = await device.size();
    if (size < cfg.indexSize) {
      throw new DdfsError('TOO_SHORT', `${device.path}: index file is ${size} bytes, expected ${cfg.indexSize}`, { path: device.path });
    }
    if (checkMagic) {
      const head = Buffer.alloc(MAGIC.length);
      await device.read(head, 0, head.length, 0);
      if (!head.equals(MAGIC)) throw new DdfsError('BAD_MAGIC', `${device.path}: bad index magic (expected ${INDEX_FILE_MAGIC})`, { path: device.path });
    }
    const bm = Buffer.alloc(bitmapWordBytes(cfg));
    await device.read(bm, 0, bm.length, cfg.freeblockOffset);
    const chunks: Buffer[] = [];
    let pos = cfg.nodeOffset;
    for (const len of NodeIndex.chunkSizes(cfg)) {
      const c = Buffer.allocUnsafe(len);
      const n = await device.read(c, 0, len, pos);
      if (n !== len) throw new DdfsError('TOO_SHORT', `${device.path}: short read of the node array`, { path: device.path });
      chunks.push(c);
      pos += len;
    }
    return new IndexFile(device, cfg, new Bitmap(cfg.blockCount, bm), new NodeIndex(cfg, chunks));
  }

  /** An in-memory empty index (for mkddumbfs) bound to a device. */
  static empty(device: Device, cfg: DdfsConfig): IndexFile {
    return new IndexFile(device, cfg, Bitmap.fresh(cfg.blockCount), new NodeIndex(cfg));
  }

  /** Write the header page (mkddumbfs, or a rebuild repairing the magic). */
  async writeHeader(): Promise<void> {
    await this.device.write(encodeIndexHeader(), 0);
  }

  /**
   * Write dirty bitmap and node pages back to the device (no fsync). When a write fails, what was not written stays
   * dirty for the next flush (the dirty sets were already taken), and the error is thrown.
   */
  async flush(): Promise<void> {
    await this.writeCaptured(this.capture());
  }

  /**
   * `flush` without copying the pages: they are written straight from the live table. Only for a sole owner of the
   * index that writes no block meanwhile (fsck's repair and rebuild, under the volume lock): a rebuild dirties every
   * page, and `capture` would copy the whole node array (tens of MB at 4 GiB) just to write it once. A page that
   * fails to be written stays dirty, as with `flush`.
   */
  async flushInPlace(): Promise<void> {
    const pages: CapturedPages = [];
    for (const [start, end] of this.bitmap.takeDirtyRanges()) {
      pages.push({ position: this.cfg.freeblockOffset + start, bytes: this.bitmap.bytes.subarray(start, end) });
    }
    for (const r of this.nodes.takeDirtyRanges()) {
      pages.push({ position: this.cfg.nodeOffset + r.offset, bytes: r.chunk.subarray(r.chunkOffset, r.chunkOffset + r.length) });
    }
    await this.writeCaptured(pages);
  }

  /**
   * Take the dirty bitmap and node pages as they are now: copies of their bytes and their positions in the file.
   * The pages are no longer dirty; `writeCaptured` puts them back if it fails.
   */
  capture(): CapturedPages {
    const pages: CapturedPages = [];
    for (const [start, end] of this.bitmap.takeDirtyRanges()) {
      pages.push({ position: this.cfg.freeblockOffset + start, bytes: Buffer.from(this.bitmap.bytes.subarray(start, end)) });
    }
    for (const r of this.nodes.takeDirtyRanges()) {
      pages.push({ position: this.cfg.nodeOffset + r.offset, bytes: Buffer.from(r.chunk.subarray(r.chunkOffset, r.chunkOffset + r.length)) });
    }
    return pages;
  }

  /**
   * Write captured pages. On a failure the pages not written are marked dirty again (they are written from the
   * live table next time, which is at least as new).
   */
  async writeCaptured(pages: CapturedPages): Promise<void> {
    let k = 0;
    try {
      for (; k < pages.length; k++) await this.device.write(pages[k]!.bytes, pages[k]!.position);
    } catch (err) {
      this.markDirtyAgain(pages.slice(k));
      throw err;
    }
  }

  /** Put captured pages that were not written back into the dirty sets (written from the live table later). */
  markDirtyAgain(pages: CapturedPages): void {
    this.bitmap.markAllDirty();
    for (const p of pages) {
      if (p.position >= this.cfg.nodeOffset) this.nodes.markDirtyBytes(p.position - this.cfg.nodeOffset, p.bytes.length);
    }
  }

  /** flush + fsync. */
  async sync(): Promise<void> {
    await this.flush();
    await this.device.sync();
  }
}
