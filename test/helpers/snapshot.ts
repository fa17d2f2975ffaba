/**
 * A snapshot of a directory tree for "nothing was written" assertions: every entry below `dir` (relative path) maps
 * to its type, mode and, by type, mtime plus size plus sha1 of the content (files), the target (symlinks) or the
 * mtime (directories, so an entry created and removed again still shows). Two snapshots are equal only when no
 * entry was added, removed, rewritten, retimed or chmod'ed.
 */
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export async function snapshotTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    const entries = await fsp.readdir(path.join(dir, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = path.join(rel, e.name);
      const p = path.join(dir, r);
      const st = await fsp.lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (e.isDirectory()) {
        out[r] = `dir ${mode} ${st.mtimeMs}`;
        await walk(r);
      } else if (e.isSymbolicLink()) {
        out[r] = `link ${await fsp.readlink(p)}`;
      } else if (e.isFile()) {
        out[r] = `file ${mode} ${st.size} ${createHash('sha1').update(await fsp.readFile(p)).digest('hex')} ${st.mtimeMs}`;
      } else {
        out[r] = `other ${st.mode.toString(8)} ${st.rdev} ${st.mtimeMs}`;
      }
    }
  }
  await walk('');
  return out;
}
