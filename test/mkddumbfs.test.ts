/**
 * mkddumbfs on a parent that already holds a volume, the modes of what it creates, and the free-space warning
 * (issue 6 §3: "mkddumbfs erases an existing volume without asking (rc 0)", "Permissions", and the `-s` larger than
 * the free space warning).
 *
 * - A parent holding ddfs.cfg, ddfsroot, the block file or the index file is refused with exit 1 and one line that
 *   names the path and `--overwrite`; every file of the parent stays as it was (path, size, hash, mtime). `-f` keeps
 *   its upstream meaning (no question for a block device) and does not erase. `--overwrite` makes a new, empty
 *   volume in its place.
 * - Modes as ddumbfs 1.1: block and index files 0600, ddfsroot and .ddumbfs 0700, ddfs.cfg and the special files
 *   0666 less the umask (022 here); a rebuild that recreates a missing index also makes it 0600.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_DIR, sh } from './helpers/mount.js';
import { snapshotTree } from './helpers/snapshot.js';

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);

/** Run a command of bin/ under umask 022, so the expected modes do not depend on the test runner's umask. */
function tool(name: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const quoted = [process.execPath, bin(name), ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  return sh('/bin/sh', ['-c', `umask 022; exec ${quoted}`], { timeoutMs: 60_000 });
}

const modeOf = (p: string): string => (fs.statSync(p).mode & 0o7777).toString(8);

let work: string;
let counter = 0;

async function freshDir(): Promise<string> {
  const d = path.join(work, `p${counter++}`);
  await fsp.mkdir(d);
  return d;
}

/** A volume holding one stored file, made by mkddumbfs and cpddumbfs. */
async function volumeWithAFile(): Promise<string> {
  const parent = await freshDir();
  expect((await tool('mkddumbfs', ['-s', '4M', '-B', '4k', parent])).code).toBe(0);
  const up = await tool('cpddumbfs', [path.join(work, 'src.bin'), path.join(parent, 'ddfsroot', 'keep.bin')]);
  expect(up.code, up.stderr).toBe(0);
  return parent;
}

function expectRefusedExisting(r: { code: number; stderr: string }, names: string): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toContain(names);
  expect(lines[0]).toContain('--overwrite');
}

beforeAll(async () => {
  work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-mkfs-'));
  await fsp.writeFile(path.join(work, 'src.bin'), Buffer.alloc(30000, 5));
});

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true });
});

