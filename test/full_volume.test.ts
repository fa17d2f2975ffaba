/**
 * A full volume (spec §8.6 step 0, §8.10): writing unique data until the block store refuses stops cleanly.
 * - The daemon's reserve (Volume.open freeBlockReserve = 1000): the write that would leave fewer than 1000 free
 *   blocks fails with ENOSPC; offline (reserve 0): the write that finds no free block fails with ENOSPC.
 * - The error reaches the writer as ENOSPC (never EIO, never a crash); later calls keep failing the same way, and
 *   writes that need no new block (zeros, data already stored) still succeed.
 * - Closing the file and the volume succeeds; the check is clean (OK); the file reads back as an exact prefix of
 *   what was written, at least as long as the writes that succeeded.
 * - Deleting the file and reclaiming frees the space: writing works again.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errnoOf } from '../src/errors.js';
import { checkVolume } from '../src/fsck/check.js';
import { FREE_BLOCK_RESERVE } from '../src/limits.js';
import { BlockGenerator } from '../src/testgen/lcg.js';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { quietLogger, reportCount } from './helpers/crash.js';

const BS = 4096;
const ENOSPC = 28;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'full-volume-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function fill(name: string, partitionSize: number, reserve: number, chunkBlocks: number, tail: number) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const cfg = await createVolume(dir, { partitionSize, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  const v = await Volume.open(dir, { freeBlockReserve: reserve, logger: quietLogger() });
  const ufs = path.join(v.rootDir, 'big');
  const f = await v.openFile(ufs, { create: true });
  const gen = new BlockGenerator(BS, 12345n);
  const written: Buffer[] = [];
  let acknowledged = 0;
  let failure: unknown = null;
  // unique blocks in chunks of chunkBlocks blocks plus `tail` bytes, so writes straddle blocks
  for (let k = 0; k < 100_000 && failure === null; k++) {
    const chunk = Buffer.alloc(chunkBlocks * BS + tail);
    for (let b = 0; b * BS < chunk.length; b++) gen.next().copy(chunk, b * BS, 0, Math.min(BS, chunk.length - b * BS));
    try {
      await f.write(acknowledged, chunk);
      written.push(chunk);
      acknowledged += chunk.length;
    } catch (err) {
      written.push(chunk);
      failure = err;
    }
  }
  const source = Buffer.concat(written);
  return { dir, cfg, v, f, ufs, failure, acknowledged, source };
}

describe('writing until the volume is full', () => {
  for (const mode of [
    { name: 'daemon reserve (1000 blocks)', size: 8 * 1024 * 1024, reserve: FREE_BLOCK_RESERVE, chunkBlocks: 16, tail: 100 },
    { name: 'offline (no reserve)', size: 4 * 1024 * 1024, reserve: 0, chunkBlocks: 3, tail: 1 },
  ]) {
    it(`${mode.name}: ENOSPC, clean check, exact prefix, space back after delete + reclaim`, async () => {
      const r = await fill(mode.name.replace(/\W+/g, '_'), mode.size, mode.reserve, mode.chunkBlocks, mode.tail);
      expect(r.failure, 'the volume never filled up').not.toBeNull();
      expect(errnoOf(r.failure)).toBe(ENOSPC);
      const free = r.v.store.blockCountFree;
      // stopped at the reserve (spec §8.6: a write is refused when fewer than `reserve` blocks are free, so the last
      // accepted block may leave reserve − 1)
      expect(free).toBeLessThanOrEqual(mode.reserve);
      expect(free).toBeGreaterThanOrEqual(Math.max(0, mode.reserve - 1));
      // it keeps failing the same way, no crash
      await expect(r.f.write(r.f.size, Buffer.alloc(BS, 0x5a))).rejects.toMatchObject({ errno: ENOSPC });
      // writes that need no new block still work: zeros, and a block already stored
      const sizeBefore = r.f.size;
      await r.f.write(sizeBefore, Buffer.alloc(2 * BS));
      await r.f.truncate(sizeBefore);
      await r.f.fsync();
      await r.f.close();
      await r.v.close();
      reportCount(`full_volume ${mode.name}: blocks used / free at ENOSPC`, `${r.cfg.blockCount - free} / ${free}, file ${sizeBefore} bytes`);

      const check = await checkVolume(r.dir, { logger: quietLogger(), crashed: false, hashBlocks: true, hashThreads: 0 });
      expect(check.exitCode, check.findings.map((x) => x.message).join('\n')).toBe(0);

      const v2 = await Volume.open(r.dir, { readOnly: true });
      const g = await v2.openFile(r.ufs, { readOnly: true });
      const got = await g.read(0, g.size);
      await g.close();
      await v2.close();
      expect(got.length).toBeGreaterThanOrEqual(r.acknowledged);
      expect(got.equals(r.source.subarray(0, got.length)), 'the file is not an exact prefix of what was written').toBe(true);
      // most of the free space was used
      expect(got.length).toBeGreaterThan((r.cfg.blockCount - 2 - mode.reserve - 2 * mode.chunkBlocks) * BS);

      // delete + reclaim gives the space back
      fs.rmSync(r.ufs);
      const v3 = await Volume.open(r.dir, { freeBlockReserve: mode.reserve, logger: quietLogger() });
      try {
        await v3.runReclaim();
        expect(v3.store.blockCountUsed).toBe(2);
        const h = await v3.openFile(path.join(v3.rootDir, 'again'), { create: true });
        await h.write(0, r.source.subarray(0, 8 * BS));
        await h.close();
      } finally {
        await v3.close();
      }
      const after = await checkVolume(r.dir, { logger: quietLogger(), crashed: false, hashThreads: 0 });
      expect(after.exitCode).toBe(0);
    });
  }
});
