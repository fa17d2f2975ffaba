/**
 * hashBlocks on its hash threads (store/hash_pool.ts, the compiled dist/ module: the threads need the compiled
 * hash_worker.js) against the same runs hashed inline: batches in shared buffers, blocks skipped inside a batch (the
 * gaps read to keep one pread), a batch cut short by the end of the block file, and batches spread over both threads
 * all give the same hashes in the same order. Needs dist/ (`npx tsc -p tsconfig.json`).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from './helpers/mount.js';

type HashPool = typeof import('../src/store/hash_pool.js');
type Devices = typeof import('../src/io/device.js');

const BS = 4096;
const BLOCKS = 3000;
const dir = fs.mkdtempSync(path.join(tmpdir(), 'hash-pool-workers-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('hashBlocks on hash threads', () => {
  it('gives the inline hashes, in order, with gaps, a short last batch and blocks past the end', async () => {
    const dist = path.join(REPO_DIR, 'dist');
    if (!fs.existsSync(path.join(dist, 'store', 'hash_worker.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
    const pool = (await import(path.join(dist, 'store', 'hash_pool.js'))) as HashPool;
    const { fileDevices } = (await import(path.join(dist, 'io', 'device.js'))) as Devices;
    const file = path.join(dir, 'blocks');
    fs.writeFileSync(file, randomBytes(BLOCKS * BS));
    // a gap of 3 (read and skipped), a long run over many batches, and a run that ends past the file
    const runs = [{ address: 2, count: 100 }, { address: 105, count: 5 }, { address: 200, count: 2500 }, { address: BLOCKS - 10, count: 20 }];
    const dev = await fileDevices.open(file, { readOnly: true });
    try {
      const hashAll = async (threads: number): Promise<{ got: Array<[number, string | null]>; r: unknown }> => {
        const got: Array<[number, string | null]> = [];
        const r = await pool.hashBlocks({
          device: dev, blockSize: BS, hashName: 'TIGER', runs, threads, totalBlocks: 2625,
          onBlock: (a, h) => got.push([a, h ? h.toString('hex') : null]),
        });
        return { got, r };
      };
      const inline = await hashAll(0);
      const threaded = await hashAll(2);
      expect(inline.got.length).toBe(2625);
      expect(inline.got.filter(([, h]) => h === null).map(([a]) => a)).toEqual(Array.from({ length: 10 }, (_, k) => BLOCKS + k));
      expect(threaded.got).toEqual(inline.got);
      expect(threaded.r).toEqual({ hashed: 2615, unreadable: 10, threads: 2 });
    } finally {
      await dev.close();
    }
  }, 60_000);
});
