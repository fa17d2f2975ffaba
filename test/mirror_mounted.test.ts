/**
 * Mirroring mounted volumes through their own daemon (issue 7 item 0), with real daemons (helpers/mount.ts; build
 * first: `npx tsc -p tsconfig.json`):
 * - a copy from a MOUNTED master written during the pass (the write is made while the pass waits for the slave's
 *   answer, so it happens inside the pass by construction, not by timing): claim atleast; then a quiescent copy:
 *   claim exact, verify empty, every file equal;
 * - a copy into a MOUNTED slave: served read-only (every write op answers EROFS), the files readable through its
 *   mount byte for byte, and a later pass's new file visible without a remount; a slave whose daemon serves it
 *   writable (mounted before it became a slave) is refused with one line; a symlink planted at ddfsmirror refuses
 *   the mount; a slave unmounted while a pass runs through its daemon fails the pass, and its daemon stops cleanly;
 * - the volume lock: while mirrorddumbfs holds a volume, fsckddumbfs -n and a second mirrorddumbfs are refused
 *   with one line naming it;
 * - reclaim pins (mirroring spec §5 scenario 8), in process against the Volume the way the daemon runs a pass
 *   (daemonPassVolume): the slave reports holding an unreferenced block, reclaim runs before the FILE naming it is
 *   applied, and the pass still commits with no dangling reference.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { RecordReader, RecordWriter } from '../src/mirror/channel.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { gatedAccess } from './helpers/mirror_harness.js';
import { runMaster } from '../src/mirror/pass_master.js';
import { runSlave } from '../src/mirror/pass_slave.js';
import { daemonPassVolume, openPassVolume } from '../src/mirror/pass_volume.js';
import { masterState, readMirrorState, slaveStateFor, writeMirrorState } from '../src/mirror/state.js';
import { Volume } from '../src/volume/volume.js';
import { mountVolume, unmountAll, waitFor, type MountedVolume } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, verifyInProcess, volumeFiles, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';
import { MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX } from '../src/limits.js';

const ROOT = path.resolve(__dirname, '..');
const MIRROR_BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const FSCK_BIN = path.join(ROOT, 'bin/fsckddumbfs');
const BS = 4096;
const volumes: TempVolume[] = [];
const mounts: MountedVolume[] = [];
let work: string;

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(v);
  return v.parent;
}

async function mount(parent: string): Promise<MountedVolume> {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  const m = await mountVolume(parent, mnt);
  mounts.push(m);
  return m;
}

async function mirror(args: string[], input?: Buffer): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [MIRROR_BIN, ...args], { timeoutMs: 180_000, input });
  return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

/** A master with a few files in two directories, written offline. */
async function masterTree(master: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>([['a', block('a', 3)], ['d/b', block('b', 2)], ['d/e/c', Buffer.concat([block('a', 1), block('c', 1).subarray(0, 1000)])]]);
  mkdirUfs(master, 'd');
  mkdirUfs(master, 'd/e');
  await withVolume(master, async (v) => {
    for (const [p, data] of files) await writeUfsFile(v, p, data);
  });
  return files;
}

/**
 * A master (masterTree) mounted, with one journaled change (mkdir j: the first claim names a TID), and its slave
 * after a first copy through the daemon.
 */
async function mountedPair(): Promise<{ master: string; slave: string; m: MountedVolume; first: Awaited<ReturnType<typeof copyLocal>> }> {
  const master = await volume();
  const slave = await volume();
  await masterTree(master);
  await initSlave(slave, master);
  const m = await mount(master);
  fs.mkdirSync(path.join(m.mountDir, 'j'));
  const first = await copyLocal(master, slave, { access: nodeTreeAccess });
  return { master, slave, m, first };
}

/** Every regular file below `dir` (a mount), relative path → bytes, skipping the special directory. */
function readMountTree(dir: string, rel = ''): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (rel === '' && (e.name === '.ddumbfs' || e.name === 'ddfsmirror')) continue;
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) for (const [k, v] of readMountTree(dir, p)) out.set(k, v);
    else if (e.isFile()) out.set(p, fs.readFileSync(path.join(dir, p)));
  }
  return out;
}


