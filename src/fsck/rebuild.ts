/**
 * The rebuild, `fsckddumbfs -r` / `-R` (spec §10.4): drop the index and make a new one from the blocks.
 *
 * - `-r`: bitmap := {0, 1} ∪ every address found in files; `-R`: every block of the block file.
 * - The node array is zeroed; every block in the bitmap from address 2 up to the end of the block file is read and
 *   hashed (hash_pool.ts: one reader, one hashing thread per CPU) and added to the index, duplicates allowed
 *   (equal hashes end up in descending address order, so a lookup gives the highest address), unless it is the zero
 *   block. Then "fix files" (fix_files.ts) re-points every file node at the index's address for its hash and drops
 *   the nodes no file references.
 * - The index file may be missing, short, or have a bad magic: it is recreated, extended, or its header rewritten
 *   before anything else (spec §10.1).
 * - `.rebuildfsck` exists in the parent while the rebuild runs (the daemon refuses to mount, other fsck modes refuse
 *   to run) and is removed only on success.
 * - Unlike upstream (which leaves any old checkpoint in place), a new checkpoint is written at the end: an old one
 *   may list blocks the rebuild freed, which the next crash recovery would then wrongly trust.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { INDEX_FILE_MAGIC } from '../limits.js';
import { decodeAddress } from '../format/node.js';
import type { DdfsConfig } from '../format/config.js';
import type { DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { checkVolumeFileSizes, resolveVolumePath } from '../store/block_store.js';
import { encodeIndexHeader } from '../store/index_file.js';
import type { Logger } from '../util/log.js';
import { REBUILDFSCK_MARKER, VOLUME_FILE_MODE } from '../format/layout.js';
import { readVolumeConfig } from '../volume/volume.js';
import { refuseSpecialSymlinks, writeFileNoFollow } from '../volume/special_paths.js';
import { BitSet } from './bitset.js';
import {
  closeDiscard, closePersist, flushIndexInPlace, elapsedText, openFsckVolume, runsOf, throwIfInterrupted,
  visitUfsFilesOrAbort,
  type FsckVolume, type ProgressSink,
} from './context.js';
import { fixFiles } from './fix_files.js';
import { hashBlocks } from '../store/hash_pool.js';
import { reportOf, type RepairReport } from './repair.js';

export interface RebuildOptions {
  logger: Logger;
  /** `-R`: hash every block of the block file, not only those referenced by files. */
  allBlocks: boolean;
  devices?: DeviceFactory;
  verbose?: boolean;
  progress?: ProgressSink;
  /** Hash threads (default: one per CPU). */
  hashThreads?: number;
  /** Open even when the block file lacks its magic. */
  skipBlockMagic?: boolean;
  /**
   * Ctrl-C: looked at until the rebuild starts writing (reading files and hashing blocks build the new index in
   * memory); an abort there throws INTERRUPTED with the index and files as they were (data.changed: whether
   * `.rebuildfsck` had to stay, see rebuildVolume). From "fix files" on the rebuild runs to its end.
   */
  signal?: AbortSignal;
}

/**
 * Make the index file usable for a rebuild (spec §10.1): create it when missing, extend it to index_size when
 * short, rewrite its header page when the magic is wrong. Its bitmap and nodes are replaced by the rebuild anyway.
 * @returns true when the index file was created, extended or given a new header (the old index is then gone)
 */
export async function prepareIndexFile(parentDir: string, cfg: DdfsConfig, logger: Logger, devices: DeviceFactory = fileDevices): Promise<boolean> {
  let changed = false;
  const p = resolveVolumePath(parentDir, cfg.indexFilename);
  let dev;
  try {
    dev = await devices.open(p, {});
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    logger.warn(`index file ${p} is missing: create it`);
    dev = await devices.open(p, { create: true, mode: VOLUME_FILE_MODE });
    changed = true;
  }
  try {
    const size = await dev.size();
    if (size < cfg.indexSize) {
      if (size > 0) logger.warn(`index file ${p} is ${size} bytes, expected ${cfg.indexSize}: extend it`);
      await dev.truncate(cfg.indexSize);
      changed = true;
    }
    const head = Buffer.alloc(INDEX_FILE_MAGIC.length);
    await dev.read(head, 0, head.length, 0);
    if (head.toString('latin1') !== INDEX_FILE_MAGIC) {
      if (size > 0) logger.warn(`index file ${p} has a bad magic: rewrite its header`);
      await dev.write(encodeIndexHeader(), 0);
      changed = true;
    }
    await dev.sync();
  } finally {
    await dev.close();
  }
  return changed;
}

