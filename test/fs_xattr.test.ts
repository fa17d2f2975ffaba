/**
 * Extended attributes and POSIX ACLs through a real mount (issue 10 "Data a backup must keep"): they live on the
 * UFS object itself (file, directory, symlink), are served back by getxattr/listxattr, honour the size probe,
 * ERANGE, ENODATA, XATTR_CREATE/XATTR_REPLACE, survive rename and link, and `cp -a` / `rsync -aHAX` of a tree with
 * xattrs and ACLs into the mount return 0 and compare equal with the source. A read-only mount serves them and
 * answers EROFS to a change.
 */
import { appendFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import koffi from 'koffi';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XATTR_CREATE, XATTR_REPLACE, getXattr, listXattrs, removeXattr, setXattr, xattrSize } from '../src/io/xattr.js';
import { REPO_DIR, makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

let work: string;
let parent: string;
let root: string;
let mnt: string;
let m: MountedVolume;

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  return undefined;
}

async function ok(cmd: string, args: string[]): Promise<string> {
  const r = await sh(cmd, args);
  expect(r.stderr, `${cmd} ${args.join(' ')}`).toBe('');
  expect(r.code, `${cmd} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/**
 * `getfattr -d` / `getfacl` output of every object of `dir`, as a map path → text: per object, so the order of
 * readdir (which differs between the source and the mount) does not matter.
 */
async function attributesOf(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const list = (await ok('find', [dir, '-mindepth', '1', '-printf', '%P\\n'])).split('\n').filter((l) => l !== '');
  for (const rel of list) {
    if (rel === '.ddumbfs' || rel.startsWith('.ddumbfs/')) continue; // the volume's own files (fsck's report)
    const p = join(dir, rel);
    const x = await sh('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', p]);
    const isLink = (await sh('test', ['-L', p])).code === 0;
    const acl = isLink ? { stdout: '' } : await sh('getfacl', ['--omit-header', '--absolute-names', p]);
    out.set(rel, `${x.stdout.replace(/^# file: .*\n/m, '')}|${acl.stdout}`);
  }
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-xattr-'));
  parent = join(work, 'vol');
  root = join(parent, 'ddfsroot');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: 4096, size: '64M' });
  m = await mountVolume(parent, mnt);
});

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

