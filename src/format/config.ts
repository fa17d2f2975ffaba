/**
 * ddfs.cfg: parse and render (spec §3).
 *
 * The file is `key: value` lines. Readers always use the stored values (two layouts exist: 1.1 with a 64 KiB-aligned
 * bitmap and node array, and the older one with the bitmap at 4096; spec §3.4). Invariant of a parsed cfg: every
 * derived key is exactly what mkddumbfs derives from the others in one of the two layouts (`validateConfig`), so a
 * cfg edited by hand or damaged cannot make the tools address the block and index files with the wrong geometry.
 * The real sizes of those files are checked against it when they are opened (store/block_store.ts).
 *
 * | #  | key               | type   | meaning                                        |
 * |----|-------------------|--------|------------------------------------------------|
 * | 1  | file_header_size  | int    | UFS header size, ≤ 16                          |
 * | 2  | hash              | string | TIGER, SHA1, TIGER128, TIGER160 (TIGER192=TIGER)|
 * | 3  | hash_size         | int    | bytes of hash per node                         |
 * | 4  | block_size        | int    | data block size, power of two                  |
 * | 5  | index_block_size  | int    | 4096                                           |
 * | 6  | node_overflow     | %.2f   | hash-table over-allocation                     |
 * | 7  | reuse_asap        | 0/1    | restart allocation at block 2 after reclaim    |
 * | 8  | auto_buffer_flush | int s  | max age of a dirty write buffer (1.1 only)     |
 * | 9  | auto_sync         | int s  | period of block/index fsync (1.1 only)         |
 * | 10 | partition_size    | int64  | nominal block-file capacity in bytes           |
 * | 11 | block_count       | int64  | block slots incl. reserved 0 and 1             |
 * | 12 | addr_size         | int    | bytes per address                              |
 * | 13 | node_size         | int    | addr_size + hash_size                          |
 * | 14 | node_count        | int64  | nodes in the hash table                        |
 * | 15 | node_block_count  | int64  | index pages used by nodes                      |
 * | 16 | freeblock_offset  | int64  | bitmap offset in the index file                |
 * | 17 | freeblock_size    | int64  | ceil(block_count/8)                            |
 * | 18 | node_offset       | int64  | node array offset in the index file            |
 * | 19 | index_size        | int64  | index file size                                |
 * | 20 | index_block_count | int64  | index_size / 4096                              |
 * | 21 | root_directory    | string | informational ("ddfsroot")                     |
 * | 22 | block_filename    | string | block file path (relative to parent or absolute)|
 * | 23 | index_filename    | string | index file path (relative to parent or absolute)|
 */
import { DdfsError } from '../errors.js';
import {
  BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, HASH_SIZE_MAX, INDEX_ALIGNMENT, INDEX_PAGE_SIZE, NODE_OVERFLOW_CFG_MAX,
  NODE_OVERFLOW_CFG_MIN, NODE_OVERFLOW_TEXT_ROUNDING, UFS_HEADER_SIZE,
} from '../limits.js';

export type HashName = 'TIGER' | 'SHA1' | 'TIGER128' | 'TIGER160';

/** Hash sizes in bytes (spec §3.2, §6). */
export const HASH_SIZES: Record<HashName, number> = { TIGER: 24, SHA1: 20, TIGER160: 20, TIGER128: 16 };

export interface DdfsConfig {
  fileHeaderSize: number;
  hashName: HashName;
  hashSize: number;
  blockSize: number;
  indexBlockSize: number;
  /** The overflow factor as the daemon uses it: strtod of the cfg's two-decimal text. */
  nodeOverflow: number;
  reuseAsap: boolean;
  /** Seconds; null when the key is absent (pre-1.1 layout). */
  autoBufferFlush: number | null;
  autoSync: number | null;
  partitionSize: number;
  blockCount: number;
  addrSize: number;
  nodeSize: number;
  nodeCount: number;
  nodeBlockCount: number;
  freeblockOffset: number;
  freeblockSize: number;
  nodeOffset: number;
  indexSize: number;
  indexBlockCount: number;
  rootDirectory: string;
  blockFilename: string;
  indexFilename: string;
}

