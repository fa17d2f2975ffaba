/**
 * The master side of a pass by content (mirroring spec §4.6 step 5 without a journal, §4.7, §4.9): the master walks
 * its UFS tree in canonical key order, and in a two-way stream exchanges DIGESTQ/DIGESTA from the root down and
 * descends only into mismatches; it sends DIR + DIRLIST (deletions exact), FILE_BEGIN/FILE_NODES/FILE_END, SYMLINK,
 * SPECIAL, LINK (further names of a hard-link group sent in this pass), HASHQ/HAVE and BLOCK for the hashes the slave
 * lacks, CHECKPOINT every MIRROR_CHECKPOINT_RECORD_COUNT records or MIRROR_CHECKPOINT_SIZE_BYTES bytes, and COMMIT.
 * A one-way stream (`read`) sends the whole tree and every distinct block it references once (self-contained).
 *
 * Invariants:
 * - Each distinct hash is queried (HASHQ) or sent (BLOCK) at most once per pass; the zero block never.
 * - A BLOCK is sent only after its bytes were re-read from the master's block file and hash to the node's hash.
 *   On a mismatch the file's node list is read again; if the hash still does not match, the block is corrupt on the
 *   master: it is reported (`CORRUPT path block i`), never sent, and when the slave lacks it the file is not sent
 *   (the slave keeps what it has) and the claim is only `atleast`. When the node list read again no longer names
 *   the hash (the file was rewritten or deleted during the pass), nothing is corrupt: the file is not sent in this
 *   pass and the claim is only `atleast`.
 * - Blocks come before the FILE_BEGIN that needs them.
 * - A RENAME is sent only for a DIGESTA hint whose source path is gone or different on the master (a move, never a
 *   copy), at most once per target, and is always followed by a DIGESTQ of the target: the slave's answer, not the
 *   hint, decides whether the target's state is sent, so a refused hint still converges.
 * - Nothing of the master is written except `ddfsmirror/state` on first use (its uuids) and, after the pass, the
 *   pass's digest cache `ddfsmirror/digest-cache` (digest_cache.ts), the replica's record `ddfsmirror/slaves/<uuid>`
 *   and journal retention (replicas.ts, after the ACK; spec §4.12).
 * - The source may be a slave with a committed claim (a relay, §4.12 cascading): it serves that claim (its TID,
 *   generation and kind) by a content pass, and never commits a pass during which its own claim changed.
 * - A mounted master is read inside its daemon (control.ts): the daemon's held node lists are written back first,
 *   and the claim is `exact` only when nothing was written to the volume from the start of the pass to its COMMIT.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { bytesEqual } from '../util/bytes.js';
import {
  MIRROR_CHECKPOINT_RECORD_COUNT, MIRROR_CHECKPOINT_SIZE_BYTES, MIRROR_DIGESTQ_AHEAD_COUNT_MAX, MIRROR_DIGESTQ_BATCH_COUNT, MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX, MIRROR_DIRLIST_ENTRY_COUNT_MAX,
  MIRROR_FILE_NODES_COUNT_MAX, MIRROR_HASHQ_COUNT_MAX, MIRROR_RENAME_COUNT_MAX, ADDR_ZERO, MIRROR_BLOCK_READ_SIZE_BYTES,
  MIRROR_BLOCK_HASH_BATCH_COUNT_MAX, MIRROR_SEND_WINDOW_FILE_COUNT_MAX, MIRROR_SEND_WINDOW_NODE_COUNT_MAX,
} from '../limits.js';
import { ROOT_DIRECTORY } from '../format/layout.js';
import { decodeAddress } from '../format/node.js';
import { fileDevices } from '../io/device.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { mountPointOf } from '../volume/volume.js';
import { RecordReader, RecordWriter } from './channel.js';
import { FileContentHasher, VolumeDigests, type EntryKind, type EntryRecord, type TreeAccess, type TreeEntryMeta } from './digest.js';
import { DigestCache } from './digest_cache.js';
import { blocksPerRecordMax, CAPABILITY_BLOCKS, REASON, type DigestaRecord, type DirEntry, type EntryType, type HelloRecord, type Meta, type MirrorRecord, type SpecialKind } from './record_body.js';
import type { PassVolume } from './pass_volume.js';
import { journalHolds, type JournalView } from './journal.js';
import { claimTid, lineageIdOf, masterUuidOf, readMirrorState, sourceState } from './state.js';
import { takeReplicaLock, type ReplicaLock } from '../volume/lock.js';

/** The tool a replica lock names (volume/lock.ts takeReplicaLock). */
const REPLICA_LOCK_TOOL = 'mirrorddumbfs';
import { applyRetention, readReplica, recordAck, type RetentionLimits } from './replicas.js';
import { renderRateAndEta } from './progress.js';
import { STREAM_VERSION } from './stream_codec.js';
import { HashWorkers, type HashedBatch } from '../store/hash_pool.js';
import { HashKeyTable } from '../store/hash_keys.js';

/** What a pass did, for the summary line (spec §4.9 progress; issue 7 item 9). */
export interface PassSummary {
  filesVisited: number;
  filesSent: number;
  blocksSent: number;
  blocksHeld: number;
  bytesOnWire: number;
  corrupt: Array<{ path: Buffer; blockIndex: number }>;
  skippedFiles: Buffer[];
  resumed: boolean;
  /** RENAME hints sent, and those after which the slave's entry matched (its subtree was not resent). */
  renamesSent: number;
  renamesMatched: number;
  elapsedMs: number;
  claimKind: 'exact' | 'atleast';
  /** 'content' (the whole tree by digest) or 'incremental' (the dirty paths of (tidBeg - 1, tidEnd], §4.6). */
  passKind: 'content' | 'incremental';
  /** The TID range covered: the claim is at tidEnd (0n: the master has no journal, no TID claim). */
  tidBeg: bigint;
  tidEnd: bigint;
  /** Why a content pass was chosen although the master has a journal, or null. */
  contentReason: string | null;
  /** Dirty paths read from the journal for an incremental pass. */
  dirtyCount: number;
  /**
   * Divergence alarms (spec §4.8 NEED): entries an incremental pass listed as unchanged since the replica's claim
   * that the replica lacked; each was re-sent within the pass.
   */
  divergenceAlarms: number;
  /**
   * NEEDs explained by a change made after tid_end (spec §4.8 NEED; a mounted master in use): the entry was listed as
   * unchanged since the claim, but a journal record above tid_end places an entry at its path or an ancestor's. Each
   * was re-sent within the pass like an alarm, and is not counted as one.
   */
  concurrentNeeds: number;
  /**
   * Directories on the way of an incremental pass visited by name, without a listing or DIRLIST: none of their
   * entries was added, removed or moved in the range (DirtyPlan.listed).
   */
  directoriesNamed: number;
}

/**
 * The dirty set of an incremental pass (§4.6 step 2), latin1 keys of raw paths: the paths the journal names in the
 * range, and every directory on the way to one of them (visited for its DIR, and its DIRLIST (deletion by absence)
 * when its entries may have changed: `listed`).
 */
interface DirtyPlan {
  paths: Set<string>;
  ancestors: Set<string>;
  /**
   * Rename target → the name it had at the start of the range (renames chained through the range followed back):
   * the RENAME hint of an incremental pass, whose slave answers DIGESTQ without the whole-tree walk that finds hints.
   */
  renamedFrom: Map<string, Buffer>;
  /**
   * Paths every record of the range names only as a metadata change (chmod, chown, utimens, xattr). Such a
   * directory's entries did not change through it (each entry changed has a record of its own), so it is visited as
   * a directory on the way (DIR with its new meta + DIRLIST by listing), never digested whole: cp -a sets the
   * times of a directory of 18k entries after filling it, which made a pass digest and query all 18k.
   */
  metaOnly: Set<string>;
  /**
   * Directories whose entries may have changed in the range (spec §4.6 step 2: "every parent directory whose
   * entries changed gets a DIRLIST"): the parent of each path (and dest) of a record whose op can add, remove or
   * move an entry, i.e. every op but those of CONTENT_OPS and META_OPS (an op not known here counts). A directory on
   * the way that is not in it is visited by the names of its dirty children and children on the way (`childrenOf`),
   * without a listing or a DIRLIST: 100 files rewritten in 100 directories of 100 entries were 10,000 DIRLIST
   * entries listed, sent and compared by the slave for no change of any directory. A directory made, removed or
   * renamed behind the journal in such a directory is then not seen by the incremental pass: that missed stamp is
   * caught by the seal's census (an unmounted master), a content pass or verify, as any other (issue 8).
   */
  listed: Set<string>;
  /** Directory → the names of the paths of `paths` and `ancestors` directly in it (latin1 keys, raw names). */
  childrenOf: Map<string, Map<string, Buffer>>;
}

/** Journal ops that change only an entry's metadata, not which entries a directory holds. */
const META_OPS: ReadonlySet<string> = new Set(['chmod', 'chown', 'utimens', 'xattr']);

/** Journal ops that change only a file's content, not which entries a directory holds. */
const CONTENT_OPS: ReadonlySet<string> = new Set(['write', 'truncate']);

/** A tree path's parent directory ('' for an entry of the root) as a latin1 key, and its last component. */
function splitPath(p: Buffer): { parentKey: string; name: Buffer } {
  const i = p.lastIndexOf(0x2f);
  return { parentKey: i < 0 ? '' : p.subarray(0, i).toString('latin1'), name: p.subarray(i + 1) };
}

/**
 * Journal ops that can make an entry appear at a name (its path; for rename and link see entryNamesOf). Only these
 * explain a listed entry the replica lacks: a chmod, write or unlink of a name does not put an entry there.
 */
const ENTRY_OPS: ReadonlySet<string> = new Set(['create', 'mkdir', 'symlink', 'mknod']);

