/**
 * The block store (spec §4, §5.7, §5.8, §8.6 step 5) on temporary volumes made by createVolume.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, lstatSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bitmapWordBytes } from '../format/config.js';
import { decodeAddress } from '../format/node.js';
import { fileDevices, type DeviceFactory } from '../io/device.js';
import { CrashDeviceFactory, SeededRandom } from '../io/crash_device.js';
import { FaultyDeviceFactory } from '../io/faulty_device.js';
import { BlockStore, checkBlockFileSize, checkIndexFileSize, checkVolumeFileSizes, resolveVolumePath } from './block_store.js';
import { IndexFile } from './index_file.js';
import { bytesDiff, makeMemoryVolume, makeTempVolume, type TempVolume, type TempVolumeOptions } from '../../test/helpers/temp_volume.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function openStore(opts: TempVolumeOptions, storeOptions: { freeBlockReserve?: number; readOnly?: boolean } = {}): Promise<{ tv: TempVolume; store: BlockStore }> {
  const tv = await makeTempVolume(opts);
  cleanups.push(tv.cleanup);
  const store = await BlockStore.open(tv.parent, tv.config, storeOptions);
  cleanups.push(() => store.close().catch(() => undefined));
  return { tv, store };
}

/** A block of `bs` pseudo-random bytes determined by `seed`. */
function block(bs: number, seed: number): Buffer {
  const b = Buffer.alloc(bs);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < bs; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

interface PutResult { addresses: number[]; hashes: Buffer[]; stored: number; error: string | null }

async function put(store: BlockStore, blocks: Buffer[]): Promise<PutResult> {
  const { nodeSize: ns, addrSize: as, hashSize: hs } = store.cfg;
  const nodes = Buffer.alloc(blocks.length * ns);
  const { stored, error } = await store.storeBlocks(Buffer.concat(blocks), blocks.length, nodes, 0);
  const addresses: number[] = [];
  const hashes: Buffer[] = [];
  for (let k = 0; k < stored; k++) {
    addresses.push(decodeAddress(nodes, k * ns, as));
    hashes.push(Buffer.from(nodes.subarray(k * ns + as, k * ns + as + hs)));
  }
  return { addresses, hashes, stored, error: error?.code ?? null };
}

const SMALL: TempVolumeOptions = { blockSize: 4096, size: '1M' }; // 256 blocks, addr_size 1

describe('BlockStore.storeBlocks', () => {
  it('dedups: the same block twice gets the same address and one block write', async () => {
    const { store } = await openStore(SMALL);
    const A = block(4096, 1);
    const first = await put(store, [A]);
    expect(first.addresses).toEqual([2]);
    expect(bytesDiff(first.hashes[0]!, store.hasher.hash(A))).toBe('');
    expect(store.counters.get('block_write')).toBe(1);
    const second = await put(store, [A]);
    expect(second.addresses).toEqual([2]);
    expect(store.counters.get('block_write')).toBe(1);
    expect(store.counters.get('ghost_write')).toBe(1);
    expect(store.blockCountUsed).toBe(3);
    // twice within one call: one allocation, one write
    const B = block(4096, 2);
    expect((await put(store, [B, A, B])).addresses).toEqual([3, 2, 3]);
    expect(store.counters.get('block_write')).toBe(2);
    expect(store.index.nodes.countUsed()).toBe(2);
  });

  it('the zero block is address 0 with the zero-block hash: no allocation, no index node, no write', async () => {
    const { store } = await openStore(SMALL);
    const r = await put(store, [Buffer.alloc(4096)]);
    expect(r.addresses).toEqual([0]);
    expect(r.hashes[0]!.toString('hex')).toBe('c50b60fa710aa94f3e5615b4d4a194e3cdfacf95e0253b6a');
    expect(store.isZeroHash(r.hashes[0]!)).toBe(true);
    expect(store.isZeroHash(Buffer.alloc(24))).toBe(true);
    expect(store.isZeroHash(block(24, 3))).toBe(false);
    expect(store.blockCountUsed).toBe(2);
    expect(store.counters.get('block_write')).toBe(0);
    expect(store.index.nodes.countUsed()).toBe(0);
  });

  it('allocates next-fit 2, 3, 4…, across calls; the block file grows to the last address', async () => {
    const { tv, store } = await openStore(SMALL);
    const blocks = [0, 1, 2, 3, 4].map((s) => block(4096, 100 + s));
    expect((await put(store, blocks)).addresses).toEqual([2, 3, 4, 5, 6]);
    expect((await put(store, [block(4096, 7), Buffer.alloc(4096), block(4096, 8)])).addresses).toEqual([7, 0, 8]);
    await store.sync();
    expect(statSync(resolveVolumePath(tv.parent, tv.config.blockFilename)).size).toBe(9 * 4096);
    for (let a = 0; a < 9; a++) expect(store.index.bitmap.has(a)).toBe(true);
    expect(store.index.bitmap.has(9)).toBe(false);
    expect(store.index.nodes.checkInvariants()).toEqual([]);
  });

  it('readBlocks returns what was stored; 0 and 1 read as zeros; bad addresses are CORRUPT', async () => {
    const { store } = await openStore(SMALL);
    const blocks = [0, 1, 2, 3].map((s) => block(4096, 200 + s));
    const { addresses } = await put(store, blocks);
    const out = Buffer.alloc(4 * 4096 + 10, 0xee);
    await store.readBlocks(addresses[0]!, 4, out, 10);
    expect(bytesDiff(out.subarray(10), Buffer.concat(blocks))).toBe('');
    for (let k = 0; k < 4; k++) {
      const one = Buffer.alloc(4096);
      await store.readBlock(addresses[k]!, one, 0);
      expect(bytesDiff(one, blocks[k]!)).toBe('');
    }
    const z = Buffer.alloc(8192, 0xee);
    await store.readBlocks(0, 2, z, 0);
    expect(z.every((b) => b === 0)).toBe(true);
    z.fill(0xee);
    await store.readBlock(1, z, 0);
    expect(z.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    await expect(store.readBlock(256, z, 0)).rejects.toMatchObject({ code: 'CORRUPT' });
    await expect(store.readBlocks(255, 2, Buffer.alloc(8192), 0)).rejects.toMatchObject({ code: 'CORRUPT' });
    await expect(store.readBlock(200, z, 0)).rejects.toMatchObject({ code: 'CORRUPT' }); // past the block file's end
  });

  it('a read of a block being written waits for its data (the being-written list, spec §8.5)', async () => {
    const { store } = await openStore(SMALL);
    const blocks = [block(4096, 300), block(4096, 301)];
    const nodes = Buffer.alloc(2 * store.cfg.nodeSize);
    const storing = store.storeBlocks(Buffer.concat(blocks), 2, nodes, 0);
    // lookup, allocation and node insertion ran synchronously: the addresses are already known
    const a = decodeAddress(nodes, store.cfg.nodeSize, 1);
    expect(a).toBe(3);
    const out = Buffer.alloc(4096);
    const reading = store.readBlock(a, out, 0);
    await Promise.all([storing, reading]);
    expect(bytesDiff(out, blocks[1]!)).toBe('');
  });

  it('NO_SPACE when the volume is full; stored blocks before it are valid; dedup and zero blocks still work', async () => {
    const { store } = await openStore({ blockSize: 4096, size: 16 * 4096 }); // 14 usable blocks
    const blocks = Array.from({ length: 15 }, (_, k) => block(4096, 400 + k));
    const r = await put(store, blocks);
    expect(r.stored).toBe(14);
    expect(r.error).toBe('NO_SPACE');
    expect(r.addresses).toEqual(Array.from({ length: 14 }, (_, k) => k + 2));
    expect(store.blockCountFree).toBe(0);
    const out = Buffer.alloc(4096);
    await store.readBlock(15, out, 0);
    expect(bytesDiff(out, blocks[13]!)).toBe('');
    const again = await put(store, [blocks[3]!, Buffer.alloc(4096)]);
    expect(again).toMatchObject({ stored: 2, error: null, addresses: [5, 0] });
    const none = await put(store, [block(4096, 999)]);
    expect(none).toMatchObject({ stored: 0, error: 'NO_SPACE' });
    expect(store.blockCountUsed).toBe(16);
    expect(store.index.nodes.countUsed()).toBe(14);
  });

  it('freeBlockReserve: new blocks are refused once fewer than the reserve are free (spec §8.6 step 0)', async () => {
    const { store } = await openStore({ blockSize: 4096, size: 16 * 4096 }, { freeBlockReserve: 5 });
    expect(store.blockCountFree).toBe(14);
    const r = await put(store, Array.from({ length: 14 }, (_, k) => block(4096, 500 + k)));
    // allowed while free ≥ 5 (upstream: block_count − used < reserve ⇒ ENOSPC): 14 → 4 free after 10 blocks
    expect(r.stored).toBe(10);
    expect(r.error).toBe('NO_SPACE');
    expect(store.blockCountFree).toBe(4);
    // below the reserve, writes that need no new block still succeed
    expect((await put(store, [block(4096, 500), Buffer.alloc(4096)])).addresses).toEqual([2, 0]);
    store.freeBlockReserve = 0;
    expect((await put(store, [block(4096, 600)])).addresses).toEqual([12]);
  });

  it('a read-only store references known blocks but refuses new ones', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    const rw = await BlockStore.open(tv.parent, tv.config);
    const A = block(4096, 700);
    await put(rw, [A]);
    await rw.close();
    const ro = await BlockStore.open(tv.parent, tv.config, { readOnly: true });
    cleanups.push(() => ro.close());
    expect((await put(ro, [A, Buffer.alloc(4096)])).addresses).toEqual([2, 0]);
    expect(await put(ro, [block(4096, 701)])).toMatchObject({ stored: 0, error: 'ACCESS' });
  });

  it('an exhausted index probe mid-call stops the call cleanly: earlier new blocks are written', async () => {
    const { store } = await openStore(SMALL);
    const nodes = store.index.nodes;
    // find two blocks whose ideal slots are well apart
    const candidates = Array.from({ length: 64 }, (_, k) => block(4096, 800 + k)).map((b) => ({ b, slot: nodes.idealSlot(store.hasher.hash(b)) }));
    candidates.sort((x, y) => x.slot - y.slot);
    const A = candidates[0]!;
    const B = candidates[candidates.length - 1]!;
    expect(A.slot).toBeLessThan(B.slot);
    // fill every node from B's ideal slot to the end with nodes of a smaller hash: B's probe runs off the table
    const small = Buffer.alloc(24);
    small[23] = 1;
    for (let i = B.slot; i < nodes.nodeCount; i++) nodes.writeNode(i, 255, small);
    const r = await put(store, [A.b, B.b]);
    expect(r.stored).toBe(1);
    expect(r.error).toBe('NO_SPACE');
    const out = Buffer.alloc(4096);
    await store.readBlock(r.addresses[0]!, out, 0);
    expect(bytesDiff(out, A.b)).toBe('');
    expect(store.index.bitmap.countSet).toBe(3);
  });
});

describe('BlockStore: blocks that cannot be written are lost, never other bytes (issue 6 §3)', () => {
  it('a failed block write: its node gets address 1 and the thrown error lists it; a block deduplicated against it while in flight too', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    let failNext = false;
    const devices: DeviceFactory = {
      ...fileDevices,
      async open(p: string | Buffer, o: { readOnly?: boolean; create?: boolean; truncate?: boolean; mode?: number }) {
        const d = await fileDevices.open(p, o);
        if (!String(p).endsWith('ddfsblocks')) return d;
        return {
          path: d.path,
          read: d.read.bind(d), sync: d.sync.bind(d), size: d.size.bind(d), truncate: d.truncate.bind(d), close: d.close.bind(d),
          async write(buf: Buffer, position: number) {
            if (!failNext) return d.write(buf, position);
            failNext = false;
            await new Promise((r) => setImmediate(r)); // fail later, while another call dedups against it
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
          },
        };
      },
    };
    const store = await BlockStore.open(tv.parent, tv.config, { devices });
    cleanups.push(() => store.close().catch(() => undefined));
    const { nodeSize: ns, addrSize: as, hashSize: hs } = store.cfg;
    const A = block(4096, 800);
    const B = block(4096, 801);
    const known = await put(store, [B]);
    failNext = true;
    const first = Buffer.alloc(2 * ns);
    const second = Buffer.alloc(2 * ns);
    const writing = store.storeBlocks(Buffer.concat([B, A]), 2, first, 0); // B known, A new: its write fails
    const deduplicating = store.storeBlocks(Buffer.concat([A, Buffer.alloc(4096)]), 2, second, 0); // A while in flight
    const [e1, e2] = await Promise.allSettled([writing, deduplicating]);
    for (const [result, lostIndex] of [[e1, 1], [e2, 0]] as const) {
      expect(result.status).toBe('rejected');
      const err = (result as PromiseRejectedResult).reason;
      expect(err).toMatchObject({ code: 'NO_SPACE', data: { stored: 2, lost: [lostIndex] } });
    }
    expect(decodeAddress(first, 0, as)).toBe(known.addresses[0]);
    expect(decodeAddress(first, ns, as)).toBe(1);
    expect(first.subarray(ns + as, ns + as + hs).equals(store.hasher.hash(A))).toBe(true);
    expect(decodeAddress(second, 0, as)).toBe(1);
    expect(second.subarray(as, as + hs).equals(store.hasher.hash(A))).toBe(true);
    expect(decodeAddress(second, ns, as)).toBe(0);
    // A is not in the index: storing it again writes it anew
    const again = await put(store, [A]);
    expect(again.stored).toBe(1);
    expect(again.addresses[0]).toBeGreaterThanOrEqual(2);
    const out = Buffer.alloc(4096);
    await store.readBlock(again.addresses[0]!, out, 0);
    expect(bytesDiff(out, A)).toBe('');
  });
});

