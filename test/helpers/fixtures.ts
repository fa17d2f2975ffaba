/**
 * The ddumbfs 1.1 fixtures made by the upstream C tools (test/fixtures/ddumbfs-1.1 in this repository, see its
 * README): paths, the mkddumbfs options of the clean volumes, MD5SUMS and .upload.out parsing, and copying a volume
 * into a private writable temp directory (the committed tree must never be written).
 * Invariant: FIXTURE_DIR is the one place that says where the fixtures are; it is found from this file's own
 * location, so a fresh clone anywhere works and no test reads fixtures from outside the repository.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HashName } from '../../src/format/config.js';
import { runOk } from './run.js';

/** test/fixtures/ddumbfs-1.1 of this checkout (read-only by convention: copy a volume before writing to it). */
export const FIXTURE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'ddumbfs-1.1');
export const FIXTURE_SRC_DIR = join(FIXTURE_DIR, 'src');
export const FIXTURE_VOLS_DIR = join(FIXTURE_DIR, 'vols');

/** mkddumbfs options of the clean volumes (fixture README table; overflow default 1.3, no -a). */
export interface CleanVolume {
  name: string;
  partitionSize: number;
  blockSize: number;
  hashName: HashName;
}

export const CLEAN_VOLUMES: readonly CleanVolume[] = [
  { name: 'v11-4k-tiger', partitionSize: 4 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER' },
  { name: 'v11-8k-sha1', partitionSize: 4 * 1024 * 1024, blockSize: 8192, hashName: 'SHA1' },
  { name: 'v11-4k-tiger128', partitionSize: 2 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER128' },
  { name: 'v11-16k-tiger160', partitionSize: 8 * 1024 * 1024, blockSize: 16384, hashName: 'TIGER160' },
];

/** Path of a fixture volume (read-only: copy it before running anything that writes). */
export function fixtureVolumePath(name: string): string {
  return join(FIXTURE_VOLS_DIR, name);
}

/** Path of a side file of a volume, e.g. fixtureSidePath('v11-4k-tiger', 'upload.out'). */
export function fixtureSidePath(name: string, suffix: string): string {
  return join(FIXTURE_VOLS_DIR, `${name}.${suffix}`);
}

/** Temp directories made by this module, removed by removeTempDirs(). */
const tempDirs: string[] = [];

/** A fresh private temp directory. */
export async function makeTempDir(prefix = 'ddfs-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

/** Remove every temp directory made so far (afterAll). */
export async function removeTempDirs(): Promise<void> {
  for (const d of tempDirs.splice(0)) await rm(d, { recursive: true, force: true });
}

/**
 * Copy fixture volume `name` (cp -a) into a new temp directory and make it writable.
 * @returns the copy's parent directory (tmp/NAME)
 */
export async function copyFixtureVolume(name: string): Promise<string> {
  const dir = await makeTempDir(`ddfs-${name}-`);
  await runOk('cp', ['-a', fixtureVolumePath(name), dir]);
  const copy = join(dir, name);
  await runOk('chmod', ['-R', 'u+w', copy]);
  return copy;
}

/** MD5SUMS as a map: relative path (no leading ./) → hex md5. */
export async function readMd5Sums(): Promise<Map<string, string>> {
  const text = await readFile(join(FIXTURE_DIR, 'MD5SUMS'), 'utf8');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{32})\s+\*?(?:\.\/)?(.+)$/.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

export function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** One file of an .upload.out: its relative path, and the block lines exactly as printed. */
export interface UploadLog {
  /** Path relative to src/ and to ddfsroot/ (e.g. dir/sub/nested.txt). */
  path: string;
  /** The `upload SRC DST` line as printed. */
  header: string;
  /** The block lines (`%6d %6d %016x...`). */
  lines: string[];
}

/** Parse a volume's .upload.out into files in upload order. */
export async function readUploadLog(name: string): Promise<UploadLog[]> {
  const text = await readFile(fixtureSidePath(name, 'upload.out'), 'utf8');
  const out: UploadLog[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^upload src\/(\S+) \S+$/.exec(line);
    if (m) {
      out.push({ path: m[1]!, header: line, lines: [] });
      continue;
    }
    const cur = out[out.length - 1];
    if (!cur) throw new Error(`${name}.upload.out: block line before any upload line: ${line}`);
    cur.lines.push(line);
  }
  return out;
}

/** Every regular file below `dir`, as sorted paths relative to it (optionally skipping a subdirectory name). */
export async function listFiles(dir: string, skip: ReadonlySet<string> = new Set()): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (!skip.has(e.name)) await walk(p);
      } else if (e.isFile()) {
        out.push(relative(dir, p));
      }
    }
  };
  await walk(dir);
  return out.sort();
}
