/**
 * The op table through a real mount (spec §8.3–§8.9): metadata pass-through to ddfsroot, dedup files with sizes
 * from the UFS header, truncate, unlink while open, hard links, names that are not UTF-8, statfs block counts.
 */
import { chmodSync, closeSync, fsyncSync, fdatasyncSync, fstatSync, ftruncateSync, rmdirSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, statfsSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

const BS = 4096;
let work: string;
let parent: string;
let root: string;
let mnt: string;
let m: MountedVolume;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-fs-ops-'));
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  root = join(parent, 'ddfsroot');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '64M' });
  m = await mountVolume(parent, mnt);
});

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

describe('fsync through the mount', () => {
  // a counter still at 0 is not listed
  const fsyncCount = (): number => Number(/^fsync\s+(\d+)$/m.exec(readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8'))?.[1] ?? 0);

  it('fsync and fdatasync of a new file and fsync of its directory (FUSE fsyncdir) reach the daemon', () => {
    mkdirSync(join(mnt, 'synced'));
    const p = join(mnt, 'synced', 'new');
    const data = randomBytes(BS + 7);
    const before = fsyncCount();
    const fd = openSync(p, 'w');
    try {
      writeSync(fd, data);
      fsyncSync(fd);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    expect(fsyncCount(), 'fsync + fdatasync of the file').toBe(before + 2);
    // without an fsyncdir op the kernel answers a directory fsync itself and the daemon never sees it
    const dir = openSync(join(mnt, 'synced'), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    expect(fsyncCount(), 'fsync of the directory').toBe(before + 3);
    expect(readFileSync(p).equals(data)).toBe(true);
  });
});

describe('kernel cache of names (issue 9)', () => {
  const statsCount = (name: string): number => Number(new RegExp(`^${name}\\s+(\\d+)$`, 'm').exec(readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8'))?.[1] ?? 0);

  it('repeated stats of one file skip the lookup, and every change through the mount still shows', () => {
    const p = join(mnt, 'cached-attr');
    writeFileSync(p, 'abc');
    const before = statsCount('getattr');
    for (let i = 0; i < 200; i++) expect(statSync(p).size).toBe(3);
    // with zero timeouts each stat is a lookup of the name, a getattr of the root (permission check) and a getattr
    // of the file: 3 each; the kernel keeps the name, the attributes are asked again (hard links, see mount_options)
    expect(statsCount('getattr') - before).toBeLessThanOrEqual(2 * 200 + 10);
    const fd = openSync(p, 'r+');
    try {
      writeSync(fd, Buffer.alloc(BS + 1, 7), 0, BS + 1, 3);
      expect(fstatSync(fd).size).toBe(BS + 4);
    } finally {
      closeSync(fd);
    }
    expect(statSync(p).size).toBe(BS + 4);
    truncateSync(p, 2);
    expect(statSync(p).size).toBe(2);
    const q = join(mnt, 'cached-attr-2');
    expect(() => statSync(q)).toThrow(/ENOENT/);
    writeFileSync(q, 'x'); // a name looked up as missing just before
    expect(statSync(q).size).toBe(1);
    renameSync(q, p);
    expect(statSync(p).size).toBe(1);
    expect(() => statSync(q)).toThrow(/ENOENT/);
    linkSync(p, q);
    expect(statSync(p).nlink).toBe(2);
    unlinkSync(q);
    expect(statSync(p).nlink).toBe(1);
  });
});

describe('regular files go through the dedup layer', () => {
  it('write, read back; st_size from the header, st_blksize = bs, st_blocks = ceil(size/bs)·bs/512', () => {
    const data = randomBytes(3 * BS + 100);
    writeFileSync(join(mnt, 'f.bin'), data);
    expect(readFileSync(join(mnt, 'f.bin')).equals(data)).toBe(true);
    const st = statSync(join(mnt, 'f.bin'));
    expect(st.size).toBe(data.length);
    expect(st.blksize).toBe(BS);
    expect(st.blocks).toBe((4 * BS) / 512);
    const ufs = readFileSync(join(root, 'f.bin'));
    expect(ufs.subarray(0, 8).toString('ascii')).toBe('DDUMBFSF');
    expect(ufs.readBigUInt64BE(8)).toBe(BigInt(data.length));
  });

  it('an empty file has a header at once (spec §8.4)', () => {
    writeFileSync(join(mnt, 'empty'), '');
    expect(statSync(join(mnt, 'empty')).size).toBe(0);
    expect(statSync(join(root, 'empty')).size).toBe(16);
  });

  it('the size of an open file is the one being written', () => {
    const fd = openSync(join(mnt, 'growing'), 'w');
    try {
      writeSync(fd, Buffer.alloc(1000, 1));
      expect(statSync(join(mnt, 'growing')).size).toBe(1000);
      expect(fstatSync(fd).size).toBe(1000);
      writeSync(fd, Buffer.alloc(BS, 2), 0, BS, 5 * BS);
      expect(statSync(join(mnt, 'growing')).size).toBe(6 * BS);
    } finally {
      closeSync(fd);
    }
    const back = readFileSync(join(mnt, 'growing'));
    expect(back.length).toBe(6 * BS);
    expect(back.subarray(1000, 5 * BS).every((b) => b === 0)).toBe(true);
  });

  it('truncate (path and handle), shrink and grow', () => {
    const p = join(mnt, 't.bin');
    const data = randomBytes(2 * BS + 10);
    writeFileSync(p, data);
    truncateSync(p, BS + 5);
    expect(statSync(p).size).toBe(BS + 5);
    expect(readFileSync(p).equals(data.subarray(0, BS + 5))).toBe(true);
    truncateSync(p, 3 * BS);
    const grown = readFileSync(p);
    expect(grown.length).toBe(3 * BS);
    expect(grown.subarray(BS + 5).every((b) => b === 0)).toBe(true);
    const fd = openSync(p, 'r+');
    try {
      ftruncateSync(fd, 10);
      expect(fstatSync(fd).size).toBe(10);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(p).equals(data.subarray(0, 10))).toBe(true);
    writeFileSync(p, 'xyz'); // O_TRUNC
    expect(readFileSync(p, 'utf8')).toBe('xyz');
  });

  it('identical files dedup (block_allocated does not grow for the copy)', () => {
    const data = randomBytes(16 * BS);
    writeFileSync(join(mnt, 'dup1'), data);
    const used = (): number => Number(/^block_allocated\s+(\d+)$/m.exec(readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8'))![1]);
    const before = used();
    writeFileSync(join(mnt, 'dup2'), data);
    expect(used()).toBe(before);
    expect(readFileSync(join(mnt, 'dup2')).equals(data)).toBe(true);
  });

  it('appending (O_APPEND is stripped, the kernel gives the offsets)', async () => {
    const p = join(mnt, 'log.txt');
    writeFileSync(p, 'one\n');
    expect((await sh('sh', ['-c', `echo two >> '${p}'; echo three >> '${p}'`])).code).toBe(0);
    expect(readFileSync(p, 'utf8')).toBe('one\ntwo\nthree\n');
  });

  it('unlink while open keeps working; hard links share the data', () => {
    const p = join(mnt, 'gone.bin');
    writeFileSync(p, 'still here');
    const fd = openSync(p, 'r+');
    try {
      unlinkSync(p);
      writeSync(fd, 'STILL', 0, 'utf8');
      const buf = Buffer.alloc(20);
      const n = readSync(fd, buf, 0, 20, 0);
      expect(buf.subarray(0, n).toString()).toBe('STILL here');
    } finally {
      closeSync(fd);
    }
    writeFileSync(join(mnt, 'h1'), 'linked');
    linkSync(join(mnt, 'h1'), join(mnt, 'h2'));
    expect(statSync(join(mnt, 'h2')).nlink).toBe(2);
    expect(statSync(join(mnt, 'h1')).ino).toBe(statSync(join(mnt, 'h2')).ino);
    writeFileSync(join(mnt, 'h2'), 'changed through h2');
    expect(readFileSync(join(mnt, 'h1'), 'utf8')).toBe('changed through h2');
  });
});

describe('metadata passes through to ddfsroot', () => {
  it('readdir lists . .. and the entries, with inode numbers', async () => {
    mkdirSync(join(mnt, 'dir'));
    writeFileSync(join(mnt, 'dir', 'x'), 'x');
    symlinkSync('x', join(mnt, 'dir', 'lnk'));
    expect(readdirSync(join(mnt, 'dir')).sort()).toEqual(['lnk', 'x']);
    const ls = await sh('ls', ['-ai', join(mnt, 'dir')]);
    const inoX = statSync(join(root, 'dir', 'x')).ino;
    expect(ls.stdout).toMatch(new RegExp(`^\\s*${inoX} x$`, 'm'));
    expect(ls.stdout).toMatch(/ \.\.?$/m);
    expect(readlinkSync(join(mnt, 'dir', 'lnk'))).toBe('x');
    expect(lstatSync(join(mnt, 'dir', 'lnk')).isSymbolicLink()).toBe(true);
  });

  it('rename, rmdir, chmod, chown', async () => {
    renameSync(join(mnt, 'dir'), join(mnt, 'dir2'));
    expect(readFileSync(join(mnt, 'dir2', 'x'), 'utf8')).toBe('x');
    chmodSync(join(mnt, 'dir2', 'x'), 0o600);
    expect(statSync(join(root, 'dir2', 'x')).mode & 0o777).toBe(0o600);
    expect((await sh('chown', ['-h', '123:456', join(mnt, 'dir2', 'lnk')])).code).toBe(0);
    const st = lstatSync(join(root, 'dir2', 'lnk'));
    expect([st.uid, st.gid]).toEqual([123, 456]);
    expect(() => rmdirSync(join(mnt, 'dir2'))).toThrow(/ENOTEMPTY/);
    rmSync(join(mnt, 'dir2'), { recursive: true });
    expect(readdirSync(mnt)).not.toContain('dir2');
  });

  it('names that are not UTF-8 survive', async () => {
    const name = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]); // "café.txt" in latin1
    const r = await sh('sh', ['-c', `printf 'latin1\\n' > "$(printf '${mnt}/caf\\351.txt')" && ls "${mnt}" | od -c | grep -c 351`]);
    expect(r.code).toBe(0);
    const names = readdirSync(Buffer.from(mnt), { encoding: 'buffer' });
    expect(names.some((n) => n.equals(name))).toBe(true);
    const ufsNames = readdirSync(Buffer.from(root), { encoding: 'buffer' });
    expect(ufsNames.some((n) => n.equals(name))).toBe(true);
    expect(readFileSync(Buffer.concat([Buffer.from(`${mnt}/`), name]), 'utf8')).toBe('latin1\n');
  });

  it('mkfifo and mknod', async () => {
    expect((await sh('mkfifo', [join(mnt, 'fifo')])).code).toBe(0);
    expect(lstatSync(join(root, 'fifo')).isFIFO()).toBe(true);
    expect((await sh('mknod', [join(mnt, 'null2'), 'c', '1', '3'])).code).toBe(0);
    const st = lstatSync(join(root, 'null2'));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(statSync('/dev/null').rdev);
  });

  it('statfs: block size and counts of the volume (spec §8.3)', () => {
    const s = statfsSync(mnt);
    expect(s.bsize).toBe(BS);
    expect(s.blocks).toBe((64 * 1024 * 1024) / BS);
    expect(s.bfree).toBeGreaterThan(0);
    expect(s.bfree).toBeLessThan(s.blocks);
  });

  it('errors come back as errno values', () => {
    expect(() => readFileSync(join(mnt, 'missing'))).toThrow(/ENOENT/);
    expect(() => mkdirSync(join(mnt, 'f.bin'))).toThrow(/EEXIST/);
    expect(() => readdirSync(join(mnt, 'f.bin'))).toThrow(/ENOTDIR/);
    expect(m.stderr()).not.toMatch(/ ERR /);
  });
});
