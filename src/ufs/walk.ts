/**
 * STAND-IN for helper "seam"'s walker (branch `seam`, /work/notes/seam.md item 3), with the same API, so reclaim
 * can be written and tested before the merge; replaced by seam's file when `seam` is merged.
 */
import * as fs from 'node:fs';
import { DdfsError } from '../errors.js';

export type UfsEntryKind = 'file' | 'directory' | 'symlink' | 'other';
export interface UfsTreeEntry { path: Buffer; kind: UfsEntryKind; depth: number }
export interface UfsWalkOptions {
  onError: (path: Buffer, err: Error) => 'skip';
  depthMax?: number;
  skipSpecial?: boolean;
}

const SLASH = Buffer.from('/');

export async function* walkUfsTree(rootDir: string | Buffer, options: UfsWalkOptions, start?: Buffer): AsyncGenerator<UfsTreeEntry> {
  const root = typeof rootDir === 'string' ? Buffer.from(rootDir) : rootDir;
  const depthMax = options.depthMax ?? 1024;
  const abs = (rel: Buffer): Buffer => (rel.length === 0 ? root : Buffer.concat([root, SLASH, rel]));
  async function* visit(rel: Buffer, depth: number): AsyncGenerator<UfsTreeEntry> {
    if (depth > depthMax) {
      options.onError(rel, new DdfsError('INVALID', `${rel.toString('latin1')}: deeper than ${depthMax}`));
      return;
    }
    let names: Buffer[];
    try {
      names = fs.readdirSync(abs(rel), { encoding: 'buffer' }).sort(Buffer.compare);
    } catch (err) {
      options.onError(rel, err as Error);
      return;
    }
    for (const name of names) {
      const child = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
      if (rel.length === 0 && options.skipSpecial !== false && (name.equals(Buffer.from('.ddumbfs')) || name.equals(Buffer.from('ddfsmirror')))) continue;
      let st: fs.Stats;
      try {
        st = fs.lstatSync(abs(child));
      } catch (err) {
        options.onError(child, err as Error);
        continue;
      }
      const kind: UfsEntryKind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
      yield { path: child, kind, depth };
      if (kind === 'directory') yield* visit(child, depth + 1);
    }
  }
  yield* visit(start ?? Buffer.alloc(0), start ? start.toString('latin1').split('/').length : 0);
}
