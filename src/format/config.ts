/**
 * ddfs.cfg: parse and render (spec §3).
 *
 * The file is `key: value` lines. Readers always use the stored values (two layouts exist: 1.1 with a 64 KiB-aligned
 * bitmap and node array, and the older one with the bitmap at 4096; spec §3.4), so parsing never recomputes geometry;
 * it only checks that the stored values are coherent enough to be used safely.
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
  ADDR_SIZE_MAX, BLOCK_SIZE_MAX, BLOCK_SIZE_MIN, HASH_SIZE_MAX, INDEX_PAGE_SIZE, UFS_HEADER_SIZE,
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
 * Check that stored geometry is coherent enough to address files safely (never recomputes it).
 * @throws DdfsError BAD_CONFIG
 */
export function validateConfig(cfg: DdfsConfig, source = 'ddfs.cfg'): void {
  const need = (ok: boolean, key: string, what: string): void => {
    if (!ok) throw bad(source, `key '${key}' ${what}`, key);
  };
  need(cfg.fileHeaderSize === UFS_HEADER_SIZE, 'file_header_size', `must be ${UFS_HEADER_SIZE}`);
  need(cfg.hashSize >= 1 && cfg.hashSize <= HASH_SIZE_MAX && cfg.hashSize === HASH_SIZES[cfg.hashName], 'hash_size',
    `does not match hash ${cfg.hashName}`);
  const bs = cfg.blockSize;
  need(bs >= BLOCK_SIZE_MIN && bs <= BLOCK_SIZE_MAX && (bs & (bs - 1)) === 0, 'block_size',
    `must be a power of two from ${BLOCK_SIZE_MIN} to ${BLOCK_SIZE_MAX}`);
  need(cfg.indexBlockSize > 0 && cfg.indexBlockSize <= INDEX_PAGE_SIZE, 'index_block_size', `must be at most ${INDEX_PAGE_SIZE}`);
  need(cfg.nodeOverflow >= 1 && cfg.nodeOverflow <= 100, 'node_overflow', 'is absurd');
  need(cfg.blockCount >= 2, 'block_count', 'must be at least 2');
  need(cfg.addrSize >= 1 && cfg.addrSize <= ADDR_SIZE_MAX && (cfg.addrSize >= 7 || cfg.blockCount <= 2 ** (8 * cfg.addrSize)),
    'addr_size', 'is too small for block_count');
  need(cfg.nodeSize === cfg.addrSize + cfg.hashSize, 'node_size', 'must be addr_size + hash_size');
  need(cfg.nodeCount > Math.floor(cfg.blockCount * cfg.nodeOverflow), 'node_count', 'is too small for block_count and node_overflow');
  need(cfg.nodeCount * cfg.nodeSize <= cfg.nodeBlockCount * INDEX_PAGE_SIZE, 'node_block_count', 'is too small for node_count');
  need(cfg.freeblockOffset >= INDEX_PAGE_SIZE, 'freeblock_offset', 'overlaps the index header');
  need(cfg.freeblockSize >= Math.ceil(cfg.blockCount / 8), 'freeblock_size', 'is too small for block_count');
  need(cfg.nodeOffset >= cfg.freeblockOffset + Math.ceil(cfg.blockCount / 32) * 4, 'node_offset', 'overlaps the bitmap');
  need(cfg.indexSize >= cfg.nodeOffset + cfg.nodeCount * cfg.nodeSize, 'index_size', 'is too small for the node array');
  need(cfg.blockFilename.length > 0, 'block_filename', 'is empty');
  need(cfg.indexFilename.length > 0, 'index_filename', 'is empty');
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
  let addrSize = 1;
  while (2 ** (8 * addrSize) < blockCount) addrSize++;
  const hashSize = HASH_SIZES[input.hashName];
  const nodeSize = addrSize + hashSize;
  const ov = Math.fround(input.nodeOverflow);
  const n0 = Math.trunc(blockCount * ov + 512 * ov);
  const nodeBlockCount = Math.ceil((n0 * nodeSize) / INDEX_PAGE_SIZE);
  const nodeCount = Math.floor((nodeBlockCount * INDEX_PAGE_SIZE) / nodeSize);
  const freeblockOffset = alignUp(INDEX_PAGE_SIZE, 65536);
  const freeblockSize = Math.ceil(blockCount / 8);
  const nodeOffset = alignUp(freeblockOffset + Math.ceil(freeblockSize / INDEX_PAGE_SIZE) * INDEX_PAGE_SIZE, 65536);
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
