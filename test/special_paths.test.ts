/**
 * Issue 6 §3, "symlinks in the parent are followed when writing", and the daemon's side of "permissions", with the
 * real commands (node bin/…, compiled dist/ — run `npx tsc -p tsconfig.json` first) and a real mount.
 *
 * Symlinks: a marker, a checkpoint, the special directory `ddfsroot/.ddumbfs` or one of its files replaced by a
 * symlink to a file (or directory) outside the volume. `fsckddumbfs -n`, `fsckddumbfs -c` and a mount must each
 * refuse with one line naming the path, leave the outside file byte-identical and write nothing to the volume.
 * (Before the fix: fsck -n truncated an outside `.autofsck` target and wrote the checkpoint through
 * `ddfsusedblocks.0`; the mount did the same and wrote its log through a symlinked `.ddumbfs`.)
 *
 * Permissions (default_permissions: the modes and owners of the UFS files of ddfsroot/.ddumbfs decide): as uid
 * 65534, opening `/.ddumbfs/reclaim` or `/.ddumbfs/stats0` fails with EACCES (so it cannot start a reclaim or reset
 * the counters), `/.ddumbfs/stats` stays readable; ddumbfs.log is 0600 even when an older version left it 0666.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { REPO_DIR, mountVolume, sh, unmountAll } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { snapshotTree } from './helpers/snapshot.js';

const FSCK_BIN = path.join(REPO_DIR, 'bin', 'fsckddumbfs');
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'special-paths-'));
fs.chmodSync(work, 0o711); // uid 65534 must reach the mount points inside
let count = 0;

beforeAll(() => {
  if (!fs.existsSync(path.join(REPO_DIR, 'dist', 'cli', 'fsckddumbfs.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
});
afterAll(async () => {
  await unmountAll();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A fresh volume with one file and a checkpoint, as a daemon leaves it after a clean unmount. */
async function makeVolume(): Promise<string> {
  const parent = path.join(work, `vol-${count++}`);
  fs.mkdirSync(parent);
  await createVolume(parent, { partitionSize: 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  const v = await Volume.open(parent);
  const f = await v.openFile(v.ufsPath('/file'), { create: true, mode: 0o644 });
  await f.write(0, Buffer.alloc(3 * 4096, 7));
  await f.close();
  await v.store.checkpoint();
  await v.close();
  return parent;
}

/** Replace `rel` in the volume by a symlink to a new outside file (or directory); returns the outside path. */
function plantSymlink(parent: string, rel: string, kind: 'file' | 'dir'): string {
  const outside = path.join(work, `outside-${count++}`);
  if (kind === 'file') fs.writeFileSync(outside, 'precious bytes that are not the volume\'s\n');
  else {
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'corrupted.txt'), 'not yours\n');
  }
  fs.rmSync(path.join(parent, rel), { recursive: true, force: true });
  fs.symlinkSync(outside, path.join(parent, rel));
  return outside;
}

