/**
 * UfsFile (spec §7, §8.5, §8.6) against a plain Buffer model: random write / truncate / read / flush / reopen
 * sequences on a real temporary volume and on an in-memory one, checked after every step; then the on-disk shape of
 * the UFS file, the canonical node list (zero padding, dedup), and the stored blocks re-hashed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeAddress } from '../format/node.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import type { BlockStore } from '../store/block_store.js';
import { FaultyDeviceFactory } from '../io/faulty_device.js';
import { UfsFile, readUfsSize, type UfsOpenOptions } from './ufs_file.js';
import type { Volume } from '../volume/volume.js';
import { parseSize } from '../util/size.js';
import {
  bytesDiff, makeMemoryVolume, makeTempVolume, openTempVolume, withTempVolume, type MemoryVolume, type TempVolume,
} from '../../test/helpers/temp_volume.js';

/** Where UFS files live: a real volume on disk, or memory devices. */
interface Env {
  name: string;
  store: BlockStore;
  path(name: string): string;
  open(path: string, options?: Omit<UfsOpenOptions, 'devices'>): Promise<UfsFile>;
  readUfs(path: string): Buffer;
  writeUfs(path: string, content: Buffer): void;
  remove(path: string): void;
  /** readUfsSize through the environment's devices. */
  readSize(path: string): Promise<number>;
  /**
   * Make the volume hold no blocks once every file is removed: the volume's reclaim on disk (spec §9), a fresh
   * volume in memory (the memory environment has no Volume to reclaim with). `store` changes then.
   */
  emptyVolume(): Promise<void>;
  close(): Promise<void>;
}

async function diskEnv(blockSize: number, size: string | number): Promise<Env> {
  const tv: TempVolume = await makeTempVolume({ blockSize, size });
  const volume: Volume = await openTempVolume(tv.parent);
  return {
    name: `disk, ${blockSize}-byte blocks`,
    store: volume.store,
    path: (name) => join(volume.rootDir, name),
    open: (p, o = {}) => volume.openFile(p, o),
    readUfs: (p) => readFileSync(p),
    writeUfs: (p, c) => writeFileSync(p, c),
    remove: (p) => rmSync(p, { force: true }),
    readSize: (p) => readUfsSize(p),
    emptyVolume: async () => {
      await volume.runReclaim();
    },
    close: async () => {
      await volume.close();
      await tv.cleanup();
    },
  };
}

async function memoryEnv(blockSize: number, size: string | number): Promise<Env> {
  let mem: MemoryVolume = await makeMemoryVolume({ blockSize, size });
  return {
    name: `memory, ${blockSize}-byte blocks`,
    get store() {
      return mem.store;
    },
    path: (name) => `${mem.parent}/ddfsroot/${name}`,
    open: (p, o = {}) => UfsFile.open(mem.store, p, { ...o, devices: mem.devices }),
    readUfs: (p) => mem.devices.readFile(p),
    writeUfs: (p, c) => void mem.devices.writeFile(p, c),
    remove: (p) => {
      if (mem.devices.exists(p)) mem.devices.unlink(p);
    },
    readSize: (p) => readUfsSize(p, mem.devices),
    emptyVolume: async () => {
      await mem.store.close();
      mem = await makeMemoryVolume({ blockSize, size });
    },
    close: () => mem.store.close(),
  };
}

