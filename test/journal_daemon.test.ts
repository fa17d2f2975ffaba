/**
 * The master's write-ahead journal through real mounts (issue 8 part 1; mirroring spec §4.3, §4.18 inv. 8, §5
 * scenarios 1, 6): build first (`npx tsc -p tsconfig.json`), the daemon runs in a child process.
 * - every FUSE op that changes the tree of a master (create, mkdir, rmdir, unlink, rename, link, symlink, mknod,
 *   chmod, chown, utimens, truncate, and data writes) has its record, with the right path(s), in the journal on
 *   disk within the group-commit window (the op does not wait for it: journal.ts); a rename records both paths
 *   under one TID; TIDs strictly increase; repeated writes to one file share records; a chmod, chown or utimens of
 *   a path a record of the window names is coalesced into it (no record; the daemon's unmount line counts them),
 *   one of a path the window has not named has its record (the window is made long, DDUMBFS_JOURNAL_WINDOW_MS, so
 *   what is coalesced does not depend on the clock);
 * - a volume that is not a master gets no journal, no seal, no state;
 * - a clean unmount writes a seal and the next mount keeps the generation; kill -9 of the daemon then a remount
 *   bumps the generation and the new TIDs are above every old one;
 * - a kill -9 right after a burst of changes (their buffered records not yet durable, journal.ts) cannot hide them:
 *   the next pass (after a remount and a clean unmount) is a content pass and the slave then holds every change;
 * - cpddumbfs upload into a sealed master journals the uploaded path and keeps the generation; `mirrorddumbfs status --json` shows the journal.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Crc32c } from '../src/mirror/crc32c.js';
import { decodeJournalRecord, JOURNAL_DIRECTORY, JOURNAL_HEADER_SIZE, type JournalRecord } from '../src/mirror/journal.js';
import { readSeal } from '../src/mirror/master_journal.js';
import { initSlave } from '../src/mirror/copy.js';
import { claimTid } from '../src/mirror/state.js';
import { readAllFiles, twoWayPass } from './helpers/mirror_harness.js';
import { verifyInProcess } from './helpers/ufs_tree.js';
import { masterState, readMirrorState } from '../src/mirror/state.js';
import { mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';

const ROOT = path.resolve(__dirname, '..');
const CP_BIN = path.join(ROOT, 'bin/cpddumbfs');
const MIRROR_BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const FSCK_BIN = path.join(ROOT, 'bin/fsckddumbfs');
const ALTER_BIN = path.join(ROOT, 'bin/alterddumbfs');
const volumes: TempVolume[] = [];
let work: string;
let crc: Crc32c;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-jd-'));
  crc = await Crc32c.load();
});
afterEach(async () => {
  await unmountAll();
});
afterAll(async () => {
  await unmountAll();
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

async function volume(master: boolean): Promise<string> {
  const v = await makeTempVolume({ blockSize: 4096, size: '16M' });
  volumes.push(v);
  if (master) masterState(v.parent);
  return v.parent;
}

async function mount(parent: string): Promise<MountedVolume> {
  return mountVolume(parent, fs.mkdtempSync(path.join(work, 'mnt-')));
}

/** Every record in the journal files of `parent`, read from the outside (read only, as they are on disk). */
function journalRecords(parent: string): JournalRecord[] {
  const dir = path.join(parent, 'ddfsmirror', JOURNAL_DIRECTORY);
  const out: JournalRecord[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    const buf = fs.readFileSync(path.join(dir, name));
    for (let o = JOURNAL_HEADER_SIZE; o < buf.length;) {
      const d = decodeJournalRecord(crc, buf, o);
      if (d.kind !== 'record') break;
      out.push(d.record);
      o += d.sizeBytes;
    }
  }
  return out;
}

