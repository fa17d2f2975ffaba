/**
 * The read-only daemon (issue 10 "-o ro", issue 7 "a slave mounts read-only"): through a child-process mount with
 * -o ro every write op answers EROFS, reads are byte for byte, statvfs reports ST_RDONLY, the special files are not
 * regenerated (no reclaim), no .autofsck appears and the parent's files are byte-identical after unmount. A
 * read-only parent (a read-only bind mount of it) mounts with -o ro and is refused, in one line, without it; the
 * read-only daemon still holds the volume lock against a writer on the writable path. Needs dist/ and root.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR, isMounted, makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';
import { snapshotTree } from './helpers/snapshot.js';
import { lcgBytes } from './helpers/bytes.js';

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);

const files: Record<string, Buffer> = {
  'big.bin': lcgBytes(300_000, 1),
  'dir/a.txt': Buffer.from('hello\n'),
  'dir/sub/b.bin': lcgBytes(5000, 2),
  'empty': Buffer.alloc(0),
  'sparse.bin': Buffer.concat([Buffer.alloc(20_000), lcgBytes(100, 3), Buffer.alloc(9000)]),
};

let work: string;
let parent: string;
let counter = 0;
const binds: string[] = [];

async function freshDir(): Promise<string> {
  const dir = path.join(work, `dir${counter++}`);
  await fsp.mkdir(dir);
  return dir;
}

function expectReadsEqual(mnt: string): void {
  for (const [name, data] of Object.entries(files)) {
    const got = fs.readFileSync(path.join(mnt, name));
    expect(got.equals(data), name).toBe(true);
    expect(fs.statSync(path.join(mnt, name)).size, name).toBe(data.length);
  }
  expect(fs.readlinkSync(path.join(mnt, 'link'))).toBe('dir/a.txt');
  expect(fs.readFileSync(path.join(mnt, 'link')).equals(files['dir/a.txt']!)).toBe(true);
  expect(fs.readFileSync(path.join(mnt, 'big.hard')).equals(files['big.bin']!)).toBe(true);
  expect(fs.statSync(path.join(mnt, 'big.hard')).nlink).toBe(2);
  expect(fs.readdirSync(path.join(mnt, 'dir')).sort()).toEqual(['a.txt', 'sub']);
  expect(fs.statSync(path.join(mnt, 'fifo')).isFIFO()).toBe(true);
}

function statvfsReadOnly(p: string): boolean {
  const r = spawnSync('python3', ['-c', 'import os,sys; print(os.statvfs(sys.argv[1]).f_flag & os.ST_RDONLY)', p], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim() !== '0';
}

describe('ddumbfs -o ro', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-ro-'));
    await fsp.chmod(work, 0o755);
    parent = path.join(work, 'vol');
    await fsp.mkdir(parent);
    await makeVolume(parent, { blockSize: '4k', size: '16M' });
    const mnt = await freshDir();
    const m = await mountVolume(parent, mnt);
    try {
      for (const [name, data] of Object.entries(files)) {
        await fsp.mkdir(path.dirname(path.join(mnt, name)), { recursive: true });
        await fsp.writeFile(path.join(mnt, name), data);
      }
      await fsp.mkdir(path.join(mnt, 'emptydir'));
      await fsp.symlink('dir/a.txt', path.join(mnt, 'link'));
      await fsp.link(path.join(mnt, 'big.bin'), path.join(mnt, 'big.hard'));
      expect((await sh('mkfifo', [path.join(mnt, 'fifo')])).code).toBe(0);
    } finally {
      await m.unmount();
    }
    expect(await m.exited).toBe(0);
  });

  afterEach(async () => {
    await unmountAll();
    for (const b of binds.splice(0)) if (isMounted(b)) await sh('umount', [b]);
  });

  afterAll(async () => {
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('every write op answers EROFS, reads are byte for byte, nothing of the parent changes', async () => {
    const before = await snapshotTree(parent);
    const mnt = await freshDir();
    const m: MountedVolume = await mountVolume(parent, mnt, ['ro']);
    const at = (p: string): string => path.join(mnt, p);
    await fsp.writeFile(path.join(work, 'other.bin'), lcgBytes(777, 9));
    const writes: string[][] = [
      ['touch', at('new')],
      ['touch', at('dir/a.txt')],
      ['mkdir', at('newdir')],
      ['rm', '-f', at('dir/a.txt')],
      ['rmdir', at('emptydir')],
      ['mv', at('big.bin'), at('moved.bin')],
      ['mv', at('dir'), at('emptydir/dir')],
      ['ln', at('big.bin'), at('big.3')],
      ['ln', '-s', 'big.bin', at('big.sym')],
      ['chmod', '600', at('big.bin')],
      ['chown', '1:1', at('big.bin')],
      ['truncate', '-s', '10', at('big.bin')],
      ['dd', 'if=/dev/zero', `of=${at('big.bin')}`, 'bs=1', 'count=1', 'conv=notrunc'],
      ['cp', path.join(work, 'other.bin'), at('dir/sub/b.bin')],
      ['sh', '-c', `echo x >> ${at('dir/a.txt')}`],
      ['mkfifo', at('fifo2')],
    ];
    for (const cmd of writes) {
      const r = await sh(cmd[0]!, cmd.slice(1));
      expect(r.code, cmd.join(' ')).not.toBe(0);
      expect(r.stderr, cmd.join(' ')).toMatch(/Read-only file system/);
    }
    // the special files are regenerated on open (a write; /.ddumbfs/reclaim runs a reclaim): refused
    for (const name of ['stats', 'reclaim']) {
      const r = await sh('cat', [at(`.ddumbfs/${name}`)]);
      expect(r.code, name).not.toBe(0);
      expect(r.stderr, name).toMatch(/Read-only file system/);
    }
    expectReadsEqual(mnt);
    expect(statvfsReadOnly(mnt)).toBe(true);
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
    // the lock is held and named (the one file a read-only daemon writes on a writable parent, removed at unmount)
    expect(fs.readFileSync(path.join(parent, 'ddfs.lock'), 'latin1')).toContain(`tool=ddumbfs pid=${m.pid} `);
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(m.stderr()).not.toMatch(/ ERR /);
    expect(await snapshotTree(parent)).toEqual(before);
  });

  it('a read-only parent mounts with -o ro, is refused without it, and still locks out writers', async () => {
    const view = await freshDir();
    expect((await sh('mount', ['--bind', parent, view])).code).toBe(0);
    binds.push(view);
    expect((await sh('mount', ['-o', 'remount,bind,ro', view])).code).toBe(0);
    const before = await snapshotTree(parent);
    const mnt = await freshDir();

    const refused = await sh(process.execPath, [bin('ddumbfs'), mnt, '-o', `parent=${view}`, '-f'], { timeoutMs: 30_000 });
    expect(refused.code).toBe(1);
    const lines = refused.stderr.trim().split('\n');
    expect(lines, refused.stderr).toHaveLength(1);
    expect(lines[0]).toContain(view);
    expect(lines[0]).toMatch(/read-only file system.*-o ro/);
    expect(isMounted(mnt)).toBe(false);
    const usage = await sh(process.execPath, [bin('ddumbfs'), mnt, '-o', `parent=${view},ro,check`, '-f']);
    expect(usage.code, usage.stderr).toBe(1); // a usage error exits 1, as upstream
    expect(usage.stderr).toMatch(/^ddumbfs: [^\n]*check[^\n]*\n$/);

    const m = await mountVolume(view, mnt, ['ro']);
    expectReadsEqual(mnt);
    expect(statvfsReadOnly(mnt)).toBe(true);
    // no lock file could be written on the read-only view: the lock socket names the holder
    expect(fs.existsSync(path.join(parent, 'ddfs.lock'))).toBe(false);
    const repair = await sh(process.execPath, [bin('fsckddumbfs'), '-n', parent]);
    expect(repair.code, repair.stderr).toBe(1);
    expect(repair.stderr).toContain(`ddumbfs (pid ${m.pid}`);
    const up = await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'other.bin'), path.join(parent, 'ddfsroot', 'up.bin')]);
    expect(up.code, up.stderr).toBe(1);
    expect(up.stderr).toContain(`ddumbfs (pid ${m.pid}`);
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(await snapshotTree(parent)).toEqual(before);
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
  });
});
