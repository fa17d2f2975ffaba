/**
 * The replicas a source knows (mirroring spec §4.2 `slaves/<unique_uuid>`, §4.6 step 7, §4.12 fan-out) and the
 * master's journal retention.
 *
 * `<parent>/ddfsmirror/slaves/<uuid>` is one small JSON file per replica (version 1), written by the source after the
 * replica's ACK of a pass: `uuid` (the replica's unique uuid, 32 hex digits, also the file name), `label` (the
 * destination as given to copy, or the uuid), `claimTid` (decimal u64 text, "0" = no TID claim), `claimKind`
 * (exact|atleast), `generation` (the source's generation at the pass), `passKind` (content|incremental), `passId`,
 * `lastPassTime` (ISO 8601), `bytes` (bytes on the wire of that pass), `lag` (decimal: the source's durable head at
 * the ACK minus the claim), `needsContentPass` (null, or why retention dropped TIDs the replica still needs: its next
 * pass is a content pass) and `firstSeen` (ISO 8601).
 *
 * Retention (§4.12): after each ACK the master keeps the journal segments back to the lowest claim of the replicas
 * that can use it (a TID claim of the master's generation, not marked), capped at MIRROR_RETENTION_SIZE_BYTES_MAX of
 * segments and MIRROR_RETENTION_AGE_MS_MAX of age. The caps never drop a segment holding a TID above the highest claim
 * (the most up-to-date replica is never cut off by the replicas that lag), nor the segment being written. A replica
 * whose claim falls behind what is kept (journalHolds, the same test a pass uses to choose its range) is marked
 * `needsContentPass`; it no longer pins the journal, and its next pass is a content pass that clears the mark.
 *
 * Invariants:
 * - Every file is rewritten atomically (temp, fsync, rename, fsync dir) and never read or written through a symlink
 *   (at `ddfsmirror`, `slaves` or the file); a damaged file is reported by listReplicas and pins nothing.
 * - A replica only pins retention through its record: `forget` removes the record, so its claim no longer holds the
 *   journal back (the next ACK of another replica drops what only it needed).
 * - The replica records are informative for the pass (the replica's HELLO, not its record, says what it holds), except
 *   the mark, which only ever forces a content pass: a lost or stale record costs retention or time, never correctness.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { ensureDirectory, listNames, lstatOrNull, readNoFollow, writeAtomic } from '../io/mirror_fs.js';
import { removeNoFollow } from '../io/journal_dir.js';
import { MIRROR_REPLICA_LABEL_SIZE_MAX, MIRROR_RETENTION_AGE_MS_MAX, MIRROR_RETENTION_SIZE_BYTES_MAX } from '../limits.js';
import { pathBytes } from '../util/path_text.js';
import { journalHolds, type JournalView, type SegmentInfo } from './journal.js';
import type { CommitClaimKind } from './record_body.js';
import { mirrorDirectory } from './state.js';

/** The directory of the replica records in `ddfsmirror/`. */
export const SLAVES_DIRECTORY = 'slaves';
const RECORD_VERSION = 1;
const HEX32 = /^[0-9a-f]{32}$/;
const DECIMAL_U64 = /^\d{1,20}$/;

/** One replica as its source knows it. */
export interface ReplicaRecord {
  version: number;
  uuid: string;
  label: string;
  /** Decimal u64 text; "0": no TID claim. */
  claimTid: string;
  claimKind: CommitClaimKind;
  generation: number;
  passKind: 'content' | 'incremental';
  passId: string;
  lastPassTime: string;
  bytes: number;
  /** Decimal: the source's durable head at the ACK minus the claim (0 when the claim is at the head). */
  lag: string;
  needsContentPass: string | null;
  firstSeen: string;
}

/** Retention caps (tests pass small ones). */
export interface RetentionLimits {
  sizeBytesMax: number;
  ageMsMax: number;
}

export const DEFAULT_RETENTION: RetentionLimits = { sizeBytesMax: MIRROR_RETENTION_SIZE_BYTES_MAX, ageMsMax: MIRROR_RETENTION_AGE_MS_MAX };

function slavesDirectory(parentDir: string): string {
  return path.join(mirrorDirectory(parentDir), SLAVES_DIRECTORY);
}