/**
 * The names at which journal record `r` may have put an entry, or from which it moved one (a rename's source: a
 * name listed before the move may still be asked for): [] for an op that places none.
 */
function entryNamesOf(r: { op?: string; path: Buffer; dest?: Buffer }): Buffer[] {
  if (r.op === 'rename') return r.dest === undefined ? [r.path] : [r.path, r.dest];
  if (r.op === 'link') return r.dest === undefined ? [] : [r.dest];
  return r.op !== undefined && ENTRY_OPS.has(r.op) ? [r.path] : [];
}

/** Whether `p` or one of its ancestors (never the root) is a key of `names` (latin1 keys of raw paths). */
function namesPathOrAncestor(names: ReadonlySet<string>, p: Buffer): boolean {
  if (names.has(p.toString('latin1'))) return true;
  for (let i = p.length - 1; i > 0; i--) if (p[i] === 0x2f && names.has(p.subarray(0, i).toString('latin1'))) return true;
  return false;
}

/** The plan of `records` (path and dest of each). */
function dirtyPlanOf(records: ReadonlyArray<{ op?: string; path: Buffer; dest?: Buffer }>): DirtyPlan {
  const paths = new Set<string>();
  const ancestors = new Set<string>();
  const renamedFrom = new Map<string, Buffer>();
  const metaOnly = new Set<string>();
  const notMetaOnly = new Set<string>();
  const listed = new Set<string>();
  for (const r of records) {
    if (r.op === undefined || (!META_OPS.has(r.op) && !CONTENT_OPS.has(r.op))) {
      listed.add(splitPath(r.path).parentKey);
      if (r.dest !== undefined) listed.add(splitPath(r.dest).parentKey);
    }
    if (r.op === 'rename' && r.dest !== undefined && !r.dest.equals(r.path)) {
      const from = r.path.toString('latin1');
      const origin = renamedFrom.get(from) ?? r.path;
      renamedFrom.delete(from);
      renamedFrom.set(r.dest.toString('latin1'), origin);
    }
    for (const p of r.dest === undefined ? [r.path] : [r.path, r.dest]) {
      const key = p.toString('latin1');
      if (r.op !== undefined && META_OPS.has(r.op) && r.dest === undefined) {
        if (!notMetaOnly.has(key)) metaOnly.add(key);
      } else {
        notMetaOnly.add(key);
        metaOnly.delete(key);
      }
      if (paths.has(key)) continue;
      paths.add(key);
      for (let i = p.length - 1; i >= 0; i--) if (p[i] === 0x2f) ancestors.add(p.subarray(0, i).toString('latin1'));
      ancestors.add('');
    }
  }
  const childrenOf = new Map<string, Map<string, Buffer>>();
  for (const key of [...paths, ...ancestors]) {
    if (key.length === 0) continue;
    const { parentKey, name } = splitPath(Buffer.from(key, 'latin1'));
    let names = childrenOf.get(parentKey);
    if (names === undefined) childrenOf.set(parentKey, (names = new Map()));
    names.set(name.toString('latin1'), name);
  }
  return { paths, ancestors, renamedFrom, metaOnly, listed, childrenOf };
}

/** Options of the master side. */
export interface MasterOptions {
  access: TreeAccess;
  /** Read the slave's answers (two-way); null for a one-way stream. */
  input: RecordReader | null;
  checkpointRecordCount?: number;
  checkpointSizeBytes?: number;
  /** A progress line every so often (the -p option). */
  progress?: (line: string) => void;
  /** A finding to report at once (a corrupt master block). */
  report?: (line: string) => void;
  /** The destination as the user gave it, for the replica's record (`ddfsmirror/slaves/<uuid>`, replicas.ts). */
  peerLabel?: string;
  /** Journal retention caps (tests; default DEFAULT_RETENTION of replicas.ts). */
  retention?: RetentionLimits;
  /** Hash threads re-hashing the blocks sent (default: one per CPU; a local copy gives each side half). */
  hashThreads?: number;
  /** Nice value of those threads (default HASH_WORKER_NICE: a daemon's; the mirrorddumbfs CLI's copy gives 0). */
  hashNice?: number;
  /**
   * Runs of at least this many blocks are read into their own BLOCKS frame when the peer is this process's slave
   * (RecordWriter.blocksFrame; default RUN_RECORD_BLOCK_COUNT_MIN): tests give 1, so small volumes take that path.
   */
  frameRunBlockCountMin?: number;
  /**
   * A content pass even when the journal allows an incremental one (`copy --content`, spec §4.6 step 5): the whole
   * tree by digest, which finds and repairs a change the journal missed (a missed stamp, issue 8), as a generation
   * bump would, without one. A resumed pass is one already.
   */
  contentPass?: boolean;
}


const EMPTY = Buffer.alloc(0);
/** Values of the pass's `known` table of hashes (runMaster). */
const KNOWN_UNAVAILABLE = 0;
const KNOWN_HELD = 1;
/**
 * Hashes `known` is sized for once a content pass is chosen: the master's blocks in use bound the distinct hashes
 * of a pass, so a volume of up to this many never grows the table (each growth copies it whole); a larger one
 * starts at this size. An incremental pass starts small and grows with the hashes of its changed files: sized for
 * the whole volume, its few thousand keys at random slots touched a new page each (a tenth of a 1 % pass's time).
 */
const KNOWN_CAPACITY_HINT_MAX = 1 << 20;
/** A run of at least this many blocks read and hashed whole is sent as a BLOCKS record of its own (sendBlocks). */
const RUN_RECORD_BLOCK_COUNT_MIN = 32;
/** At most one progress line a second between CHECKPOINTs (one at each CHECKPOINT). */
const PROGRESS_INTERVAL_MS = 1000;

function entryTypeOf(r: EntryRecord): EntryType {
  if (r.kind === 'file') return 'file';
  if (r.kind === 'directory') return 'dir';
  if (r.kind === 'symlink') return 'symlink';
  return 'special';
}

function entryTypeOfKind(kind: EntryKind): EntryType {
  return kind === 'file' ? 'file' : kind === 'directory' ? 'dir' : kind === 'symlink' ? 'symlink' : 'special';
}

/**
 * The DIR meta of a directory from its lstat (a directory's mtime is not compared, §4.11: 0, as metaOf gives), with
 * its extended attributes: the slave makes a directory's attributes exactly those of its DIR record, so a DIR
 * without them (an incremental pass's ancestor) removed every attribute of the replica's directory.
 */
function directoryMeta(m: TreeEntryMeta): Meta {
  return { mode: m.mode & 0o7777, uid: m.uid, gid: m.gid, mtimeNs: 0n, atimeNs: 0n, ...(m.xattrs?.length ? { xattrs: m.xattrs } : {}) };
}

function metaOf(r: EntryRecord, fallbackMode: number): Meta {
  void fallbackMode;
  return { mode: r.mode, uid: r.uid, gid: r.gid, mtimeNs: r.mtimeNs ?? 0n, atimeNs: 0n, ...(r.xattrs?.length ? { xattrs: r.xattrs } : {}) };
}

/**
 * Refuse a mounted volume, for what its daemon cannot do (init-slave: a daemon mounted before the volume became a
 * slave serves it writable).
 * @throws DdfsError MOUNTED with one line naming the volume and the mount point
 */
export function refuseMounted(parentDir: string, why = 'unmount it first'): void {
  const mp = mountPointOf(path.resolve(parentDir));
  if (mp !== null) throw new DdfsError('MOUNTED', `${parentDir}: is mounted on ${mp}: ${why}`, { path: parentDir });
}

/** Whether the slave's pending pass may be resumed: a well-formed id and a key_cur that is a path of this volume. */
async function resumable(digests: VolumeDigests, hello: HelloRecord): Promise<Buffer | null> {
  const p = hello.pendingPass;
  if (p === undefined) return null;
  try {
    if (p.keyCur.length > 0 && (await digests.entry(p.keyCur)) === null) return null;
  } catch {
    return null;
  }
  return p.passId;
}

/**
 * Run the master side of one pass of the opened volume `vol` (pass_volume.ts; the caller closes it) onto `out`.
 * @returns the pass summary (after the slave's ACK in a two-way stream)
 * @throws DdfsError INVALID (the slave's HELLO does not match: shared uuid, block size, hash; a relay source with a
 *   pass in progress or no claim), BUSY (a relay's claim changed during the pass), CORRUPT (the slave answered ERROR
 *   or the stream is corrupt), IO
 */
