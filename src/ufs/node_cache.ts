/**
 * The node list of one open UFS file (spec §7) as UfsFile sees it, without holding it whole in memory: a sparse,
 * bounded cache of node pages over the UFS file, plus the few nodes whose value in memory is not (yet) the one in
 * the UFS file. A terabyte sparse file costs what the pages it touched cost, never its apparent size (issue 9).
 *
 * The value of node j ("in memory") is, in this order: its override; else, for j < countOnDisk, the node in the
 * UFS file (from a resident page or read on demand); else all zeros (a node past the UFS file).
 *
 * Invariants:
 * - A resident page holds exactly the UFS file's bytes for its nodes below countOnDisk and zeros at and past it
 *   (every write of the UFS file made through UfsFile is reported with `wrote`, every ftruncate with `extendTo`/`cut`).
 * - Overrides are the nodes UfsFile holds back (they replace a node naming a stored block and wait for the block
 *   file's sync) and the nodes whose UFS write failed (this process must still read them as written): bounded by
 *   HELD_NODE_COUNT_MAX plus the nodes of failed writes, never by the file's size.
 * - At most `pageCountResidentMax` pages are resident; the least recently used one is dropped first. Every reader
 *   gets a copy, so dropping a page never changes what a caller is looking at.
 * - Not thread-safe by itself: UfsFile calls it under its readers–writer lock, so loads (readers) never overlap a
 *   mutation (writers); concurrent loads of one page share one read.
 */
import { UFS_HEADER_SIZE } from '../limits.js';
import { decodeAddress } from '../format/node.js';
import type { Device } from '../io/device.js';

export interface NodeCacheGeometry {
  /** Bytes per node (cfg node_size). */
  nodeSize: number;
  /** Bytes of the address at the start of each node (cfg addr_size). */
  addrSize: number;
  /** Nodes per page. */
  pageNodeCount: number;
  /** Pages kept in memory at most. */
  pageCountResidentMax: number;
}

export class NodeCache {
  /** Resident pages by page index, least recently used first (Map insertion order). */
  private readonly pages = new Map<number, Buffer>();
  /** Page reads in flight, shared by concurrent readers. */
  private readonly loads = new Map<number, Promise<Buffer>>();
  /** Nodes whose value in memory differs from the UFS file (held back, or a failed write), by node index. */
  private readonly overrides = new Map<number, Buffer>();
  /** Bumped by every mutation: a page read that overlapped one is not kept (defensive: the lock prevents it). */
  private generation = 0;
  private readonly ns: number;
  private readonly pageNodes: number;

  /**
   * @param device the open UFS file (only read)
   * @param countOnDisk whole nodes in the UFS file now
   */
  constructor(private readonly device: Device, private countOnDisk: number, private readonly geo: NodeCacheGeometry) {
    this.ns = geo.nodeSize;
    this.pageNodes = geo.pageNodeCount;
  }

  /** Whole nodes in the UFS file. */
  get nodeCountOnDisk(): number {
    return this.countOnDisk;
  }

  /** Bytes of node state held in memory: resident pages and overrides. */
  get sizeBytes(): number {
    let n = 0;
    for (const page of this.pages.values()) n += page.length;
    return n + this.overrides.size * this.ns;
  }

  /** Resident pages. */
  get pageCount(): number {
    return this.pages.size;
  }

  /** Pages needed to cover the nodes in the UFS file. */
  private get pageCountOnDisk(): number {
    return Math.ceil(this.countOnDisk / this.pageNodes);
  }

  /** Whether every node of the UFS file is in memory (a resident page or an override): nothing needs a disk read. */
  get fullyResident(): boolean {
    const need = this.pageCountOnDisk;
    if (this.pages.size < need) return false;
    for (let p = 0; p < need; p++) if (!this.pages.has(p)) return false;
    return true;
  }

  /** The resident page `p`, marked most recently used; undefined when not resident. */
  private resident(p: number): Buffer | undefined {
    const page = this.pages.get(p);
    if (page) {
      this.pages.delete(p);
      this.pages.set(p, page);
    }
    return page;
  }

  private keep(p: number, page: Buffer): void {
    this.pages.set(p, page);
    while (this.pages.size > this.geo.pageCountResidentMax) {
      const oldest = this.pages.keys().next().value as number;
      this.pages.delete(oldest);
    }
  }

  /** Page `p` (below pageCountOnDisk), read from the UFS file when not resident. */
  private page(p: number): Promise<Buffer> | Buffer {
    const hit = this.resident(p);
    if (hit) return hit;
    const pending = this.loads.get(p);
    if (pending) return pending;
    const load = this.readPage(p).finally(() => this.loads.delete(p));
    this.loads.set(p, load);
    return load;
  }

  private async readPage(p: number): Promise<Buffer> {
    const ns = this.ns;
    const generation = this.generation;
    const first = p * this.pageNodes;
    const count = Math.min(this.pageNodes, this.countOnDisk - first);
    const page = Buffer.alloc(this.pageNodes * ns);
    const n = await this.device.read(page, 0, count * ns, UFS_HEADER_SIZE + first * ns);
    // a short read (the UFS file was cut by someone else): what is missing reads as zeros, whole nodes only
    page.fill(0, Math.floor(n / ns) * ns);
    if (generation === this.generation) this.keep(p, page);
    return page;
  }