/** The record decoded from `bytes`, or why it is not one. */
function decodeRecord(name: string, bytes: Buffer): ReplicaRecord | string {
  let d: Partial<ReplicaRecord>;
  try {
    d = JSON.parse(bytes.toString('utf8')) as Partial<ReplicaRecord>;
  } catch {
    return 'bad JSON';
  }
  if (d.version !== RECORD_VERSION) return `version ${String(d.version)}`;
  if (typeof d.uuid !== 'string' || !HEX32.test(d.uuid) || d.uuid !== name) return 'uuid';
  if (typeof d.label !== 'string' || typeof d.passId !== 'string' || typeof d.lastPassTime !== 'string' || typeof d.firstSeen !== 'string') return 'label/passId/times';
  if (typeof d.claimTid !== 'string' || !DECIMAL_U64.test(d.claimTid) || typeof d.lag !== 'string' || !/^-?\d{1,20}$/.test(d.lag)) return 'claimTid/lag';
  if ((d.claimKind !== 'exact' && d.claimKind !== 'atleast') || (d.passKind !== 'content' && d.passKind !== 'incremental')) return 'claimKind/passKind';
  if (!Number.isInteger(d.generation) || !Number.isInteger(d.bytes)) return 'generation/bytes';
  if (d.needsContentPass !== null && typeof d.needsContentPass !== 'string') return 'needsContentPass';
  return d as ReplicaRecord;
}

/** What listReplicas found: the records, and the files that are not records (name and why). */
export interface ReplicaList {
  replicas: ReplicaRecord[];
  damaged: Array<{ name: string; reason: string }>;
}

/**
 * The replica records of the volume at `parentDir`, sorted by label then uuid.
 * @returns empty lists when the volume has no `ddfsmirror/slaves/`
 * @throws DdfsError INVALID when `ddfsmirror` or `slaves` is a symlink or not a directory; Node errors of the reads
 */
export function listReplicas(parentDir: string): ReplicaList {
  const out: ReplicaList = { replicas: [], damaged: [] };
  const mirrorDir = mirrorDirectory(parentDir);
  const m = lstatOrNull(pathBytes(mirrorDir));
  if (m === null) return out;
  if (m.kind !== 'dir') throw new DdfsError('INVALID', `${mirrorDir}: not a directory (a symlink?): refused`, { path: mirrorDir });
  const dir = slavesDirectory(parentDir);
  const st = lstatOrNull(pathBytes(dir));
  if (st === null) return out;
  if (st.kind !== 'dir') throw new DdfsError('INVALID', `${dir}: not a directory (a symlink?): refused`, { path: dir });
  for (const raw of listNames(pathBytes(dir))) {
    const name = raw.toString('latin1');
    if (name.endsWith('.tmp')) continue; // a write cut before its rename
    let bytes: Buffer | null;
    try {
      bytes = readNoFollow(path.join(dir, name));
    } catch (err) {
      out.damaged.push({ name, reason: err instanceof Error ? err.message : String(err) });
      continue;
    }
    if (bytes === null) continue;
    const r = decodeRecord(name, bytes);
    if (typeof r === 'string') out.damaged.push({ name, reason: r });
    else out.replicas.push(r);
  }
  out.replicas.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
  return out;
}

/**
 * The record of replica `uuid`, or null (none, or damaged).
 * @throws DdfsError INVALID for a symlink in the way
 */
export function readReplica(parentDir: string, uuid: string): ReplicaRecord | null {
  if (!HEX32.test(uuid)) return null;
  const mirrorDir = mirrorDirectory(parentDir);
  if (lstatOrNull(pathBytes(mirrorDir))?.kind !== 'dir') return null;
  const dir = slavesDirectory(parentDir);
  if (lstatOrNull(pathBytes(dir))?.kind !== 'dir') return null;
  const bytes = readNoFollow(path.join(dir, uuid));
  if (bytes === null) return null;
  const r = decodeRecord(uuid, bytes);
  return typeof r === 'string' ? null : r;
}

/**
 * Write `record` as `ddfsmirror/slaves/<uuid>` atomically (creating `slaves/` when missing).
 * @throws DdfsError INVALID for a bad uuid or a symlink in the way; Node errors of the write
 */
export function writeReplica(parentDir: string, record: ReplicaRecord): void {
  if (!HEX32.test(record.uuid)) throw new DdfsError('INVALID', `replica uuid ${record.uuid}: not 32 hex digits`);
  const mirrorDir = mirrorDirectory(parentDir);
  ensureDirectory(mirrorDir);
  const dir = slavesDirectory(parentDir);
  ensureDirectory(dir, 0o700);
  const label = record.label.length > MIRROR_REPLICA_LABEL_SIZE_MAX ? record.label.slice(0, MIRROR_REPLICA_LABEL_SIZE_MAX) : record.label;
  writeAtomic(dir, record.uuid, Buffer.from(`${JSON.stringify({ ...record, label }, null, 2)}\n`, 'utf8'), 0o600);
}

