/**
 * statddumbfs PARENT|MNT [--json] — a summary of a volume (issue 10 "See what the volume is doing"): logical bytes,
 * stored bytes, dedup ratio, blocks used/free/reclaimable, files, last checkpoint, last fsck and its result,
 * corrupted files, mount state.
 *
 * Offline (PARENT, not mounted) it opens the volume read-only and walks ddfsroot. For a mounted volume (MNT, or a
 * PARENT that is mounted) it reads the daemon's `MNT/.ddumbfs/stats` (spec §8.9) for the block counts and walks the
 * mount for the file sizes. Reclaimable blocks are estimated from the node lists of the UFS files of
 * `PARENT/ddfsroot` (read directly, also while mounted): allocated blocks that no file references. The last
 * checkpoint is the time of `PARENT/ddfsusedblocks` (replaced at each checkpoint, spec §5.8), the last fsck is
 * `PARENT/ddfs.fsck` (format/fsck_record.ts). Field meanings: man/statddumbfs.8; JSON schema:
 * contrib/schema/statddumbfs.schema.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { AUTOFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY, Volume, findParent, mountPointOf, readVolumeConfig } from '../volume/volume.js';
import { CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE } from '../format/layout.js';
import type { DdfsConfig } from '../format/config.js';
import type { FsckRecord } from '../format/fsck_record.js';
import { decodeAddress } from '../format/node.js';
import { BitSet } from '../fsck/bitset.js';
import { fileDevices } from '../io/device.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { readFsckRecord } from './fsck_record_file.js';
import { makeProgram, runCommand } from './common.js';
import { EXIT, EXIT_HELP } from './exit_codes.js';

const NAME = 'statddumbfs';

/** The summary, as printed by --json (schema: man/statddumbfs.8). */
export interface VolumeSummary {
  parent: string;
  mounted: boolean;
  mount_point: string | null;
  needs_fsck: boolean;
  block_size: number;
  block_count: number;
  blocks_used: number;
  blocks_free: number;
  files: number;
  logical_bytes: number;
  stored_bytes: number;
  dedup_ratio: number | null;
  /**
   * Estimate of the blocks a reclaim would free: allocated blocks (the 2 reserved ones aside) that no node list of
   * a UFS file references; null when the parent is unknown. A mirror slave's undo areas and data the daemon has not
   * stored yet are not counted, hence "estimate".
   */
  blocks_reclaimable: number | null;
  corrupted_files: number;
  hash: string;
  /** When the last checkpoint was saved (mtime of ddfsusedblocks, ISO 8601), null when none is on disk. */
  last_checkpoint: string | null;
  /** The last fsckddumbfs run that finished (PARENT/ddfs.fsck), null when none was recorded. */
  last_fsck: FsckRecord | null;
}

/** Blocks every volume allocates for itself (block 0: the block-file header, block 1: the zero block, spec §12). */
const RESERVED_BLOCK_COUNT = 2;

/**
 * Byte paths of the regular files below `dir` (not the special directory at the root): paths are raw bytes end to
 * end, never decoded.
 */