  /**
   * The values of nodes [first, first+count) (see the file comment), copied into `out` at `outOffset` (or a new
   * Buffer of count·node_size bytes).
   * @throws Device read errors
   */
  async read(first: number, count: number, out?: Buffer, outOffset = 0): Promise<Buffer> {
    const ns = this.ns;
    const P = this.pageNodes;
    const dst = out ?? Buffer.alloc(count * ns);
    const end = first + count;
    const diskEnd = Math.min(end, this.countOnDisk);
    let j = first;
    while (j < diskEnd) {
      const p = Math.floor(j / P);
      const upTo = Math.min(diskEnd, (p + 1) * P);
      const page = await this.page(p);
      page.copy(dst, outOffset + (j - first) * ns, (j - p * P) * ns, (upTo - p * P) * ns);
      j = upTo;
    }
    if (j < end) dst.fill(0, outOffset + (j - first) * ns, outOffset + count * ns);
    if (this.overrides.size > 0) {
      if (this.overrides.size < count) {
        for (const [k, node] of this.overrides) if (k >= first && k < end) node.copy(dst, outOffset + (k - first) * ns);
      } else {
        for (let k = first; k < end; k++) this.overrides.get(k)?.copy(dst, outOffset + (k - first) * ns);
      }
    }
    return dst;
  }

  /** The address of node j (its value in memory). @throws Device read errors */
  async address(j: number): Promise<number> {
    const as = this.geo.addrSize;
    const o = this.overrides.get(j);
    if (o) return decodeAddress(o, 0, as);
    if (j >= this.countOnDisk) return 0;
    const p = Math.floor(j / this.pageNodes);
    const page = this.resident(p) ?? (await this.page(p));
    return decodeAddress(page, (j - p * this.pageNodes) * this.ns, as);
  }

  /** The override of node j, if any (a view: copy what must outlive the next mutation). */
  override(j: number): Buffer | undefined {
    return this.overrides.get(j);
  }

  /** Make `node` (node_size bytes, copied) the value of node j in memory, whatever the UFS file holds. */
  setOverride(j: number, node: Buffer): void {
    this.overrides.set(j, Buffer.from(node.subarray(0, this.ns)));
  }

  /**
   * The UFS file now holds `nodes` (whole nodes) from node `first` on: resident pages take them, their overrides
   * end, countOnDisk covers them. A page not resident is made resident only when all its other nodes are known to be
   * zeros (it starts at or past the old end of the UFS file: appending keeps the file's last page in memory).
   */
  wrote(first: number, nodes: Buffer): void {
    const ns = this.ns;
    const P = this.pageNodes;
    const count = nodes.length / ns;
    const end = first + count;
    const oldCount = this.countOnDisk;
    this.generation++;
    for (let p = Math.floor(first / P); p * P < end; p++) {
      let page = this.resident(p);
      if (!page) {
        if (p * P < oldCount) continue;
        page = Buffer.alloc(P * ns);
        this.keep(p, page);
      }
      const from = Math.max(first, p * P);
      const to = Math.min(end, (p + 1) * P);
      nodes.copy(page, (from - p * P) * ns, (from - first) * ns, (to - first) * ns);
    }
    if (this.overrides.size > 0) {
      if (this.overrides.size < count) {
        for (const k of [...this.overrides.keys()]) if (k >= first && k < end) this.overrides.delete(k);
      } else {
        for (let k = first; k < end; k++) this.overrides.delete(k);
      }
    }
    if (end > this.countOnDisk) this.countOnDisk = end;
  }

  /** The UFS file was extended with zero nodes (ftruncate) to `count` nodes. */
  extendTo(count: number): void {
    this.generation++;
    if (count > this.countOnDisk) this.countOnDisk = count;
  }

  /** The UFS file was cut to `count` nodes: nodes at and past it are gone (zeros), and so are their overrides. */
  cut(count: number): void {
    const ns = this.ns;
    const P = this.pageNodes;
    this.generation++;
    for (const [p, page] of [...this.pages]) {
      if (p * P >= count) this.pages.delete(p);
      else if ((p + 1) * P > count) page.fill(0, (count - p * P) * ns);
    }
    for (const k of [...this.overrides.keys()]) if (k >= count) this.overrides.delete(k);
    if (this.countOnDisk > count) this.countOnDisk = count;
  }

  /** Whether every node in [first, countOnDisk) is in a resident page. */
  residentFrom(first: number): boolean {
    const need = this.pageCountOnDisk;
    for (let p = Math.floor(first / this.pageNodes); p < need; p++) if (!this.pages.has(p)) return false;
    return true;
  }

  /**
   * Call `visit` with every node buffer held in memory (resident pages, then overrides) and the node index of its
   * first node; synchronous, so it sees one moment.
   */
  forEachInMemory(visit: (nodes: Buffer, first: number) => void): void {
    for (const [p, page] of this.pages) visit(page, p * this.pageNodes);
    for (const [k, node] of this.overrides) visit(node, k);
  }
}