type Kind = 'int' | 'double' | 'string' | 'bool';
interface KeyDef { key: string; field: keyof DdfsConfig; kind: Kind; optional?: boolean }

/** Keys in the order mkddumbfs 1.1 writes them (spec §3.2). */
const KEYS: readonly KeyDef[] = [
  { key: 'file_header_size', field: 'fileHeaderSize', kind: 'int' },
  { key: 'hash', field: 'hashName', kind: 'string' },
  { key: 'hash_size', field: 'hashSize', kind: 'int' },
  { key: 'block_size', field: 'blockSize', kind: 'int' },
  { key: 'index_block_size', field: 'indexBlockSize', kind: 'int' },
  { key: 'node_overflow', field: 'nodeOverflow', kind: 'double' },
  { key: 'reuse_asap', field: 'reuseAsap', kind: 'bool' },
  { key: 'auto_buffer_flush', field: 'autoBufferFlush', kind: 'int', optional: true },
  { key: 'auto_sync', field: 'autoSync', kind: 'int', optional: true },
  { key: 'partition_size', field: 'partitionSize', kind: 'int' },
  { key: 'block_count', field: 'blockCount', kind: 'int' },
  { key: 'addr_size', field: 'addrSize', kind: 'int' },
  { key: 'node_size', field: 'nodeSize', kind: 'int' },
  { key: 'node_count', field: 'nodeCount', kind: 'int' },
  { key: 'node_block_count', field: 'nodeBlockCount', kind: 'int' },
  { key: 'freeblock_offset', field: 'freeblockOffset', kind: 'int' },
  { key: 'freeblock_size', field: 'freeblockSize', kind: 'int' },
  { key: 'node_offset', field: 'nodeOffset', kind: 'int' },
  { key: 'index_size', field: 'indexSize', kind: 'int' },
  { key: 'index_block_count', field: 'indexBlockCount', kind: 'int' },
  { key: 'root_directory', field: 'rootDirectory', kind: 'string' },
  { key: 'block_filename', field: 'blockFilename', kind: 'string' },
  { key: 'index_filename', field: 'indexFilename', kind: 'string' },
];

function bad(source: string, message: string, key?: string): DdfsError {
  return new DdfsError('BAD_CONFIG', `${source}: ${message}`, { source, key });
}

/** Parse a hash name as the cfg or mkddumbfs gives it (TIGER192 is an alias of TIGER); null if unknown. */
export function parseHashName(text: string): HashName | null {
  const t = text.trim().toUpperCase();
  if (t === 'TIGER' || t === 'TIGER192') return 'TIGER';
  if (t === 'SHA1' || t === 'TIGER128' || t === 'TIGER160') return t;
  return null;
}

/**
 * Parse the text of a ddfs.cfg (spec §3.1). Unknown keys are ignored; `auto_buffer_flush` and `auto_sync` may be
 * absent (pre-1.1 layout). Integers must be plain base-10 numbers within 2^53.
 *
 * @param text the file content
 * @param source the file name, for messages
 * @throws DdfsError BAD_CONFIG naming the file and the key for a missing key, a malformed value, or incoherent geometry
 */