function walkFiles(dir: string | Buffer, out: Buffer[] = [], isRoot = true): Buffer[] {
  const base = typeof dir === 'string' ? Buffer.from(dir, 'latin1') : dir;
  for (const e of fs.readdirSync(base, { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name as unknown as Buffer;
    if (isRoot && name.toString('latin1') === SPECIAL_DIRECTORY) continue;
    const full = Buffer.concat([base, Buffer.from('/'), name]);
    if (e.isDirectory()) walkFiles(full, out, false);
    else if (e.isFile()) out.push(full);
  }
  return out;
}

/**
 * Read the node list of every UFS file of `files`: mark each address referenced, add up the logical sizes from the
 * headers. Files that vanish or cannot be read (a daemon writing them) are skipped: the result is an estimate.
 * @returns the logical bytes and the set of referenced addresses
 */
async function scanUfsFiles(files: Buffer[], cfg: DdfsConfig): Promise<{ bytes: number; referenced: BitSet }> {
  const referenced = new BitSet(cfg.blockCount);
  let bytes = 0;
  for (const f of files) {
    let ufs: UfsNodeFile;
    try {
      ufs = await UfsNodeFile.open(fileDevices, f, cfg.nodeSize);
    } catch {
      continue;
    }
    try {
      bytes += ufs.size;
      for await (const { count, nodes } of ufs.chunks()) {
        for (let i = 0; i < count; i++) {
          const a = decodeAddress(nodes, i * cfg.nodeSize, cfg.addrSize);
          if (a < cfg.blockCount) referenced.add(a);
        }
      }
    } catch {
      // shrank while read: what was read counts
    } finally {
      await ufs.close().catch(() => undefined);
    }
  }
  return { bytes, referenced };
}

/** Allocated blocks no file references (never negative), from `used` allocated and the referenced set. */
function reclaimableOf(used: number, referenced: BitSet, isAllocated: (a: number) => boolean): number {
  let kept = 0;
  for (let a = RESERVED_BLOCK_COUNT; a < referenced.size; a++) if (referenced.has(a) && isAllocated(a)) kept++;
  return Math.max(0, used - RESERVED_BLOCK_COUNT - kept);
}

/** The time of the checkpoint on disk (ddfsusedblocks, else ddfsusedblocks.0), ISO 8601; never follows a symlink. */
function lastCheckpointOf(parent: string): string | null {
  for (const name of [CHECKPOINT_FILE, CHECKPOINT_NEXT_FILE]) {
    const st = fs.lstatSync(path.join(parent, name), { throwIfNoEntry: false });
    if (st?.isFile()) return st.mtime.toISOString();
  }
  return null;
}

/** The parent (fsname) of the fuse mount at `mnt` from /proc/self/mounts, or '' (octal escapes decoded). */
function parentOfMount(mnt: string): string {
  try {
    const unescape = (f: string): string => f.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    for (const line of fs.readFileSync('/proc/self/mounts', 'latin1').split('\n')) {
      const [fsname, mp, type] = line.split(' ');
      if (fsname && mp && type?.startsWith('fuse') && path.resolve(unescape(mp)) === mnt) return path.resolve(unescape(fsname));
    }
  } catch {
    // no /proc: the parent stays unknown
  }
  return '';
}

/** Lines of `corrupted.txt` (spec §10.6), 0 when absent. */
function corruptedCount(specialDir: string): number {
  try {
    return fs.readFileSync(path.join(specialDir, 'corrupted.txt'), 'latin1').split('\n').filter((l) => l.trim() !== '').length;
  } catch {
    return 0;
  }
}

/** `name value` lines of /.ddumbfs/stats as a map. */
export function parseStatsText(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^(\S+)\s+(.*)$/.exec(line);
    if (match && !m.has(match[1]!)) m.set(match[1]!, match[2]!.trim());
  }
  return m;
}

/**
 * The hash name in /.ddumbfs/stats text: the `hash` line whose value is a name, not a number. ddumbfs 1.1's stats
 * has two `hash` lines, the counter of hashes computed first and the hash name later; parseStatsText keeps the
 * first, which gave a count as the hash name. (Our daemon prints the counter as `hash_count`; this still reads a
 * text that has both.)
 * @returns the name (TIGER, SHA1...), or '' when there is none
 */
export function hashNameInStats(text: string): string {
  let name = '';
  for (const line of text.split('\n')) {
    const match = /^hash\s+(\S+)\s*$/.exec(line);
    if (match && !/^\d+$/.test(match[1]!)) name = match[1]!;
  }
  return name;
}

/**
 * The summary of the volume that `target` (a parent, a path in it, or a mount point) names.
 * @throws DdfsError NOT_FOUND when `target` is neither in a volume nor a ddumbfs mount
 */
export async function summarize(target: string): Promise<VolumeSummary> {
  const abs = path.resolve(target);
  const parent = findParent(abs);
  let mnt: string | null = parent ? mountPointOf(parent) : null;
  if (!parent && fs.existsSync(path.join(abs, SPECIAL_DIRECTORY, 'stats'))) mnt = abs;
  if (!parent && !mnt) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume nor a mounted one`, { path: target });
  if (mnt) {
    const statsText = fs.readFileSync(path.join(mnt, SPECIAL_DIRECTORY, 'stats'), 'latin1');
    const stats = parseStatsText(statsText);
    const st = fs.statfsSync(mnt);
    const used = Number(stats.get('block_allocated') ?? 0);
    const free = Number(stats.get('block_free') ?? st.bfree);
    const files = walkFiles(mnt);
    const bytes = files.reduce((n, f) => n + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
    const stored = used * st.bsize;
    const p = parent ?? parentOfMount(mnt);
    let reclaimable: number | null = null;
    if (p !== '' && findParent(p) === p) {
      // the daemon's bitmap is not on disk: every referenced address counts as allocated
      const cfg = await readVolumeConfig(p);
      const scan = await scanUfsFiles(walkFiles(path.join(p, ROOT_DIRECTORY)), cfg);
      reclaimable = reclaimableOf(used, scan.referenced, () => true);
    }
    return {
      parent: p, mounted: true, mount_point: mnt,
      needs_fsck: false,
      block_size: st.bsize, block_count: used + free, blocks_used: used, blocks_free: free,
      files: files.length, logical_bytes: bytes, stored_bytes: stored,
      dedup_ratio: stored > 0 ? bytes / stored : null,
      blocks_reclaimable: reclaimable,
      corrupted_files: corruptedCount(path.join(mnt, SPECIAL_DIRECTORY)),
      hash: hashNameInStats(statsText),
      last_checkpoint: p === '' ? null : lastCheckpointOf(p),
      last_fsck: p === '' ? null : readFsckRecord(p),
    };
  }
  const p = parent!;
  const config = await readVolumeConfig(p);
  const root = path.join(p, ROOT_DIRECTORY);
  const needsFsck = fs.existsSync(path.join(p, AUTOFSCK_MARKER));
  const vol = await Volume.open(p, { readOnly: true });
  try {
    const files = walkFiles(root);
    const scan = await scanUfsFiles(files, config);
    const s = vol.statfs();
    const used = vol.store.blockCountUsed;
    const stored = used * s.blockSize;
    const bitmap = vol.store.index.bitmap;
    return {
      parent: p, mounted: false, mount_point: null, needs_fsck: needsFsck,
      block_size: s.blockSize, block_count: config.blockCount, blocks_used: used, blocks_free: vol.store.blockCountFree,
      files: files.length, logical_bytes: scan.bytes, stored_bytes: stored,
      dedup_ratio: stored > 0 ? scan.bytes / stored : null,
      blocks_reclaimable: reclaimableOf(used, scan.referenced, (a) => bitmap.has(a)),
      corrupted_files: corruptedCount(path.join(root, SPECIAL_DIRECTORY)),
      hash: config.hashName,
      last_checkpoint: lastCheckpointOf(p),
      last_fsck: readFsckRecord(p),
    };
  } finally {
    await vol.close();
  }
}

/** The human summary, one `name: value` line each. */
export function formatSummary(s: VolumeSummary): string {
  const rows: Array<[string, string | number]> = [
    ['Volume', s.parent || '-'],
    ['Mounted', s.mounted ? `yes, on ${s.mount_point}` : 'no'],
    ['Needs fsck', s.needs_fsck ? 'yes (.autofsck present)' : 'no'],
    ['Hash', s.hash],
    ['Block size', s.block_size],
    ['Blocks', `${s.blocks_used} used, ${s.blocks_free} free of ${s.block_count}`],
    ['Files', s.files],
    ['Logical bytes', s.logical_bytes],
    ['Stored bytes', s.stored_bytes],
    ['Dedup ratio', s.dedup_ratio === null ? '-' : s.dedup_ratio.toFixed(2)],
    ['Reclaimable', s.blocks_reclaimable === null ? '-' : `${s.blocks_reclaimable} blocks (estimate)`],
    ['Corrupted files', s.corrupted_files],
    ['Last checkpoint', s.last_checkpoint ?? 'none'],
    ['Last fsck', s.last_fsck === null ? 'none recorded'
      : `${s.last_fsck.time} ${s.last_fsck.option}${s.last_fsck.pack ? ' -k' : ''}: ${s.last_fsck.status.trim()} (exit ${s.last_fsck.exit_code}${
        s.last_fsck.corrupted_files === null ? '' : `, ${s.last_fsck.fixed_files ?? 0} files fixed, ${s.last_fsck.corrupted_files} corrupted`})`],
  ];
  return rows.map(([k, v]) => `${`${k}:`.padEnd(17)} ${v}`).join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Summarise a ddumbfs volume: sizes, dedup ratio, blocks, files, mount state.', EXIT_HELP)
    .argument('<volume>', 'the parent directory (or a path in it) or the mount point')
    .option('--json', 'print one JSON object (fields: man statddumbfs)');
  return runCommand(NAME, program, argv, async () => {
    const [target] = program.args as [string];
    const s = await summarize(target);
    process.stdout.write(program.opts<{ json?: boolean }>().json ? `${JSON.stringify(s)}\n` : `${formatSummary(s)}\n`);
    return EXIT.OK;
  });
}
