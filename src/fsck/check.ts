/**
 * The read-only check, `fsckddumbfs -c` / `-C` (spec §10.5). Nothing is written to the volume.
 *
 * 1. Index scan: every node against the §5.5 invariants; collects the addresses in the index and duplicates.
 *    The range check is address ≥ block_count (upstream compares with node_count, spec §17.6).
 * 2. `-C`: re-hash every block the index references and compare with its node; mismatches are re-read one by one
 *    ("unmatching" blocks) before they count as block errors.
 * 3. File walk: for every node of every regular file, the address a repair would give it (0 for the zero-block and
 *    null hashes, else the index's address for the hash, else 1 = lost) must be the address it has. A node already
 *    lost (1 → 1) is a warning; anything else is a file error. This is exactly the rule of the repair's "fix files"
 *    step, so a repaired volume checks clean.
 * 4. Crash flag (`.autofsck` present): blocks in files but not in the checkpoint are re-hashed.
 * 4b. Every block used by the index or by a file must lie inside the block file: one past its end (a truncated
 *    block file) is reported as upstream reports a block it cannot read, once per address, as a block error, unless
 *    step 2 or 4 already read and reported it. A repair makes such blocks lost (address 1). No block is read here.
 * 5. Summary table and verdict (findings.ts).
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { decodeAddress, idealSlot } from '../format/node.js';
import type { DeviceFactory } from '../io/device.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { AUTOFSCK_MARKER } from '../format/layout.js';
import { NodeIndex } from '../store/node_index.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { pathText, rawText } from '../util/path_text.js';
import { BitSet, countSetInRange, countUsage, lastSetBelow } from './bitset.js';
import {
  closeDiscard, elapsedText, expectedAddress, loadCheckpoint, openFsckVolume, openWalkedUfsFile, runsOf, throwIfInterrupted,
  walkUfsFiles,
  type FsckVolume, type ProgressSink,
} from './context.js';
import {
  emptySummary, exitCodeOf, FINDINGS_STORED_MAX, renderSummary, statusOf, usageBar,
  type CheckStatus, type CheckSummary, type Finding, type FindingKind, type FsckExitCode, type Severity,
} from './findings.js';
import { defaultHashThreads, hashBlocks, HASH_WORKER_MIN_BLOCKS } from '../store/hash_pool.js';

export interface CheckOptions {
  logger: Logger;
  devices?: DeviceFactory;
  /** `-C`: also re-hash every block referenced by the index. */
  hashBlocks?: boolean;
  /** The volume was not cleanly shut down; default: `.autofsck` exists in the parent. */
  crashed?: boolean;
  /** Receives upstream's plain report lines ("== Check index", findings, the summary), without newline; a line
   *  naming a UFS path that is not UTF-8 is a Buffer holding the name's raw bytes (path_text.ts rawText). */
  out?: (line: string | Buffer) => void;
  progress?: ProgressSink;
  /** Hash threads for -C (default: one per CPU). */
  hashThreads?: number;
  /** Open even when the block file lacks its magic. */
  skipBlockMagic?: boolean;
  /** Ctrl-C: the check stops at its next safe point (it writes nothing, so any point is safe). */
  signal?: AbortSignal;
}

export interface CheckReport {
  summary: CheckSummary;
  status: CheckStatus;
  exitCode: FsckExitCode;
  /** The first FINDINGS_STORED_MAX findings. */
  findings: Finding[];
  /** Findings not stored because of the bound. */
  findingsDropped: number;
}

/**
 * The first node at or after `from` that is not a sound empty node (address 0 and the null or the zero-block hash),
 * or node_count. Most of a table is all-zero empty nodes, which NodeIndex.firstNonZeroNodeFrom skips a word at a
 * time, where step 1's general loop costs hundreds of ns a node.
 */
export function skipSoundEmptyNodes(idx: NodeIndex, from: number, zeroHash: Buffer): number {
  const { addrSize: as, hashSize: hs, nodeCount } = idx;
  for (let i = idx.firstNonZeroNodeFrom(from); i < nodeCount; i = idx.firstNonZeroNodeFrom(i + 1)) {
    const c = idx.chunkOfNode(i);
    const o = idx.nodeOffsetInChunk(i);
    for (let b = 0; b < as; b++) if (c[o + b] !== 0) return i; // a used node
    for (let b = 0; b < hs; b++) if (c[o + as + b] !== zeroHash[b]) return i;
    // an empty node with the zero-block hash: sound
  }
  return nodeCount;
}