describe('mkddumbfs refuses a parent that holds a volume', () => {
  it('a volume with a file: exit 1, one line naming ddfs.cfg and --overwrite, nothing changed; -f does not erase either', async () => {
    const parent = await volumeWithAFile();
    const before = await snapshotTree(parent);
    expectRefusedExisting(await tool('mkddumbfs', ['-s', '4M', '-B', '4k', parent]), path.join(parent, 'ddfs.cfg'));
    expectRefusedExisting(await tool('mkddumbfs', ['-f', '-s', '8M', '-B', '8k', parent]), path.join(parent, 'ddfs.cfg'));
    expect(await snapshotTree(parent)).toEqual(before);
    const down = await tool('cpddumbfs', [path.join(parent, 'ddfsroot', 'keep.bin'), path.join(work, `out${counter++}.bin`)]);
    expect(down.code, down.stderr).toBe(0);
  });

  for (const name of ['ddfs.cfg', 'ddfsroot', 'ddfsblocks', 'ddfsidx']) {
    it(`only ${name} left in the parent: refused, nothing changed`, async () => {
      const parent = await volumeWithAFile();
      for (const other of ['ddfs.cfg', 'ddfsroot', 'ddfsblocks', 'ddfsidx']) {
        if (other !== name) await fsp.rm(path.join(parent, other), { recursive: true });
      }
      const before = await snapshotTree(parent);
      expectRefusedExisting(await tool('mkddumbfs', ['-s', '4M', '-B', '4k', parent]), path.join(parent, name));
      expect(await snapshotTree(parent)).toEqual(before);
    });
  }

  it('a block file given with -b that exists elsewhere: refused, the file unchanged', async () => {
    const parent = await freshDir();
    const elsewhere = path.join(work, `blocks${counter++}`);
    await fsp.writeFile(elsewhere, 'precious');
    expectRefusedExisting(await tool('mkddumbfs', ['-s', '4M', '-B', '4k', '-b', elsewhere, parent]), elsewhere);
    expect(await fsp.readFile(elsewhere, 'utf8')).toBe('precious');
    expect(await fsp.readdir(parent)).toEqual([]);
  });

  it('--overwrite erases it and makes a new, empty volume that checks clean', async () => {
    const parent = await volumeWithAFile();
    const r = await tool('mkddumbfs', ['--overwrite', '-s', '8M', '-B', '8k', parent]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(path.join(parent, 'ddfsroot', 'keep.bin'))).toBe(false);
    expect(await fsp.readFile(path.join(parent, 'ddfs.cfg'), 'utf8')).toContain('block_size: 8192\n');
    const check = await tool('fsckddumbfs', ['-c', parent]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/Files\s*:\s*0\b/);
  });

  it('an empty parent, or one holding unrelated files, is not a volume', async () => {
    const empty = await freshDir();
    expect((await tool('mkddumbfs', ['-s', '4M', empty])).code).toBe(0);
    const other = await freshDir();
    await fsp.mkdir(path.join(other, 'lost+found'));
    await fsp.writeFile(path.join(other, 'README'), 'x');
    const r = await tool('mkddumbfs', ['-s', '4M', other]);
    expect(r.code, r.stderr).toBe(0);
    expect(await fsp.readFile(path.join(other, 'README'), 'utf8')).toBe('x');
  });

  it('--help documents --overwrite and the exit status', async () => {
    const r = await tool('mkddumbfs', ['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--overwrite');
    expect(r.stdout).toMatch(/1 +error \(the parent already holds a volume/);
    expect(r.stdout).toMatch(/2 +the user declined to initialise a block device/);
  });

  it('usage errors exit 1 as upstream (2 is kept for "the user declined"), with one line and nothing created', async () => {
    const parent = await freshDir();
    for (const args of [[parent], ['-s', '4M', '-B', '3000', parent], ['-s', '4M', '-H', 'MD5', parent], ['-s', '4M', '--bogus', parent], ['-s', '4M']]) {
      const r = await tool('mkddumbfs', args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(/^mkddumbfs: [^\n]+\n$/);
    }
    expect(await fsp.readdir(parent)).toEqual([]);
  });

  // a loop device (root only) is the block device whose initialisation the user declines
  const canLoop = process.getuid?.() === 0 && fs.existsSync('/dev/loop-control') && fs.existsSync('/usr/sbin/losetup');
  it.skipIf(!canLoop)('a declined block device exits 2 (upstream), with one line, and initialises nothing', async () => {
    const image = path.join(work, `loop${counter++}.img`);
    await fsp.writeFile(image, Buffer.alloc(0));
    await fsp.truncate(image, 4 * 1024 * 1024);
    const attach = await sh('losetup', ['-f', '--show', image], { timeoutMs: 60_000 });
    expect(attach.code, attach.stderr).toBe(0);
    const dev = attach.stdout.trim();
    try {
      const parent = await freshDir();
      // no terminal on stdin: the question cannot be answered, which declines
      const r = await tool('mkddumbfs', ['-b', dev, parent]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toBe(`mkddumbfs: ${dev}: not initialised (answer y, or give -f to initialise without asking)\n`);
      expect(await fsp.readdir(parent)).toEqual([]);
      expect((await fsp.readFile(image)).subarray(0, 8).equals(Buffer.alloc(8))).toBe(true);
    } finally {
      await sh('losetup', ['-d', dev], { timeoutMs: 60_000 });
    }
  });
});

describe('modes of a new volume (ddumbfs 1.1)', () => {
  it('block and index files 0600, ddfsroot and .ddumbfs 0700, ddfs.cfg and special files 0666 less the umask', async () => {
    const parent = await freshDir();
    expect((await tool('mkddumbfs', ['-s', '4M', '-B', '4k', parent])).code).toBe(0);
    expect(modeOf(path.join(parent, 'ddfsblocks'))).toBe('600');
    expect(modeOf(path.join(parent, 'ddfsidx'))).toBe('600');
    expect(modeOf(path.join(parent, 'ddfsroot'))).toBe('700');
    expect(modeOf(path.join(parent, 'ddfsroot', '.ddumbfs'))).toBe('700');
    expect(modeOf(path.join(parent, 'ddfs.cfg'))).toBe('644');
    for (const f of ['stats', 'stats0', 'reclaim', 'test']) expect(modeOf(path.join(parent, 'ddfsroot', '.ddumbfs', f))).toBe('644');
  });

  it('--overwrite over block and index files readable by others makes them private', async () => {
    const parent = await volumeWithAFile();
    await fsp.chmod(path.join(parent, 'ddfsblocks'), 0o644);
    await fsp.chmod(path.join(parent, 'ddfsidx'), 0o666);
    expect((await tool('mkddumbfs', ['--overwrite', '-s', '4M', '-B', '4k', parent])).code).toBe(0);
    expect(modeOf(path.join(parent, 'ddfsblocks'))).toBe('600');
    expect(modeOf(path.join(parent, 'ddfsidx'))).toBe('600');
    expect(modeOf(path.join(parent, 'ddfsroot'))).toBe('700');
  });

  it('fsckddumbfs -r recreates a missing index file with mode 0600', async () => {
    const parent = await volumeWithAFile();
    await fsp.rm(path.join(parent, 'ddfsidx'));
    const r = await tool('fsckddumbfs', ['-r', parent]);
    expect(r.code, r.stderr).toBe(0);
    expect(modeOf(path.join(parent, 'ddfsidx'))).toBe('600');
  });
});

describe('mkddumbfs -s larger than the free space', () => {
  it('warns on stderr, still creates the volume (the block file is sparse); no warning when it fits', async () => {
    const st = fs.statfsSync(work);
    const free = st.bavail * st.bsize;
    const blockSize = 2 * 1024 * 1024;
    const size = (Math.floor((2 * free) / blockSize) + 2) * blockSize;
    const parent = await freshDir();
    const r = await tool('mkddumbfs', ['-s', String(size), '-B', '2M', parent]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^mkddumbfs: warning: .*ddfsblocks.* bytes free/);
    expect(await fsp.readFile(path.join(parent, 'ddfs.cfg'), 'utf8')).toContain(`partition_size: ${size}\n`);
    expect(fs.statSync(path.join(parent, 'ddfsblocks')).size).toBe(2 * blockSize);
    const small = await freshDir();
    const ok = await tool('mkddumbfs', ['-s', '4M', small]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe('');
  });
});