/** Deterministic pseudo-random bytes. */
function noise(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** The file model: a Buffer, grown with zeros. */
function modelWrite(model: Buffer, offset: number, data: Buffer): Buffer {
  const end = offset + data.length;
  const out = end > model.length ? Buffer.concat([model, Buffer.alloc(end - model.length)]) : model;
  data.copy(out, offset);
  return out;
}

function modelTruncate(model: Buffer, size: number): Buffer {
  return size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
}

type DataSpec =
  | { kind: 'random'; seed: number; length: number }
  | { kind: 'zeros'; length: number }
  | { kind: 'pattern'; pattern: number; phase: number; length: number };

type Op =
  | { kind: 'write'; offset: number; data: DataSpec }
  | { kind: 'truncate'; size: number }
  | { kind: 'read'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'fsync' }
  | { kind: 'reopen' };

/** Two block-sized patterns shared by all files, so repeated blocks dedup within and across files. */
function patterns(bs: number): Buffer[] {
  return [noise(1, bs), noise(2, bs)];
}

function materialize(spec: DataSpec, bs: number): Buffer {
  if (spec.kind === 'random') return noise(spec.seed, spec.length);
  if (spec.kind === 'zeros') return Buffer.alloc(spec.length);
  const p = patterns(bs)[spec.pattern]!;
  const reps = Math.ceil((spec.phase + spec.length) / bs);
  return Buffer.concat(Array.from({ length: reps }, () => p)).subarray(spec.phase, spec.phase + spec.length);
}

const MAX_FILE_SIZE = 64 * 1024;

function opArb(bs: number): fc.Arbitrary<Op> {
  const blocksMax = MAX_FILE_SIZE / bs;
  const offset = fc.oneof(
    fc.nat(MAX_FILE_SIZE),
    fc.nat(blocksMax).map((k) => k * bs),
    fc.tuple(fc.nat(blocksMax), fc.integer({ min: -3, max: 3 })).map(([k, d]) => Math.max(0, k * bs + d)),
    fc.nat(64),
  );
  const length = fc.oneof(fc.integer({ min: 1, max: 3 * bs }), fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 4 }).map((k) => k * bs));
  const data: fc.Arbitrary<DataSpec> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('random' as const), seed: fc.nat(), length }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('zeros' as const), length }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('pattern' as const), pattern: fc.nat(1), phase: fc.oneof(fc.constant(0), fc.nat(bs - 1)), length }) },
  );
  // truncates favour block boundaries: shrinking to one drops a buffered block past the new EOF (a path that must
  // never let stale buffer bytes reappear when the file grows again)
  const truncateSize = fc.oneof(offset, fc.nat(blocksMax).map((k) => k * bs), fc.nat(blocksMax).map((k) => k * bs));
  return fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('write' as const), offset, data }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('truncate' as const), size: truncateSize }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), offset, length: fc.nat(3 * bs) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('fsync' as const) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
  );
}

/** The node list of a closed UFS file, after checking its length and header against `size`. */
function closedNodes(env: Env, path: string, size: number): Buffer {
  const { blockSize: bs, nodeSize: ns } = env.store.cfg;
  const ufs = env.readUfs(path);
  const k = Math.ceil(size / bs);
  expect(ufs.length, 'UFS length = 16 + ceil(size/bs)·node_size').toBe(16 + k * ns);
  expect(bytesDiff(ufs.subarray(0, 16), encodeUfsHeader(size))).toBe('');
  return ufs.subarray(16);
}

/**
 * Check every node of a closed file against the model: a stored block re-hashes to the node's hash and holds the
 * model's bytes with zeros past EOF; an address-0 node is a zero block (zero-block hash) or a hole (null hash).
 */
async function checkStoredBlocks(env: Env, nodes: Buffer, model: Buffer): Promise<void> {
  const { blockSize: bs, nodeSize: ns, addrSize: as, hashSize: hs } = env.store.cfg;
  const block = Buffer.alloc(bs);
  for (let j = 0; j * ns < nodes.length; j++) {
    const a = decodeAddress(nodes, j * ns, as);
    const h = nodes.subarray(j * ns + as, j * ns + as + hs);
    const want = Buffer.alloc(bs);
    model.copy(want, 0, j * bs, Math.min(model.length, (j + 1) * bs));
    expect(a).not.toBe(1);
    if (a === 0) {
      expect(env.store.isZeroHash(h)).toBe(true);
      expect(want.every((b) => b === 0)).toBe(true);
      continue;
    }
    await env.store.readBlock(a, block, 0);
    expect(bytesDiff(block, want), `block ${j} (address ${a})`).toBe('');
    expect(bytesDiff(env.store.hasher.hash(block), h), `hash of block ${j}`).toBe('');
  }
}

