import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileDevices, type Device } from '../io/device.js';
import { createHasher } from './hash.js';
import { hashBlocks } from './hash_pool.js';

const dir = mkdtempSync(path.join(tmpdir(), 'hash-pool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BS = 4096;
const blocks = randomBytes(40 * BS);
const file = path.join(dir, 'blocks');
writeFileSync(file, blocks);
const tiger = createHasher('TIGER');
const hashOf = (a: number): string => tiger.hash(blocks.subarray(a * BS, (a + 1) * BS)).toString('hex');

/** A device whose reads fail with EIO when they touch block `bad`. */
function faulty(dev: Device, bad: number): Device {
  return {
    path: dev.path,
    read: async (buf, off, len, pos) => {
      if (pos < (bad + 1) * BS && pos + len > bad * BS) throw Object.assign(new Error('EIO'), { code: 'EIO' });
      return dev.read(buf, off, len, pos);
    },
    write: (b, p) => dev.write(b, p), sync: () => dev.sync(), size: () => dev.size(), truncate: (s) => dev.truncate(s), close: () => dev.close(),
  };
}

async function run(dev: Device, runs: Array<{ address: number; count: number }>) {
  const got: Array<[number, string | null]> = [];
  const r = await hashBlocks({
    device: dev, blockSize: BS, hashName: 'TIGER', runs, threads: 0,
    onBlock: (a, h) => got.push([a, h ? h.toString('hex') : null]),
  });
  return { got, r };
}

describe('hashBlocks', () => {
  it('delivers every block of the runs in order, with small gaps read but not delivered', async () => {
    const dev = await fileDevices.open(file, { readOnly: true });
    try {
      const { got, r } = await run(dev, [{ address: 2, count: 3 }, { address: 7, count: 1 }, { address: 30, count: 5 }]);
      expect(got.map(([a]) => a)).toEqual([2, 3, 4, 7, 30, 31, 32, 33, 34]);
      for (const [a, h] of got) expect(h).toBe(hashOf(a));
      expect(r).toEqual({ hashed: 9, unreadable: 0, threads: 0 });
    } finally {
      await dev.close();
    }
  });

  it('blocks past the end of the file come back null', async () => {
    const dev = await fileDevices.open(file, { readOnly: true });
    try {
      const { got, r } = await run(dev, [{ address: 38, count: 4 }]);
      expect(got).toEqual([[38, hashOf(38)], [39, hashOf(39)], [40, null], [41, null]]);
      expect(r.unreadable).toBe(2);
    } finally {
      await dev.close();
    }
  });

  it('an EIO costs only the failing block', async () => {
    const dev = faulty(await fileDevices.open(file, { readOnly: true }), 12);
    try {
      const { got } = await run(dev, [{ address: 10, count: 5 }]);
      expect(got).toEqual([[10, hashOf(10)], [11, hashOf(11)], [12, null], [13, hashOf(13)], [14, hashOf(14)]]);
    } finally {
      await dev.close();
    }
  });
});

describe('HashWorkers', () => {
  // the compiled module: its worker threads exist only in dist/ (from the sources, batches are hashed inline)
  const distModule = new URL('../../dist/store/hash_pool.js', import.meta.url).pathname;
  const pools = async (): Promise<Array<{ name: string; start: () => import('./hash_pool.js').HashWorkers; sharedBatch: (n: number) => Buffer }>> => {
    const { HashWorkers } = await import('./hash_pool.js');
    const out = [{ name: 'inline', start: () => HashWorkers.start('TIGER', BS, 0), sharedBatch: (n: number) => HashWorkers.sharedBatch(n) }];
    if (existsSync(distModule)) {
      const dist = (await import(distModule)) as typeof import('./hash_pool.js');
      out.push({ name: 'threads', start: () => dist.HashWorkers.start('TIGER', BS, 2), sharedBatch: (n: number) => dist.HashWorkers.sharedBatch(n) });
    }
    return out;
  };

  it('hashes shared batches in place, again after new bytes, and transferred batches, as the hash of each block', async () => {
    for (const p of await pools()) {
      const pool = p.start();
      try {
        const a = p.sharedBatch(8 * BS);
        const b = p.sharedBatch(8 * BS);
        blocks.copy(a, 0, 0, 8 * BS);
        blocks.copy(b, 0, 8 * BS, 16 * BS);
        const [ra, rb] = await Promise.all([pool.hash(a, 8), pool.hash(b, 5)]);
        expect(ra.data, p.name).toBe(a); // the same buffer, never detached
        for (let k = 0; k < 8; k++) expect(ra.hashes.subarray(k * 24, (k + 1) * 24).toString('hex'), `${p.name} a ${k}`).toBe(hashOf(k));
        expect(rb.hashes.length).toBe(5 * 24);
        for (let k = 0; k < 5; k++) expect(rb.hashes.subarray(k * 24, (k + 1) * 24).toString('hex'), `${p.name} b ${k}`).toBe(hashOf(8 + k));
        // the same batch with other bytes: other hashes (a reused batch is registered once per thread)
        blocks.copy(a, 0, 20 * BS, 28 * BS);
        const again = await pool.hash(a, 8);
        for (let k = 0; k < 8; k++) expect(again.hashes.subarray(k * 24, (k + 1) * 24).toString('hex'), `${p.name} again ${k}`).toBe(hashOf(20 + k));
        const t = Buffer.allocUnsafeSlow(3 * BS);
        blocks.copy(t, 0, 30 * BS, 33 * BS);
        const rt = await pool.hash(t, 3);
        for (let k = 0; k < 3; k++) expect(rt.hashes.subarray(k * 24, (k + 1) * 24).toString('hex'), `${p.name} transferred ${k}`).toBe(hashOf(30 + k));
      } finally {
        await pool.close();
      }
    }
  });
  it('hashes a view of a shared buffer at any byte offset (a local copy\'s BLOCKS frame) in place', async () => {
    for (const p of await pools()) {
      const pool = p.start();
      try {
        const shared = p.sharedBatch(8 * BS + 6181);
        const view = shared.subarray(6181, 6181 + 6 * BS);
        blocks.copy(view, 0, 33 * BS, 39 * BS);
        const r = await pool.hash(view, 6);
        expect(r.data, p.name).toBe(view);
        for (let k = 0; k < 6; k++) expect(r.hashes.subarray(k * 24, (k + 1) * 24).toString('hex'), `${p.name} offset ${k}`).toBe(hashOf(33 + k));
      } finally {
        await pool.close();
      }
    }
  });
});