describe('extended attributes through the mount', () => {
  it('user.* on a file and a directory, trusted.* on a symlink: set, listed, read back, stored on the UFS object', async () => {
    writeFileSync(join(mnt, 'f'), 'data');
    mkdirSync(join(mnt, 'd'));
    symlinkSync('f', join(mnt, 'l'));
    await ok('setfattr', ['-n', 'user.color', '-v', 'blue', join(mnt, 'f')]);
    await ok('setfattr', ['-n', 'user.dir', '-v', '0x00ff10', join(mnt, 'd')]);
    await ok('setfattr', ['-h', '-n', 'trusted.link', '-v', 'on-the-link', join(mnt, 'l')]);
    expect(await ok('getfattr', ['-d', '--absolute-names', join(mnt, 'f')])).toContain('user.color="blue"');
    expect(await ok('getfattr', ['-d', '-e', 'hex', '--absolute-names', join(mnt, 'd')])).toContain('user.dir=0x00ff10');
    expect(await ok('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', join(mnt, 'l')])).toContain('trusted.link="on-the-link"');
    // the symlink's attribute is on the link, not on its target
    expect(listXattrs(b(join(mnt, 'f'))).map(String)).toEqual(['user.color']);
    // where they live: the UFS objects themselves
    expect(getXattr(b(join(root, 'f')), b('user.color')).toString()).toBe('blue');
    expect(getXattr(b(join(root, 'd')), b('user.dir'))).toEqual(Buffer.from([0, 0xff, 0x10]));
    expect(getXattr(b(join(root, 'l')), b('trusted.link')).toString()).toBe('on-the-link');
    // the kernel refuses user.* on a symlink (xattr(7)): EPERM, as on any file system
    expect(codeOf(() => setXattr(b(join(mnt, 'l')), b('user.x'), b('1')))).toBe('EPERM');
  });

  it('size probe, ERANGE on a short buffer, ENODATA, XATTR_CREATE / XATTR_REPLACE, remove, raw-byte names', () => {
    const f = b(join(mnt, 'probe'));
    writeFileSync(f, '');
    const value = Buffer.alloc(3000, 0x61);
    setXattr(f, b('user.big'), value);
    expect(xattrSize(f, b('user.big'))).toBe(3000);
    expect(codeOf(() => getXattr(f, b('user.big'), 2999))).toBe('ERANGE');
    expect(getXattr(f, b('user.big'), 3000)).toEqual(value);
    expect(codeOf(() => getXattr(f, b('user.none')))).toBe('ENODATA');
    expect(codeOf(() => setXattr(f, b('user.big'), b('x'), XATTR_CREATE))).toBe('EEXIST');
    expect(codeOf(() => setXattr(f, b('user.none'), b('x'), XATTR_REPLACE))).toBe('ENODATA');
    setXattr(f, b('user.big'), b('small'), XATTR_REPLACE);
    expect(getXattr(f, b('user.big')).toString()).toBe('small');
    // a name that is not UTF-8 and an empty value
    const raw = Buffer.concat([b('user.'), Buffer.from([0xff, 0xfe, 0x80])]);
    setXattr(f, raw, Buffer.alloc(0), XATTR_CREATE);
    expect(listXattrs(f).sort(Buffer.compare)).toEqual([raw, b('user.big')].sort(Buffer.compare));
    expect(getXattr(f, raw).length).toBe(0);
    // llistxattr: a size probe answers the exact length of the list, a buffer one byte short answers ERANGE
    const llistxattr = koffi.load('libc.so.6').func('long llistxattr(const uint8_t *path, uint8_t *list, size_t size)') as (p: Buffer, l: Buffer | null, n: number) => number;
    const cPath = Buffer.concat([f, Buffer.alloc(1)]);
    const listSize = raw.length + 1 + 'user.big'.length + 1;
    expect(llistxattr(cPath, null, 0)).toBe(listSize);
    expect(llistxattr(cPath, Buffer.alloc(listSize - 1), listSize - 1)).toBe(-1);
    expect(koffi.errno()).toBe(34); // ERANGE
    const list = Buffer.alloc(listSize);
    expect(llistxattr(cPath, list, listSize)).toBe(listSize);
    expect(list.includes(Buffer.concat([raw, Buffer.alloc(1)]))).toBe(true);
    removeXattr(f, b('user.big'));
    removeXattr(f, raw);
    expect(listXattrs(f)).toEqual([]);
    expect(codeOf(() => removeXattr(f, b('user.big')))).toBe('ENODATA');
  });

  it('names reserved for ddumbfs are neither listed, read nor written; files of /.ddumbfs/ take none', () => {
    const f = join(mnt, 'reserved');
    writeFileSync(f, '');
    expect(codeOf(() => setXattr(b(f), b('user.ddumbfs.x'), b('1')))).toBe('EPERM');
    expect(codeOf(() => setXattr(b(f), b('trusted.ddumbfs.x'), b('1')))).toBe('EPERM');
    // one set on the UFS file behind the daemon's back stays invisible from the mount
    setXattr(b(join(root, 'reserved')), b('user.ddumbfs.hidden'), b('1'));
    expect(listXattrs(b(f))).toEqual([]);
    expect(codeOf(() => getXattr(b(f), b('user.ddumbfs.hidden')))).toBe('ENODATA');
    expect(codeOf(() => removeXattr(b(f), b('user.ddumbfs.hidden')))).toBe('EPERM');
    expect(codeOf(() => setXattr(b(join(mnt, '.ddumbfs', 'stats')), b('user.x'), b('1')))).toBe('EPERM');
  });

  it('rename and link keep the attributes (they live on the UFS inode)', () => {
    const f = join(mnt, 'moved');
    writeFileSync(f, 'x');
    setXattr(b(f), b('user.keep'), b('yes'));
    renameSync(f, join(mnt, 'moved2'));
    linkSync(join(mnt, 'moved2'), join(mnt, 'moved3'));
    expect(getXattr(b(join(mnt, 'moved2')), b('user.keep')).toString()).toBe('yes');
    expect(getXattr(b(join(mnt, 'moved3')), b('user.keep')).toString()).toBe('yes');
  });
});

