/**
 * The mount helper (issue 10 "mount like any filesystem"): `mount -t fuse.ddumbfs PARENT MNT -o opts`, an fstab line
 * (`PARENT MNT fuse.ddumbfs defaults,_netdev,noauto,x-systemd.automount 0 0`, through a temporary fstab with
 * `mount -T FILE MNT`) and `umount MNT`. mount(8) returns only once the volume is served, the mount(8)-only options
 * reach nobody who refuses them, and the daemon exits after `umount`.
 *
 * mount(8) runs its helpers without PATH (util-linux drops it), so a temporary bin dir on PATH is not seen: Debian's
 * mount.fuse then runs `sh -c 'ddumbfs PARENT MNT -o opts'` with sh's default PATH, which starts with
 * /usr/local/sbin. Each test works in a private mount namespace of its own (helpers/mount_namespace.ts: a `sleep`
 * started by `unshare -m`, every command through `nsenter`), where a temporary directory is bind-mounted over
 * /usr/local/sbin (empty on Debian) or the installed mount.fuse.ddumbfs over /sbin/mount.fuse: nothing is changed
 * outside it. The namespace's mounts and
 * files are read from outside through /proc/PID/mounts and /proc/PID/root. Teardown unmounts, then kills only the
 * daemons whose argv names this test's mount point, and the namespace holder. Needs dist/, root, /dev/fuse.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR, makeVolume, waitFor } from './helpers/mount.js';
import { daemonsOf, openMountNamespace, type MountNamespace } from './helpers/mount_namespace.js';
import { run } from './helpers/run.js';
import { EXIT_TIMEOUT_MS } from './helpers/timeouts.js';

let work: string;
let counter = 0;

const namespaces: MountNamespace[] = [];
const mountPoints: string[] = [];

/** A private mount namespace of this test, closed by afterEach. */
async function openNamespace(): Promise<MountNamespace> {
  const ns = await openMountNamespace();
  namespaces.push(ns);
  return ns;
}

async function freshVolume(): Promise<{ parent: string; mnt: string; dir: string }> {
  const dir = path.join(work, `case${counter++}`);
  const parent = path.join(dir, 'parent');
  const mnt = path.join(dir, 'mnt');
  await fsp.mkdir(parent, { recursive: true });
  await fsp.mkdir(mnt);
  await makeVolume(parent, { blockSize: '4k', size: '64m' });
  mountPoints.push(mnt);
  return { parent, mnt, dir };
}

/** `umount MNT` in the namespace, then wait for its daemon to exit. */
async function umountAndWait(ns: MountNamespace, mnt: string): Promise<void> {
  const u = await ns.run('umount', [mnt]);
  expect(u.stderr).toBe('');
  expect(u.code).toBe(0);
  expect(ns.mountAt(mnt)).toBeNull();
  expect(await waitFor(() => daemonsOf(mnt).length === 0, EXIT_TIMEOUT_MS)).toBe(true);
}

/** The mount and fstab cycle every helper set-up must pass. */
async function mountCycle(ns: MountNamespace): Promise<void> {
  const { parent, mnt, dir } = await freshVolume();
  // mount -t with mount(8)-only options mixed in
  const m = await ns.run('mount', ['-t', 'fuse.ddumbfs', parent, mnt, '-o', 'pool=2,_netdev,noauto,x-systemd.automount,nofail,noexec']);
  expect(m.code, m.stderr).toBe(0);
  // returned once served: the mount is there and answers at once
  expect(ns.mountAt(mnt)?.type).toBe('fuse.ddumbfs');
  expect(ns.mountAt(mnt)?.options.split(',')).toContain('noexec');
  await fsp.writeFile(ns.inside(path.join(mnt, 'hello.txt')), 'hello through mount -t\n');
  expect(fs.readdirSync(ns.inside(mnt))).toContain('hello.txt');
  expect(daemonsOf(mnt).length).toBe(1);
  await umountAndWait(ns, mnt);

  // a temporary fstab: mount -T FILE MNT
  const fstab = path.join(dir, 'fstab');
  await fsp.writeFile(fstab, `# test fstab\n${parent} ${mnt} fuse.ddumbfs defaults,_netdev,noauto,x-systemd.automount 0 0\n`);
  const f = await ns.run('mount', ['-T', fstab, mnt]);
  expect(f.code, f.stderr).toBe(0);
  expect(ns.mountAt(mnt)?.type).toBe('fuse.ddumbfs');
  expect(fs.readFileSync(ns.inside(path.join(mnt, 'hello.txt')), 'utf8')).toBe('hello through mount -t\n');
  await umountAndWait(ns, mnt);
  // nothing mounted here, outside the namespace
  expect(fs.readFileSync('/proc/self/mounts', 'utf8')).not.toContain(mnt);
}