/** Addresses and hashes with holes (addr 0 + null hash) written as zero blocks (addr 0 + zero-block hash). */
function normalizeHoles(env: Env, nodes: Buffer): Buffer {
  const { nodeSize: ns, addrSize: as } = env.store.cfg;
  const out = Buffer.from(nodes);
  for (let o = 0; o < out.length; o += ns) {
    if (decodeAddress(out, o, as) === 0) env.store.zeroHash.copy(out, o + as);
  }
  return out;
}

let fileCounter = 0;

async function runScenario(env: Env, ops: Op[]): Promise<void> {
  const bs = env.store.cfg.blockSize;
  const path = env.path(`model-${fileCounter++}.bin`);
  let f = await env.open(path, { create: true, truncate: true });
  let model: Buffer = Buffer.alloc(0);
  try {
    expect(bytesDiff(env.readUfs(path), encodeUfsHeader(0))).toBe(''); // header at create (spec §8.4)
    for (const op of ops) {
      switch (op.kind) {
        case 'write': {
          const data = materialize(op.data, bs);
          await f.write(op.offset, data);
          model = modelWrite(model, op.offset, data);
          // the header follows every extension at once (1.0b6)
          expect(env.readUfs(path).readBigUInt64BE(8)).toBe(BigInt(model.length));
          break;
        }
        case 'truncate':
          await f.truncate(op.size);
          model = modelTruncate(model, op.size);
          break;
        case 'read': {
          const got = await f.read(op.offset, op.length);
          const want = model.subarray(Math.min(op.offset, model.length), Math.min(op.offset + op.length, model.length));
          expect(bytesDiff(got, want), `read(${op.offset}, ${op.length})`).toBe('');
          break;
        }
        case 'flush':
          await f.flush();
          break;
        case 'fsync':
          await f.fsync();
          break;
        case 'reopen':
          await f.close();
          closedNodes(env, path, model.length);
          f = await env.open(path);
          break;
      }
      expect(f.size).toBe(model.length);
      expect(bytesDiff(await f.read(0, model.length + bs), model), `content after ${JSON.stringify(op)}`).toBe('');
    }
    await f.close();
    const nodes = closedNodes(env, path, model.length);
    await checkStoredBlocks(env, nodes, model);
    // the same content written at once gives the same nodes (holes aside): canonical zero padding + dedup
    const refPath = `${path}.ref`;
    const ref = await env.open(refPath, { create: true, truncate: true });
    await ref.write(0, model);
    await ref.close();
    const refNodes = closedNodes(env, refPath, model.length);
    expect(bytesDiff(normalizeHoles(env, nodes), refNodes)).toBe('');
    // and the file reads back the same after a fresh open
    const again = await env.open(path, { readOnly: true });
    expect(bytesDiff(await again.read(0, MAX_FILE_SIZE * 2), model)).toBe('');
    await again.close();
    env.remove(refPath);
  } finally {
    await f.close().catch(() => undefined);
    env.remove(path);
  }
}

/** Bounds of the "identical content" property's inputs, per block size `bs` (its arbitraries use them). */
const PIECE_COUNT_MAX = 8;
const pieceSizeMax = (bs: number): number => 2 * bs;
const garbageExtraMax = (bs: number): number => 2 * bs;

/**
 * Most blocks one run of the "identical content" property can allocate on an empty volume (the volume is emptied before
 * each run, so this, not a sum over runs, is what it must hold; not between the strategies of a run: they must
 * dedup against each other's blocks). With L = content size, K = ceil(L/bs) blocks, N chunks (N <= L: every chunk has at
 * least 1 byte), G = garbage size:
 * - a write stores a block only when it covers the block's end (a full-block run, or the buffered block completed),
 *   plus at most one earlier dirty buffered block flushed when it moves to another block. The chunks cover [0, L)
 *   once each, so over all the chunks of a strategy the block ends add up to K and the flushes to N;
 * - strategy 1 (one write) stores K + 1 at most (the close flushes), strategies 2 and 3 (chunks) N + K + 1,
 *   strategy 4 ceil(G/bs) (the garbage) + N + K (the chunks) + 2 (the truncate flushes the dirty buffer and rewrites
 *   the new last block) + 1 (close);
 * - in all 3N + 4K + ceil(G/bs) + 6, with L <= PIECE_COUNT_MAX·pieceSizeMax(bs) and G <= L + garbageExtraMax(bs) + 1.
 */
