/**
 * The slave side of a pass by content (mirroring spec §4.7, §4.8, §4.9): answers DIGESTQ/HASHQ in a two-way stream,
 * hashes and stores every BLOCK, stages node lists with the slave's OWN addresses under
 * `<parent>/ddfsmirror/staging/<pass>/`, and applies the staged ops by renames at each CHECKPOINT and at COMMIT.
 *
 * Durability order of a window (§4.8): block file and index synced, staged UFS files made durable (written without
 * fsync, then one syncfs(2) for the whole window), renames, directories fsynced, then `state` rewritten (resume data at a CHECKPOINT, the claim at COMMIT), and only then ACK.
 * A staged file of a few node pages is written whole at its FILE_END, off the JS thread; every such write is settled
 * before its window is applied, and before the pass returns or throws.
 *
 * Invariants:
 * - A BLOCK whose bytes do not hash to its hash, the zero or null hash, or a node naming a hash the slave does not
 *   hold rejects the pass before the window is applied (ERROR to the master; the tree keeps the last applied window).
 * - Received new blocks are stored in batches (MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES), always before the next record
 *   that is not a BLOCK is handled: a HASHQ, FILE_NODES or window sees every block received before it (in the index;
 *   their writes may still be in flight, and every one is settled before the window's block file is synced, before
 *   a held block is re-read, and before the pass returns or throws). A batch is hashed before it is stored: one
 *   whose bytes do not hash to its BLOCK's hash rejects the pass with nothing of that batch stored.
 * - HAVE answers are conservative (§4.8): after an unclean stop (`.autofsck` at open, or an interrupted pass) a
 *   block is re-read and hashed before it is answered "have"; one that fails is answered "missing" and rewritten.
 * - Every op is a no-op when its target already matches (same bytes and metadata), so replaying a pass is harmless.
 * - Nothing of the tree is removed by a pass: what an op replaces or deletes is moved aside into the pass's undo area,
 *   and every change is logged there first (mirror/undo.ts), so `rollbackPass` can put back the last claim's tree. The
 *   areas are dropped only after the COMMIT claim is durable.
 * - RENAME (a hint, spec §4.5) is applied at once, after the window staged before it: the entry the slave had at
 *   `from` when the pass began (in the tree or already in the undo area) moves to `to` only if its digest NOW is the
 *   precondition digest, and never through a symlink, out of or into a reserved root name, or into itself. The
 *   master's next DIGESTQ of `to` is answered with the digest that precondition verified.
 * - Paths come from the codec (components checked: no `..`, NUL, `/` or empty component); every parent on the way
 *   is lstat-ed and must be a real directory, and the root's reserved names (`.ddumbfs`, `ddfsmirror`) are refused:
 *   nothing outside `ddfsroot/` or under `ddfsmirror/` is ever touched through a name.
 * - A pass deleting more than MIRROR_MASS_DELETE_PERCENT of the slave's entries is refused before the window that
 *   crosses the bound is applied, unless allowed.
 * - RECLAIM PIN HOOK: `activePassPins(parentDir)` gives the hashes pinned by the pass running on that slave: every
 *   hash answered "have", every block received and every hash of a staged node list (spec §4.8). Reclaim on the slave
 *   must treat them as references until the pass commits or is abandoned: the pass registers them with its
 *   volume (PassVolume.pin, Volume.addReferenceProvider), which the daemon's reclaim reads at its start and sweep.
 * - A mounted slave is applied inside its daemon (control.ts), against the daemon's block store and index.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { bytesEqual } from '../util/bytes.js';
import {
  ADDR_ZERO, MIRROR_BLOCK_HASH_BATCH_COUNT_MAX, MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES, MIRROR_BLOCK_STORE_WRITE_COUNT_MAX, MIRROR_BLOCK_WRITEBACK_SIZE_BYTES, MIRROR_MASS_DELETE_PERCENT, MIRROR_NEED_PATH_COUNT_MAX, MIRROR_RENAME_HINT_COUNT_MAX,
  MIRROR_STAGED_BUFFER_SIZE_BYTES, MIRROR_STAGED_FSYNC_COUNT_MAX, MIRROR_STAGED_WRITE_COUNT_MAX, MIRROR_STAGING_SUBDIRECTORY_COUNT, UFS_HEADER_SIZE,
} from '../limits.js';
import { ROOT_DIRECTORY, ROOT_RESERVED_NAMES } from '../format/layout.js';
import { encodeAddress } from '../format/node.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import {
  closeFd, createExclusive, ensureDirectory, listKinds, listNames, lstatOrNull, makeDirectory, makeHardLink, makeSpecial, makeSymlink,
  readBytesOrNull, readLinkOrNull, removeTree, removeTreeAsync, renamePath, setMode, setMtimes, setOwner, syncDirectory, syncFile, syncFilesystem, writeAt, writeNewFile, CreateLane,
} from '../io/mirror_fs.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import type { RecordReader, RecordWriter } from './channel.js';
import { FileContentHasher, VolumeDigests, type TreeAccess } from './digest.js';
import { DigestCache } from './digest_cache.js';
import { HashWorkers, type HashedBatch } from '../store/hash_pool.js';
import { HashKeySet } from '../store/hash_keys.js';
import type { PassVolume } from './pass_volume.js';
import { CAPABILITY_BLOCKS, pathProblem, REASON, type DirEntry, type EntryType, type Meta, type SpecialKind, type Xattr } from './record_body.js';
import { isReservedXattr } from '../format/layout.js';
import { readAllXattrs, removeXattr, setXattr } from '../io/xattr.js';
import { claimTid, lineageIdOf, mirrorDirectory, readMirrorState, writeMirrorState, type MirrorState } from './state.js';
import { STREAM_VERSION } from './stream_codec.js';
import { dropUndoAreas, dropUndoAreasAsync, rollbackInterrupted, rollbackPass, UndoLog } from './undo.js';

/** Pins of the passes running in this process, by resolved parent directory (the RECLAIM PIN HOOK). */
const PASS_PINS = new Map<string, ReadonlySet<string>>();

/**
 * The hashes pinned by the pass running on the slave at `parentDir` in this process (latin1 keys of the raw hash
 * bytes), or null when none runs. Reclaim must keep every block whose hash is in it (spec §4.8).
 */
export function activePassPins(parentDir: string): ReadonlySet<string> | null {
  return PASS_PINS.get(path.resolve(parentDir)) ?? null;
}

/** Options of the slave side. */
export interface SlaveOptions {
  access: TreeAccess;
  /** Answers to the master (two-way); null for a one-way stream (`write`). */
  output: RecordWriter | null;
  allowMassDelete?: boolean;
  /** Test hooks (spec §5 scenario 9): a hook that throws stops the slave as a kill would (see SlaveHooks). */
  hooks?: SlaveHooks;
  /** Hash threads hashing the blocks received (default: one per CPU; a local copy gives each side half). */
  hashThreads?: number;
  /** Nice value of those threads (default HASH_WORKER_NICE: a daemon's; the mirrorddumbfs CLI's copy gives 0). */
  hashNice?: number;
}

/**
 * Where the slave calls its test hook: after a received block is stored and before the store is synced
 * ('block-stored'), after a window's staged files are fsynced and before its renames ('staged-synced'), after each op
 * of a window (and each RENAME) is applied ('op-applied', with the op's index in the window), after the claim is
 * written and before the undo areas are dropped and ACK is sent ('claim-written').
 */
export type SlaveHookPoint = 'block-stored' | 'staged-synced' | 'op-applied' | 'claim-written';

/**
 * Test hooks of the slave. When `at` throws, the slave stops at once as if killed: it sends no ERROR, and it closes
 * its block file and index WITHOUT syncing them (what is not yet synced is as a kill leaves it).
 */
export interface SlaveHooks {
  at?: (point: SlaveHookPoint, detail: number) => void;
}

/** What the slave did. */
export interface SlaveSummary {
  blocksReceived: number;
  filesApplied: number;
  opsNoop: number;
  deleted: number;
  windows: number;
  committed: boolean;
  /** RENAME hints applied (the subtree moved, not resent) and refused (precondition failed: the master resends). */
  renamesApplied: number;
  renamesRefused: number;
  /** Entries asked for by NEED (an incremental pass listed them as unchanged since our claim and we lacked them). */
  needsSent: number;
}

