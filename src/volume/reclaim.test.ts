import { afterEach, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createVolume } from './create.js';
import { Volume } from './volume.js';
import { Logger } from '../util/log.js';

const quiet = new Logger(() => undefined);

async function tempVolume(): Promise<{ dir: string; vol: Volume }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-reclaim-'));
  await createVolume(dir, { partitionSize: 8 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  return { dir, vol: await Volume.open(dir, { logger: quiet }) };
}

describe('online reclaim (spec §9)', () => {
  const cleanups: string[] = [];
  afterEach(async () => {
    for (const d of cleanups.splice(0)) await fsp.rm(d, { recursive: true, force: true });
  });

  it('frees the blocks of deleted and overwritten files and keeps the rest', async () => {
    const { dir, vol } = await tempVolume();
    cleanups.push(dir);
    const a = randomBytes(10 * 4096);
    const b = randomBytes(6 * 4096 + 100);
    const shared = a.subarray(0, 2 * 4096);
    for (const [name, data] of [['a', a], ['b', Buffer.concat([shared, b])]] as const) {
      const f = await vol.openFile(path.join(vol.rootDir, name), { create: true, truncate: true });
      await f.write(0, data);
      await f.close();
    }
    const usedBefore = vol.store.blockCountUsed;
    expect(usedBefore).toBe(2 + 10 + 7);
    await fsp.unlink(path.join(vol.rootDir, 'a'));
    vol.mayFindFreeBlocks = true;
    const text = await vol.reclaimText();
    expect(text).toMatch(/^block_in_use\s+11$/m); // 0, 1, the 2 shared blocks and b's 7
    expect(text).toMatch(/^node_deleted\s+8$/m);
    expect(vol.store.blockCountUsed).toBe(usedBefore - 8);
    expect(vol.store.index.nodes.checkInvariants()).toEqual([]);
    const f = await vol.openFile(path.join(vol.rootDir, 'b'));
    expect((await f.read(0, 1 << 20)).equals(Buffer.concat([shared, b]))).toBe(true);
    await f.close();
    // the checkpoint written after the reclaim holds exactly the bitmap words
    const cp = await fsp.readFile(path.join(dir, 'ddfsusedblocks'));
    expect(cp.equals(vol.store.index.bitmap.bytes)).toBe(true);
    await vol.close();
  });

  it('logs its progress (files read, block references) as it walks, at most once per interval', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-reclaim-'));
    cleanups.push(dir);
    await createVolume(dir, { partitionSize: 8 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
    const lines: string[] = [];
    const vol = await Volume.open(dir, { logger: new Logger((l) => lines.push(l.toString())) });
    for (const name of ['a', 'b', 'c']) {
      const f = await vol.openFile(path.join(vol.rootDir, name), { create: true, truncate: true });
      await f.write(0, randomBytes(2 * 4096));
      await f.close();
    }
    await vol.runReclaim({ progressIntervalMs: 0 });
    const progress = lines.filter((l) => / INF reclaim: read /.test(l));
    expect(progress.map((l) => l.replace(/^\S+ INF /, '').replace(/, \d+ files\/s\n$/, ''))).toEqual([
      'reclaim: read 1 files, 0 block references', 'reclaim: read 2 files, 2 block references', 'reclaim: read 3 files, 4 block references',
    ]);
    lines.length = 0;
    await vol.runReclaim(); // the default interval: a short reclaim logs no progress
    expect(lines.filter((l) => / INF reclaim: read /.test(l))).toEqual([]);
    await vol.close();
  });

  it('never frees a block referenced by a write that runs during the walk', async () => {
    const { dir, vol } = await tempVolume();
    cleanups.push(dir);
    const data = randomBytes(64 * 4096);
    const f = await vol.openFile(path.join(vol.rootDir, 'live'), { create: true, truncate: true });
    const reclaimRun = vol.runReclaim();
    await f.write(0, data);
    await reclaimRun;
    await f.close();
    const g = await vol.openFile(path.join(vol.rootDir, 'live'));
    expect((await g.read(0, data.length)).equals(data)).toBe(true);
    await g.close();
    expect(vol.store.blockCountUsed).toBe(2 + 64);
    await vol.close();
  });
});
