/**
 * The FUSE threads' attribute cache (issue 9, fuse-native.c): a repeated getattr of an unchanged path is answered
 * without the hand-off to the daemon's ops, and every change made through the mount shows at once on every name,
 * hard links included (the kernel itself keeps no attributes, attr_timeout=0). `-o noattr_cache` turns it off.
 * The kernel's security.capability probe before each write(2) is answered by the FUSE threads from the UFS.
 */
import { appendFileSync, chmodSync, chownSync, closeSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, rmdirSync, statSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

let work: string;
let parent: string;
let mnt: string;
let m: MountedVolume | null = null;

/** getattr + fgetattr that reached the daemon's ops (its /.ddumbfs/stats counters). */
function opsGetattrCount(): number {
  const stats = readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8');
  const count = (name: string): number => Number(new RegExp(`^${name}\\s+(\\d+)$`, 'm').exec(stats)?.[1] ?? 0);
  return count('getattr') + count('fgetattr');
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-attr-cache-'));
  parent = join(work, 'vol');
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

describe('attribute cache of the FUSE threads', () => {
  it('answers repeated stats of an unchanged file itself', () => {
    mkdirSync(join(mnt, 'deep', 'er'), { recursive: true });
    const p = join(mnt, 'deep', 'er', 'file');
    writeFileSync(p, 'abc');
    statSync(p);
    const before = opsGetattrCount();
    for (let i = 0; i < 300; i++) expect(statSync(p).size).toBe(3);
    // without the cache: a getattr of the root, deep, er (permission checks) and the file per stat, 1200 in all
    expect(opsGetattrCount() - before).toBeLessThan(60);
  });

  it('directories, symlinks, FIFOs and missing names are answered from the UFS, never stale', async () => {
    const d = join(mnt, 'ufs-answers');
    mkdirSync(d);
    symlinkSync('target', join(d, 'lnk'));
    expect((await sh('mkfifo', [join(d, 'fifo')])).code).toBe(0);
    const before = opsGetattrCount();
    for (let i = 0; i < 100; i++) {
      expect(statSync(d).isDirectory()).toBe(true);
      expect(lstatSync(join(d, 'lnk')).isSymbolicLink()).toBe(true);
      expect(lstatSync(join(d, 'fifo')).isFIFO()).toBe(true);
      expect(() => statSync(join(d, 'missing'))).toThrow(/ENOENT/);
    }
    // without the UFS answers: 400 and more (the reading of the stats file itself may add one)
    expect(opsGetattrCount() - before).toBeLessThanOrEqual(2);
    const nlink = statSync(d).nlink;
    mkdirSync(join(d, 'sub'));
    expect(statSync(d).nlink).toBe(nlink + 1);
    chmodSync(d, 0o711);
    expect(statSync(d).mode & 0o777).toBe(0o711);
    utimesSync(d, 5, 6);
    expect(statSync(d).mtimeMs).toBe(6000);
    writeFileSync(join(d, 'missing'), 'now here');
    expect(statSync(join(d, 'missing')).size).toBe(8);
    // the UFS object as it is: what the ops answered before (a directory's lstat)
    expect(statSync(d).ino).toBe(statSync(join(parent, 'ddfsroot', 'ufs-answers')).ino);
  });

  it('a change through one name of a hard-linked file shows at once through the other', () => {
    const a = join(mnt, 'h-a');
    const b = join(mnt, 'h-b');
    writeFileSync(a, 'one');
    linkSync(a, b);
    for (let i = 0; i < 3; i++) expect([statSync(a).size, statSync(b).size, statSync(b).nlink]).toEqual([3, 3, 2]);
    appendFileSync(a, ' two');
    expect(statSync(b).size).toBe(7);
    expect(readFileSync(b, 'utf8')).toBe('one two');
    chmodSync(b, 0o600);
    expect(statSync(a).mode & 0o777).toBe(0o600);
    chownSync(a, 1234, 5678);
    expect([statSync(b).uid, statSync(b).gid]).toEqual([1234, 5678]);
    utimesSync(b, 1_000_000, 2_000_000);
    expect(statSync(a).mtimeMs).toBe(2_000_000_000);
    truncateSync(b, 1);
    expect(statSync(a).size).toBe(1);
    unlinkSync(a);
    expect(statSync(b).nlink).toBe(1);
    expect(() => statSync(a)).toThrow(/ENOENT/);
    // a second link made while both names are cached
    linkSync(b, a);
    expect(statSync(b).nlink).toBe(2);
    writeFileSync(b, 'rewritten through b');
    expect(readFileSync(a, 'utf8')).toBe('rewritten through b');
    expect(statSync(a).size).toBe(19);
  });

  it('renames of directories, swaps and removals show at once on every path below', () => {
    mkdirSync(join(mnt, 'r1', 'sub'), { recursive: true });
    mkdirSync(join(mnt, 'r2', 'sub'), { recursive: true });
    writeFileSync(join(mnt, 'r1', 'sub', 'f'), '1');
    writeFileSync(join(mnt, 'r2', 'sub', 'f'), '22');
    for (let i = 0; i < 3; i++) expect(statSync(join(mnt, 'r1', 'sub', 'f')).size).toBe(1);
    renameSync(join(mnt, 'r1'), join(mnt, 'tmp'));
    renameSync(join(mnt, 'r2'), join(mnt, 'r1'));
    renameSync(join(mnt, 'tmp'), join(mnt, 'r2'));
    expect(statSync(join(mnt, 'r1', 'sub', 'f')).size).toBe(2);
    expect(statSync(join(mnt, 'r2', 'sub', 'f')).size).toBe(1);
    // a file renamed over another name
    writeFileSync(join(mnt, 'r1', 'g'), 'ggg');
    expect(statSync(join(mnt, 'r1', 'g')).size).toBe(3);
    renameSync(join(mnt, 'r1', 'sub', 'f'), join(mnt, 'r1', 'g'));
    expect(statSync(join(mnt, 'r1', 'g')).size).toBe(2);
    expect(() => statSync(join(mnt, 'r1', 'sub', 'f'))).toThrow(/ENOENT/);
    // a directory's link count and times follow the names made and removed in it
    const dir = join(mnt, 'r1');
    const nlink = statSync(dir).nlink;
    mkdirSync(join(dir, 'new'));
    expect(statSync(dir).nlink).toBe(nlink + 1);
    utimesSync(dir, 10, 10);
    symlinkSync('g', join(dir, 'lnk'));
    expect(statSync(dir).mtimeMs).not.toBe(10_000);
    expect(lstatSync(join(dir, 'lnk')).isSymbolicLink()).toBe(true);
    rmdirSync(join(dir, 'new'));
    expect(statSync(dir).nlink).toBe(nlink);
    rmSync(join(mnt, 'r2'), { recursive: true });
    expect(() => statSync(join(mnt, 'r2', 'sub'))).toThrow(/ENOENT/);
  });

  it('a random sequence of changes shows every name as a host directory does after each step (model)', () => {
    const names = ['a', 'b', 'd', 'd/a', 'd/b', 'd/e', 'd/e/a', 'e', 'e/a'];
    const name = fc.constantFrom(...names);
    const op = fc.oneof(
      fc.record({ kind: fc.constant('write'), p: name, len: fc.integer({ min: 0, max: 9000 }) }),
      fc.record({ kind: fc.constant('append'), p: name, len: fc.integer({ min: 1, max: 5000 }) }),
      fc.record({ kind: fc.constant('truncate'), p: name, len: fc.integer({ min: 0, max: 9000 }) }),
      fc.record({ kind: fc.constant('link'), p: name, q: name }),
      fc.record({ kind: fc.constant('rename'), p: name, q: name }),
      fc.record({ kind: fc.constant('unlink'), p: name }),
      fc.record({ kind: fc.constant('mkdir'), p: name }),
      fc.record({ kind: fc.constant('rmdir'), p: name }),
      fc.record({ kind: fc.constant('chmod'), p: name, mode: fc.constantFrom(0o600, 0o644, 0o755, 0o700) }),
      fc.record({ kind: fc.constant('symlink'), p: name, q: name }),
    );
    type Op = { kind: string; p: string; q?: string; len?: number; mode?: number };
    const apply = (base: string, o: Op): string => {
      const p = join(base, o.p);
      const q = join(base, o.q ?? '');
      try {
        if (o.kind === 'write') writeFileSync(p, Buffer.alloc(o.len!, 1));
        else if (o.kind === 'append') appendFileSync(p, Buffer.alloc(o.len!, 2));
        else if (o.kind === 'truncate') truncateSync(p, o.len);
        else if (o.kind === 'link') linkSync(p, q);
        else if (o.kind === 'rename') renameSync(p, q);
        else if (o.kind === 'unlink') unlinkSync(p);
        else if (o.kind === 'mkdir') mkdirSync(p);
        else if (o.kind === 'rmdir') rmdirSync(p);
        else if (o.kind === 'chmod') chmodSync(p, o.mode!);
        else symlinkSync(o.q!, p);
        return 'ok';
      } catch (err) {
        return (err as NodeJS.ErrnoException).code ?? 'error';
      }
    };
    /** What every name shows: type, mode, links, and the size of a file or symlink (directory sizes differ by fs). */
    const view = (base: string): string[] =>
      names.map((n) => {
        try {
          const st = lstatSync(join(base, n));
          const size = st.isDirectory() ? '-' : String(st.size);
          return `${n} ${(st.mode >>> 0).toString(8)} ${st.nlink} ${size}`;
        } catch (err) {
          return `${n} ${(err as NodeJS.ErrnoException).code}`;
        }
      });
    const host = join(work, 'model-host');
    mkdirSync(host);
    let run = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 5, maxLength: 40 }), (ops) => {
        run++;
        const here = join(host, `r${run}`);
        const there = join(mnt, 'model', `r${run}`);
        mkdirSync(here, { recursive: true });
        mkdirSync(there, { recursive: true });
        for (const o of ops) {
          expect(apply(there, o), JSON.stringify(o)).toBe(apply(here, o));
          expect(view(there), JSON.stringify(o)).toEqual(view(here));
        }
      }),
      { numRuns: 40, seed: 20261208 },
    );
  });

  it('is off with -o noattr_cache: every stat reaches the ops', async () => {
    await m?.unmount();
    m = await mountVolume(parent, mnt, ['noattr_cache']);
    const p = join(mnt, 'deep', 'er', 'file');
    statSync(p);
    const before = opsGetattrCount();
    for (let i = 0; i < 100; i++) statSync(p);
    expect(opsGetattrCount() - before).toBeGreaterThanOrEqual(100);
    await m.unmount();
    m = null;
    const log = readFileSync(join(parent, 'ddfsroot', '.ddumbfs', 'ddumbfs.log'), 'utf8');
    // the first mount served stats from the cache and said so at unmount; the second had none
    expect(log).toMatch(/attribute cache: [1-9]\d* getattr answered from it/);
    expect(log.match(/attribute cache:/g)).toHaveLength(1);
  });
});