type Op =
  | { op: 'dir'; path: Buffer; meta: Meta }
  | { op: 'dirlist'; path: Buffer; entries: DirEntry[] }
  | { op: 'delete'; path: Buffer }
  | { op: 'file'; path: Buffer; staged: Buffer; meta: Meta; linkGroup: bigint }
  | { op: 'symlink'; path: Buffer; target: Buffer; meta: Meta }
  | { op: 'special'; path: Buffer; kind: SpecialKind; rdev: bigint; meta: Meta }
  | { op: 'link'; path: Buffer; linkGroup: bigint };

/** Whether `a` is `b` or one of its ancestors (byte paths, '' = the root). */
function isSelfOrAncestor(a: Buffer, b: Buffer): boolean {
  if (a.length === 0 || a.equals(b)) return true;
  return b.length > a.length && b[a.length] === 0x2f && b.subarray(0, a.length).equals(a);
}

const RESERVED = ROOT_RESERVED_NAMES.map((n) => Buffer.from(n, 'latin1'));
const SLASH = 0x2f;

function typeOfStat(kind: 'file' | 'dir' | 'symlink' | 'special'): EntryType {
  return kind;
}


/**
 * The names (latin1 keys of the raw bytes) in our directory `dir` (a symlink on the way is followed, as an lstat of
 * a path under it would be); an empty set when it is gone or not a directory (ENOENT, ENOTDIR, ELOOP: a symlink that
 * loops on the way).
 * @throws Node errors of readdir other than those
 */
function namesPresent(dir: Buffer): Set<string> {
  try {
    return new Set(listNames(dir).map((n) => n.toString('latin1')));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return new Set();
    throw err;
  }
}
/**
 * Run the slave side of one pass into the opened volume `vol` (pass_volume.ts; the caller closes it), reading
 * records from `input`.
 * @throws DdfsError INVALID (not a slave, a master of another lineage, another block size or hash, a mass
 *   delete refused, a hostile path); CORRUPT (a BLOCK that does not match its hash, a corrupt stream, a missing
 *   block); TOO_SHORT (the stream ended before COMMIT)
 */
