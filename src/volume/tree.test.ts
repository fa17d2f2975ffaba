/** UfsTree (tree.ts): the change sink, observers, the hold on renames and links, byte paths end to end. */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UfsTree, parentOf, type TreeChange } from './tree.js';

const SELF = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const dirs: string[] = [];

afterEach(async () => {
  for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true });
});

async function tempTree(): Promise<{ root: string; tree: UfsTree }> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-tree-'));
  dirs.push(root);
  return { root, tree: new UfsTree(Buffer.from(`${root}/`)) };
}

/** Describe a change for comparisons: op and latin1 paths. */
const show = (c: TreeChange): string => `${c.op} ${c.path.toString('latin1')}${c.dest ? ` ${c.dest.toString('latin1')}` : ''}`;

describe('UfsTree: the one place where the UFS tree changes', () => {
  it('awaits the change sink before each change, with raw byte paths, and tells observers after success only', async () => {
    const { root, tree } = await tempTree();
    const seen: string[] = [];
    tree.sink = {
      async beforeChange(c) {
        // the change has not happened yet when the sink is called
        const target = Buffer.concat([Buffer.from(`${root}/`), c.dest ?? c.path]);
        seen.push(`${show(c)} exists=${fs.existsSync(target)}`);
      },
    };
    const after: string[] = [];
    tree.addObserver({ afterChange: (c) => after.push(show(c)) });
    await tree.mkdir(b('d\xff'), 0o755, SELF);
    expect(await tree.createFile(b('d\xff/f'), 0o644, SELF, true)).toBe(true);
    expect(await tree.createFile(b('d\xff/f'), 0o644, SELF, false)).toBe(false);
    await tree.link(b('d\xff/f'), b('g'));
    await tree.rename(b('g'), b('h'));
    await tree.symlink(b('target\xfe'), b('s'), SELF);
    await tree.chmod(b('h'), 0o600);
    await tree.unlink(b('h'));
    await expect(tree.rmdir(b('d\xff'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    expect(seen).toEqual([
      'mkdir d\xff exists=false',
      'create d\xff/f exists=false',
      'create d\xff/f exists=true',
      'link d\xff/f g exists=false',
      'rename g h exists=false',
      'symlink s exists=false',
      'chmod h exists=true',
      'unlink h exists=true',
      'rmdir d\xff exists=true',
    ]);
    // no notice for the create that found the file, nor for the failed rmdir
    expect(after).toEqual(['mkdir d\xff', 'create d\xff/f', 'link d\xff/f g', 'rename g h', 'symlink s', 'chmod h', 'unlink h']);
    expect(fs.readlinkSync(Buffer.from(`${root}/s`), { encoding: 'buffer' }).equals(b('target\xfe'))).toBe(true);
    expect(fs.statSync(Buffer.concat([Buffer.from(`${root}/`), b('d\xff/f')])).mode & 0o777).toBe(0o600);
  });

  it('holds renames and links back while a hold is set, never unlinks or creates', async () => {
    const { root, tree } = await tempTree();
    await tree.createFile(b('a'), 0o644, SELF, true);
    await tree.createFile(b('x'), 0o644, SELF, true);
    const release = tree.holdPathChanges();
    let renamed = false;
    const rename = tree.rename(b('a'), b('b')).then(() => {
      renamed = true;
    });
    await tree.unlink(b('x'));
    await tree.createFile(b('y'), 0o644, SELF, true);
    await new Promise((r) => setImmediate(r));
    expect(renamed).toBe(false);
    expect(fs.existsSync(path.join(root, 'a'))).toBe(true);
    release();
    await rename;
    expect(fs.existsSync(path.join(root, 'b'))).toBe(true);
  });

  it('parentOf gives the parent of a relative byte path', () => {
    expect(parentOf(b('a/b\xff/c')).toString('latin1')).toBe('a/b\xff');
    expect(parentOf(b('c')).toString('latin1')).toBe('.');
  });
});