function sorted(m: Map<string, Buffer>): Array<[string, string]> {
  return [...m].map(([k, v]): [string, string] => [k, createHash('sha256').update(v).digest('hex')]).sort((x, y) => (x[0] < y[0] ? -1 : 1));
}


beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/control.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-mounted-'));
});

afterEach(async () => {
  for (const m of mounts.splice(0)) await m.unmount();
});

afterAll(async () => {
  await unmountAll();
  for (const v of volumes.splice(0)) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('mirroring a mounted volume through its daemon', () => {
  it('a copy from a mounted master written during the pass claims atleast; a quiescent copy is exact and equal', async () => {
    const master = await volume();
    const slave = await volume();
    await masterTree(master);
    await initSlave(slave, master);
    const m = await mount(master);
    expect(fs.lstatSync(path.join(master, 'ddfsmirror', 'control')).isSocket()).toBe(true);
    expect(fs.lstatSync(path.join(master, 'ddfsmirror', 'control')).mode & 0o777).toBe(0o600);
    // while the slave holds back its first answer, the master's mount is written: a new file, an overwritten one
    const access = gatedAccess(async () => {
      await fsp.writeFile(path.join(m.mountDir, 'd', 'new'), block('new', 4));
      const fh = await fsp.open(path.join(m.mountDir, 'a'), 'r+');
      await fh.write(block('over', 1), 0, BS, BS);
      await fh.close();
    });
    const first = await copyLocal(master, slave, { access });
    expect(access.opened).toBe(true);
    expect(first.master.claimKind).toBe('atleast');
    expect(readMirrorState(slave)?.claim?.claimKind).toBe('atleast');
    // quiescent now: the next pass sees nothing changing, sends what the first missed, and is exact
    const second = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(second.master.claimKind).toBe('exact');
    expect(readMirrorState(slave)?.claim?.claimKind).toBe('exact');
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    const seen = readMountTree(m.mountDir);
    expect(seen.get('d/new')?.equals(block('new', 4))).toBe(true);
    expect(seen.get('a')?.equals(Buffer.concat([block('a', 3).subarray(0, BS), block('over', 1), block('a', 3).subarray(2 * BS)]))).toBe(true);
    expect(sorted(await volumeFiles(slave))).toEqual(sorted(seen));
    // the master's daemon still runs and serves; its volume lock was never taken by mirrorddumbfs
    expect(m.stderr()).toMatch(/mirror: master pass done: .*claim exact/);
  }, 300_000);

  it('an incremental pass from a mounted master written after its PASS_BEGIN: claim atleast; the next incremental pass sends those changes, exact (spec §5 claim soundness)', async () => {
    const { master, slave, m, first } = await mountedPair();
    expect(first.master.passKind).toBe('content');
    expect(first.master.claimKind).toBe('exact');
    const t1 = first.master.tidEnd;
    expect(t1).toBeGreaterThan(0n);
    // a file large enough to be asked by DIGESTQ (a smaller dirty file is sent unasked, MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX)
    await fsp.writeFile(path.join(m.mountDir, 'd', 'b'), block('b2', MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX + 1));
    // the slave's first lstat is at its first DIGESTQ, after PASS_BEGIN (tid_end fixed): the writes get later TIDs
    const access = gatedAccess(async () => {
      await fsp.writeFile(path.join(m.mountDir, 'j', 'new'), block('new', 2));
      const fh = await fsp.open(path.join(m.mountDir, 'a'), 'r+');
      await fh.write(block('over', 1), 0, BS, BS);
      await fh.close();
    });
    const second = await copyLocal(master, slave, { access });
    expect(access.opened).toBe(true);
    expect(second.master.passKind).toBe('incremental');
    expect(second.master.tidBeg).toBe(t1 + 1n);
    expect(second.master.claimKind).toBe('atleast');
    const t2 = second.master.tidEnd;
    // quiescent now: the next pass's range starts above t2 and holds the writes made during the second pass
    const third = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(third.master.passKind).toBe('incremental');
    expect(third.master.tidBeg).toBe(t2 + 1n);
    expect(third.master.claimKind).toBe('exact');
    expect(third.master.filesSent).toBeGreaterThanOrEqual(2);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    expect(sorted(await volumeFiles(slave))).toEqual(sorted(readMountTree(m.mountDir)));
  }, 300_000);

  it('a hard link made to a dirty file during an incremental pass: that file is left for the next pass (claim atleast), which is a content pass', async () => {
    const { master, slave, m, first } = await mountedPair();
    expect(first.master.passKind).toBe('content');
    // `a` is large enough to be asked (the gate: the slave's first lstat, after PASS_BEGIN); d/b is visited after it
    await fsp.writeFile(path.join(m.mountDir, 'a'), block('a2', MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX + 1));
    await fsp.writeFile(path.join(m.mountDir, 'd', 'b'), block('b2', 2));
    const access = gatedAccess(async () => {
      await fsp.link(path.join(m.mountDir, 'd', 'b'), path.join(m.mountDir, 'd', 'b2'));
    });
    const second = await copyLocal(master, slave, { access });
    expect(access.opened).toBe(true);
    expect(second.master.passKind).toBe('incremental');
    expect(second.master.claimKind).toBe('atleast');
    expect(second.master.skippedFiles.map((p) => p.toString())).toEqual(['d/b']);
    // the link's record names d/b: the next pass finds the link and takes the whole tree by content
    const third = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(third.master.passKind).toBe('content');
    expect(third.master.contentReason).toMatch(/hard link/);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    expect(sorted(await volumeFiles(slave))).toEqual(sorted(readMountTree(m.mountDir)));
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'd', 'b2')).ino).toBe(fs.statSync(path.join(slave, 'ddfsroot', 'd', 'b')).ino);
  }, 300_000);

  it('a copy into a mounted slave: read-only mount (EROFS on every write op), files readable byte for byte, next pass visible', async () => {
    const master = await volume();
    const slave = await volume();
    const files = await masterTree(master);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    const s = await mount(slave);
    expect(s.stderr()).toMatch(/served read-only: a mirror slave/);
    const c = await mirror(['copy', master, slave]);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/^mirrorddumbfs: content pass, 3 files visited, 3 files sent, \d+ blocks sent, .*claim exact(@\d+)?\n$/);
    const seen = readMountTree(s.mountDir);
    expect(sorted(seen)).toEqual(sorted(files));
    // every write op on the slave's mount answers EROFS
    const at = (p: string): string => path.join(s.mountDir, p);
    const erofs = async (what: string, op: () => Promise<unknown>): Promise<string> => {
      try {
        await op();
        return `${what}: succeeded`;
      } catch (err) {
        return `${what}: ${(err as NodeJS.ErrnoException).code}`;
      }
    };
    const results = [
      await erofs('create', () => fsp.writeFile(at('created'), 'x')),
      await erofs('write', () => fsp.open(at('a'), 'r+')),
      await erofs('mkdir', () => fsp.mkdir(at('dir'))),
      await erofs('rename', () => fsp.rename(at('a'), at('renamed'))),
      await erofs('unlink', () => fsp.unlink(at('a'))),
      await erofs('chmod', () => fsp.chmod(at('a'), 0o600)),
      await erofs('truncate', () => fsp.truncate(at('a'), 10)),
      await erofs('symlink', () => fsp.symlink('a', at('sym'))),
      await erofs('link', () => fsp.link(at('a'), at('hard'))),
      await erofs('utimes', () => fsp.utimes(at('a'), 1000, 1000)),
    ];
    expect(results).toEqual(['create', 'write', 'mkdir', 'rename', 'unlink', 'chmod', 'truncate', 'symlink', 'link', 'utimes'].map((w) => `${w}: EROFS`));
    expect(sorted(readMountTree(s.mountDir))).toEqual(sorted(files));
    // a later pass: its new file is visible through the same mount once the window's renames are done
    await withVolume(master, (v) => writeUfsFile(v, 'd/later', block('later', 2)));
    const again = await mirror(['copy', master, slave]);
    expect(again.status).toBe(0);
    expect(fs.readFileSync(at('d/later')).equals(block('later', 2))).toBe(true);
    expect(s.stderr()).toMatch(/mirror: slave pass applied: /);
    // one way into the mounted slave: read > bytes, write < bytes
    await withVolume(master, (v) => writeUfsFile(v, 'oneway', block('oneway', 3)));
    const r = await run('node', [MIRROR_BIN, 'read', master], { timeoutMs: 180_000 });
    expect(r.code).toBe(0);
    const w = await mirror(['write', slave], r.stdout);
    expect(w.stderr).toMatch(/^mirrorddumbfs: \d+ blocks received, \d+ files applied, 0 entries deleted, \d+ bytes on the wire, [0-9.]+ s\n$/);
    expect(w.status).toBe(0);
    expect(fs.readFileSync(at('oneway')).equals(block('oneway', 3))).toBe(true);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  }, 300_000);

  it('a slave mounted writable (mounted before it became one) is refused with one line, nothing applied', async () => {
    const master = await volume();
    const slave = await volume();
    await masterTree(master);
    const s = await mount(slave);
    expect(s.stderr()).not.toMatch(/served read-only/);
    // bound behind the daemon's back (init-slave refuses a mounted volume): its daemon serves it writable
    writeMirrorState(slave, slaveStateFor(masterState(master)));
    const c = await mirror(['copy', master, slave]);
    expect(c.status).toBe(1);
    expect(c.stderr).toBe(`mirrorddumbfs: ${slave}: mounted writable (it was mounted before it became a slave): unmount it and mount it again to apply passes\n`);
    expect(readMountTree(s.mountDir).size).toBe(0);
    expect(readMirrorState(slave)?.claim).toBeNull();
  }, 300_000);

  it('a symlink planted at ddfsmirror refuses the mount (whether it is a slave cannot be told); its target is untouched', async () => {
    const parent = await volume();
    const elsewhere = fs.mkdtempSync(path.join(work, 'elsewhere-'));
    fs.symlinkSync(elsewhere, path.join(parent, 'ddfsmirror'));
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    await expect(mountVolume(parent, mnt)).rejects.toThrow(new RegExp(`ddumbfs: ${path.join(parent, 'ddfsmirror')}: not a directory \\(a symlink\\?\\): refused\n`));
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
  }, 300_000);

  it('unmounting a slave while a pass runs through its daemon: the pass fails in one line, the daemon stops cleanly, nothing applied', async () => {
    const master = await volume();
    const slave = await volume();
    await masterTree(master);
    await initSlave(slave, master);
    const s = await mount(slave);
    // the master waits in its first lstat while the slave's daemon, already running its side, is unmounted
    const access = gatedAccess(async () => {
      expect(await waitFor(() => /mirror: slave side of a pass through the control socket/.test(s.stderr()), 120_000)).toBe(true);
      await s.unmount();
    });
    await expect(copyLocal(master, slave, { access })).rejects.toThrow(/^\/\S+: the daemon closed the control socket without a result$|the daemon is stopping/);
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/mirror: slave pass failed: /);
    expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'control'))).toBe(false);
    expect(readMirrorState(slave)?.claim).toBeNull();
    expect(fs.readdirSync(path.join(slave, 'ddfsroot')).filter((n) => n !== '.ddumbfs')).toEqual([]);
  }, 300_000);

  it('while mirrorddumbfs holds a volume, fsckddumbfs -n and a second mirrorddumbfs are refused with one line naming it', async () => {
    const master = await volume();
    const slave = await volume();
    await masterTree(master);
    await initSlave(slave, master);
    const refusals: Array<{ status: number; stderr: string }> = [];
    const access = gatedAccess(async () => {
      const f = await run('node', [FSCK_BIN, '-n', slave], { timeoutMs: 180_000 });
      refusals.push({ status: f.code ?? -1, stderr: f.stderr.toString('latin1') });
      const c = await mirror(['write', slave], Buffer.alloc(0));
      refusals.push({ status: c.status, stderr: c.stderr });
    });
    const r = await copyLocal(master, slave, { access });
    expect(r.slave.committed).toBe(true);
    const who = new RegExp(`^(?:[a-z]+: |\\d\\d:\\d\\d:\\d\\d ERR )${slave.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: volume in use by mirrorddumbfs \\(pid ${process.pid}, since [^)]+\\); try again when it has finished\\n$`);
    expect(refusals.length).toBe(2);
    expect(refusals[0]!.status).toBe(1);
    expect(refusals[0]!.stderr).toMatch(who);
    expect(refusals[1]!.status).toBe(1);
    expect(refusals[1]!.stderr).toMatch(who);
    // released at the end: the same copy now runs
    expect((await mirror(['copy', master, slave])).status).toBe(0);
  }, 300_000);
});

