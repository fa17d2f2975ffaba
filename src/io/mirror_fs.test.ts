/**
 * io/mirror_fs.ts: ns-exact mtimes (python3 and the touch(1) fallback) on a non-UTF-8 name and on a symlink itself
 * (its target untouched), negative times included; writeAtomic leaves no temp file and refuses a symlinked directory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setMtimes, setMtimesTouch, writeAtomic } from './mirror_fs.js';

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
  for (const [name, fn] of [['python3', setMtimes], ['touch', setMtimesTouch]] as const) {
    it(`${name}: mtimes are set to the nanosecond, on the link itself, negative ones too`, async () => {
      const { latin, link, target } = setup();
      const before = fs.statSync(target, { bigint: true }).mtimeNs;
      await fn([{ path: latin, mtimeNs: 1_600_000_000_123_456_789n }, { path: link, mtimeNs: -1_500_000_001n }]);
      expect(fs.lstatSync(latin, { bigint: true }).mtimeNs).toBe(1_600_000_000_123_456_789n);
      expect(fs.lstatSync(link, { bigint: true }).mtimeNs).toBe(-1_500_000_001n);
      expect(fs.statSync(target, { bigint: true }).mtimeNs).toBe(before);
      expect(fs.existsSync(latin)).toBe(true);
    });
  }

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