/** Run fsckddumbfs (asynchronously: helpers/run.ts). */
async function fsck(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run(process.execPath, [FSCK_BIN, ...args], { encoding: 'utf8', timeoutMs: 120_000 });
  return { status: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Mount and unmount at once; returns whether it mounted and what the daemon said. */
async function tryMount(parent: string): Promise<{ mounted: boolean; message: string }> {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  try {
    const m = await mountVolume(parent, mnt);
    await m.unmount();
    return { mounted: true, message: m.stderr() };
  } catch (err) {
    return { mounted: false, message: (err as Error).message };
  }
}

const CASES: Array<{ rel: string; kind: 'file' | 'dir' }> = [
  { rel: '.autofsck', kind: 'file' },
  { rel: 'ddfsusedblocks.0', kind: 'file' },
  { rel: 'ddfsusedblocks', kind: 'file' },
  { rel: '.rebuildfsck', kind: 'file' },
  { rel: 'ddfsroot/.ddumbfs', kind: 'file' },
  { rel: 'ddfsroot/.ddumbfs', kind: 'dir' },
  { rel: 'ddfsroot/.ddumbfs/corrupted.txt', kind: 'file' },
  { rel: 'ddfsroot/.ddumbfs/ddumbfs.log', kind: 'file' },
  { rel: 'ddfsroot/.ddumbfs/stats', kind: 'file' },
];

describe('a special path that is a symlink refuses the volume; nothing outside or inside is written', () => {
  for (const { rel, kind } of CASES) {
    for (const tool of ['fsckddumbfs -n', 'fsckddumbfs -c', 'mount'] as const) {
      it(`${rel} -> outside ${kind}: ${tool}`, { timeout: 120_000 }, async () => {
        const parent = await makeVolume();
        const outside = plantSymlink(parent, rel, kind);
        const outsideBefore = (await snapshotTree(path.dirname(outside)))[path.basename(outside)];
        const outsideTree = kind === 'dir' ? await snapshotTree(outside) : null;
        const before = await snapshotTree(parent);
        let message: string;
        if (tool === 'mount') {
          const r = await tryMount(parent);
          expect(r.mounted, r.message).toBe(false);
          message = r.message;
        } else {
          const r = await fsck(tool.endsWith('-n') ? '-n' : '-c', parent);
          expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(1);
          message = r.stderr;
          // one line, naming the path, no stack trace
          const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
          expect(lines, r.stderr).toHaveLength(1);
          expect(r.stderr).not.toMatch(/\n\s+at /);
        }
        expect(message).toContain(`${path.join(parent, rel)}: is a symbolic link`);
        expect((await snapshotTree(path.dirname(outside)))[path.basename(outside)]).toBe(outsideBefore);
        if (outsideTree) expect(await snapshotTree(outside)).toEqual(outsideTree);
        expect(await snapshotTree(parent)).toEqual(before);
      });
    }
  }
});

describe('special files through the mount are root-only where they act; the log is private', () => {
  it('uid 65534: reclaim and stats0 are EACCES, stats is readable; ddumbfs.log is 0600 even if it was 0666', { timeout: 120_000 }, async () => {
    const parent = await makeVolume();
    const special = path.join(parent, 'ddfsroot', '.ddumbfs');
    // what an older version left: world-writable special files and log
    for (const name of ['stats', 'stats0', 'reclaim', 'test']) fs.chmodSync(path.join(special, name), 0o666);
    fs.writeFileSync(path.join(special, 'ddumbfs.log'), 'old line\n', { mode: 0o666 });
    fs.chmodSync(path.join(special, 'ddumbfs.log'), 0o666);
    // mkddumbfs makes ddfsroot and .ddumbfs 0700 (as ddumbfs 1.1): open them, as an admin sharing the volume would,
    // so that what is tested here is the special files' own modes
    fs.chmodSync(path.join(parent, 'ddfsroot'), 0o755);
    fs.chmodSync(special, 0o755);
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    fs.chmodSync(mnt, 0o755);
    const m = await mountVolume(parent, mnt);
    try {
      for (const name of ['reclaim', 'stats0', 'test']) {
        const r = await sh('setpriv', [...NOBODY, 'cat', path.join(mnt, '.ddumbfs', name)]);
        expect(r.code, `${name}: ${r.stdout}${r.stderr}`).not.toBe(0);
        expect(r.stderr, name).toMatch(/Permission denied/);
      }
      const stats = await sh('setpriv', [...NOBODY, 'cat', path.join(mnt, '.ddumbfs', 'stats')]);
      expect(stats.stderr).toBe('');
      expect(stats.code).toBe(0);
      expect(stats.stdout.length).toBeGreaterThan(0);
      // root still can
      const reclaim = await sh('cat', [path.join(mnt, '.ddumbfs', 'reclaim')]);
      expect(reclaim.code, reclaim.stderr).toBe(0);
      const log = fs.statSync(path.join(special, 'ddumbfs.log'));
      expect((log.mode & 0o777).toString(8)).toBe('600');
      expect(fs.readFileSync(path.join(special, 'ddumbfs.log'), 'utf8')).toMatch(/^old line\n.+/);
      for (const name of ['reclaim', 'stats0', 'test']) {
        const st = fs.statSync(path.join(special, name));
        expect({ name, mode: (st.mode & 0o777).toString(8), uid: st.uid }).toEqual({ name, mode: '600', uid: 0 });
      }
      expect((fs.statSync(path.join(special, 'stats')).mode & 0o777).toString(8)).toBe('644');
    } finally {
      await m.unmount();
    }
  });

  it('a log created by the daemon is 0600', { timeout: 120_000 }, async () => {
    const parent = await makeVolume();
    const logPath = path.join(parent, 'ddfsroot', '.ddumbfs', 'ddumbfs.log');
    fs.rmSync(logPath, { force: true });
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    const m = await mountVolume(parent, mnt);
    await m.unmount();
    expect((fs.statSync(logPath).mode & 0o777).toString(8)).toBe('600');
    expect(fs.statSync(logPath).size).toBeGreaterThan(0);
  });
});
