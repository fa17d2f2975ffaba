/**
 * The repair, `fsckddumbfs -n` / `-N` and the daemon's check at mount (spec §10.3), steps 1–8 in upstream order:
 *
 * 1. repair node order in the index (invalid addresses deleted, misplaced nodes re-added; their addresses suspect);
 * 2. walk the files: addresses used, and file nodes the index does not map to the same address ⇒ suspect
 *    (`-N`, relaxed: a node whose hash is absent from the index is inserted as the file says, without reading it);
 * 3. node accounting: duplicate addresses and adjacent equal hashes ⇒ suspect;
 * 4. after a crash: blocks in files but not in the checkpoint ⇒ suspect;
 * 5. re-hash the suspect blocks and make the index agree with their content;
 * 6. fix files and used blocks (fix_files.ts); 7. checkpoint; 8. resolve index conflicts.
 *
 * Differences from upstream, so that one repair converges (fixture README "An upstream repair that does not
 * converge"):
 * - Every address at or past the end of the block file (index node or file node) is suspect, with or without the
 *   crash flag: it cannot be read, whatever the index says.
 * - Step 5 resolves the conflicts *before* fixing files: an index node whose suspect block is unreadable, or whose
 *   hash is not the block's content, is deleted; then each readable suspect block is added (`unique`) under its
 *   real hash. So "fix files" never links a file to a block that is not there, and a file whose block is gone gets
 *   address 1 and is listed with `C` in the same run. Upstream only finds this in step 8, after fixing files.
 * - Step 8 re-checks the index against the content hashes of step 5 (no second read); should it still change the
 *   index, files are fixed again so the result stays consistent.
 * - Step 1 also deletes nodes that store the zero-block or null hash (invariant 5 of spec §5.5).
 */
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { decodeAddress } from '../format/node.js';
import type { DeviceFactory } from '../io/device.js';
import { assert } from '../util/assert.js';
import { bytesEqual } from '../util/bytes.js';
import type { Logger } from '../util/log.js';
import { AUTOFSCK_MARKER } from '../format/layout.js';
import { BitSet } from './bitset.js';
import {
  closeDiscard, closePersist, flushIndexInPlace, elapsedText, loadCheckpoint, openFsckVolume, runsOf, throwIfInterrupted,
  visitUfsFilesOrAbort, type FsckVolume, type ProgressSink,
} from './context.js';
import { rawText } from '../util/path_text.js';
import { fixFiles, type FixFilesResult } from './fix_files.js';
import type { FileRepairStatus } from './findings.js';
import { hashBlocks } from '../store/hash_pool.js';

/** Options of `repairVolume`. */
export interface RepairVolumeOptions {
  logger: Logger;
  /**
   * The volume was not cleanly shut down (`.autofsck` was present before the caller created its own): blocks added
   * since the last checkpoint are re-hashed (spec §10.3 step 4).
   */
  crashed: boolean;
  /** Hashes referenced from outside ddfsroot that must stay (FixFilesOptions.extraReferences). */
  extraReferences?: () => Iterable<Buffer>;
  /** `-N`: insert file nodes missing from the index without reading their blocks. */
  relaxed?: boolean;
  devices?: DeviceFactory;
  /** Log every file-node update at INF. */
  verbose?: boolean;
  progress?: ProgressSink;
  /** Hash threads for the suspect re-hash (default: one per CPU; inline for few blocks). */
  hashThreads?: number;
  /** Open even when the block file lacks its magic. */
  skipBlockMagic?: boolean;
  /**
   * Ctrl-C: looked at until the repair starts writing (steps 1–5 work on the index in memory); an abort there
   * throws INTERRUPTED and leaves the volume as it was. From "fix files" on the repair runs to its end.
   */
  signal?: AbortSignal;
}

