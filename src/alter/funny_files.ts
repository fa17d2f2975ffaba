/**
 * alterddumbfs `-f` (the "funny files") and `-u` (a simulated power cut), spec §13.2, as upstream made the fixture
 * volumes `funny-f` and `crash-u` (fixtures/ddumbfs-1.1/README.md).
 *
 * `-f` stores one random block "bb" and four useless blocks (filled with W, X, Y, Z: in the index and the bitmap,
 * referenced by no file), then writes these UFS files into ddfsroot (bs = block size, ns = node size, X = address 3,
 * or 2 when bb got 3 — a block of another file, as upstream):
 *
 * | file                         | header size | nodes                         | a repair makes it                 |
 * |------------------------------|-------------|-------------------------------|-----------------------------------|
 * | ff_ok_bb                     | bs          | (bb, H(bb))                   | unchanged                          |
 * | ff_already_corrupted         | bs          | (1, 'A'…)                     | ` C  ` (already lost)              |
 * | ff_block_not_found_1         | bs          | (X, 'A'…)                     | ` C  ` (X → 1)                     |
 * | ff_block_not_found_2         | bs          | (bb, 'C'…)                    | ` C  ` (bb → 1)                    |
 * | ff_recoverable_1             | bs          | (1, H(bb))                    | `F   ` (1 → bb, self-healing)      |
 * | ff_recoverable_2             | bs          | (X, H(bb))                    | `F   ` (X → bb)                    |
 * | ff_bad_zero                  | bs          | (0, 'D'…)                     | ` C  ` (0 → 1)                     |
 * | ff_ok_zero_null              | bs          | (0, 00…)  a hole              | unchanged                          |
 * | ff_ok_zero_zero              | bs          | (0, H(zero block))            | unchanged                          |
 * | ff_size_in_header_too_big    | bs + bs/2   | (bb, H(bb))                   | `F s ` size := 1·bs                |
 * | ff_size_in_header_too_small  | bs/2        | 3 × (bb, H(bb))               | `F s ` size := 3·bs                |
 * | ff_extra_data                | bs          | (bb, H(bb)) + ns/2 bytes      | `F  l` cut to whole nodes          |
 * | ff_empty                     | (0 bytes)   |                               | unchanged (a valid empty file)     |
 * | ff_bad_header_short          | "wrong short header" (18 bytes)             | ` H  ` ignored                     |
 * | ff_bad_header_long           | the file's path, NUL-padded to 16 + ns bytes| ` H  ` ignored                     |
 *
 * `-u` saves a checkpoint, then adds two blocks the checkpoint does not know: a random block written for real and
 * referenced by `ff_unexpected_shutdown_recoverable`, and an index node (allocated in the bitmap) for the hash of a
 * random block whose data is never written, referenced by `ff_unexpected_shutdown_bad`. A crash recovery re-hashes
 * both: the first is good, the second is lost.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { ADDR_LOST, ADDR_ZERO } from '../limits.js';
import { decodeAddress, encodeAddress } from '../format/node.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import type { DeviceFactory } from '../io/device.js';
import type { SeededRandom } from '../io/crash_device.js';
import type { BlockStore } from '../store/block_store.js';

/** The byte the useless blocks of `-f` are filled with (upstream: W, X, Y, Z). */
export const USELESS_BLOCK_FILLS = ['W', 'X', 'Y', 'Z'] as const;

export const FUNNY_FILE_NAMES = [
  'ff_ok_bb', 'ff_already_corrupted', 'ff_block_not_found_1', 'ff_block_not_found_2', 'ff_recoverable_1', 'ff_recoverable_2',
  'ff_bad_zero', 'ff_ok_zero_null', 'ff_ok_zero_zero', 'ff_size_in_header_too_big', 'ff_size_in_header_too_small',
  'ff_extra_data', 'ff_empty', 'ff_bad_header_short', 'ff_bad_header_long',
] as const;

export const CRASH_FILE_RECOVERABLE = 'ff_unexpected_shutdown_recoverable';
export const CRASH_FILE_BAD = 'ff_unexpected_shutdown_bad';

/** A stored block: its address and its node bytes (address + hash). */
interface StoredBlock {
  address: number;
  hash: Buffer;
}

/** Store one block through the dedup path (data written, node indexed, bit allocated). */
async function storeBlock(store: BlockStore, data: Buffer): Promise<StoredBlock> {
  const { nodeSize: ns, addrSize } = store.cfg;
  const node = Buffer.alloc(ns);
  const { stored, error } = await store.storeBlocks(data, 1, node, 0);
  if (error || stored !== 1) throw error ?? new DdfsError('IO', 'block not stored');
  return { address: decodeAddress(node, 0, addrSize), hash: Buffer.from(node.subarray(addrSize)) };
}

function nodeBytes(store: BlockStore, address: number, hash: Buffer): Buffer {
  const { nodeSize: ns, addrSize } = store.cfg;
  const b = Buffer.alloc(ns);
  encodeAddress(b, 0, addrSize, address);
  hash.copy(b, addrSize, 0, store.cfg.hashSize);
  return b;
}

function fill(store: BlockStore, ch: string): Buffer {
  return Buffer.alloc(store.cfg.hashSize, ch, 'latin1');
}

/** A UFS file: header with `size`, then the nodes, then `extra` bytes. */
function ufsBytes(size: number, nodes: Buffer[], extra: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeUfsHeader(size), ...nodes, extra]);
}

async function writeUfsFile(devices: DeviceFactory, p: string, content: Buffer): Promise<void> {
  const dev = await devices.open(p, { create: true, truncate: true, mode: 0o644 });
  try {
    if (content.length > 0) await dev.write(content, 0);
    await dev.sync();
  } finally {
    await dev.close();
  }
}

