import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CrashDeviceFactory, SeededRandom, CRASH_SECTOR_SIZE, type CrashReport } from './crash_device.js';
import { MemoryFile } from './memory_device.js';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-crashdev-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function freshPath(content?: Buffer): string {
  const p = path.join(dir, `f${n++}`);
  if (content) fs.writeFileSync(p, content);
  return p;
}

describe('SeededRandom', () => {
  it('is replayable from its seed and spreads over the range', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const xs = Array.from({ length: 1000 }, () => a.int(10));
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b.int(10)));
    for (let k = 0; k < 10; k++) expect(xs.filter((x) => x === k).length).toBeGreaterThan(50);
    expect(new SeededRandom(1).nextUint32()).not.toBe(new SeededRandom(2).nextUint32());
  });
});

describe('CrashDeviceFactory', () => {
  it('keeps writes pending until sync; reads and size see them', async () => {
    const p = freshPath(Buffer.from('0123456789'));
    const f = new CrashDeviceFactory();
    const d = await f.open(p, {});
    await d.write(Buffer.from('abc'), 8);
    expect(await d.size()).toBe(11);
    const out = Buffer.alloc(11);
    expect(await d.read(out, 0, 20, 0)).toBe(11);
    expect(out.toString()).toBe('01234567abc');
    expect(fs.readFileSync(p, 'utf8')).toBe('0123456789');
    await d.sync();
    expect(fs.readFileSync(p, 'utf8')).toBe('01234567abc');
    expect(f.pendingCount).toBe(0);
    await d.close();
  });

  it('models truncate and O_TRUNC as pending operations', async () => {
    const p = freshPath(Buffer.from('0123456789'));
    const f = new CrashDeviceFactory();
    const d = await f.open(p, { truncate: true });
    expect(await d.size()).toBe(0);
    await d.write(Buffer.from('xy'), 4);
    const out = Buffer.alloc(6, 0xee);
    expect(await d.read(out, 0, 6, 0)).toBe(6);
    expect(out).toEqual(Buffer.from([0, 0, 0, 0, 0x78, 0x79]));
    await d.truncate(5);
    await d.truncate(8);
    const out2 = Buffer.alloc(8);
    await d.read(out2, 0, 8, 0);
    expect(out2).toEqual(Buffer.from([0, 0, 0, 0, 0x78, 0, 0, 0]));
    expect(fs.readFileSync(p, 'utf8')).toBe('0123456789');
    await d.sync();
    expect(fs.readFileSync(p)).toEqual(out2);
    await d.close();
  });

  it('shares pending writes between handles of one file; a sync on any handle applies them', async () => {
    const p = freshPath(Buffer.alloc(4));
    const f = new CrashDeviceFactory();
    const a = await f.open(p, {});
    const b = await f.open(p, { readOnly: true });
    await a.write(Buffer.from('zz'), 1);
    const out = Buffer.alloc(4);
    await b.read(out, 0, 4, 0);
    expect(out).toEqual(Buffer.from([0, 0x7a, 0x7a, 0]));
    await expect(b.write(Buffer.from('q'), 0)).rejects.toMatchObject({ code: 'EBADF' });
    await b.sync();
    expect(fs.readFileSync(p)).toEqual(out);
    await a.close();
    await b.close();
  });

  it('follows the inode across a rename done with node:fs', async () => {
    const p = freshPath(Buffer.alloc(2));
    const f = new CrashDeviceFactory();
    const d = await f.open(p, {});
    await d.write(Buffer.from('ok'), 0);
    const q = `${p}.renamed`;
    fs.renameSync(p, q);
    await d.sync();
    expect(fs.readFileSync(q, 'utf8')).toBe('ok');
    await d.close();
  });

  it('a crash keeps a subset of the pending writes, and everything is dead afterwards', async () => {
    const p = freshPath(Buffer.alloc(8 * CRASH_SECTOR_SIZE));
    const f = new CrashDeviceFactory();
    const d = await f.open(p, {});
    for (let s = 0; s < 8; s++) await d.write(Buffer.alloc(CRASH_SECTOR_SIZE, s + 1), s * CRASH_SECTOR_SIZE);
    const report = f.crash(new SeededRandom(7));
    expect(report.files).toHaveLength(1);
    expect(report.files[0]!.pending).toBe(8);
    const after = fs.readFileSync(p);
    for (let s = 0; s < 8; s++) {
      const sector = after.subarray(s * CRASH_SECTOR_SIZE, (s + 1) * CRASH_SECTOR_SIZE);
      // each byte is the old one (0) or the written one; a torn write may stop inside a sector
      for (const byte of sector) expect([0, s + 1]).toContain(byte);
    }
    await expect(d.read(Buffer.alloc(1), 0, 1, 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(d.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(d.sync()).rejects.toMatchObject({ code: 'EIO' });
    await expect(f.open(p, {})).rejects.toMatchObject({ code: 'EIO' });
    await d.close();
    f.dispose();
  });

  it('sectors model: a sector never holds a later write without an earlier one to it; new bytes are never unwritten', async () => {
    let sawOnlyFirst = 0;
    let sawBoth = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const p = freshPath();
      fs.writeFileSync(p, '');
      const f = new CrashDeviceFactory();
      const d = await f.open(p, {});
      await d.write(Buffer.from('HEADER'), 0); // both in sector 0 of a new file
      await d.write(Buffer.from('node'), 6);
      f.crash(new SeededRandom(seed));
      const disk = fs.readFileSync(p, 'latin1');
      // ordered data: a committed size only exposes written bytes, and 'node' implies 'HEADER'
      expect(['', 'HEADER', 'HEADERnode']).toContain(disk);
      if (disk === 'HEADER') sawOnlyFirst++;
      if (disk === 'HEADERnode') sawBoth++;
      await d.close();
    }
    expect(sawOnlyFirst).toBeGreaterThan(0);
    expect(sawBoth).toBeGreaterThan(0);
  });

  it('sectors model: a multi-sector write may be torn at sector boundaries, the size comes from a commit point', async () => {
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 200; seed++) {
      const p = freshPath(Buffer.alloc(4 * CRASH_SECTOR_SIZE, 0x2e));
      const f = new CrashDeviceFactory();
      const d = await f.open(p, {});
      await d.write(Buffer.alloc(4 * CRASH_SECTOR_SIZE, 0x41), 0); // overwrite 4 sectors
      await d.truncate(CRASH_SECTOR_SIZE); // then shrink
      const report = f.crash(new SeededRandom(seed));
      const disk = fs.readFileSync(p);
      expect([CRASH_SECTOR_SIZE, 4 * CRASH_SECTOR_SIZE]).toContain(disk.length);
      expect(report.files[0]!.size).toBe(disk.length);
      const pattern = [...Array(disk.length / CRASH_SECTOR_SIZE).keys()].map((k) => {
        const sec = disk.subarray(k * CRASH_SECTOR_SIZE, (k + 1) * CRASH_SECTOR_SIZE);
        if (sec.every((x) => x === 0x2e)) return 'o';
        if (sec.every((x) => x === 0x41)) return 'A';
        if (sec.every((x) => x === 0)) return '0';
        throw new Error(`sector ${k} mixes contents`);
      }).join('');
      outcomes.add(pattern);
      await d.close();
    }
    // torn: some sectors new, some old; the shrink's size may or may not be committed
    expect([...outcomes].some((o) => o.length === 4 && o.includes('A') && o.includes('o'))).toBe(true);
    expect(outcomes.has('A')).toBe(true);
    expect(outcomes.has('o')).toBe(true);
  });

  it('subset model: can lose an earlier write to a sector and keep a later one (beyond what disks do)', async () => {
    let later = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const p = freshPath(Buffer.alloc(16));
      const f = new CrashDeviceFactory({ model: 'subset' });
      const d = await f.open(p, {});
      await d.write(Buffer.from('11'), 0);
      await d.write(Buffer.from('22'), 8);
      const report = f.crash(new SeededRandom(seed));
      expect(report.model).toBe('subset');
      const disk = fs.readFileSync(p);
      if (disk[0] === 0 && disk[8] === 0x32) later++;
      await d.close();
    }
    expect(later).toBeGreaterThan(0);
  });

  it('the same seed gives the same disk after the crash', async () => {
    const results: Buffer[] = [];
    for (let run = 0; run < 2; run++) {
      const p = freshPath(Buffer.alloc(4096));
      const f = new CrashDeviceFactory();
      const d = await f.open(p, {});
      const rng = new SeededRandom(99);
      for (let k = 0; k < 20; k++) await d.write(rng.bytes(rng.range(1, 700)), rng.int(4000));
      await d.truncate(3000 + rng.int(2000));
      f.crash(new SeededRandom(1234));
      results.push(fs.readFileSync(p));
      if (run === 0) expect(f.report?.files[0]?.pending).toBe(21);
      await d.close();
    }
    expect(results[0]).toEqual(results[1]);
  });

  it('crashAt crashes inside the Nth mutating call: it and every later call fail with EIO', async () => {
    const p = freshPath(Buffer.alloc(16));
    let crashed = 0;
    const f = new CrashDeviceFactory({ crashAt: 3, rng: new SeededRandom(5), onCrash: () => crashed++ });
    const d = await f.open(p, {});
    await d.write(Buffer.from('a'), 0);
    await d.sync(); // 2: durable
    await expect(d.write(Buffer.from('b'), 1)).rejects.toMatchObject({ code: 'EIO' }); // 3: crash
    await expect(d.write(Buffer.from('c'), 2)).rejects.toMatchObject({ code: 'EIO' });
    expect(crashed).toBe(1);
    expect(f.report?.ioCount).toBe(3);
    const disk = fs.readFileSync(p);
    expect(disk[0]).toBe(0x61);
    expect([0, 0x62]).toContain(disk[1]);
    expect(disk[2]).toBe(0);
    await d.close();
    f.dispose();
  });

  it('reads agree with a plain in-memory file for any sequence of writes, truncates and syncs (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ k: fc.constant('w' as const), pos: fc.nat(3000), len: fc.integer({ min: 0, max: 900 }), v: fc.nat(255) }),
            fc.record({ k: fc.constant('t' as const), size: fc.nat(4000) }),
            fc.record({ k: fc.constant('s' as const) }),
          ),
          { maxLength: 25 },
        ),
        async (ops) => {
          const initial = Buffer.alloc(1000, 3);
          const p = freshPath(initial);
          const f = new CrashDeviceFactory();
          const d = await f.open(p, {});
          const model = new MemoryFile(initial);
          for (const op of ops) {
            if (op.k === 'w') {
              const data = Buffer.alloc(op.len, op.v);
              await d.write(data, op.pos);
              model.write(data, op.pos);
            } else if (op.k === 't') {
              await d.truncate(op.size);
              model.truncate(op.size);
            } else {
              await d.sync();
              expect(fs.readFileSync(p)).toEqual(model.bytes());
            }
            expect(await d.size()).toBe(model.length);
            const out = Buffer.alloc(model.length + 10);
            const got = await d.read(out, 0, out.length, 0);
            expect(out.subarray(0, got)).toEqual(model.bytes());
          }
          await d.close();
          f.dispose();
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('CrashDeviceFactory directory entries (pending until the directory is synced)', () => {
  function freshDir(): string {
    const d = path.join(dir, `d${n++}`);
    fs.mkdirSync(d);
    return d;
  }

  it('an unsynced create, rename and remove are all undone when no entry survives; data follows the inode', async () => {
    const d = freshDir();
    fs.writeFileSync(path.join(d, 'old'), 'old content');
    fs.writeFileSync(path.join(d, 'gone'), 'removed content');
    const f = new CrashDeviceFactory();
    const dev = await f.open(path.join(d, 'new'), { create: true });
    await dev.write(Buffer.from('new content'), 0);
    await dev.sync(); // the data is durable, the name is not
    await dev.close();
    await f.rename(path.join(d, 'new'), path.join(d, 'old'));
    await f.remove(path.join(d, 'gone'));
    await f.mkdir(path.join(d, 'sub'), 0o700);
    // the program sees every operation at once
    expect(fs.readdirSync(d).sort()).toEqual(['old', 'sub']);
    expect(fs.readFileSync(path.join(d, 'old'), 'utf8')).toBe('new content');
    expect(f.pendingEntryCount).toBe(4);
    const report = f.crash(new SeededRandom(1), undefined, 'none');
    expect(report.entriesPending).toBe(4);
    expect(report.entriesKept).toBe(0);
    expect(report.entriesUndone.map((e) => e.split(' ')[0])).toEqual(['mkdir', 'remove', 'rename', 'create']);
    expect(fs.readdirSync(d).sort()).toEqual(['gone', 'old']);
    expect(fs.readFileSync(path.join(d, 'old'), 'utf8')).toBe('old content');
    expect(fs.readFileSync(path.join(d, 'gone'), 'utf8')).toBe('removed content');
    f.dispose();
  });

  it('syncDirectory commits the entries of that directory and every earlier one (an ordered journal)', async () => {
    const a = freshDir();
    const b = freshDir();
    const f = new CrashDeviceFactory();
    await (await f.open(path.join(a, 'x'), { create: true })).close();
    await (await f.open(path.join(b, 'y'), { create: true })).close();
    await (await f.open(path.join(a, 'z'), { create: true })).close();
    await f.syncDirectory(b); // commits a/x and b/y, not a/z
    expect(f.pendingEntryCount).toBe(1);
    const report = f.crash(new SeededRandom(2), undefined, 'none');
    expect(report.entriesUndone).toEqual([`create ${path.join(a, 'z')}`]);
    expect(fs.readdirSync(a)).toEqual(['x']);
    expect(fs.readdirSync(b)).toEqual(['y']);
    f.dispose();
  });

  it('a rename across directories is committed by a sync of either directory', async () => {
    for (const which of ['from', 'to'] as const) {
      const a = freshDir();
      const b = freshDir();
      fs.writeFileSync(path.join(a, 'f'), 'moved');
      const f = new CrashDeviceFactory();
      await f.rename(path.join(a, 'f'), path.join(b, 'f'));
      await f.syncDirectory(which === 'from' ? a : b);
      f.crash(new SeededRandom(3), undefined, 'none');
      expect(fs.readdirSync(a)).toEqual([]);
      expect(fs.readFileSync(path.join(b, 'f'), 'utf8')).toBe('moved');
      f.dispose();
    }
  });

  it('a file created with O_EXCL, written and synced, then renamed over another: a crash leaves old or new, never a mix', async () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 60; seed++) {
      const d = freshDir();
      const target = path.join(d, 'target');
      fs.writeFileSync(target, 'version 1');
      const f = new CrashDeviceFactory();
      const tmp = path.join(d, 'target.tmp');
      const dev = await f.open(tmp, { create: true, exclusive: true, noFollow: true });
      await dev.write(Buffer.from('version 2'), 0);
      await dev.sync();
      await dev.close();
      await f.rename(tmp, target);
      f.crash(new SeededRandom(seed));
      const names = fs.readdirSync(d).sort();
      const content = fs.readFileSync(target, 'utf8');
      expect(['version 1', 'version 2']).toContain(content);
      // before the rename survives, the temporary is there (created) or not (its create undone too)
      if (content === 'version 2') expect(names).toEqual(['target']);
      seen.add(`${content}:${names.join(',')}`);
      f.dispose();
    }
    // every prefix happens: nothing kept, the create only, both
    expect([...seen].sort()).toEqual(['version 1:target', 'version 1:target,target.tmp', 'version 2:target']);
  });

  it('a removed file with unsynced writes comes back with what the crash kept of its data', async () => {
    const d = freshDir();
    const p = path.join(d, 'f');
    fs.writeFileSync(p, 'durable!');
    const f = new CrashDeviceFactory();
    const dev = await f.open(p, {});
    await dev.write(Buffer.from('LOST'), 0);
    await f.remove(p);
    expect(fs.existsSync(p)).toBe(false);
    f.crash(new SeededRandom(4), () => 'none', 'none');
    expect(fs.readFileSync(p, 'utf8')).toBe('durable!');
    await dev.close();
    f.dispose();
  });

  it('a mkdir undone takes the files created in it along; a removed directory comes back', async () => {
    const d = freshDir();
    fs.mkdirSync(path.join(d, 'empty'), { mode: 0o750 });
    const f = new CrashDeviceFactory();
    await f.mkdir(path.join(d, 'sub'), 0o700);
    await (await f.open(path.join(d, 'sub', 'inner'), { create: true })).close();
    await f.remove(path.join(d, 'empty'));
    await f.syncDirectory(path.join(d, 'sub')); // commits the mkdir and the create, not the rmdir
    await f.mkdir(path.join(d, 'later'), 0o700);
    await (await f.open(path.join(d, 'later', 'x'), { create: true })).close();
    f.crash(new SeededRandom(5), undefined, 'none');
    expect(fs.readdirSync(d).sort()).toEqual(['empty', 'sub']);
    expect(fs.statSync(path.join(d, 'empty')).mode & 0o777).toBe(0o750);
    expect(fs.readdirSync(path.join(d, 'sub'))).toEqual(['inner']);
    f.dispose();
  });

  it('crashAt inside an entry operation: it happened, may be undone, and throws EIO like everything after', async () => {
    const d = freshDir();
    fs.writeFileSync(path.join(d, 'a'), 'A');
    let report: CrashReport | null = null;
    const f = new CrashDeviceFactory({ crashAt: 1, onCrash: (r) => { report = r; } });
    await expect(f.rename(path.join(d, 'a'), path.join(d, 'b'))).rejects.toMatchObject({ code: 'EIO', syscall: 'rename' });
    expect(report!.entriesPending).toBe(1);
    expect(fs.readdirSync(d)).toEqual([report!.entriesKept === 1 ? 'b' : 'a']);
    await expect(f.mkdir(path.join(d, 'x'), 0o700)).rejects.toMatchObject({ code: 'EIO' });
    await expect(f.syncDirectory(d)).rejects.toMatchObject({ code: 'EIO' });
    await expect(f.remove(path.join(d, 'a'))).rejects.toMatchObject({ code: 'EIO' });
    expect(fs.existsSync(path.join(d, 'x'))).toBe(false);
    f.dispose();
  });

  it('refuses to follow a symlink with noFollow, and O_EXCL refuses an existing file', async () => {
    const d = freshDir();
    fs.writeFileSync(path.join(d, 'outside'), 'keep');
    fs.symlinkSync(path.join(d, 'outside'), path.join(d, 'link'));
    const f = new CrashDeviceFactory();
    await expect(f.open(path.join(d, 'link'), { create: true, noFollow: true })).rejects.toMatchObject({ code: 'ELOOP' });
    await expect(f.open(path.join(d, 'outside'), { create: true, exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(f.pendingEntryCount).toBe(0);
    f.dispose();
  });
});
