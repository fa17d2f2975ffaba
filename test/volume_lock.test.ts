/**
 * The volume lock through the commands (issue 7 item 0): while a process holds the lock of a volume, every tool
 * that writes it (ddumbfs, fsckddumbfs repairs, cpddumbfs upload, alterddumbfs, mkddumbfs) exits 1 with one line
 * naming the holder's pid and leaves the volume as it was; readers (fsckddumbfs -c, cpddumbfs download) run as
 * before. The daemon holds the lock for its whole mount, also against a path that reaches the parent through a bind
 * mount (which the mount table does not show as mounted), and a kill -9 of the daemon leaves a stale lock file that
 * does not block the next mount. Needs dist/ (npx tsc -p tsconfig.json) and root for FUSE and mount --bind.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseLockRecord } from '../src/format/lock_record.js';
import { REPO_DIR, isMounted, makeVolume, mountVolume, sh, unmountAll, waitFor } from './helpers/mount.js';
import { snapshotTree } from './helpers/snapshot.js';
import { kill9, killLockHolders, startLockHolder } from './helpers/lock_holder.js';

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);

let work: string;
let template: string;
let counter = 0;
const binds: string[] = [];
const data = Buffer.alloc(10000, 7);

async function freshVolume(): Promise<string> {
  const dir = path.join(work, `vol${counter++}`);
  expect((await sh('cp', ['-a', template, dir])).code).toBe(0);
  return dir;
}

async function freshDir(): Promise<string> {
  const dir = path.join(work, `dir${counter++}`);
  await fsp.mkdir(dir);
  return dir;
}

function lockRecordOf(parent: string): ReturnType<typeof parseLockRecord> {
  const p = path.join(parent, 'ddfs.lock');
  return fs.existsSync(p) ? parseLockRecord(fs.readFileSync(p, 'latin1')) : null;
}

describe('volume lock: the commands', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-lockcli-'));
    await fsp.chmod(work, 0o755);
    template = path.join(work, 'template');
    await fsp.mkdir(template);
    await makeVolume(template, { blockSize: '4k', size: '8M' });
    await fsp.writeFile(path.join(work, 'src.bin'), data);
    const up = await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'src.bin'), path.join(template, 'ddfsroot', 'file.bin')]);
    expect(up.code, up.stderr).toBe(0);
  });

  afterEach(async () => {
    await killLockHolders();
    await unmountAll();
    for (const b of binds.splice(0)) if (isMounted(b)) await sh('umount', [b]);
  });

  afterAll(async () => {
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('a held lock refuses every writing tool with exit 1 and one line naming the pid; readers run; nothing modified', async () => {
    const parent = await freshVolume();
    const holder = await startLockHolder(parent);
    const before = await snapshotTree(parent);
    const mnt = await freshDir();
    const writers: Array<[string, string[]]> = [
      ['ddumbfs', [mnt, '-o', `parent=${parent}`, '-f']],
      ['ddumbfs', [mnt, '-o', `parent=${parent},ro`, '-f']],
      ['cpddumbfs', [path.join(work, 'src.bin'), path.join(parent, 'ddfsroot', 'new.bin')]],
      ['fsckddumbfs', ['-n', parent]],
      ['fsckddumbfs', ['-r', parent]],
      ['alterddumbfs', ['-n', '1', '-i', '1', parent]],
      ['mkddumbfs', ['-s', '8M', '-B', '4k', parent]],
    ];
    for (const [tool, args] of writers) {
      const r = await sh(process.execPath, [bin(tool), ...args], { timeoutMs: 30_000 });
      const what = `${tool} ${args.join(' ')}`;
      expect(r.code, `${what}: ${r.stderr}`).toBe(1);
      expect(r.stderr, what).not.toMatch(/\n\s+at /);
      const lines = r.stderr.trim().split('\n');
      expect(lines, what).toHaveLength(1);
      expect(lines[0], what).toContain(`holder (pid ${holder.pid}`);
      expect(lines[0], what).toContain(parent);
    }
    expect(isMounted(mnt)).toBe(false);
    // readers are not refused: a check warns that the volume is in use, a download copies the file
    const check = await sh(process.execPath, [bin('fsckddumbfs'), '-c', parent]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stderr).toContain(`volume in use by holder (pid ${holder.pid})`);
    const out = path.join(work, `out${counter++}.bin`);
    const down = await sh(process.execPath, [bin('cpddumbfs'), path.join(parent, 'ddfsroot', 'file.bin'), out]);
    expect(down.code, down.stderr).toBe(0);
    expect(fs.readFileSync(out).equals(data)).toBe(true);
    expect(await snapshotTree(parent)).toEqual(before);
    // once the holder is gone (kill -9: no release), a repair runs and leaves no lock file behind
    await kill9(holder);
    const repair = await sh(process.execPath, [bin('fsckddumbfs'), '-n', parent]);
    expect(repair.code, repair.stderr).toBe(0);
    expect(fs.existsSync(path.join(parent, 'ddfs.lock'))).toBe(false);
  });

  it('the daemon holds the lock for the whole mount, also against a bind-mounted path to the parent', async () => {
    const parent = await freshVolume();
    const view = await freshDir();
    expect((await sh('mount', ['--bind', parent, view])).code).toBe(0);
    binds.push(view);
    const m = await mountVolume(parent, await freshDir());
    expect(lockRecordOf(parent)).toMatchObject({ tool: 'ddumbfs', pid: m.pid });
    // the mount table names `parent`, not `view`: only the lock stands between these tools and the mounted volume
    const before = await snapshotTree(parent);
    for (const args of [['-n', view], ['-r', view]]) {
      const r = await sh(process.execPath, [bin('fsckddumbfs'), ...args]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`ddumbfs (pid ${m.pid}`);
    }
    const up = await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'src.bin'), path.join(view, 'ddfsroot', 'x.bin')]);
    expect(up.code, up.stderr).toBe(1);
    expect(up.stderr).toContain(`ddumbfs (pid ${m.pid}`);
    const after = await snapshotTree(parent);
    delete before['ddfsroot/.ddumbfs/ddumbfs.log'];
    delete after['ddfsroot/.ddumbfs/ddumbfs.log'];
    expect(after).toEqual(before);
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(fs.existsSync(path.join(parent, 'ddfs.lock'))).toBe(false);
  });

  it('kill -9 of the daemon leaves a stale lock file that does not block the next mount', async () => {
    const parent = await freshVolume();
    const mnt = await freshDir();
    const m = await mountVolume(parent, mnt);
    expect(lockRecordOf(parent)?.pid).toBe(m.pid);
    process.kill(m.pid, 'SIGKILL');
    await m.exited;
    // the dead daemon's mount stays until unmounted; its lock file stays, naming a dead process
    await sh('umount', ['-l', mnt]);
    expect(await waitFor(() => !isMounted(mnt), 10_000)).toBe(true);
    expect(lockRecordOf(parent)?.pid).toBe(m.pid);
    const again = await mountVolume(parent, mnt);
    expect(lockRecordOf(parent)?.pid).toBe(again.pid);
    expect(fs.readFileSync(path.join(mnt, 'file.bin')).equals(data)).toBe(true);
    await again.unmount();
    expect(await again.exited).toBe(0);
    expect(fs.existsSync(path.join(parent, 'ddfs.lock'))).toBe(false);
  });
});