describe('BlockStore persistence', () => {
  it('checkpoint: ddfsusedblocks holds exactly the bitmap words, 4·ceil(block_count/32) bytes', async () => {
    const { tv, store } = await openStore(SMALL);
    await put(store, [block(4096, 1), block(4096, 2), block(4096, 3)]);
    expect(store.changesSinceCheckpoint).toBe(3);
    await store.checkpoint();
    const cp = readFileSync(join(tv.parent, 'ddfsusedblocks'));
    expect(cp.length).toBe(32);
    expect(bytesDiff(cp, store.index.bitmap.bytes.subarray(0, 32))).toBe('');
    expect(cp[0]).toBe(0xf8);
    expect(existsSync(join(tv.parent, 'ddfsusedblocks.0'))).toBe(false);
    expect(store.changesSinceCheckpoint).toBe(0);
    // a second checkpoint replaces the first
    await put(store, [block(4096, 4)]);
    await store.checkpoint();
    expect(readFileSync(join(tv.parent, 'ddfsusedblocks'))[0]).toBe(0xfc);
  });

  it('checkpoint goes through the device seam: it works on a memory volume, and renames and syncs the directory', async () => {
    const mem = await makeMemoryVolume(SMALL);
    cleanups.push(() => mem.store.close());
    await put(mem.store, [block(4096, 1), block(4096, 2)]);
    await mem.store.checkpoint();
    expect(mem.devices.readFile(`${mem.parent}/ddfsusedblocks`)[0]).toBe(0xf0);
    expect(mem.devices.exists(`${mem.parent}/ddfsusedblocks.tmp`)).toBe(false);
    expect(mem.devices.syncDirectoryCount).toBe(1);
    const faulty = new FaultyDeviceFactory({ ops: ['rename', 'syncDirectory'] });
    const { tv } = await openStore(SMALL);
    const store = await BlockStore.open(tv.parent, tv.config, { devices: faulty });
    cleanups.push(() => store.close());
    await store.checkpoint();
    expect(faulty.seen.get('rename:checkpoint')).toBe(1);
    expect(faulty.seen.get('syncDirectory:other')).toBe(1);
  });

  it('a crash inside any I/O of a checkpoint leaves the old or the new checkpoint, whole; a finished one survives', async () => {
    // how many mutating I/Os one checkpoint makes (block file, index, temporary, rename, directory)
    const probe = await openStore(SMALL);
    const counting = new CrashDeviceFactory();
    const s0 = await BlockStore.open(probe.tv.parent, probe.tv.config, { devices: counting });
    await put(s0, [block(4096, 1)]);
    await s0.checkpoint();
    await put(s0, [block(4096, 2)]);
    const before = counting.ioCount;
    await s0.checkpoint();
    const perCheckpoint = counting.ioCount - before;
    await s0.close();
    counting.dispose();
    expect(perCheckpoint).toBeGreaterThanOrEqual(5);
    const outcomes = new Set<string>();
    for (let k = 1; k <= perCheckpoint + 1; k++) {
      for (let seed = 0; seed < 4; seed++) {
        const { tv } = await openStore(SMALL);
        const first = await BlockStore.open(tv.parent, tv.config);
        await put(first, [block(4096, 1)]);
        await first.checkpoint(); // the old checkpoint: blocks 0, 1, 2
        await first.close();
        const old = readFileSync(join(tv.parent, 'ddfsusedblocks'));
        const crash = new CrashDeviceFactory({ rng: new SeededRandom(seed) });
        const store = await BlockStore.open(tv.parent, tv.config, { devices: crash });
        await put(store, [block(4096, 2)]);
        // k = perCheckpoint + 1: no crash inside; the power fails after the checkpoint finished
        crash.crashAt = k <= perCheckpoint ? crash.ioCount + k : undefined;
        let finished = false;
        try {
          await store.checkpoint();
          finished = true;
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe('EIO');
        }
        if (!crash.dead) crash.crash(new SeededRandom(seed));
        await store.close().catch(() => undefined);
        crash.dispose();
        const cp = readFileSync(join(tv.parent, 'ddfsusedblocks'));
        const got = cp.equals(old) ? 'old' : cp[0] === 0xf0 && cp.length === 32 ? 'new' : `other ${cp.toString('hex')}`;
        if (finished) expect(got).toBe('new');
        else expect(['old', 'new']).toContain(got);
        expect(lstatSync(join(tv.parent, 'ddfsusedblocks')).isFile()).toBe(true);
        outcomes.add(got);
      }
    }
    expect([...outcomes].sort()).toEqual(['new', 'old']);
  });

  it('a failed rename or directory sync keeps the old checkpoint; the next checkpoint clears the leftover temporary', async () => {
    for (const op of ['rename', 'syncDirectory'] as const) {
      const { tv } = await openStore(SMALL);
      const faulty = new FaultyDeviceFactory({ ops: [op] });
      const store = await BlockStore.open(tv.parent, tv.config, { devices: faulty });
      cleanups.push(() => store.close());
      await store.checkpoint(); // blocks 0 and 1 only
      const old = readFileSync(join(tv.parent, 'ddfsusedblocks'));
      await put(store, [block(4096, 1)]);
      faulty.failAt = 2;
      await expect(store.checkpoint(), op).rejects.toMatchObject({ code: 'EIO' });
      expect(faulty.faults.map((f) => f.op)).toEqual([op]);
      if (op === 'rename') {
        expect(readFileSync(join(tv.parent, 'ddfsusedblocks')).equals(old)).toBe(true);
        expect(existsSync(join(tv.parent, 'ddfsusedblocks.tmp'))).toBe(true);
      }
      expect(store.changesSinceCheckpoint).toBe(1); // not counted as saved
      await store.checkpoint();
      expect(readFileSync(join(tv.parent, 'ddfsusedblocks'))[0]).toBe(0xe0);
      expect(existsSync(join(tv.parent, 'ddfsusedblocks.tmp'))).toBe(false);
      expect(store.changesSinceCheckpoint).toBe(0);
    }
  });

  it('a symlink planted at ddfsusedblocks.0 or ddfsusedblocks.tmp is never followed: the outside file is untouched', async () => {
    const { tv, store } = await openStore(SMALL);
    const outside = join(tv.parent, '..', `outside-${process.pid}-${Date.now()}`);
    writeFileSync(outside, 'precious bytes');
    cleanups.push(async () => void (await import('node:fs/promises')).rm(outside, { force: true }));
    for (const name of ['ddfsusedblocks.0', 'ddfsusedblocks.tmp']) symlinkSync(outside, join(tv.parent, name));
    await put(store, [block(4096, 1)]);
    await store.checkpoint();
    expect(readFileSync(outside, 'utf8')).toBe('precious bytes');
    expect(readFileSync(join(tv.parent, 'ddfsusedblocks'))[0]).toBe(0xe0);
    expect(existsSync(join(tv.parent, 'ddfsusedblocks.0'))).toBe(false);
    expect(existsSync(join(tv.parent, 'ddfsusedblocks.tmp'))).toBe(false);
  });

  it('checkpoint size for a block count that is not a multiple of 32', async () => {
    const { tv, store } = await openStore({ blockSize: 4096, size: 40 * 4096 });
    await store.checkpoint();
    const cp = readFileSync(join(tv.parent, 'ddfsusedblocks'));
    expect(cp.length).toBe(bitmapWordBytes(tv.config));
    expect(cp.length).toBe(8);
    expect(bytesDiff(cp, Buffer.from([0xc0, 0, 0, 0, 0, 0, 0, 0]))).toBe('');
  });

  it('sync writes the dirty bitmap and node pages: the index reloaded from disk equals memory', async () => {
    const { tv, store } = await openStore({ blockSize: 512, size: 2 * 1024 * 1024 }); // 4096 blocks, 2-byte addresses
    const indexPath = resolveVolumePath(tv.parent, tv.config.indexFilename);
    const cfg = tv.config;
    await put(store, Array.from({ length: 300 }, (_, k) => block(512, 1000 + k)));
    const onDiskBefore = readFileSync(indexPath);
    expect(onDiskBefore[cfg.freeblockOffset]).toBe(0xc0); // not written back yet
    await store.sync();
    const dev = await fileDevices.open(indexPath, { readOnly: true });
    try {
      const loaded = await IndexFile.load(dev, cfg);
      expect(bytesDiff(loaded.bitmap.bytes, store.index.bitmap.bytes)).toBe('');
      expect(bytesDiff(Buffer.concat(loaded.nodes.chunks), Buffer.concat(store.index.nodes.chunks))).toBe('');
      expect(loaded.bitmap.countSet).toBe(302);
      expect(loaded.nodes.countUsed()).toBe(300);
      expect(loaded.nodes.checkInvariants()).toEqual([]);
    } finally {
      await dev.close();
    }
    // only the bitmap and node regions changed
    const after = readFileSync(indexPath);
    expect(after.length).toBe(cfg.indexSize);
    expect(bytesDiff(after.subarray(0, cfg.freeblockOffset), onDiskBefore.subarray(0, cfg.freeblockOffset))).toBe('');
    expect(after.subarray(0, 8).toString()).toBe('DDUMBFSI');
  });

  it('after close and reopen, known blocks dedup against the persisted index', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    const s1 = await BlockStore.open(tv.parent, tv.config);
    const blocks = [block(4096, 11), block(4096, 12)];
    const r1 = await put(s1, blocks);
    await s1.close();
    const s2 = await BlockStore.open(tv.parent, tv.config);
    cleanups.push(() => s2.close());
    const r2 = await put(s2, blocks);
    expect(r2.addresses).toEqual(r1.addresses);
    expect(s2.counters.get('block_write')).toBe(0);
    expect(s2.blockCountUsed).toBe(4);
    // the allocation cursor starts at 0 in every process (spec §5.7): next new block is the first free one
    expect((await put(s2, [block(4096, 13)])).addresses).toEqual([4]);
  });

  it('open refuses a block file without magic and reports missing files as NOT_FOUND', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    const blockPath = resolveVolumePath(tv.parent, tv.config.blockFilename);
    const dev = await fileDevices.open(blockPath, {});
    await dev.write(Buffer.from('XXXXXXXX'), 0);
    await dev.close();
    await expect(BlockStore.open(tv.parent, tv.config)).rejects.toMatchObject({ code: 'BAD_MAGIC' });
    const s = await BlockStore.open(tv.parent, tv.config, { skipBlockMagic: true });
    await s.close();
    await expect(BlockStore.open(tv.parent, { ...tv.config, indexFilename: 'nope' }, { skipBlockMagic: true })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('the real sizes of the block and index files against the cfg', () => {
  it('a regular block file may hold up to block_count blocks, a block device must hold them all', () => {
    const cfg = { blockCount: 256, blockSize: 4096 } as Parameters<typeof checkBlockFileSize>[0];
    for (const size of [0, 8192, 256 * 4096 - 1, 256 * 4096]) expect(() => checkBlockFileSize(cfg, '/b', size, false)).not.toThrow();
    expect(() => checkBlockFileSize(cfg, '/b', 256 * 4096 + 1, false)).toThrow(/\/b: block file is 1048577 bytes.*key 'block_count'/);
    expect(() => checkBlockFileSize(cfg, '/dev/x', 256 * 4096 - 1, true)).toThrow(/\/dev\/x: block device holds 1048575 bytes.*key 'block_count'/);
    expect(() => checkBlockFileSize(cfg, '/dev/x', 2 * 256 * 4096, true)).not.toThrow();
  });

  it('a regular index file may not be longer than index_size, a block device not shorter', () => {
    const cfg = { indexSize: 159744 } as Parameters<typeof checkIndexFileSize>[0];
    expect(() => checkIndexFileSize(cfg, '/i', 159744, false)).not.toThrow();
    expect(() => checkIndexFileSize(cfg, '/i', 4096, false)).not.toThrow(); // short: IndexFile.load's TOO_SHORT, or a rebuild
    expect(() => checkIndexFileSize(cfg, '/i', 159745, false)).toThrow(/\/i: index file is 159745 bytes.*key 'index_size'/);
    expect(() => checkIndexFileSize(cfg, '/dev/i', 159743, true)).toThrow(/index device holds 159743 bytes.*key 'index_size'/);
    expect(() => checkIndexFileSize(cfg, '/dev/i', 1 << 30, true)).not.toThrow();
  });

  it('open and checkVolumeFileSizes refuse a block file longer than block_count blocks with BAD_CONFIG', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    const blockPath = resolveVolumePath(tv.parent, tv.config.blockFilename);
    truncateSync(blockPath, 257 * 4096);
    const before = readFileSync(join(tv.parent, 'ddfsidx'));
    await expect(BlockStore.open(tv.parent, tv.config)).rejects.toMatchObject({ code: 'BAD_CONFIG', data: { key: 'block_count' } });
    await expect(checkVolumeFileSizes(tv.parent, tv.config)).rejects.toMatchObject({ code: 'BAD_CONFIG', data: { key: 'block_count' } });
    expect(readFileSync(join(tv.parent, 'ddfsidx')).equals(before)).toBe(true);
    truncateSync(blockPath, 256 * 4096);
    await checkVolumeFileSizes(tv.parent, tv.config);
    const s = await BlockStore.open(tv.parent, tv.config);
    await s.close();
  });

  it('open refuses an index file longer than index_size; checkVolumeFileSizes ignores a missing index (a rebuild makes it)', async () => {
    const tv = await makeTempVolume(SMALL);
    cleanups.push(tv.cleanup);
    const indexPath = resolveVolumePath(tv.parent, tv.config.indexFilename);
    truncateSync(indexPath, tv.config.indexSize + 4096);
    await expect(BlockStore.open(tv.parent, tv.config)).rejects.toMatchObject({ code: 'BAD_CONFIG', data: { key: 'index_size' } });
    await expect(checkVolumeFileSizes(tv.parent, tv.config)).rejects.toMatchObject({ code: 'BAD_CONFIG', data: { key: 'index_size' } });
    await checkVolumeFileSizes(tv.parent, { ...tv.config, indexFilename: 'missing' });
  });
});
