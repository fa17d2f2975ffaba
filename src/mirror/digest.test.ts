/**
 * Merkle digests (digest.ts): the encoding's sensitivity and insensitivity on its own, then on real volumes built in
 * process: readdir order, a one-byte name change, a hole against a written zero block against a node of address 0
 * with junk hash bytes, names that are not UTF-8 and 255-byte names, hard links under other inode numbers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { seededBlocks } from '../../test/helpers/bytes.js';
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import {
  directoryContentDigest, entryDigest, specialContentDigest, symlinkContentDigest, VolumeDigests, type EntryFacts,
} from './digest.js';
import { nodeTreeAccess } from '../cli/mirrorddumbfs.js';
import { makeTempVolume, type TempVolume } from '../../test/helpers/temp_volume.js';
import {
  linkUfs, mkdirUfs, readUfsNode, ufsAbs, verifyInProcess, withVolume, writeUfsFile, writeUfsNode,
} from '../../test/helpers/ufs_tree.js';

const BS = 4096;
const volumes: TempVolume[] = [];

afterEach(async () => {
  for (const v of volumes.splice(0)) await v.cleanup();
});

async function volume(): Promise<TempVolume> {
  const v = await makeTempVolume({ blockSize: BS, size: '4M' });
  volumes.push(v);
  return v;
}

/** Deterministic block-sized content: no dedup between different seeds. */
function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function rootDigest(parent: string): Promise<Buffer> {
  const t = await VolumeDigests.open(parent, { access: nodeTreeAccess });
  try {
    return (await t.entry(Buffer.alloc(0)))!.digest;
  } finally {
    await t.close();
  }
}

const FILE: EntryFacts = { kind: 'file', mode: 0o644, uid: 1000, gid: 100, mtimeNs: 1_700_000_000_123_456_789n, sizeBytes: 8192, rdev: 0, link: Buffer.alloc(0) };
const CONTENT = createHash('sha256').update('content').digest();

describe('the encoding', () => {
  it('a directory digest does not depend on the order its entries come in', () => {
    const entries = ['b', 'a', 'c\xff', 'a\x00x', 'A'].map((n, k) => ({ name: Buffer.from(n, 'latin1'), digest: createHash('sha256').update(String(k)).digest() }));
    const d = directoryContentDigest(entries);
    expect(directoryContentDigest([...entries].reverse())).toEqual(d);
    expect(directoryContentDigest([entries[2]!, entries[0]!, entries[4]!, entries[1]!, entries[3]!])).toEqual(d);
    // the same digests under swapped names are another directory
    const swapped = entries.map((e, k) => ({ name: entries[(k + 1) % entries.length]!.name, digest: e.digest }));
    expect(directoryContentDigest(swapped)).not.toEqual(d);
  });

  it('a one-byte change of one name changes the directory digest', () => {
    const entries = [{ name: Buffer.from('report.txt'), digest: CONTENT }];
    const changed = [{ name: Buffer.from('report.txu'), digest: CONTENT }];
    expect(directoryContentDigest(changed)).not.toEqual(directoryContentDigest(entries));
  });

  it('length prefixes keep neighbouring names apart ("ab"+"c" is not "a"+"bc")', () => {
    const x = directoryContentDigest([{ name: Buffer.from('ab'), digest: CONTENT }, { name: Buffer.from('c'), digest: CONTENT }]);
    const y = directoryContentDigest([{ name: Buffer.from('a'), digest: CONTENT }, { name: Buffer.from('bc'), digest: CONTENT }]);
    expect(x).not.toEqual(y);
    expect(symlinkContentDigest(Buffer.from('ab'))).not.toEqual(symlinkContentDigest(Buffer.from('abc')));
  });

  it('every fact of an entry is in its digest', () => {
    const d = entryDigest(FILE, CONTENT);
    const variants: Array<Partial<EntryFacts>> = [
      { kind: 'fifo' }, { mode: 0o640 }, { mode: 0o4644 }, { uid: 1001 }, { gid: 101 }, { mtimeNs: FILE.mtimeNs! + 1n },
      { mtimeNs: null }, { sizeBytes: 8191 }, { link: Buffer.from('a/b') },
    ];
    const seen = new Set([d.toString('hex')]);
    for (const v of variants) {
      const e = entryDigest({ ...FILE, ...v }, CONTENT);
      expect(seen.has(e.toString('hex')), JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x))).toBe(false);
      seen.add(e.toString('hex'));
    }
    expect(entryDigest(FILE, createHash('sha256').update('other').digest())).not.toEqual(d);
    const dev: EntryFacts = { ...FILE, kind: 'char', sizeBytes: 0, rdev: 0x0501 };
    expect(entryDigest({ ...dev, rdev: 0x0502 }, specialContentDigest())).not.toEqual(entryDigest(dev, specialContentDigest()));
  });

  it('a directory ignores mtime, and a non-file ignores size and link', () => {
    const dir: EntryFacts = { ...FILE, kind: 'directory', sizeBytes: 0 };
    expect(entryDigest({ ...dir, mtimeNs: 5n }, CONTENT)).toEqual(entryDigest({ ...dir, mtimeNs: null }, CONTENT));
    const fifo: EntryFacts = { ...FILE, kind: 'fifo' };
    expect(entryDigest({ ...fifo, sizeBytes: 1, link: Buffer.from('x') }, CONTENT)).toEqual(entryDigest({ ...fifo, sizeBytes: 0 }, CONTENT));
  });
});

