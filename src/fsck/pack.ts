/**
 * Pack, `fsckddumbfs -k` (spec §10.7): move every used block below U = number of used blocks (0 and 1 included), so
 * the block file can be truncated to U·bs (and shrunk with migrateddumbfs).
 *
 * The k-th used address ≥ U moves to the k-th free address in [2, U), both in ascending order (the same rank rule
 * remaps file nodes and index nodes; nodes stay at their index positions since those depend on the hash only).
 * Order, for crash safety: copy the blocks and fsync; rewrite the file nodes; rewrite index nodes and the bitmap and
 * sync the index; truncate a regular block file; write a new checkpoint (the old one names addresses that moved).
 * A crash before the end leaves the old copies in place and `.autofsck` (removed by the caller after the pack), so
 * the next repair re-links any file that still points at an old address.
 *
 * Only run it on a consistent volume: right after a successful repair or rebuild. Files with an invalid header keep
 * their salvaged blocks (fix_files.ts); their nodes are remapped like the others.
 */
import * as fs from 'node:fs';
import { decodeAddress, encodeAddress } from '../format/node.js';
import type { DeviceFactory } from '../io/device.js';
import { resolveVolumePath } from '../store/block_store.js';
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { DdfsError } from '../errors.js';
import {
  closeDiscard, closePersist, flushIndexInPlace, elapsedText, expectedAddress, openFsckVolume, throwIfInterrupted, walkUfsFiles,
  type FsckVolume, type ProgressSink,
} from './context.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { pathText, rawText } from '../util/path_text.js';
import { HASH_BATCH_SIZE_MAX } from '../store/hash_pool.js';

export interface PackOptions {
  logger: Logger;
  devices?: DeviceFactory;
  progress?: ProgressSink;
  /**
   * Ctrl-C: looked at while the blocks are copied (step 1, into free slots only); an abort there throws
   * INTERRUPTED with nothing moved (the index, bitmap and files unchanged). From step 2 on the pack runs to its end.
   */
  signal?: AbortSignal;
}

export interface PackReport {
  /** Used blocks (incl. 0 and 1) = the new block-file length in blocks. */
  blocksUsed: number;
  blocksMoved: number;
  fileNodesUpdated: number;
  indexNodesUpdated: number;
  /** New block-file size in bytes, or null when the block file is a device (not truncated). */
  blockFileSize: number | null;
  seconds: number;
}

/**
 * Pack the closed, consistent volume in `parentDir` (spec §10.7).
 * @throws DdfsError NOT_FOUND / BAD_CONFIG / BAD_MAGIC / TOO_SHORT; IO on read/write failures; INTERRUPTED
 *   (data.phase) when `options.signal` aborts while blocks are copied
 */
export async function packVolume(parentDir: string, options: PackOptions): Promise<PackReport> {
  const v = await openFsckVolume(parentDir, { readOnly: false, devices: options.devices });
  let ok = false;
  try {
    const r = await packOpen(v, options);
    ok = true;
    return r;
  } finally {
    if (ok) await closePersist(v);
    else await closeDiscard(v);
  }
}