function runBlockCountMax(bs: number): number {
  const contentSizeMax = PIECE_COUNT_MAX * pieceSizeMax(bs);
  const garbageSizeMax = contentSizeMax + garbageExtraMax(bs) + 1;
  return 3 * contentSizeMax + 4 * Math.ceil(contentSizeMax / bs) + Math.ceil(garbageSizeMax / bs) + 6;
}

/** A volume size of at least `sizeMin` that holds runBlockCountMax(bs) blocks besides addresses 0 and 1 (spec §4). */
const sizeForRuns = (bs: number, sizeMin: string): number => Math.max(parseSize(sizeMin), (runBlockCountMax(bs) + 2) * bs);

const ENVIRONMENTS: Array<[string, () => Promise<Env>, number]> = [
  ['disk-512', () => diskEnv(512, sizeForRuns(512, '32M')), 50],
  ['disk-4096', () => diskEnv(4096, sizeForRuns(4096, '64M')), 30],
  ['memory-512', () => memoryEnv(512, sizeForRuns(512, '32M')), 70],
  ['memory-4096', () => memoryEnv(4096, sizeForRuns(4096, '64M')), 40],
];

describe.each(ENVIRONMENTS)('UfsFile vs a Buffer model (%s)', (_label, makeEnv, numRuns) => {
  let env: Env;
  beforeAll(async () => {
    env = await makeEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('random write/truncate/read/flush/fsync/reopen sequences match the model after every step (fast-check)', async () => {
    const bs = env.store.cfg.blockSize;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb(bs), { minLength: 1, maxLength: 25 }), (ops) => runScenario(env, ops)),
      { numRuns },
    );
    // the volume's index stayed sound through all of it
    expect(env.store.index.nodes.checkInvariants()).toEqual([]);
  });

  it('identical content written by different write patterns gives identical node lists (fast-check)', async () => {
    const bs = env.store.cfg.blockSize;
    const pieces = fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant('random' as const), seed: fc.nat(), length: fc.integer({ min: 1, max: pieceSizeMax(bs) }) }),
        fc.record({ kind: fc.constant('zeros' as const), length: fc.integer({ min: 1, max: pieceSizeMax(bs) }) }),
        fc.record({ kind: fc.constant('pattern' as const), pattern: fc.nat(1), phase: fc.constant(0), length: fc.integer({ min: 1, max: pieceSizeMax(bs) / bs }).map((k) => k * bs) }),
      ),
      { maxLength: PIECE_COUNT_MAX },
    );
    // the volume holds the worst case of one run (it is emptied before each run)
    expect(env.store.cfg.blockCount - 2).toBeGreaterThanOrEqual(runBlockCountMax(bs));
    await fc.assert(
      fc.asyncProperty(pieces, fc.array(fc.integer({ min: 1, max: 3 * bs }), { minLength: 1, maxLength: 10 }), fc.nat(), fc.nat(garbageExtraMax(bs)), async (specs, cuts, shuffleSeed, garbageExtra) => {
        const content = Buffer.concat(specs.map((s) => materialize(s, bs)));
        // chunking of [0, length)
        const chunks: Array<[number, number]> = [];
        for (let pos = 0, c = 0; pos < content.length; c++) {
          const n = Math.min(cuts[c % cuts.length]!, content.length - pos);
          chunks.push([pos, n]);
          pos += n;
        }
        const shuffled = chunks.map((c, i) => ({ c, key: noise(shuffleSeed + i, 4).readUInt32LE(0) })).sort((x, y) => x.key - y.key).map((x) => x.c);
        const strategies: Array<(f: UfsFile) => Promise<void>> = [
          (f) => f.write(0, content),
          async (f) => {
            for (const [o, n] of chunks) await f.write(o, content.subarray(o, o + n));
          },
          async (f) => {
            for (const [o, n] of shuffled) await f.write(o, content.subarray(o, o + n));
          },
          async (f) => {
            await f.write(0, noise(shuffleSeed, content.length + garbageExtra + 1)); // garbage first, longer than the content
            for (const [o, n] of shuffled) await f.write(o, content.subarray(o, o + n));
            await f.truncate(content.length);
          },
        ];
        const lists: Buffer[] = [];
        // the blocks of earlier runs are garbage now (their files are removed): without this the shared volume
        // fills up across runs (NO_SPACE)
        await env.emptyVolume();
        for (const [i, strategy] of strategies.entries()) {
          const p = env.path(`pattern-${fileCounter}-${i}.bin`);
          const f = await env.open(p, { create: true, truncate: true });
          await strategy(f);
          await f.close();
          lists.push(Buffer.from(closedNodes(env, p, content.length)));
          env.remove(p);
        }
        fileCounter++;
        for (let i = 1; i < lists.length; i++) expect(bytesDiff(lists[i]!, lists[0]!), `strategy ${i}`).toBe('');
      }),
      { numRuns: Math.ceil(numRuns / 2) },
    );
  });
});

