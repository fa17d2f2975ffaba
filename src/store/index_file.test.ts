/**
 * The index file (spec §5.1): load from the cfg's offsets, write back only dirty pages, both layouts, and the
 * upstream fixture indexes. Runs on memory devices (src/io/memory_device.ts) except for the fixtures.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { bitmapWordBytes, deriveConfig, parseConfig, type DdfsConfig } from '../format/config.js';
import { decodeAddress } from '../format/node.js';
import { decodeUfsHeader } from '../format/ufs_header.js';
import { fileDevices } from '../io/device.js';
import { MemoryDeviceFactory } from '../io/memory_device.js';
import { encodeIndexHeader, IndexFile } from './index_file.js';
import { bytesDiff } from '../../test/helpers/temp_volume.js';
import { FIXTURE_VOLS_DIR } from '../../test/helpers/fixtures.js';

const FIXTURES = FIXTURE_VOLS_DIR;

function cfg1M(): DdfsConfig {
  return deriveConfig({ partitionSize: 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
}

/** A pre-1.1 layout of the same volume: bitmap right after the header page, nodes right after the bitmap. */
function cfgOldLayout(): DdfsConfig {
  const c = cfg1M();
  const nodeOffset = 4096 + bitmapWordBytes(c);
  return { ...c, freeblockOffset: 4096, nodeOffset, indexSize: nodeOffset + c.nodeBlockCount * 4096, indexBlockCount: 0 };
}

/** A fresh index image as mkddumbfs writes it. */
function freshImage(cfg: DdfsConfig): Buffer {
  const b = Buffer.alloc(cfg.indexSize);
  encodeIndexHeader().copy(b, 0);
  b[cfg.freeblockOffset] = 0xc0;
  return b;
}

async function loadFrom(devices: MemoryDeviceFactory, cfg: DdfsConfig, path = '/idx'): Promise<IndexFile> {
  return IndexFile.load(await devices.open(path, {}), cfg);
}

function hashOf(n: number, size = 24): Buffer {
  const h = Buffer.alloc(size);
  h.writeUInt32BE((n * 2654435761) >>> 0, 0);
  h.writeUInt32BE(n, size - 4);
  return h;
}

describe('IndexFile.load', () => {
  it('reads the bitmap at freeblock_offset and the nodes at node_offset', async () => {
    const cfg = cfg1M();
    const img = freshImage(cfg);
    img[cfg.freeblockOffset] = 0xe0; // block 2 used
    const node = Buffer.concat([Buffer.from([2]), hashOf(1)]);
    const slot = 123;
    node.copy(img, cfg.nodeOffset + slot * cfg.nodeSize);
    const devices = new MemoryDeviceFactory();
    devices.writeFile('/idx', img);
    const idx = await loadFrom(devices, cfg);
    expect(idx.bitmap.countSet).toBe(3);
    expect(idx.bitmap.bytes.length).toBe(32);
    expect(idx.nodes.address(slot)).toBe(2);
    expect(bytesDiff(idx.nodes.hash(slot), hashOf(1))).toBe('');
    expect(idx.nodes.countUsed()).toBe(1);
  });

  it('refuses a bad magic (unless told not to check) and a file shorter than index_size', async () => {
    const cfg = cfg1M();
    const devices = new MemoryDeviceFactory();
    const img = freshImage(cfg);
    img.write('DDUMBFSX', 0, 'latin1');
    devices.writeFile('/bad', img);
    await expect(loadFrom(devices, cfg, '/bad')).rejects.toMatchObject({ code: 'BAD_MAGIC', message: expect.stringContaining('/bad') });
    const idx = await IndexFile.load(await devices.open('/bad', {}), cfg, false);
    await idx.writeHeader();
    expect(devices.readFile('/bad').subarray(0, 8).toString()).toBe('DDUMBFSI');
    devices.writeFile('/short', freshImage(cfg).subarray(0, cfg.indexSize - 1));
    await expect(loadFrom(devices, cfg, '/short')).rejects.toMatchObject({ code: 'TOO_SHORT' });
  });

  it('loads a pre-1.1 layout (bitmap at 4096) from its cfg offsets', async () => {
    const cfg = cfgOldLayout();
    const img = freshImage(cfg);
    img[4096] = 0xf0;
    Buffer.concat([Buffer.from([3]), hashOf(2)]).copy(img, cfg.nodeOffset);
    const devices = new MemoryDeviceFactory();
    devices.writeFile('/idx', img);
    const idx = await loadFrom(devices, cfg);
    expect(idx.bitmap.countSet).toBe(4);
    expect(idx.nodes.address(0)).toBe(3);
  });
});