async function packOpen(v: FsckVolume, options: PackOptions): Promise<PackReport> {
  const t0 = performance.now();
  const log = options.logger;
  const { blockCount: bc, blockSize: bs, nodeSize: ns, addrSize } = v.cfg;
  const bitmap = v.store.index.bitmap;
  const idx = v.store.index.nodes;
  const used = bitmap.countSet;
  assert(bitmap.has(0) && bitmap.has(1), 'blocks 0 and 1 are always used');

  // sources: used addresses ≥ U; destinations: free addresses in [2, U); same count since U bits are set
  const sources: number[] = [];
  for (const a of bitmap.setAscending(used)) sources.push(a);
  const dests: number[] = [];
  for (let a = 2; a < used && dests.length < sources.length; a++) if (!bitmap.has(a)) dests.push(a);
  assert(dests.length === sources.length, 'pack: free slots below the used count match the used blocks above it');
  log.info(`Pack: ${used} blocks used, move ${sources.length} blocks.`);

  // remap by rank (binary search in the ascending sources)
  const src = Float64Array.from(sources);
  const remap = (a: number): number => {
    let lo = 0;
    let hi = src.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = src[mid]!;
      if (m === a) return dests[mid]!;
      if (m < a) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };

  // 1. copy the blocks
  let t = performance.now();
  const runMax = Math.max(1, Math.floor(HASH_BATCH_SIZE_MAX / bs));
  const buf = Buffer.allocUnsafe(runMax * bs);
  for (let i = 0; i < sources.length;) {
    throwIfInterrupted(options.signal, 'pack: copy blocks');
    let n = 1;
    while (i + n < sources.length && n < runMax && sources[i + n] === sources[i]! + n) n++;
    const got = await v.store.blockDevice.read(buf, 0, n * bs, sources[i]! * bs);
    if (got !== n * bs) throw new DdfsError('IO', `pack: cannot read blocks ${sources[i]}..${sources[i]! + n - 1}`, { address: sources[i] });
    // write to destinations, one pwrite per run of consecutive destinations
    for (let k = 0; k < n;) {
      let m = 1;
      while (k + m < n && dests[i + k + m] === dests[i + k]! + m) m++;
      await v.store.blockDevice.write(buf.subarray(k * bs, (k + m) * bs), dests[i + k]! * bs);
      k += m;
    }
    i += n;
    options.progress?.({ phase: 'pack: copy blocks', done: i, total: sources.length, unit: 'blocks' });
  }
  await v.store.blockDevice.sync();
  log.info(`Pack: moved ${sources.length} blocks in ${elapsedText(t)}s.`);

  // 2. file nodes (valid headers: every node; invalid headers: the nodes the index confirms, see fix_files.ts)
  t = performance.now();
  let fileNodes = 0;
  if (sources.length > 0) {
    for await (const p of walkUfsFiles(v, (dir, err) => {
      throw new DdfsError('IO', `cannot read directory ${pathText(dir)}: ${err.message}: pack aborted`, { path: dir }, err);
    })) {
      const f = await UfsNodeFile.open(v.devices, p, ns, { write: true });
      try {
        if (f.headerState === 'empty') continue;
        for await (const { first, count, nodes } of f.chunks()) {
          let changed = false;
          for (let k = 0; k < count; k++) {
            const a = decodeAddress(nodes, k * ns, addrSize);
            if (a < used || a >= bc) continue;
            if (f.headerState === 'bad' && expectedAddress(v, nodes, k * ns) !== a) continue;
            const b = remap(a);
            if (b < 0) {
              log.warn(rawText`pack: ${p} node #${first + k} has address ${a} that is not allocated: left as is`);
              continue;
            }
            encodeAddress(nodes, k * ns, addrSize, b);
            changed = true;
            fileNodes++;
          }
          if (changed) await f.writeNodes(first, nodes.subarray(0, count * ns));
        }
      } finally {
        await f.close();
      }
    }
  }

  // 3. index nodes and bitmap
  let indexNodes = 0;
  for (let i = 0; i < idx.nodeCount; i++) {
    const a = idx.address(i);
    if (a < used) continue;
    const b = remap(a);
    assert(b >= 0, `pack: index node ${i} has unallocated address ${a}`);
    idx.writeAddress(i, b);
    indexNodes++;
  }
  const words = Buffer.alloc(bitmap.bytes.length);
  for (let a = 0; a < used; a++) words[a >>> 3] = words[a >>> 3]! | (0x80 >>> (a & 7));
  bitmap.assign(words);
  await v.store.index.sync();
  log.info(`Pack: updated ${fileNodes} file nodes and ${indexNodes} index nodes in ${elapsedText(t)}s.`);

  // 4. truncate a regular block file, 5. checkpoint
  const blockPath = resolveVolumePath(v.parentDir, v.cfg.blockFilename);
  let blockFileSize: number | null = null;
  if (fs.statSync(blockPath).isFile()) {
    blockFileSize = used * bs;
    if ((await v.store.blockDevice.size()) > blockFileSize) {
      await v.store.blockDevice.truncate(blockFileSize);
      log.info(`Pack: block file truncated to ${blockFileSize} bytes.`);
    }
    v.blocksInFile = Math.min(v.blocksInFile, used);
  }
  await flushIndexInPlace(v);
  await v.store.checkpoint();
  return {
    blocksUsed: used, blocksMoved: sources.length, fileNodesUpdated: fileNodes, indexNodesUpdated: indexNodes, blockFileSize,
    seconds: (performance.now() - t0) / 1000,
  };
}
