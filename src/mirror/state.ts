/**
 * `<parent>/ddfsmirror/state` (mirroring spec §4.2, §4.4, §4.9): a volume's mirror identity and its slave claim.
 *
 * The file is JSON (one object, version 1): `sharedUuid` (the lineage shared by a master and its slaves, 32 hex
 * digits), `uniqueUuid` (this volume), `role` (master | slave), `lineage` (epoch, u32, bumped by a promote),
 * `generation` (u32), `claim` (the last committed content pass: kind "content", claim kind exact|atleast, pass id
 * and ISO time) and `pass` (a pass in progress: pass id, key_cur as hex bytes, records applied, start time).
 * Optional (absent in files written before promote existed, §4.14): `lineageId` (32 hex digits; absent = the initial
 * lineage, whose id is the shared uuid), `previousLineages` (what the volume was before each promote or rebind,
 * oldest first) and `lastPromote`; `masterUuid` (slave only: the unique uuid of the master of its lineage it is bound to,
 * §4.12 one master per slave; absent in files written before it existed: bound by the first pass that commits).
 *
 * Invariants:
 * - Rewritten atomically (temp, fsync, rename, fsync directory: io/mirror_fs.ts writeAtomic); never read or
 *   written through a symlink planted at `ddfsmirror` or `state`.
 * - A master gets its uuids on first use; a slave gets its shared uuid from init-slave and never changes it.
 * - The claim only moves after the applied data is durable (§4.8): writers of `claim` call this after their fsyncs.
 * - A master and its slaves share `sharedUuid` AND the lineage id; a pass between two volumes of different lineage ids
 *   is refused (§4.18 inv. 11): only promote makes a new lineage, only rebind (or init-slave) joins one.
 * - One master per slave (§4.12): a slave bound to master uuid M refuses a pass whose source serves another master
 *   (a master's own unique uuid; a relay's `masterUuid`); only rebind (or init-slave) binds it to another.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { MIRROR_DIRECTORY } from '../format/layout.js';
import { ensureDirectory, lstatOrNull, readNoFollow, writeAtomic } from '../io/mirror_fs.js';
import { pathBytes } from '../util/path_text.js';
import type { CommitClaimKind, Role } from './record_body.js';

/** The name of the state file in `ddfsmirror/`. */
export const STATE_FILE = 'state';
const STATE_VERSION = 1;

/** The last committed pass of a slave. */
export interface MirrorClaim {
  /** How the claim was reached: by a content pass or an incremental pass (§4.6). */
  kind: 'content' | 'incremental';
  claimKind: CommitClaimKind;
  /**
   * The TID the claim holds at (§4.4: exact@T or atleast@T), decimal u64 text; absent or "0" = no TID claim (files
   * written before the journal existed, or a master without a journal): the next pass is a content pass.
   */
  syncEndTid?: string;
  /** The master's lineage generation at the pass (§4.3); absent = unknown (a content pass next). */
  generation?: number;
  passId: string;
  /** ISO 8601 time of the commit. */
  time: string;
}

/** A pass in progress on a slave: its resume data (§4.9). */
export interface PassInProgress {
  passId: string;
  /** Canonical key of the last applied CHECKPOINT, hex of the raw path bytes ('' = the root). */
  keyCurHex: string;
  recordsApplied: number;
  startedAt: string;
}

/** What a volume was before a promote or a rebind ended its membership of a lineage (§4.14). */
export interface PreviousLineage {
  lineage: number;
  lineageId: string;
  uniqueUuid: string;
  role: Role;
  /** 'promote' or 'rebind': what ended it. */
  endedBy: 'promote' | 'rebind';
  /** ISO 8601 time it ended. */
  endedAt: string;
}

/** The last promote of a volume (shown by status). */
export interface LastPromote {
  /** ISO 8601 time of the promote. */
  time: string;
  /** The lineage epoch and id the volume was a slave of. */
  fromLineage: number;
  fromLineageId: string;
  /** The claim it had then (null: none). */
  claim: MirrorClaim | null;
  /** Whether a half-applied pass was rolled back first (--rollback). */
  rolledBack: boolean;
}

/** The decoded state file. */
export interface MirrorState {
  version: number;
  sharedUuid: string;
  uniqueUuid: string;
  role: Role;
  lineage: number;
  generation: number;
  claim: MirrorClaim | null;
  pass: PassInProgress | null;
  /** Absent: the initial lineage (id = sharedUuid): see lineageIdOf. */
  lineageId?: string;
  previousLineages?: PreviousLineage[];
  lastPromote?: LastPromote;
  /**
   * Slave only (§4.12): the unique uuid of the master of the lineage this slave is bound to (32 hex digits), the same
   * when its passes come through a relay. Absent: not bound yet (a state written before the field existed).
   */
  masterUuid?: string;
  /**
   * Master only (§4.2, §4.3), decimal u64 text (a bigint): the TID floor for the next change and the highest TID
   * known durable, as of the last journal close. Absent before the journal existed. The journal keeps next_tid above
   * every TID it holds even when this says less.
   */
  nextTid?: string;
  durableHead?: string;
}