describe('IndexFile.flush / sync', () => {
  it('writes back only dirty pages, at the right offsets, and nothing when clean', async () => {
    // 40000 blocks: a 5000-byte bitmap over two pages
    const withRoom = deriveConfig({ partitionSize: 40000 * 4096, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
    expect(withRoom.freeblockSize).toBe(5000);
    const devices = new MemoryDeviceFactory();
    devices.writeFile('/idx', freshImage(withRoom));
    const idx = await loadFrom(devices, withRoom);
    idx.bitmap.set(8 * 4096 + 3); // second bitmap page only
    const h = hashOf(7);
    const r = idx.nodes.lookup(h);
    idx.nodes.insertAt(r.slot, 9, h);
    const writesBefore = devices.writeCount;
    await idx.flush();
    expect(devices.writeCount - writesBefore).toBe(2);
    const img = devices.readFile('/idx');
    expect(bytesDiff(img.subarray(withRoom.freeblockOffset, withRoom.freeblockOffset + 5000), idx.bitmap.bytes)).toBe('');
    expect(img[withRoom.freeblockOffset + 4096]).toBe(0x10);
    const at = withRoom.nodeOffset + r.slot * withRoom.nodeSize;
    expect(bytesDiff(img.subarray(at, at + withRoom.nodeSize), Buffer.concat([Buffer.from([9, 0, 0]).subarray(0, withRoom.addrSize), h]))).toBe('');
    await idx.flush();
    expect(devices.writeCount - writesBefore).toBe(2);
  });

  it('sync makes the write-back durable; a crash before sync loses it', async () => {
    const cfg = cfg1M();
    const devices = new MemoryDeviceFactory();
    devices.writeFile('/idx', freshImage(cfg));
    const idx = await loadFrom(devices, cfg);
    idx.bitmap.set(2);
    await idx.flush();
    devices.crash();
    expect(devices.readFile('/idx')[cfg.freeblockOffset]).toBe(0xc0);
    idx.bitmap.set(3);
    idx.bitmap.markAllDirty();
    await idx.sync();
    devices.crash();
    expect(devices.readFile('/idx')[cfg.freeblockOffset]).toBe(0xf0);
  });

  it('random changes, flush (or flushInPlace), reload: the file equals memory; header page and gap untouched (fast-check, both layouts)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(), fc.boolean(),
        fc.array(fc.oneof(fc.record({ set: fc.integer({ min: 2, max: 255 }) }), fc.record({ clear: fc.integer({ min: 2, max: 255 }) }), fc.record({ insert: fc.nat(100000) }), fc.record({ del: fc.nat() })), { maxLength: 60 }),
        async (old, inPlace, ops) => {
          const flush = (idx: IndexFile): Promise<void> => (inPlace ? idx.flushInPlace() : idx.flush());
          const cfg = old ? cfgOldLayout() : cfg1M();
          const devices = new MemoryDeviceFactory();
          const img0 = freshImage(cfg);
          img0.fill(0x5a, 8, cfg.freeblockOffset); // garbage in the unused area must survive
          devices.writeFile('/idx', img0);
          const idx = await loadFrom(devices, cfg);
          let address = 2;
          for (const op of ops) {
            if ('set' in op) idx.bitmap.set(op.set);
            else if ('clear' in op) idx.bitmap.clear(op.clear);
            else if ('insert' in op) {
              const h = hashOf(op.insert);
              const r = idx.nodes.lookup(h);
              if (!r.found && address < 256) idx.nodes.insertAt(r.slot, address++, h);
            } else {
              const used: number[] = [];
              for (let i = 0; i < idx.nodes.nodeCount; i++) if (!idx.nodes.isEmpty(i)) used.push(i);
              if (used.length > 0) idx.nodes.delete(used[op.del % used.length]!);
            }
            if (ops.indexOf(op) % 7 === 0) await flush(idx);
          }
          await flush(idx);
          expect(idx.capture()).toEqual([]); // nothing left dirty
          const img = devices.readFile('/idx');
          expect(bytesDiff(img.subarray(0, cfg.freeblockOffset), img0.subarray(0, cfg.freeblockOffset))).toBe('');
          const again = await loadFrom(devices, cfg);
          expect(bytesDiff(again.bitmap.bytes, idx.bitmap.bytes)).toBe('');
          expect(bytesDiff(Buffer.concat(again.nodes.chunks), Buffer.concat(idx.nodes.chunks))).toBe('');
          expect(again.nodes.checkInvariants()).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('upstream fixture indexes (ddumbfs 1.1)', () => {
  function* ufsFiles(dir: string): Generator<string> {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (name === '.ddumbfs') continue;
      if (statSync(p).isDirectory()) yield* ufsFiles(p);
      else yield p;
    }
  }

  it.each(['v11-4k-tiger', 'v11-8k-sha1', 'v11-4k-tiger128', 'v11-16k-tiger160'])('%s: index sound, one node per used block, every file node found', async (vol) => {
    const parent = join(FIXTURES, vol);
    const cfg = parseConfig(readFileSync(join(parent, 'ddfs.cfg'), 'utf8'));
    const dev = await fileDevices.open(join(parent, 'ddfsidx'), { readOnly: true });
    try {
      const idx = await IndexFile.load(dev, cfg);
      expect(idx.nodes.checkInvariants()).toEqual([]);
      expect(idx.nodes.countUsed()).toBe(idx.bitmap.countSet - 2);
      let checked = 0;
      for (const f of ufsFiles(join(parent, 'ddfsroot'))) {
        const ufs = readFileSync(f);
        const size = decodeUfsHeader(ufs.subarray(0, 16), f);
        const k = Math.ceil(size / cfg.blockSize);
        expect(ufs.length).toBe(16 + k * cfg.nodeSize);
        for (let j = 0; j < k; j++) {
          const off = 16 + j * cfg.nodeSize;
          const a = decodeAddress(ufs, off, cfg.addrSize);
          if (a < 2) continue;
          expect(idx.nodes.lookup(ufs, off + cfg.addrSize)).toMatchObject({ found: true, address: a });
          expect(idx.bitmap.has(a)).toBe(true);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(10);
    } finally {
      await dev.close();
    }
  });
});
