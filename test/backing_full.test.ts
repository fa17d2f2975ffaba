/**
 * A full backing filesystem under a mounted volume (issue 6 §3 "Acknowledged writes become zeros on ENOSPC").
 * The parent lives on a 64 MiB tmpfs, the volume says 256 MiB: the tmpfs fills long before the block store does.
 * - Writes through the mount go on until the writer gets ENOSPC. Every block of what was acknowledged then reads
 *   back as what was written or fails with EIO (a lost block): never as other bytes (zeros).
 * - Every lost block is a lost node (address 1) that `fsckddumbfs -c` reports (exit 2, never OK) and that is listed in
 *   corrupted.txt; `cpddumbfs -c` refuses the file.
 * - statfs of the mount never reports more free blocks than the tmpfs can take.
 * - After rm + reclaim the freed blocks are reused: a new file writes and reads back.
 * Needs root (mount -t tmpfs) and /dev/fuse.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockGenerator } from '../src/testgen/lcg.js';
import { readCorruptedList, reportCount } from './helpers/crash.js';
import { REPO_DIR, makeVolume, mountVolume, sh, unmountAll, type MountedVolume } from './helpers/mount.js';

const BS = 4096;
/** The kernel hands the daemon writes of at most 128 KiB (max_write). */
const CHUNK_SIZE = 32 * BS;
const EIO = 5;
const TEST_TIMEOUT_MS = 15 * 60_000;

let work: string;
let tmpfsDir: string;
let parent: string;
let mnt: string;
let mounted = false;
let m: MountedVolume | null = null;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-backing-full-'));
  tmpfsDir = join(work, 'tmpfs');
  mkdirSync(tmpfsDir);
  const r = await sh('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', tmpfsDir]);
  if (r.code !== 0) throw new Error(`mount -t tmpfs failed: ${r.stderr}`);
  mounted = true;
  parent = join(tmpfsDir, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '256M' });
  m = await mountVolume(parent, mnt);
}, TEST_TIMEOUT_MS);

afterAll(async () => {
  await unmountAll();
  if (mounted) await sh('umount', [tmpfsDir]);
  rmSync(work, { recursive: true, force: true });
}, TEST_TIMEOUT_MS);

/** The bytes the generator gives for `count` blocks from `seed`. */
function generate(seed: bigint, count: number): Buffer {
  const gen = new BlockGenerator(BS, seed);
  const out = Buffer.alloc(count * BS);
  for (let b = 0; b < count; b++) gen.next().copy(out, b * BS);
  return out;
}

/** Write unique blocks to `file` in CHUNK_SIZE writes until one fails; the acknowledged bytes and the error. */
function writeUntilFull(file: string, seed: bigint, chunkCountMax: number): { written: Buffer; acknowledged: number; error: NodeJS.ErrnoException | null } {
  const gen = new BlockGenerator(BS, seed);
  const chunks: Buffer[] = [];
  let acknowledged = 0;
  let error: NodeJS.ErrnoException | null = null;
  const fd = openSync(file, 'w');
  try {
    for (let k = 0; k < chunkCountMax && error === null; k++) {
      const chunk = Buffer.alloc(CHUNK_SIZE);
      for (let b = 0; b < CHUNK_SIZE / BS; b++) gen.next().copy(chunk, b * BS);
      try {
        const n = writeSync(fd, chunk, 0, chunk.length, acknowledged);
        chunks.push(chunk.subarray(0, n));
        acknowledged += n;
      } catch (err) {
        error = err as NodeJS.ErrnoException;
      }
    }
    try {
      fsyncSync(fd);
    } catch {
      // the error of a write-behind may come back here too
    }
  } finally {
    try {
      closeSync(fd);
    } catch {
      // and here
    }
  }
  return { written: Buffer.concat(chunks), acknowledged, error };
}

