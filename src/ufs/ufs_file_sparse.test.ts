/**
 * UfsFile on terabyte sparse files (issue 9, memory item): the node list is never held whole in memory, a size the
 * volume cannot address is refused with FILE_TOO_BIG (EFBIG) and nothing changes, the UFS file stays what ddumbfs
 * 1.1 writes (holes are all-zero nodes: address 0 + null hash, spec §7), fsck -c finds it clean, and reclaim keeps
 * every block of an open file even when most of its node list is only on disk. Then a random model test with tiny
 * node pages, so page loads, evictions, held nodes and cuts are exercised on small files.
 */
import { closeSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeAddress } from '../format/node.js';
import { checkVolume } from '../fsck/check.js';
import { UFS_FILE_NODE_COUNT_MAX, UFS_NODE_PAGE_COUNT_RESIDENT_MAX, UFS_NODE_PAGE_NODE_COUNT } from '../limits.js';
import type { Volume } from '../volume/volume.js';
import { UfsFile } from './ufs_file.js';
import { bytesDiff, makeMemoryVolume, withTempVolume } from '../../test/helpers/temp_volume.js';
import { noiseBytes } from '../../test/helpers/bytes.js';
import { quietLogger } from '../../test/helpers/crash.js';

const TiB = 2 ** 40;
const MiB = 2 ** 20;
const TIMEOUT_MS = 600_000;

/** Node `j` of the closed UFS file at `path`, read at its offset (16 + j·node_size) as any reader of 1.1 does. */
function nodeAt(path: string, j: number, nodeSize: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const node = Buffer.alloc(nodeSize);
    expect(readSync(fd, node, 0, nodeSize, 16 + j * nodeSize), `node ${j} is in the UFS file`).toBe(nodeSize);
    return node;
  } finally {
    closeSync(fd);
  }
}

/** The writes of the big-file test: offset and bytes (partial blocks, whole blocks, runs, one byte at 2 TiB). */
function bigWrites(): Array<[number, Buffer]> {
  return [
    [0, noiseBytes(1, 10_000)],
    [TiB / 2 + 123, noiseBytes(2, 5_000)],
    [TiB - 3 * 4096, noiseBytes(3, 3 * 4096)],
    [1.5 * TiB, noiseBytes(4, 2 * MiB)],
    [2 * TiB, Buffer.from([0x5a])],
  ];
}

async function expectWritesReadBack(f: UfsFile, writes: Array<[number, Buffer]>): Promise<void> {
  for (const [offset, data] of writes) expect(bytesDiff(await f.read(offset, data.length), data), `bytes at ${offset}`).toBe('');
  // holes between them read as zeros
  for (const offset of [64 * 1024, TiB / 4, TiB + 7, 2 * TiB - MiB]) {
    expect(bytesDiff(await f.read(offset, 128 * 1024), Buffer.alloc(128 * 1024)), `hole at ${offset}`).toBe('');
  }
}