describe('digests of volumes', () => {
  it('the root digest is the digest of its sorted entries, whatever order they are given in', async () => {
    const v = await volume();
    await withVolume(v.parent, async (vol) => {
      for (const n of ['zeta', 'alpha', 'Mid', 'b\xe9ta']) await writeUfsFile(vol, Buffer.from(n, 'latin1'), block(n));
    });
    const t = await VolumeDigests.open(v.parent, { access: nodeTreeAccess });
    try {
      const root = (await t.entry(Buffer.alloc(0)))!;
      const listed = await t.list(Buffer.alloc(0));
      expect(listed.map((e) => e.name.toString('latin1'))).toEqual(['Mid', 'alpha', 'b\xe9ta', 'zeta']);
      expect(directoryContentDigest([...listed].reverse())).toEqual(root.contentDigest);
      expect(directoryContentDigest([listed[2]!, listed[0]!, listed[3]!, listed[1]!])).toEqual(root.contentDigest);
    } finally {
      await t.close();
    }
  });

  it('two volumes with one tree written in opposite orders have one root digest; a one-byte name change differs', async () => {
    const a = await volume();
    const b = await volume();
    const names = ['d/one', 'd/two', 'three', 'd/e/four'];
    for (const [v, order] of [[a, names], [b, [...names].reverse()]] as const) {
      mkdirUfs(v.parent, 'd');
      mkdirUfs(v.parent, 'd/e');
      await withVolume(v.parent, async (vol) => {
        for (const n of order) await writeUfsFile(vol, n, block(n, 2));
      });
      for (const n of names) fs.utimesSync(ufsAbs(v.parent, n), 1_600_000_000, 1_600_000_000);
    }
    expect(await rootDigest(a.parent)).toEqual(await rootDigest(b.parent));
    expect((await verifyInProcess(a.parent, b.parent)).lines).toEqual([]);

    fs.renameSync(ufsAbs(b.parent, 'd/e/four'), ufsAbs(b.parent, 'd/e/foub'));
    expect(await rootDigest(a.parent)).not.toEqual(await rootDigest(b.parent));
    expect((await verifyInProcess(a.parent, b.parent)).lines).toEqual(['EXTRA "/d/e/foub"', 'MISSING "/d/e/four"']);
  });

  it('a hole, a written zero block and a node of address 0 with junk hash bytes are one zero block', async () => {
    const a = await volume();
    const b = await volume();
    const c = await volume();
    const data = block('tail');
    await withVolume(a.parent, (vol) => writeUfsFile(vol, 'f', Buffer.concat([Buffer.alloc(BS), data])));
    await withVolume(b.parent, (vol) => writeUfsFile(vol, 'f', data, BS)); // block 0 is a hole
    await withVolume(c.parent, (vol) => writeUfsFile(vol, 'f', Buffer.concat([Buffer.alloc(BS), data])));
    const cfg = a.config;
    await writeUfsNode(c.parent, cfg.nodeSize, cfg.addrSize, 'f', 0, 0, Buffer.alloc(cfg.hashSize, 0xa5));
    for (const v of [a, b, c]) fs.utimesSync(ufsAbs(v.parent, 'f'), 1_600_000_000, 1_600_000_000);

    // the three node lists really differ in node 0's hash bytes, and agree in its address
    const n0 = await Promise.all([a, b, c].map((v) => readUfsNode(v.parent, cfg.nodeSize, cfg.addrSize, 'f', 0)));
    expect(n0.map((n) => n.address)).toEqual([0, 0, 0]);
    expect(n0[2]!.hash.equals(n0[0]!.hash)).toBe(false);

    const digests = await Promise.all([a, b, c].map((v) => rootDigest(v.parent)));
    expect(digests[1]).toEqual(digests[0]);
    expect(digests[2]).toEqual(digests[0]);
    expect((await verifyInProcess(a.parent, c.parent)).lines).toEqual([]);

    // and a real block in its place is not
    const d = await volume();
    await withVolume(d.parent, (vol) => writeUfsFile(vol, 'f', Buffer.concat([block('head'), data])));
    fs.utimesSync(ufsAbs(d.parent, 'f'), 1_600_000_000, 1_600_000_000);
    expect((await verifyInProcess(a.parent, d.parent)).lines).toEqual(['DIFF "/f" hashes@0']);
  });

  it('names that are not UTF-8 and 255-byte names compare by their bytes', async () => {
    const a = await volume();
    const b = await volume();
    const latin = Buffer.from('caf\xe9 \xff', 'latin1');
    const long = Buffer.alloc(255, 0x61);
    long[254] = 0xfe;
    for (const v of [a, b]) {
      await withVolume(v.parent, async (vol) => {
        await writeUfsFile(vol, latin, block('latin'));
        await writeUfsFile(vol, long, block('long'));
      });
      for (const n of [latin, long]) fs.utimesSync(ufsAbs(v.parent, n), 1_600_000_000, 1_600_000_000);
    }
    expect(await rootDigest(a.parent)).toEqual(await rootDigest(b.parent));

    const other = Buffer.from(long);
    other[254] = 0xfd; // one byte, the last of 255, and still not UTF-8
    fs.renameSync(ufsAbs(b.parent, long), ufsAbs(b.parent, other));
    const lines = (await verifyInProcess(a.parent, b.parent)).lines;
    expect(lines).toEqual([`EXTRA "/${'a'.repeat(254)}\\xfd"`, `MISSING "/${'a'.repeat(254)}\\xfe"`]);
  });

  it('hard links compare equal under different inode numbers, and a copy in place of a link does not', async () => {
    const a = await volume();
    const b = await volume();
    mkdirUfs(a.parent, 'd');
    await withVolume(a.parent, (vol) => writeUfsFile(vol, 'x', block('x')));
    linkUfs(a.parent, 'x', 'd/y');
    // b: other files first, so x gets another inode number
    await withVolume(b.parent, async (vol) => {
      for (let k = 0; k < 5; k++) await writeUfsFile(vol, `filler${k}`, Buffer.alloc(0));
    });
    for (let k = 0; k < 5; k++) fs.unlinkSync(ufsAbs(b.parent, `filler${k}`));
    mkdirUfs(b.parent, 'd');
    await withVolume(b.parent, (vol) => writeUfsFile(vol, 'x', block('x')));
    linkUfs(b.parent, 'x', 'd/y');
    for (const v of [a, b]) fs.utimesSync(ufsAbs(v.parent, 'x'), 1_600_000_000, 1_600_000_000);
    expect(fs.statSync(ufsAbs(a.parent, 'x')).ino).not.toBe(fs.statSync(ufsAbs(b.parent, 'x')).ino);
    expect(await rootDigest(a.parent)).toEqual(await rootDigest(b.parent));

    // b: d/y becomes a copy with the same bytes, mode and mtime
    fs.unlinkSync(ufsAbs(b.parent, 'd/y'));
    fs.copyFileSync(ufsAbs(b.parent, 'x'), ufsAbs(b.parent, 'd/y'));
    fs.chmodSync(ufsAbs(b.parent, 'd/y'), fs.statSync(ufsAbs(b.parent, 'x')).mode & 0o7777);
    fs.utimesSync(ufsAbs(b.parent, 'd/y'), 1_600_000_000, 1_600_000_000);
    expect((await verifyInProcess(a.parent, b.parent)).lines).toEqual(['DIFF "/d/y" link', 'DIFF "/x" link']);
  });
});

