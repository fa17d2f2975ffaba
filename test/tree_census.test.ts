/**
 * treeCensus (the seal's census, mirroring spec §4.3): the entry count and the EXACT highest ctime in ns, the same
 * as a plain bigint lstat walk gives, though the walk itself reads number stats; and each kind of offline edit of a
 * ddumbfs 1.1 tool or a hand edit (a file's content rewritten in place, a new file in a deep directory, a rename)
 * moves the census away from the one taken before it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { treeCensus } from '../src/io/journal_dir.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function naive(root: string): { entryCount: number; ctimeMaxNs: bigint } {
  let entryCount = 0;
  let ctimeMaxNs = fs.lstatSync(root, { bigint: true }).ctimeNs;
  const walk = (d: string): void => {
    for (const n of fs.readdirSync(d)) {
      const st = fs.lstatSync(path.join(d, n), { bigint: true });
      entryCount++;
      if (st.ctimeNs > ctimeMaxNs) ctimeMaxNs = st.ctimeNs;
      if (st.isDirectory()) walk(path.join(d, n));
    }
  };
  walk(root);
  return { entryCount, ctimeMaxNs };
}

function tree(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'census-'));
  dirs.push(root);
  for (let d = 0; d < 5; d++) {
    fs.mkdirSync(path.join(root, `d${d}`, 'deep', 'er'), { recursive: true });
    for (let f = 0; f < 20; f++) fs.writeFileSync(path.join(root, `d${d}`, 'deep', 'er', `f${f}`), `x${f}`);
  }
  fs.symlinkSync('d0', path.join(root, 'link'));
  return root;
}

describe('treeCensus', () => {
  it('gives the exact entry count and highest ctime in ns of a plain bigint walk', () => {
    const root = tree();
    expect(treeCensus(Buffer.from(root), 64)).toEqual(naive(root));
  });

  it('an offline edit (content rewritten in place, a new deep file, a rename) changes the census', async () => {
    const root = tree();
    const edits: Array<() => void> = [
      () => {
        // in place: same size, no directory changes; only the file's own ctime moves
        const fd = fs.openSync(path.join(root, 'd1', 'deep', 'er', 'f3'), 'r+');
        fs.writeSync(fd, 'y3', 0);
        fs.closeSync(fd);
      },
      () => fs.writeFileSync(path.join(root, 'd2', 'deep', 'er', 'new'), 'n'),
      () => fs.renameSync(path.join(root, 'd3', 'deep', 'er', 'f1'), path.join(root, 'd4', 'deep', 'f1')),
    ];
    for (const edit of edits) {
      const before = treeCensus(Buffer.from(root), 64);
      // a ctime strictly newer than the census's highest: the file system's clock may be coarse (a few ms)
      await new Promise((r) => setTimeout(r, 30));
      edit();
      const after = treeCensus(Buffer.from(root), 64);
      expect(after).toEqual(naive(root));
      expect(after.entryCount !== before.entryCount || after.ctimeMaxNs > before.ctimeMaxNs).toBe(true);
    }
  });
});
