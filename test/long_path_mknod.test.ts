/**
 * Issue 10, "Paths between 4,090 and 4,095 bytes" (pjdfstest mknod/03 and mkfifo/03 at the mount root): mkfifo,
 * mknod of a FIFO and of a character device, and `touch -h` (utimensat) of a path of 4,090 to 4,095 bytes relative
 * to the mount root succeed, and the node lands in ddfsroot with its type; a path of 4,096 bytes (PATH_MAX, which
 * counts the NUL) fails with ENAMETOOLONG ("File name too long").
 *
 * The 4,095-byte case needs the fuse-native patch (patches/fuse-native+2.2.6.patch) as fixed for issue 10: the host
 * mknod and utimensat helpers held a path in a PATH_MAX buffer and refused 4,095 bytes, one too early. A tree built
 * before that fix fails it: rebuild fuse-native (scripts/setup.sh) after pulling the patch.
 *
 * The commands run in child processes whose cwd is the mount root (an absolute path that long would exceed
 * PATH_MAX); the daemon is another child (helpers/mount.ts). Needs root (mknod of a character device, /dev/fuse).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, unmountAll, type MountedVolume } from './helpers/mount.js';
import { run } from './helpers/run.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'long-path-mknod-'));
let vol: MountedVolume;

/** 15 directories of 255 bytes: 3,840 bytes with their slashes; a name of 250..256 bytes makes 4,090..4,096. */
const DIRS = `${Array.from({ length: 15 }, () => 'd'.repeat(255)).join('/')}/`;
const pathOfLength = (length: number): string => `${DIRS}${'f'.repeat(length - DIRS.length)}`;

/** Run `cmd args` with cwd `cwd`; code, and stdout/stderr as text. */
async function at(cwd: string, cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await run(cmd, args, { cwd, encoding: 'utf8' });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  const parent = path.join(work, 'parent');
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(parent);
  fs.mkdirSync(mnt);
  await makeVolume(parent, { size: '16M', blockSize: '4k' });
  vol = await mountVolume(parent, mnt);
  const made = await at(mnt, 'mkdir', ['-p', DIRS]);
  expect(made.code, made.stderr).toBe(0);
});

afterAll(async () => {
  await unmountAll();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('mknod and mkfifo of paths of 4,090 to 4,096 bytes at the mount root', () => {
  const makers: Array<[string, string, string[], string]> = [
    ['mkfifo', 'mkfifo', [], 'fifo'],
    ['mknod p', 'mknod', ['p'], 'fifo'],
    ['mknod c 1 3', 'mknod', ['c', '1', '3'], 'character special file 1:3'],
  ];

  for (const length of [4090, 4091, 4092, 4093, 4094, 4095]) {
    it(`${length} bytes: created with its type, in the mount and in ddfsroot; touch -h sets its mtime`, async () => {
      const p = pathOfLength(length);
      expect(Buffer.byteLength(p)).toBe(length);
      const root = path.join(vol.parentDir, 'ddfsroot');
      for (const [label, cmd, extra, type] of makers) {
        const made = await at(vol.mountDir, cmd, [p, ...extra]);
        const hint = length === 4095 ? ' (a fuse-native built before the fix of its patch: rebuild it, scripts/setup.sh)' : '';
        expect(made.code, `${label}: ${made.stderr.slice(-60)}${hint}`).toBe(0);
        const seen = await at(vol.mountDir, 'stat', ['-c', '%F %t:%T', p]);
        expect(seen.code, `${label}: ${seen.stderr.slice(-60)}`).toBe(0);
        expect(seen.stdout.trim().replace(/ 0:0$/, ''), label).toBe(type);
        const stored = await at(root, 'stat', ['-c', '%F %t:%T', p]);
        expect(stored.stdout.trim().replace(/ 0:0$/, ''), `${label} in ddfsroot: ${stored.stderr.slice(-60)}`).toBe(type);
        const touched = await at(vol.mountDir, 'touch', ['-h', '-d', '@1000000000', p]);
        expect(touched.code, `${label} touch -h: ${touched.stderr.slice(-60)}`).toBe(0);
        expect((await at(vol.mountDir, 'stat', ['-c', '%Y', p])).stdout.trim(), label).toBe('1000000000');
        const removed = await at(vol.mountDir, 'rm', [p]);
        expect(removed.code, `${label} rm: ${removed.stderr.slice(-60)}`).toBe(0);
      }
    });
  }

  it('4,096 bytes (PATH_MAX with the NUL): ENAMETOOLONG, nothing created', async () => {
    const p = pathOfLength(4096);
    for (const [label, cmd, extra] of makers) {
      const made = await at(vol.mountDir, cmd, [p, ...extra]);
      expect(made.code, label).not.toBe(0);
      expect(made.stderr, label).toMatch(/File name too long/);
    }
    const names = await at(vol.mountDir, 'ls', ['-A', DIRS]);
    expect(names.code, names.stderr).toBe(0);
    expect(names.stdout).toBe('');
  });
});
