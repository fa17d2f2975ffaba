/**
 * Repair under faults and simulated crashes, on volumes made by our own tools.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileDevices, type DeviceFactory } from '../io/device.js';
import { Logger } from '../util/log.js';
import { createVolume } from '../volume/create.js';
import { Volume } from '../volume/volume.js';
import { checkVolume } from './check.js';
import { repairVolume } from './repair.js';

const work = mkdtempSync(path.join(tmpdir(), 'fsck-repair-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const quiet = (): Logger => new Logger(() => undefined);
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
let n = 0;

const A = randomBytes(40 * 4096);
const B = randomBytes(30 * 4096 + 100);

/** A volume holding file a, a checkpoint, then file b (its blocks are "recently added"). */
async function volumeWithRecentFile(): Promise<{ dir: string; firstOfB: number }> {
  const dir = path.join(work, `v${n++}`);
  mkdirSync(dir);
  await createVolume(dir, { partitionSize: 4 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  const vol = await Volume.open(dir);
  const fa = await vol.openFile(vol.ufsPath('a'), { create: true });
  await fa.write(0, A);
  await fa.close();
  await vol.store.checkpoint();
  const firstOfB = vol.store.blockCountUsed;
  const fb = await vol.openFile(vol.ufsPath('b'), { create: true });
  await fb.write(0, B);
  await fb.close();
  await vol.close();
  return { dir, firstOfB };
}

/** The first `length` bytes of a file (default: all); a lost block in them fails the read (CORRUPT). */
async function readBack(dir: string, rel: string, length?: number): Promise<Buffer> {
  const vol = await Volume.open(dir, { readOnly: true });
  const f = await vol.openFile(vol.ufsPath(rel), { readOnly: true });
  try {
    return await f.read(0, length ?? f.size);
  } finally {
    await f.close();
    await vol.close();
  }
}

describe('crash recovery', () => {
  it('blocks never written (past the end of the block file) are lost, whatever the crash flag says', async () => {
    for (const crashed of [true, false]) {
      const { dir, firstOfB } = await volumeWithRecentFile();
      truncateSync(path.join(dir, 'ddfsblocks'), (firstOfB + 10) * 4096); // b's last 21 blocks never hit the disk
      expect((await checkVolume(dir, { logger: quiet(), crashed: true })).exitCode).toBe(1);
      const r = await repairVolume(dir, { logger: quiet(), crashed });
      expect(r.corruptedFiles).toBe(1);
      expect(readFileSync(path.join(dir, 'ddfsroot/.ddumbfs/corrupted.txt'), 'utf8')).toBe(` C   ${dir}/ddfsroot/b\n`);
      const c = await checkVolume(dir, { logger: quiet(), hashBlocks: true, crashed: true });
      expect(c.exitCode).toBe(2);
      expect(c.summary.filesLostBlocks).toBe(21);
      expect(md5(await readBack(dir, 'a'))).toBe(md5(A));
      await expect(readBack(dir, 'b')).rejects.toMatchObject({ code: 'CORRUPT', data: { lost: true, block: 10 } });
      const b = await readBack(dir, 'b', 10 * 4096);
      expect(b.equals(B.subarray(0, 10 * 4096))).toBe(true);
    }
  });

  it('a recently added block holding other data is found by re-hashing (crash flag) and its file marked', async () => {
    const { dir, firstOfB } = await volumeWithRecentFile();
    const fd = path.join(dir, 'ddfsblocks');
    const blocks = readFileSync(fd);
    randomBytes(4096).copy(blocks, (firstOfB + 3) * 4096);
    writeFileSync(fd, blocks);
    const r = await repairVolume(dir, { logger: quiet(), crashed: true });
    expect(r.corruptedFiles).toBe(1);
    expect(r.nodesFixed).toBe(1);
    const c = await checkVolume(dir, { logger: quiet(), hashBlocks: true, crashed: false });
    expect(c.exitCode).toBe(2);
    expect(c.summary.filesLostBlocks).toBe(1);
    expect(md5(await readBack(dir, 'a'))).toBe(md5(A));
  });
});

describe('a failing repair writes no index', () => {
  it('an unreadable file aborts before anything is freed', async () => {
    const { dir } = await volumeWithRecentFile();
    rmSync(path.join(dir, 'ddfsusedblocks'), { force: true });
    const before = readFileSync(path.join(dir, 'ddfsidx'));
    const failing: DeviceFactory = {
      ...fileDevices,
      open: async (p, o) => {
        if (String(p).endsWith('/ddfsroot/b')) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        return fileDevices.open(p, o);
      },
    };
    await expect(repairVolume(dir, { logger: quiet(), crashed: false, devices: failing })).rejects.toThrow(/repair aborted/);
    expect(readFileSync(path.join(dir, 'ddfsidx')).equals(before)).toBe(true);
    expect((await checkVolume(dir, { logger: quiet() })).exitCode).toBe(0);
  });
});

describe('files with an invalid header', () => {
  it('keep the blocks their node area still names (the data survives a header repair by hand)', async () => {
    const { dir } = await volumeWithRecentFile();
    const ufs = path.join(dir, 'ddfsroot/b');
    const original = readFileSync(ufs);
    const zapped = Buffer.from(original);
    zapped.write('garbage!', 0, 'latin1');
    writeFileSync(ufs, zapped);
    const usedBefore = (await checkVolume(dir, { logger: quiet(), crashed: false })).summary.usedBlocks;
    const r = await repairVolume(dir, { logger: quiet(), crashed: false });
    expect(r.corruptedFiles).toBe(1);
    expect(readFileSync(path.join(dir, 'ddfsroot/.ddumbfs/corrupted.txt'), 'utf8')).toBe(` H   ${ufs}\n`);
    const c = await checkVolume(dir, { logger: quiet(), crashed: false });
    expect(c.exitCode).toBe(1); // the file cannot be read: an error no repair can fix
    expect(c.summary.usedBlocks).toBe(usedBefore); // nothing freed
    expect(c.summary.inIndexNotInFiles).toBe(31);
    writeFileSync(ufs, original); // the administrator restores the header
    const c2 = await checkVolume(dir, { logger: quiet(), hashBlocks: true, crashed: false });
    expect(c2.exitCode).toBe(0);
    expect(md5(await readBack(dir, 'b'))).toBe(md5(B));
  });
});

describe('corrupted.txt', () => {
  it('is rolled over at each repair, keeping 5 backups', async () => {
    const { dir } = await volumeWithRecentFile();
    const list = path.join(dir, 'ddfsroot/.ddumbfs/corrupted.txt');
    for (let i = 0; i < 7; i++) await repairVolume(dir, { logger: quiet(), crashed: false });
    for (const s of ['', '.1', '.2', '.3', '.4', '.5']) expect(readFileSync(list + s, 'utf8')).toBe('');
    expect(() => readFileSync(`${list}.6`)).toThrow();
  });
});
