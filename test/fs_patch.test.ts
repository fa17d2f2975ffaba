/**
 * What the fuse-native patch (patches/fuse-native+2.2.6.patch) fixes, proved through a real mount of a ddumbfs
 * volume: nanosecond and pre-1970 times, utimens with one time omitted, the caller's uid/gid on new objects,
 * O_DIRECT opens, special files with direct_io.
 */
import { chmodSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

const UTC = { ...process.env, TZ: 'UTC', LC_ALL: 'C' };
const NOBODY = 65534;

let work: string;
let mnt: string;
let parent: string;
let m: MountedVolume;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-fs-patch-'));
  chmodSync(work, 0o777); // traversable for the unprivileged user
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  await sh('mkdir', ['-p', parent, mnt]);
  chmodSync(mnt, 0o777);
  await makeVolume(parent, { blockSize: '4k', size: '64M' });
  m = await mountVolume(parent, mnt);
  // a new volume's root is private (ddfsroot 0700, as ddumbfs 1.1 makes it): open it, as an admin would
  chmodSync(mnt, 0o755);
});

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

function statNs(p: string): { atimeNs: bigint; mtimeNs: bigint } {
  const st = statSync(p, { bigint: true });
  return { atimeNs: st.atimeNs, mtimeNs: st.mtimeNs };
}

describe('times', () => {
  it('cp -p keeps atime and mtime to the nanosecond', async () => {
    const src = join(work, 'src.bin');
    writeFileSync(src, Buffer.alloc(10_000, 7));
    expect((await sh('touch', ['-d', '2011-05-06 07:08:09.123456789', src], { env: UTC })).code).toBe(0);
    const dst = join(mnt, 'copy.bin');
    const r = await sh('cp', ['-p', src, dst]);
    expect(r.stderr).toBe('');
    const want = BigInt(Date.UTC(2011, 4, 6, 7, 8, 9) / 1000) * 1_000_000_000n + 123_456_789n;
    const a = statNs(src);
    const b = statNs(dst);
    expect(a.mtimeNs).toBe(want); // the source really has sub-microsecond digits
    expect(b.mtimeNs).toBe(a.mtimeNs);
    expect(b.atimeNs).toBe(want); // cp -p copies the atime it saw before reading the source
    expect(readFileSync(dst).equals(readFileSync(src))).toBe(true);
  });

  it("touch -d '1960-01-01 12:00:00.123456789' round-trips (pre-1970, sub-ms)", async () => {
    const f = join(mnt, 'old.txt');
    writeFileSync(f, 'old\n');
    expect((await sh('touch', ['-d', '1960-01-01 12:00:00.123456789', f], { env: UTC })).code).toBe(0);
    const want = BigInt(Date.UTC(1960, 0, 1, 12, 0, 0) / 1000) * 1_000_000_000n + 123_456_789n;
    const t = statNs(f);
    expect(t.mtimeNs).toBe(want);
    expect(t.atimeNs).toBe(want);
    const r = await sh('stat', ['-c', '%y', f], { env: UTC });
    expect(r.stdout.trim()).toBe('1960-01-01 12:00:00.123456789 +0000');
  });

  it('touch -m changes only mtime, touch -a only atime', async () => {
    const f = join(mnt, 'am.txt');
    writeFileSync(f, 'x');
    expect((await sh('touch', ['-d', '2001-02-03 04:05:06.111111111', f], { env: UTC })).code).toBe(0);
    const before = statNs(f);
    expect((await sh('touch', ['-m', '-d', '2002-02-03 04:05:06.222222222', f], { env: UTC })).code).toBe(0);
    const afterM = statNs(f);
    expect(afterM.atimeNs).toBe(before.atimeNs);
    expect(afterM.mtimeNs).toBe(BigInt(Date.UTC(2002, 1, 3, 4, 5, 6) / 1000) * 1_000_000_000n + 222_222_222n);
    expect((await sh('touch', ['-a', '-d', '2003-02-03 04:05:06.333333333', f], { env: UTC })).code).toBe(0);
    const afterA = statNs(f);
    expect(afterA.mtimeNs).toBe(afterM.mtimeNs);
    expect(afterA.atimeNs).toBe(BigInt(Date.UTC(2003, 1, 3, 4, 5, 6) / 1000) * 1_000_000_000n + 333_333_333n);
  });

  it('touch with no date sets both times to now (UTIME_NOW)', async () => {
    const f = join(mnt, 'now.txt');
    writeFileSync(f, 'x');
    await sh('touch', ['-d', '2001-01-01', f], { env: UTC });
    const t0 = BigInt(Date.now() - 5000) * 1_000_000n;
    expect((await sh('touch', [f])).code).toBe(0);
    const t = statNs(f);
    expect(t.mtimeNs > t0).toBe(true);
    expect(t.atimeNs > t0).toBe(true);
  });
});

