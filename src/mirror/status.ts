/**
 * `mirrorddumbfs status` (mirroring spec §4.16, the pfs-status counterpart): everything a volume knows of its mirror
 * relation, as one document of a stable shape (version 1, documented in man/mirrorddumbfs.8) and as lines for humans.
 *
 * Document: `statusVersion` 1; `volume` (resolved parent directory); `state` (the state file as it is, null when the
 * volume has none: version, sharedUuid, uniqueUuid, role, lineage (epoch), lineageId (absent: the initial lineage,
 * whose id is sharedUuid), generation, claim, pass, previousLineages?, lastPromote?); `lineageId` (always the
 * effective id, null without state); `staging`, `undo` (whether those areas of ddfsmirror/ are present);
 * `lastVerify` (ddfsmirror/verify or null); only for a master whose journal exists (mounted once as a master):
 * `journal` (nextTid, durableHead, oldestTid as decimal text, segmentCount, sizeBytes, recordCount, tailBytes) and
 * `seal` (ddfsmirror/seal of the last clean unmount, or null), `head` (its durable head, decimal) and `retention`
 * (replicas.ts RetentionStatus); `replicas` (the records of ddfsmirror/slaves/, replicas.ts, for a master or a relay
 * that has any). New fields may be added; none is renamed or removed.
 *
 * Invariants: reading only; path bytes of key_cur are rendered as verify renders paths (never decoded as UTF-8).
 */
import * as path from 'node:path';
import { fileDevices } from '../io/device.js';
import { summarizeJournal, type JournalSummary } from './journal.js';
import { readSeal, type MirrorSeal } from './master_journal.js';
import { mirrorAreaPresent, STAGING_DIRECTORY, UNDO_DIRECTORY } from './rollback.js';
import { claimTid, lineageIdOf, mirrorDirectory, readMirrorState, type MirrorClaim, type MirrorState } from './state.js';
import { renderPath } from './verify.js';
import { readLastVerify, type VerifyResult } from './verify_record.js';
import { readStreamState, type StreamState } from './stream_state.js';
import { listReplicas, renderReplicaLine, retentionStatus, type ReplicaRecord, type RetentionStatus } from './replicas.js';

/** The status document (version 1). */
export interface MirrorStatus {
  statusVersion: 1;
  volume: string;
  state: MirrorState | null;
  lineageId: string | null;
  staging: boolean;
  undo: boolean;
  lastVerify: VerifyResult | null;
  /** Absent unless the volume is a master with a journal. */
  journal?: JournalSummary;
  seal?: MirrorSeal | null;
  /** Absent unless a `mirrorddumbfs stream` wrote ddfsmirror/stream (§4.10). */
  stream?: StreamState;
  /** Absent unless the volume is a master with a journal: its durable head and its retention (§4.12). */
  head?: string;
  retention?: RetentionStatus;
  /** Absent when the volume knows no replica (ddfsmirror/slaves/ empty or missing). */
  replicas?: ReplicaRecord[];
}

/**
 * The status of the volume at `parentDir`.
 * @param options.checkCrc also check the CRC32C of every journal record (loads hash-wasm); by default a master's
 *   journal is summarised from its records' lengths, ops and TID order (a record whose bytes rotted in place is then
 *   counted, and is found by the next mount's recovery, or by `status --crc`)
 * @throws DdfsError CORRUPT/INVALID of the state file (readMirrorState)
 */
export async function mirrorStatus(parentDir: string, options: { checkCrc?: boolean } = {}): Promise<MirrorStatus> {
  const state = readMirrorState(parentDir);
  const master = state !== null && state.role === 'master';
  const floor = master && state.nextTid !== undefined ? BigInt(state.nextTid) : 1n;
  const journal = master ? await summarizeJournal(mirrorDirectory(parentDir), fileDevices, floor, options.checkCrc === true) : null;
  const out: MirrorStatus = {
    statusVersion: 1,
    volume: path.resolve(parentDir),
    state,
    lineageId: state === null ? null : lineageIdOf(state),
    staging: mirrorAreaPresent(parentDir, STAGING_DIRECTORY),
    undo: mirrorAreaPresent(parentDir, UNDO_DIRECTORY),
    lastVerify: readLastVerify(parentDir),
  };
  const stream = readStreamState(parentDir);
  if (stream !== null) out.stream = stream;
  const replicas = state === null ? [] : listReplicas(parentDir).replicas;
  if (replicas.length > 0) out.replicas = replicas;
  if (journal !== null) {
    out.journal = journal;
    out.seal = readSeal(parentDir);
    out.head = journal.durableHead;
    out.retention = retentionStatus(replicas, state!.generation, BigInt(journal.oldestTid), BigInt(journal.durableHead), journal.sizeBytes);
  }
  return out;
}