describe('mount -t fuse.ddumbfs, fstab and umount', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-mount-helper-'));
  });
  afterEach(async () => {
    for (const ns of namespaces.splice(0)) await ns.close(mountPoints);
  });
  afterAll(async () => {
    await fsp.rm(work, { recursive: true, force: true });
  });

  it("through Debian's mount.fuse, which runs `ddumbfs PARENT MNT -o opts` found on sh's default PATH", async () => {
    const ns = await openNamespace();
    const bin = path.join(work, 'pathbin');
    await fsp.mkdir(bin);
    await fsp.symlink(path.join(REPO_DIR, 'bin', 'ddumbfs'), path.join(bin, 'ddumbfs'));
    const b = await ns.run('mount', ['--bind', bin, '/usr/local/sbin']);
    expect(b.code, b.stderr).toBe(0);
    await mountCycle(ns);
  });

  it('an fstab line with ro mounts a read-only parent (a read-only bind mount) and leaves it as it was', async () => {
    const ns = await openNamespace();
    const bin = path.join(work, 'pathbin-ro');
    await fsp.mkdir(bin);
    await fsp.symlink(path.join(REPO_DIR, 'bin', 'ddumbfs'), path.join(bin, 'ddumbfs'));
    expect((await ns.run('mount', ['--bind', bin, '/usr/local/sbin'])).code).toBe(0);
    const { parent, mnt, dir } = await freshVolume();
    const w = await ns.run('mount', ['-t', 'fuse.ddumbfs', parent, mnt]);
    expect(w.code, w.stderr).toBe(0);
    await fsp.writeFile(ns.inside(path.join(mnt, 'kept.txt')), 'kept\n');
    await umountAndWait(ns, mnt);
    const before = fs.readdirSync(parent).sort();

    const view = path.join(dir, 'view');
    await fsp.mkdir(view);
    expect((await ns.run('mount', ['--bind', parent, view])).code).toBe(0);
    expect((await ns.run('mount', ['-o', 'remount,bind,ro', view])).code).toBe(0);
    const fstab = path.join(dir, 'fstab');
    await fsp.writeFile(fstab, `${view} ${mnt} fuse.ddumbfs noauto,ro,_netdev 0 0\n`);
    const f = await ns.run('mount', ['-T', fstab, mnt]);
    expect(f.code, f.stderr).toBe(0);
    expect(ns.mountAt(mnt)?.options.split(',')).toContain('ro');
    expect(fs.readFileSync(ns.inside(path.join(mnt, 'kept.txt')), 'utf8')).toBe('kept\n');
    await expect(fsp.writeFile(ns.inside(path.join(mnt, 'kept.txt')), 'no')).rejects.toMatchObject({ code: 'EROFS' });
    await umountAndWait(ns, mnt);
    expect(fs.readdirSync(parent).sort()).toEqual(before);
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
  });

  it('through the installed mount.fuse.ddumbfs (install.sh), whatever PREFIX; `-o ro` and ddumbfs#PARENT too', async () => {
    const prefix = path.join(work, 'prefix');
    const sbin = path.join(work, 'sbin');
    const i = await run('sh', [path.join(REPO_DIR, 'scripts', 'install.sh'), `PREFIX=${prefix}`, `SBINDIR=${sbin}`], { encoding: 'utf8' });
    expect(i.code, i.stderr).toBe(0);
    const ns = await openNamespace();
    // mount(8) tries /sbin/mount.fuse.ddumbfs, then /sbin/mount.fuse with the same argv: the latter stands in for it
    const b = await ns.run('mount', ['--bind', path.join(sbin, 'mount.fuse.ddumbfs'), '/sbin/mount.fuse']);
    expect(b.code, b.stderr).toBe(0);
    await mountCycle(ns);

    const { parent, mnt } = await freshVolume();
    const m = await ns.run('mount', ['-t', 'fuse.ddumbfs', `ddumbfs#${parent}`, mnt, '-o', 'ro,_netdev']);
    expect(m.code, m.stderr).toBe(0);
    expect(ns.mountAt(mnt)?.options.split(',')).toContain('ro');
    await expect(fsp.writeFile(ns.inside(path.join(mnt, 'x')), 'no')).rejects.toMatchObject({ code: 'EROFS' });
    await umountAndWait(ns, mnt);

    const u = await run('sh', [path.join(REPO_DIR, 'scripts', 'install.sh'), '--uninstall', `PREFIX=${prefix}`, `SBINDIR=${sbin}`], { encoding: 'utf8' });
    expect(u.code, u.stderr).toBe(0);
  });
});
