/**
 * "Fix files and used blocks" (spec §10.3 step 6), shared by repair (-n/-N, the daemon's mount check) and rebuild
 * (-r/-R) once their index is trustworthy.
 *
 * bitmap := {0, 1}; corrupted.txt is rolled over (5 backups kept) and rewritten; every regular file is walked and
 * every node gets the address the index gives its hash (0 for the zero-block and null hashes, else the index
 * address, else 1 = lost), rewritten in place when it changed, and marked in the bitmap. Then index nodes whose
 * address is not in the bitmap are deleted ("useless": deleted files, blocks never referenced).
 *
 * Per-file repairs (spec §10.6 flags):
 * - partial trailing node ⇒ UFS file cut to whole nodes (`l`);
 * - node count ≠ ceil(size/bs) ⇒ `s`: when the extra nodes are only zero/hole nodes (upstream cpddumbfs's bogus
 *   trailing node, spec §17.1) they are cut and the size kept; otherwise size := node_count·bs, which keeps every
 *   stored byte (fewer nodes than the size needs is the crash case: the header grew before the nodes were written,
 *   and node_count·bs is then exact). Upstream always does the latter and grows cpddumbfs uploads (spec §17.5).
 * - Invalid header (` H  `): the file is left alone. Unlike upstream (spec §17.5), whose repair frees the blocks of
 *   such a file, we keep a block when the file's node area still holds a node whose (address, hash) pair is exactly
 *   what the index says: a damaged header must not also cost the data, and a garbage node can only match by a hash
 *   collision, so nothing is kept by accident. These blocks show up in a check as "in index & not in files".
 * A file that cannot be opened or read aborts the step (throws) before anything is freed: freeing the blocks of an
 * unreadable file would lose its data.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { CORRUPTED_BACKUP_COUNT } from '../limits.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import type { Logger } from '../util/log.js';
import { rollOver } from '../util/log.js';
import { CORRUPTED_LIST_FILE, SPECIAL_DIRECTORY } from '../format/layout.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { openNoFollow } from '../volume/special_paths.js';
import { concatText, pathText, rawText, textBytes } from '../util/path_text.js';
import { elapsedText, expectedAddress, openWalkedUfsFile, walkUfsFiles, type FsckVolume, type ProgressSink } from './context.js';
import { fileFlags, isBadFile, type FileRepairStatus } from './findings.js';

/** Per-node "update file" lines logged per file before they are summarised (a rebuild may re-point millions). */
export const UPDATE_LINES_PER_FILE_MAX = 16;
/** File statuses kept in the report (corrupted.txt itself is complete). */
export const LISTED_FILES_STORED_MAX = 10_000;

export interface FixFilesOptions {
  logger: Logger;
  /** Log every node update at INF (else DEB). */
  verbose?: boolean;
  progress?: ProgressSink;
  /**
   * Hashes referenced from outside ddfsroot that must stay (a mirror slave's undo areas, which a rollback puts back:
   * mirroring spec §4.8); their blocks are marked used like those of the files. Read after the walk.
   */
  extraReferences?: () => Iterable<Buffer>;
  /** Files the caller's own walk found (the progress total; 0 or absent: unknown). */
  expectedFiles?: number;
}

export interface FixFilesResult {
  files: number;
  fixedFiles: number;
  corruptedFiles: number;
  /** Files written to corrupted.txt (fixed or bad), at most LISTED_FILES_STORED_MAX. */
  listed: FileRepairStatus[];
  /** Blocks kept for the node areas of files with an invalid header. */
  salvagedBlocks: number;
  uselessNodesDeleted: number;
  blocksUsed: number;
  blocksFree: number;
}

/** Path of corrupted.txt in a volume (spec §2). */
export function corruptedListPath(rootDir: string): string {
  return path.join(rootDir, SPECIAL_DIRECTORY, CORRUPTED_LIST_FILE);
}

/**
 * Run the fix-files step on an open volume whose index is final (spec §10.3 step 6).
 * @throws DdfsError IO when a file or directory cannot be read (nothing has been freed then; UFS files fixed so far
 *   stay fixed, which a later repair accepts)
 */
