/**
 * Mount / unmount lifecycle of the daemon (spec §2, §8.2): `.autofsck` while mounted and removed by every clean
 * unmount (fusermount -u, umount, SIGTERM, SIGINT), refusals that leave the volume untouched, the detached mode.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DDUMBFS_BIN, isMounted, makeVolume, mountVolume, sh, unmountAll, waitFor } from './helpers/mount.js';
import { COMMAND_TIMEOUT_MS, EXIT_TIMEOUT_MS } from './helpers/timeouts.js';

let work: string;
let parent: string;
let mnt: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-fs-life-'));
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: '4k', size: '16M' });
});

afterEach(async () => {
  await unmountAll();
  rmSync(join(parent, '.autofsck'), { force: true });
  rmSync(join(parent, '.rebuildfsck'), { force: true });
});

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

const autofsck = (): string => join(parent, '.autofsck');

/** Names and mtimes of the parent's entries: what a refused mount must not change. */
function snapshot(): string {
  return readdirSync(parent)
    .sort()
    .map((n) => `${n}:${statSync(join(parent, n)).mtimeMs}`)
    .join('\n');
}

async function daemon(args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await sh(process.execPath, [DDUMBFS_BIN, ...args], { timeoutMs: COMMAND_TIMEOUT_MS });
  return { code: r.code, stderr: r.stderr };
}

describe('clean unmounts remove .autofsck', () => {
  it('fusermount -u', async () => {
    const m = await mountVolume(parent, mnt);
    expect(existsSync(autofsck())).toBe(true);
    writeFileSync(join(mnt, 'a.txt'), 'data written before the unmount\n');
    expect((await sh('fusermount', ['-u', mnt])).code).toBe(0);
    expect(await m.exited).toBe(0);
    expect(existsSync(autofsck())).toBe(false);
    expect(isMounted(mnt)).toBe(false);
  });

  it('umount MNT: the daemon notices and exits by itself', async () => {
    const m = await mountVolume(parent, mnt);
    expect((await sh('umount', [mnt])).code).toBe(0);
    expect(await m.exited).toBe(0);
    expect(existsSync(autofsck())).toBe(false);
  });

  it('SIGTERM and SIGINT unmount, remove .autofsck, exit 0', async () => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const m = await mountVolume(parent, mnt);
      process.kill(m.pid, sig);
      expect(await m.exited).toBe(0);
      expect(isMounted(mnt)).toBe(false);
      expect(existsSync(autofsck())).toBe(false);
    }
  });

  it('data written in one mount is there in the next', async () => {
    const m = await mountVolume(parent, mnt);
    const got = (await sh('cat', [join(mnt, 'a.txt')])).stdout;
    expect(got).toBe('data written before the unmount\n');
    await m.unmount();
  });
});

describe('refused mounts change nothing', () => {
  it('a volume already mounted', async () => {
    const m = await mountVolume(parent, mnt);
    const other = join(work, 'mnt2');
    mkdirSync(other, { recursive: true });
    const before = snapshot();
    const r = await daemon([other, '-o', `parent=${parent}`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ddumbfs: .*already mounted/m);
    expect(snapshot()).toBe(before);
    await m.unmount();
  });

  it('.rebuildfsck present', async () => {
    writeFileSync(join(parent, '.rebuildfsck'), '');
    const before = snapshot();
    const r = await daemon([mnt, '-o', `parent=${parent}`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ddumbfs: .*\.rebuildfsck/m);
    expect(snapshot()).toBe(before);
    expect(existsSync(autofsck())).toBe(false);
  });

  it('a missing mount point, a mount point that is a file, not a volume', async () => {
    const before = snapshot();
    let r = await daemon([join(work, 'nope'), '-o', `parent=${parent}`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ddumbfs: .*nope/m);
    writeFileSync(join(work, 'file'), '');
    r = await daemon([join(work, 'file'), '-o', `parent=${parent}`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a directory/);
    r = await daemon([mnt, '-o', `parent=${work}/nowhere`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a ddumbfs volume/);
    expect(snapshot()).toBe(before);
  });

  it('usage errors exit 1 as upstream, with one line naming the problem', async () => {
    const noParent = await daemon([mnt]);
    expect(noParent.code).toBe(1);
    expect(noParent.stderr).toMatch(/^ddumbfs: missing -o parent=DIR\n$/);
    const none = await daemon([]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^ddumbfs: missing mount point MNT\n$/);
    const badPool = await daemon([mnt, '-o', `parent=${parent},pool=abc`]);
    expect(badPool.code).toBe(1);
    expect(badPool.stderr).toMatch(/^ddumbfs: [^\n]*pool[^\n]*\n$/);
  });
});

describe('crash marker and startup check', () => {
  it('.autofsck at mount: the repair runs before serving and a clean unmount removes the marker', async () => {
    writeFileSync(autofsck(), '');
    const m = await mountVolume(parent, mnt);
    await m.unmount();
    expect(await m.exited).toBe(0);
    expect(m.stderr()).toMatch(/INF check filesystem .* \(not cleanly unmounted\)/);
    expect(m.stderr()).toMatch(/Fixed:\s*0\s+Corrupted:\s*0/);
    expect(m.stderr()).toMatch(/INF filesystem .* checked/);
    expect(existsSync(autofsck())).toBe(false);
  });

  it('-o check on a clean volume runs the hook and still unmounts cleanly', async () => {
    const m = await mountVolume(parent, mnt, ['check']);
    await m.unmount();
    expect(m.stderr()).toMatch(/check filesystem/);
    expect(existsSync(autofsck())).toBe(false);
  });
});

describe('detached mode', () => {
  it('ddumbfs MNT -o parent=P returns once the mount is usable; fusermount -u stops the daemon', async () => {
    const r = await daemon([mnt, '-o', `parent=${parent}`]);
    expect(r.stderr).toMatch(/INF hash: TIGER/);
    expect(r.code).toBe(0);
    try {
      expect(isMounted(mnt)).toBe(true);
      expect((await sh('ls', [join(mnt, '.ddumbfs')])).stdout).toMatch(/stats/);
    } finally {
      await sh('fusermount', ['-u', mnt]);
    }
    expect(await waitFor(() => !existsSync(autofsck()), EXIT_TIMEOUT_MS)).toBe(true);
  });

  it('a refused detached mount prints the reason and exits 1', async () => {
    writeFileSync(join(parent, '.rebuildfsck'), '');
    const r = await daemon([mnt, '-o', `parent=${parent}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ddumbfs: .*\.rebuildfsck/m);
  });
});