/** What a pass tells the source about the replica that ACKed it (recordAck). */
export interface AckedPass {
  uuid: string;
  /** The destination as given, or null when the source does not know it (the previous label is kept). */
  label: string | null;
  claimTid: bigint;
  claimKind: CommitClaimKind;
  generation: number;
  passKind: 'content' | 'incremental';
  passId: string;
  bytes: number;
  /** The source's durable head at the ACK. */
  head: bigint;
}

/**
 * Record the ACK of a pass in the replica's record (a content pass clears its mark).
 * @returns the record written
 * @throws as writeReplica
 */
export function recordAck(parentDir: string, ack: AckedPass, now = new Date()): ReplicaRecord {
  const previous = readReplica(parentDir, ack.uuid);
  const lag = ack.head > ack.claimTid ? ack.head - ack.claimTid : 0n;
  const keepMark = ack.passKind !== 'content' && previous?.needsContentPass != null ? previous.needsContentPass : null;
  const record: ReplicaRecord = {
    version: RECORD_VERSION, uuid: ack.uuid, label: ack.label ?? previous?.label ?? ack.uuid, claimTid: ack.claimTid.toString(), claimKind: ack.claimKind,
    generation: ack.generation, passKind: ack.passKind, passId: ack.passId, lastPassTime: now.toISOString(), bytes: ack.bytes, lag: lag.toString(),
    needsContentPass: keepMark, firstSeen: previous?.firstSeen ?? now.toISOString(),
  };
  writeReplica(parentDir, record);
  return record;
}

/**
 * Remove the record of the replica named `which` (its uuid, or its label when exactly one record has it; a local
 * path label also matches the same path written another way).
 * @returns the record removed
 * @throws DdfsError NOT_FOUND (no such replica), INVALID (a label several replicas share: name the uuid), as
 *   listReplicas; Node errors of the removal
 */
export function forgetReplica(parentDir: string, which: string): ReplicaRecord {
  const { replicas } = listReplicas(parentDir);
  let found = replicas.filter((r) => r.uuid === which.toLowerCase());
  if (found.length === 0) found = replicas.filter((r) => r.label === which);
  // a local destination named another way (relative, a trailing slash): the same resolved path
  const local = (label: string): string | null => (/^[^/]*:/.test(label) ? null : path.resolve(label));
  if (found.length === 0 && local(which) !== null) found = replicas.filter((r) => local(r.label) === local(which));
  if (found.length === 0) throw new DdfsError('NOT_FOUND', `${parentDir}: no replica ${which} (mirrorddumbfs replicas ${parentDir} lists them)`, { path: parentDir });
  if (found.length > 1) throw new DdfsError('INVALID', `${parentDir}: ${found.length} replicas are labelled ${which}: name one by its uuid (${found.map((r) => r.uuid).join(', ')})`, { path: parentDir });
  const r = found[0]!;
  removeNoFollow(path.join(slavesDirectory(parentDir), r.uuid));
  return r;
}

/** Whether `r` can use the master's journal: a TID claim of generation `generation`, not marked. */
export function pinsJournal(r: ReplicaRecord, generation: number): boolean {
  return r.needsContentPass === null && r.generation === generation && BigInt(r.claimTid) > 0n;
}

/** What planRetention decided. */
export interface RetentionPlan {
  /** How many of the oldest segments to drop. */
  dropCount: number;
  /** The lowest TID held after the drop. */
  oldestTid: bigint;
  /** Replicas that need TIDs no longer held, with the reason to record. */
  marked: Array<{ uuid: string; reason: string }>;
  /** The uuid of the replica whose claim holds the oldest kept segment, or null. */
  pinnedBy: string | null;
}

/**
 * Decide the journal retention (see the file comment): a pure function of the segments (oldest first, the last one
 * being written), the replica records, the master's generation and durable head, the caps and the clock.
 */
