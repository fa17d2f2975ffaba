/**
 * Tree helpers for reclaim tests: write files through a Volume, read every regular file of ddfsroot back (names as
 * raw bytes, never decoded), and compare the tree with a model (latin1 path → content).
 */
import * as fs from 'node:fs';
import type { Volume } from '../../src/volume/volume.js';
import type { TreeCaller } from '../../src/volume/tree.js';
import type { UfsFile } from '../../src/ufs/ufs_file.js';

/** The test process as the caller of tree changes (new objects stay ours). */
export const SELF: TreeCaller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

/** A byte path from a latin1 string (one char per byte). */
export function bytes(p: string): Buffer {
  return Buffer.from(p, 'latin1');
}

/** Create (or replace the content of) the file at tree path `rel` (latin1) with `data`, through the dedup layer. */
export async function writeTreeFile(vol: Volume, rel: string, data: Buffer): Promise<void> {
  await vol.tree.createFile(bytes(rel), 0o644, SELF, false);
  const f = await vol.openTreeFile(bytes(rel), { truncate: true });
  try {
    await f.write(0, data);
  } finally {
    await f.close();
  }
}

/** Every regular file under ddfsroot (outside .ddumbfs) and its logical content, keyed by latin1 path. */
export async function readTree(vol: Volume): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const root = Buffer.from(vol.rootDir);
  const visit = async (rel: Buffer): Promise<void> => {
    const dir = rel.length === 0 ? root : Buffer.concat([root, bytes('/'), rel]);
    const names = fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, bytes('/'), name]);
      if (rel.length === 0 && name.toString('latin1') === '.ddumbfs') continue;
      const abs = Buffer.concat([root, bytes('/'), childRel]);
      const st = fs.lstatSync(abs);
      if (st.isDirectory()) await visit(childRel);
      else if (st.isFile()) {
        const f = await vol.openTreeFile(childRel, { readOnly: true });
        let content: Buffer;
        try {
          content = await f.read(0, f.size);
        } finally {
          await f.close();
        }
        out.set(childRel.toString('latin1'), Buffer.from(content));
      }
    }
  };
  await visit(Buffer.alloc(0));
  return out;
}

/** '' when the tree holds exactly the model's files with the model's bytes, else the differences (short). */
export function treeDiff(actual: Map<string, Buffer>, model: Map<string, Buffer>): string {
  const lines: string[] = [];
  for (const [p, want] of model) {
    const got = actual.get(p);
    if (!got) lines.push(`missing ${JSON.stringify(p)}`);
    else if (!got.equals(want)) lines.push(`differs ${JSON.stringify(p)} (${got.length} vs ${want.length} bytes)`);
  }
  for (const p of actual.keys()) if (!model.has(p)) lines.push(`unexpected ${JSON.stringify(p)}`);
  return lines.slice(0, 20).join('\n') + (lines.length > 20 ? `\n... ${lines.length - 20} more` : '');
}

/** Open the UFS file at tree path `rel` (latin1) through the volume. */
export function openTreeFile(vol: Volume, rel: string, options: { readOnly?: boolean } = {}): Promise<UfsFile> {
  return vol.openTreeFile(bytes(rel), options);
}