describe('security.capability, asked by the kernel before every write(2), answered by the FUSE threads', () => {
  // a version-2 file capability: cap_net_raw permitted and effective
  const CAP = '0x0100000200200000000000000000000000000000';
  const getCap = async (p: string): Promise<string> => {
    const r = await sh('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', p]);
    return r.code === 0 ? r.stdout : 'none';
  };

  it('gives the UFS value; a write drops it as on the host; no write asks the ops', async () => {
    process.env.DDUMBFS_OPSTATS = '1';
    try {
      m = await mountVolume(parent, mnt);
    } finally {
      delete process.env.DDUMBFS_OPSTATS;
    }
    const host = join(work, 'cap-host');
    const there = join(mnt, 'cap');
    for (const p of [host, there]) {
      writeFileSync(p, 'binary');
      expect((await sh('setfattr', ['-n', 'security.capability', '-v', CAP, p])).code).toBe(0);
    }
    expect(await getCap(there)).toContain(`security.capability=${CAP}`);
    expect(await getCap(there)).toBe((await getCap(host)).replace(host, there));
    for (const p of [host, there]) {
      const fd = openSync(p, 'r+');
      try {
        for (let i = 0; i < 20; i++) writeSync(fd, 'x', i);
      } finally {
        closeSync(fd);
      }
    }
    // root's write removes a file capability (the kernel's killpriv), on ext4 and through the mount alike
    expect(await getCap(host)).toBe('none');
    expect(await getCap(there)).toBe('none');
    expect(readFileSync(there, 'utf8')).toBe('x'.repeat(20));
    await m.unmount();
    m = null;
    const log = readFileSync(join(parent, 'ddfsroot', '.ddumbfs', 'ddumbfs.log'), 'utf8');
    const writes = Number(/opstats: write\s+(\d+) ops/.exec(log)?.[1] ?? 0);
    expect(writes).toBeGreaterThanOrEqual(20);
    // the ops saw the setxattr, but none of the kernel's capability probes (1 per write) nor getfattr's
    expect(log).toMatch(/opstats: setxattr\s+1 ops/);
    expect(log).not.toMatch(/opstats: getxattr/);
  });
});