export function parseConfig(text: string, source = 'ddfs.cfg'): DdfsConfig {
  const values = new Map<string, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    values.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const out: Record<string, unknown> = {};
  for (const def of KEYS) {
    const v = values.get(def.key);
    if (v === undefined || v === '') {
      if (def.optional) { out[def.field] = null; continue; }
      throw bad(source, `missing key '${def.key}'`, def.key);
    }
    switch (def.kind) {
      case 'int':
      case 'bool': {
        if (!/^[+-]?\d+$/.test(v)) throw bad(source, `key '${def.key}' is not an integer: '${v}'`, def.key);
        const n = Number(v);
        if (!Number.isSafeInteger(n) || n < 0) throw bad(source, `key '${def.key}' is out of range: '${v}'`, def.key);
        out[def.field] = def.kind === 'bool' ? n !== 0 : n;
        break;
      }
      case 'double': {
        const n = Number(v);
        if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v) || !Number.isFinite(n)) {
          throw bad(source, `key '${def.key}' is not a number: '${v}'`, def.key);
        }
        out[def.field] = n;
        break;
      }
      case 'string':
        out[def.field] = v;
        break;
    }
  }
  const hashName = parseHashName(String(out.hashName));
  if (hashName === null) throw bad(source, `unknown hash '${String(out.hashName)}'`, 'hash');
  out.hashName = hashName;
  const cfg = out as unknown as DdfsConfig;
  validateConfig(cfg, source);
  return cfg;
}

/**
 * Cross-check every key of a parsed cfg against the others (spec §3.2, §3.3), so a cfg that lies about the geometry
 * is refused before any tool reads or writes the volume with it: a wrong `block_size` or `block_count` makes every
 * address point at other bytes, and a repair would then "fix" good files into bad ones.
 *
 * Each derived key must be exactly what mkddumbfs computes from the keys it derives from, in either layout
 * (spec §3.4): 1.1 (bitmap at 65536, node array 64 KiB-aligned) or pre-1.1 (bitmap at 4096, node array right after
 * the bitmap pages: the C formula without its 64 KiB rounding). The one tolerance: mkddumbfs sizes the node array
 * (`node_block_count`) with the factor as typed, while the cfg keeps it with two decimals, so any factor that prints
 * as the stored text is accepted.
 * The keys are checked in derivation order and the first mismatch is reported, naming the derived key.
 *
 * @throws DdfsError BAD_CONFIG, one line naming `source`, the key, its value and what the other keys require
 */