describe('a tree written while it is read (liveTree, a master pass of a mounted volume)', () => {
  it('a directory made after the first walk: verify aborts; a pass gets digests that match nothing and lists it', async () => {
    const v = await volume();
    await withVolume(v.parent, async (vol) => writeUfsFile(vol, 'a', block('a')));
    for (const liveTree of [false, true]) {
      const t = await VolumeDigests.open(v.parent, { access: nodeTreeAccess, liveTree });
      try {
        const before = (await t.entry(Buffer.alloc(0)))!; // the first walk
        const name = `late-${liveTree}`;
        mkdirUfs(v.parent, name);
        await withVolume(v.parent, async (vol) => writeUfsFile(vol, `${name}/f`, block('f')));
        if (!liveTree) {
          await expect(t.entry(Buffer.from(name))).rejects.toThrow(/the tree changed during the verify/);
          continue;
        }
        const late = (await t.entry(Buffer.from(name)))!;
        expect(late.kind).toBe('directory');
        const again = (await t.entry(Buffer.from(name)))!;
        expect(again.digest.equals(late.digest)).toBe(false); // never equal to anything, not even itself
        expect((await t.list(Buffer.from(name))).map((e) => e.name.toString())).toEqual(['f']);
        expect((await t.list(Buffer.alloc(0))).map((e) => e.name.toString()).sort()).toEqual(['a', 'late-false', name]);
        expect(before.kind).toBe('directory');
      } finally {
        await t.close();
      }
    }
  });
});