describe('caller ownership', () => {
  it('objects created by uid/gid 65534 belong to 65534:65534 (mount and UFS)', async () => {
    const pub = join(mnt, 'pub');
    await sh('mkdir', [pub]);
    chmodSync(pub, 0o777);
    const script = 'cd "$1" && echo hi > f && mkdir d && ln -s f l && mkfifo p && touch t';
    const r = await sh('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script, 'sh', pub]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const name of ['f', 'd', 'l', 'p', 't']) {
      for (const base of [pub, join(parent, 'ddfsroot', 'pub')]) {
        const st = lstatSync(join(base, name));
        expect({ name, uid: st.uid, gid: st.gid }).toEqual({ name, uid: NOBODY, gid: NOBODY });
      }
    }
    expect(lstatSync(join(pub, 'p')).isFIFO()).toBe(true);
    expect(lstatSync(join(pub, 'l')).isSymbolicLink()).toBe(true);
  });

  it('the unprivileged user is refused where the mode says so (default_permissions)', async () => {
    const closed = join(mnt, 'closed');
    await sh('mkdir', [closed]);
    chmodSync(closed, 0o755);
    const r = await sh('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'touch', join(closed, 'x')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
  });
});

describe('open flags', () => {
  it('O_DIRECT writes and reads work (the flag never reaches the UFS file)', async () => {
    const src = join(work, 'direct-src.bin');
    expect((await sh('dd', ['if=/dev/urandom', `of=${src}`, 'bs=4096', 'count=64', 'status=none'])).code).toBe(0);
    const dst = join(mnt, 'direct.bin');
    const w = await sh('dd', [`if=${src}`, `of=${dst}`, 'bs=4096', 'oflag=direct', 'status=none']);
    expect(w.stderr).toBe('');
    expect(w.code).toBe(0);
    const back = join(work, 'direct-back.bin');
    const r = await sh('dd', [`if=${dst}`, `of=${back}`, 'bs=4096', 'iflag=direct', 'status=none']);
    expect(r.code).toBe(0);
    expect(readFileSync(back).equals(readFileSync(src))).toBe(true);
    expect(statSync(dst).size).toBe(64 * 4096);
  });
});

describe('special files', () => {
  it('stats reads non-empty, fresh content on every open', () => {
    const stats = readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8');
    expect(stats.length).toBeGreaterThan(0);
    expect(stats).toMatch(/^block_allocated\s+\d+$/m);
    expect(stats).toMatch(/^hash\s+TIGER$/m);
    writeFileSync(join(mnt, 'more.bin'), Buffer.alloc(8192, 3));
    const again = readFileSync(join(mnt, '.ddumbfs', 'stats'), 'utf8');
    expect(again).not.toBe(stats);
  });

  it('stats0 reads the counters, then resets them', () => {
    const first = readFileSync(join(mnt, '.ddumbfs', 'stats0'), 'utf8');
    expect(first).toMatch(/^getattr\s+\d+$/m);
    expect(first).toMatch(/^block_free\s+\d+$/m);
  });

  it('special files cannot be opened for writing, nothing can be created in /.ddumbfs/', async () => {
    expect(() => writeFileSync(join(mnt, '.ddumbfs', 'stats'), 'x')).toThrow(/EACCES/);
    expect(() => writeFileSync(join(mnt, '.ddumbfs', 'new-file'), 'x')).toThrow(/EACCES/);
  });

  it('the daemon is still serving', () => {
    expect(m.stderr()).not.toMatch(/ ERR /);
    expect(readFileSync(join(mnt, 'old.txt'), 'utf8')).toBe('old\n');
  });
});