describe.each([['disk', diskEnv], ['memory', memoryEnv]] as const)('UfsFile details (%s)', (_label, makeEnv) => {
  let env: Env;
  beforeAll(async () => {
    env = await makeEnv(4096, '4M'); // 1024 blocks, addr_size 2, TIGER: node_size 26
  });
  afterAll(async () => {
    await env?.close();
  });

  it('a 10000-byte file on 4 KiB blocks: 3 nodes, UFS length 16 + 3·26, header size 0x2710', async () => {
    const p = env.path('ten-thousand');
    const f = await env.open(p, { create: true, truncate: true });
    await f.write(0, noise(10, 10000));
    await f.close();
    const ufs = env.readUfs(p);
    expect(ufs.length).toBe(16 + 3 * 26);
    expect(ufs.subarray(0, 16).toString('hex')).toBe('4444554d42465346' + '0000000000002710');
    expect(await env.readSize(p)).toBe(10000);
    env.writeUfs(p, Buffer.alloc(0));
    expect(await env.readSize(p)).toBe(0);
    env.writeUfs(p, Buffer.from('DDUMBFS'));
    await expect(env.readSize(p)).rejects.toMatchObject({ code: 'BAD_HEADER' });
  });

  it('a write past EOF leaves holes (all-zero nodes) and a zero block becomes address 0 + zero-block hash', async () => {
    const p = env.path('holes');
    const f = await env.open(p, { create: true, truncate: true });
    await f.write(3 * 4096, noise(3, 4096)); // blocks 0..2 are holes
    await f.write(4 * 4096, Buffer.alloc(4096)); // block 4: a written zero block
    await f.close();
    const nodes = closedNodes(env, p, 5 * 4096);
    for (let j = 0; j < 3; j++) expect(nodes.subarray(j * 26, (j + 1) * 26).every((b) => b === 0)).toBe(true);
    expect(decodeAddress(nodes, 3 * 26, 2)).toBeGreaterThanOrEqual(2);
    expect(decodeAddress(nodes, 4 * 26, 2)).toBe(0);
    expect(nodes.subarray(4 * 26 + 2, 5 * 26).toString('hex')).toBe('c50b60fa710aa94f3e5615b4d4a194e3cdfacf95e0253b6a');
  });

  it('a 0-byte UFS file opens as an empty file and gets a header at its first write', async () => {
    const p = env.path('empty');
    env.writeUfs(p, Buffer.alloc(0));
    const f = await env.open(p);
    expect(f.size).toBe(0);
    expect((await f.read(0, 100)).length).toBe(0);
    await f.write(0, Buffer.from('hi'));
    await f.close();
    expect(env.readUfs(p).length).toBe(16 + 26);
    expect(env.readUfs(p).readBigUInt64BE(8)).toBe(2n);
  });

  it('a bad header is refused with BAD_HEADER', async () => {
    const p = env.path('bad');
    env.writeUfs(p, Buffer.from('DDUMBSFF\0\0\0\0\0\0\0\x05'));
    await expect(env.open(p)).rejects.toMatchObject({ code: 'BAD_HEADER' });
    env.writeUfs(p, Buffer.from('DDUMB'));
    await expect(env.open(p)).rejects.toMatchObject({ code: 'BAD_HEADER' });
  });

  it('a missing node (UFS file cut short) reads as CORRUPT, the blocks before it still read', async () => {
    const p = env.path('cut');
    const data = noise(4, 3 * 4096);
    const f = await env.open(p, { create: true, truncate: true });
    await f.write(0, data);
    await f.close();
    env.writeUfs(p, env.readUfs(p).subarray(0, 16 + 2 * 26));
    const g = await env.open(p);
    expect(g.size).toBe(3 * 4096);
    expect(bytesDiff(await g.read(0, 8192), data.subarray(0, 8192))).toBe('');
    await expect(g.read(8000, 500)).rejects.toMatchObject({ code: 'CORRUPT' });
    await g.close();
  });

  it('stale bytes past EOF in a stored last block (upstream volumes) never reappear when the file grows', async () => {
    const p = env.path('stale');
    const data = noise(5, 4096);
    const f = await env.open(p, { create: true, truncate: true });
    await f.write(0, data);
    await f.close();
    // as the C daemon may leave it: the header says 100 bytes, the block holds 4096 bytes of data
    const ufs = env.readUfs(p);
    encodeUfsHeader(100).copy(ufs, 0);
    env.writeUfs(p, ufs);
    const g = await env.open(p);
    expect(bytesDiff(await g.read(0, 4096), data.subarray(0, 100))).toBe('');
    await g.truncate(300);
    const want = Buffer.concat([data.subarray(0, 100), Buffer.alloc(200)]);
    expect(bytesDiff(await g.read(0, 4096), want)).toBe('');
    await g.write(1000, Buffer.from('x'));
    await g.close();
    const model = Buffer.concat([want, Buffer.alloc(700), Buffer.from('x')]);
    await checkStoredBlocks(env, closedNodes(env, p, 1001), model);
  });

  it('NO_SPACE: a write that fills the volume fails; what was stored stays readable and consistent', async () => {
    const small = await makeEnv(4096, String(16 * 4096)); // 14 usable blocks
    try {
      const p = small.path('full');
      const data = noise(6, 20 * 4096);
      const f = await small.open(p, { create: true, truncate: true });
      await expect(f.write(0, data)).rejects.toMatchObject({ code: 'NO_SPACE' });
      expect(f.size).toBe(14 * 4096);
      expect(bytesDiff(await f.read(0, 20 * 4096), data.subarray(0, 14 * 4096))).toBe('');
      // writing known or zero blocks still works on the full volume
      await f.write(14 * 4096, Buffer.concat([data.subarray(0, 4096), Buffer.alloc(4096)]));
      await f.close();
      const model = Buffer.concat([data.subarray(0, 14 * 4096), data.subarray(0, 4096), Buffer.alloc(4096)]);
      await checkStoredBlocks(small, closedNodes(small, p, model.length), model);
    } finally {
      await small.close();
    }
  });

  it('operations on a closed file fail with INVALID; close twice is harmless', async () => {
    const p = env.path('closed');
    const f = await env.open(p, { create: true, truncate: true });
    await f.close();
    await f.close();
    await expect(f.write(0, Buffer.from('x'))).rejects.toMatchObject({ code: 'INVALID' });
    await expect(f.truncate(5)).rejects.toMatchObject({ code: 'INVALID' });
  });
});

