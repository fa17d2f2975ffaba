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