describe('listTypes of a directory on the way (an incremental pass, issue 8)', () => {
  const wide = Buffer.from('wide');
  const names = (es: Array<{ name: Buffer; kind: string; meta?: unknown }>): string[] => es.map((e) => `${e.name.toString('latin1')}:${e.kind}${e.meta ? '+meta' : ''}`);

  async function wideVolume(count: number): Promise<TempVolume> {
    const v = await volume();
    mkdirUfs(v.parent, 'wide');
    for (let k = 0; k < count; k++) mkdirUfs(v.parent, `wide/d${String(k).padStart(4, '0')}`);
    await withVolume(v.parent, async (vol) => writeUfsFile(vol, 'wide/f', block('f')));
    return v;
  }

  it('a directory of 1000 subdirectories lstats only those whose meta is asked for', async () => {
    const v = await wideVolume(1000);
    const t = await VolumeDigests.open(v.parent, { access: nodeTreeAccess, liveTree: true });
    try {
      const all = await t.listTypes(wide);
      expect(t.counters.lstat).toBe(1000); // without needMeta: every directory, as before
      const before = t.counters.lstat;
      const some = await t.listTypes(wide, (n) => n.toString() === 'd0500');
      expect(t.counters.lstat - before).toBe(1);
      // the same names and kinds; meta only where asked
      expect(some.map((e) => `${e.name.toString()}:${e.kind}`)).toEqual(all.map((e) => `${e.name.toString()}:${e.kind}`));
      expect(some.filter((e) => e.meta !== undefined).map((e) => e.name.toString())).toEqual(['d0500']);
      expect(some.find((e) => e.name.toString() === 'd0500')!.meta).toEqual(all.find((e) => e.name.toString() === 'd0500')!.meta);
    } finally {
      await t.close();
    }
  });

  // a mount point inside the tree is left out of a listing, as the walker leaves it out, also when no meta is asked
  // for; a bind mount of the same file system (the same st_dev) is listed, as before
  it.skipIf(process.getuid?.() !== 0)('a mount point is still left out; a bind mount of the same device is still listed', async () => {
    const v = await wideVolume(20);
    const mountAt = (rel: string): string => ufsAbs(v.parent, rel).toString();
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const mountCmd = promisify(execFile); // never a synchronous child: it would block this worker (test/child_run)
    const mounted: string[] = [];
    try {
      await mountCmd('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'ancestors-test', mountAt('wide/d0007')]);
      mounted.push(mountAt('wide/d0007'));
      await mountCmd('mount', ['--bind', mountAt('wide/d0001'), mountAt('wide/d0008')]);
      mounted.push(mountAt('wide/d0008'));
      // mountinfo escapes a space and a backslash in a mount point (\040, \134)
      mkdirUfs(v.parent, 'wide/m x\\y');
      await mountCmd('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'ancestors-test', mountAt('wide/m x\\y')]);
      mounted.push(mountAt('wide/m x\\y'));
      const t = await VolumeDigests.open(v.parent, { access: nodeTreeAccess, liveTree: true });
      try {
        const all = await t.listTypes(wide);
        const before = t.counters.lstat;
        const none = await t.listTypes(wide, () => false);
        // the three mount points are lstat'ed (the tmpfs ones found on another device), the other 18 taken by type
        expect(t.counters.lstat - before).toBe(3);
        expect(none.map((e) => `${e.name.toString()}:${e.kind}`)).toEqual(all.map((e) => `${e.name.toString()}:${e.kind}`));
        expect(none.map((e) => e.name.toString())).not.toContain('d0007');
        expect(none.map((e) => e.name.toString())).not.toContain('m x\\y');
        expect(none.map((e) => e.name.toString())).toContain('d0008');
        expect(names(none).filter((n) => n.endsWith('+meta'))).toEqual(['d0008:directory+meta']);
      } finally {
        await t.close();
      }
    } finally {
      for (const m of mounted.reverse()) await mountCmd('umount', [m]);
    }
  });
});