export function validateConfig(cfg: DdfsConfig, source = 'ddfs.cfg'): void {
  const need = (ok: boolean, key: string, what: string): void => {
    if (!ok) throw bad(source, `key '${key}' ${what}`, key);
  };
  const derived = (key: string, actual: number, expected: number, from: string): void => {
    need(actual === expected, key, `is ${actual}, but ${from} gives ${expected}`);
  };
  need(cfg.fileHeaderSize === UFS_HEADER_SIZE, 'file_header_size', `must be ${UFS_HEADER_SIZE}`);
  need(cfg.hashSize >= 1 && cfg.hashSize <= HASH_SIZE_MAX && cfg.hashSize === HASH_SIZES[cfg.hashName], 'hash_size',
    `does not match hash ${cfg.hashName}`);
  const bs = cfg.blockSize;
  need(bs >= BLOCK_SIZE_MIN && bs <= BLOCK_SIZE_MAX && (bs & (bs - 1)) === 0, 'block_size',
    `must be a power of two from ${BLOCK_SIZE_MIN} to ${BLOCK_SIZE_MAX}`);
  need(cfg.indexBlockSize === INDEX_PAGE_SIZE, 'index_block_size', `must be ${INDEX_PAGE_SIZE}`);
  need(cfg.nodeOverflow >= NODE_OVERFLOW_CFG_MIN && cfg.nodeOverflow <= NODE_OVERFLOW_CFG_MAX, 'node_overflow',
    `must be from ${NODE_OVERFLOW_CFG_MIN} to ${NODE_OVERFLOW_CFG_MAX}`);

  const bc = cfg.blockCount;
  need(bc >= 2, 'block_count', 'must be at least 2');
  derived('block_count', bc, Math.floor(cfg.partitionSize / bs), `partition_size / block_size = ${cfg.partitionSize} / ${bs}`);
  derived('addr_size', cfg.addrSize, addrSizeFor(bc), `block_count ${bc}`);
  derived('node_size', cfg.nodeSize, cfg.addrSize + cfg.hashSize, 'addr_size + hash_size');

  const ov = cfg.nodeOverflow;
  const nbcMin = nodeBlockCountFor(bc, cfg.nodeSize, ov - NODE_OVERFLOW_TEXT_ROUNDING);
  const nbcMax = nodeBlockCountFor(bc, cfg.nodeSize, ov + NODE_OVERFLOW_TEXT_ROUNDING);
  need(cfg.nodeBlockCount >= nbcMin && cfg.nodeBlockCount <= nbcMax, 'node_block_count',
    `is ${cfg.nodeBlockCount}, but block_count ${bc}, node_size ${cfg.nodeSize} and node_overflow ${ov.toFixed(2)} give ` +
    (nbcMin === nbcMax ? `${nbcMin}` : `${nbcMin} to ${nbcMax}`));
  derived('node_count', cfg.nodeCount, Math.floor((cfg.nodeBlockCount * INDEX_PAGE_SIZE) / cfg.nodeSize),
    `node_block_count × ${INDEX_PAGE_SIZE} / node_size`);
  // the hash never maps past floor(block_count·overflow) (spec §3.3): the table must reach that slot
  need(cfg.nodeCount > Math.floor(bc * ov), 'node_count', 'is too small for block_count and node_overflow');

  need(cfg.freeblockOffset === INDEX_ALIGNMENT || cfg.freeblockOffset === INDEX_PAGE_SIZE, 'freeblock_offset',
    `is ${cfg.freeblockOffset}, but must be ${INDEX_ALIGNMENT} (1.1 layout) or ${INDEX_PAGE_SIZE} (pre-1.1 layout)`);
  derived('freeblock_size', cfg.freeblockSize, Math.ceil(bc / 8), `block_count ${bc} / 8`);
  derived('node_offset', cfg.nodeOffset, nodeOffsetFor(cfg.freeblockOffset, cfg.freeblockSize),
    `freeblock_offset ${cfg.freeblockOffset} and freeblock_size ${cfg.freeblockSize}`);
  derived('index_size', cfg.indexSize, cfg.nodeOffset + cfg.nodeBlockCount * INDEX_PAGE_SIZE,
    `node_offset + node_block_count × ${INDEX_PAGE_SIZE}`);
  derived('index_block_count', cfg.indexBlockCount, cfg.indexSize / INDEX_PAGE_SIZE, `index_size / ${INDEX_PAGE_SIZE}`);
  need(cfg.blockFilename.length > 0, 'block_filename', 'is empty');
  need(cfg.indexFilename.length > 0, 'index_filename', 'is empty');
}

/** Smallest n ≥ 1 with 2^(8n) ≥ block_count: bytes per address (spec §3.3). */
function addrSizeFor(blockCount: number): number {
  let addrSize = 1;
  while (2 ** (8 * addrSize) < blockCount) addrSize++;
  return addrSize;
}

/** Index pages of the node array for an overflow factor as mkddumbfs uses it (spec §3.3: n0, then page rounding). */
function nodeBlockCountFor(blockCount: number, nodeSize: number, overflow: number): number {
  const n0 = Math.trunc(blockCount * overflow + 512 * overflow);
  return Math.ceil((n0 * nodeSize) / INDEX_PAGE_SIZE);
}

/**
 * Where the node array starts (spec §3.3, §3.4): in the 1.1 layout (bitmap at 65536) after the bitmap pages rounded
 * up to 64 KiB; in the pre-1.1 layout (bitmap at 4096) right after the bitmap pages.
 */
function nodeOffsetFor(freeblockOffset: number, freeblockSize: number): number {
  const afterBitmap = freeblockOffset + Math.ceil(freeblockSize / INDEX_PAGE_SIZE) * INDEX_PAGE_SIZE;
  return freeblockOffset === INDEX_ALIGNMENT ? alignUp(afterBitmap, INDEX_ALIGNMENT) : afterBitmap;
}

/**
 * C printf `%.2f` for the overflow factor. glibc rounds an exact binary tie (an odd multiple of 1/8, e.g. 1.125)
 * to even ("1.12") where toFixed rounds it up ("1.13"); every other value has no exact tie and toFixed agrees.
 */