/** Read `file` block by block: per block, its bytes or null when the read failed with EIO. */
function readBlocks(file: string, size: number): Array<Buffer | null> {
  const fd = openSync(file, 'r');
  const out: Array<Buffer | null> = [];
  try {
    for (let pos = 0; pos < size; pos += BS) {
      const b = Buffer.alloc(Math.min(BS, size - pos));
      try {
        const n = readSync(fd, b, 0, b.length, pos);
        out.push(b.subarray(0, n));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).errno !== -EIO && (err as NodeJS.ErrnoException).code !== 'EIO') throw err;
        out.push(null);
      }
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

describe('the backing filesystem fills up under a mounted volume', () => {
  let lostBlocks = 0;

  it('statfs of the fresh mount reports no more free blocks than the 64 MiB tmpfs can take', () => {
    const mine = statfsSync(mnt);
    const backing = statfsSync(tmpfsDir);
    expect(mine.bsize).toBe(BS);
    expect(mine.bavail).toBeGreaterThan(0);
    expect(mine.bavail).toBeLessThanOrEqual(Math.floor((backing.bavail * backing.bsize) / BS));
  });

  it('acknowledged writes read back as written or fail with EIO, never as other bytes', () => {
    const file = join(mnt, 'big');
    const r = writeUntilFull(file, 4242n, 4096);
    expect(r.error, 'the tmpfs never filled up').not.toBeNull();
    expect(r.error!.code).toBe('ENOSPC');
    const size = statSync(file).size;
    expect(size, 'acknowledged bytes vanished from the file size').toBeGreaterThanOrEqual(r.acknowledged);
    const blocks = readBlocks(file, r.acknowledged);
    let wrong = 0;
    for (let j = 0; j < blocks.length; j++) {
      const got = blocks[j]!;
      if (got === null) {
        lostBlocks++;
        continue;
      }
      if (!got.equals(r.written.subarray(j * BS, j * BS + got.length))) wrong++;
    }
    reportCount('backing_full: acknowledged bytes / blocks lost (EIO) / blocks with other bytes', `${r.acknowledged} / ${lostBlocks} / ${wrong}`);
    expect(wrong, 'acknowledged blocks read back as other bytes').toBe(0);
  }, TEST_TIMEOUT_MS);

  it('statfs never reports more free blocks than the backing filesystem can take', () => {
    const mine = statfsSync(mnt);
    const backing = statfsSync(tmpfsDir);
    const backingBlocks = Math.floor((backing.bavail * backing.bsize) / BS);
    expect(mine.bsize).toBe(BS);
    expect(mine.bavail).toBeLessThanOrEqual(backingBlocks);
    expect(mine.bfree).toBeLessThanOrEqual(backingBlocks);
  });

  it('lost blocks are reported: fsckddumbfs -c is not OK, corrupted.txt lists the file, cpddumbfs -c refuses it', async () => {
    await m!.unmount();
    try {
      await checkUnmounted();
    } finally {
      m = await mountVolume(parent, mnt);
    }
  }, TEST_TIMEOUT_MS);

  /** The checks of the unmounted volume (the next test needs the mount back, whatever they find). */
  async function checkUnmounted(): Promise<void> {
    const fsck = await sh(process.execPath, [join(REPO_DIR, 'bin', 'fsckddumbfs'), '-c', parent], { timeoutMs: 10 * 60_000 });
    reportCount('backing_full: fsckddumbfs -c exit code', fsck.code);
    const listed = readCorruptedList(parent);
    const out = join(work, 'big.out');
    const cp = await sh(process.execPath, [join(REPO_DIR, 'bin', 'cpddumbfs'), '-c', join(parent, 'ddfsroot', 'big'), out], { timeoutMs: 10 * 60_000 });
    if (lostBlocks > 0) {
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(2);
      expect(fsck.stdout + fsck.stderr).toMatch(/lost/i);
      expect([...listed.entries()].some(([p, flags]) => p.endsWith('/ddfsroot/big') && flags.includes('C')), [...listed.keys()].join(', ')).toBe(true);
      expect(cp.code).not.toBe(0);
    } else {
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
      expect(cp.code, cp.stderr).toBe(0);
    }
    rmSync(out, { force: true });
  }

  it('after rm + reclaim the freed blocks are reused: a new file is written and reads back', () => {
    rmSync(join(mnt, 'big'));
    const report = readFileSync(join(mnt, '.ddumbfs', 'reclaim'), 'utf8');
    expect(report).toMatch(/node_deleted/);
    const data = generate(777n, 2048); // 8 MiB of new unique blocks
    const file = join(mnt, 'again');
    const fd = openSync(file, 'w');
    try {
      for (let pos = 0; pos < data.length; pos += CHUNK_SIZE) writeSync(fd, data, pos, CHUNK_SIZE, pos);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file).equals(data)).toBe(true);
  }, TEST_TIMEOUT_MS);
});
