import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
