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
 * (`ddfsmirror/seal`, JSON: version, lastTid, nextTid, generation, sealedAt ISO, entryCount, ctimeMaxNs,
 * ctimeBoundaryNs; see sealBoundary for why the boundary is there and how it is taken).
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
import { censusHere, startTreeCensus, type TreeCensus } from '../io/journal_dir.js';
import { probeCtimeNs, readNoFollow, syncDirectory, writeAtomic } from '../io/mirror_fs.js';
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
/** Version 2 adds ctimeBoundaryNs; a version 1 seal is still read, and refused by censusMismatch (one content pass). */
const SEAL_VERSION = 2;
/** The probe file of sealBoundary in `ddfsmirror/` (removed after the seal is written). */
const SEAL_PROBE_FILE = 'seal.probe';
/** How long a clean unmount waits at most for the clock to pass the tree's newest ctime (ms). */
export const SEAL_CLOCK_WAIT_MS_MAX = 1000;

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
  /**
   * The file system clock's ctime in ns (decimal) when the seal was taken, strictly above ctimeMaxNs unless the
   * clock never passed it (sealBoundary): every change after the seal has a ctime at least this. Absent in version 1.
   */
  ctimeBoundaryNs?: string;
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
    if ((s.version !== SEAL_VERSION && s.version !== 1) || typeof s.lastTid !== 'string' || !/^\d+$/.test(s.lastTid) || !Number.isInteger(s.generation)) return null;
    return s;
  } catch {
    return null;
  }
}

/**
 * Whether the tree under `rootDir` is still the one `seal` describes (spec §4.3 offline detection): an entry whose
 * ctime is newer than the seal's highest ctime, or another entry count, means ddfsroot changed while the volume was
 * unmounted (ddumbfs 1.1's tools, a hand edit) without a journal record. This is a full lstat scan of the tree
 * (censusHere: getdents64 + statx); the narrower scan that journals only the changed entries is not built yet, so the
 * caller treats a mismatch like any other doubt (a content pass, a generation bump).
 * Why every entry is lstat'ed (one per entry, the main cost of an unmounted master's incremental pass at 200k files):
 * no cheaper check is sound. Directory ctimes/mtimes move when entries are added, removed or renamed, but a UFS file
 * rewritten in place (another node list, same name) changes only that file's ctime; the volume lock proves nothing
 * about ddumbfs 1.1's tools or a hand edit, which do not take it; and a census cached from an earlier pass says
 * nothing of an edit made after it. A missed edit is lost on the replica, so the walk stays whole. A pass runs it
 * beside itself instead (startSealCheck), waiting for the verdict only at its COMMIT.
 * @returns null when the tree matches, else why not (one line)
 * @throws Node errors of the root's lstat
 */
export function sealMismatch(seal: MirrorSeal, rootDir: string): string | null {
  return censusMismatch(seal, censusHere(Buffer.from(rootDir), WALK_DEPTH_MAX, CENSUS_SKIPPED));
}

/** A seal check running beside a pass (startSealCheck). */
export interface SealCheck {
  /**
   * null when the tree is still the one the seal describes, else why not (`reason`, one line): a mismatch
   * (censusMismatch, `changed`), or a census that failed, whose thread died or that was stopped (not `changed`:
   * nothing is known, and it is never taken for a match). Never rejects.
   */
  readonly verdict: Promise<{ reason: string; changed: boolean } | null>;
  /** Stop the census (its verdict is no longer needed: a content pass); a verdict not settled yet is then a non-null reason. */
  stop(): Promise<void>;
}

/**
 * sealMismatch beside the caller (spec §4.3, §4.6): the census of `rootDir` runs on a worker thread
 * (startTreeCensus) while an unmounted master's incremental pass reads and sends its dirty paths; the pass awaits
 * `verdict` before its COMMIT and commits only on null. Same walk, same decision as sealMismatch, so a change behind
 * the journal is caught exactly as before, only later in the pass (see runMaster's COMMIT gate).
 * @returns the running check; it never throws (a failure is a non-null verdict)
 */
export function startSealCheck(seal: MirrorSeal, rootDir: string, options: { inline?: boolean } = {}): SealCheck {
  const job = startTreeCensus(Buffer.from(rootDir), WALK_DEPTH_MAX, CENSUS_SKIPPED, options);
  const verdict = job.result.then(
    (census) => {
      const reason = censusMismatch(seal, census);
      return reason === null ? null : { reason, changed: true };
    },
    (err: unknown) => ({ reason: `the census of ddfsroot did not complete (${err instanceof Error ? err.message : String(err)}): the tree is not proven unchanged since the seal`, changed: false }),
  );
  return { verdict, stop: () => job.stop() };
}

/**
 * Drop the seal of `parentDir` once a census proved the tree changed behind it (startSealCheck's non-null verdict):
 * every later pass of the unmounted master is then a content pass at once ("no seal"), instead of starting
 * incremental and failing at its COMMIT again; the next mount finds no seal and bumps the generation, which is what
 * the mismatch would have made it do anyway. Removing a file under `ddfsmirror/` (never following a symlink) is safe
 * under a shared lock: every pass that finds the mismatch removes the same file.
 * @returns whether a seal was there
 * @throws Node errors other than ENOENT
 */
export function dropSeal(parentDir: string): boolean {
  const mirrorDir = mirrorDirectory(parentDir);
  const removed = removeNoFollow(path.join(mirrorDir, SEAL_FILE));
  if (removed) syncDirectory(mirrorDir);
  return removed;
}