/** Where scanSoundNodes stopped, and whether the node before it is empty (step 1's `prevEmpty`). */
interface SoundScan {
  prevEmpty: boolean;
}

/**
 * Step 1's common case in one small synchronous loop (V8 optimizes it; the general loop costs hundreds of ns a node):
 * from node `from` up to `limit`, pass over every node that has no finding and record it as the general loop would
 * (a used node's address in `inIndexBytes`, its position + 1 in `nodeOfAddress` when there is one), and return the
 * first node that
 * needs the general loop, or `limit`. A node has no finding when it is a sound empty node (address 0 and the null or
 * the zero-block hash), or a used node with an address in [2, block_count) not seen before, a hash that is neither
 * of those, at or after its ideal slot, and either at its ideal slot after an empty node or after a node with a
 * smaller hash. `st.prevEmpty` is read at `from` and left as it is at the node returned.
 */
export function scanSoundNodes(v: FsckVolume, from: number, limit: number, st: SoundScan, nodeOfAddress: Uint32Array | null, inIndexBytes: Uint8Array): number {
  const idx = v.store.index.nodes;
  const { addrSize: as, hashSize: hs, nodeSize: ns, blockCount: bc, nodeOverflow: ov } = v.cfg;
  const chunks = idx.chunks;
  const npc = NodeIndex.nodesPerChunk(ns);
  let prevEmpty = st.prevEmpty;
  let i = from;
  while (i < limit) {
    const nz = idx.firstNonZeroNodeFrom(i);
    if (nz > i) {
      prevEmpty = true;
      i = nz;
      if (i >= limit) break;
    }
    const k = Math.floor(i / npc);
    const c = chunks[k]!;
    const o = (i - k * npc) * ns;
    const a = as === 3 ? c[o]! | (c[o + 1]! << 8) | (c[o + 2]! << 16) : decodeAddress(c, o, as);
    const ho = o + as;
    if (a === 0) {
      if (!v.store.isZeroHash(c, ho)) break;
      prevEmpty = true;
      i++;
      continue;
    }
    // an address seen before is set in inIndexBytes (which holds exactly the first nodes' addresses and 0, 1)
    if (a < 2 || a >= bc || (inIndexBytes[a >>> 3]! & (0x80 >>> (a & 7))) !== 0 || v.store.isZeroHash(c, ho)) break;
    const ideal = idealSlot(c, ho, bc, ov);
    if (i < ideal) break;
    if (prevEmpty) {
      if (i > ideal) break;
    } else {
      // the previous node's hash, in this chunk or at the end of the one before
      const pc = o >= ns ? c : chunks[k - 1]!;
      const po = (o >= ns ? o : pc.length) - ns + as;
      let d = 0;
      for (let j = 0; j < hs; j++) {
        d = pc[po + j]! - c[ho + j]!;
        if (d !== 0) break;
      }
      if (d >= 0) break;
    }
    inIndexBytes[a >>> 3] = inIndexBytes[a >>> 3]! | (0x80 >>> (a & 7));
    if (nodeOfAddress !== null) nodeOfAddress[a] = i + 1;
    prevEmpty = false;
    i++;
  }
  st.prevEmpty = prevEmpty;
  return Math.min(i, limit);
}

/**
 * Step 3's common case in a small synchronous loop (V8 optimizes it, unlike the same loop inside the async check):
 * from node `from` of a chunk of `count` file nodes, add each sound node's address to `inFiles` and return the
 * first node that has a finding (an address other than the expected one, or a lost block), or `count`. A node
 * returned is not added: the caller handles it whole.
 */
function skipSoundFileNodes(v: FsckVolume, nodes: Buffer, from: number, count: number, inFiles: BitSet): number {
  const { nodeSize: ns, addrSize, blockCount: bc } = v.cfg;
  const inFilesBytes = inFiles.bytes;
  for (let k = from; k < count; k++) {
    const o = k * ns;
    const a = addrSize === 3 ? nodes[o]! | (nodes[o + 1]! << 8) | (nodes[o + 2]! << 16) : decodeAddress(nodes, o, addrSize);
    if (a === 1 || a !== expectedAddress(v, nodes, o)) return k;
    if (a < bc) inFilesBytes[a >>> 3] = inFilesBytes[a >>> 3]! | (0x80 >>> (a & 7));
  }
  return count;
}