export function planRetention(segments: readonly SegmentInfo[], replicas: readonly ReplicaRecord[], generation: number, head: bigint, limits: RetentionLimits, nowMs: number): RetentionPlan {
  const pinning = replicas.filter((r) => pinsJournal(r, generation));
  const claims = pinning.map((r) => BigInt(r.claimTid));
  const minClaim = claims.length === 0 ? head : claims.reduce((a, b) => (b < a ? b : a));
  const maxClaim = claims.length === 0 ? head : claims.reduce((a, b) => (b > a ? b : a));
  const n = segments.length;
  let drop = 0;
  // what no replica needs: every TID of the segment is at or below the lowest claim
  while (drop < n - 1 && segments[drop]!.lastTid <= minClaim) drop++;
  // the caps, oldest first, never past what the most up-to-date replica needs
  let kept = segments.slice(drop).reduce((a, s) => a + s.sizeBytes, 0);
  while (drop < n - 1 && segments[drop]!.lastTid <= maxClaim && (kept > limits.sizeBytesMax || nowMs - segments[drop]!.mtimeMs > limits.ageMsMax)) {
    kept -= segments[drop]!.sizeBytes;
    drop++;
  }
  const oldestTid = segments[drop]?.baseTid ?? head + 1n;
  const marked: RetentionPlan['marked'] = [];
  for (const r of pinning) {
    const claim = BigInt(r.claimTid);
    if (!journalHolds(claim, oldestTid, head)) {
      marked.push({ uuid: r.uuid, reason: `journal retention dropped TIDs ${claim + 1n}..${oldestTid - 1n} it needs (caps ${limits.sizeBytesMax} bytes, ${Math.round(limits.ageMsMax / 86_400_000)} days)` });
    }
  }
  const holding = pinning.filter((r) => journalHolds(BigInt(r.claimTid), oldestTid, head)).sort((a, b) => (BigInt(a.claimTid) < BigInt(b.claimTid) ? -1 : 1))[0];
  return { dropCount: drop, oldestTid, marked, pinnedBy: holding?.uuid ?? null };
}

/**
 * Apply retention to the master's open journal view (after an ACK): drop the segments planRetention chose and mark
 * the replicas it names (each record is re-read first: one whose claim moved on meanwhile is left alone).
 * @returns the plan applied
 * @throws Node/device errors of the removal and the record writes
 */
export async function applyRetention(parentDir: string, journal: JournalView, generation: number, limits: RetentionLimits = DEFAULT_RETENTION, nowMs = Date.now()): Promise<RetentionPlan> {
  const { replicas } = listReplicas(parentDir);
  const head = journal.durableHead;
  const plan = planRetention(journal.segmentInfos(), replicas, generation, head, limits, nowMs);
  if (plan.dropCount > 0) await journal.dropSegmentsBefore(plan.oldestTid);
  for (const m of plan.marked) {
    const now = readReplica(parentDir, m.uuid);
    if (now === null || now.needsContentPass !== null || journalHolds(BigInt(now.claimTid), journal.oldestTid, head)) continue;
    writeReplica(parentDir, { ...now, needsContentPass: m.reason });
  }
  return plan;
}

/** What status shows of retention (§4.12). Decimal text for TIDs (JSON has no bigint). */
export interface RetentionStatus {
  oldestTid: string;
  sizeBytes: number;
  sizeBytesMax: number;
  ageMsMax: number;
  /** The replica whose claim is the lowest that pins the journal (uuid), or null when none pins it. */
  pinnedBy: string | null;
  /** Replicas marked for a content pass. */
  markedCount: number;
}

/** Retention as status shows it, from the journal's summary figures and the replica records. */
export function retentionStatus(replicas: readonly ReplicaRecord[], generation: number, oldestTid: bigint, head: bigint, sizeBytes: number, limits: RetentionLimits = DEFAULT_RETENTION): RetentionStatus {
  const pinning = replicas.filter((r) => pinsJournal(r, generation) && journalHolds(BigInt(r.claimTid), oldestTid, head));
  pinning.sort((a, b) => (BigInt(a.claimTid) < BigInt(b.claimTid) ? -1 : BigInt(a.claimTid) > BigInt(b.claimTid) ? 1 : 0));
  return {
    oldestTid: oldestTid.toString(), sizeBytes, sizeBytesMax: limits.sizeBytesMax, ageMsMax: limits.ageMsMax, pinnedBy: pinning[0]?.uuid ?? null,
    markedCount: replicas.filter((r) => r.needsContentPass !== null).length,
  };
}

/**
 * One replica for humans: `LABEL (UUID): claim KIND@TID, generation G, lag N TIDs, last pass TIME (KIND, B bytes)`,
 * and the mark when it has one. `head` (the source's durable head now) gives the current lag; null: the lag at the ACK.
 */
export function renderReplicaLine(r: ReplicaRecord, head: bigint | null): string {
  const tid = BigInt(r.claimTid);
  const lag = head === null ? BigInt(r.lag) : head > tid ? head - tid : 0n;
  const claim = tid === 0n ? `claim ${r.claimKind} (no TID)` : `claim ${r.claimKind}@${tid}, generation ${r.generation}, lag ${lag} TIDs`;
  const mark = r.needsContentPass === null ? '' : `; needs a content pass: ${r.needsContentPass}`;
  return `${r.label} (${r.uuid}): ${claim}, last pass ${r.lastPassTime} (${r.passKind}, ${r.bytes} bytes)${mark}`;
}