describe('UfsFile: terabyte sparse files keep a bounded node cache', () => {
  it('truncate to 1 TiB and writes up to 2 TiB read back; the cache stays small; the UFS file is what 1.1 writes', async () => {
    await withTempVolume({ blockSize: 4096, size: '64M' }, async (volume) => {
      const { nodeSize, addrSize } = volume.store.cfg;
      const p = volume.ufsPath('/big');
      const f = await volume.openFile(p, { create: true, truncate: true });
      await f.truncate(TiB);
      expect(f.size).toBe(TiB);
      const writes = bigWrites();
      for (const [offset, data] of writes) await f.write(offset, data);
      const size = 2 * TiB + 1;
      expect(f.size).toBe(size);
      await expectWritesReadBack(f, writes);
      // the whole node list would be 2^29 nodes (14 GB): only pages touched are in memory, and at most a bounded count
      const pageSizeMax = UFS_NODE_PAGE_NODE_COUNT * nodeSize;
      expect(f.nodeCacheSizeBytes).toBeGreaterThan(0);
      expect(f.nodeCacheSizeBytes).toBeLessThanOrEqual(UFS_NODE_PAGE_COUNT_RESIDENT_MAX * pageSizeMax);
      expect(f.nodeCacheSizeBytes).toBeLessThan(8 * MiB);
      await f.close();

      // the UFS file: 16 + ceil(size/bs)·node_size bytes, sparse on the host (only written nodes take space)
      const nodeCount = Math.ceil(size / 4096);
      const st = statSync(p);
      expect(st.size).toBe(16 + nodeCount * nodeSize);
      expect(st.blocks * 512).toBeLessThan(64 * MiB);
      // holes are all-zero nodes (address 0, null hash), as 1.1's ftruncate leaves them
      for (const j of [3, Math.floor(TiB / 4096 / 3), TiB / 4096 + 5, nodeCount - 2]) {
        expect(nodeAt(p, j, nodeSize).every((b) => b === 0), `node ${j} is a hole`).toBe(true);
      }
      // a written block: its address and the hash of its (zero-padded) bytes
      const hasher = volume.store.hasher;
      const lastNode = nodeAt(p, nodeCount - 1, nodeSize);
      expect(decodeAddress(lastNode, 0, addrSize)).toBeGreaterThanOrEqual(2);
      const lastBlock = Buffer.alloc(4096);
      lastBlock[0] = 0x5a;
      expect(lastNode.subarray(addrSize).equals(hasher.hash(lastBlock))).toBe(true);
      const runNode = nodeAt(p, 1.5 * TiB / 4096 + 100, nodeSize);
      expect(runNode.subarray(addrSize).equals(hasher.hash(writes[3]![1].subarray(100 * 4096, 101 * 4096)))).toBe(true);

      // opened again, nothing of the node list is read until needed
      const g = await volume.openFile(p);
      expect(g.size).toBe(size);
      expect(g.nodeCacheSizeBytes).toBe(0);
      await expectWritesReadBack(g, writes);
      expect(g.nodeCacheSizeBytes).toBeLessThan(8 * MiB);
      await g.close();
    });
  }, TIMEOUT_MS);

  it('a size beyond what the volume can address is FILE_TOO_BIG (EFBIG) and changes nothing; the bound itself works', async () => {
    await withTempVolume({ blockSize: 4096, size: '16M' }, async (volume) => {
      const p = volume.ufsPath('/too-big');
      const f = await volume.openFile(p, { create: true, truncate: true });
      await f.write(0, noiseBytes(5, 6000));
      const sizeMax = UFS_FILE_NODE_COUNT_MAX * 4096;
      expect(f.sizeMax).toBe(sizeMax);
      await f.flush();
      const before = statSync(p);
      const tooBig = { code: 'FILE_TOO_BIG', errno: constants.errno.EFBIG };
      await expect(f.truncate(999_999_999_999_999)).rejects.toMatchObject(tooBig);
      await expect(f.truncate(sizeMax + 1)).rejects.toMatchObject(tooBig);
      await expect(f.write(sizeMax - 10, Buffer.alloc(20, 1))).rejects.toMatchObject(tooBig);
      await expect(f.write(sizeMax, Buffer.alloc(1, 1))).rejects.toMatchObject(tooBig);
      await expect(f.writeBehind(sizeMax, Buffer.alloc(1, 1), 1 * MiB)).rejects.toMatchObject(tooBig);
      expect(f.size).toBe(6000);
      await f.flush();
      expect(statSync(p).size).toBe(before.size);
      expect(await volume.readUfsSize(p)).toBe(6000);
      expect(bytesDiff(await f.read(0, 6000), noiseBytes(5, 6000))).toBe('');
      // the largest size itself is a valid file: its last byte can be written and read
      await f.write(sizeMax - 1, Buffer.from([7]));
      expect(f.size).toBe(sizeMax);
      expect((await f.read(sizeMax - 1, 10)).equals(Buffer.from([7]))).toBe(true);
      await f.truncate(6000);
      await f.close();
      expect(statSync(p).size).toBe(16 + 2 * volume.store.cfg.nodeSize);
    });
  }, TIMEOUT_MS);

  it('fsck -c finds a 1 TiB sparse file with scattered blocks clean', async () => {
    await withTempVolume({ blockSize: 128 * 1024, size: '64M' }, async (volume, tv) => {
      const f = await volume.openFile(volume.ufsPath('/img'), { create: true, truncate: true });
      await f.truncate(TiB);
      for (const [offset, data] of [[5, noiseBytes(6, 300_000)], [TiB / 3, noiseBytes(7, MiB)], [TiB - 1, Buffer.from([1])]] as const) {
        await f.write(offset, data);
      }
      await f.write(TiB / 2, Buffer.alloc(256 * 1024)); // written zero blocks: address 0 + zero-block hash
      await f.close();
      await volume.close();
      const report = await checkVolume(tv.parent, { logger: quietLogger(), crashed: false });
      expect(report.findings).toEqual([]);
      expect(report.exitCode).toBe(0);
    });
  }, TIMEOUT_MS);

  it('reclaim keeps every block of an open, unlinked file whose node pages are mostly not in memory', async () => {
    await withTempVolume({ blockSize: 4096, size: '64M' }, async (volume: Volume) => {
      const p = volume.ufsPath('/open-unlinked');
      const f = await volume.openFile(p, { create: true, truncate: true });
      // one distinct block in each of more node pages than a file keeps in memory
      const pageBytes = UFS_NODE_PAGE_NODE_COUNT * 4096;
      const pages = UFS_NODE_PAGE_COUNT_RESIDENT_MAX + 40;
      for (let i = 0; i < pages; i++) await f.write(i * pageBytes, noiseBytes(100 + i, 4096));
      await f.fsync();
      expect(f.nodeCacheSizeBytes).toBeLessThan(pages * UFS_NODE_PAGE_NODE_COUNT * volume.store.cfg.nodeSize);
      const free = volume.statfs().blockCountFree;
      rmSync(p); // only the open handle reaches the file now: the walk of ddfsroot does not see it
      const report = await volume.runReclaim();
      expect(report.nodeDeleted).toBe(0);
      expect(volume.statfs().blockCountFree).toBe(free);
      for (let i = 0; i < pages; i++) {
        expect(bytesDiff(await f.read(i * pageBytes, 4096), noiseBytes(100 + i, 4096)), `page ${i}`).toBe('');
      }
      await f.close();
    });
  }, TIMEOUT_MS);
});