function formatOverflow(v: number): string {
  const eighths = v * 8; // exact in binary
  if (Number.isInteger(eighths) && Math.abs(eighths % 2) === 1) {
    const hundredths = eighths * 12.5; // exact: ends in .5
    const down = Math.floor(hundredths);
    return ((down % 2 === 0 ? down : down + 1) / 100).toFixed(2);
  }
  return v.toFixed(2);
}

/**
 * Render a cfg in the byte layout mkddumbfs 1.1 writes (spec §3.2): one `key: value` line per key in table order;
 * absent optional keys (pre-1.1 volumes) are left out.
 */
export function renderConfig(cfg: DdfsConfig): string {
  let s = '';
  for (const def of KEYS) {
    const v = cfg[def.field];
    if (v === null && def.optional) continue;
    let text: string;
    if (def.kind === 'double') text = formatOverflow(v as number);
    else if (def.kind === 'bool') text = v ? '1' : '0';
    else text = String(v);
    s += `${def.key}: ${text}\n`;
  }
  return s;
}

/** Inputs of the mkddumbfs geometry (spec §3.3). */
export interface GeometryInput {
  partitionSize: number;
  blockSize: number;
  hashName: HashName;
  /** The -o factor as typed; mkddumbfs rounds it to a C float (spec §3.3 note). */
  nodeOverflow: number;
  reuseAsap: boolean;
  blockFilename?: string;
  indexFilename?: string;
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}

/**
 * Derive a 1.1-layout config exactly as mkddumbfs 1.1 does (spec §3.3), including the float32 rounding of the
 * overflow factor, so the same options give the same ddfs.cfg and index bytes.
 * @throws DdfsError USAGE when the partition holds fewer than 2 blocks
 */
export function deriveConfig(input: GeometryInput): DdfsConfig {
  const bs = input.blockSize;
  const blockCount = Math.floor(input.partitionSize / bs);
  if (blockCount < 2) throw new DdfsError('USAGE', `partition of ${input.partitionSize} bytes holds fewer than 2 blocks`);
  const addrSize = addrSizeFor(blockCount);
  const hashSize = HASH_SIZES[input.hashName];
  const nodeSize = addrSize + hashSize;
  const ov = Math.fround(input.nodeOverflow);
  const nodeBlockCount = nodeBlockCountFor(blockCount, nodeSize, ov);
  const nodeCount = Math.floor((nodeBlockCount * INDEX_PAGE_SIZE) / nodeSize);
  const freeblockOffset = alignUp(INDEX_PAGE_SIZE, INDEX_ALIGNMENT);
  const freeblockSize = Math.ceil(blockCount / 8);
  const nodeOffset = nodeOffsetFor(freeblockOffset, freeblockSize);
  const indexSize = nodeOffset + nodeBlockCount * INDEX_PAGE_SIZE;
  const text = formatOverflow(ov);
  return {
    fileHeaderSize: UFS_HEADER_SIZE,
    hashName: input.hashName,
    hashSize,
    blockSize: bs,
    indexBlockSize: INDEX_PAGE_SIZE,
    nodeOverflow: Number(text),
    reuseAsap: input.reuseAsap,
    autoBufferFlush: 60,
    autoSync: 120,
    partitionSize: input.partitionSize,
    blockCount,
    addrSize,
    nodeSize,
    nodeCount,
    nodeBlockCount,
    freeblockOffset,
    freeblockSize,
    nodeOffset,
    indexSize,
    indexBlockCount: indexSize / INDEX_PAGE_SIZE,
    rootDirectory: 'ddfsroot',
    blockFilename: input.blockFilename ?? 'ddfsblocks',
    indexFilename: input.indexFilename ?? 'ddfsidx',
  };
}

/** Bytes of the bitmap that hold words: 4·ceil(block_count/32) (spec §5.1, §5.8). */
export function bitmapWordBytes(cfg: Pick<DdfsConfig, 'blockCount'>): number {
  return Math.ceil(cfg.blockCount / 32) * 4;
}
