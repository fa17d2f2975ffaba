/**
 * The journal of a mounted master (mirroring spec §4.3): the daemon's change sink and the seal.
 *
 * At mount (`openMasterJournal`): a volume whose `ddfsmirror/state` says role master gets its journal opened
 * (recovered) and a sink that gives every tree change (volume/tree.ts) and the first data write of a file in a window
 * (fs/ops.ts) its record before the change is issued. The record is buffered and made durable by the journal's group
 * commit (journal.ts): no change waits for an fsync. That is safe because of the seal: a crash before the buffer is
 * durable always finds no seal, so the next mount bumps the generation (and an unmounted master's pass is a content
 * pass); a pass of the mounted master syncs the journal first and covers only up to the durable head. Then the seal of the last clean unmount is checked and removed:
 * no seal, a stale one (its last TID is not the journal's, or another generation), `.autofsck` (the daemon crashed)
 * or a damaged journal bump `generation` (the content pass treats a new generation as a full pass). The seal is
 * removed durably BEFORE anything is served, so a crash from then on always finds no seal.
 * At clean unmount (`close(true)`): the journal is closed, state gets next_tid/durable_head, and the seal is written
 * (`ddfsmirror/seal`, JSON: version, lastTid, nextTid, generation, sealedAt ISO, entryCount, ctimeMaxNs).
 *
 * The tree is also checked against the seal's census (sealMismatch: entry count, highest ctime): a change made while
 * unmounted by a tool that does not journal bumps the generation too. Not done yet (issue 8 later): the narrower scan
 * of spec §4.3 that journals only the changed entries under new TIDs; any doubt bumps the generation, always safe.
 *
 * Invariants: no sink (no cost) when the volume is not a master; a change never happens without its record in the
 * journal's buffer; once a write or sync of the journal fails every later change fails and the mount cannot seal; all files under `ddfsmirror/` are written without following symlinks.
 */
import * as path from 'node:path';
import type { DeviceFactory } from '../io/device.js';
import { fileDevices } from '../io/device.js';
import { treeCensus } from '../io/journal_dir.js';
import { readNoFollow, syncDirectory, writeAtomic } from '../io/mirror_fs.js';
import { WALK_DEPTH_MAX } from '../limits.js';
import type { Logger } from '../util/log.js';
import type { TreeChange, TreeChangeSink } from '../volume/tree.js';
import { Journal, type JournalStats } from './journal.js';
import { mirrorDirectory, readMirrorState, writeMirrorState } from './state.js';
import { DdfsError } from '../errors.js';
import { SPECIAL_DIRECTORY } from '../format/layout.js';
import { removeNoFollow } from '../io/journal_dir.js';

/**
 * Left out of the seal's census: the daemon's own `.ddumbfs/` (its log is written after the seal, and no pass ships
 * it). A seal written before this was counted with it: its entry count differs once, which only bumps the generation.
 */
const CENSUS_SKIPPED: ReadonlySet<string> = new Set([SPECIAL_DIRECTORY]);

/** The seal's name in `ddfsmirror/`. */
export const SEAL_FILE = 'seal';
const SEAL_VERSION = 1;

/** The decoded seal of a clean unmount. */
export interface MirrorSeal {
  version: number;
  /** Highest durable TID at unmount (decimal). */
  lastTid: string;
  nextTid: string;
  generation: number;
  /** ISO 8601 wall clock of the unmount. */
  sealedAt: string;
  entryCount: number;
  /** Highest ctime of the tree in ns (decimal). */
  ctimeMaxNs: string;
}

/** A master's journal as the daemon holds it. */
export interface MasterJournal {
  readonly journal: Journal;
  readonly sink: TreeChangeSink;
  /** Why the generation was bumped at this mount, or null. */
  readonly bumpReason: string | null;
  /**
   * Close the journal; after a clean unmount (`clean`), record next_tid/durable_head in state and write the seal.
   * @throws the journal's write/sync error; Node errors of the state and seal writes
   */
  close(clean: boolean): Promise<void>;
}

/**
 * Read the seal of `parentDir`, or null when there is none or it cannot be decoded (a bad seal is no seal).
 * @throws DdfsError INVALID when it is a symlink
 */
export function readSeal(parentDir: string): MirrorSeal | null {
  const bytes = readNoFollow(path.join(mirrorDirectory(parentDir), SEAL_FILE));
  if (bytes === null) return null;
  try {
    const s = JSON.parse(bytes.toString('utf8')) as MirrorSeal;
    if (s.version !== SEAL_VERSION || typeof s.lastTid !== 'string' || !/^\d+$/.test(s.lastTid) || !Number.isInteger(s.generation)) return null;
    return s;
  } catch {
    return null;
  }
}

/**
 * Whether the tree under `rootDir` is still the one `seal` describes (spec §4.3 offline detection): an entry whose
 * ctime is newer than the seal's highest ctime, or another entry count, means ddfsroot changed while the volume was
 * unmounted (ddumbfs 1.1's tools, a hand edit) without a journal record. This is a full lstat scan of the tree
 * (treeCensus); the narrower scan that journals only the changed entries is not built yet, so the caller treats a
 * mismatch like any other doubt (a content pass, a generation bump).
 * Why every entry is lstat'ed (one per entry, the main cost of an unmounted master's incremental pass at 200k files):
 * no cheaper check is sound. Directory ctimes/mtimes move when entries are added, removed or renamed, but a UFS file
 * rewritten in place (another node list, same name) changes only that file's ctime; the volume lock proves nothing
 * about ddumbfs 1.1's tools or a hand edit, which do not take it; and a census cached from an earlier pass says
 * nothing of an edit made after it. A missed edit is lost on the replica, so the walk stays whole.
 * @returns null when the tree matches, else why not (one line)
 * @throws Node errors of the root's lstat
 */
