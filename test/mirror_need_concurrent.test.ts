/**
 * NEED of a mounted master in use (mirroring spec §4.8 NEED, §5 scenario 1; issue 8): an incremental pass lists the
 * directories on the way to its dirty paths and marks every entry not dirty in (claim, tid_end] as unchanged since
 * the replica's claim. An entry created, renamed in or hard-linked after tid_end was fixed is in such a listing too;
 * the replica lacks it and asks for it (NEED). That is a concurrent change, not divergence: the master sends the
 * entry and counts it as concurrentNeeds, because a journal record above tid_end names it (its record is buffered
 * before the change is issued). An entry made behind the journal's back (on the master's UFS tree, under the
 * daemon) has no such record and is still a divergence alarm, in the same pass.
 *
 * Real daemon in a child process (helpers/mount.ts; build first: `npx tsc -p tsconfig.json`). The changes are made
 * while the slave holds back its answer to the master's first DIGESTQ (gatedAccess; that of the dirty file `a`, large
 * enough to be asked): after PASS_BEGIN (tid_end fixed) and the root's listing, before the listing of z/, by
 * construction rather than by timing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { gatedAccess } from './helpers/mirror_harness.js';
import { renderSummary } from '../src/mirror/pass_master.js';
import { readMirrorState } from '../src/mirror/state.js';
import { seededBlocks } from './helpers/bytes.js';
import { MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX } from '../src/limits.js';
import { mountVolume, unmountAll, type MountedVolume } from './helpers/mount.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, verifyInProcess, volumeFiles, withVolume, writeUfsFile } from './helpers/ufs_tree.js';

const ROOT = path.resolve(__dirname, '..');
const BS = 4096;
const volumes: TempVolume[] = [];
const mounts: MountedVolume[] = [];
let work: string;

const block = (seed: string, count = 1): Buffer => seededBlocks(seed, count, BS);
/** Blocks of a dirty file the master asks by DIGESTQ (the gate): a smaller one is sent unasked. */
const ASKED_BLOCKS = MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX + 1;

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(v);
  return v.parent;
}

async function mount(parent: string): Promise<MountedVolume> {
  const m = await mountVolume(parent, fs.mkdtempSync(path.join(work, 'mnt-')));
  mounts.push(m);
  return m;
}



beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/control.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-need-concurrent-'));
});

afterEach(async () => {
  for (const m of mounts.splice(0)) await m.unmount();
});