describe('UfsFile node cache and reclaim, held nodes', () => {
  it('a shrinking truncate during a reclaim walk keeps the blocks its cut nodes named, also those only on disk', async () => {
    await withTempVolume({ blockSize: 4096, size: '64M' }, async (volume: Volume) => {
      const p = volume.ufsPath('/cut-during-walk');
      const f = await volume.openFile(p, { create: true, truncate: true });
      const pageBytes = UFS_NODE_PAGE_NODE_COUNT * 4096;
      const pages = UFS_NODE_PAGE_COUNT_RESIDENT_MAX + 40;
      for (let i = 0; i < pages; i++) await f.write(i * pageBytes, noiseBytes(600 + i, 4096));
      await f.fsync();
      expect(f.nodeCachePageCount).toBeLessThan(pages);
      let cut = false;
      // the walk reaches the file, and before it is read the file is cut to nothing
      const first = await volume.runReclaim({
        afterWalkStep: async (entry) => {
          if (entry.toString() !== 'cut-during-walk' || cut) return;
          cut = true;
          await f.truncate(0);
        },
      });
      expect(cut).toBe(true);
      expect(first.nodeDeleted, 'blocks referenced when the walk began are kept by that reclaim').toBe(0);
      const second = await volume.runReclaim();
      expect(second.nodeDeleted).toBe(pages);
      await f.close();
    });
  }, TIMEOUT_MS);

  it('a held node written again with the same node stays held: the UFS file names the older block until a sync', async () => {
    await withTempVolume({ blockSize: 4096, size: '16M' }, async (volume: Volume) => {
      const { nodeSize } = volume.store.cfg;
      const p = volume.ufsPath('/held-again');
      const f = await volume.openFile(p, { create: true, truncate: true });
      await f.write(0, noiseBytes(700, 4096));
      await f.fsync();
      const durable = nodeAt(p, 0, nodeSize);
      await f.write(0, noiseBytes(701, 4096)); // held: the new block is not synced yet
      expect(nodeAt(p, 0, nodeSize).equals(durable)).toBe(true);
      await f.write(0, noiseBytes(701, 4096)); // the same node again: still not synced
      expect(nodeAt(p, 0, nodeSize).equals(durable), 'the UFS file still names the synced block').toBe(true);
      expect(bytesDiff(await f.read(0, 4096), noiseBytes(701, 4096))).toBe('');
      await f.fsync();
      expect(nodeAt(p, 0, nodeSize).equals(durable)).toBe(false);
      await f.close();
    });
  }, TIMEOUT_MS);
});

