/**
 * A UFS tree with every kind of entry migrate and resize must keep (subdirectories, hard links, symlinks, a FIFO,
 * xattrs, sparse and empty files, a non-UTF-8 name, modes, owners, ns times), and a snapshot of a volume's tree
 * (content through the volume's reader + metadata) to compare before and after.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { listXattrs, getXattr, setXattr } from '../../src/io/xattr.js';
import { setTimesNoFollow } from '../../src/io/libc.js';
import { Volume } from '../../src/volume/volume.js';
import { lcgBytes } from './bytes.js';
import { fifoUfs, linkUfs, mkdirUfs, symlinkUfs, ufsAbs, withVolume, writeUfsFile } from './ufs_tree.js';

export const NON_UTF8_NAME = Buffer.from([0x63, 0x61, 0x66, 0xe9]);

/**
 * Build the tree in the closed volume `parent`. A file `gone.bin` is written first and removed at the end, so its
 * blocks (the lowest addresses) stay allocated and unreferenced: a repair frees them and a pack moves later blocks
 * down into them.
 */
export async function buildResizeTree(parent: string): Promise<void> {
  await withVolume(parent, async (v) => {
    await writeUfsFile(v, 'gone.bin', lcgBytes(40_000, 1));
    mkdirUfs(parent, 'sub');
    mkdirUfs(parent, 'sub/deep', 0o750);
    await writeUfsFile(v, 'a.bin', lcgBytes(20_000, 2));
    await writeUfsFile(v, 'sub/deep/b.bin', lcgBytes(9_000, 3));
    await writeUfsFile(v, 'sub/dup.bin', lcgBytes(20_000, 2));
    await writeUfsFile(v, 'sparse.bin', lcgBytes(1_000, 4), 200_000);
    await writeUfsFile(v, 'zero.bin', Buffer.alloc(4096));
    await writeUfsFile(v, 'empty', Buffer.alloc(0));
    await writeUfsFile(v, Buffer.concat([Buffer.from('sub/'), NON_UTF8_NAME]), lcgBytes(700, 5));
  });
  linkUfs(parent, 'a.bin', 'sub/hl');
  symlinkUfs(parent, '../a.bin', 'sub/sl');
  await fifoUfs(parent, 'sub/fifo');
  setXattr(ufsAbs(parent, 'a.bin'), Buffer.from('user.test'), Buffer.from('value of a'));
  setXattr(ufsAbs(parent, 'sub'), Buffer.from('user.dir'), Buffer.from([0, 1, 2, 255]));
  fs.chmodSync(ufsAbs(parent, 'sub/deep/b.bin'), 0o640);
  fs.lchownSync(ufsAbs(parent, 'sub/deep/b.bin'), 1234, 5678);
  fs.rmSync(ufsAbs(parent, 'gone.bin'));
  setTimesNoFollow(ufsAbs(parent, 'sub/deep/b.bin'), 978_350_400_123_456_789n, 978_350_400_987_654_321n);
  setTimesNoFollow(ufsAbs(parent, 'sub/sl'), 1_000_000_000_000_000_001n, 1_000_000_000_000_000_002n);
  setTimesNoFollow(ufsAbs(parent, 'sub/fifo'), 1_100_000_000_000_000_001n, 1_100_000_000_000_000_002n);
  setTimesNoFollow(ufsAbs(parent, 'sub/deep'), 1_200_000_000_000_000_001n, 1_200_000_000_000_000_002n);
}

/** One line per entry of ddfsroot (without .ddumbfs): type, mode, owner, mtime ns, link group, xattrs, content. */
export async function snapshotVolume(parent: string): Promise<string[]> {
  const root = Buffer.from(path.join(parent, 'ddfsroot'));
  const lines: string[] = [];
  const firstOfInode = new Map<string, string>();
  const vol = await Volume.open(parent, { readOnly: true });
  try {
    const visit = async (rel: Buffer): Promise<void> => {
      const p = rel.length ? Buffer.concat([root, Buffer.from('/'), rel]) : root;
      const st = fs.lstatSync(p, { bigint: true });
      const name = rel.toString('latin1');
      const kind = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : st.isFIFO() ? 'p' : 'o';
      const xattrs = listXattrs(p).map((n) => `${n.toString('latin1')}=${getXattr(p, n).toString('hex')}`).sort().join(',');
      let extra = '';
      if (kind === 'f') {
        const key = String(st.ino);
        const first = firstOfInode.get(key);
        if (first !== undefined) {
          lines.push(`${name} link-to ${first}`);
          return;
        }
        firstOfInode.set(key, name);
        const f = await vol.openFile(p);
        try {
          extra = ` size=${f.size} sha=${(await import('node:crypto')).createHash('sha256').update(await f.read(0, f.size)).digest('hex')}`;
        } finally {
          await f.close();
        }
      } else if (kind === 'l') {
        // no atime: readlink(2) itself moves it (relatime)
        extra = ` -> ${fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1')}`;
      } else if (kind === 'p') {
        extra = ` atime=${st.atimeNs}`;
      }
      const mtime = kind === 'd' && rel.length === 0 ? '' : ` mtime=${st.mtimeNs}`;
      lines.push(`${name || '/'} ${kind} mode=${(st.mode & 0o7777n).toString(8)} owner=${st.uid}:${st.gid} nlink=${kind === 'd' ? '-' : st.nlink}${mtime} xattrs=[${xattrs}]${extra}`);
      if (kind === 'd') {
        const names = fs.readdirSync(p, { encoding: 'buffer' }).filter((n) => !(rel.length === 0 && n.toString() === '.ddumbfs')).sort(Buffer.compare);
        for (const n of names) await visit(rel.length ? Buffer.concat([rel, Buffer.from('/'), n]) : n);
      }
    };
    await visit(Buffer.alloc(0));
  } finally {
    await vol.close();
  }
  return lines;
}