export function sealMismatch(seal: MirrorSeal, rootDir: string): string | null {
  const census = treeCensus(Buffer.from(rootDir), WALK_DEPTH_MAX, CENSUS_SKIPPED);
  if (census.entryCount !== seal.entryCount) return `ddfsroot holds ${census.entryCount} entries, the seal counted ${seal.entryCount}: it changed while unmounted`;
  if (!/^\d+$/.test(seal.ctimeMaxNs) || census.ctimeMaxNs > BigInt(seal.ctimeMaxNs)) return 'an entry of ddfsroot changed after the seal (a newer ctime): it changed while unmounted';
  return null;
}

/** Options of `openMasterJournal`. */
export interface MasterJournalOptions {
  /** `.autofsck` was present: the last mount did not end cleanly. */
  crashed: boolean;
  /** ddfsroot, for the seal's census. */
  rootDir: string;
  logger: Logger;
  devices?: DeviceFactory;
  /** Segment size that starts a new segment (tests of retention use small ones; default JOURNAL_SEGMENT_SIZE_MAX). */
  segmentSizeMax?: number;
  /** The journal's data-write and coalescing window in ms (default JOURNAL_WRITE_WINDOW_MS). */
  writeWindowMs?: number;
}

/**
 * Open the journal of the volume at `parentDir` when it is a master, check and remove its seal (bumping the
 * generation on doubt, see the file comment).
 * @returns null for a volume that is not a master (no state, or a slave): no journal, no sink
 * @throws DdfsError of the state file or the journal (INVALID for a symlink in the way); Node errors
 */
export async function openMasterJournal(parentDir: string, options: MasterJournalOptions): Promise<MasterJournal | null> {
  const state = readMirrorState(parentDir);
  if (state === null || state.role !== 'master') return null;
  const mirrorDir = mirrorDirectory(parentDir);
  const devices = options.devices ?? fileDevices;
  const floor = state.nextTid !== undefined ? BigInt(state.nextTid) : 1n;
  const journal = await Journal.open(mirrorDir, { devices, nextTidFloor: floor, ...(options.segmentSizeMax !== undefined ? { segmentSizeMax: options.segmentSizeMax } : {}), ...(options.writeWindowMs !== undefined ? { writeWindowMs: options.writeWindowMs } : {}) });
  const seal = readSeal(parentDir);
  let reason: string | null = null;
  if (journal.recovery.damaged) reason = 'the journal lost a record before its tail';
  else if (options.crashed) reason = 'the last mount did not end cleanly (.autofsck)';
  else if (seal === null) reason = 'no seal of a clean unmount';
  else if (BigInt(seal.lastTid) !== journal.durableHead || seal.generation !== state.generation) reason = `stale seal (TID ${seal.lastTid}, generation ${seal.generation}; journal at ${journal.durableHead}, generation ${state.generation})`;
  else reason = sealMismatch(seal, options.rootDir);
  const next = { ...state, nextTid: journal.nextTid.toString(), durableHead: journal.durableHead.toString() };
  if (reason !== null) {
    next.generation = state.generation + 1;
    options.logger.warn(`mirror: generation ${next.generation} (was ${state.generation}): ${reason}; slaves take a content pass`);
  }
  try {
    writeMirrorState(parentDir, next);
    // from now on a crash must find no seal
    if (removeNoFollow(path.join(mirrorDir, SEAL_FILE))) syncDirectory(mirrorDir);
  } catch (err) {
    await journal.close().catch(() => undefined);
    throw err;
  }
  const sink: TreeChangeSink = {
    beforeChange(change: TreeChange): Promise<void> | null {
      // a TreeChange is a JournalChange (its ops are journal ops)
      return journal.record(change);
    },
    beforeWrite: (fileKey, p) => journal.beforeWrite(fileKey, p),
  };
  return {
    journal,
    sink,
    bumpReason: reason,
    async close(clean: boolean): Promise<void> {
      await journal.close();
      if (!clean) return;
      const s = readMirrorState(parentDir);
      if (s === null || s.role !== 'master') throw new DdfsError('INVALID', `${parentDir}: ddfsmirror/state changed role while mounted: no seal written`, { path: parentDir });
      const st: JournalStats = journal.stats();
      writeMirrorState(parentDir, { ...s, nextTid: st.nextTid.toString(), durableHead: st.durableHead.toString() });
      const census = treeCensus(Buffer.from(options.rootDir), WALK_DEPTH_MAX, CENSUS_SKIPPED);
      const sealDoc: MirrorSeal = {
        version: SEAL_VERSION, lastTid: st.durableHead.toString(), nextTid: st.nextTid.toString(), generation: s.generation,
        sealedAt: new Date().toISOString(), entryCount: census.entryCount, ctimeMaxNs: census.ctimeMaxNs.toString(),
      };
      writeAtomic(mirrorDir, SEAL_FILE, Buffer.from(`${JSON.stringify(sealDoc, null, 2)}\n`, 'utf8'), 0o600);
    },
  };
}