export async function runMaster(vol: PassVolume, out: RecordWriter, options: MasterOptions): Promise<PassSummary> {
  const t0 = Date.now();
  const parentDir = vol.label;
  const parent = vol.parentDir;
  const cfg = vol.config;
  // a master, or a slave serving its last committed claim to another slave (a relay, §4.12 cascading)
  const state = sourceState(parent);
  const relay = state.role === 'slave';
  const relayClaim = relay ? state.claim! : null;
  // what the daemon holds in memory goes to the UFS files first: the pass reads node lists from disk
  // the range's end first (§4.6 step 1, §4.18 inv. 8): the durable head, the data-write window closed, so every
  // change after this point gets a TID above it and the next pass sees it
  let journal: JournalView | null = null;
  let journalError: string | null = null;
  try {
    const j = vol.openJournal ? await vol.openJournal() : null;
    if (typeof j === 'string') journalError = j;
    else journal = j;
  } catch (err) {
    journalError = `the journal cannot be read (${err instanceof Error ? err.message : String(err)})`;
  }
  const tidEnd = relayClaim !== null ? claimTid(relayClaim) : (journal?.beginCover() ?? 0n);
  /** The generation the pass's claim is of: a relay's is the one of its own claim. */
  const generation = relayClaim !== null ? (relayClaim.generation ?? state.generation) : state.generation;
  const nextTidAtStart = journal?.nextTid ?? 0n;
  await vol.flush();
  const changesAtStart = vol.changeCount();
  // the pass's digests may come from the digest cache (verify's never do, spec §4.11); findings are verify's
  const digestCache = DigestCache.open(parent, cfg.hashSize);
  const digests = await VolumeDigests.open(parent, { access: options.access, mtime: true, cache: digestCache, findings: false, liveTree: true });
  const store = vol.store;
  const input = options.input;
  const summary: PassSummary = {
    filesVisited: 0, filesSent: 0, blocksSent: 0, blocksHeld: 0, bytesOnWire: 0, corrupt: [], skippedFiles: [], resumed: false, renamesSent: 0, renamesMatched: 0, elapsedMs: 0, claimKind: 'exact',
    passKind: 'content', tidBeg: 0n, tidEnd, contentReason: null, dirtyCount: 0, divergenceAlarms: 0, concurrentNeeds: 0, directoriesNamed: 0,
  };
  /** NEED paths the slave sent (read while waiting for another answer), and the entries that may be asked for. */
  const needed: Buffer[] = [];
  const claimedListed = new Set<string>();
  const rootDir = pathBytes(path.join(parent, ROOT_DIRECTORY));
  const { hashSize, blockSize, nodeSize, addrSize } = cfg;
  const zeroHash = store.zeroHash;
  /**
   * Hashes already queried or sent in this pass; value: KNOWN_HELD (the slave holds it, or the pass sent it) or
   * KNOWN_UNAVAILABLE (a corrupt master block the slave lacks). Keyed by the raw hash bytes (no string per block).
   */
  const known = new HashKeyTable(hashSize);
  const linkGroups = new Map<string, bigint>();
  const sentGroups = new Set<bigint>();
  let recordsAtCheckpoint = 0;
  let bytesAtCheckpoint = 0;
  const cpRecords = options.checkpointRecordCount ?? MIRROR_CHECKPOINT_RECORD_COUNT;
  const cpBytes = options.checkpointSizeBytes ?? MIRROR_CHECKPOINT_SIZE_BYTES;
  let lastProgress = Date.now();

  /**
   * DIGESTQs asked ahead (askAhead) whose DIGESTA was not read yet, in the order sent, and the answers read for them
   * and not used yet (by latin1 path, with the digest asked). The slave answers in order: every answer to a query
   * asked ahead comes before the answer to anything asked after it, so expect reads those first.
   */
  const ahead: Array<{ path: Buffer; digest: Buffer }> = [];
  const aheadAnswers = new Map<string, { digest: Buffer; answer: DigestaRecord }>();
  /** Directories whose children were asked ahead, with the children listed then (visitDirectory lists them once). */
  const listedAhead = new Map<string, EntryRecord[]>();
  const askedAhead = new Set<string>();

  const nextAnswer = async <T extends MirrorRecord['type']>(type: T): Promise<Extract<MirrorRecord, { type: T }>> => {
    let d = await input!.next();
    // a NEED comes unasked, in order with the answers (after the DIRLIST that showed the lack): kept for the end
    while (d.record.type === 'NEED' && type !== 'NEED') {
      needed.push(...d.record.paths);
      d = await input!.next();
    }
    const r = d.record;
    if (r.type === 'ERROR') throw new DdfsError(r.reason === REASON.REFUSED || r.reason === REASON.INCOMPATIBLE ? 'INVALID' : 'CORRUPT', `the slave refused the pass: ${r.message ?? `reason ${r.reason}`}`, { reason: r.reason });
    if (r.type !== type) throw new DdfsError('CORRUPT', `DDMS stream: seq ${d.seq}: expected ${type} from the slave, got ${r.type}`);
    return r as Extract<MirrorRecord, { type: T }>;
  };
  /** Latin1 paths of `ahead`. */
  const aheadPending = new Set<string>();
  /** Read the answers to queries asked ahead, in order, until none of `keys` is pending (all when absent). */
  const readAhead = async (keys?: string[]): Promise<void> => {
    while (ahead.length > 0 && (keys === undefined || keys.some((k) => aheadPending.has(k)))) {
      const q = ahead.shift()!;
      const key = q.path.toString('latin1');
      aheadPending.delete(key);
      const a = await nextAnswer('DIGESTA');
      if (!a.path.equals(q.path)) throw new DdfsError('CORRUPT', `the slave answered DIGESTA for ${pathText(a.path)}, expected ${pathText(q.path)}`);
      aheadAnswers.set(key, { digest: q.digest, answer: a });
    }
  };
  const expect = async <T extends MirrorRecord['type']>(type: T): Promise<Extract<MirrorRecord, { type: T }>> => {
    await readAhead();
    return nextAnswer(type);
  };

  /**
   * A content pass asks ahead (spec §4.6 step 5, §4.11): before the visit goes into the first of `dirs` (directories
   * it will visit, in order), the DIGESTQs of their children are sent, up to MIRROR_DIGESTQ_AHEAD_COUNT_MAX asked and
   * not used, so the slave's DIGESTAs are in by the time the visit gets there, instead of a round trip behind the
   * window's blocks at every directory. Sound because what the pass changes on the slave before the visit gets there
   * (the windows of earlier paths, a RENAME hint applied) never makes an answer that matched stale: a match means the
   * slave's subtree is the master's, so no RENAME takes its source from it (the master's source would be unchanged,
   * a copy) and no earlier op is in it; an answer that became a match only costs that subtree's records.
   */
  const askAhead = async (dirs: Buffer[]): Promise<void> => {
    for (const d of dirs) {
      const key = d.toString('latin1');
      if (askedAhead.has(key)) continue;
      const used = ahead.length + aheadAnswers.size;
      if (used >= MIRROR_DIGESTQ_AHEAD_COUNT_MAX) return;
      const children = await digests.list(d);
      if (used > 0 && used + children.length > MIRROR_DIGESTQ_AHEAD_COUNT_MAX) return; // later, with room for it
      askedAhead.add(key);
      children.sort((a, b) => Buffer.compare(a.name, b.name));
      listedAhead.set(key, children);
      for (const c of children) {
        const p = joinPathBytes(d, c.name);
        await out.send({ type: 'DIGESTQ', path: p, digest: c.digest });
        ahead.push({ path: p, digest: c.digest });
        aheadPending.add(p.toString('latin1'));
      }
    }
  };

  const maybeCheckpoint = async (key: Buffer): Promise<void> => {
    const c = out.counters;
    if (c.records - recordsAtCheckpoint >= cpRecords || c.bytes - bytesAtCheckpoint >= cpBytes) {
      // everything up to `key` is in the stream before the CHECKPOINT that names it
      await flushWindow();
      await out.send({ type: 'CHECKPOINT', keyCur: key });
      recordsAtCheckpoint = c.records;
      bytesAtCheckpoint = c.bytes;
      lastProgress = 0; // a progress line at every CHECKPOINT
    }
    if (options.progress && Date.now() - lastProgress >= PROGRESS_INTERVAL_MS) {
      lastProgress = Date.now();
      const rateAndEta = renderRateAndEta({ blocksDone: summary.blocksSent + summary.blocksHeld, blocksUsed: Math.max(store.blockCountUsed - 2, 0), bytes: out.counters.bytes, elapsedMs: Date.now() - t0 });
      options.progress(`files ${summary.filesVisited}, blocks sent ${summary.blocksSent}, held ${summary.blocksHeld}, ${out.counters.bytes} bytes, ${rateAndEta}, at ${pathText(key)}`);
    }
  };

  /** Read the raw node list (address, hash) of file `rel`, padded with zero nodes to ceil(size / block_size). */
  const readNodes = async (rel: Buffer): Promise<{ size: number; nodes: Buffer; count: number }> => {
    const f = await UfsNodeFile.open(fileDevices, joinPathBytes(rootDir, rel), nodeSize, { strict: true });
    try {
      const count = Math.ceil(f.size / blockSize);
      const nodes = Buffer.alloc(count * nodeSize);
      const have = Math.min(count, f.nodeCount);
      if (have > 0) await f.readNodes(0, have, nodes.subarray(0, have * nodeSize));
      for (let j = have; j < count; j++) zeroHash.copy(nodes, j * nodeSize + addrSize);
      return { size: f.size, nodes, count };
    } finally {
      await f.close().catch(() => undefined);
    }
  };

  const blockScratch = Buffer.alloc(blockSize);
  const hashScratch = Buffer.alloc(hashSize);
  /** The block at `address` if it hashes to `hash`, else null. */
  const checkedBlock = async (address: number, hash: Buffer): Promise<Buffer | null> => {
    if (address < 2 || address >= cfg.blockCount) return null;
    try {
      await store.readBlock(address, blockScratch, 0);
    } catch {
      return null;
    }
    store.hasher.hashInto(blockScratch, hashScratch, 0);
    return hashScratch.equals(hash) ? Buffer.from(blockScratch) : null;
  };

  /**
   * Files whose records wait to be sent together (spec §4.6 step 4): one HASHQ batch for the distinct new hashes of
   * them all, their missing blocks read in runs of consecutive addresses and re-hashed by the hash threads, then their
   * BLOCKs, then their FILE_BEGIN/FILE_NODES/FILE_END in visit order. The window is sent (flushWindow) before any
   * other record, so the stream's order is the order of the visit.
   */
  /** `sizeBytes`: the size the node list was read at (a live tree may have changed it since `rec` was made). */
  interface PendingFile { rel: Buffer; rec: EntryRecord; nodes: Buffer; count: number; sizeBytes: number; group: bigint; changed: boolean }
  let window: PendingFile[] = [];
  let windowNodeCount = 0;
  /** Started at the first block to send; closed when the pass ends. */
  let hashWorkers: HashWorkers | null = null;
  const runBlocksMax = Math.max(1, Math.floor(MIRROR_BLOCK_READ_SIZE_BYTES / blockSize));
  const spareBuffers: Buffer[] = [];

  const canonicalOf = (f: PendingFile, j: number): Buffer => {
    const at = j * nodeSize;
    return decodeAddress(f.nodes, at, addrSize) === ADDR_ZERO ? zeroHash : f.nodes.subarray(at + addrSize, at + addrSize + hashSize);
  };

  interface Wanted { hash: Buffer; file: PendingFile; index: number; address: number }

  /**
   * A block whose bytes did not hash to its hash at the address the node list named: the address may have been
   * reused (reclaim) or the file rewritten, so its node list is read again once (spec §5 scenario 7).
   * @returns the block's bytes, 'changed' (the file no longer names the hash: it is not sent in this pass) or
   *   'corrupt' (it still names it and the bytes do not match: a corrupt master block)
   */
  const recoverBlock = async (w: Wanted): Promise<Buffer | 'changed' | 'corrupt'> => {
    const again = await readNodes(w.file.rel).catch((err: unknown) => {
      if ((err as { code?: string }).code === 'ENOENT') return null;
      throw err;
    });
    let named = false;
    let data: Buffer | null = null;
    for (let j = 0; again !== null && j < again.count && data === null; j++) {
      const o = j * nodeSize;
      if (again.nodes.compare(w.hash, 0, hashSize, o + addrSize, o + addrSize + hashSize) === 0) {
        named = true;
        data = await checkedBlock(decodeAddress(again.nodes, o, addrSize), w.hash);
      }
    }
    return !named ? 'changed' : data ?? 'corrupt';
  };

  /** Send the BLOCK of `w` (`data` hashed to its hash), or settle why it cannot be sent. */
  const sendWanted = async (w: Wanted, data: Buffer | null): Promise<void> => {
    if (w.file.changed) return;
    const got = data ?? (await recoverBlock(w));
    if (got === 'changed') {
      // deleted or rewritten since its node list was read: the file no longer names this hash, so no block is
      // corrupt; it is not sent in this pass (the slave keeps what it has, the next pass sends its new state)
      w.file.changed = true;
      return;
    }
    if (got === 'corrupt') {
      summary.corrupt.push({ path: w.file.rel, blockIndex: w.index });
      options.report?.(`CORRUPT ${pathText(w.file.rel)} block ${w.index} on the master: not sent`);
      known.set(w.hash, KNOWN_UNAVAILABLE);
      return;
    }
    await sendBlock(w.hash, got);
    known.set(w.hash, KNOWN_HELD);
    summary.blocksSent++;
  };

  /**
   * Blocks to a peer with CAPABILITY_BLOCKS go out batched, blocksPerRecordMax a BLOCKS record (copied here, so the
   * read buffers they came from are free again at once); to any other peer (a one-way stream) one BLOCK each.
   * flushBlocks sends what is batched: sendBlocks ends with it, so the blocks still come before their FILE_BEGIN.
   */
  let batchBlocks = false;
  const batchMax = blocksPerRecordMax(blockSize);
  let batchData: Buffer | null = null;
  const batchHashes: Buffer[] = [];
  const sendBlock = async (hash: Buffer, data: Buffer): Promise<void> => {
    if (!batchBlocks) {
      await out.send({ type: 'BLOCK', hash, data });
      return;
    }
    batchData ??= Buffer.allocUnsafe(batchMax * blockSize);
    data.copy(batchData, batchHashes.length * blockSize);
    batchHashes.push(hash);
    if (batchHashes.length === batchMax) await flushBlocks();
  };
  const flushBlocks = async (): Promise<void> => {
    if (batchHashes.length === 0) return;
    const hashes = batchHashes.splice(0);
    // the encoder copies the data into the frame before send returns: the batch buffer is free again after it
    await out.send({ type: 'BLOCKS', hashes, data: batchData!.subarray(0, hashes.length * blockSize) }, { mustUnderstand: true });
  };

  /**
   * A run of `wanted` and its read-and-hash: null when the run could not be read (each block then goes through
   * recoverBlock). `frame`: the BLOCKS frame the run was read into (RecordWriter.blocksFrame, a local copy), or null
   * (a read buffer of spareBuffers).
   */
  interface RunJob { run: Wanted[]; result: Promise<HashedBatch | null>; frame: Buffer | null }
  /**
   * Runs are read straight into BLOCKS frames (at most batchMax blocks each, RecordWriter.blocksFrame) when the peer is
   * this process's slave: the frame that crosses is the buffer the blocks were read and hashed in, never copied.
   */
  const framesInPlace = (): boolean => batchBlocks && out.framesInPlace;
  /** Runs read ahead: as many bytes in flight with frames of batchMax blocks as with read buffers of runBlocksMax. */
  const frameRunMin = Math.max(1, options.frameRunBlockCountMin ?? RUN_RECORD_BLOCK_COUNT_MIN);
  const runsAhead = (count: number): number => (framesInPlace() ? count * Math.max(1, Math.floor(runBlocksMax / batchMax)) : count);
  /**
   * The runs of consecutive addresses of `wanted` (ascending), each read with one pread and handed to the hash threads
   * as `fill` is asked for them: a window's reads may start before its HAVE answers are in (flushWindow). A read is
   * started, not awaited (read-ahead): the runs in flight are read by the thread pool side by side, each handed to a
   * hash thread as soon as its bytes are in, while this thread sends the runs before them; sendBlocks takes them in
   * order. Each run has its own buffer until sendBlocks (or discard) gives it back.
   */
  const runReader = (wanted: Wanted[]) => {
    const order = [...wanted].sort((x, y) => x.address - y.address);
    const queue: RunJob[] = [];
    let i = 0;
    /** Start reading runs until `max` are in flight or none is left. */
    const fill = (max: number): void => {
      const inPlace = framesInPlace();
      const runMax = inPlace ? Math.min(batchMax, runBlocksMax) : runBlocksMax;
      while (queue.length < max && i < order.length) {
        let n = 1;
        const first = order[i]!.address;
        const inRange = first >= 2 && first < cfg.blockCount;
        while (inRange && n < runMax && i + n < order.length && order[i + n]!.address === first + n && first + n < cfg.blockCount) n++;
        const run = order.slice(i, i + n);
        i += n;
        let result: Promise<HashedBatch | null> = Promise.resolve(null);
        let frame: Buffer | null = null;
        if (inRange) {
          // a long run into a frame of its own (its blocks at the frame's tail), any other into a read buffer
          frame = inPlace && n >= frameRunMin ? out.blocksFrame(n, hashSize, blockSize) : null;
          const buf = frame !== null ? frame.subarray(frame.length - n * blockSize) : (spareBuffers.pop() ?? HashWorkers.sharedBatch(runBlocksMax * blockSize));
          const f = frame;
          result = store.readBlocks(first, n, buf, 0).then(
            () => {
              hashWorkers ??= HashWorkers.start(cfg.hashName, blockSize, options.hashThreads, options.hashNice);
              return hashWorkers.hash(buf, n);
            },
            () => {
              if (f !== null) out.dropFrame(f);
              else spareBuffers.push(buf);
              return null; // unreadable run: each block goes through recoverBlock
            },
          );
          result.catch(() => undefined); // a hash thread's failure: awaited in order by sendBlocks, which throws it
        }
        queue.push({ run, result, frame });
      }
    };
    /** Drop what was read (the HAVE answers wanted another set): the buffers go back once their reads and hashing settled. */
    const discard = async (): Promise<void> => {
      for (const { result, frame } of queue.splice(0)) {
        const r = await result.catch(() => null);
        if (r === null) continue;
        if (frame !== null) out.dropFrame(frame);
        else spareBuffers.push(r.data);
      }
    };
    return { queue, fill, discard };
  };

  /**
   * Send the blocks of `reader` (runReader), a few runs in flight while the next is read: each one whose bytes hashed
   * to its node's hash is sent, the others go through recoverBlock (sendWanted).
   */
  const sendBlocks = async (reader: ReturnType<typeof runReader>): Promise<void> => {
    for (;;) {
      reader.fill(runsAhead(MIRROR_BLOCK_HASH_BATCH_COUNT_MAX + 1));
      const job = reader.queue.shift();
      if (job === undefined) break;
      const { run, result, frame } = job;
      const r = await result;
      const whole = r !== null && batchBlocks && (frame !== null || run.length >= RUN_RECORD_BLOCK_COUNT_MIN) && run.every((w, k) => !w.file.changed && bytesEqual(r.hashes, k * hashSize, w.hash, 0, hashSize));
      if (whole && frame !== null) {
        // read and hashed in its frame: the frame itself is sent (and is the reader's from then on)
        await flushBlocks();
        await out.sendBlocksFrame(frame, run.map((w) => w.hash), blockSize);
        for (const w of run) known.set(w.hash, KNOWN_HELD);
        summary.blocksSent += run.length;
        continue;
      }
      if (whole) {
        // a long run whose every block hashed to its node's hash: BLOCKS records of the read buffer itself (the
        // encoder copies it into the frame), not copied block by block into the batch first
        await flushBlocks();
        for (let at = 0; at < run.length; at += batchMax) {
          const piece = run.slice(at, at + batchMax);
          await out.send({ type: 'BLOCKS', hashes: piece.map((w) => w.hash), data: r.data.subarray(at * blockSize, (at + piece.length) * blockSize) }, { mustUnderstand: true });
        }
        for (const w of run) known.set(w.hash, KNOWN_HELD);
        summary.blocksSent += run.length;
        spareBuffers.push(r.data);
        continue;
      }
      for (let k = 0; k < run.length; k++) {
        const w = run[k]!;
        const ok = r !== null && bytesEqual(r.hashes, k * hashSize, w.hash, 0, hashSize);
        await sendWanted(w, ok ? r.data.subarray(k * blockSize, (k + 1) * blockSize) : null);
      }
      // a frame not sent whole (a block that did not hash to its node's hash) goes back to the pool unsent
      if (r !== null && frame !== null) out.dropFrame(frame);
      else if (r !== null) spareBuffers.push(r.data);
    }
    await flushBlocks();
  };
  /** The distinct hashes of the window being flushed (cleared by each flushWindow). */
  const windowSeen = new HashKeyTable(hashSize);
  /** Share of the last window's queried hashes the slave lacked: above one half, the next window's reads start early. */
  let missingShare = 1;

  /**
   * Send the files of the window (see PendingFile): HASHQ, blocks, then the files in visit order.
   * A window spans directories: it is flushed only when full, at a CHECKPOINT, or before a record that names its
   * files' order (a LINK group, a SYMLINK, SPECIAL or RENAME), never at a DIR, DIRLIST or DIGESTQ. A window of one
   * directory was a HASHQ/HAVE and a DIGESTQ/DIGESTA round trip per directory, each waiting for the slave to store
   * every block before it: the two sides' hash threads took turns in a content pass, and an incremental pass of 100
   * files in 100 directories spent most of its time in those round trips. Safe: a DIGESTQ is answered from the
   * slave's applied tree, which a window's files do not change before their CHECKPOINT, and this reads its HAVEs
   * before anything else is awaited.
   */
  const flushWindow = async (): Promise<void> => {
    if (window.length === 0) return;
    const files = window;
    window = [];
    windowNodeCount = 0;
    // distinct new hashes of the window, with the first node naming each
    const fresh: Wanted[] = [];
    const seen = windowSeen;
    seen.clear();
    for (const f of files) {
      for (let j = 0; j < f.count; j++) {
        // the node's canonical hash (canonicalOf) read in place: address 0 is the zero hash, never queried or sent
        const at = j * nodeSize;
        const address = decodeAddress(f.nodes, at, addrSize);
        const ho = at + addrSize;
        if (address === ADDR_ZERO || bytesEqual(f.nodes, ho, zeroHash, 0, hashSize)) continue;
        if (known.has(f.nodes, ho) || seen.has(f.nodes, ho)) continue;
        seen.set(f.nodes, 1, ho);
        // a view of the node list, which is never written once read (a retry reads the file's list anew)
        fresh.push({ hash: f.nodes.subarray(ho, ho + hashSize), file: f, index: j, address });
      }
    }
    let toSend: Wanted[] = fresh;
    let reader: ReturnType<typeof runReader> | null = null;
    if (input !== null && fresh.length > 0) {
      // every HASHQ of the window first, then their HAVEs (the slave answers in order)
      for (let k = 0; k < fresh.length; k += MIRROR_HASHQ_COUNT_MAX) await out.send({ type: 'HASHQ', hashes: fresh.slice(k, k + MIRROR_HASHQ_COUNT_MAX).map((b) => b.hash) });
      // while the slave gets to the HASHQs (it stores and applies what came before them first), the first runs are
      // read and hashed when the slave lacked most of the last window (an initial copy): used if it lacks them all
      if (missingShare > 0.5) {
        reader = runReader(fresh);
        reader.fill(runsAhead(MIRROR_BLOCK_HASH_BATCH_COUNT_MAX));
      }
      toSend = [];
      for (let k = 0; k < fresh.length; k += MIRROR_HASHQ_COUNT_MAX) {
        const batch = fresh.slice(k, k + MIRROR_HASHQ_COUNT_MAX);
        const have = await expect('HAVE');
        if (have.hashCount !== batch.length) throw new DdfsError('CORRUPT', `the slave's HAVE counts ${have.hashCount} hashes, the HASHQ had ${batch.length}`);
        for (let i = 0; i < batch.length; i++) {
          if ((have.missing[i >> 3]! & (1 << (i & 7))) !== 0) toSend.push(batch[i]!);
          else {
            known.set(batch[i]!.hash, KNOWN_HELD);
            summary.blocksHeld++;
          }
        }
      }
    }
    if (input !== null && fresh.length > 0) missingShare = toSend.length / fresh.length;
    if (reader !== null && toSend.length !== fresh.length) {
      await reader.discard();
      reader = null;
    }
    await sendBlocks(reader ?? runReader(toSend));
    const retry: PendingFile[] = [];
    for (const f of files) {
      if (f.changed) {
        summary.skippedFiles.push(f.rel);
        summary.claimKind = 'atleast';
        continue;
      }
      // a hash known unavailable (a corrupt master block) makes the file unsendable; one not settled (its first
      // file changed under the pass) sends the file again alone, with its node list read again
      let unavailable = false;
      let unsettled = false;
      for (let j = 0; j < f.count && !unavailable; j++) {
        const at = j * nodeSize;
        const ho = at + addrSize;
        if (decodeAddress(f.nodes, at, addrSize) === ADDR_ZERO || bytesEqual(f.nodes, ho, zeroHash, 0, hashSize)) continue;
        const k = known.get(f.nodes, ho);
        if (k === KNOWN_UNAVAILABLE) unavailable = true;
        else if (k === undefined) unsettled = true;
      }
      if (unavailable) {
        summary.skippedFiles.push(f.rel);
        summary.claimKind = 'atleast';
        continue;
      }
      if (unsettled) {
        retry.push(f);
        continue;
      }
      await sendFileRecords(f);
    }
    for (const f of retry) {
      const again = await readNodes(f.rel).catch(() => null);
      if (again === null) {
        summary.skippedFiles.push(f.rel);
        summary.claimKind = 'atleast';
        continue;
      }
      window = [{ ...f, nodes: again.nodes, count: again.count, sizeBytes: again.size }];
      await flushWindow();
    }
  };

  const sendFileRecords = async (f: PendingFile): Promise<void> => {
    const { rel, rec, count, group } = f;
    // the size the nodes were read at: FILE_BEGIN's size and node count must agree (the file may have grown since
    // its record was made, in a tree being written); such a file changed during the pass, so the claim is atleast
    if (f.sizeBytes !== rec.sizeBytes) summary.claimKind = 'atleast';
    await out.send({ type: 'FILE_BEGIN', path: rel, meta: metaOf(rec, 0o644), sizeBytes: BigInt(f.sizeBytes), nodeCount: BigInt(count), tid: 0n, linkGroup: group });
    const hasher = new FileContentHasher(count, hashSize);
    for (let j = 0; j < count; j += MIRROR_FILE_NODES_COUNT_MAX) {
      const hashes: Buffer[] = [];
      for (let i = j; i < Math.min(count, j + MIRROR_FILE_NODES_COUNT_MAX); i++) hashes.push(Buffer.from(canonicalOf(f, i)));
      hasher.update(Buffer.concat(hashes));
      await out.send({ type: 'FILE_NODES', firstIndex: BigInt(j), hashes });
    }
    await out.send({ type: 'FILE_END', digest: hasher.digest() });
    summary.filesSent++;
    if (group !== 0n) sentGroups.add(group);
  };

  const sendFile = async (rel: Buffer, rec: EntryRecord): Promise<void> => {
    const group = rec.link.length > 0 ? (linkGroups.get(rec.link.toString('latin1')) ?? BigInt(linkGroups.size + 1)) : 0n;
    if (group !== 0n) {
      // a LINK must follow the FILE of its group: a member of a link group is sent at once, in a window of its own
      linkGroups.set(rec.link.toString('latin1'), group);
      await flushWindow();
    }
    if (group !== 0n && !sentGroups.has(group) && !rec.link.equals(rel)) {
      // a new name of a group whose first name did not change (its subtree matched): send the group under its first
      // name (a no-op on a slave that has it), so this name can join that inode instead of becoming another one
      const first = await digests.entry(rec.link);
      if (first !== null && first.kind === 'file' && first.link.equals(rec.link)) await sendFile(rec.link, first);
    }
    if (group !== 0n && sentGroups.has(group)) {
      await out.send({ type: 'LINK', path: rel, linkGroup: group });
      return;
    }
    const { nodes, count, size } = await readNodes(rel);
    window.push({ rel, rec, nodes, count, sizeBytes: size, group, changed: false });
    windowNodeCount += count;
    // a window never holds back a CHECKPOINT: at most what one window of checkpoint records and bytes could send
    const c = out.counters;
    const blockRecords = batchBlocks ? Math.ceil(windowNodeCount / batchMax) : windowNodeCount;
    const dueCheckpoint = c.records + 4 * window.length + blockRecords - recordsAtCheckpoint >= cpRecords || c.bytes + windowNodeCount * blockSize - bytesAtCheckpoint >= cpBytes;
    if (group !== 0n || dueCheckpoint || windowNodeCount >= MIRROR_SEND_WINDOW_NODE_COUNT_MAX || window.length >= MIRROR_SEND_WINDOW_FILE_COUNT_MAX) await flushWindow();
  };

  const sendLeaf = async (rel: Buffer, rec: EntryRecord): Promise<void> => {
    summary.filesVisited++;
    if (rec.kind === 'file') {
      await sendFile(rel, rec);
    } else {
      await flushWindow();
      if (rec.kind === 'symlink') await out.send({ type: 'SYMLINK', path: rel, target: rec.target, meta: metaOf(rec, 0o777), tid: 0n });
      else await out.send({ type: 'SPECIAL', path: rel, kind: rec.kind as SpecialKind, rdev: BigInt(rec.rdev), meta: metaOf(rec, 0o644), tid: 0n });
    }
    await maybeCheckpoint(rel);
  };

  /**
   * The slave holds an entry at `source` with the digest of our `target` (its DIGESTA hint). When `source` is gone or
   * different here (a move, not a copy), send RENAME(source → target) and ask DIGESTQ of `target` again: the slave's
   * answer, not the hint, decides whether `target`'s state is still sent (spec §4.5: RENAME is only a hint).
   * @returns whether the slave's `target` now matches
   */
  const renameHint = async (source: Buffer, target: Buffer, rec: EntryRecord): Promise<boolean> => {
    if (summary.renamesSent >= MIRROR_RENAME_COUNT_MAX || source.length === 0 || source.equals(target)) return false;
    let here: EntryRecord | null;
    try {
      here = lazy ? await digests.entryNow(source) : await digests.entry(source);
    } catch {
      here = null; // a path whose parent is a file here, or changed: not a copy of ours
    }
    if (here !== null && here.digest.equals(rec.digest)) return false; // a copy: the slave keeps its source
    await flushWindow();
    await out.send({ type: 'RENAME', from: source, to: target, tid: 0n, fromType: entryTypeOf(rec), fromDigest: rec.digest });
    summary.renamesSent++;
    await out.send({ type: 'DIGESTQ', path: target, digest: rec.digest });
    const a = await expect('DIGESTA');
    if (!a.path.equals(target)) throw new DdfsError('CORRUPT', `the slave answered DIGESTA for ${pathText(a.path)}, expected ${pathText(target)}`);
    if (a.match) summary.renamesMatched++;
    return a.match;
  };

  /**
   * Send DIR + DIRLIST of directory `rel`, then its children: all of them by digest (a content pass, or a dirty
   * directory), or with `plan` only the dirty ones (by digest) and the directories leading to dirty paths.
   */
  const visitDirectory = async (rel: Buffer, rec: EntryRecord, plan?: DirtyPlan): Promise<void> => {
    // the window spans directories (flushWindow): its files are sent after this DIR and DIRLIST, which do not name them
    await out.send({ type: 'DIR', path: rel, meta: metaOf(rec, 0o755), tid: 0n });
    // in an incremental pass a dirty directory's children come from its own subtree (listNow): no whole-tree walk
    const relKey = rel.toString('latin1');
    const children = listedAhead.get(relKey) ?? (lazy ? await digests.listNow(rel) : await digests.list(rel));
    listedAhead.delete(relKey);
    children.sort((a, b) => Buffer.compare(a.name, b.name));
    await sendDirlist(rel, children.map((c) => ({ name: c.name, entryType: entryTypeOf(c), tid: 0n })));
    if (plan !== undefined) {
      await visitDirtyChildren(rel, children.map((c) => ({ name: c.name, kind: c.kind, record: c })), plan);
      return;
    }
    await queryChildren(rel, children);
  };

  const sendDirlist = async (rel: Buffer, entries: DirEntry[]): Promise<void> => {
    for (let k = 0; k === 0 || k < entries.length; k += MIRROR_DIRLIST_ENTRY_COUNT_MAX) {
      const piece = entries.slice(k, k + MIRROR_DIRLIST_ENTRY_COUNT_MAX);
      await out.send({ type: 'DIRLIST', path: rel, entries: piece, continues: k + MIRROR_DIRLIST_ENTRY_COUNT_MAX < entries.length });
    }
    await maybeCheckpoint(rel);
  };

  /**
   * An incremental pass's directory on the way to a dirty path (spec §4.6 step 4): DIR + DIRLIST from its listing
   * (names and types by d_type: no digest of a child that is not dirty, and an lstat only of the child directories
   * visited as ancestors below, whose DIR needs their meta), then its dirty children by digest and its children on
   * the way to further dirty paths. O(its listing + the dirty children's subtrees); the lstat calls are
   * O(the directories visited), not O(its subdirectories).
   */
  const visitAncestor = async (rel: Buffer, meta: Meta, plan: DirtyPlan): Promise<void> => {
    await out.send({ type: 'DIR', path: rel, meta, tid: 0n });
    const relKey = rel.toString('latin1');
    if (!plan.listed.has(relKey)) {
      // no entry of it was added, removed or moved in the range: no DIRLIST, only its dirty children and the
      // children on the way, by name (DirtyPlan.listed)
      const named = await digests.namedEntries(rel, [...(plan.childrenOf.get(relKey)?.values() ?? [])]);
      summary.directoriesNamed++;
      await visitDirtyChildren(rel, named, plan);
      return;
    }
    // the directories visitDirtyChildren hands to visitAncestor (directoryMeta of their lstat): those on the way
    // and the metaOnly ones
    const listing = await digests.listTypes(rel, (name) => {
      const key = joinPathBytes(rel, name).toString('latin1');
      return plan.ancestors.has(key) || plan.metaOnly.has(key);
    });
    // an entry not dirty is unchanged since the replica's claim: its TID is at most the claim (the slave's NEED test)
    const entries = listing.map((c) => {
      const key = joinPathBytes(rel, c.name).toString('latin1');
      const unchanged = !plan.paths.has(key) && !plan.ancestors.has(key);
      if (unchanged && input !== null) claimedListed.add(key);
      return { name: c.name, entryType: entryTypeOfKind(c.kind), tid: unchanged ? peerClaim : 0n };
    });
    await sendDirlist(rel, entries);
    await visitDirtyChildren(rel, listing.map((c) => ({ name: c.name, kind: c.kind, meta: c.meta })), plan);
  };

  /** The dirty children of `rel` by digest, in order, and the visit of its children on the way to dirty paths. */
  const visitDirtyChildren = async (rel: Buffer, children: Array<{ name: Buffer; kind: EntryKind; record?: EntryRecord; meta?: TreeEntryMeta }>, plan: DirtyPlan): Promise<void> => {
    const queried: EntryRecord[] = [];
    for (const c of children) {
      const childRel = joinPathBytes(rel, c.name);
      const key = childRel.toString('latin1');
      const metaOnlyDirectory = c.kind === 'directory' && plan.metaOnly.has(key);
      if (plan.paths.has(key) && !metaOnlyDirectory) {
        let r: EntryRecord | null;
        try {
          r = c.record ?? (await digests.entryNow(childRel));
        } catch (err) {
          const link = err instanceof DdfsError ? (err.data as { hardLink?: boolean; path?: Buffer }) : {};
          if (link.hardLink !== true || link.path?.equals(childRel) !== true) throw err;
          // a hard link made to this dirty file since the plan found none (chooseRange): a concurrent change. Its
          // journal record (above tid_end) names this path too (dirtyPlanOf: a link's path and dest), so the next
          // pass sends it (by content, as long as the link stands); this one leaves it and claims atleast. A link
          // inside a dirty directory still fails the pass: the next plan need not cover the directory's own changes
          summary.skippedFiles.push(childRel);
          summary.claimKind = 'atleast';
          continue;
        }
        if (r !== null) queried.push(r); // gone since the listing: a concurrent change, the next pass has its TID
      } else if (c.kind === 'directory' && (plan.ancestors.has(key) || metaOnlyDirectory)) {
        await queryChildren(rel, queried.splice(0), true);
        if (c.record !== undefined) await visitDirectory(childRel, c.record, plan);
        else await visitAncestor(childRel, directoryMeta(c.meta!), plan);
      }
    }
    await queryChildren(rel, queried, true);
  };

  /**
   * DIGESTQ each of `children` of `rel` (in batches) and send the state of those the slave does not match. With
   * `dirty` (an incremental pass's dirty paths, visitDirtyChildren), a small regular file outside a link group and
   * with no rename source in the plan is sent without its DIGESTQ (MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX): the
   * replica applies an unchanged one as a no-op, and a round trip per dirty directory was most of a small pass.
   */
  const queryChildren = async (rel: Buffer, children: EntryRecord[], dirty = false): Promise<void> => {
    if (dirty && input !== null) {
      const asked: EntryRecord[] = [];
      for (const c of children) {
        const childRel = joinPathBytes(rel, c.name);
        const unasked = c.kind === 'file' && c.link.length === 0 && c.nodeCount <= MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX
          && plan?.renamedFrom.has(childRel.toString('latin1')) !== true;
        if (!unasked) {
          asked.push(c);
          continue;
        }
        await queryChildren(rel, asked.splice(0));
        await sendLeaf(childRel, c);
      }
      children = asked;
    }
    for (let k = 0; k < children.length; k += MIRROR_DIGESTQ_BATCH_COUNT) {
      const batch = children.slice(k, k + MIRROR_DIGESTQ_BATCH_COUNT);
      // each child's tree path, joined once for its query, its answer, its hint and its visit
      const paths = batch.map((c) => joinPathBytes(rel, c.name));
      let differs = batch.map(() => true);
      const sources: Array<Buffer | undefined> = [];
      if (input !== null) {
        // a DIGESTQ is answered from the slave's applied tree, which a window's files do not change before its
        // CHECKPOINT: the window waits (flushWindow), no HAVE is outstanding meanwhile
        // an answer to a query asked ahead (askAhead) for the same digest is used; the others are asked now
        const keys = paths.map((p) => p.toString('latin1'));
        if (ahead.length > 0) await readAhead(keys);
        const answers: Array<DigestaRecord | undefined> = batch.map((c, i) => {
          const key = keys[i]!;
          const got = aheadAnswers.get(key);
          if (got !== undefined) aheadAnswers.delete(key);
          return got !== undefined && got.digest.equals(c.digest) ? got.answer : undefined;
        });
        for (const [i, c] of batch.entries()) if (answers[i] === undefined) await out.send({ type: 'DIGESTQ', path: paths[i]!, digest: c.digest });
        differs = [];
        for (const [i, c] of batch.entries()) {
          let a = answers[i];
          if (a === undefined) {
            a = await expect('DIGESTA');
            if (!a.path.equals(paths[i]!)) throw new DdfsError('CORRUPT', `the slave answered DIGESTA for ${pathText(a.path)}, expected ${pathText(paths[i]!)}`);
          }
          differs.push(!a.match);
          sources.push(a.match ? undefined : a.source ?? (lazy ? plan?.renamedFrom.get(keys[i]!) : undefined));
        }
      }
      // a content pass asks ahead for the children of the directories of this batch it goes into (no RENAME hint:
      // one that matches is not visited)
      const into = input !== null && plan === null && !lazy
        ? paths.filter((_p, i) => batch[i]!.kind === 'directory' && differs[i] && sources[i] === undefined) : [];
      for (let i = 0; i < batch.length; i++) {
        const c = batch[i]!;
        const childRel = paths[i]!;
        if (differs[i] && sources[i] !== undefined && (await renameHint(sources[i]!, childRel, c))) differs[i] = false;
        if (!differs[i]) {
          if (c.kind !== 'directory') summary.filesVisited++;
          continue;
        }
        if (c.kind === 'directory') {
          while (into.length > 0 && !into[0]!.equals(childRel) && Buffer.compare(into[0]!, childRel) < 0) into.shift();
          await askAhead(into);
          await visitDirectory(childRel, c);
        } else await sendLeaf(childRel, c);
      }
    }
  };

  /**
   * Names at which a journal record with TID above tid_end put an entry or moved one (entryNamesOf), read up to
   * `concurrentReadTid`; null once the journal could not be read above tid_end (every NEED is then an alarm).
   */
  let concurrentNames: Set<string> | null = new Set();
  let concurrentReadTid = tidEnd;
  /**
   * Read the journal's records above what concurrentNames holds, up to its head once every record buffered so far
   * is durable (the daemon's journal; an unmounted master's is locked: its head is tid_end, nothing above it).
   * Exact, not by clock: a change's record is buffered before the change is issued (docs/spec-amendments.md §4.3), so
   * an entry a listing of this pass saw that (claim, tid_end] does not name has its record below the journal's next
   * TID by the time its NEED is read. A journal that cannot be read sets concurrentNames to null: never the reverse
   * (a real alarm taken for a concurrent change is worse than a false one).
   */
  const readConcurrentNames = async (): Promise<void> => {
    if (concurrentNames === null) return;
    if (journal === null || relay) return; // no journal above tid_end: nothing concurrent can be shown
    try {
      await journal.sync?.();
      const head = journal.durableHead;
      if (head <= concurrentReadTid) return;
      for (const r of await journal.readRange(concurrentReadTid, head)) for (const n of entryNamesOf(r)) concurrentNames.add(n.toString('latin1'));
      concurrentReadTid = head;
    } catch (err) {
      concurrentNames = null;
      options.report?.(`warning: the journal above TID ${tidEnd} cannot be read (${err instanceof Error ? err.message : String(err)}): every NEED of this pass counts as a divergence alarm`);
    }
  };

  /**
   * Before COMMIT of an incremental pass (spec §4.8 NEED): an empty HASHQ, whose HAVE comes after every NEED the
   * slave sent for the DIRLISTs before it; then each needed entry (one the pass listed as unchanged since the claim)
   * is sent whole, as a dirty path would be. It is counted and reported as a divergence alarm unless a journal
   * record above tid_end places an entry at its path or an ancestor's (readConcurrentNames): then the listing saw a
   * change made after tid_end was fixed (a mounted master in use), counted as concurrentNeeds. Again until no NEED.
   */
  const answerNeeds = async (): Promise<void> => {
    for (;;) {
      await flushWindow();
      await out.send({ type: 'HASHQ', hashes: [] });
      await expect('HAVE');
      if (needed.length === 0) return;
      const asked = needed.splice(0).filter((p) => claimedListed.delete(p.toString('latin1'))).sort(Buffer.compare);
      if (asked.length > 0) await readConcurrentNames();
      for (const p of asked) {
        if (concurrentNames !== null && namesPathOrAncestor(concurrentNames, p)) {
          summary.concurrentNeeds++;
        } else {
          summary.divergenceAlarms++;
          options.report?.(`divergence alarm: the replica lacks ${pathText(p)} although its claim covers it: sent again`);
        }
        let rec: EntryRecord | null;
        try {
          rec = await digests.entryNow(p);
        } catch {
          rec = null;
        }
        if (rec === null) continue; // gone here since the listing: the next pass has its TID
        if (rec.kind === 'directory') await visitDirectory(p, rec);
        else await sendLeaf(p, rec);
      }
    }
  };

  let plan: DirtyPlan | null = null;
  /**
   * An incremental pass whose root is not dirty: digests only of dirty paths, each from its own subtree (entryNow,
   * listNow), directories on the way by listing (listTypes); the whole tree is never walked (issue 8 item 3).
   */
  let lazy = false;
  let contentReason: string | null = null;
  let peerClaim = 0n;
  /**
   * Choose the range of the pass (§4.6 step 1) from the slave's HELLO: the dirty plan of (claim, tid_end] for an
   * incremental pass, or null for a content pass (contentReason says why).
   */
  const chooseRange = async (peer: HelloRecord): Promise<DirtyPlan | null> => {
    const claim = peer.syncEndTid;
    const mark = readReplica(parent, peer.uniqueUuid.toString('hex'))?.needsContentPass ?? null;
    // a resumed pass walks the whole tree again by digest (resume data never chooses what is read, §4.9): what the
    // replica applied before its last CHECKPOINT matches and is not sent; a window cut before its CHECKPOINT is
    const why = peer.pendingPass !== undefined ? (peer.pendingPass.keyCur.length > 0 ? `the replica resumes a pass (last applied CHECKPOINT at ${pathText(peer.pendingPass.keyCur)})` : 'the replica resumes a pass (no CHECKPOINT window of it applied)')
      : options.contentPass === true ? 'a content pass was asked for (--content)'
      : peer.claimKind === 'none' || claim === 0n ? 'the replica has no TID claim'
        : peer.generation !== state.generation ? `the replica's claim is of generation ${peer.generation}, the master's is ${state.generation}`
          : claim > tidEnd ? `the replica's claim ${claim} is above the master's head ${tidEnd} (another or rolled-back master?)`
            : mark !== null ? `the replica is marked for a content pass: ${mark}`
              : !journalHolds(claim, journal!.oldestTid, tidEnd) ? `the replica's claim ${claim} is older than the journal (oldest TID ${journal!.oldestTid})` : null;
    if (why !== null) {
      contentReason = why;
      return null;
    }
    let records;
    try {
      records = await journal!.readRange(claim, tidEnd);
    } catch (err) {
      contentReason = `the journal cannot be read (${err instanceof Error ? err.message : String(err)})`;
      return null;
    }
    const p = dirtyPlanOf(records);
    // a hard-link group's other names are not in the journal: a content pass finds them by digest (simple, sound).
    // A dirty subtree is digested here from itself (entryNow, memoized for the visit): a hard link in it is found too
    lazy = !p.paths.has('') || p.metaOnly.has(''); // a root only chmod/chown/utimens'ed is visited by listing too
    for (const key of p.paths) {
      let e: EntryRecord | null;
      try {
        // a directory only chmod/chown/utimens/xattr'ed is visited by listing (DirtyPlan.metaOnly): its subtree is
        // not digested, so a hard link in it is not a concern of this pass (a dirty entry in it is a path here)
        if (lazy && p.metaOnly.has(key) && (await options.access.lstat(joinPathBytes(rootDir, Buffer.from(key, 'latin1')))).kind === 'directory') continue;
        e = lazy ? await digests.entryNow(Buffer.from(key, 'latin1')) : await digests.entry(Buffer.from(key, 'latin1'));
      } catch (err) {
        const link = err instanceof DdfsError ? (err.data as { hardLink?: boolean; path?: Buffer }) : {};
        if (link.hardLink === true) {
          lazy = false;
          contentReason = `${pathText(link.path!)} is a hard link`;
          return null;
        }
        continue; // a path under what is now a file: its nearest directory's DIRLIST covers it
      }
      if (e !== null && e.kind === 'file' && e.link.length > 0) {
        lazy = false;
        contentReason = `${pathText(Buffer.from(key, 'latin1'))} is a hard link`;
        return null;
      }
    }
    peerClaim = claim;
    return p;
  };

  let peerUuid: string | null = null;
  let replicaLock: ReplicaLock | null = null;
  /**
   * The replica acknowledged the pass (§4.6 step 7): its record in `ddfsmirror/slaves/`, then journal retention
   * (§4.12). The pass is committed on the replica whatever happens here: a failure is reported, never thrown (a record
   * not written only keeps more journal).
   */
  const afterAck = async (uuid: string, id: Buffer, bytes: number): Promise<void> => {
    try {
      recordAck(parent, {
        uuid, label: options.peerLabel ?? null, claimTid: tidEnd, claimKind: summary.claimKind, generation, passKind: summary.passKind, passId: id.toString('hex'), bytes,
        head: journal !== null ? journal.durableHead : tidEnd,
      });
      if (journal !== null && !relay) {
        // retention drops segments and rewrites other replicas' records: only when no other pass of this master can
        // be reading them (a shared lock: skipped while another reader runs; the next pass alone does it)
        const j = journal;
        const run = vol.alone ?? (<T>(fn: () => Promise<T>): Promise<T | null> => fn());
        const plan = await run(() => applyRetention(parent, j, state.generation, options.retention));
        for (const m of plan?.marked ?? []) options.report?.(`replica ${m.uuid} is marked for a content pass: ${m.reason}`);
      }
    } catch (err) {
      options.report?.(`warning: the replica's record or the journal retention was not written: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  try {
    const hello: HelloRecord = {
      type: 'HELLO', version: STREAM_VERSION, role: 'master', sharedUuid: Buffer.from(state.sharedUuid, 'hex'), uniqueUuid: Buffer.from(state.uniqueUuid, 'hex'),
      generation, blockSize, hashAlgo: cfg.hashName, hashSize, syncBegTid: 0n, syncEndTid: tidEnd, claimKind: 'none', capabilities: 0,
      lineageId: Buffer.from(lineageIdOf(state), 'hex'),
    };
    const servedMaster = masterUuidOf(state);
    if (servedMaster !== null) hello.masterUuid = Buffer.from(servedMaster, 'hex');
    await out.send(hello);
    let passId: Buffer = randomBytes(16);
    if (input !== null) {
      const peer = await expect('HELLO');
      peerUuid = peer.uniqueUuid.toString('hex');
      const why = peer.role !== 'slave' ? `it is a ${peer.role}, not a slave`
        : !peer.sharedUuid.equals(hello.sharedUuid) ? `it is bound to ${peer.sharedUuid.toString('hex')}, this master is ${state.sharedUuid} (init-slave it from this master)`
          : peer.blockSize !== blockSize ? `block size ${peer.blockSize}, the master's is ${blockSize}`
            : peer.hashAlgo !== cfg.hashName ? `hash ${peer.hashAlgo}, the master's is ${cfg.hashName}`
              : !(peer.lineageId ?? peer.sharedUuid).equals(hello.lineageId!) ? `it is bound to lineage ${(peer.lineageId ?? peer.sharedUuid).toString('hex')}, this master is lineage ${lineageIdOf(state)} (epoch ${state.lineage}): rebind it (mirrorddumbfs rebind SLAVE --from MASTER)`
                // one master per slave (§4.12); a slave that names none (older, or not bound yet) is bound by this pass
                : servedMaster !== null && peer.masterUuid !== undefined && peer.masterUuid.toString('hex') !== servedMaster
                  ? `it is bound to master ${peer.masterUuid.toString('hex')}, this source serves master ${servedMaster} (one master per slave: rebind it, mirrorddumbfs rebind SLAVE --from MASTER)` : null;
      if (why !== null) {
        await out.send({ type: 'ERROR', reason: REASON.INCOMPATIBLE, message: `the slave does not match: ${why}` });
        throw new DdfsError('INVALID', `the slave does not match the master: ${why}`);
      }
      // one pass per replica at a time: its record under ddfsmirror/slaves/ is this pass's to write
      try {
        replicaLock = await takeReplicaLock(parent, peerUuid, REPLICA_LOCK_TOOL);
      } catch (err) {
        // the slave is told in ASCII (no path: paths are bytes); the master's error names the volume
        if (err instanceof DdfsError && err.code === 'BUSY') await out.send({ type: 'ERROR', reason: REASON.REFUSED, message: `another pass to this replica (${peerUuid}) is running on the master` });
        throw err;
      }
      batchBlocks = (peer.capabilities & CAPABILITY_BLOCKS) !== 0;
      const resume = await resumable(digests, peer);
      if (resume !== null) {
        passId = resume;
        summary.resumed = true;
      }
      plan = journal === null ? null : await chooseRange(peer);
    }
    // a content pass needs no proof of the journal: the census beside the pass (journalProof) stops
    if (plan === null) await vol.releaseJournalProof?.();
    if (plan === null) known.reserve(Math.min(store.blockCountUsed, KNOWN_CAPACITY_HINT_MAX));
    if (plan !== null) {
      summary.passKind = 'incremental';
      summary.tidBeg = peerClaim + 1n;
      summary.dirtyCount = plan.paths.size;
    } else if (relay) {
      summary.contentReason = 'the source is a slave (a relay): it has no journal';
    } else if (journal !== null || journalError !== null) {
      summary.contentReason = journalError ?? contentReason;
    }
    await out.send({ type: 'PASS_BEGIN', passId, tidBeg: summary.tidBeg, tidEnd, mode: plan !== null ? 'incremental' : 'full' });
    if (plan !== null && plan.paths.size === 0) {
      await out.send({ type: 'IDLE', headTid: tidEnd });
    } else if (plan !== null && lazy) {
      let rootMeta: TreeEntryMeta;
      try {
        rootMeta = await options.access.lstat(rootDir);
      } catch (err) {
        throw new DdfsError('IO', `${parentDir}: no root directory`, {}, err);
      }
      await visitAncestor(EMPTY, directoryMeta(rootMeta), plan);
    } else {
      const root = await digests.entry(EMPTY);
      if (root === null) throw new DdfsError('IO', `${parentDir}: no root directory`);
      let rootDiffers = true;
      if (input !== null) {
        await out.send({ type: 'DIGESTQ', path: EMPTY, digest: root.digest });
        rootDiffers = !(await expect('DIGESTA')).match;
      }
      if (rootDiffers) await visitDirectory(EMPTY, root);
    }
    if (lazy && input !== null) await answerNeeds();
    await flushWindow();
    await vol.flush();
    // exact only when the master was quiescent for the whole pass (§4.4): nothing written, and no TID handed out
    // after tid_end (a change with such a TID may be half visible to the pass)
    if (vol.changeCount() !== changesAtStart) summary.claimKind = 'atleast';
    if (journal !== null && (nextTidAtStart !== tidEnd + 1n || journal.nextTid !== tidEnd + 1n)) summary.claimKind = 'atleast';
    if (relayClaim !== null) {
      // a relay serves only its committed claim: a pass applied to it meanwhile (none can run beside this one: the
      // volume lock or its daemon's one-pass rule) would make the tree sent a mix, so the pass is not committed
      const now = readMirrorState(parent);
      if (now === null || now.role !== 'slave' || now.pass !== null || now.claim?.passId !== relayClaim.passId) {
        const message = `${parentDir}: the relay's claim changed during the pass (a pass was applied to it): not committed, copy again`;
        await out.send({ type: 'ERROR', reason: REASON.REFUSED, message });
        throw new DdfsError('BUSY', message, { path: parentDir });
      }
      if (relayClaim.claimKind !== 'exact') summary.claimKind = 'atleast';
    }
    if (plan !== null && vol.journalProof !== undefined) {
      // the COMMIT gate of an unmounted master's incremental pass (spec §4.3, §4.6): its journal is trusted only once
      // the seal's census, run beside the pass since openJournal, matched. A change behind the journal (or a census
      // that did not complete) means the pass is not committed: the replica keeps its claim and its pass pending, so
      // its next pass is a content pass (and a proven change dropped the seal: every replica's is)
      const why = await vol.journalProof();
      if (why !== null) {
        const message = `the journal does not prove the tree since the seal (${why}): the incremental pass is not committed, the next pass is a content pass`;
        await out.send({ type: 'ERROR', reason: REASON.REFUSED, message });
        throw new DdfsError('BUSY', `${parentDir}: ${message}`, { path: parentDir, contentPassNext: true });
      }
    }
    await out.send({ type: 'COMMIT', passId, tidEnd, claimKind: summary.claimKind });
    if (input !== null) {
      const ack = await expect('ACK');
      if (ack.error !== undefined) throw new DdfsError('CORRUPT', `the slave did not commit the pass (error ${ack.error})`);
      if (peerUuid !== null) await afterAck(peerUuid, passId, out.counters.bytes + input.bytes);
    }
    await out.send({ type: 'TERM', reason: REASON.OK });
    await out.end();
    try {
      // an incremental pass saw only its dirty paths: the cache of the last content pass is kept as it is
      if (!lazy) digestCache.save();
    } catch {
      // a cache not written costs the next pass time, never correctness
    }
    summary.bytesOnWire = out.counters.bytes + (input?.bytes ?? 0);
    summary.elapsedMs = Date.now() - t0;
    return summary;
  } finally {
    await (hashWorkers as HashWorkers | null)?.close(); // assigned in sendBlocks
    await digests.close();
    await (replicaLock as ReplicaLock | null)?.release();
  }
}

/** The summary as one line (issue 7 item 9). */
export function renderSummary(s: PassSummary): string {
  const parts = [
    s.passKind === 'incremental' ? `incremental pass (TIDs ${s.tidBeg}..${s.tidEnd})` : 'content pass',
    `${s.filesVisited} files visited`, `${s.filesSent} files sent`, `${s.blocksSent} blocks sent`, s.resumed && s.blocksHeld === 0
      // by design (spec §4.7): only written, hashed and flushed blocks are held later; the blocks of a window cut
      // before its CHECKPOINT, in a slave that was killed, were not flushed and are sent again
      ? '0 blocks already held by the replica (a resumed pass skips by digest what the replica applied; the blocks of a window cut before its CHECKPOINT, not flushed, are sent again)'
      : `${s.blocksHeld} blocks already held by the replica`,
    `${s.bytesOnWire} bytes on the wire`, `${(s.elapsedMs / 1000).toFixed(1)} s`, s.tidEnd > 0n ? `claim ${s.claimKind}@${s.tidEnd}` : `claim ${s.claimKind}`,
  ];
  if (s.contentReason !== null) parts.push(`content pass because ${s.contentReason}`);
  if (s.resumed) parts.push('resumed');
  if (s.renamesSent > 0) parts.push(`${s.renamesMatched} of ${s.renamesSent} renames applied by the replica`);
  if (s.concurrentNeeds > 0) parts.push(`${s.concurrentNeeds} entries asked for by the replica that changed after TID ${s.tidEnd} (sent again; not alarms)`);
  if (s.divergenceAlarms > 0) parts.push(`${s.divergenceAlarms} divergence alarms (entries the replica lacked although its claim covered them: sent again)`);
  if (s.corrupt.length > 0) parts.push(`${s.corrupt.length} corrupt master blocks not sent`, `${s.skippedFiles.length} files not sent`);
  return parts.join(', ');
}