export async function runSlave(vol: PassVolume, input: RecordReader, options: SlaveOptions): Promise<SlaveSummary> {
  const parentDir = vol.label;
  const parent = vol.parentDir;
  const state0 = readMirrorState(parent);
  if (state0?.role === 'master') throw new DdfsError('INVALID', `${parentDir}: is a master (lineage epoch ${state0.lineage}): not a target; to make it a replica of another master: mirrorddumbfs rebind ${parentDir} --from MASTER`, { path: parentDir });
  if (state0 === null || state0.role !== 'slave') throw new DdfsError('INVALID', `${parentDir}: not a slave (run mirrorddumbfs init-slave ${parentDir} --from MASTER first)`, { path: parentDir });
  let state: MirrorState = state0;
  const cfg = vol.config;
  const out = options.output;
  const store = vol.store;
  const rootDir = pathBytes(path.join(parent, ROOT_DIRECTORY));
  const { hashSize, blockSize, nodeSize, addrSize } = cfg;
  const summary: SlaveSummary = { blocksReceived: 0, filesApplied: 0, opsNoop: 0, deleted: 0, windows: 0, committed: false, renamesApplied: 0, renamesRefused: 0, needsSent: 0 };
  let killed = false;
  /** Call the test hook; a throw is a simulated kill (see SlaveHooks). */
  const hook = (point: SlaveHookPoint, detail = 0): void => {
    try {
      options.hooks?.at?.(point, detail);
    } catch (err) {
      killed = true;
      throw err;
    }
  };
  let undo: UndoLog | null = null;
  /** The removal of a committed pass's undo areas and staging directory, started after its ACK. */
  let staleRemoval: Promise<void> = Promise.resolve();
  /** RENAME hints: entry digest (latin1) → a path of the slave's tree at the first walk with that digest. */
  const hintIndex = new Map<string, Buffer>();
  /** Targets of the RENAMEs applied, with the digest their precondition verified: the master's next DIGESTQ of it. */
  const renamed = new Map<string, Buffer>();
  /** RECLAIM PIN HOOK (see the file comment): released when the pass ends, committed or not. */
  const pinnedHashes = new HashKeySet(hashSize);
  PASS_PINS.set(parent, pinnedHashes);
  const unpin = vol.pin(pinnedHashes);
  const linkTargets = new Map<bigint, Buffer>();
  let digests: VolumeDigests | null = null;
  /** The pass's digest cache (digest_cache.ts), saved once the pass committed. */
  let digestCache: DigestCache | null = null;
  let ops: Op[] = [];
  let stagingDir = '';
  let passIdHex = '';
  // the pass's mode and the master's generation: recorded with the claim at COMMIT (§4.4, §4.6)
  let passMode: 'incremental' | 'full' | 'strict' | '' = '';
  let passGeneration = state.generation;
  let entryCountAtStart = -1;
  /**
   * The file being received: its staged bytes (header, node list) are kept in `parts` while they are few, and written
   * whole at FILE_END in the background (writeStaged); past MIRROR_STAGED_BUFFER_SIZE_BYTES they go to `fd` as they come.
   */
  let file: { path: Buffer; staged: Buffer; lane: number; fd: number | null; parts: Buffer[]; partsBytes: number; meta: Meta; linkGroup: bigint; count: number; next: number; hasher: FileContentHasher } | null = null;
  /** Staged files being written in the background; every one is settled before the window is applied. */
  const stagedWrites: Array<Promise<unknown>> = [];
  let stagedWriteError: unknown = null;
  /**
   * The staged files go to MIRROR_STAGING_SUBDIRECTORY_COUNT subdirectories of the pass's staging directory, file
   * seq by seq in turn, each created by its own lane: never two creates in one directory at once (they would spin on
   * its lock, see CreateLane), while the creates of different subdirectories run side by side on the thread pool
   * (each create costs the file system its inode allocation: a staging directory of one lane was the slave's
   * bottleneck on thousands of small files).
   */
  const stagingLanes = Array.from({ length: MIRROR_STAGING_SUBDIRECTORY_COUNT }, () => new CreateLane());
  const stagedPath = (seq: bigint): { staged: Buffer; lane: number } => {
    const lane = Number(seq % BigInt(MIRROR_STAGING_SUBDIRECTORY_COUNT));
    return { staged: pathBytes(path.join(stagingDir, String(lane), String(seq))), lane };
  };
  const writeStaged = async (p: Buffer, data: Buffer, lane: number): Promise<void> => {
    while (stagedWrites.length >= MIRROR_STAGED_WRITE_COUNT_MAX) await stagedWrites.shift();
    stagedWrites.push(writeNewFile(p, data, 0o600, stagingLanes[lane]).catch((err: unknown) => {
      stagedWriteError ??= err;
    }));
  };
  /** Wait for every staged write (before anything reads, syncs or renames a staged file). @throws the first failure */
  const settleStaged = async (): Promise<void> => {
    while (stagedWrites.length > 0) await stagedWrites.shift();
    if (stagedWriteError !== null) throw stagedWriteError;
  };

  const fail = async (reason: number, code: 'INVALID' | 'CORRUPT', message: string, seq?: bigint): Promise<never> => {
    try {
      await out?.send({ type: 'ERROR', reason, seq, message: message.slice(0, 1000) });
    } catch {
      // the master may be gone already
    }
    throw new DdfsError(code, message, { seq });
  };

  const abs = (rel: Buffer): Buffer => (rel.length === 0 ? rootDir : joinPathBytes(rootDir, rel));

  /** Refuse a reserved root name and any parent that is not a real directory (a planted symlink). */
  const checkPath = async (rel: Buffer): Promise<void> => {
    if (rel.length === 0) return;
    const first = rel.subarray(0, rel.indexOf(SLASH) < 0 ? rel.length : rel.indexOf(SLASH));
    if (RESERVED.some((r) => r.equals(first))) await fail(REASON.REFUSED, 'INVALID', `path ${pathText(rel)}: a reserved name of the root: refused`);
    for (let at = rel.indexOf(SLASH); at >= 0; at = rel.indexOf(SLASH, at + 1)) {
      const st = lstatOrNull(abs(rel.subarray(0, at)));
      if (st === null || st.kind !== 'dir') await fail(REASON.REFUSED, 'INVALID', `path ${pathText(rel)}: ${pathText(rel.subarray(0, at))} is not a directory on the slave: refused`);
    }
  };

  const countTree = (p: Buffer): number => {
    const st = lstatOrNull(p);
    if (st === null) return 0;
    if (st.kind !== 'dir') return 1;
    let n = 1;
    for (const name of listNames(p)) {
      if (p.equals(rootDir) && RESERVED.some((r) => r.equals(name))) continue;
      n += countTree(joinPathBytes(p, name));
    }
    return n;
  };

  const localAddress = (hash: Buffer): number => {
    if (hash.length === hashSize && bytesEqual(hash, 0, store.zeroHash, 0, hashSize)) return ADDR_ZERO;
    const r = store.index.nodes.lookup(hash, 0);
    return r.found ? r.address : -1;
  };

  /**
   * HAVE answers are conservative (spec §4.8): after an unclean stop (`.autofsck` when the volume was opened, or a
   * pass of this slave interrupted) the index may name a block its file does not hold, so a block is re-read and
   * hashed before it is answered "have" (once per pass); one that fails is answered "missing", and the BLOCK the
   * master sends for it is written back at its address.
   */
  const recheckHeld = vol.uncleanAtOpen || state0.pass !== null;
  const checkedHave = new Set<string>();
  const damaged = new Map<string, number>();
  const haveScratch = Buffer.alloc(recheckHeld ? blockSize : 0);
  const haveHash = Buffer.alloc(hashSize);
  const heldSound = async (hash: Buffer, address: number): Promise<boolean> => {
    if (!recheckHeld) return true;
    const key = hash.toString('latin1');
    if (checkedHave.has(key)) return true;
    if (damaged.has(key)) return false;
    let good = false;
    try {
      await store.readBlock(address, haveScratch, 0);
      store.hasher.hashInto(haveScratch, haveHash, 0);
      good = haveHash.equals(hash);
    } catch {
      good = false; // unreadable (past the end of a cut block file): missing, re-received
    }
    if (good) checkedHave.add(key);
    else damaged.set(key, address);
    return good;
  };

  /**
   * Received new blocks not stored yet, in batches of MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES: a full batch is handed to
   * the hash workers at once (the JS thread goes on decoding BLOCKs), up to MIRROR_BLOCK_HASH_BATCH_COUNT_MAX batches
   * in flight; storePending stores them all, in order, with the hashes the workers computed from their bytes.
   */
  const pendingMax = Math.max(1, Math.floor(MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES / blockSize));
  const spareBuffers: Buffer[] = [];
  const newBatch = (): Buffer => spareBuffers.pop() ?? HashWorkers.sharedBatch(pendingMax * blockSize);
  let pendingData = newBatch();
  let pendingHashes: Buffer[] = [];
  let pendingSeqs: bigint[] = [];
  let pendingCount = 0;
  /** Started at the first batch of new blocks (a pass that receives none starts no thread); closed when the pass ends. */
  let hashWorkers: HashWorkers | null = null;
  /**
   * Batches being hashed, in stream order. `release`: the batch is a BLOCKS record's data in its own frame (a local
   * copy, RecordReader.hold), given back to the frame pool once its write settled; null: a batch of spareBuffers.
   */
  const hashing: Array<{ result: Promise<HashedBatch>; count: number; hashes: Buffer[]; seqs: bigint[]; release: (() => void) | null }> = [];
  /** Blocks of the batches in `hashing` (their bound: MIRROR_BLOCK_HASH_BATCH_COUNT_MAX batches of pendingMax). */
  let hashingCount = 0;
  /** Hand `count` blocks at the start of `data` to the hash workers, in stream order (a `hashing` entry). */
  const hashBatch = (data: Buffer, count: number, hashes: Buffer[], seqs: bigint[], release: (() => void) | null): void => {
    hashWorkers ??= HashWorkers.start(cfg.hashName, blockSize, options.hashThreads, options.hashNice);
    const result = hashWorkers.hash(data, count);
    result.catch(() => undefined); // awaited in order by storeHashed; a failure is reported there
    hashing.push({ result, count, hashes, seqs, release });
    hashingCount += count;
  };
  /** Hand the pending batch to the hash workers. */
  const submitPending = (): void => {
    if (pendingCount === 0) return;
    hashBatch(pendingData, pendingCount, pendingHashes, pendingSeqs, null);
    pendingData = newBatch();
    pendingCount = 0;
    pendingHashes = [];
    pendingSeqs = [];
  };
  /**
   * Early write-back of the block file (MIRROR_BLOCK_WRITEBACK_SIZE_BYTES): one background fsync at a time while
   * blocks keep coming. Its failure fails the pass at the next window (an fsync error is reported once: a later sync
   * that succeeds would not mean the blocks are on disk).
   */
  let writeback: Promise<void> | null = null;
  let writebackError: unknown = null;
  let bytesSinceWriteback = 0;
  const startWriteback = (bytes: number): void => {
    bytesSinceWriteback += bytes;
    if (writeback !== null || bytesSinceWriteback < MIRROR_BLOCK_WRITEBACK_SIZE_BYTES) return;
    bytesSinceWriteback = 0;
    writeback = store.blockDevice.sync().catch((err: unknown) => {
      writebackError ??= err;
    }).finally(() => {
      writeback = null;
    });
  };
  /** Wait for the write-back in flight. @throws DdfsError INVALID (reason IO) when a write-back failed */
  const settleWriteback = async (): Promise<void> => {
    await writeback;
    if (writebackError !== null) await fail(REASON.IO, 'INVALID', `${parentDir}: the block file cannot be synced: ${writebackError instanceof Error ? writebackError.message : String(writebackError)}`);
  };
  /**
   * Batches given to storeBlocks whose block writes may still be in flight: storeBlocks puts a batch's blocks in the
   * index (their addresses) before its first await, so what comes next (a FILE_NODES) finds them at once, while the
   * pwrite of their bytes runs on the thread pool and the JS thread goes on receiving (each batch's write awaited in
   * turn was a stop of the receive loop, and of a local copy's master, every 4 MiB). Settled (their failures raised,
   * their buffers reused) past MIRROR_BLOCK_STORE_WRITE_COUNT_MAX, before a window's sync, and at the pass's end.
   */
  const storing: Array<Promise<{ res: Awaited<ReturnType<typeof store.storeBlocks>> | null; err: unknown; count: number; seqs: bigint[] }>> = [];
  /** Blocks of the batches in `storing` (their bound: MIRROR_BLOCK_STORE_WRITE_COUNT_MAX batches of pendingMax). */
  let storingCount = 0;
  /** Settle the oldest store in flight. @throws its write failure; DdfsError INVALID (reason IO) when it stored not all */
  const settleStore = async (): Promise<void> => {
    const { res, err, count, seqs } = await storing.shift()!;
    storingCount -= count;
    if (res === null) throw err;
    if (res.error) await fail(REASON.IO, 'INVALID', `${parentDir}: cannot store a block: ${res.error.message}`, seqs[res.stored]);
    for (let k = 0; k < count; k++) hook('block-stored');
    startWriteback(count * blockSize);
  };
  /** Settle every store in flight (before the block file is synced or the pass ends). */
  const settleStores = async (): Promise<void> => {
    while (storing.length > 0) await settleStore();
  };
  /**
   * Store the oldest batch in flight (its blocks in the index at once, their write settled later: `storing`); one
   * whose bytes do not hash to its hash rejects the pass before anything of its batch is stored (it names that BLOCK).
   */
  const storeHashed = async (): Promise<void> => {
    const b = hashing.shift()!;
    hashingCount -= b.count;
    const { data, hashes: computed } = await b.result;
    const { count, hashes, seqs, release } = b;
    for (let k = 0; k < count; k++) {
      if (computed.compare(hashes[k]!, 0, hashSize, k * hashSize, (k + 1) * hashSize) !== 0) {
        await fail(REASON.CORRUPT, 'CORRUPT', `${parentDir}: BLOCK seq ${seqs[k]}: its bytes do not hash to ${hashes[k]!.toString('hex')}: pass rejected`, seqs[k]);
      }
    }
    // nodes of its own: storeBlocks reads them again when a write fails (to take the unwritten blocks out of the index)
    const nodes = Buffer.allocUnsafe(count * nodeSize);
    storing.push(store.storeBlocks(data, count, nodes, 0, computed).then(
      (res) => ({ res, err: null, count, seqs }),
      (err: unknown) => ({ res: null, err, count, seqs }),
    ).finally(() => (release !== null ? release() : spareBuffers.push(data))));
    storingCount += count;
    while (storingCount > MIRROR_BLOCK_STORE_WRITE_COUNT_MAX * pendingMax) await settleStore();
  };
  /**
   * receiveBlock's bound of the batches being hashed: the oldest are stored until at most
   * MIRROR_BLOCK_HASH_BATCH_COUNT_MAX batches of pendingMax blocks are in flight.
   */
  const boundHashing = async (): Promise<void> => {
    while (hashingCount > MIRROR_BLOCK_HASH_BATCH_COUNT_MAX * pendingMax) await storeHashed();
  };
  /**
   * A BLOCKS record of a local copy whose blocks are all new (as takeNewBlock takes them), hashed and stored in place
   * in the record's own frame (RecordReader.hold): neither its blocks nor its hashes are copied. The pending batch
   * goes first (stream order). @returns false (nothing done) when the record is not in such a frame or a block of it
   * is not new: each block then goes through takeNewBlock/receiveBlock
   */
  const takeBlocksFrame = async (hashes: Buffer[], data: Buffer, seq: bigint): Promise<boolean> => {
    if (damaged.size > 0 || data.length !== hashes.length * blockSize) return false;
    for (const h of hashes) if (store.isZeroHash(h) || localAddress(h) >= 2) return false;
    const release = input.hold(data);
    if (release === null) return false;
    submitPending();
    hashBatch(data, hashes.length, hashes, hashes.map(() => seq), release);
    for (const h of hashes) pinnedHashes.add(h);
    summary.blocksReceived += hashes.length;
    await boundHashing();
    return true;
  };
  /**
   * Store every received block (before any record that is not a BLOCK is handled): each in the index, its write
   * perhaps still in flight (settleStores).
   */
  const storePending = async (): Promise<void> => {
    submitPending();
    while (hashing.length > 0) await storeHashed();
  };

  /** A new block (at most a block of bytes, not held here) joins the pending batch, which has room for it. */
  const appendNew = (hash: Buffer, data: Buffer, seq: bigint): void => {
    data.copy(pendingData, pendingCount * blockSize);
    if (data.length < blockSize) pendingData.fill(0, pendingCount * blockSize + data.length, (pendingCount + 1) * blockSize);
    pendingHashes.push(Buffer.from(hash)); // a view of the record's frame, reused after it (channel.ts LocalFrames)
    pendingSeqs.push(seq);
    pendingCount++;
    pinnedHashes.add(hash);
    summary.blocksReceived++;
  };
  /**
   * receiveBlock's common case of an initial copy, with no await per block: a new block (at most a block of bytes,
   * not the zero hash, not held here, no held block found damaged in this pass) while the pending batch has room
   * joins it. @returns false (nothing done) for any other block: receiveBlock handles it
   */
  const takeNewBlock = (hash: Buffer, data: Buffer, seq: bigint): boolean => {
    if (pendingCount === pendingMax || data.length > blockSize || damaged.size > 0 || store.isZeroHash(hash) || localAddress(hash) >= 2) return false;
    appendNew(hash, data, seq);
    return true;
  };
  /**
   * One received block (of a BLOCK, or of a BLOCKS record of seq `seq`): a new one joins the pending batch (hashed by
   * the workers, stored before the next record that is not a BLOCK/BLOCKS); one answered "missing" because its held
   * copy failed the re-read is hashed here and written back in place. Callers try takeNewBlock first.
   * @throws DdfsError CORRUPT (oversize, the zero hash, bytes that do not hash to `hash`), INVALID (a store failure)
   */
  const receiveBlock = async (hash: Buffer, data: Buffer, seq: bigint): Promise<void> => {
    if (data.length > blockSize) await fail(REASON.CORRUPT, 'CORRUPT', `BLOCK seq ${seq}: ${data.length} bytes`, seq);
    if (store.isZeroHash(hash)) await fail(REASON.CORRUPT, 'CORRUPT', `BLOCK seq ${seq}: the zero block is never sent`, seq);
    const damagedAt = damaged.size === 0 ? undefined : damaged.get(hash.toString('latin1'));
    const heldAt = localAddress(hash);
    if ((damagedAt === undefined || heldAt !== damagedAt) && heldAt < 2) {
      // a new block: hashed once, by storeBlocks, in a batch stored before the next record that is not a BLOCK
      if (pendingCount === pendingMax) {
        submitPending();
        await boundHashing();
      }
      appendNew(hash, data, seq);
      return;
    }
    await storePending();
    const whole = Buffer.alloc(blockSize);
    data.copy(whole);
    const h = Buffer.alloc(hashSize);
    store.hasher.hashInto(whole, h, 0);
    if (!h.equals(hash)) await fail(REASON.CORRUPT, 'CORRUPT', `${parentDir}: BLOCK seq ${seq}: its bytes do not hash to ${hash.toString('hex')}: pass rejected`, seq);
    if (damagedAt !== undefined && localAddress(hash) === damagedAt) {
      // answered "missing" because its block failed the re-read: the good bytes go back in place
      await store.rewriteBlock(damagedAt, whole);
      damaged.delete(hash.toString('latin1'));
      checkedHave.add(hash.toString('latin1'));
    } else if (localAddress(hash) < 2) {
      const nodes = Buffer.alloc(nodeSize);
      const res = await store.storeBlocks(whole, 1, nodes, 0);
      if (res.error) await fail(REASON.IO, 'INVALID', `${parentDir}: cannot store a block: ${res.error.message}`, seq);
      hook('block-stored');
    }
    pinnedHashes.add(hash);
    summary.blocksReceived++;
  };

  const setMeta = (p: Buffer, meta: Meta, isSymlink: boolean): void => {
    if (!isSymlink) setMode(p, meta.mode);
    setOwner(p, meta.uid, meta.gid);
    applyXattrs(p, meta.xattrs);
  };

  /** Move the tree entry `rel` aside into the undo area (the pass's undo log is open once PASS_BEGIN was seen). */
  const aside = (rel: Buffer): void => {
    if (undo === null) throw new DdfsError('CORRUPT', `${parentDir}: a namespace record before PASS_BEGIN`);
    undo.aside(rel);
  };

  /** Delete `rel` (recursively) into the undo area, counting entries for the mass-delete bound. */
  const remove = (rel: Buffer): void => {
    summary.deleted += countTree(abs(rel));
    aside(rel);
  };

  /** Move aside what an upsert replaces (a type change): not a deletion for the mass-delete bound, DIRLIST counted it. */
  const replace = (rel: Buffer): void => {
    aside(rel);
  };

  /** Log a creation at `rel` in the undo area before making it. */
  const willCreate = (rel: Buffer): void => {
    if (undo === null) throw new DdfsError('CORRUPT', `${parentDir}: a namespace record before PASS_BEGIN`);
    undo.willCreate(rel);
  };

  /**
   * Whether tree path `rel` is a real directory (not a symlink) now, memoized for the look-ahead of one window
   * (prelogCreates and prelogReplaces run before its op loop changes anything), so the many files of one directory
   * lstat it once instead of once per file. Cleared before each window's look-ahead.
   */
  const realDirs = new Map<string, boolean>();
  const realDirectory = (rel: Buffer): boolean => {
    const key = rel.toString('latin1');
    let v = realDirs.get(key);
    if (v === undefined) {
      v = lstatOrNull(abs(rel))?.kind === 'dir';
      realDirs.set(key, v);
    }
    return v;
  };

  /**
   * Log in one durable append the creations of the window's ops whose target is absent now and whose parents are real
   * directories now or directories made earlier in this window (never a reserved root name), before any of them is
   * made: what the op loop would otherwise log (and fsync) one by one. Returns their keys; an op whose target turns
   * out to exist when it is applied logs as before (replace, then its own create line).
   */
  const prelogCreates = (): Set<string> => {
    const out = new Set<string>();
    if (undo === null) return out;
    const windowDirs = new Set<string>();
    const rels: Buffer[] = [];
    for (const o of ops) {
      if (o.op === 'delete' || o.op === 'dirlist' || o.path.length === 0 || reservedFirst(o.path)) continue;
      const key = o.path.toString('latin1');
      let parentsOk = true;
      for (let at = o.path.indexOf(SLASH); at >= 0 && parentsOk; at = o.path.indexOf(SLASH, at + 1)) {
        const parentKey = o.path.subarray(0, at).toString('latin1');
        parentsOk = windowDirs.has(parentKey) || realDirectory(o.path.subarray(0, at));
      }
      if (o.op === 'dir') windowDirs.add(key);
      // absent now (a missing parent: absent too), so whatever is there at a rollback was made by this pass
      if (!parentsOk || out.has(key) || lstatOrNull(abs(o.path)) !== null) continue;
      out.add(key);
      rels.push(o.path);
    }
    undo.willCreateAll(rels);
    return out;
  };

  /**
   * Log in one durable append the moves aside of the window's file ops whose target is a regular file now (under real
   * directories, never a reserved root name): what replace + willCreate would otherwise log (and fsync) one by one.
   * Returns, by target key, the area entry reserved and the inode seen; an op whose target is no longer that inode
   * when it is applied (an earlier op of the window changed it) logs as before, and its reserved line stays unused.
   */
  const prelogReplaces = (): Map<string, { n: number; ino: bigint }> => {
    const out = new Map<string, { n: number; ino: bigint }>();
    if (undo === null) return out;
    const rels: Buffer[] = [];
    const inos: bigint[] = [];
    for (const o of ops) {
      if (o.op !== 'file' || o.path.length === 0 || reservedFirst(o.path)) continue;
      const key = o.path.toString('latin1');
      let parentsOk = !out.has(key);
      for (let at = o.path.indexOf(SLASH); at >= 0 && parentsOk; at = o.path.indexOf(SLASH, at + 1)) parentsOk = realDirectory(o.path.subarray(0, at));
      if (!parentsOk) continue;
      const st = lstatOrNull(abs(o.path));
      if (st === null || st.kind !== 'file') continue;
      out.set(key, { n: -1, ino: st.ino });
      rels.push(o.path);
      inos.push(st.ino);
    }
    const ns = undo.willAsideAll(rels);
    rels.forEach((p, i) => out.set(p.toString('latin1'), { n: ns[i]!, ino: inos[i]! }));
    return out;
  };

  /** Apply the staged ops of the window, in order; then make them durable. */
  const applyWindow = async (): Promise<void> => {
    await settleStaged();
    // deletions of this window: refuse before anything changes
    let deleting = 0;
    for (const o of ops) {
      if (o.op === 'delete') {
        deleting += countTree(abs(o.path));
        continue;
      }
      if (o.op !== 'dirlist') continue;
      const st = lstatOrNull(abs(o.path));
      if (st === null || st.kind !== 'dir') continue;
      const listed = new Map(o.entries.map((e) => [e.name.toString('latin1'), e.entryType]));
      // the kinds from readdir's d_type: no lstat per listed entry
      for (const { name, kind } of listKinds(abs(o.path))) {
        if (o.path.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
        const t = listed.get(name.toString('latin1'));
        if (t === undefined || typeOfStat(kind) !== t) deleting += countTree(joinPathBytes(abs(o.path), name));
      }
    }
    if (deleting > 0) {
      if (entryCountAtStart < 0) entryCountAtStart = countTree(rootDir) - 1;
      const total = summary.deleted + deleting;
      if (!options.allowMassDelete && total * 100 > entryCountAtStart * MIRROR_MASS_DELETE_PERCENT) {
        await fail(REASON.REFUSED, 'INVALID', `${parentDir}: the pass would delete ${total} of the slave's ${entryCountAtStart} entries (more than ${MIRROR_MASS_DELETE_PERCENT}%): refused without --allow-mass-delete`);
      }
    }
    // blocks first: no UFS file may become visible before the blocks it names are durable
    await settleStores();
    await settleWriteback();
    await store.sync();
    const staged = ops.filter((o): o is Extract<Op, { op: 'file' }> => o.op === 'file');
    await setMtimes(staged.map((o) => ({ path: o.staged, mtimeNs: o.meta.mtimeNs })));
    for (const o of staged) setMeta(o.staged, o.meta, false);
    // the window's staged files (written without fsync) become durable before any rename (§4.8): many at once
    if (staged.length > MIRROR_STAGED_FSYNC_COUNT_MAX) syncFilesystem(stagingDir);
    else for (const o of staged) syncFile(o.staged);
    hook('staged-synced');
    realDirs.clear();
    const prelogged = prelogCreates();
    const prereplaced = prelogReplaces();
    const touched = new Set<string>();
    const later: Array<{ path: Buffer; mtimeNs: bigint }> = [];
    const parentOf = (p: Buffer): Buffer => { const at = p.lastIndexOf(SLASH); return at < 0 ? rootDir : abs(p.subarray(0, at)); };
    for (const [opIndex, o] of ops.entries()) {
      if (opIndex > 0) hook('op-applied', opIndex - 1);
      await checkPath(o.path);
      const target = abs(o.path);
      touched.add(parentOf(o.path).toString('latin1'));
      const st = lstatOrNull(target);
      switch (o.op) {
        case 'dir': {
          if (st !== null && st.kind !== 'dir') replace(o.path);
          if (st === null || st.kind !== 'dir') {
            if (o.path.length > 0) if (!prelogged.delete(o.path.toString('latin1')) || st !== null) willCreate(o.path);
            makeDirectory(target, o.meta.mode & 0o7777);
          } else if (st.mode !== (o.meta.mode & 0o7777) || st.uid !== o.meta.uid || st.gid !== o.meta.gid) {
            undo?.willChangeMeta(o.path, st);
          }
          setMeta(target, o.meta, false);
          touched.add(target.toString('latin1'));
          break;
        }
        case 'delete': {
          // spec §4.5 DELETE: a recursive delete (into the undo area), a no-op if absent
          if (st !== null) remove(o.path);
          break;
        }
        case 'dirlist': {
          if (st === null || st.kind !== 'dir') break;
          const listed = new Map(o.entries.map((e) => [e.name.toString('latin1'), e.entryType]));
          for (const { name, kind } of listKinds(target)) {
            if (o.path.length === 0 && RESERVED.some((r) => r.equals(name))) continue;
            const t = listed.get(name.toString('latin1'));
            if (t === undefined || typeOfStat(kind) !== t) remove(joinPathBytes(o.path, name));
          }
          touched.add(target.toString('latin1'));
          break;
        }
        case 'file': {
          // a no-op when the target holds the same node list and metadata, and is shared exactly when a link group says so
          if (st !== null && st.kind === 'file' && (st.nlink === 1) === (o.linkGroup === 0n) && st.mode === (o.meta.mode & 0o7777)
            && st.uid === o.meta.uid && st.gid === o.meta.gid && st.mtimeNs === o.meta.mtimeNs && sameXattrs(target, o.meta.xattrs)) {
            const a = readBytesOrNull(target);
            const b = readBytesOrNull(o.staged);
            if (a !== null && b !== null && a.equals(b)) {
              removeTree(o.staged);
              if (o.linkGroup !== 0n) linkTargets.set(o.linkGroup, o.path);
              summary.opsNoop++;
              break;
            }
          }
          const key = o.path.toString('latin1');
          const wasPrelogged = prelogged.delete(key);
          const pre = st !== null && st.kind === 'file' ? prereplaced.get(key) : undefined;
          if (pre !== undefined && pre.ino === st!.ino) {
            // logged by prelogReplaces; the aside's reversal also removes what is renamed over it here
            prereplaced.delete(key);
            undo!.asideLogged(o.path, pre.n);
          } else {
            if (st !== null) replace(o.path);
            if (!wasPrelogged || st !== null) willCreate(o.path);
          }
          renamePath(o.staged, target);
          if (o.linkGroup !== 0n) linkTargets.set(o.linkGroup, o.path);
          summary.filesApplied++;
          break;
        }
        case 'symlink': {
          if (st !== null && st.kind === 'symlink' && readLinkOrNull(target)?.equals(o.target) && st.uid === o.meta.uid && st.gid === o.meta.gid && st.mtimeNs === o.meta.mtimeNs
            && sameXattrs(target, o.meta.xattrs)) {
            summary.opsNoop++;
            break;
          }
          if (st !== null) replace(o.path);
          if (!prelogged.delete(o.path.toString('latin1')) || st !== null) willCreate(o.path);
          makeSymlink(o.target, target);
          setMeta(target, o.meta, true);
          later.push({ path: target, mtimeNs: o.meta.mtimeNs });
          break;
        }
        case 'special': {
          if (st !== null && st.kind === 'special' && st.rdev === o.rdev && st.mode === (o.meta.mode & 0o7777) && st.uid === o.meta.uid && st.gid === o.meta.gid
            && st.mtimeNs === o.meta.mtimeNs && st.special === o.kind && sameXattrs(target, o.meta.xattrs)) {
            summary.opsNoop++;
            break;
          }
          if (st !== null) replace(o.path);
          if (!prelogged.delete(o.path.toString('latin1')) || st !== null) willCreate(o.path);
          const at = target.lastIndexOf(SLASH);
          await makeSpecial(target.subarray(0, at), target.subarray(at + 1), o.kind, o.rdev, o.meta.mode);
          setMeta(target, o.meta, false);
          later.push({ path: target, mtimeNs: o.meta.mtimeNs });
          break;
        }
        case 'link': {
          const first = linkTargets.get(o.linkGroup);
          if (first === undefined) await fail(REASON.CORRUPT, 'CORRUPT', `LINK ${pathText(o.path)}: link group ${o.linkGroup} was not sent in this pass`);
          const fst = lstatOrNull(abs(first!));
          if (st !== null && fst !== null && st.ino === fst.ino) {
            summary.opsNoop++;
            break;
          }
          if (st !== null) replace(o.path);
          if (!prelogged.delete(o.path.toString('latin1')) || st !== null) willCreate(o.path);
          makeHardLink(abs(first!), target);
          break;
        }
      }
    }
    if (ops.length > 0) hook('op-applied', ops.length - 1);
    await setMtimes(later);
    for (const d of touched) {
      if (lstatOrNull(Buffer.from(d, 'latin1'))?.kind === 'dir') syncDirectory(Buffer.from(d, 'latin1'));
    }
    ops = [];
    summary.windows++;
  };

  /** Whether every parent of `p` below `base` is a real directory (no symlink on the way). */
  const realParents = (base: Buffer, rel: Buffer): boolean => {
    for (let at = rel.indexOf(SLASH); at >= 0; at = rel.indexOf(SLASH, at + 1)) {
      if (lstatOrNull(joinPathBytes(base, rel.subarray(0, at)))?.kind !== 'dir') return false;
    }
    return true;
  };
  const reservedFirst = (rel: Buffer): boolean => {
    const first = rel.subarray(0, rel.indexOf(SLASH) < 0 ? rel.length : rel.indexOf(SLASH));
    return RESERVED.some((x) => x.equals(first));
  };

  /**
   * RENAME (spec §4.5): move the slave's entry that was at `from` when the pass began (in the tree, or moved aside into
   * the undo area by this pass) to `to` if its digest NOW is `digest`; whatever is at `to` goes aside first. The
   * master asks DIGESTQ of `to` next and sends its state when the move was refused, so a refusal is never wrong.
   * @returns whether the entry was moved
   */
  const applyRename = async (from: Buffer, to: Buffer, digest: Buffer): Promise<boolean> => {
    if (undo === null || digests === null || from.length === 0 || to.length === 0) return false;
    if (from.equals(to) || reservedFirst(from) || reservedFirst(to) || !realParents(rootDir, to)) return false;
    const u: UndoLog = undo;
    const located = (): Buffer | null => {
      const loc = u.locate(from);
      if (loc === null) return null;
      if (loc.n === null ? !realParents(rootDir, from) : !realParents(u.absOf({ n: loc.n, p: Buffer.alloc(0) }), loc.p)) return null;
      return u.absOf(loc);
    };
    const at = located();
    // a source still in the tree cannot move into itself (a source moved aside, e.g. by a type change of `to`'s
    // parent, can: file x becoming x/inner)
    if (at === null || (u.locate(from)!.n === null && isSelfOrAncestor(from, to))) return false;
    const now = await digests.digestAt(at);
    if (now === null || !now.equals(digest)) return false;
    if (lstatOrNull(abs(to)) !== null) replace(to);
    const loc = u.locate(from); // `from` may have gone aside with `to` (a move up into a former ancestor)
    if (loc === null || located() === null) return false;
    u.move(from, loc, to);
    const parentOf = (p: Buffer): Buffer => p.subarray(0, Math.max(0, p.lastIndexOf(SLASH)));
    syncDirectory(abs(parentOf(to)));
    syncDirectory(parentOf(u.absOf(loc)).length > 0 ? parentOf(u.absOf(loc)) : rootDir);
    renamed.set(to.toString('latin1'), Buffer.from(digest));
    return true;
  };

  try {
    const first = await input.next();
    const hello = first.record;
    if (hello.type !== 'HELLO') return await fail(REASON.CORRUPT, 'CORRUPT', 'the stream does not start with HELLO');
    // our HELLO first, even to refuse: a stream's first record is its HELLO, so the ERROR that follows can be read
    if (out !== null) {
      // resume data that is not even a valid key (a damaged state file) is dropped: a fresh pass is always safe
      const pending = state.pass !== null && pathProblem(Buffer.from(state.pass.keyCurHex, 'hex')) === null ? state.pass : null;
      await out.send({
        type: 'HELLO', version: STREAM_VERSION, role: 'slave', sharedUuid: Buffer.from(state.sharedUuid, 'hex'), uniqueUuid: Buffer.from(state.uniqueUuid, 'hex'),
        generation: state.claim?.generation ?? state.generation, blockSize, hashAlgo: cfg.hashName, hashSize, syncBegTid: 0n, syncEndTid: claimTid(state.claim), claimKind: state.claim === null || claimTid(state.claim) === 0n ? 'none' : state.claim.claimKind,
        pendingPass: pending === null ? undefined : { passId: Buffer.from(pending.passId, 'hex'), tidBeg: 0n, tidEnd: 0n, keyCur: Buffer.from(pending.keyCurHex, 'hex'), runningDigest: Buffer.alloc(32) },
        capabilities: CAPABILITY_BLOCKS, lineageId: Buffer.from(lineageIdOf(state), 'hex'),
        ...(state.masterUuid !== undefined ? { masterUuid: Buffer.from(state.masterUuid, 'hex') } : {}),
      });
    }
    const why = hello.role !== 'master' ? `the peer is a ${hello.role}, not a master`
      : hello.sharedUuid.toString('hex') !== state.sharedUuid ? `the master's shared uuid is ${hello.sharedUuid.toString('hex')}, this slave is bound to ${state.sharedUuid}`
        : hello.blockSize !== blockSize ? `the master's block size is ${hello.blockSize}, the slave's ${blockSize}`
          : hello.hashAlgo !== cfg.hashName ? `the master's hash is ${hello.hashAlgo}, the slave's ${cfg.hashName}`
            : (hello.lineageId ?? hello.sharedUuid).toString('hex') !== lineageIdOf(state) ? `the master is of lineage ${(hello.lineageId ?? hello.sharedUuid).toString('hex')}, this slave is bound to lineage ${lineageIdOf(state)} (epoch ${state.lineage}) (an old master after a promote? mirrorddumbfs rebind)`
              // one master per slave (§4.12): a source that serves another master of this lineage (a cloned or forged
              // master state; a relay bound to another one); a peer that names none (older) is left to the lineage check
              : state.masterUuid !== undefined && hello.masterUuid !== undefined && hello.masterUuid.toString('hex') !== state.masterUuid
                ? `the source serves master ${hello.masterUuid.toString('hex')}, this slave is bound to master ${state.masterUuid} (one master per slave: mirrorddumbfs rebind ${parentDir} --from SOURCE, then a full content pass)` : null;
    if (why !== null) return await fail(REASON.INCOMPATIBLE, 'INVALID', `${parentDir}: refused: ${why}`);
    /** The master a slave not bound yet is bound to by this pass's COMMIT (§4.12). */
    const bindTo = state.masterUuid === undefined && hello.masterUuid !== undefined ? hello.masterUuid.toString('hex') : null;
    passGeneration = hello.generation;
    /** The claim this pass started from: a DIRLIST entry the master says is older than it must be here (NEED). */
    const claimAtStart = claimTid(state.claim);
    for (;;) {
      // a fault of the stream after a bad BLOCK: the BLOCK, which came first, is what the error names
      const d = await input.next().catch(async (err: unknown) => {
        await storePending();
        throw err;
      });
      const r = d.record;
      // a question (DIGESTQ, HASHQ) is answered without waiting for the blocks before it to be hashed and stored:
      // the master's next records wait for the answer, and a wait for the drain of the slave's batches was its hash
      // thread's idle time at every window (DIGESTQ reads the applied tree, which blocks do not change; HASHQ counts
      // a block received in this pass and not yet stored as held: see its case)
      if (r.type !== 'BLOCK' && r.type !== 'BLOCKS' && r.type !== 'DIGESTQ' && r.type !== 'HASHQ') await storePending();
      switch (r.type) {
        case 'PASS_BEGIN': {
          await staleRemoval; // the last pass's stale areas are gone before this one looks at its own
          passIdHex = r.passId.toString('hex');
          passMode = r.mode;
          // a rollback that was killed is finished first (its areas are half reversed: they cannot take more lines);
          // with no pass in progress the areas left are those of a committed pass (killed before it dropped them)
          if (rollbackInterrupted(parent)) {
            rollbackPass(parent);
            state = readMirrorState(parent) ?? state;
          }
          if (state.pass === null) dropUndoAreas(parent);
          stagingDir = path.join(mirrorDirectory(parent), 'staging', passIdHex);
          removeTree(path.join(mirrorDirectory(parent), 'staging'));
          ensureDirectory(stagingDir, 0o700);
          for (let k = 0; k < MIRROR_STAGING_SUBDIRECTORY_COUNT; k++) ensureDirectory(path.join(stagingDir, String(k)), 0o700);
          const resumed = state.pass !== null && state.pass.passId === passIdHex;
          state = { ...state, pass: { passId: passIdHex, keyCurHex: resumed ? state.pass!.keyCurHex : '', recordsApplied: resumed ? state.pass!.recordsApplied : 0, startedAt: resumed ? state.pass!.startedAt : new Date().toISOString() } };
          writeMirrorState(parent, state);
          // the undo area is live from here on (state.pass is set): every change of the tree is logged in it first
          undo = UndoLog.open(parent, passIdHex);
          break;
        }
        case 'DIGESTQ': {
          let match = false;
          const verified = renamed.get(r.path.toString('latin1'));
          try {
            digestCache ??= DigestCache.open(parent, hashSize);
            digests ??= await VolumeDigests.open(parent, {
              access: options.access, mtime: true, cache: digestCache, findings: false,
              onDigest: (p, _kind, digest, singleName) => {
                const key = digest.toString('latin1');
                if (singleName && hintIndex.size < MIRROR_RENAME_HINT_COUNT_MAX && !hintIndex.has(key)) hintIndex.set(key, Buffer.from(p));
              },
            });
            if (verified !== undefined) {
              // the target of a RENAME just applied: the digest its precondition verified (the walk predates it)
              renamed.delete(r.path.toString('latin1'));
              match = verified.equals(r.digest);
            } else {
              // an incremental pass asks only of dirty paths: each from its own subtree, never the whole-tree walk
              // (no RENAME hint then: the master takes its hints from its journal)
              const mine = passMode === 'incremental' ? await digests.entryNow(r.path) : await digests.entry(r.path);
              match = mine !== null && mine.digest.equals(r.digest);
            }
          } catch {
            match = false;
          }
          // a mismatch may carry a RENAME hint: one of our own entries (at the first walk) with the asked digest
          const hint = match || verified !== undefined ? undefined : hintIndex.get(r.digest.toString('latin1'));
          await out?.send({ type: 'DIGESTA', path: r.path, match, ...(hint !== undefined && !hint.equals(r.path) ? { source: hint } : {}) });
          break;
        }
        case 'RENAME': {
          // in order: everything staged before it is applied first (its target's parent may be a DIR of this window)
          await applyWindow();
          if (await applyRename(r.from, r.to, r.fromDigest)) summary.renamesApplied++;
          else summary.renamesRefused++;
          hook('op-applied', 0);
          break;
        }
        case 'HASHQ': {
          // a held block is re-read (recheckHeld) only once its write landed
          if (recheckHeld) await settleStores();
          const missing = Buffer.alloc(Math.ceil(r.hashes.length / 8));
          for (const [i, h] of r.hashes.entries()) {
            const address = localAddress(h);
            // pinned and not in the index: a block received in this pass whose batch is not stored yet (a hash
            // answered "have" or named by a staged list was in the index, and pins keep it there); it is stored
            // before any FILE_NODES or window, or the pass fails, so it is held as a block stored in the index is
            if (address < 2 && !store.isZeroHash(h) && pinnedHashes.hasKey(h)) continue;
            if (address < 2 || !(await heldSound(h, address))) missing[i >> 3]! |= 1 << (i & 7);
            else pinnedHashes.add(h);
          }
          await out?.send({ type: 'HAVE', passId: Buffer.from(passIdHex, 'hex'), hashCount: r.hashes.length, missing });
          break;
        }
        case 'BLOCK':
          if (!takeNewBlock(r.hash, r.data, d.seq)) await receiveBlock(r.hash, r.data, d.seq);
          break;
        case 'BLOCKS':
          // a batched BLOCK (CAPABILITY_BLOCKS): each block as if it came in a BLOCK of this seq
          if (await takeBlocksFrame(r.hashes, r.data, d.seq)) break;
          for (let k = 0; k < r.hashes.length; k++) {
            const data = r.data.subarray(k * blockSize, (k + 1) * blockSize);
            if (!takeNewBlock(r.hashes[k]!, data, d.seq)) await receiveBlock(r.hashes[k]!, data, d.seq);
          }
          break;
        case 'DIR':
          ops.push({ op: 'dir', path: r.path, meta: r.meta });
          break;
        case 'DIRLIST': {
          const last = ops[ops.length - 1];
          if (last !== undefined && last.op === 'dirlist' && last.path.equals(r.path) && (last as { cont?: boolean }).cont) last.entries.push(...r.entries);
          else ops.push({ op: 'dirlist', path: r.path, entries: [...r.entries] });
          (ops[ops.length - 1] as { cont?: boolean }).cont = r.continues;
          if (!r.continues && passMode === 'incremental' && out !== null) {
            // an entry the master marks unchanged since our claim (tid ≤ claim) that we lack is divergence (§4.8
            // NEED): ask for it; the master re-sends it within the pass and counts a divergence alarm
            const listing = ops[ops.length - 1] as Extract<Op, { op: 'dirlist' }>;
            // a directory we lack whole: its parent's listing asked for it, not each of its entries
            const claimed = lstatOrNull(abs(listing.path)) === null ? [] : listing.entries.filter((e) => e.tid > 0n && e.tid <= claimAtStart);
            // one readdir of ours instead of one lstat per claimed entry (the listing of a directory on the way to a
            // dirty path is mostly claimed entries: 100 dirty files in 100 directories were 10,000 lstats)
            const present = claimed.length === 0 ? new Set<string>() : namesPresent(abs(listing.path));
            const lacking = claimed.filter((e) => !present.has(e.name.toString('latin1'))).map((e) => joinPathBytes(listing.path, e.name));
            for (let k = 0; k < lacking.length; k += MIRROR_NEED_PATH_COUNT_MAX) await out.send({ type: 'NEED', paths: lacking.slice(k, k + MIRROR_NEED_PATH_COUNT_MAX) });
            summary.needsSent += lacking.length;
          }
          break;
        }
        case 'DELETE':
          if (r.path.length === 0) await fail(REASON.CORRUPT, 'CORRUPT', `DELETE seq ${d.seq}: of the root: refused`, d.seq);
          ops.push({ op: 'delete', path: r.path });
          break;
        case 'SYMLINK':
          ops.push({ op: 'symlink', path: r.path, target: r.target, meta: r.meta });
          break;
        case 'SPECIAL':
          ops.push({ op: 'special', path: r.path, kind: r.kind, rdev: r.rdev, meta: r.meta });
          break;
        case 'LINK':
          ops.push({ op: 'link', path: r.path, linkGroup: r.linkGroup });
          break;
        case 'FILE_BEGIN': {
          if (file !== null) await fail(REASON.CORRUPT, 'CORRUPT', `FILE_BEGIN seq ${d.seq} inside another file`, d.seq);
          const { staged, lane } = stagedPath(d.seq);
          const count = Number(r.nodeCount);
          if (count !== Math.ceil(Number(r.sizeBytes) / blockSize)) await fail(REASON.CORRUPT, 'CORRUPT', `FILE_BEGIN seq ${d.seq}: ${count} nodes for ${r.sizeBytes} bytes`, d.seq);
          const header = encodeUfsHeader(Number(r.sizeBytes));
          file = { path: r.path, staged, lane, fd: null, parts: [header], partsBytes: header.length, meta: r.meta, linkGroup: r.linkGroup, count, next: 0, hasher: new FileContentHasher(count, hashSize) };
          break;
        }
        case 'FILE_NODES': {
          if (file === null || Number(r.firstIndex) !== file.next || file.next + r.hashes.length > file.count) await fail(REASON.CORRUPT, 'CORRUPT', `FILE_NODES seq ${d.seq} out of place`, d.seq);
          const f = file!;
          const nodes = Buffer.alloc(r.hashes.length * nodeSize);
          for (let i = 0; i < r.hashes.length; i++) {
            const h = r.hashes[i]!;
            const address = localAddress(h);
            if (address < 0 || address === 1 || (damaged.size > 0 && damaged.has(h.toString('latin1')))) {
              // a hash missing because the store of its batch failed (a full block file): that failure is the reason
              await settleStores();
              throw new DdfsError('CORRUPT', `${parentDir}: ${pathText(f.path)} block ${f.next + i}: hash ${h.toString('hex')} is not held by the slave: pass rejected`);
            }
            encodeAddress(nodes, i * nodeSize, addrSize, address);
            h.copy(nodes, i * nodeSize + addrSize);
            pinnedHashes.add(h);
            f.hasher.update(h);
          }
          if (f.fd === null && f.partsBytes + nodes.length > MIRROR_STAGED_BUFFER_SIZE_BYTES) {
            // a long node list: written as it comes from now on
            f.fd = createExclusive(f.staged);
            writeAt(f.fd, Buffer.concat(f.parts, f.partsBytes), 0);
            f.parts = [];
          }
          if (f.fd !== null) {
            writeAt(f.fd, nodes, UFS_HEADER_SIZE + f.next * nodeSize);
          } else {
            f.parts.push(nodes);
            f.partsBytes += nodes.length;
          }
          f.next += r.hashes.length;
          break;
        }
        case 'FILE_END': {
          if (file === null || file.next !== file.count) await fail(REASON.CORRUPT, 'CORRUPT', `FILE_END seq ${d.seq} out of place`, d.seq);
          const f = file!;
          file = null;
          // made durable with the whole window (applyWindow), not one fsync per file
          if (f.fd !== null) closeFd(f.fd);
          if (!f.hasher.digest().equals(r.digest)) await fail(REASON.CORRUPT, 'CORRUPT', `FILE_END seq ${d.seq}: the node list of ${pathText(f.path)} does not match its digest`, d.seq);
          if (f.fd === null) await writeStaged(f.staged, Buffer.concat(f.parts, f.partsBytes), f.lane);
          ops.push({ op: 'file', path: f.path, staged: f.staged, meta: f.meta, linkGroup: f.linkGroup });
          break;
        }
        case 'CHECKPOINT': {
          await applyWindow();
          state = { ...state, pass: { ...state.pass!, keyCurHex: r.keyCur.toString('hex'), recordsApplied: Number(r.recordCount) } };
          writeMirrorState(parent, state);
          break;
        }
        case 'COMMIT': {
          await applyWindow();
          await store.sync();
          state = { ...state, pass: null, claim: {
            kind: passMode === 'incremental' ? 'incremental' : 'content', claimKind: r.claimKind, passId: r.passId.toString('hex'), time: new Date().toISOString(),
            syncEndTid: r.tidEnd.toString(), generation: passGeneration,
          } };
          if (bindTo !== null && state.masterUuid === undefined) state.masterUuid = bindTo;
          writeMirrorState(parent, state);
          hook('claim-written');
          // the claim is durable: the undo areas and the staging directory are stale now (state.pass is null) and
          // go in the thread pool after the ACK, while the master ends its side; the TERM (or an error) waits for them
          undo = null;
          try {
            // an incremental pass saw only its dirty paths: the cache of the last content pass is kept as it is
            if (passMode !== 'incremental') digestCache?.save();
          } catch {
            // a cache not written costs the next pass time, never correctness
          }
          summary.committed = true;
          await out?.send({ type: 'ACK', passId: r.passId, committedTid: 0n });
          staleRemoval = Promise.all([dropUndoAreasAsync(parent), removeTreeAsync(path.join(mirrorDirectory(parent), 'staging'))]).then(() => undefined);
          staleRemoval.catch(() => undefined); // awaited at the TERM or after an error
          break;
        }
        case 'IDLE':
          // nothing changed on the master in the pass's range (§4.6 step 1): its COMMIT follows
          break;
        case 'TERM':
          await staleRemoval;
          try {
            await out?.send({ type: 'TERM', reason: REASON.OK });
            await out?.end();
          } catch {
            // the master ends its side after its TERM and need not read ours: over ssh its exit can close our pipe
            // first (a loaded host, a slow stale-area removal). The pass stands or falls by the ACKed COMMIT alone.
            // send already marked the writer closed and stopped its heartbeat before it threw
          }
          if (!summary.committed) throw new DdfsError('TOO_SHORT', `${parentDir}: the master ended the stream before COMMIT`);
          return summary;
        case 'ERROR':
          throw new DdfsError('CORRUPT', `the master aborted the pass: ${r.message ?? `reason ${r.reason}`}`);
        default:
          await fail(REASON.CORRUPT, 'CORRUPT', `unexpected ${r.type} from the master (seq ${d.seq})`, d.seq);
      }
    }
  } catch (err) {
    if (file !== null && file.fd !== null) closeFd(file.fd);
    if (killed) throw err;
    if (err instanceof DdfsError && out !== null && !(err.data as { sent?: boolean } | undefined)?.sent) {
      // tell the master why (a codec fault of its stream, a missing block), when not already done
      try {
        await out.send({ type: 'ERROR', reason: REASON.CORRUPT, message: err.message.slice(0, 1000) });
      } catch {
        // already ended
      }
    }
    throw err;
  } finally {
    // no staged write may land after the pass ended (a resumed pass of the same id stages under the same names)
    await Promise.allSettled(stagedWrites.splice(0));
    // nor any block write: every one settled before the volume closes
    await Promise.allSettled(storing.splice(0));
    // nor the removal of stale areas (a pass ended by an error after its ACK: the next one removes what is left)
    await staleRemoval.catch(() => undefined);
    await writeback;
    await (hashWorkers as HashWorkers | null)?.close(); // assigned in submitPending
    unpin();
    PASS_PINS.delete(parent);
    await digests?.close();
    // a simulated kill (test hooks): nothing more reaches the disk (the index pages and bitmap in memory are lost)
    if (killed) await vol.crash?.();
  }
}

/** The extended attributes of `p` a mirror compares (reserved ones left out), sorted by name. */
function xattrsHere(p: Buffer): Xattr[] {
  return readAllXattrs(p, (name) => !isReservedXattr(name));
}

/** Whether `p` holds exactly the extended attributes `want` (absent: none). */
function sameXattrs(p: Buffer, want: Xattr[] = []): boolean {
  const have = xattrsHere(p);
  return have.length === want.length && have.every((h, i) => h.name.equals(want[i]!.name) && h.value.equals(want[i]!.value));
}

/**
 * Make the extended attributes of `p` (not following a symlink) exactly `want` (absent: none): others removed, the
 * missing and different ones set. A reserved name the master sent is ignored (never written on the slave).
 * @throws the host's errors (ENOTSUP on a slave file system without extended attributes, EPERM...)
 */
function applyXattrs(p: Buffer, want: Xattr[] = []): void {
  const keep = want.filter((x) => !isReservedXattr(x.name));
  const have = xattrsHere(p);
  for (const h of have) if (!keep.some((w) => w.name.equals(h.name))) removeXattr(p, h.name);
  for (const w of keep) {
    const h = have.find((x) => x.name.equals(w.name));
    if (h === undefined || !h.value.equals(w.value)) setXattr(p, w.name, w.value);
  }
}