/** The lineage id of a state: its `lineageId`, or the shared uuid for the initial lineage (§4.14). */
export function lineageIdOf(state: MirrorState): string {
  return state.lineageId ?? state.sharedUuid;
}

/**
 * The master uuid a volume serves or is bound to (§4.12): a master's own unique uuid, a slave's `masterUuid` (a relay
 * passes on the uuid of the master it is bound to), null for a slave not bound yet.
 */
export function masterUuidOf(state: MirrorState): string | null {
  return state.role === 'master' ? state.uniqueUuid : state.masterUuid ?? null;
}

/** The TID of a claim (§4.4), 0n when it has none (an old state file, or a pass of a master without a journal). */
export function claimTid(claim: MirrorClaim | null): bigint {
  return claim?.syncEndTid === undefined ? 0n : BigInt(claim.syncEndTid);
}

/** `<parent>/ddfsmirror`. */
export function mirrorDirectory(parentDir: string): string {
  return path.join(path.resolve(parentDir), MIRROR_DIRECTORY);
}

/** A new random uuid as 32 hex digits. */
export function newUuid(): string {
  return randomBytes(16).toString('hex');
}

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * Read the state of the volume at `parentDir`.
 * @returns null when the volume has no state yet
 * @throws DdfsError CORRUPT naming the file when it is not a valid state; INVALID when it or ddfsmirror is a symlink
 */
export function readMirrorState(parentDir: string): MirrorState | null {
  const dir = mirrorDirectory(parentDir);
  const st = lstatOrNull(pathBytes(dir));
  if (st === null) return null;
  if (st.kind !== 'dir') throw new DdfsError('INVALID', `${dir}: not a directory (a symlink?): refused`, { path: dir });
  const file = path.join(dir, STATE_FILE);
  const bytes = readNoFollow(file);
  if (bytes === null) return null;
  let doc: Partial<MirrorState>;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as Partial<MirrorState>;
  } catch {
    throw new DdfsError('CORRUPT', `${file}: not a mirror state file (bad JSON)`, { path: file });
  }
  const bad = (what: string): never => {
    throw new DdfsError('CORRUPT', `${file}: bad mirror state: ${what}`, { path: file });
  };
  if (doc.version !== STATE_VERSION) bad(`version ${String(doc.version)}, expected ${STATE_VERSION}`);
  if (typeof doc.sharedUuid !== 'string' || !HEX32.test(doc.sharedUuid)) bad('sharedUuid');
  if (typeof doc.uniqueUuid !== 'string' || !HEX32.test(doc.uniqueUuid)) bad('uniqueUuid');
  if (doc.role !== 'master' && doc.role !== 'slave') bad('role');
  if (!Number.isInteger(doc.lineage) || !Number.isInteger(doc.generation)) bad('lineage/generation');
  const claim = doc.claim ?? null;
  if (claim !== null && ((claim.kind !== 'content' && claim.kind !== 'incremental') || (claim.claimKind !== 'exact' && claim.claimKind !== 'atleast') || typeof claim.passId !== 'string'
    || (claim.syncEndTid !== undefined && (typeof claim.syncEndTid !== 'string' || !/^\d{1,20}$/.test(claim.syncEndTid) || BigInt(claim.syncEndTid) >= 2n ** 64n))
    || (claim.generation !== undefined && !Number.isInteger(claim.generation)))) bad('claim');
  const pass = doc.pass ?? null;
  if (pass !== null && (typeof pass.passId !== 'string' || !HEX32.test(pass.passId) || typeof pass.keyCurHex !== 'string' || !/^([0-9a-f]{2})*$/.test(pass.keyCurHex))) bad('pass');
  if (doc.lineageId !== undefined && (typeof doc.lineageId !== 'string' || !HEX32.test(doc.lineageId))) bad('lineageId');
  const previous = doc.previousLineages;
  if (previous !== undefined && (!Array.isArray(previous) || previous.some((l) => typeof l !== 'object' || l === null || !Number.isInteger(l.lineage) || typeof l.lineageId !== 'string' || !HEX32.test(l.lineageId) || typeof l.uniqueUuid !== 'string' || (l.endedBy !== 'promote' && l.endedBy !== 'rebind')))) bad('previousLineages');
  const lp = doc.lastPromote;
  if (lp !== undefined && (typeof lp !== 'object' || lp === null || typeof lp.time !== 'string' || !Number.isInteger(lp.fromLineage) || typeof lp.fromLineageId !== 'string')) bad('lastPromote');
  const out: MirrorState = { version: STATE_VERSION, sharedUuid: doc.sharedUuid!, uniqueUuid: doc.uniqueUuid!, role: doc.role!, lineage: doc.lineage!, generation: doc.generation!, claim, pass };
  if (doc.lineageId !== undefined) out.lineageId = doc.lineageId;
  if (previous !== undefined) out.previousLineages = previous;
  if (lp !== undefined) out.lastPromote = lp;
  if (doc.masterUuid !== undefined) {
    if (typeof doc.masterUuid !== 'string' || !HEX32.test(doc.masterUuid)) bad('masterUuid');
    out.masterUuid = doc.masterUuid;
  }
  for (const key of ['nextTid', 'durableHead'] as const) {
    const v = doc[key];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !/^\d{1,20}$/.test(v) || BigInt(v) >= 2n ** 64n) bad(key);
    out[key] = v;
  }
  return out;
}