/**
 * `-f`: store the bb block and the useless blocks, write the funny files into `rootDir`.
 * @param displayRoot the root as the user named it (the text of ff_bad_header_long, as upstream)
 * @returns the lines to print
 */
export async function createFunnyFiles(store: BlockStore, rootDir: string, displayRoot: string, devices: DeviceFactory, rng: SeededRandom): Promise<string[]> {
  const { blockSize: bs, nodeSize: ns } = store.cfg;
  const lines: string[] = [];
  const bb = await storeBlock(store, rng.bytes(bs));
  lines.push(`funny files: block bb stored at address ${bb.address}`);
  for (const ch of USELESS_BLOCK_FILLS) {
    const u = await storeBlock(store, Buffer.alloc(bs, ch, 'latin1'));
    lines.push(`funny files: useless block '${ch}' at address ${u.address}`);
  }
  const other = bb.address === 3 ? 2 : 3;
  const ok = nodeBytes(store, bb.address, bb.hash);
  const zeroHash = store.zeroHash;
  const files: Array<[string, Buffer, string]> = [
    ['ff_ok_bb', ufsBytes(bs, [ok]), `1 node (addr=${bb.address}), good`],
    ['ff_already_corrupted', ufsBytes(bs, [nodeBytes(store, ADDR_LOST, fill(store, 'A'))]), 'lost block (addr=1), unknown hash'],
    ['ff_block_not_found_1', ufsBytes(bs, [nodeBytes(store, other, fill(store, 'A'))]), `addr=${other} with a hash not in the index`],
    ['ff_block_not_found_2', ufsBytes(bs, [nodeBytes(store, bb.address, fill(store, 'C'))]), `addr=${bb.address} with a hash not in the index`],
    ['ff_recoverable_1', ufsBytes(bs, [nodeBytes(store, ADDR_LOST, bb.hash)]), `lost block (addr=1) whose hash is at ${bb.address}`],
    ['ff_recoverable_2', ufsBytes(bs, [nodeBytes(store, other, bb.hash)]), `addr=${other} with the hash of block ${bb.address}`],
    ['ff_bad_zero', ufsBytes(bs, [nodeBytes(store, ADDR_ZERO, fill(store, 'D'))]), 'addr=0 with a hash that is not the zero hash'],
    ['ff_ok_zero_null', ufsBytes(bs, [Buffer.alloc(ns)]), 'a hole (addr=0, null hash), good'],
    ['ff_ok_zero_zero', ufsBytes(bs, [nodeBytes(store, ADDR_ZERO, zeroHash)]), 'a zero block (addr=0, zero-block hash), good'],
    ['ff_size_in_header_too_big', ufsBytes(bs + bs / 2, [ok]), `size ${bs + bs / 2} with 1 node`],
    ['ff_size_in_header_too_small', ufsBytes(bs / 2, [ok, ok, ok]), `size ${bs / 2} with 3 nodes`],
    ['ff_extra_data', ufsBytes(bs, [ok], ok.subarray(0, Math.floor(ns / 2))), `1 node + ${Math.floor(ns / 2)} extra bytes`],
    ['ff_empty', Buffer.alloc(0), 'a 0-byte file, good'],
    ['ff_bad_header_short', Buffer.from('wrong short header', 'latin1'), 'an 18-byte header without magic'],
    ['ff_bad_header_long', badLongHeader(path.join(displayRoot, 'ff_bad_header_long'), 16 + ns), `${16 + ns} bytes without magic`],
  ];
  for (const [name, content, what] of files) {
    await writeUfsFile(devices, path.join(rootDir, name), content);
    lines.push(`funny file ${name}: ${what}`);
  }
  return lines;
}

function badLongHeader(text: string, length: number): Buffer {
  const b = Buffer.alloc(length);
  b.write(text, 0, Math.min(length, Buffer.byteLength(text, 'latin1')), 'latin1');
  return b;
}

/**
 * `-u`: checkpoint, then one recoverable and one unrecoverable block and file (see the file comment).
 * @returns the lines to print
 */
export async function simulateCrash(store: BlockStore, rootDir: string, devices: DeviceFactory, rng: SeededRandom): Promise<string[]> {
  const { blockSize: bs } = store.cfg;
  const lines: string[] = [];
  await store.checkpoint();
  lines.push(`unexpected shutdown: checkpoint saved with ${store.blockCountUsed} blocks in use`);

  const good = await storeBlock(store, rng.bytes(bs));
  await writeUfsFile(devices, path.join(rootDir, CRASH_FILE_RECOVERABLE), ufsBytes(bs, [nodeBytes(store, good.address, good.hash)]));
  lines.push(`unexpected shutdown: ${CRASH_FILE_RECOVERABLE}: block ${good.address} written after the checkpoint (recoverable)`);

  const hash = store.hasher.hash(rng.bytes(bs));
  const found = store.index.nodes.lookup(hash);
  if (found.found) throw new DdfsError('CORRUPT', 'random block already indexed');
  const address = store.index.bitmap.allocate();
  if (address < 0) throw new DdfsError('NO_SPACE', 'no free block for the unrecoverable block');
  store.index.nodes.insertAt(found.slot, address, hash);
  await writeUfsFile(devices, path.join(rootDir, CRASH_FILE_BAD), ufsBytes(bs, [nodeBytes(store, address, hash)]));
  lines.push(`unexpected shutdown: ${CRASH_FILE_BAD}: block ${address} indexed but never written (unrecoverable)`);
  return lines;
}