/**
 * Rebuild the index of the closed volume in `parentDir` (spec §10.4), then fix files (spec §10.3 step 6).
 * @returns what was done; files that remain corrupted are counted in `corruptedFiles` (not a failure, spec §10.3)
 * @throws DdfsError NOT_FOUND / BAD_CONFIG / BAD_MAGIC (block file) when the volume cannot be opened (BAD_CONFIG
 *   before anything is written); IO when the tree cannot be read. On failure `.rebuildfsck` stays, so the volume is
 *   not mounted half rebuilt. INTERRUPTED (data.phase, data.changed) when `options.signal` aborts before fix files:
 *   the old index is kept and `.rebuildfsck` removed (changed false), unless it was there before or the index file
 *   had to be recreated (changed true: only a rebuild can make the volume usable).
 */
export async function rebuildVolume(parentDir: string, options: RebuildOptions): Promise<RepairReport> {
  const t0 = performance.now();
  const log = options.logger;
  const parent = path.resolve(parentDir);
  const cfg = await readVolumeConfig(parent);
  // the index may be missing or short (it is rebuilt), but no file may contradict the cfg's geometry
  await checkVolumeFileSizes(parent, cfg, options.devices);
  const marker = path.join(parent, REBUILDFSCK_MARKER);
  refuseSpecialSymlinks(parent);
  const markerExisted = fs.existsSync(marker);
  writeFileNoFollow(marker, '', { mode: 0o600 });
  const indexChanged = await prepareIndexFile(parent, cfg, log, options.devices);
  const v = await openFsckVolume(parent, { readOnly: false, devices: options.devices, skipBlockMagic: options.skipBlockMagic });
  let report: RepairReport;
  try {
    report = await rebuildOpen(v, options, t0);
  } catch (err) {
    await closeDiscard(v);
    if (err instanceof DdfsError && err.code === 'INTERRUPTED') {
      const changed = markerExisted || indexChanged;
      if (!changed) fs.rmSync(marker, { force: true });
      err.data.changed = changed;
    }
    throw err;
  }
  await closePersist(v);
  fs.rmSync(marker, { force: true });
  return report;
}

async function rebuildOpen(v: FsckVolume, options: RebuildOptions, t0: number): Promise<RepairReport> {
  const log = options.logger;
  const cfg = v.cfg;
  const bc = cfg.blockCount;
  const ns = cfg.nodeSize;
  const bitmap = v.store.index.bitmap;
  const idx = v.store.index.nodes;
  let t = performance.now();

  const used = new BitSet(bc);
  let files = 0;
  if (options.allBlocks) {
    used.addRange(0, bc);
  } else {
    used.add(0);
    used.add(1);
    // a bad header's node area is read too: fix files keeps those of its nodes the new index confirms
    files = await visitUfsFilesOrAbort(v, 'rebuild', options.progress, async (_p, f) => {
      for await (const { count, nodes } of f.chunks()) {
        for (let k = 0; k < count; k++) {
          const a = decodeAddress(nodes, k * ns, cfg.addrSize);
          if (a >= 2 && a < bc) used.add(a);
        }
      }
    }, options.signal);
    log.info(`Read ${files} files in ${elapsedText(t)}s.`);
    log.info(`${used.count()} blocks used in files.`);
  }
  const words = Buffer.alloc(bitmap.bytes.length);
  words.set(used.bytes);
  bitmap.assign(words);
  idx.clearAll();

  const end = Math.min(bc, v.blocksInFile);
  let wanted = 0;
  let pastEnd = 0;
  for (const a of bitmap.setAscending(2)) {
    if (a < end) wanted++;
    else pastEnd++;
  }
  if (pastEnd > 0 && !options.allBlocks) log.warn(`${pastEnd} blocks referenced by files lie past the end of the block file`);
  t = performance.now();
  let readErrors = 0;
  function* wantedAddresses(): Generator<number> {
    for (const a of bitmap.setAscending(2)) {
      if (a >= end) return;
      yield a;
    }
  }
  const r = await hashBlocks({
    device: v.store.blockDevice, blockSize: cfg.blockSize, hashName: cfg.hashName, threads: options.hashThreads,
    totalBlocks: wanted, runs: runsOf(wantedAddresses()), signal: options.signal,
    onBlock: (a, h) => {
      if (!h) {
        readErrors++;
        log.error(`cannot read block ${a}`);
        return;
      }
      if (!v.store.isZeroHash(h)) idx.add(a, h, 'duplicates');
    },
    onProgress: (done) => options.progress?.({ phase: 'read and hash blocks', done, total: wanted, unit: 'blocks' }),
  });
  // the last safe point: from here on the rebuild writes (UFS files, then the index and bitmap)
  throwIfInterrupted(options.signal, 'read and hash blocks');
  log.info(`Read errors: ${readErrors}`);
  log.info(`Read, hashed and updated index for ${r.hashed} blocks in ${elapsedText(t)}s`);

  const ff = await fixFiles(v, { logger: log, verbose: options.verbose, progress: options.progress, expectedFiles: files });
  await flushIndexInPlace(v);
  await v.store.checkpoint();
  return reportOf('rebuild', ff, { nodeOrderFixed: 0, blocksHashed: r.hashed, readErrors, nodesFixed: 0 }, t0);
}
