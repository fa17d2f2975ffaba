/**
 * Terabyte sparse files through a real mount (issue 9, memory item): `truncate -s 1T`, 1 MiB writes at 1.5–2 TiB
 * offsets read back, the daemon's RSS (VmRSS of its pid) stays far below what the node list of such a file would
 * take, a size beyond what the volume can address is EFBIG (never EIO), a write crossing that bound writes what fits,
 * and fsckddumbfs -c finds the volume clean after the unmount. qemu-img is used only when it is installed.
 */
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, REPO_DIR, sh, unmountAll, type MountedVolume } from './helpers/mount.js';
import { noiseBytes } from './helpers/bytes.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const BS = 4096;
const TiB = 2 ** 40;
const MiB = 2 ** 20;
/** The largest file on a 4 KiB volume: UFS_FILE_NODE_COUNT_MAX (2^32) blocks. */
const SIZE_MAX = 2 ** 32 * BS;
/** Far below the 14 GB node list of a 2 TiB file at 4 KiB blocks, far above what the daemon needs. */
const RSS_BOUND_BYTES = 400 * MiB;

let work: string;
let parent: string;
let mnt: string;
let m: MountedVolume;

function rssBytes(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  expect(kb, 'VmRSS of the daemon').toBeDefined();
  return Number(kb) * 1024;
}

function writeAt(fd: number, data: Buffer, position: number): void {
  expect(writeSync(fd, data, 0, data.length, position)).toBe(data.length);
}

function readAt(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  const n = readSync(fd, buf, 0, length, position);
  return buf.subarray(0, n);
}

function errnoCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
  return undefined;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-sparse-large-'));
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '128M' });
  m = await mountVolume(parent, mnt);
}, TEST_TIMEOUT_MS);

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
}, TEST_TIMEOUT_MS);

describe('terabyte sparse files through the mount', () => {
  it('truncate -s 1T, then 1 MiB writes up to 2 TiB read back, with the daemon RSS bounded', async () => {
    const p = join(mnt, 'disk.img');
    const t = await sh('truncate', ['-s', '1T', p]);
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    expect(statSync(p).size).toBe(TiB);
    const writes: Array<[number, Buffer]> = [];
    for (let i = 0; i < 16; i++) writes.push([TiB + i * (TiB / 16) + i * 4097, noiseBytes(200 + i, MiB)]);
    writes.push([2 * TiB - MiB, noiseBytes(300, MiB)]);
    writes.push([2 * TiB + 3 * BS + 17, noiseBytes(301, MiB)]);
    const fd = openSync(p, 'r+');
    try {
      for (const [offset, data] of writes) writeAt(fd, data, offset);
      expect(fstatSync(fd).size).toBe(2 * TiB + 3 * BS + 17 + MiB);
      for (const [offset, data] of writes) expect(readAt(fd, data.length, offset).equals(data), `bytes at ${offset}`).toBe(true);
      expect(readAt(fd, MiB, TiB / 2).equals(Buffer.alloc(MiB)), 'a hole reads as zeros').toBe(true);
      expect(readAt(fd, 10, 2 * TiB + 3 * BS + 17 + MiB).length, 'nothing past EOF').toBe(0);
    } finally {
      closeSync(fd);
    }
    expect(rssBytes(m.pid)).toBeLessThan(RSS_BOUND_BYTES);
    // the UFS file on the host: 16 + ceil(size/bs)·node_size bytes, sparse (only written nodes take space)
    const ufs = statSync(join(parent, 'ddfsroot', 'disk.img'));
    expect(ufs.size).toBeGreaterThan(2 * TiB / BS * 20);
    expect(ufs.blocks * 512).toBeLessThan(64 * MiB);
  }, TEST_TIMEOUT_MS);

  it('a size beyond what the volume can address is EFBIG, not EIO, and changes nothing; a write across it writes what fits', () => {
    const p = join(mnt, 'bound');
    const fd = openSync(p, 'w+');
    try {
      writeAt(fd, Buffer.from('hello'), 0);
      expect(errnoCode(() => truncateSync(p, 999_999_999_999_999))).toBe('EFBIG');
      expect(errnoCode(() => truncateSync(p, SIZE_MAX + 1))).toBe('EFBIG');
      expect(errnoCode(() => writeSync(fd, Buffer.from('x'), 0, 1, SIZE_MAX))).toBe('EFBIG');
      expect(errnoCode(() => writeSync(fd, Buffer.from('x'), 0, 1, 999_999_999_999_999))).toBe('EFBIG');
      expect(fstatSync(fd).size).toBe(5);
      expect(readAt(fd, 10, 0).toString()).toBe('hello');
      // POSIX: the part below the bound is written, the call says how much
      expect(writeSync(fd, Buffer.from('12345678'), 0, 8, SIZE_MAX - 3)).toBe(3);
      expect(fstatSync(fd).size).toBe(SIZE_MAX);
      expect(readAt(fd, 10, SIZE_MAX - 3).toString()).toBe('123');
      truncateSync(p, 5);
      expect(readAt(fd, 10, 0).toString()).toBe('hello');
    } finally {
      closeSync(fd);
    }
  }, TEST_TIMEOUT_MS);

  it('qemu-img create -f raw of 1T and 64 MiB written into it (only when qemu-img is installed)', async (ctx) => {
    const which = await sh('sh', ['-c', 'command -v qemu-img']);
    if (which.code !== 0) ctx.skip();
    const img = join(mnt, 'qemu.img');
    expect((await sh('qemu-img', ['create', '-f', 'raw', img, '1T'])).code).toBe(0);
    expect(statSync(img).size).toBe(TiB);
    const data = noiseBytes(400, 64 * MiB);
    const fd = openSync(img, 'r+');
    try {
      writeAt(fd, data, TiB / 2);
      expect(readAt(fd, data.length, TiB / 2).equals(data)).toBe(true);
    } finally {
      closeSync(fd);
    }
    expect(rssBytes(m.pid)).toBeLessThan(RSS_BOUND_BYTES);
  }, TEST_TIMEOUT_MS);

  it('after the unmount, fsckddumbfs -c finds the volume clean, sparse file included', async () => {
    // fsck reads a node list whole, holes too (14 GB for the 2 TiB file: minutes), so it checks a 16 GiB one
    rmSync(join(mnt, 'disk.img'));
    rmSync(join(mnt, 'qemu.img'), { force: true });
    const p = join(mnt, 'checked.img');
    writeFileSync(p, '');
    truncateSync(p, 16 * 2 ** 30);
    const fd = openSync(p, 'r+');
    try {
      writeAt(fd, noiseBytes(500, MiB), 5 * 2 ** 30 + 17);
      writeAt(fd, noiseBytes(501, MiB), 16 * 2 ** 30 - MiB);
      writeAt(fd, Buffer.alloc(MiB), 9 * 2 ** 30);
    } finally {
      closeSync(fd);
    }
    await m.unmount();
    const r = await sh(join(REPO_DIR, 'bin', 'fsckddumbfs'), ['-c', parent]);
    expect(r.stderr).not.toMatch(/ERR|WAR/);
    expect(r.stdout).not.toMatch(/ERR|WAR/);
    expect(r.code).toBe(0);
  }, TEST_TIMEOUT_MS);
});