describe('POSIX ACLs through the mount', () => {
  it('setfacl -m u:nobody:r then getfacl shows the entry, on the mount and on the UFS file', async () => {
    const f = join(mnt, 'acl');
    writeFileSync(f, 'x');
    await ok('setfacl', ['-m', 'u:nobody:r', f]);
    const shown = await ok('getfacl', ['--omit-header', '--absolute-names', f]);
    expect(shown).toContain('user:nobody:r--');
    expect(shown).toContain('mask::r--');
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', join(root, 'acl')])).toBe(shown);
    await ok('setfacl', ['-d', '-m', 'g:nogroup:rx', join(mnt, 'd')]);
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', join(mnt, 'd')])).toContain('default:group:nogroup:r-x');
    // a default ACL is inherited by what is created in the directory (the host applies the UFS directory's)
    writeFileSync(join(mnt, 'd', 'inherits'), 'x');
    mkdirSync(join(mnt, 'd', 'subdir'));
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', join(mnt, 'd', 'inherits')])).toContain('group:nogroup:r-x');
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', join(mnt, 'd', 'subdir')])).toContain('default:group:nogroup:r-x');
    await ok('setfacl', ['-b', f]);
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', f])).not.toContain('nobody');
  });

  it('cp -a and rsync -aHAX of a tree with xattrs and ACLs return 0 and compare equal with the source', async () => {
    const src = join(work, 'src');
    mkdirSync(join(src, 'sub', 'deep'), { recursive: true });
    writeFileSync(join(src, 'a'), 'alpha');
    writeFileSync(join(src, 'sub', 'b'), Buffer.alloc(70_000, 7));
    writeFileSync(join(src, 'sub', 'deep', 'c'), '');
    symlinkSync('../a', join(src, 'sub', 'la'));
    linkSync(join(src, 'a'), join(src, 'sub', 'hard'));
    await ok('setfattr', ['-n', 'user.k', '-v', 'v1', join(src, 'a')]);
    await ok('setfattr', ['-n', 'user.long', '-v', 'x'.repeat(3000), join(src, 'sub', 'b')]);
    await ok('setfattr', ['-n', 'user.dir', '-v', 'd', join(src, 'sub')]);
    await ok('setfattr', ['-h', '-n', 'trusted.t', '-v', 'tv', join(src, 'sub', 'la')]);
    await ok('setfacl', ['-m', 'u:nobody:rw', join(src, 'a')]);
    await ok('setfacl', ['-m', 'u:nobody:rx', join(src, 'sub')]);
    await ok('setfacl', ['-d', '-m', 'g:nogroup:rx', join(src, 'sub', 'deep')]);
    const expected = await attributesOf(src);
    expect([...expected.values()].join('')).toContain('user:nobody:rw-');

    await ok('cp', ['-a', src, join(mnt, 'cp')]);
    expect(await attributesOf(join(mnt, 'cp'))).toEqual(expected);
    await ok('rsync', ['-aHAX', `${src}/`, join(mnt, 'rs')]);
    expect(await attributesOf(join(mnt, 'rs'))).toEqual(expected);
    // and back out of the mount
    await ok('rsync', ['-aHAX', `${join(mnt, 'rs')}/`, join(work, 'back')]);
    expect(await attributesOf(join(work, 'back'))).toEqual(expected);
  });
});

describe('read-only mount', () => {
  it('serves the attributes and answers EROFS to setxattr and removexattr', async () => {
    await m.unmount();
    const ro = await mountVolume(parent, mnt, ['ro']);
    try {
      expect(getXattr(b(join(mnt, 'f')), b('user.color')).toString()).toBe('blue');
      expect(listXattrs(b(join(mnt, 'f'))).map(String)).toEqual(['user.color']);
      expect(codeOf(() => setXattr(b(join(mnt, 'f')), b('user.new'), b('1')))).toBe('EROFS');
      expect(codeOf(() => removeXattr(b(join(mnt, 'f')), b('user.color')))).toBe('EROFS');
    } finally {
      await ro.unmount();
    }
  });
});

describe('fsckddumbfs and cpddumbfs (unmounted)', () => {
  it('a repair that cuts a partial trailing node and a rebuild keep the attributes and ACLs of the UFS files', async () => {
    // the read-only test above unmounted the volume; a partial trailing node makes the repair cut the UFS file
    appendFileSync(join(root, 'acl'), Buffer.from([1, 2, 3]));
    await ok('setfacl', ['-m', 'u:nobody:rw', join(root, 'acl')]);
    const before = await attributesOf(root);
    const fsck = join(REPO_DIR, 'bin', 'fsckddumbfs');
    const repair = await sh(process.execPath, [fsck, '-n', parent]);
    expect(repair.stdout + repair.stderr).toMatch(/F  l \S*\/ddfsroot\/acl\n/); // the file was cut to whole nodes
    expect(await attributesOf(root)).toEqual(before);
    const rebuild = await sh(process.execPath, [fsck, '-r', parent]);
    expect(rebuild.code, rebuild.stdout + rebuild.stderr).toBe(0);
    expect(await attributesOf(root)).toEqual(before);
    expect(getXattr(b(join(root, 'f')), b('user.color')).toString()).toBe('blue');
    expect(await ok('getfacl', ['--omit-header', '--absolute-names', join(root, 'acl')])).toContain('user:nobody:rw-');
  });

  it('cpddumbfs uploading over a UFS file rewrites it in place: its attributes and ACL stay', async () => {
    const src = join(work, 'upload-src');
    writeFileSync(src, Buffer.alloc(20_000, 9));
    const before = await attributesOf(root);
    expect(before.get('acl')).toContain('user:nobody:rw-');
    const up = await sh(process.execPath, [join(REPO_DIR, 'bin', 'cpddumbfs'), src, join(root, 'acl')]);
    expect(up.code, up.stderr).toBe(0);
    expect(readFileSync(join(root, 'acl')).readBigUInt64BE(8)).toBe(20_000n); // the UFS header's size: uploaded
    expect(await attributesOf(root)).toEqual(before);
  });
});
