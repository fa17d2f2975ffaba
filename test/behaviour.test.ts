/**
 * One behaviour suite, run against a host temp directory (the reference) and against a ddumbfs mount; the observable
 * results must be identical (style.md, after ZenFS). Each scenario returns a plain object describing what a program
 * would see; the host run also asserts the expected facts, so a scenario that observes nothing fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { makeVolume, mountVolume, type MountedVolume } from './helpers/mount.js';

const BS = 4096;

function digest(b: Buffer): string {
  return `${b.length}:${createHash('sha1').update(b).digest('hex')}`;
}

/** Deterministic bytes (not all zero) of a given length. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

type Scenario = (dir: string) => Promise<Record<string, unknown>>;

const scenarios: Record<string, Scenario> = {
  async 'create and read back'(dir) {
    const p = path.join(dir, 'a.bin');
    await fsp.writeFile(p, pattern(10000, 1));
    return { content: digest(await fsp.readFile(p)), size: (await fsp.stat(p)).size };
  },
  async 'overwrite in the middle'(dir) {
    const p = path.join(dir, 'mid.bin');
    await fsp.writeFile(p, pattern(3 * BS + 100, 2));
    const fh = await fsp.open(p, 'r+');
    await fh.write(pattern(5000, 3), 0, 5000, BS - 1000);
    await fh.close();
    return { content: digest(await fsp.readFile(p)) };
  },
  async 'sparse write past EOF'(dir) {
    const p = path.join(dir, 'sparse.bin');
    await fsp.writeFile(p, pattern(100, 4));
    const fh = await fsp.open(p, 'r+');
    await fh.write(pattern(10, 5), 0, 10, 5 * BS + 17);
    await fh.close();
    const b = await fsp.readFile(p);
    return { content: digest(b), size: b.length, gapIsZero: b.subarray(100, 5 * BS + 17).every((x) => x === 0) };
  },
  async 'truncate down and up'(dir) {
    const p = path.join(dir, 'trunc.bin');
    await fsp.writeFile(p, pattern(3 * BS, 6));
    await fsp.truncate(p, BS + 10);
    const down = digest(await fsp.readFile(p));
    await fsp.truncate(p, 2 * BS + 5);
    const b = await fsp.readFile(p);
    return { down, up: digest(b), tailZero: b.subarray(BS + 10).every((x) => x === 0) };
  },
  async 'rename over an existing file'(dir) {
    const a = path.join(dir, 'ra');
    const b = path.join(dir, 'rb');
    await fsp.writeFile(a, pattern(5000, 7));
    await fsp.writeFile(b, pattern(7000, 8));
    await fsp.rename(a, b);
    return { aExists: fs.existsSync(a), b: digest(await fsp.readFile(b)) };
  },
  async 'unlink while open'(dir) {
    const p = path.join(dir, 'unl');
    await fsp.writeFile(p, pattern(9000, 9));
    const fh = await fsp.open(p, 'r+');
    await fsp.unlink(p);
    await fh.write(pattern(100, 10), 0, 100, 8950);
    const buf = Buffer.alloc(20000);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    await fh.close();
    return { exists: fs.existsSync(p), content: digest(buf.subarray(0, bytesRead)) };
  },
  async 'hard links'(dir) {
    const a = path.join(dir, 'h1');
    const b = path.join(dir, 'h2');
    await fsp.writeFile(a, pattern(4097, 11));
    await fsp.link(a, b);
    const fh = await fsp.open(b, 'r+');
    await fh.write(Buffer.from('changed'), 0, 7, 10);
    await fh.close();
    const sa = await fsp.stat(a);
    const sb = await fsp.stat(b);
    return { nlink: sa.nlink, sameIno: sa.ino === sb.ino, a: digest(await fsp.readFile(a)), b: digest(await fsp.readFile(b)) };
  },
  async symlinks(dir) {
    const t = path.join(dir, 'target');
    const l = path.join(dir, 'link');
    await fsp.writeFile(t, 'hello');
    await fsp.symlink('target', l);
    const ls = await fsp.lstat(l);
    return { isLink: ls.isSymbolicLink(), to: await fsp.readlink(l), via: (await fsp.readFile(l)).toString() };
  },
  async 'O_APPEND'(dir) {
    const p = path.join(dir, 'app');
    await fsp.writeFile(p, pattern(3000, 12));
    for (let i = 0; i < 3; i++) await fsp.appendFile(p, pattern(1500 + i, 13 + i));
    return { content: digest(await fsp.readFile(p)) };
  },
  async 'two handles writing one file'(dir) {
    const p = path.join(dir, 'two');
    const h1 = await fsp.open(p, 'w+');
    const h2 = await fsp.open(p, 'r+');
    await h1.write(pattern(6000, 20), 0, 6000, 0);
    await h2.write(pattern(3000, 21), 0, 3000, 4000);
    await h1.write(pattern(100, 22), 0, 100, 8000);
    const buf = Buffer.alloc(9000);
    const { bytesRead } = await h2.read(buf, 0, 9000, 0);
    await h1.close();
    await h2.close();
    return { seen: digest(buf.subarray(0, bytesRead)), content: digest(await fsp.readFile(p)) };
  },
  async '0-byte files'(dir) {
    const p = path.join(dir, 'empty');
    await fsp.writeFile(p, '');
    const q = path.join(dir, 'emptied');
    await fsp.writeFile(q, pattern(5000, 23));
    await fsp.writeFile(q, '');
    return { p: (await fsp.stat(p)).size, q: (await fsp.stat(q)).size, qContent: digest(await fsp.readFile(q)) };
  },
  async 'exactly one block and one block plus one byte'(dir) {
    const a = path.join(dir, 'one');
    const b = path.join(dir, 'oneplus');
    await fsp.writeFile(a, pattern(BS, 24));
    await fsp.writeFile(b, pattern(BS + 1, 24));
    return { a: digest(await fsp.readFile(a)), b: digest(await fsp.readFile(b)), sizes: [(await fsp.stat(a)).size, (await fsp.stat(b)).size] };
  },
  async 'directories and metadata'(dir) {
    const d = path.join(dir, 'sub', 'deeper');
    await fsp.mkdir(d, { recursive: true });
    const f = path.join(d, 'f');
    await fsp.writeFile(f, 'x');
    await fsp.chmod(f, 0o640);
    await fsp.utimes(f, new Date('2001-02-03T04:05:06Z'), new Date('2002-03-04T05:06:07Z'));
    const st = await fsp.stat(f);
    const names = (await fsp.readdir(path.join(dir, 'sub'))).sort();
    await fsp.rm(path.join(dir, 'sub'), { recursive: true });
    return { mode: st.mode & 0o7777, mtime: st.mtime.toISOString(), names, gone: !fs.existsSync(path.join(dir, 'sub')) };
  },
};

async function runAll(dir: string): Promise<Record<string, Record<string, unknown>>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, fn] of Object.entries(scenarios)) {
    const sub = path.join(dir, name.replace(/[^a-zA-Z0-9]+/g, '_'));
    await fsp.mkdir(sub);
    out[name] = await fn(sub);
  }
  return out;
}

describe('behaviour suite: host directory vs ddumbfs mount', () => {
  let work: string;
  let mounted: MountedVolume | null = null;
  let host: Record<string, Record<string, unknown>>;
  let mount: Record<string, Record<string, unknown>>;

  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-behaviour-'));
    await fsp.chmod(work, 0o755);
    const hostDir = path.join(work, 'host');
    await fsp.mkdir(hostDir);
    host = await runAll(hostDir);
    const parent = path.join(work, 'parent');
    const mnt = path.join(work, 'mnt');
    await fsp.mkdir(parent);
    await fsp.mkdir(mnt);
    await makeVolume(parent, { blockSize: BS, size: 64 * 1024 * 1024 });
    mounted = await mountVolume(parent, mnt);
    mount = await runAll(mnt);
  });

  afterAll(async () => {
    await mounted?.unmount();
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('host results are what the scenarios expect', () => {
    expect(host['sparse write past EOF']!.gapIsZero).toBe(true);
    expect(host['sparse write past EOF']!.size).toBe(5 * BS + 27);
    expect(host['truncate down and up']!.tailZero).toBe(true);
    expect(host['rename over an existing file']!.aExists).toBe(false);
    expect(host['unlink while open']!.exists).toBe(false);
    expect(host['hard links']!.nlink).toBe(2);
    expect(host['hard links']!.a).toBe(host['hard links']!.b);
    expect(host.symlinks!.via).toBe('hello');
    expect(host['0-byte files']!.q).toBe(0);
    expect(host['exactly one block and one block plus one byte']!.sizes).toEqual([BS, BS + 1]);
  });

  for (const name of Object.keys(scenarios)) {
    it(`mount behaves like the host: ${name}`, () => {
      expect(mount[name]).toEqual(host[name]);
    });
  }
});
