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
 * Cost: one readdir per directory and one lstat per entry (a pass of an unmounted master pays it, mirroring spec
 * §4.3). The walk lstats with number stats (ctimeMs, a double: about 0.25 µs resolution today), which are cheaper
 * than bigint ones; the exact maximum in ns is then taken with a bigint lstat of only the entries whose ctimeMs is
 * the highest seen. That is exact, not an approximation: rounding ns to a double is monotonic, so the entry of the
 * highest ctimeNs always has the highest ctimeMs and is among the ones re-read (an entry changed between the two
 * reads only gets a newer ctime, which can only make a mismatch more likely, never hide one).
 * @throws Node errors of the root's lstat
 */
export function treeCensus(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set()): TreeCensus {
  const top = fs.lstatSync(root, { bigint: true });
  const topDev = Number(top.dev);
  const out: TreeCensus = { entryCount: 0, ctimeMaxNs: top.ctimeNs };
  let maxMs = -Infinity;
  let atMax: Buffer[] = [];
  const slash = Buffer.from('/');
  const walk = (dir: Buffer, depth: number): void => {
    if (depth > depthMax) return;
    let names: Buffer[];
    try {
      names = fs.readdirSync(dir, { encoding: 'buffer' });
    } catch {
      return;
    }
    const prefix = Buffer.concat([dir, slash]);
    for (const name of names) {
      if (depth === 1 && skipTopNames.has(name.toString('latin1'))) continue;
      const p = Buffer.concat([prefix, name]);
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(p, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (st === undefined) continue;
      out.entryCount++;
      if (st.ctimeMs > maxMs) {
        maxMs = st.ctimeMs;
        atMax = [p];
      } else if (st.ctimeMs === maxMs) atMax.push(p);
      if (st.isDirectory() && st.dev === topDev) walk(p, depth + 1);
    }
  };
  walk(root, 1);
  for (const p of atMax) {
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch {
      continue;
    }
    if (st !== undefined && st.ctimeNs > out.ctimeMaxNs) out.ctimeMaxNs = st.ctimeNs;
  }
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
