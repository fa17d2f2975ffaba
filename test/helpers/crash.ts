/**
 * Shared by the crash, fault, full-volume and alterddumbfs tests: soak-mode counts, private copies of volumes,
 * fsck through its library API (exit codes as the CLI gives them), reading files back, corrupted.txt.
 *
 * Soak mode: `DDUMBFS_SOAK=1` raises the counts of every heavy test (CI keeps each file well under 60 s on 2 cores);
 * `DDUMBFS_SOAK=N` (N > 1) multiplies the soak count by N.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../../src/errors.js';
import { runFsck, type FsckMode, type FsckRunResult } from '../../src/fsck/run.js';
import type { UfsFile } from '../../src/ufs/ufs_file.js';
import { Logger } from '../../src/util/log.js';
import { Volume } from '../../src/volume/volume.js';

import { FIXTURE_DIR, FIXTURE_VOLS_DIR } from './fixtures.js';
import { runOk } from './run.js';

export { FIXTURE_DIR };
export const FIXTURE_VOLS = FIXTURE_VOLS_DIR;

/** True when the soak mode is on. */
export const SOAK = !!process.env.DDUMBFS_SOAK && process.env.DDUMBFS_SOAK !== '0';

/** `ci` normally, `soak` (times DDUMBFS_SOAK when it is a number > 1) in soak mode. */
export function soakCount(ci: number, soak: number): number {
  if (!SOAK) return ci;
  const m = Number(process.env.DDUMBFS_SOAK);
  return Number.isFinite(m) && m > 1 ? Math.round(soak * m) : soak;
}

/** First seed of a run: DDUMBFS_SEED replays one seed (then the count is 1), else `base`. */
export function seedRange(base: number, count: number): number[] {
  const one = process.env.DDUMBFS_SEED;
  if (one !== undefined && one !== '') return [Number(one)];
  return Array.from({ length: count }, (_, i) => base + i);
}

/** A logger that keeps its lines instead of printing them. */
export function quietLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const l = new Logger((s) => lines.push(String(s))) as Logger & { lines: string[] };
  l.lines = lines;
  return l;
}

/**
 * A private writable copy of the fixture volume `name` as `dest` (cp -a, chmod -R u+w). Asynchronous: a copy of a
 * volume can take many seconds on a slow machine, and a blocked worker fails vitest's RPC (helpers/run.ts).
 * @returns `dest`
 * @throws Error when cp or chmod fails
 */
export async function copyFixtureVolume(name: string, dest: string): Promise<string> {
  await runOk('cp', ['-a', path.join(FIXTURE_VOLS, name), dest]);
  await runOk('chmod', ['-R', 'u+w', dest]);
  return dest;
}

/**
 * Copy a volume directory tree (our own, already writable) to `dest`; asynchronous for the same reason.
 * @returns `dest`
 */
export async function copyVolumeDir(src: string, dest: string): Promise<string> {
  await fsp.cp(src, dest, { recursive: true });
  return dest;
}

export interface FsckOutcome {
  /** As fsckddumbfs would exit: 0 OK, 2 WARNING, 1 ERROR (also when it throws). */
  exitCode: number;
  result?: FsckRunResult;
  error?: Error;
  /** Log lines and report lines. */
  log: string[];
}

/** Run fsck in `mode` through the library (markers handled as the CLI does). Never throws. */
export async function fsck(parent: string, mode: FsckMode, options: { force?: boolean } = {}): Promise<FsckOutcome> {
  const logger = quietLogger();
  const out: string[] = [];
  try {
    const result = await runFsck(parent, { mode, logger, force: options.force, out: (l) => out.push(String(l)), hashThreads: 0 });
    return { exitCode: result.exitCode, result, log: [...logger.lines, ...out] };
  } catch (err) {
    return { exitCode: 1, error: err as Error, log: [...logger.lines, ...out, `THROWN: ${(err as Error).message}`] };
  }
}

/** Read a whole file of the volume (path relative to ddfsroot) through a read-only Volume. */
export async function readVolumeFile(parent: string, rel: string): Promise<Buffer> {
  const v = await Volume.open(parent, { readOnly: true });
  try {
    const f = await v.openFile(path.join(v.rootDir, rel), { readOnly: true });
    try {
      return await f.read(0, f.size);
    } finally {
      await f.close();
    }
  } finally {
    await v.close();
  }
}

/**
 * Read a whole open file, lost blocks (address 1: reads of them fail with CORRUPT, `data.lost`) as zeros, for tests
 * that judge a repaired file by its content and check separately that it is listed in corrupted.txt.
 * @returns the content and the indexes of the lost blocks
 */
export async function readLostAsZeros(f: UfsFile, blockSize: number): Promise<{ data: Buffer; lostBlocks: number[] }> {
  const data = Buffer.alloc(f.size);
  const lostBlocks: number[] = [];
  for (let pos = 0; pos < data.length; pos += blockSize) {
    try {
      (await f.read(pos, blockSize)).copy(data, pos);
    } catch (err) {
      if (!(err instanceof DdfsError && err.code === 'CORRUPT' && err.data.lost === true)) throw err;
      lostBlocks.push(pos / blockSize);
    }
  }
  return { data, lostBlocks };
}

export function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

/** The fixture MD5SUMS: [path relative to ddfsroot, md5]. */
export function fixtureMd5Sums(): Array<[string, string]> {
  return fs.readFileSync(path.join(FIXTURE_DIR, 'MD5SUMS'), 'utf8').trim().split('\n').map((l) => {
    const [sum, rel] = l.split(/\s+/);
    return [rel!.replace(/^\.\//, ''), sum!];
  });
}

/** Files of MD5SUMS whose content in the volume differs (empty when every file is intact). */
export async function md5Mismatches(parent: string): Promise<string[]> {
  const bad: string[] = [];
  for (const [rel, sum] of fixtureMd5Sums()) {
    try {
      if (md5(await readVolumeFile(parent, rel)) !== sum) bad.push(rel);
    } catch (err) {
      bad.push(`${rel} (${(err as Error).message})`);
    }
  }
  return bad;
}

/** corrupted.txt of a volume: absolute UFS path → 4-character flags. */
export function readCorruptedList(parent: string): Map<string, string> {
  const p = path.join(parent, 'ddfsroot', '.ddumbfs', 'corrupted.txt');
  const out = new Map<string, string>();
  if (!fs.existsSync(p)) return out;
  for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
    if (line.length < 6) continue;
    out.set(line.slice(5), line.slice(0, 4));
  }
  return out;
}

/** Print a count line the CI log keeps (vitest shows console output of passing tests too). */
export function reportCount(what: string, n: number | string): void {
  // eslint-disable-next-line no-console
  console.log(`[count] ${what}: ${n}`);
}
