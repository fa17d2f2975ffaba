/**
 * Bad input gets a one-line error naming the file, a non-zero exit, and leaves the volume untouched
 * (issue "1 of 2", Bad input). Each case damages a fresh volume, snapshots every file of the parent (path, size,
 * content hash, mtime), runs the command, and compares the snapshot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_DIR, makeVolume, mountVolume, sh, type MountedVolume } from './helpers/mount.js';
import { COMMAND_TIMEOUT_MS } from './helpers/timeouts.js';
import { snapshotTree } from './helpers/snapshot.js';

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);

let work: string;
let template: string;
let counter = 0;

/** A fresh copy of a small volume holding one file. */
async function freshVolume(): Promise<string> {
  const dir = path.join(work, `vol${counter++}`);
  await sh('cp', ['-a', template, dir]);
  return dir;
}

interface Case {
  name: string;
  damage: (parent: string) => Promise<void>;
  /** what the message must name: a file of the parent, or the parent itself when undefined */
  names?: string;
}

const cases: Case[] = [
  { name: 'no ddfs.cfg', damage: (p) => fsp.rm(path.join(p, 'ddfs.cfg')) },
  {
    name: 'a cfg with a missing key',
    damage: async (p) => {
      const f = path.join(p, 'ddfs.cfg');
      await fsp.writeFile(f, (await fsp.readFile(f, 'utf8')).replace(/^node_count:.*\n/m, ''));
    },
    names: 'ddfs.cfg',
  },
  {
    name: 'a cfg with an absurd block_size',
    damage: async (p) => {
      const f = path.join(p, 'ddfs.cfg');
      await fsp.writeFile(f, (await fsp.readFile(f, 'utf8')).replace(/^block_size:.*$/m, 'block_size: 3000'));
    },
    names: 'ddfs.cfg',
  },
  {
    name: 'a block file with a wrong magic',
    damage: async (p) => {
      const fh = await fsp.open(path.join(p, 'ddfsblocks'), 'r+');
      await fh.write(Buffer.from('XXXXXXXX'), 0, 8, 0);
      await fh.close();
    },
    names: 'ddfsblocks',
  },
  { name: 'a block file too short', damage: (p) => fsp.truncate(path.join(p, 'ddfsblocks'), 4), names: 'ddfsblocks' },
  {
    name: 'an index file with a wrong magic',
    damage: async (p) => {
      const fh = await fsp.open(path.join(p, 'ddfsidx'), 'r+');
      await fh.write(Buffer.from('XXXXXXXX'), 0, 8, 0);
      await fh.close();
    },
    names: 'ddfsidx',
  },
  { name: 'an index file too short', damage: (p) => fsp.truncate(path.join(p, 'ddfsidx'), 2048), names: 'ddfsidx' },
];

describe('bad input: one line naming the file, non-zero exit, nothing modified', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-bad-'));
    await fsp.chmod(work, 0o755);
    template = path.join(work, 'template');
    await fsp.mkdir(template);
    await makeVolume(template, { blockSize: '4k', size: '8M' });
    await fsp.writeFile(path.join(work, 'src.bin'), Buffer.alloc(10000, 7));
    const up = await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'src.bin'), path.join(template, 'ddfsroot', 'file.bin')]);
    expect(up.code).toBe(0);
  });

  afterAll(async () => {
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  for (const c of cases) {
    it(`${c.name}: ddumbfs, cpddumbfs and fsckddumbfs -c refuse it`, async () => {
      const parent = await freshVolume();
      await c.damage(parent);
      const before = await snapshotTree(parent);
      const mnt = path.join(work, `mnt${counter++}`);
      await fsp.mkdir(mnt);
      const runs = [
        await sh(process.execPath, [bin('ddumbfs'), mnt, '-o', `parent=${parent}`, '-f'], { timeoutMs: COMMAND_TIMEOUT_MS }),
        await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'src.bin'), path.join(parent, 'ddfsroot', 'new.bin')]),
        await sh(process.execPath, [bin('fsckddumbfs'), '-c', parent]),
      ];
      for (const r of runs) {
        expect(r.code, r.stderr).not.toBe(0);
        expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
        expect(r.stderr).toContain(c.names ?? path.basename(parent));
      }
      // ddumbfs and cpddumbfs say it in one line
      for (const r of runs.slice(0, 2)) expect(r.stderr.trim().split('\n').filter((l) => / ERR |^\w*ddumbfs: /.test(l)).length, r.stderr).toBeGreaterThanOrEqual(1);
      expect(runs[1]!.stderr.trim().split('\n')).toHaveLength(1);
      expect(await snapshotTree(parent)).toEqual(before);
    });
  }

  it('a UFS file with a bad header: cpddumbfs names it, exit 1, nothing modified', async () => {
    const parent = await freshVolume();
    const ufs = path.join(parent, 'ddfsroot', 'file.bin');
    const fh = await fsp.open(ufs, 'r+');
    await fh.write(Buffer.from('garbage!'), 0, 8, 0);
    await fh.close();
    const before = await snapshotTree(parent);
    const r = await sh(process.execPath, [bin('cpddumbfs'), ufs, path.join(work, 'out.bin')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('file.bin');
    expect(await snapshotTree(parent)).toEqual(before);
  });

  it('a mount point that does not exist', async () => {
    const parent = await freshVolume();
    const before = await snapshotTree(parent);
    const r = await sh(process.execPath, [bin('ddumbfs'), path.join(work, 'nowhere'), '-o', `parent=${parent}`, '-f']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('nowhere');
    expect(await snapshotTree(parent)).toEqual(before);
  });

  it('a volume already mounted', async () => {
    const parent = await freshVolume();
    const mnt1 = path.join(work, `mnt${counter++}`);
    const mnt2 = path.join(work, `mnt${counter++}`);
    await fsp.mkdir(mnt1);
    await fsp.mkdir(mnt2);
    let m: MountedVolume | null = await mountVolume(parent, mnt1);
    try {
      const before = await snapshotTree(parent);
      const runs = [
        await sh(process.execPath, [bin('ddumbfs'), mnt2, '-o', `parent=${parent}`, '-f']),
        await sh(process.execPath, [bin('cpddumbfs'), path.join(work, 'src.bin'), path.join(parent, 'ddfsroot', 'x.bin')]),
        await sh(process.execPath, [bin('fsckddumbfs'), '-n', parent]),
        await sh(process.execPath, [bin('mkddumbfs'), '-s', '8M', parent]),
      ];
      for (const r of runs) {
        expect(r.code, r.stderr).not.toBe(0);
        expect(r.stderr).toContain(parent);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
      const after = await snapshotTree(parent);
      // the running daemon may append to its own log; nothing else may change
      delete before['ddfsroot/.ddumbfs/ddumbfs.log'];
      delete after['ddfsroot/.ddumbfs/ddumbfs.log'];
      expect(after).toEqual(before);
    } finally {
      await m?.unmount();
      m = null;
    }
    expect(fs.existsSync(path.join(parent, '.autofsck'))).toBe(false);
  });
});
