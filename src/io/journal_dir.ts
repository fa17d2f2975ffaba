/**
 * Directory look-ups of the master's journal (mirroring spec §4.2 `ddfsmirror/journal/`): which segment files
 * exist, and whether a path is a real directory (never a symlink planted in its place). mirror/ may not import
 * node:fs (test/layering.test.ts); the segment files themselves are read and written through the Device seam.
 *
 * Invariants: names are returned as the kernel gives them (journal names are ASCII, so text is exact); nothing here
 * writes.
 */
import * as fs from 'node:fs';

/**
 * The names in directory `dir`, unsorted.
 * @throws Node errors (ENOENT, ENOTDIR...) unchanged
 */
export function listNames(dir: string): string[] {
  return fs.readdirSync(dir);
}

/**
 * What is at `p` without following a symlink: 'dir', 'file', 'other', or null when nothing is there.
 * @throws Node errors other than ENOENT/ENOTDIR
 */
export function entryKind(p: string): 'dir' | 'file' | 'other' | null {
  try {
    const st = fs.lstatSync(p);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/**
 * The modification time of `p` in ms since the epoch, without following a symlink (a journal segment's age for
 * retention, mirroring spec §4.12), or null when nothing is there.
 * @throws Node errors other than ENOENT/ENOTDIR
 */
export function mtimeMsOf(p: string): number | null {
  try {
    return fs.lstatSync(p).mtimeMs;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Entry count and highest ctime of a tree (the seal of a clean unmount, mirroring spec §4.3). */
export interface TreeCensus {
  entryCount: number;
  /** Highest ctime in ns of any entry, the root included. */
  ctimeMaxNs: bigint;
}

/**
 * Count the entries under `root` (not the root itself) and find the highest ctime, with lstat only (never following
 * a symlink, never crossing into another file system, at most `depthMax` levels). Entries that vanish meanwhile are
 * skipped. `skipTopNames` (latin1 of the raw names) are left out at the top level, with all they hold.
 * @throws Node errors of the root's lstat
 */
export function treeCensus(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set()): TreeCensus {
  const top = fs.lstatSync(root, { bigint: true });
  const out: TreeCensus = { entryCount: 0, ctimeMaxNs: top.ctimeNs };
  const walk = (dir: Buffer, depth: number): void => {
    if (depth > depthMax) return;
    let names: Buffer[];
    try {
      names = fs.readdirSync(dir, { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const name of names) {
      if (depth === 1 && skipTopNames.has(name.toString('latin1'))) continue;
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      let st: fs.BigIntStats;
      try {
        st = fs.lstatSync(p, { bigint: true });
      } catch {
        continue;
      }
      out.entryCount++;
      if (st.ctimeNs > out.ctimeMaxNs) out.ctimeMaxNs = st.ctimeNs;
      if (st.isDirectory() && st.dev === top.dev) walk(p, depth + 1);
    }
  };
  walk(root, 1);
  return out;
}

/**
 * Remove the file `p` (unlink: a symlink there is removed, never followed).
 * @returns false when nothing was there
 * @throws Node errors other than ENOENT
 */
export function removeNoFollow(p: string): boolean {
  try {
    fs.unlinkSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