describe('UfsFile through the Volume facade (withTempVolume)', () => {
  it('blocks count as used, and an overwrite or a shrink tells the volume that reclaim may free blocks', async () => {
    await withTempVolume({ blockSize: '4k', size: '1M', hash: 'SHA1' }, async (volume, tv) => {
      expect(tv.config.hashName).toBe('SHA1');
      const f = await volume.openFile(volume.ufsPath('/a'), { create: true, truncate: true });
      await f.write(0, noise(7, 3 * 4096));
      expect(volume.statfs().blockCountFree).toBe(256 - 5);
      expect(volume.mayFindFreeBlocks).toBe(false);
      await f.write(10, Buffer.from('over'));
      expect(volume.mayFindFreeBlocks).toBe(true);
      volume.mayFindFreeBlocks = false;
      await f.truncate(100);
      expect(volume.mayFindFreeBlocks).toBe(true);
      await f.close();
      expect(await volume.readUfsSize(volume.ufsPath('/a'))).toBe(100);
    });
  });
});

describe('UfsFile.pinTimes: times set by utimens are the last word', () => {
  /** A file whose block 0 is stored, then completed: its new node is held until a block-store sync. */
  async function fileWithHeldNode(volume: Volume, name: string): Promise<UfsFile> {
    const f = await volume.openFile(volume.ufsPath(name), { create: true, truncate: true });
    await f.write(0, noise(20, 100));
    await f.fsync();
    await f.write(100, noise(21, 4096 + 50));
    return f;
  }

  it('stores buffered and held data before setting the times, so nothing is written after them', async () => {
    await withTempVolume({ blockSize: '4k', size: '1M' }, async (volume) => {
      const f = await fileWithHeldNode(volume, '/held');
      const calls: string[] = [];
      const before = readFileSync(volume.ufsPath('/held'));
      await f.pinTimes(() => {
        calls.push('set');
        return () => calls.push('again');
      });
      const after = readFileSync(volume.ufsPath('/held'));
      expect(after.equals(before), 'the held node and the buffered block were not written before the times').toBe(false);
      await f.close();
      expect(readFileSync(volume.ufsPath('/held')).equals(after)).toBe(true);
      expect(calls).toEqual(['set']);
    });
  });

  it('a UFS write after the times (a held node whose first write failed) is followed by setting them again', async () => {
    const tv = await makeTempVolume({ blockSize: '4k', size: '1M' });
    try {
      const faulty = new FaultyDeviceFactory({ kinds: ['ufs'], ops: ['write'] });
      const volume = await openTempVolume(tv.parent, { devices: faulty });
      const f = await fileWithHeldNode(volume, '/retry');
      await f.flush();
      const calls: string[] = [];
      faulty.failAt = faulty.count + 1; // the held node's write inside pinTimes fails once
      await expect(f.pinTimes(() => {
        calls.push('set');
        return (handlePath) => calls.push(`again ${handlePath}`);
      })).rejects.toMatchObject({ code: 'EIO' });
      expect(calls).toEqual(['set']);
      await f.close(); // writes the held node now, then the times again
      expect(calls).toEqual(['set', `again ${volume.ufsPath('/retry')}`]);
      await volume.close();
    } finally {
      await tv.cleanup();
    }
  });

  it('a write or truncate of the user after the times ends the pin: they move the times, as on any file', async () => {
    await withTempVolume({ blockSize: '4k', size: '1M' }, async (volume) => {
      for (const change of [
        (f: UfsFile) => f.write(0, noise(22, 5000)),
        (f: UfsFile) => f.truncate(10),
        (f: UfsFile) => f.writeBehind(3, noise(23, 9000), 1 << 20),
      ]) {
        const f = await volume.openFile(volume.ufsPath('/moved'), { create: true, truncate: true });
        const calls: string[] = [];
        await f.pinTimes(() => {
          calls.push('set');
          return () => calls.push('again');
        });
        await change(f);
        await f.write(20_000, noise(24, 10)); // held nodes, header: all after the user's change
        await f.close();
        expect(calls).toEqual(['set']);
      }
    });
  });
});
