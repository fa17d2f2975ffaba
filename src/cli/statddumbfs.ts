/**
 * statddumbfs PARENT|MNT [--json] — a summary of a volume (issue 10 "See what the volume is doing"): logical bytes,
 * stored bytes, dedup ratio, blocks used/free, files, corrupted files, mount state.
 *
 * Offline (PARENT, not mounted) it opens the volume read-only and walks ddfsroot. For a mounted volume (MNT, or a
 * PARENT that is mounted) it reads the daemon's `MNT/.ddumbfs/stats` (spec §8.9) for the block counts and walks the
 * mount for the file sizes. Field meanings: man/statddumbfs.8.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { AUTOFSCK_MARKER, ROOT_DIRECTORY, SPECIAL_DIRECTORY, Volume, findParent, mountPointOf, readVolumeConfig } from '../volume/volume.js';
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
  corrupted_files: number;
  hash: string;
}

/**
 * Regular files below `dir` (not the special directory at the root) and the sum of their sizes in bytes; paths are
 * raw bytes end to end (`size` gets the byte path of each file).
 */
function walkFiles(dir: string | Buffer, size: (p: Buffer) => number, isRoot = true): { files: number; bytes: number } {
  const base = typeof dir === 'string' ? Buffer.from(dir, 'latin1') : dir;
  let files = 0;
  let bytes = 0;
  for (const e of fs.readdirSync(base, { withFileTypes: true, encoding: 'buffer' })) {
    const name = e.name as unknown as Buffer;
    if (isRoot && name.toString('latin1') === SPECIAL_DIRECTORY) continue;
    const full = Buffer.concat([base, Buffer.from('/'), name]);
    if (e.isDirectory()) {
      const sub = walkFiles(full, size, false);
      files += sub.files;
      bytes += sub.bytes;
    } else if (e.isFile()) {
      files += 1;
      bytes += size(full);
    }
  }
  return { files, bytes };
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
 * first, which gave a count as the hash name.
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
    const walk = walkFiles(mnt, (p) => fs.statSync(p).size);
    const stored = used * st.bsize;
    return {
      parent: parent ?? parentOfMount(mnt), mounted: true, mount_point: mnt,
      needs_fsck: false,
      block_size: st.bsize, block_count: used + free, blocks_used: used, blocks_free: free,
      files: walk.files, logical_bytes: walk.bytes, stored_bytes: stored,
      dedup_ratio: stored > 0 ? walk.bytes / stored : null,
      corrupted_files: corruptedCount(path.join(mnt, SPECIAL_DIRECTORY)),
      hash: hashNameInStats(statsText),
    };
  }
  const p = parent!;
  const config = await readVolumeConfig(p);
  const root = path.join(p, ROOT_DIRECTORY);
  const needsFsck = fs.existsSync(path.join(p, AUTOFSCK_MARKER));
  const vol = await Volume.open(p, { readOnly: true });
  try {
    const sizes: Array<Promise<number>> = [];
    const walk = walkFiles(root, (f) => { sizes.push(vol.readUfsSize(f)); return 0; });
    const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
    const s = vol.statfs();
    const used = vol.store.blockCountUsed;
    const stored = used * s.blockSize;
    return {
      parent: p, mounted: false, mount_point: null, needs_fsck: needsFsck,
      block_size: s.blockSize, block_count: config.blockCount, blocks_used: used, blocks_free: vol.store.blockCountFree,
      files: walk.files, logical_bytes: bytes, stored_bytes: stored,
      dedup_ratio: stored > 0 ? bytes / stored : null,
      corrupted_files: corruptedCount(path.join(root, SPECIAL_DIRECTORY)),
      hash: config.hashName,
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
    ['Corrupted files', s.corrupted_files],
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