describe('UfsFile with tiny node pages against a Buffer model (fast-check)', () => {
  it('a shrink then a grow reads holes where the cut nodes were, while their page stays in memory', async () => {
    const mem = await makeMemoryVolume({ blockSize: 4096, size: '8M' });
    const f = await UfsFile.open(mem.store, `${mem.parent}/ddfsroot/cut`, {
      create: true, truncate: true, devices: mem.devices, nodePageNodeCount: 4, nodePageCountResidentMax: 2,
    });
    await f.write(0, noiseBytes(1, 6 * 4096));
    await f.truncate(4096);
    await f.truncate(6 * 4096);
    expect(f.nodeCachePageCount).toBeGreaterThan(0);
    expect(bytesDiff(await f.read(0, 6 * 4096), Buffer.concat([noiseBytes(1, 4096), Buffer.alloc(5 * 4096)]))).toBe('');
    await f.close();
    await mem.store.close();
  });

  type Op =
    | { kind: 'write'; offset: number; length: number; seed: number }
    | { kind: 'truncate'; size: number }
    | { kind: 'read'; offset: number; length: number }
    | { kind: 'fsync' }
    | { kind: 'reopen' };
  const BS = 4096;
  const SPAN = 20 * BS; // 5 pages of 4 nodes, 2 in memory: pages are dropped and read again often
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('write' as const), offset: fc.nat(SPAN), length: fc.integer({ min: 1, max: 6 * BS }), seed: fc.nat(1000) }),
    fc.record({ kind: fc.constant('truncate' as const), size: fc.oneof(fc.nat(SPAN), fc.nat(20).map((k) => k * BS)) }),
    fc.record({ kind: fc.constant('read' as const), offset: fc.nat(SPAN), length: fc.integer({ min: 1, max: 8 * BS }) }),
    fc.record({ kind: fc.constant('fsync' as const) }),
    fc.record({ kind: fc.constant('reopen' as const) }),
  );

  it('random writes, truncates, reads, fsyncs and reopens match the model; the cache never exceeds its pages', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
        const mem = await makeMemoryVolume({ blockSize: BS, size: '8M' });
        const pages = { nodePageNodeCount: 4, nodePageCountResidentMax: 2 };
        const path = `${mem.parent}/ddfsroot/model`;
        const open = (create: boolean): Promise<UfsFile> =>
          UfsFile.open(mem.store, path, { create, truncate: create, devices: mem.devices, ...pages });
        let f = await open(true);
        let model = Buffer.alloc(0);
        try {
          for (const o of ops) {
            if (o.kind === 'write') {
              const data = noiseBytes(o.seed, o.length);
              await f.write(o.offset, data);
              if (model.length < o.offset + o.length) model = Buffer.concat([model, Buffer.alloc(o.offset + o.length - model.length)]);
              data.copy(model, o.offset);
            } else if (o.kind === 'truncate') {
              await f.truncate(o.size);
              model = o.size <= model.length ? model.subarray(0, o.size) : Buffer.concat([model, Buffer.alloc(o.size - model.length)]);
            } else if (o.kind === 'read') {
              const got = await f.read(o.offset, o.length);
              expect(bytesDiff(got, model.subarray(Math.min(o.offset, model.length), Math.min(o.offset + o.length, model.length)))).toBe('');
            } else if (o.kind === 'fsync') {
              await f.fsync();
            } else {
              await f.close();
              f = await open(false);
            }
            expect(f.size).toBe(model.length);
            expect(f.nodeCachePageCount).toBeLessThanOrEqual(2);
          }
          expect(bytesDiff(await f.read(0, model.length + 1), model)).toBe('');
          await f.close();
          // on disk: exactly ceil(size/bs) nodes, and a fresh open reads the same bytes
          expect(mem.devices.readFile(path).length).toBe(16 + Math.ceil(model.length / BS) * mem.config.nodeSize);
          f = await open(false);
          expect(bytesDiff(await f.read(0, model.length), model)).toBe('');
        } finally {
          await f.close();
          await mem.store.close();
        }
      }),
      { numRuns: 150 },
    );
  }, TIMEOUT_MS);
});