afterAll(async () => {
  await unmountAll();
  for (const v of volumes.splice(0)) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('NEED on a mounted master in use', () => {
  it('entries created, renamed in or hard-linked after tid_end are concurrentNeeds, not alarms, and reach the slave; an entry made behind the journal in the same pass is still an alarm', async () => {
    const master = await volume();
    const slave = await volume();
    mkdirUfs(master, 'z');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'a', block('a', 2));
      await writeUfsFile(v, 'h', block('h', 1));
      await writeUfsFile(v, 'y', block('y', 1));
      await writeUfsFile(v, 'z/q', block('q', 1));
    });
    await initSlave(slave, master);
    const m = await mount(master);
    fs.mkdirSync(path.join(m.mountDir, 'j')); // a journaled change: the first claim names a TID
    const first = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(first.master.passKind).toBe('content');
    expect(first.master.claimKind).toBe('exact');
    // dirty: a (a child of the root, queried first), z/q and z/r (z/ is listed after a's DIGESTA: z/r is a new
    // entry, so z's entries changed in the range and it gets a DIRLIST, spec §4.6 step 2)
    await fsp.writeFile(path.join(m.mountDir, 'a'), block('a2', ASKED_BLOCKS));
    await fsp.writeFile(path.join(m.mountDir, 'z', 'q'), block('q2', 1));
    await fsp.writeFile(path.join(m.mountDir, 'z', 'r'), block('r', 1));
    const access = gatedAccess(async () => {
      // after tid_end: journaled through the mount (a create, a rename in) ...
      await fsp.writeFile(path.join(m.mountDir, 'z', 'new'), block('new', 1));
      await fsp.rename(path.join(m.mountDir, 'y'), path.join(m.mountDir, 'z', 'moved'));
      await fsp.link(path.join(m.mountDir, 'h'), path.join(m.mountDir, 'z', 'linked'));
      // ... and one behind the journal's back: a directory made on the master's UFS tree, under its daemon
      mkdirUfs(master, 'z/hidden');
    });
    const reports: string[] = [];
    const second = await copyLocal(master, slave, { access, report: (l) => reports.push(l) });
    expect(access.opened).toBe(true);
    expect(second.master.passKind, `${second.master.contentReason}`).toBe('incremental');
    expect(second.slave.needsSent).toBe(4);
    expect(second.master.concurrentNeeds).toBe(3);
    expect(second.master.divergenceAlarms).toBe(1);
    expect(reports.filter((l) => /divergence alarm/.test(l))).toEqual(['divergence alarm: the replica lacks z/hidden although its claim covers it: sent again']);
    expect(renderSummary(second.master)).toMatch(/3 entries asked for by the replica that changed after TID \d+ \(sent again; not alarms\), 1 divergence alarms/);
    expect(m.stderr()).toMatch(/mirror: master pass done: .*3 entries asked for by the replica that changed after TID/);
    expect(second.master.claimKind).toBe('atleast');
    // every entry asked for arrived within the pass
    const applied = await volumeFiles(slave);
    expect(applied.get('z/new')?.equals(block('new', 1))).toBe(true);
    expect(applied.get('z/moved')?.equals(block('y', 1))).toBe(true);
    // z/linked is asked for too, but a hard link is not digested by an incremental pass: not sent (the next pass is
    // a content pass because of it)
    expect(applied.has('z/linked')).toBe(false);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'z', 'hidden')).isDirectory()).toBe(true);
    // quiescent now: the next pass (a content pass: h and z/linked are one inode) covers the concurrent changes (y
    // leaves the root, z/linked arrives), exact, no NEED, verify clean
    const third = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(third.master.passKind).toBe('content');
    expect(third.master.contentReason).toMatch(/hard link/);
    expect(third.master.tidEnd).toBeGreaterThan(second.master.tidEnd);
    expect(third.master.claimKind).toBe('exact');
    expect(third.slave.needsSent).toBe(0);
    expect(third.master.divergenceAlarms).toBe(0);
    expect(third.master.concurrentNeeds).toBe(0);
    expect(readMirrorState(slave)?.claim?.claimKind).toBe('exact');
    await m.unmount();
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    const final = await volumeFiles(slave);
    expect([...final.keys()].sort()).toEqual(['a', 'h', 'z/linked', 'z/moved', 'z/new', 'z/q', 'z/r']);
    expect(final.get('z/linked')?.equals(block('h', 1))).toBe(true);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'z', 'linked')).ino).toBe(fs.statSync(path.join(slave, 'ddfsroot', 'h')).ino);
  }, 300_000);

  it('a missed stamp stays an alarm although journal records above tid_end name its directory (chmod, utimens) and a sibling elsewhere', async () => {
    const master = await volume();
    const slave = await volume();
    mkdirUfs(master, 'z');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'a', block('a', 1));
      await writeUfsFile(v, 'z/q', block('q', 1));
    });
    await initSlave(slave, master);
    const m = await mount(master);
    fs.mkdirSync(path.join(m.mountDir, 'j'));
    expect((await copyLocal(master, slave, { access: nodeTreeAccess })).master.claimKind).toBe('exact');
    await fsp.writeFile(path.join(m.mountDir, 'a'), block('a2', ASKED_BLOCKS));
    await fsp.writeFile(path.join(m.mountDir, 'z', 'q'), block('q2', 1));
    await fsp.writeFile(path.join(m.mountDir, 'z', 'r'), block('r', 1)); // a new entry: z is listed (DIRLIST)
    const access = gatedAccess(async () => {
      // journaled after tid_end, none placing an entry at z/hidden or an ancestor of it: metadata of z, a file at j/
      await fsp.chmod(path.join(m.mountDir, 'z'), 0o700);
      await fsp.utimes(path.join(m.mountDir, 'z'), 1_000_000, 1_000_000);
      await fsp.writeFile(path.join(m.mountDir, 'j', 'other'), block('other', 1));
      mkdirUfs(master, 'z/hidden'); // behind the journal's back
    });
    const reports: string[] = [];
    const r = await copyLocal(master, slave, { access, report: (l) => reports.push(l) });
    expect(access.opened).toBe(true);
    expect(r.master.passKind, `${r.master.contentReason}`).toBe('incremental');
    expect(r.slave.needsSent).toBe(1);
    expect(r.master.divergenceAlarms).toBe(1);
    expect(r.master.concurrentNeeds).toBe(0);
    expect(reports).toContain('divergence alarm: the replica lacks z/hidden although its claim covers it: sent again');
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'z', 'hidden')).isDirectory()).toBe(true);
    const next = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(next.master.claimKind).toBe('exact');
    expect(next.master.divergenceAlarms).toBe(0);
    await m.unmount();
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  }, 300_000);
});
