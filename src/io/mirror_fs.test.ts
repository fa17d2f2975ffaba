/**
 * io/mirror_fs.ts: ns-exact mtimes (utimensat through io/libc.ts) on a non-UTF-8 name and on a symlink itself
 * (its target untouched), negative times included; mknod of a FIFO under a non-UTF-8 name; writeAtomic leaves no temp file and refuses a symlinked directory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeSpecial, setMtimes, writeAtomic } from './mirror_fs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function setup(): { dir: string; latin: Buffer; link: Buffer; target: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mfs-'));
  dirs.push(dir);
  const latin = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from('caf\xe9', 'latin1')]);
  fs.writeFileSync(latin, 'x');
  const target = path.join(dir, 'target');
  fs.writeFileSync(target, 'y');
  const link = Buffer.from(path.join(dir, 'link'));
  fs.symlinkSync('target', link);
  return { dir, latin, link, target };
}

describe('mirror_fs', () => {
  it('mtimes are set to the nanosecond, on the link itself, negative ones too; atimes stay', async () => {
      const { latin, link, target } = setup();
      const before = fs.statSync(target, { bigint: true }).mtimeNs;
      const atimeBefore = fs.lstatSync(latin, { bigint: true }).atimeNs;
      await setMtimes([{ path: latin, mtimeNs: 1_600_000_000_123_456_789n }, { path: link, mtimeNs: -1_500_000_001n }]);
      expect(fs.lstatSync(latin, { bigint: true }).mtimeNs).toBe(1_600_000_000_123_456_789n);
      expect(fs.lstatSync(link, { bigint: true }).mtimeNs).toBe(-1_500_000_001n);
      expect(fs.statSync(target, { bigint: true }).mtimeNs).toBe(before);
      expect(fs.existsSync(latin)).toBe(true);
      expect(fs.lstatSync(latin, { bigint: true }).atimeNs).toBe(atimeBefore);
  });

  it('makeSpecial makes a FIFO under a non-UTF-8 name, and refuses to replace an entry (EEXIST)', async () => {
    const { dir } = setup();
    const name = Buffer.from('fifo\xfe', 'latin1');
    await makeSpecial(Buffer.from(dir), name, 'fifo', 0n, 0o640);
    const p = Buffer.concat([Buffer.from(`${dir}/`), name]);
    const st = fs.lstatSync(p);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o777).toBe(0o640 & ~process.umask());
    await expect(makeSpecial(Buffer.from(dir), name, 'fifo', 0n, 0o640)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('writeAtomic replaces a file, leaves no temp, and refuses a directory that is a symlink', () => {
    const { dir } = setup();
    writeAtomic(dir, 'state', Buffer.from('one'));
    writeAtomic(dir, 'state', Buffer.from('two'));
    expect(fs.readFileSync(path.join(dir, 'state'), 'utf8')).toBe('two');
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const other = path.join(dir, 'other');
    fs.mkdirSync(other);
    fs.symlinkSync(other, path.join(dir, 'via'));
    expect(() => writeAtomic(path.join(dir, 'via'), 'state', Buffer.from('x'))).toThrow(/not a directory: refused/);
    expect(fs.readdirSync(other)).toEqual([]);
  });
});
