/**
 * st_blocks (what du shows) of a file on the mount counts the blocks it stores (issue 10 "Data a backup must
 * keep"): the holes of a sparse file cost nothing and are not counted; a dense file counts ceil(size/bs) blocks.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeVolume, mountVolume, sh, unmountAll } from './helpers/mount.js';

const BS = 4096;
const GiB = 1024 ** 3;
let work: string;
let mnt: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-du-'));
  const parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '64M' });
  await mountVolume(parent, mnt);
});

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

describe('st_blocks counts stored blocks', () => {
  it('a sparse file: 0 when all holes, one block per block written into it; du agrees', async () => {
    const p = join(mnt, 'sparse');
    writeFileSync(p, '');
    truncateSync(p, GiB);
    expect(statSync(p).size).toBe(GiB);
    expect(statSync(p).blocks).toBe(0);
    const fd = openSync(p, 'r+');
    writeSync(fd, randomBytes(BS), 0, BS, 512 * 1024 * 1024);
    writeSync(fd, randomBytes(2 * BS), 0, 2 * BS, GiB - 2 * BS);
    closeSync(fd);
    expect(statSync(p).blocks).toBe((3 * BS) / 512);
    const du = await sh('du', ['-k', p]);
    expect(du.stdout.split('\t')[0]).toBe(String((3 * BS) / 1024));
    expect((await sh('du', ['-k', '--apparent-size', p])).stdout.split('\t')[0]).toBe(String(GiB / 1024));
  });

  it('a dense file counts ceil(size/bs) blocks, a sparse one with many written runs counts each written block', () => {
    const dense = join(mnt, 'dense');
    writeFileSync(dense, randomBytes(20 * BS + 1));
    expect(statSync(dense).blocks).toBe((21 * BS) / 512);
    // 300 written blocks 200 blocks apart: 199 hole nodes (5,373 bytes of 27-byte nodes) hold a whole page of the
    // node file, which stays a hole on the host; the stat reads the 300 allocated extents and counts their nodes
    const p = join(mnt, 'spread');
    writeFileSync(p, '');
    truncateSync(p, 300 * 200 * BS);
    const fd = openSync(p, 'r+');
    for (let i = 0; i < 300; i++) writeSync(fd, randomBytes(BS), 0, BS, i * 200 * BS);
    closeSync(fd);
    expect(statSync(p).blocks).toBe((300 * BS) / 512);
  });
});