export async function fixFiles(v: FsckVolume, options: FixFilesOptions): Promise<FixFilesResult> {
  const log = options.logger;
  const { blockCount: bc, blockSize: bs, nodeSize: ns, addrSize } = v.cfg;
  const idx = v.store.index.nodes;
  const bitmap = v.store.index.bitmap;
  log.info('Fix files.');
  const expected = options.expectedFiles ?? 0;
  options.progress?.({ phase: 'fix files', done: 0, total: expected, unit: 'files' });
  const t0 = performance.now();

  const fresh = Buffer.alloc(bitmap.bytes.length);
  fresh[0] = 0xc0;
  bitmap.assign(fresh);

  const listPath = corruptedListPath(v.rootDir);
  let listFd: number | null = null;
  if (fs.existsSync(path.dirname(listPath))) {
    try {
      rollOver(listPath, CORRUPTED_BACKUP_COUNT);
      listFd = openNoFollow(listPath, { access: 'write', create: true, mode: 0o600 });
    } catch (err) {
      log.warn(`cannot write ${listPath}: ${(err as Error).message}`);
    }
  } else {
    log.warn(`${path.dirname(listPath)} is missing: no corrupted.txt`);
  }

  const result: FixFilesResult = {
    files: 0, fixedFiles: 0, corruptedFiles: 0, listed: [], salvagedBlocks: 0, uselessNodesDeleted: 0, blocksUsed: 0, blocksFree: 0,
  };
  try {
    for await (const p of walkUfsFiles(v, (dir, err) => {
      throw new DdfsError('IO', `cannot read directory ${pathText(dir)}: ${err.message}: repair aborted`, { path: dir }, err);
    }, { write: true })) {
      result.files++;
      if ((result.files & 0x3ff) === 0) options.progress?.({ phase: 'fix files', done: result.files, total: Math.max(expected, result.files), unit: 'files' });
      const st = await fixOneFile(v, p, options);
      result.salvagedBlocks += st.salvaged;
      if (!st.listed) continue;
      const status = st.status;
      status.path = pathText(p);
      const bad = isBadFile(status);
      if (bad) result.corruptedFiles++;
      else if (status.fixed) result.fixedFiles++;
      // the raw name bytes, so the list names the file on disk (never a U+FFFD look-alike)
      const line = rawText`${fileFlags(status)} ${p}`;
      log.warn(line);
      if (listFd !== null) fs.writeSync(listFd, textBytes(concatText(line, '\n')));
      if (result.listed.length < LISTED_FILES_STORED_MAX) result.listed.push(status);
    }
  } finally {
    if (listFd !== null) fs.closeSync(listFd);
  }
  options.progress?.({ phase: 'fix files', done: result.files, total: result.files, unit: 'files' });
  log.info(`Fixed:${result.fixedFiles}  Corrupted:${result.corruptedFiles}  Total:${result.files} files in ${elapsedText(t0)}s.`);

  for (const h of options.extraReferences?.() ?? []) {
    const a = idx.lookupAddress(h, 0);
    if (a >= 2 && a < bc) bitmap.set(a);
  }
  // useless nodes: their address is referenced by no file (nor by an extra reference)
  for (let i = 0; i < idx.nodeCount;) {
    i = idx.firstNonZeroNodeFrom(i);
    if (i >= idx.nodeCount) break;
    const a = idx.address(i);
    if (a !== 0 && (a >= bc || !bitmap.has(a))) {
      idx.delete(i);
      result.uselessNodesDeleted++;
      continue;
    }
    i++;
  }
  result.blocksUsed = bitmap.countSet;
  result.blocksFree = bc - result.blocksUsed;
  log.info(`Deleted ${result.uselessNodesDeleted} useless nodes.`);
  log.info(`blocks in use: ${result.blocksUsed}   blocks free: ${result.blocksFree}.`);
  return result;

  async function fixOneFile(vol: FsckVolume, p: Buffer, o: FixFilesOptions): Promise<{ status: FileRepairStatus; listed: boolean; salvaged: number }> {
    // the path as text is set by the caller for a listed file only (most are not: a name decode per file)
    const status: FileRepairStatus = { path: '', fixed: false, corrupted: false, size: 'ok', length: 'ok', badHeader: false };
    let f: UfsNodeFile;
    try {
      f = await openWalkedUfsFile(vol, p, true);
    } catch (err) {
      throw new DdfsError('IO', `cannot open file ${pathText(p)}: ${(err as Error).message}: repair aborted`, { path: p }, err);
    }
    let modified = false;
    let salvaged = 0;
    try {
      if (f.headerState === 'empty') return { status, listed: false, salvaged };
      if (f.headerState === 'bad') {
        status.badHeader = true;
        log.info(rawText`invalid header, ignore file : ${p}`);
        for await (const { count, nodes } of f.chunks()) {
          for (let k = 0; k < count; k++) {
            const a = decodeAddress(nodes, k * ns, addrSize);
            if (a >= 2 && a < bc && !bitmap.has(a) && expectedAddress(vol, nodes, k * ns) === a) {
              bitmap.set(a);
              salvaged++;
            }
          }
        }
        if (salvaged > 0) log.info(rawText`kept ${salvaged} blocks still referenced by the node area of ${p}`);
        return { status, listed: true, salvaged };
      }
      if (f.partialBytes > 0) {
        const before = f.length;
        try {
          if (!f.writable) throw new Error('read-only file');
          await f.truncateToNodes(f.nodeCount);
          status.length = 'fixed';
          modified = true;
          log.info(rawText`fixed underneath file length mismatch: ${p} ${before} -> ${f.length}`);
        } catch (err) {
          status.length = 'failed';
          log.error(rawText`cannot fix underneath file length mismatch: ${p}: ${(err as Error).message}`);
        }
      }
      let updates = 0;
      /** Highest node whose new address is not 0 (-1: none). */
      let lastDataNode = -1;
      // the per-node loop in a synchronous function, which V8 optimizes (it does not inside this async one)
      const fixChunk = (first: number, count: number, nodes: Buffer): boolean => {
        let changed = false;
        for (let k = 0; k < count; k++) {
          const o2 = k * ns;
          const a = decodeAddress(nodes, o2, addrSize);
          let exp = expectedAddress(vol, nodes, o2);
          if (exp >= bc) exp = 1; // cannot happen after repair step 1; never write an unreadable address
          if (exp !== 0) lastDataNode = first + k;
          if (exp === 1) status.corrupted = true;
          if (exp !== 1 && exp !== 0) bitmap.set(exp);
          if (exp === a) continue;
          encodeAddress(nodes, o2, addrSize, exp);
          changed = true;
          updates++;
          if (updates <= UPDATE_LINES_PER_FILE_MAX) {
            const line = rawText`update file: ${p} #${first + k} ${a} --> ${exp} `;
            if (o.verbose) log.info(line);
            else log.dbg(line);
          }
        }
        return changed;
      };
      for await (const { first, count, nodes } of f.chunks()) {
        if (!fixChunk(first, count, nodes)) continue;
        try {
          if (!f.writable) throw new Error('read-only file');
          await f.writeNodes(first, nodes.subarray(0, count * ns));
          modified = true;
        } catch (err) {
          status.corrupted = true;
          log.error(rawText`cannot update file ${p}: ${(err as Error).message}`);
        }
      }
      if (updates > UPDATE_LINES_PER_FILE_MAX) {
        const line = rawText`update file: ${p}: ${updates - UPDATE_LINES_PER_FILE_MAX} more nodes updated`;
        if (o.verbose) log.info(line);
        else log.dbg(line);
      }
      const want = Math.ceil(f.size / bs);
      const have = f.nodeCount;
      if (have !== want) {
        const before = f.size;
        try {
          if (!f.writable) throw new Error('read-only file');
          if (have > want && lastDataNode < want) {
            // only zero/hole nodes beyond the size: cut them, keep the size
            await f.truncateToNodes(want);
            log.info(rawText`fixed file size mismatch: ${p} dropped ${have - want} trailing zero nodes, size ${before} kept`);
          } else {
            await f.writeHeader(have * bs);
            log.info(rawText`fixed file size mismatch: ${p} ${before} -> ${f.size}`);
          }
          status.size = 'fixed';
          modified = true;
        } catch (err) {
          status.size = 'failed';
          log.error(rawText`cannot fix file size mismatch: ${p}: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      if (err instanceof DdfsError && err.code === 'IO' && /repair aborted/.test(err.message)) throw err;
      throw new DdfsError('IO', `cannot read file ${pathText(p)}: ${(err as Error).message}: repair aborted`, { path: p }, err);
    } finally {
      await f.close().catch(() => undefined);
    }
    status.fixed = modified && !isBadFile(status);
    return { status, listed: modified || isBadFile(status), salvaged };
  }
}