/**
 * Rewrite the state of `parentDir` atomically (creating `ddfsmirror/` when missing).
 * @throws DdfsError INVALID for a symlink in the way; Node errors of the writes
 */
export function writeMirrorState(parentDir: string, state: MirrorState): void {
  const dir = mirrorDirectory(parentDir);
  ensureDirectory(dir);
  writeAtomic(dir, STATE_FILE, Buffer.from(`${JSON.stringify(state, null, 2)}\n`, 'utf8'));
}

/**
 * The state of a master, created with fresh uuids on first use.
 * @throws DdfsError INVALID when the volume is a slave (a slave is not a source until promoted)
 */
export function masterState(parentDir: string): MirrorState {
  const s = readMirrorState(parentDir);
  if (s !== null) {
    if (s.role !== 'master') throw new DdfsError('INVALID', `${parentDir}: is a slave of ${s.sharedUuid}: not a source (promote it first)`, { path: parentDir });
    return s;
  }
  const fresh: MirrorState = {
    version: STATE_VERSION, sharedUuid: newUuid(), uniqueUuid: newUuid(), role: 'master', lineage: 1, generation: 1, claim: null, pass: null,
  };
  writeMirrorState(parentDir, fresh);
  return fresh;
}

/**
 * The state of the source of a pass (§4.12 cascading): a master (masterState), or a slave serving its committed state
 * to another slave of its lineage (a relay). A relay serves only a committed claim: never while a pass is
 * half-applied on it, never before its first commit.
 * @throws DdfsError INVALID (a slave with a pass in progress, or without a claim); as masterState
 */
export function sourceState(parentDir: string): MirrorState {
  const s = readMirrorState(parentDir);
  if (s === null || s.role === 'master') return masterState(parentDir);
  if (s.pass !== null) {
    throw new DdfsError('INVALID', `${parentDir}: is a slave with a pass in progress (${s.pass.passId}, since ${s.pass.startedAt}): it serves only committed state; finish the pass from its master (copy again) or roll it back first`, { path: parentDir });
  }
  if (s.claim === null) throw new DdfsError('INVALID', `${parentDir}: is a slave that has committed no pass yet: nothing to serve (copy from its master first)`, { path: parentDir });
  return s;
}

/**
 * The state of a new slave bound to `master`'s lineage (its lineage id too, when it is not the initial one) and to the
 * master it serves (masterUuidOf: `master` may be a relay).
 */
export function slaveStateFor(master: MirrorState): MirrorState {
  const s: MirrorState = {
    version: STATE_VERSION, sharedUuid: master.sharedUuid, uniqueUuid: newUuid(), role: 'slave', lineage: master.lineage, generation: master.generation, claim: null, pass: null,
  };
  if (master.lineageId !== undefined && master.lineageId !== master.sharedUuid) s.lineageId = master.lineageId;
  const bound = masterUuidOf(master);
  if (bound !== null) s.masterUuid = bound;
  return s;
}

/**
 * Bump the lineage generation of a master (§4.3: incremental history can no longer be trusted, e.g. a tool changed
 * ddfsroot without journaling it; slaves then take a content pass). Nothing is done for a volume without state or a
 * slave.
 * @returns the new generation, or null when the volume is not a master
 * @throws DdfsError CORRUPT/INVALID of readMirrorState; Node errors of the atomic rewrite
 */
export function bumpMasterGeneration(parentDir: string): number | null {
  const s = readMirrorState(parentDir);
  if (s === null || s.role !== 'master') return null;
  const next: MirrorState = { ...s, generation: s.generation + 1 };
  writeMirrorState(parentDir, next);
  return next.generation;
}