/** What a repair or rebuild did (spec §10.3, §10.4). */
export interface RepairReport {
  kind: 'repair' | 'rebuild';
  /** Step 1: index nodes deleted or moved. */
  nodeOrderFixed: number;
  /** Suspect blocks re-hashed (repair) or blocks hashed (rebuild). */
  blocksHashed: number;
  /** Blocks that could not be read. */
  readErrors: number;
  /** Index nodes deleted because their block is unreadable or holds other data (steps 5 and 8). */
  nodesFixed: number;
  files: number;
  fixedFiles: number;
  corruptedFiles: number;
  /** Files listed in corrupted.txt (bounded). */
  listed: FileRepairStatus[];
  uselessNodesDeleted: number;
  blocksUsed: number;
  blocksFree: number;
  seconds: number;
}

export function reportOf(kind: 'repair' | 'rebuild', ff: FixFilesResult, extra: Pick<RepairReport, 'nodeOrderFixed' | 'blocksHashed' | 'readErrors' | 'nodesFixed'>, t0: number): RepairReport {
  return {
    kind,
    ...extra,
    files: ff.files,
    fixedFiles: ff.fixedFiles,
    corruptedFiles: ff.corruptedFiles,
    listed: ff.listed,
    uselessNodesDeleted: ff.uselessNodesDeleted,
    blocksUsed: ff.blocksUsed,
    blocksFree: ff.blocksFree,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Repair the closed volume in `parentDir` (spec §10.3): the algorithm of `fsckddumbfs -n` (`-N` with `relaxed`),
 * which the daemon also runs at mount when `.autofsck` was present (spec §8.2 step 4). Call it before opening a
 * Volume on the same parent; it opens and closes the block and index files itself.
 *
 * Markers are the caller's business: this function neither reads nor writes `.autofsck`/`.rebuildfsck` (pass the
 * crash flag in `crashed`). It writes the index, the bitmap, UFS files (addresses, sizes, lengths),
 * `ddfsroot/.ddumbfs/corrupted.txt` (rolled over, 5 backups) and a new checkpoint `ddfsusedblocks`.
 *
 * @returns counts of what was fixed; files that remain corrupted (lost blocks, bad headers) are counted in
 *   `corruptedFiles` and listed in corrupted.txt, and do not make the repair fail (spec §10.3)
 * @throws DdfsError NOT_FOUND / BAD_CONFIG / BAD_MAGIC / TOO_SHORT when the volume cannot be opened (a bad or short
 *   index needs a rebuild); IO when a file or directory of the tree cannot be read — then the index and bitmap on
 *   disk are left as they were (UFS files already fixed stay fixed, which a later repair accepts); INTERRUPTED
 *   (data.phase) when `options.signal` aborts before fix files — nothing of the volume was written.
 */
export async function repairVolume(parentDir: string, options: RepairVolumeOptions): Promise<RepairReport> {
  const t0 = performance.now();
  const v = await openFsckVolume(parentDir, { readOnly: false, devices: options.devices, skipBlockMagic: options.skipBlockMagic });
  let ok = false;
  try {
    const report = await repairOpen(v, options, t0);
    ok = true;
    return report;
  } finally {
    if (ok) await closePersist(v);
    else await closeDiscard(v);
  }
}

/** Whether `.autofsck` exists in `parentDir` (the crash flag, spec §10.2). */
export function crashFlagOf(parentDir: string): boolean {
  return existsSync(path.join(parentDir, AUTOFSCK_MARKER));
}

async function repairOpen(v: FsckVolume, options: RepairVolumeOptions, t0: number): Promise<RepairReport> {
  const log = options.logger;
  const cfg = v.cfg;
  const bc = cfg.blockCount;
  const ns = cfg.nodeSize;
  const idx = v.store.index.nodes;
  const suspect = new BitSet(bc);
  const pastEnd = (a: number): boolean => a >= v.blocksInFile;

  // 1. node order
  let orderFixed = 0;
  // each scan of the node table is a synchronous function, which V8 optimizes (it does not inside the async repair)
  const repairNodeOrder = (): void => {
    const guardMax = 8 * idx.nodeCount + 1024;
    let guard = 0;
    for (let i = 0; i < idx.nodeCount;) {
      assert(++guard <= guardMax, 'node order repair does not converge');
      const nonZero = idx.firstNonZeroNodeFrom(i); // all-zero nodes are sound: skipped a word at a time
      if (nonZero > i) {
        i = nonZero;
        continue;
      }
      const a = idx.address(i);
      if (a === 0) {
        if (idx.compareHash(i, v.store.nullHash) !== 0) idx.clearNode(i); // an empty node has a null hash
        i++;
        continue;
      }
      if (a === 1 || a >= bc) {
        log.error(`repair_node_order: node ${i} (addr=${a}) invalid address, delete`);
        idx.delete(i);
        orderFixed++;
        continue;
      }
      if (v.store.isZeroHash(idx.chunkOfNode(i), idx.nodeOffsetInChunk(i) + cfg.addrSize)) {
        log.error(`repair_node_order: node ${i} (addr=${a}) holds the zero-block hash, delete`);
        suspect.add(a);
        idx.delete(i);
        orderFixed++;
        continue;
      }
      const ideal = idx.idealSlotOf(i);
      if (i < ideal) {
        log.error(`repair_node_order: node ${i} (addr=${a}) before it ideal position ${ideal}, fix`);
        suspect.add(a);
        idx.fix(i);
        orderFixed++;
        continue;
      }
      if (i > ideal) {
        const pa = idx.address(i - 1);
        if (pa === 0 || idx.compareHash(i - 1, idx.hashView(i)) > 0) {
          log.error(`repair_node_order: nodes ${i - 1} (addr=${pa}) and ${i} (addr=${a}) in wrong order, fix.`);
          suspect.add(a);
          idx.fix(i);
          orderFixed++;
          i = ideal;
          continue;
        }
      }
      i++;
    }
  };
  repairNodeOrder();
  log.info(`Check and repair node order in index: fixed ${orderFixed} errors.`);
  throwIfInterrupted(options.signal, 'repair node order');

  // 2. file nodes missing from the index
  log.info('Search files for nodes missing in the index.');
  options.progress?.({ phase: 'read files', done: 0, total: 0, unit: 'files' });
  let t = performance.now();
  const inFiles = new BitSet(bc);
  inFiles.add(0);
  inFiles.add(1);
  let moreSuspect = 0;
  let insertedRelaxed = 0;
  const files = await visitUfsFilesOrAbort(v, 'repair', options.progress, async (p, f) => {
    if (f.headerState === 'bad') {
      log.info(rawText`invalid header, ignore file : ${p}`);
      return;
    }
    for await (const { count, nodes } of f.chunks()) searchChunk(count, nodes);
  }, options.signal);
  /** Step 2 for one chunk of file nodes: synchronous, so that V8 optimizes it. */
  function searchChunk(count: number, nodes: Buffer): void {
    for (let k = 0; k < count; k++) {
      const o = k * ns;
      const a = decodeAddress(nodes, o, cfg.addrSize);
      if (a >= bc) continue;
      inFiles.add(a);
      if (a < 2 || suspect.has(a) || v.store.isZeroHash(nodes, o + cfg.addrSize)) continue;
      let found = -1;
      try {
        found = idx.lookupAddress(nodes, o + cfg.addrSize);
      } catch {
        // probe ran off the table: not found
      }
      if (found === a && !pastEnd(a)) continue;
      if (options.relaxed && found < 0 && !pastEnd(a)) {
        idx.add(a, nodes.subarray(o + cfg.addrSize, o + ns), 'duplicates');
        insertedRelaxed++;
        continue;
      }
      suspect.add(a);
      moreSuspect++;
    }
  }
  log.info(`Read ${files} files in ${elapsedText(t)}s.`);
  log.info(`${inFiles.count()} blocks used in files.`);
  if (options.relaxed) log.info(`${insertedRelaxed} nodes added to index from files without re-hashing.`);
  log.info(`${moreSuspect} more suspect blocks.`);

  // 3. node accounting
  const inNodes = new BitSet(bc);
  inNodes.add(0);
  inNodes.add(1);
  let duplicates = 0;
  const countNodes = (): void => {
    for (let i = idx.firstNonZeroNodeFrom(0); i < idx.nodeCount; i = idx.firstNonZeroNodeFrom(i + 1)) {
      const a = idx.address(i);
      if (a === 0) continue;
      if (inNodes.has(a)) {
        suspect.add(a);
        duplicates++;
      } else {
        inNodes.add(a);
      }
      if (pastEnd(a)) suspect.add(a);
      if (i > 0 && idx.address(i - 1) !== 0 && idx.compareHash(i - 1, idx.chunkOfNode(i), idx.nodeOffsetInChunk(i) + cfg.addrSize) === 0) {
        suspect.add(a);
        suspect.add(idx.address(i - 1));
        duplicates++;
      }
    }
  };
  countNodes();
  const blocksUsedInNodes = inNodes.count();
  log.info(`Found ${duplicates} duplicate addresses in index.`);

  // 4. blocks added since the last checkpoint
  if (options.crashed) {
    const cp = await loadCheckpoint(v.parentDir, cfg, v.devices);
    if (!cp) {
      log.error('Cannot load last recently added block backup.');
    } else {
      let recent = 0;
      for (const a of inFiles.ascending(2)) {
        if (!cp.has(a)) {
          suspect.add(a);
          recent++;
        }
      }
      log.info(`Check also last recently added blocks: ${recent}.`);
    }
  } else {
    log.info("filesystem cleanly shut down: skip 'last recently added' blocks check");
  }

  throwIfInterrupted(options.signal, 'search files');

  // 5. re-hash suspects, then make the index agree with their content
  const suspects = [...suspect.ascending(2)];
  log.info(`Re-hash all ${suspects.length} suspect blocks.`);
  t = performance.now();
  const content = new SuspectContent(suspects, cfg.hashSize);
  let rehashErrors = 0;
  await hashBlocks({
    device: v.store.blockDevice, blockSize: cfg.blockSize, hashName: cfg.hashName, threads: options.hashThreads,
    totalBlocks: suspects.length, runs: runsOf(suspects), signal: options.signal,
    onBlock: (a, h) => {
      if (h) {
        content.record(a, h, v.store.isZeroHash(h));
      } else {
        content.record(a, null, false);
        rehashErrors++;
        log.error(`cannot read block ${a}, skip`);
      }
    },
    onProgress: (done) => options.progress?.({ phase: 're-hash suspect blocks', done, total: suspects.length, unit: 'blocks' }),
  });
  // the last safe point: from here on the repair writes (UFS files, then the index and bitmap)
  throwIfInterrupted(options.signal, 're-hash suspect blocks');
  log.info(`Re-hash errors: ${rehashErrors}`);
  let nodesFixed = deleteLyingNodes(v, suspect, content, log, false);
  for (let k = 0; k < suspects.length; k++) {
    const h = content.hashAt(k);
    if (h) idx.add(suspects[k]!, h, 'unique');
  }
  if (nodesFixed > 0) log.info(`Deleted ${nodesFixed} index nodes that do not match their block.`);

  // 6, 7
  let ff = await fixFiles(v, { logger: log, verbose: options.verbose, progress: options.progress, extraReferences: options.extraReferences, expectedFiles: files });
  await flushIndexInPlace(v);
  await v.store.checkpoint();

  // 8. resolve index conflicts (a verification: step 5 already did it)
  log.info(`${blocksUsedInNodes} blocks used in nodes.`);
  log.info(`Resolve Index conflicts and re-hash ${suspects.length} suspect blocks.`);
  const late = deleteLyingNodes(v, suspect, content, log, true);
  log.info(`${late} nodes fixed.`);
  if (late > 0) {
    log.warn('the index changed after fixing files: fix files again');
    ff = await fixFiles(v, { logger: log, verbose: options.verbose, progress: options.progress, extraReferences: options.extraReferences, expectedFiles: files });
    await flushIndexInPlace(v);
    await v.store.checkpoint();
  }
  nodesFixed += late;
  return reportOf('repair', ff, { nodeOrderFixed: orderFixed, blocksHashed: suspects.length, readErrors: rehashErrors, nodesFixed }, t0);
}

/**
 * Content hashes of the suspect blocks, in the ascending order of `addresses` (the order hashBlocks delivers them):
 * one Buffer for all hashes, a state byte per block.
 */
class SuspectContent {
  private readonly hashes: Buffer;
  /** 0 not read, 1 data, 2 zero block, 3 unreadable. */
  private readonly state: Uint8Array;
  private cursor = 0;

  constructor(private readonly addresses: readonly number[], private readonly hashSize: number) {
    this.hashes = Buffer.alloc(addresses.length * hashSize);
    this.state = new Uint8Array(addresses.length);
  }

  record(address: number, hash: Buffer | null, zero: boolean): void {
    while (this.cursor < this.addresses.length && this.addresses[this.cursor]! < address) this.cursor++;
    const k = this.cursor;
    assert(this.addresses[k] === address, 'suspect blocks are delivered in order');
    if (!hash) this.state[k] = 3;
    else {
      hash.copy(this.hashes, k * this.hashSize, 0, this.hashSize);
      this.state[k] = zero ? 2 : 1;
    }
  }

  /** Position of a suspect address, or -1. */
  indexOf(address: number): number {
    let lo = 0;
    let hi = this.addresses.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.addresses[mid]!;
      if (m === address) return mid;
      if (m < address) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The content hash of the k-th suspect when it holds data (not zero, readable), else null. */
  hashAt(k: number): Buffer | null {
    return this.state[k] === 1 ? this.hashes.subarray(k * this.hashSize, (k + 1) * this.hashSize) : null;
  }

  stateAt(k: number): number {
    return this.state[k]!;
  }

  /** Whether node hash bytes equal the k-th content hash. */
  matches(k: number, nodeHash: Buffer): boolean {
    return bytesEqual(this.hashes, k * this.hashSize, nodeHash, 0, this.hashSize);
  }
}

/**
 * Delete index nodes of suspect addresses whose block is unreadable or holds other data; with `equalToo`, also a
 * node with the same hash as its predecessor. @returns nodes deleted
 */
function deleteLyingNodes(v: FsckVolume, suspect: BitSet, content: SuspectContent, log: Logger, equalToo: boolean): number {
  const idx = v.store.index.nodes;
  const hs = v.cfg.hashSize;
  let deleted = 0;
  // only nodes of suspect addresses are looked at: none, nothing to do (a clean volume; the scan was ~20 ms a call)
  if (suspect.isEmpty()) return 0;
  for (let i = 0; i < idx.nodeCount;) {
    i = idx.firstNonZeroNodeFrom(i);
    if (i >= idx.nodeCount) break;
    const a = idx.address(i);
    if (a === 0 || !suspect.has(a)) {
      i++;
      continue;
    }
    const k = content.indexOf(a);
    const state = k < 0 ? 0 : content.stateAt(k);
    let why: string | null = null;
    if (state === 3) why = `cannot read block ${a}`;
    else if (state === 2) why = `block ${a} is a zero block`;
    else if (state === 1 && !content.matches(k, idx.hashView(i))) why = `block ${a} does not match the hash`;
    if (!why && equalToo && i > 0 && idx.address(i - 1) !== 0 && bytesEqual(idx.hashView(i - 1), 0, idx.hashView(i), 0, hs)) {
      why = `hash equal to the previous node (addr=${idx.address(i - 1)})`;
    }
    if (why) {
      log.info(`${why}, delete node ${i} (addr=${a}) from index.`);
      idx.delete(i);
      deleted++;
      continue;
    }
    i++;
  }
  return deleted;
}