/**
 * Check the closed volume in `parentDir` (spec §10.5).
 * @returns the summary, verdict, exit code (0 OK, 2 WARNING, 1 ERROR) and findings
 * @throws DdfsError NOT_FOUND / BAD_CONFIG / BAD_MAGIC / TOO_SHORT when the volume cannot be opened; INTERRUPTED (data.phase)
 *   once `options.signal` is aborted (no verdict then)
 */
export async function checkVolume(parentDir: string, options: CheckOptions): Promise<CheckReport> {
  const out = options.out ?? (() => undefined);
  const log = options.logger;
  const crashed = options.crashed ?? existsSync(path.join(parentDir, AUTOFSCK_MARKER));
  const v = await openFsckVolume(parentDir, { readOnly: true, devices: options.devices, skipBlockMagic: options.skipBlockMagic });
  const findings: Finding[] = [];
  let dropped = 0;
  const s = emptySummary();
  const report = (kind: FindingKind, severity: Severity, line: string | Buffer, extra: Partial<Finding> = {}): void => {
    out(line);
    const message = pathText(line);
    if (findings.length < FINDINGS_STORED_MAX) findings.push({ kind, severity, message, ...extra });
    else dropped++;
  };
  try {
    const cfg = v.cfg;
    const bc = cfg.blockCount;
    const idx = v.store.index.nodes;
    const bitmap = v.store.index.bitmap;
    let checkpoint = null;
    if (crashed) {
      checkpoint = await loadCheckpoint(v.parentDir, cfg, v.devices);
      if (!checkpoint) {
        log.error('Cannot load last recently added block backup.');
        if (findings.length < FINDINGS_STORED_MAX) {
          findings.push({ kind: 'CHECKPOINT_MISSING', severity: 'WAR', message: 'Cannot load last recently added block backup.' });
        }
      }
    }

    /** Addresses already reported as unreadable (by -C or the recent-block check). */
    const unreadableReported = new BitSet(bc);

    // 1. index scan
    out('== Check index');
    let t0 = performance.now();
    const inIndex = new BitSet(bc);
    inIndex.add(0);
    inIndex.add(1);
    /**
     * Node position + 1 of the first node holding each address (0 = none), made only when something needs it (-C, a
     * duplicate address's message, the recent-block check, a block past the end): 4 bytes a block that a clean -c
     * never reads, and the scan's random writes to it were a third of the scan's time. Once made, the scan keeps it.
     */
    assert(idx.nodeCount < 0xffffffff, 'node_count fits 32 bits');
    let nodeOfAddress: Uint32Array | null = options.hashBlocks ? new Uint32Array(bc) : null;
    /** nodeOfAddress, made from the nodes before `upTo` (the ones the scan has passed) when it is not yet. */
    const nodeMap = (upTo: number): Uint32Array => {
      if (nodeOfAddress !== null) return nodeOfAddress;
      const m = new Uint32Array(bc);
      const as = cfg.addrSize;
      for (let j = idx.firstNonZeroNodeFrom(0); j < upTo; j = idx.firstNonZeroNodeFrom(j + 1)) {
        const a = decodeAddress(idx.chunkOfNode(j), idx.nodeOffsetInChunk(j), as);
        if (a >= 2 && a < bc && m[a] === 0) m[a] = j + 1;
      }
      nodeOfAddress = m;
      return m;
    };
    const dupNodes: number[] = [];
    const dupAddresses = new BitSet(bc);
    let prevEmpty = true;
    const indexError = (kind: FindingKind, message: string, node: number, address: number): void => {
      s.indexErrors++;
      report(kind, 'ERR', message, { node, address });
    };
    let progressAt = -1;
    // a synchronous function of its own, so that V8 optimizes the loop (it does not, inside the async check)
    const sound: SoundScan = { prevEmpty: true };
    const scanIndex = (): void => {
      for (let i = 0; i < idx.nodeCount; i++) {
        if (i >>> 16 !== progressAt) {
          progressAt = i >>> 16;
          options.progress?.({ phase: 'check index', done: i, total: idx.nodeCount, unit: 'nodes' });
        }
        // the nodes without a finding, up to the next progress step; the node it stops at is handled below
        sound.prevEmpty = prevEmpty;
        const limit = Math.min(idx.nodeCount, (progressAt + 1) * 0x10000);
        const next = scanSoundNodes(v, i, limit, sound, nodeOfAddress, inIndex.bytes);
        prevEmpty = sound.prevEmpty;
        if (next >= limit) {
          i = limit - 1;
          continue;
        }
        i = next;
        // the node read in place: a hashView per node would allocate a Buffer for each of millions of nodes
        const nodes = idx.chunkOfNode(i);
        const ho = idx.nodeOffsetInChunk(i) + cfg.addrSize;
        const a = decodeAddress(nodes, ho - cfg.addrSize, cfg.addrSize);
        if (a === 0) {
          if (!v.store.isZeroHash(nodes, ho)) indexError('INDEX_EMPTY_NODE_HASH', `node ${i} (addr=0) has a wrong hash`, i, 0);
          prevEmpty = true;
          continue;
        }
        if (a === 1) {
          indexError('INDEX_LOST_ADDRESS', `node ${i} (addr=1) holds the lost-block address`, i, a);
        } else if (a >= bc) {
          indexError('INDEX_ADDRESS_OUT_OF_RANGE', `node ${i} (addr=${a}) is out of range (block_count=${bc})`, i, a);
        } else if (inIndex.has(a)) {
          // "Index blocks dup" counts addresses used more than once; every extra node is a finding
          if (!dupAddresses.has(a)) s.indexBlocksDup++;
          dupAddresses.add(a);
          dupNodes.push(i);
          report('INDEX_DUPLICATE_ADDRESS', 'ERR', `node ${i} (addr=${a}) address already used by node ${nodeMap(i)[a]! - 1}`, { node: i, address: a });
        } else {
          inIndex.add(a);
          if (nodeOfAddress !== null) nodeOfAddress[a] = i + 1;
        }
        if (v.store.isZeroHash(nodes, ho)) indexError('INDEX_ZERO_HASH', `node ${i} (addr=${a}) holds the zero-block hash`, i, a);
        // one placement finding per node, the first that applies (as upstream)
        const ideal = idx.idealSlotOf(i);
        const c = prevEmpty ? 0 : idx.compareHash(i - 1, nodes, ho);
        const p = prevEmpty ? 0 : idx.address(i - 1);
        if (i < ideal) indexError('INDEX_BEFORE_IDEAL', `node ${i} (addr=${a}) before its expected position ${ideal}`, i, a);
        else if (i > ideal && prevEmpty) {
          indexError('INDEX_GAP', `node ${i} (addr=${a}) is preceded by an empty node and is not at its optimum position`, i, a);
        } else if (!prevEmpty && c === 0) {
          indexError('INDEX_EQUAL_HASH', `node ${i} (addr=${a}) hash equal previous hash (addr=${p}), this is unexpected`, i, a);
        } else if (!prevEmpty && c > 0) {
          indexError('INDEX_ORDER', `node ${i} (addr=${a}) hash order mismatch with previous node (addr=${p})`, i, a);
        }
        prevEmpty = false;
      }
    };
    scanIndex();
    options.progress?.({ phase: 'check index', done: idx.nodeCount, total: idx.nodeCount, unit: 'nodes' });
    throwIfInterrupted(options.signal, 'check index');
    out(`== Checked ${idx.nodeCount} nodes in ${elapsedText(t0)}s`);

    // 2. -C: every indexed block
    if (options.hashBlocks) {
      const toHash = inIndex.count() - 2;
      const threads = toHash < HASH_WORKER_MIN_BLOCKS ? 0 : (options.hashThreads ?? defaultHashThreads());
      out(`started ${Math.max(1, threads)} hashing thread(s)`);
      out('== Check block hash');
      t0 = performance.now();
      const unmatching: number[] = [];
      const nodeOf = nodeMap(idx.nodeCount);
      const r = await hashBlocks({
        device: v.store.blockDevice, blockSize: cfg.blockSize, hashName: cfg.hashName, threads, totalBlocks: toHash,
        runs: runsOf(inIndex.ascending(2)), signal: options.signal,
        onBlock: (a, h) => {
          const node = nodeOf[a]! - 1;
          if (!h || v.store.isZeroHash(h) || idx.compareHash(node, h) !== 0) unmatching.push(node);
        },
        onProgress: (done) => options.progress?.({ phase: 'check block hash', done, total: toHash, unit: 'blocks' }),
      });
      throwIfInterrupted(options.signal, 'check block hash');
      // upstream counts the reserved blocks 0 and 1 as checked
      out(`== Checked ${r.hashed + r.unreadable + 2} blocks in ${elapsedText(t0)}s`);
      for (const n of dupNodes) unmatching.push(n);
      out(`== Check unmatching ${unmatching.length} block`);
      t0 = performance.now();
      const block = Buffer.allocUnsafe(cfg.blockSize);
      for (const node of unmatching) {
        throwIfInterrupted(options.signal, 'check unmatching blocks');
        const a = idx.address(node);
        try {
          await v.store.readBlock(a, block, 0);
        } catch {
          unreadableReported.add(a);
          s.blockErrors++;
          report('BLOCK_UNREADABLE', 'ERR', `node ${node} cannot read block ${a} (beyond the end of the block file).`, { node, address: a });
          continue;
        }
        const h = v.store.hasher.hash(block);
        if (v.store.isZeroHash(h)) {
          s.blockErrors++;
          report('BLOCK_ZERO', 'ERR', `node ${node} (addr=${a}) block ${a} is the zero block`, { node, address: a });
        } else if (idx.compareHash(node, h) !== 0) {
          s.blockErrors++;
          report('BLOCK_HASH_MISMATCH', 'ERR', `node ${node} (addr=${a}) hash does not match the content of block ${a}`, { node, address: a });
        }
      }
      out(`== Checked ${unmatching.length} unmatching blocks in ${elapsedText(t0)}s`);
    }

    // 3. files
    out('== Read files');
    options.progress?.({ phase: 'read files', done: 0, total: 0, unit: 'files' });
    t0 = performance.now();
    const inFiles = new BitSet(bc);
    inFiles.add(0);
    inFiles.add(1);
    const { nodeSize: ns, addrSize, blockSize: bs } = cfg;
    const fileError = (kind: FindingKind, message: string | Buffer, extra: Partial<Finding>): void => {
      s.filesErrors++;
      report(kind, 'ERR', message, extra);
    };
    const field = (what: string): string => what.padEnd(31);
    for await (const p of walkUfsFiles(v, (dir, err) => {
      fileError('FILE_UNREADABLE', rawText`cannot read directory: ${dir}: ${err.message}`, { path: pathText(dir) });
      return 'skip';
    })) {
      throwIfInterrupted(options.signal, 'read files');
      // the path as text only for a finding: most files have none, and decoding thousands of names costs
      const where0 = (): { path: string } => ({ path: pathText(p) });
      s.files++;
      if ((s.files & 0x3ff) === 0) options.progress?.({ phase: 'read files', done: s.files, total: 0, unit: 'files' });
      let f: UfsNodeFile;
      try {
        f = await openWalkedUfsFile(v, p);
      } catch (err) {
        fileError('FILE_UNREADABLE', rawText`cannot open file: ${p}: ${(err as Error).message}`, where0());
        continue;
      }
      try {
        if (f.headerState === 'empty') continue;
        if (f.headerState === 'bad') {
          fileError('FILE_BAD_HEADER', rawText`corrupted header: ${p}`, where0());
          continue;
        }
        if (f.partialBytes > 0) fileError('FILE_PARTIAL_NODE', rawText`incomplete node in file: ${p}`, where0());
        if (f.nodeCount !== Math.ceil(f.size / bs)) fileError('FILE_SIZE_MISMATCH', rawText`size mismatch in file: ${p}`, where0());
        let lostReported = false;
        for await (const { first, count, nodes } of f.chunks()) {
          for (let k = 0; k < count; k++) {
            k = skipSoundFileNodes(v, nodes, k, count, inFiles);
            if (k >= count) break;
            const o = k * ns;
            const a = decodeAddress(nodes, o, addrSize);
            if (a < bc) inFiles.add(a);
            const exp = expectedAddress(v, nodes, o);
            const where = { path: pathText(p), fileNode: first + k, address: a, expectedAddress: exp };
            if (a === 1) {
              // counted as lost even when the hash is back in the index (then also an error: repair re-links it)
              s.filesLostBlocks++;
              if (!lostReported) report('FILE_LOST_BLOCK', 'WAR', rawText`${field('file has lost blocks')}: ${p}`, where);
              lostReported = true;
            }
            if (a === exp) continue;
            if (a === 0) fileError('FILE_ZERO_WRONG_HASH', rawText`${field('wrong hash for block zero')}: ${p}`, where);
            else if (a === 1) fileError('FILE_LOST_BUT_INDEXED', rawText`${field('addr==1 but hash found in index')}: ${p}`, where);
            else if (exp === 1) fileError('FILE_NOT_IN_INDEX', rawText`${field('block not found in index')}: ${p} (${a} -> 1)`, where);
            else if (exp === 0) fileError('FILE_ZERO_HASH_ADDRESS', rawText`${field('zero block not at address 0')}: ${p} (${a} -> 0)`, where);
            else fileError('FILE_OTHER_ADDRESS', rawText`${field('found another block for hash')}: ${p} (${a} -> ${exp})`, where);
          }
        }
      } catch (err) {
        fileError('FILE_UNREADABLE', rawText`cannot read file: ${p}: ${(err as Error).message}`, where0());
      } finally {
        await f.close().catch(() => undefined);
      }
    }
    options.progress?.({ phase: 'read files', done: s.files, total: s.files, unit: 'files' });
    out(`== Read ${s.files} files in ${elapsedText(t0)}s`);

    // 4. blocks added since the last checkpoint
    if (!crashed) {
      out("filesystem cleanly shut down: skip 'last recently added' blocks check");
    } else if (checkpoint) {
      const recent: number[] = [];
      for (const a of inFiles.ascending(2)) if (!checkpoint.has(a)) recent.push(a);
      out(`== Check 'last recently added' blocks: ${recent.length}.`);
      const nodeOf = nodeMap(idx.nodeCount);
      await hashBlocks({
        device: v.store.blockDevice, blockSize: cfg.blockSize, hashName: cfg.hashName, totalBlocks: recent.length,
        threads: options.hashThreads, runs: runsOf(recent), signal: options.signal,
        onBlock: (a, h) => {
          const node = nodeOf[a]! - 1;
          s.testedHashes++;
          if (!h) {
            s.wrongHashes++;
            unreadableReported.add(a);
            report('RECENT_UNREADABLE', 'ERR', `node ${node} cannot read block ${a} (beyond the end of the block file).`, { node, address: a });
          } else if (node >= 0 && idx.compareHash(node, h) !== 0) {
            s.wrongHashes++;
            report('RECENT_WRONG_HASH', 'ERR', `node ${node} (addr=${a}) hash does not match the content of block ${a}`, { node, address: a });
          }
        },
        onProgress: (done) => options.progress?.({ phase: "check 'last recently added' blocks", done, total: recent.length, unit: 'blocks' }),
      });
      throwIfInterrupted(options.signal, "check 'last recently added' blocks");
    }

    // 4b. used blocks past the end of the block file
    const pastEndFrom = Math.max(2, v.blocksInFile);
    for (const used of [inIndex, inFiles]) {
      for (const a of used.ascending(pastEndFrom)) {
        if (unreadableReported.has(a)) continue;
        unreadableReported.add(a);
        s.blockErrors++;
        const node = nodeMap(idx.nodeCount)[a]! - 1;
        const who = node >= 0 ? `node ${node}` : 'a file node';
        report('BLOCK_PAST_END', 'ERR', `${who} cannot read block ${a} (beyond the end of the block file).`,
          { node: node >= 0 ? node : undefined, address: a });
      }
    }

    // 5. summary
    s.totalBlocks = bc;
    s.usedBlocks = bitmap.countSet;
    s.freeBlocks = bc - s.usedBlocks;
    s.lastUsedBlock = Math.max(0, lastSetBelow(bitmap.bytes, bc));
    s.usageBar = usageBar(bc, (from, to) => countSetInRange(bitmap.bytes, from, to));
    s.indexBlocks = inIndex.count();
    s.filesBlocks = inFiles.count();
    Object.assign(s, countUsage(bc, bitmap.bytes, inIndex.bytes, inFiles.bytes));
    const status = statusOf(s);
    for (const line of renderSummary(s, status)) out(line);
    return { summary: s, status, exitCode: exitCodeOf(status), findings, findingsDropped: dropped };
  } finally {
    await closeDiscard(v);
  }
}

