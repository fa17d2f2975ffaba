/**
 * Times set by utimens/futimens on an open file are the last word (issue 6 §3 "mtime lost after tar -x"): tar sets
 * times with futimens on the open file before close, and whatever the daemon still stores afterwards (held nodes,
 * the buffered partial block, the header at close) must not move them. Through a real mount, from the test process:
 * - write several blocks and a partial one, rewrite blocks already stored (their nodes wait for a sync), futimens
 *   with a fixed old time, close: stat shows exactly the time set, on the mount and on the UFS file;
 * - a write after futimens moves the mtime again, as on any file;
 * - `tar -x` of a generated archive of a few hundred files with old mtimes: `tar -d` finds no difference, and a stat
 *   walk shows every mtime as archived.
 */
import { closeSync, fsyncSync, futimesSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, sh, unmountAll } from './helpers/mount.js';
import { noiseBytes } from './helpers/bytes.js';

const BS = 4096;
/** 2001-09-09 01:46:40 UTC and 1995-06-15: old, whole seconds (what tar keeps). */
const OLD_TIME_SEC = 1_000_000_000;
const OLDER_TIME_SEC = 803_174_400;
const TEST_TIMEOUT_MS = 10 * 60_000;

let work: string;
let parent: string;
let mnt: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-times-'));
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '128M' });
  await mountVolume(parent, mnt);
}, TEST_TIMEOUT_MS);

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
}, TEST_TIMEOUT_MS);

describe('times set on an open file survive what is still being stored', () => {
  it('several blocks + a partial one, futimens, close: stat shows the time set', () => {
    const file = join(mnt, 'plain');
    const data = noiseBytes(1, 5 * BS + 123);
    const fd = openSync(file, 'w');
    writeSync(fd, data, 0, 3 * BS + 100, 0);
    writeSync(fd, data, 3 * BS + 100, data.length - (3 * BS + 100), 3 * BS + 100);
    futimesSync(fd, OLD_TIME_SEC, OLD_TIME_SEC);
    closeSync(fd);
    expect(statSync(file).mtimeMs).toBe(OLD_TIME_SEC * 1000);
    expect(statSync(join(parent, 'ddfsroot', 'plain')).mtimeMs).toBe(OLD_TIME_SEC * 1000);
    expect(readFileSync(file).equals(data)).toBe(true);
  });

  it('blocks rewritten after they were stored (held nodes), futimens, close: stat shows the time set', () => {
    const file = join(mnt, 'rewritten');
    const data = noiseBytes(2, 6 * BS + 777);
    const fd = openSync(file, 'w');
    writeSync(fd, data, 0, 100, 0); // a partial first block...
    fsyncSync(fd); // ...stored now: its node names a stored block
    writeSync(fd, data, 100, data.length - 100, 100); // completing it replaces that node: held until a sync
    const head = noiseBytes(3, 2 * BS);
    writeSync(fd, head, 0, head.length, 0); // rewrite two stored blocks: held too
    head.copy(data, 0);
    futimesSync(fd, OLD_TIME_SEC, OLD_TIME_SEC);
    expect(statSync(file).mtimeMs).toBe(OLD_TIME_SEC * 1000);
    closeSync(fd);
    expect(statSync(file).mtimeMs).toBe(OLD_TIME_SEC * 1000);
    expect(statSync(file).atimeMs).toBe(OLD_TIME_SEC * 1000);
    expect(readFileSync(file).equals(data)).toBe(true);
    expect(statSync(file).mtimeMs, 'reading moved the mtime').toBe(OLD_TIME_SEC * 1000);
  });

  it('a write after futimens moves the mtime again, as on any file', () => {
    const file = join(mnt, 'written-after');
    const fd = openSync(file, 'w');
    writeSync(fd, noiseBytes(4, 2 * BS + 5), 0, 2 * BS + 5, 0);
    futimesSync(fd, OLD_TIME_SEC, OLD_TIME_SEC);
    writeSync(fd, noiseBytes(5, BS), 0, BS, 2 * BS + 5);
    closeSync(fd);
    expect(statSync(file).mtimeMs).toBeGreaterThan(OLD_TIME_SEC * 1000 + 1000);
  });

  it('tar -x of a few hundred files with old mtimes: tar -d finds no difference, a stat walk shows every mtime', async () => {
    const src = join(work, 'src');
    mkdirSync(src);
    const FILE_COUNT = 300;
    const expected = new Map<string, number>();
    for (let i = 0; i < FILE_COUNT; i++) {
      const dir = join(src, `d${i % 7}`);
      mkdirSync(dir, { recursive: true });
      const name = `d${i % 7}/f${i}`;
      // sizes from empty to several blocks, mostly with a partial last block (tar writes 10240-byte records)
      const size = (i * 7919) % (9 * BS) + (i % 5 === 0 ? 0 : 1);
      writeFileSync(join(src, name), noiseBytes(100 + i, size));
      const t = OLDER_TIME_SEC + i * 3607;
      utimesSync(join(src, name), t, t);
      expected.set(name, t * 1000);
    }
    const archive = join(work, 'a.tar');
    const c = await sh('tar', ['-c', '-f', archive, '-C', src, '.']);
    expect(c.code, c.stderr).toBe(0);
    const dest = join(mnt, 'x');
    mkdirSync(dest);
    const x = await sh('tar', ['-x', '-f', archive, '-C', dest], { timeoutMs: TEST_TIMEOUT_MS });
    expect(x.code, x.stderr).toBe(0);
    const d = await sh('tar', ['-d', '-f', archive, '-C', dest], { timeoutMs: TEST_TIMEOUT_MS });
    expect(d.stdout + d.stderr).toBe('');
    expect(d.code).toBe(0);
    const wrong: string[] = [];
    for (const [name, ms] of expected) {
      const got = statSync(join(dest, name)).mtimeMs;
      if (got !== ms) wrong.push(`${name}: ${got} != ${ms}`);
    }
    expect(wrong).toEqual([]);
  }, TEST_TIMEOUT_MS);
});