/**
 * The decision of sealMismatch for a census already taken (spec §4.3): the tree changed since `seal` when its entry
 * count differs, an entry's ctime is above the seal's ctimeMaxNs, or an entry's ctime is at or above the seal's
 * ctimeBoundaryNs. The last rule is what closes the same-tick hole: ctimes come from a coarse clock (one jiffy), so a
 * file rewritten in place in the tick of the newest entry the seal saw keeps ctime == ctimeMaxNs and the same count;
 * `>` alone passes it unseen. sealBoundary makes every change after the seal stamp at least the boundary, and the
 * boundary above ctimeMaxNs, so `>= boundary` catches it and a clean tree (all ctimes <= ctimeMaxNs < boundary) still
 * matches. A version 1 seal (no boundary) cannot rule that hole out and is a mismatch (one content pass).
 * @returns null when the census matches, else why not (one line)
 */
export function censusMismatch(seal: MirrorSeal, census: TreeCensus): string | null {
  if (census.entryCount !== seal.entryCount) return `ddfsroot holds ${census.entryCount} entries, the seal counted ${seal.entryCount}: it changed while unmounted`;
  if (!/^\d+$/.test(seal.ctimeMaxNs) || census.ctimeMaxNs > BigInt(seal.ctimeMaxNs)) return 'an entry of ddfsroot changed after the seal (a newer ctime): it changed while unmounted';
  if (seal.ctimeBoundaryNs === undefined || !/^\d+$/.test(seal.ctimeBoundaryNs)) return `the seal (version ${seal.version}) records no ctime boundary: an edit in the tick of its newest ctime would pass unseen`;
  if (census.ctimeMaxNs >= BigInt(seal.ctimeBoundaryNs)) return 'an entry of ddfsroot has a ctime at or after the seal\'s clock boundary: it may have changed while unmounted';
  return null;
}

/** The clock sealBoundary reads (a seam for tests that model a coarse clock). */
export interface SealClock {
  /** The file system's ctime stamp now, in ns (probeCtimeNs of a probe file). */
  probeNs(): bigint;
  /** Monotonic ms, for the wait's cap. */
  nowMs(): number;
  sleep(ms: number): Promise<void>;
}

/** The real SealClock: a probe file in `mirrorDir`. */
export function probeFileClock(mirrorDir: string): SealClock {
  return {
    probeNs: () => probeCtimeNs(mirrorDir, SEAL_PROBE_FILE),
    nowMs: () => performance.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

/**
 * The seal's ctime boundary (spec §4.3 offline detection): wait until the file system's ctime clock has moved past
 * `ctimeMaxNs` (the census's newest ctime), probing it by touching a file, and return the first stamp above it.
 * Why: a change made after the seal gets a ctime >= the clock at that moment >= the returned boundary > ctimeMaxNs,
 * so censusMismatch sees it even when it falls in the tick of the newest entry (the coarse clock does not move for
 * 1-10 ms: without the wait, a change in that tick stamps exactly ctimeMaxNs). Cost: nothing when the newest ctime is
 * older than the current tick (one probe), at most one tick when the last change was just now; on a multigrain kernel
 * the second probe is fine-grained and already above. If the clock never passes ctimeMaxNs within `waitMsMax` (an
 * entry stamped in the future: the clock was set back), the last stamp is returned although it is not above
 * ctimeMaxNs; censusMismatch then flags the tree at the next check (a content pass, never a missed edit).
 * Assumes the ctime clock does not step back between the seal and the edit (the skew margin of §4.3 is not built).
 * Probe and tree should be on one file system (ddfsmirror/ and ddfsroot/ are siblings in the volume's parent).
 * @returns the boundary in ns, whether it is above ctimeMaxNs, and the probes taken
 * @throws the clock's errors (probeCtimeNs: DdfsError INVALID for a symlink probe, Node errors)
 */
export async function sealBoundary(ctimeMaxNs: bigint, clock: SealClock, waitMsMax = SEAL_CLOCK_WAIT_MS_MAX): Promise<{ boundaryNs: bigint; above: boolean; probes: number }> {
  const start = clock.nowMs();
  let probes = 1;
  let t = clock.probeNs();
  while (t <= ctimeMaxNs && clock.nowMs() - start < waitMsMax) {
    await clock.sleep(1);
    t = clock.probeNs();
    probes++;
  }
  return { boundaryNs: t, above: t > ctimeMaxNs, probes };
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
  /** The clock of the seal's ctime boundary (default probeFileClock of `ddfsmirror/`; tests model a coarse one). */
  sealClock?: SealClock;
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
      const census = censusHere(Buffer.from(options.rootDir), WALK_DEPTH_MAX, CENSUS_SKIPPED);
      // the seal is written only once the clock has passed the newest ctime: see sealBoundary
      const boundary = await sealBoundary(census.ctimeMaxNs, options.sealClock ?? probeFileClock(mirrorDir));
      if (!boundary.above) options.logger.warn(`mirror: an entry of ddfsroot has a ctime ahead of the clock (the clock was set back?): the next pass is a content pass`);
      const sealDoc: MirrorSeal = {
        version: SEAL_VERSION, lastTid: st.durableHead.toString(), nextTid: st.nextTid.toString(), generation: s.generation,
        sealedAt: new Date().toISOString(), entryCount: census.entryCount, ctimeMaxNs: census.ctimeMaxNs.toString(),
        ctimeBoundaryNs: boundary.boundaryNs.toString(),
      };
      writeAtomic(mirrorDir, SEAL_FILE, Buffer.from(`${JSON.stringify(sealDoc, null, 2)}\n`, 'utf8'), 0o600);
      removeNoFollow(path.join(mirrorDir, SEAL_PROBE_FILE));
    },
  };
}