describe('reclaim pins (mirroring spec §5 scenario 8)', () => {
  it('a block the slave reported as held survives a reclaim run before the FILE naming it is applied', async () => {
    const master = await volume();
    const slave = await volume();
    await initSlave(slave, master);
    const content = block('pinned', 3);
    // the slave gets the blocks, then loses the only file naming them: unreferenced blocks, still in its index
    await withVolume(master, (v) => writeUfsFile(v, 'old', content));
    await copyLocal(master, slave, { access: nodeTreeAccess });
    fs.unlinkSync(path.join(master, 'ddfsroot', 'old'));
    await copyLocal(master, slave, { access: nodeTreeAccess, allowMassDelete: true });
    await withVolume(master, (v) => writeUfsFile(v, 'new', content));

    // the slave's volume as its daemon holds it; reclaim runs when the first FILE_BEGIN arrives (after HAVE)
    const slaveVolume = await Volume.open(slave);
    const usedBefore = slaveVolume.store.blockCountUsed;
    const m = await openPassVolume(master, { tool: 'mirrorddumbfs', readOnly: true });
    let reclaimed = -1;
    try {
      const m2s = new PassThrough();
      const s2m = new PassThrough();
      const inner = await RecordReader.create(m2s);
      const slaveIn = {
        async next() {
          const d = await inner.next();
          if (d.record.type === 'FILE_BEGIN' && reclaimed < 0) {
            slaveVolume.mayFindFreeBlocks = true;
            reclaimed = (await slaveVolume.runReclaim()).nodeDeleted;
          }
          return d;
        },
      } as unknown as RecordReader;
      const [ms, ss] = await Promise.all([
        runMaster(m, await RecordWriter.create(m2s, true), { access: nodeTreeAccess, input: await RecordReader.create(s2m) }),
        runSlave(daemonPassVolume(slaveVolume, async () => undefined), slaveIn, { access: nodeTreeAccess, output: await RecordWriter.create(s2m, false) }),
      ]);
      expect(ss.committed).toBe(true);
      expect(ms.blocksHeld).toBe(3);
      expect(ms.blocksSent).toBe(0);
      expect(reclaimed).toBe(0);
      expect(slaveVolume.store.blockCountUsed).toBe(usedBefore);
      // with the pass over, its pins are gone: nothing else is kept back by them
      expect(slaveVolume.store.index.nodes.checkInvariants()).toEqual([]);
    } finally {
      await m.close();
      await slaveVolume.close();
    }
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    expect((await volumeFiles(slave)).get('new')?.equals(content)).toBe(true);
    const fsck = await run('node', [FSCK_BIN, '-c', slave], { timeoutMs: 180_000 });
    expect(fsck.code).toBe(0);
  }, 300_000);
});