/** Poll the journal on disk until `done(records)` holds (the group commit writes within ms; 30 s is only a bound). */
async function journalUntil(parent: string, done: (recs: JournalRecord[]) => boolean): Promise<JournalRecord[]> {
  const end = Date.now() + 30_000;
  for (;;) {
    const recs = journalRecords(parent);
    if (done(recs) || Date.now() > end) return recs;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const show = (r: JournalRecord): string => `${r.op} ${r.path.toString('latin1')}${r.dest ? ` -> ${r.dest.toString('latin1')}` : ''}`;

describe('journal of a mounted master', () => {
  it('every tree op has its record on disk within the group commit, in order; rename records both paths under one TID; metadata changes coalesce', async () => {
    const parent = await volume(true);
    // paths made by an earlier mount: the window of the next one has named none of them
    const first = await mount(parent);
    for (const n of ['m1', 'm2', 'm3']) fs.writeFileSync(path.join(first.mountDir, n), n);
    await first.unmount();
    expect(await first.exited).toBe(0);
    process.env.DDUMBFS_JOURNAL_WINDOW_MS = '600000';
    let m: MountedVolume;
    try {
      m = await mount(parent);
    } finally {
      delete process.env.DDUMBFS_JOURNAL_WINDOW_MS;
    }
    const at = (p: string): string => path.join(m.mountDir, p);
    const steps: Array<[string, () => Promise<void> | void, string[]]> = [
      ['create', () => fs.closeSync(fs.openSync(at('f'), 'w')), ['create f']],
      ['mkdir', () => fs.mkdirSync(at('d')), ['mkdir d']],
      ['rename', () => fs.renameSync(at('f'), at('d/g')), ['rename f -> d/g']],
      ['link', () => fs.linkSync(at('d/g'), at('h')), ['link d/g -> h']],
      ['symlink', () => fs.symlinkSync('target-bytes', at('s')), ['symlink s']],
      ['mknod', async () => {
        const r = await sh('mkfifo', [at('p')]);
        expect(r.code).toBe(0);
      }, ['mknod p']],
      // h and s are named by records of this window (link, symlink): their metadata changes are coalesced
      ['chmod', () => fs.chmodSync(at('h'), 0o600), []],
      ['chown', () => fs.lchownSync(at('s'), process.getuid!(), process.getgid!()), []],
      ['utimens', () => fs.utimesSync(at('h'), 1000, 2000), []],
      // m1..m3 are not: the first change of each has its record, a second of the same path is coalesced
      ['chmod', () => fs.chmodSync(at('m1'), 0o600), ['chmod m1']],
      ['chmod', () => fs.chmodSync(at('m1'), 0o640), []],
      ['chown', () => fs.lchownSync(at('m2'), process.getuid!(), process.getgid!()), ['chown m2']],
      ['utimens', () => fs.utimesSync(at('m3'), 1000, 2000), ['utimens m3']],
      ['utimens', () => fs.utimesSync(at('m3'), 3000, 4000), []],
      // node's truncateSync is open + ftruncate: a data change of the open file (a write record)
      ['ftruncate', () => fs.truncateSync(at('h'), 20), ['write h']],
      // truncate(2) by path (perl-base is essential on Debian): the tree's truncate
      ['truncate', async () => {
        const r = await sh('perl', ['-e', 'truncate($ARGV[0], 10) or die "$!"', at('h')]);
        expect(r.code, r.stderr).toBe(0);
      }, ['truncate h']],
      ['unlink', () => fs.unlinkSync(at('h')), ['unlink h']],
      ['rmdir', () => {
        fs.mkdirSync(at('e'));
        fs.rmdirSync(at('e'));
      }, ['mkdir e', 'rmdir e']],
    ];
    const seenOps = new Set<string>();
    let before = journalRecords(parent).length;
    for (const [name, op, expected] of steps) {
      await op();
      // the kernel may add its own calls (a setattr after create...): each expected record is there, in order
      const found = (recs: JournalRecord[]): number => {
        let k = 0;
        for (const line of recs.slice(before).map(show)) if (line === expected[k]) k++;
        return k;
      };
      const recs = await journalUntil(parent, (r) => found(r) === expected.length);
      const fresh = recs.slice(before).map(show);
      const k = found(recs);
      expect(k, `${name}: expected ${expected.join(', ')} among ${fresh.join(', ')}`).toBe(expected.length);
      for (const r of recs.slice(before)) seenOps.add(r.op);
      before = recs.length;
    }
    // data writes: the first write of a file in a window waits for its record, later ones share it
    const fd = fs.openSync(at('w'), 'w');
    const writeCount = 64;
    for (let i = 0; i < writeCount; i++) {
      fs.writeSync(fd, Buffer.alloc(4096, i), 0, 4096, i * 4096);
      if (i === 0) expect((await journalUntil(parent, (r) => r.slice(before).map(show).includes('write w'))).slice(before).map(show)).toContain('write w');
    }
    fs.closeSync(fd);
    const writes = journalRecords(parent).filter((r) => r.op === 'write' && r.path.toString() === 'w');
    expect(writes.length).toBeGreaterThanOrEqual(1);
    expect(writes.length).toBeLessThan(writeCount);
    await m.unmount();
    expect(await m.exited).toBe(0);

    const all = journalRecords(parent);
    // the coalescing rule: exactly one metadata record per path of the window, and only for paths it had not named
    const meta = all.filter((r) => r.op === 'chmod' || r.op === 'chown' || r.op === 'utimens').map(show);
    expect(meta).toEqual(['chmod m1', 'chown m2', 'utimens m3']);
    // the five coalesced changes above (the kernel may add setattr calls of its own, coalesced too)
    const line = /journal closed at durable_head \d+: (\d+) records in \d+ fsyncs this mount, (\d+) changes coalesced, sealed/.exec(m.stderr());
    expect(line, m.stderr()).not.toBeNull();
    expect(Number(line![2])).toBeGreaterThanOrEqual(5);
    for (let i = 1; i < all.length; i++) expect(all[i]!.tid).toBeGreaterThan(all[i - 1]!.tid);
    for (const op of ['create', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'mknod', 'chmod', 'chown', 'utimens', 'truncate']) {
      expect(seenOps.has(op), op).toBe(true);
    }
    const rename = all.find((r) => r.op === 'rename')!;
    expect(rename.path.toString()).toBe('f');
    expect(rename.dest?.toString()).toBe('d/g');
    // the seal of the clean unmount names the last TID
    const seal = readSeal(parent);
    expect(seal?.lastTid).toBe(all[all.length - 1]!.tid.toString());
    const st = readMirrorState(parent)!;
    expect(st.nextTid).toBe((all[all.length - 1]!.tid + 1n).toString());
    expect(fs.statSync(path.join(parent, 'ddfsmirror', JOURNAL_DIRECTORY)).mode & 0o777).toBe(0o700);

    // status shows the journal (keys of the document kept, new ones added)
    const status = await run(process.execPath, [MIRROR_BIN, 'status', '--json', parent], { encoding: 'utf8' });
    expect(status.code).toBe(0);
    const doc = JSON.parse(status.stdout) as Record<string, unknown> & { journal: Record<string, unknown> };
    for (const key of ['statusVersion', 'volume', 'state', 'lineageId', 'staging', 'undo', 'lastVerify']) expect(doc).toHaveProperty(key);
    expect(doc.journal).toMatchObject({ nextTid: st.nextTid, durableHead: seal!.lastTid, segmentCount: 1, recordCount: all.length });
    expect(doc.journal.sizeBytes).toBe(fs.statSync(path.join(parent, 'ddfsmirror', JOURNAL_DIRECTORY, '00000001.jnl')).size);
  });

  it('a volume that is not a master gets no journal, no seal, no state', async () => {
    const parent = await volume(false);
    const m = await mount(parent);
    fs.writeFileSync(path.join(m.mountDir, 'x'), 'data');
    fs.mkdirSync(path.join(m.mountDir, 'y'));
    fs.renameSync(path.join(m.mountDir, 'x'), path.join(m.mountDir, 'y/x'));
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(fs.existsSync(path.join(parent, 'ddfsmirror'))).toBe(false);
  });

  it('clean unmount keeps the generation; kill -9 then remount bumps it and new TIDs are above every old one', async () => {
    const parent = await volume(true);
    const g0 = readMirrorState(parent)!.generation;
    // first mount: no seal yet (a master never mounted): generation goes up once
    let m = await mount(parent);
    fs.writeFileSync(path.join(m.mountDir, 'a'), 'one');
    await m.unmount();
    expect(await m.exited).toBe(0);
    const g1 = readMirrorState(parent)!.generation;
    expect(g1).toBe(g0 + 1);
    expect(readSeal(parent)).not.toBeNull();

    m = await mount(parent);
    // while mounted there is no seal: a crash from now on finds none
    expect(readSeal(parent)).toBeNull();
    fs.writeFileSync(path.join(m.mountDir, 'b'), 'two');
    fs.renameSync(path.join(m.mountDir, 'b'), path.join(m.mountDir, 'c'));
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(readMirrorState(parent)!.generation).toBe(g1);

    m = await mount(parent);
    for (let i = 0; i < 5; i++) fs.mkdirSync(path.join(m.mountDir, `k${i}`));
    const beforeKill = journalRecords(parent);
    const oldMax = beforeKill[beforeKill.length - 1]!.tid;
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    await m.unmount();
    m = await mount(parent);
    const g2 = readMirrorState(parent)!.generation;
    expect(g2).toBeGreaterThan(g1);
    fs.mkdirSync(path.join(m.mountDir, 'after-crash'));
    await m.unmount();
    expect(await m.exited).toBe(0);
    const after = journalRecords(parent);
    const fresh = after.find((r) => r.path.toString() === 'after-crash')!;
    expect(fresh.tid).toBeGreaterThan(oldMax);
    for (let i = 1; i < after.length; i++) expect(after[i]!.tid).toBeGreaterThan(after[i - 1]!.tid);
    expect(readMirrorState(parent)!.generation).toBe(g2);
  });

  it('kill -9 right after a burst of changes: the records lost with the buffer hide nothing, the next pass is a content pass', async () => {
    const parent = await volume(true);
    const slave = await volume(false);
    let m = await mount(parent);
    fs.writeFileSync(path.join(m.mountDir, 'base'), Buffer.alloc(5000, 1));
    await m.unmount();
    expect(await m.exited).toBe(0);
    await initSlave(slave, parent);
    expect((await twoWayPass(parent, slave)).master!.passKind).toBe('content');
    // the setup journals: a change then a clean unmount gives an incremental pass
    m = await mount(parent);
    fs.writeFileSync(path.join(m.mountDir, 'second'), Buffer.alloc(3000, 2));
    await m.unmount();
    expect(await m.exited).toBe(0);
    const inc = await twoWayPass(parent, slave);
    expect(inc.master!.passKind).toBe('incremental');
    const claimed = claimTid(readMirrorState(slave)!.claim);
    expect(claimed).toBeGreaterThan(0n);

    m = await mount(parent);
    const at = (p: string): string => path.join(m.mountDir, p);
    fs.mkdirSync(at('burst'));
    for (let i = 0; i < 20; i++) {
      const fd = fs.openSync(at(`burst/f${i}`), 'w');
      fs.writeSync(fd, Buffer.alloc(4096 + i, 10 + i));
      fs.fsyncSync(fd); // the data is on disk (the daemon's write-behind flushed); its record may not be
      fs.closeSync(fd);
    }
    fs.renameSync(at('second'), at('burst/moved'));
    fs.chmodSync(at('base'), 0o600);
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    await m.unmount();
    const onDisk = journalRecords(parent).filter((r) => r.tid > claimed).length;
    // remount (the crash bumps the generation), one more change, clean unmount
    const g0 = readMirrorState(parent)!.generation;
    m = await mount(parent);
    expect(readMirrorState(parent)!.generation).toBeGreaterThan(g0);
    fs.writeFileSync(at('after'), 'after the crash');
    await m.unmount();
    expect(await m.exited).toBe(0);
    const r = await twoWayPass(parent, slave);
    expect(r.masterError ?? r.slaveError).toBeNull();
    expect(r.master!.passKind, `${onDisk} records of the burst were on disk at the kill`).toBe('content');
    expect(r.master!.contentReason).toMatch(/generation/);
    expect((await verifyInProcess(parent, slave)).lines).toEqual([]);
    const want = await readAllFiles(parent);
    const got = await readAllFiles(slave);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, v] of want) expect(got.get(k)?.equals(v), k).toBe(true);
    expect(want.has('burst/moved') && want.has('burst/f19') && want.has('after')).toBe(true);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'base')).mode & 0o777).toBe(0o600);
  });

  it('cpddumbfs upload into a sealed master journals the path and keeps the generation', async () => {
    const parent = await volume(true);
    const m0 = await mount(parent);
    await m0.unmount(); // a clean unmount: a seal consistent with the journal
    const g0 = readMirrorState(parent)!.generation;
    const head0 = BigInt(readSeal(parent)!.lastTid);
    const src = path.join(work, 'upload-src');
    fs.writeFileSync(src, Buffer.alloc(10000, 7));
    const r = await run(process.execPath, [CP_BIN, src, path.join(parent, 'ddfsroot', 'up')], { encoding: 'utf8' });
    expect(r.code, r.stderr).toBe(0);
    expect(readMirrorState(parent)!.generation).toBe(g0);
    const records = journalRecords(parent).filter((x) => x.tid > head0);
    expect(records.map(show)).toEqual(['create up']);
    const seal = readSeal(parent)!;
    expect(BigInt(seal.lastTid)).toBe(records[records.length - 1]!.tid);
    expect(seal.generation).toBe(g0);
    // the next mount finds the seal consistent: no bump
    const m1 = await mount(parent);
    expect(readMirrorState(parent)!.generation).toBe(g0);
    await m1.unmount();
    expect(readMirrorState(parent)!.generation).toBe(g0);
    // a volume that is not a master gets no state from an upload
    const plain = await volume(false);
    const r2 = await run(process.execPath, [CP_BIN, src, path.join(plain, 'ddfsroot', 'up')], { encoding: 'utf8' });
    expect(r2.code, r2.stderr).toBe(0);
    expect(fs.existsSync(path.join(plain, 'ddfsmirror'))).toBe(false);
  });

  it('fsckddumbfs repairs and alterddumbfs on a master bump its generation; a check does not', async () => {
    const parent = await volume(true);
    const g0 = readMirrorState(parent)!.generation;
    const check = await run(process.execPath, [FSCK_BIN, '-c', parent], { encoding: 'utf8' });
    expect(check.code, check.stderr).toBe(0);
    expect(readMirrorState(parent)!.generation).toBe(g0);
    const repair = await run(process.execPath, [FSCK_BIN, '-n', parent], { encoding: 'utf8' });
    expect(repair.code, repair.stderr).toBe(0);
    expect(readMirrorState(parent)!.generation).toBe(g0 + 1);
    const alter = await run(process.execPath, [ALTER_BIN, '-r', '1', '-n', '7', parent], { encoding: 'utf8' });
    expect(alter.code, alter.stderr).toBe(0);
    expect(readMirrorState(parent)!.generation).toBe(g0 + 2);
  });
});