/** The status as lines for humans (`label` names the volume in the no-state line). */
export function renderStatusLines(s: MirrorStatus, label: string): string[] {
  const st = s.state;
  const lines: string[] = [];
  if (st === null) {
    lines.push(`${label}: no mirror state (a master gets one on its first copy; a slave from init-slave)`);
  } else {
    lines.push(
      `role: ${st.role}`,
      `shared uuid: ${st.sharedUuid}`,
      `unique uuid: ${st.uniqueUuid}`,
      `lineage: ${st.lineage}, generation: ${st.generation}`,
      `lineage id: ${s.lineageId}${st.lineageId === undefined ? ' (the initial lineage)' : ''}`,
    );
    if (st.role === 'slave' || st.claim !== null) {
      lines.push(`claim: ${st.claim === null ? 'none' : renderClaim(st.claim)}`);
    }
    if (st.role === 'slave' || st.pass !== null) {
      const p = st.pass;
      lines.push(`pass in progress: ${p === null ? 'none' : `${p.passId} since ${p.startedAt}, applied up to ${p.keyCurHex === '' ? '/' : renderPath(Buffer.from(p.keyCurHex, 'hex'))} (${p.recordsApplied} records)`}`);
    }
    const lp = st.lastPromote;
    lines.push(`last promote: ${lp === undefined ? 'none' : `${lp.time}, from lineage ${lp.fromLineage} (${lp.fromLineageId})${lp.claim === null ? ', no claim' : `, claim ${lp.claim.claimKind} at ${lp.claim.time}`}${lp.rolledBack ? ', a half-applied pass rolled back' : ''}`}`);
    for (const l of st.previousLineages ?? []) lines.push(`previous lineage: ${l.lineage} (${l.lineageId}) as ${l.role}, left by ${l.endedBy} at ${l.endedAt}`);
  }
  const j = s.journal;
  if (j !== undefined) {
    lines.push(`journal: ${`next_tid ${j.nextTid}, durable_head ${j.durableHead}, oldest ${j.oldestTid}, ${j.segmentCount} segments, ${j.sizeBytes} bytes, ${j.recordCount} records${j.tailBytes > 0 ? `, ${j.tailBytes} bytes of torn tail` : ''}`}`);
    lines.push(`seal: ${!s.seal ? 'none (mounted, or not cleanly unmounted)' : `TID ${s.seal.lastTid} at ${s.seal.sealedAt}, ${s.seal.entryCount} entries`}`);
  }
  if (s.retention !== undefined) {
    const r = s.retention;
    lines.push(`retention: oldest TID ${r.oldestTid}, ${r.sizeBytes} bytes (cap ${r.sizeBytesMax} bytes, ${Math.round(r.ageMsMax / 86_400_000)} days), ${r.pinnedBy === null ? 'pinned by no replica' : `pinned by ${r.pinnedBy}`}${r.markedCount > 0 ? `, ${r.markedCount} replicas need a content pass` : ''}`);
  }
  for (const r of s.replicas ?? []) lines.push(`replica: ${renderReplicaLine(r, s.head !== undefined ? BigInt(s.head) : null)}`);
  const sm = s.stream;
  if (sm !== undefined) {
    const lag = sm.lagTids == null ? '' : `, lag ${sm.lagTids} TIDs`;
    const secs = sm.lagSeconds == null ? '' : `, ${sm.lagSeconds.toFixed(1)} s behind`;
    lines.push(`stream: ${sm.connection} (pid ${sm.pid}), ${sm.passCount} passes${lag}${secs}${sm.lastError === null ? '' : `, last error: ${sm.lastError}`}`);
  }
  if (s.staging || s.undo) lines.push(`apply areas present: ${[s.staging ? 'staging' : '', s.undo ? 'undo' : ''].filter((x) => x !== '').join(', ')}`);
  else if (st !== null) lines.push('apply areas present: none');
  const v = s.lastVerify;
  if (st !== null || v !== null) lines.push(`last verify: ${v === null ? 'none recorded' : `${v.time}, ${v.differences} differences${v.deep ? ', deep' : ''}, against ${v.peer}`}`);
  return lines;
}

/**
 * A slave's claim for humans (spec §4.4): `KIND, content pass at TIME (pass ID)` without a TID claim, else
 * `KIND@TID, generation G, incremental|content pass at TIME (pass ID)`.
 */
function renderClaim(c: MirrorClaim): string {
  const tid = claimTid(c);
  const head = tid === 0n ? c.claimKind : `${c.claimKind}@${tid}, generation ${c.generation ?? '?'}`;
  return `${head}, ${c.kind} pass at ${c.time} (pass ${c.passId})`;
}
