/**
 * Promotion and rebinding (mirroring spec §4.14, §5 scenario 12 without quorum, §4.18 inv. 11).
 *
 * `promote` makes a slave the master of a NEW lineage: new unique uuid, new lineage id and epoch (+1), generation + 1,
 * the lineage it leaves remembered in `previousLineages` and `lastPromote`. From then on a pass between it and any
 * volume still of the old lineage (the old master, the other slaves) is refused by lineage id in HELLO, both ways.
 * `rebind` makes a volume of an old lineage (the old master once back, or another slave) a slave of the new master's
 * lineage; its next pass is a full content pass (it has no claim: every subtree is compared by digest from the root).
 *
 * Invariants:
 * - Every refusal happens before anything is written (state, staging, tree).
 * - Neither command touches `ddfsroot/`: the tree stays as it is; only `ddfsmirror/state` (and, with --rollback, the
 *   staging area) change.
 * - A mounted volume is refused (its daemon could be serving it as a read-only slave; no control socket yet).
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';
import type { MasterIdentity } from './copy.js';
import { mirrorAreaPresent, rollbackPass, STAGING_DIRECTORY, type RollbackResult } from './rollback.js';
import { lineageIdOf, newUuid, readMirrorState, writeMirrorState, type MirrorState, type PreviousLineage } from './state.js';

/** Options of promote and rebind. */
export interface PromoteOptions {
  /** Roll a half-applied pass back first (rollbackPass) instead of refusing. */
  rollback?: boolean;
  /** The time to record (tests); default now. */
  now?: Date;
}

/** What promote or rebind did. */
export interface PromoteResult {
  state: MirrorState;
  /** Set when --rollback discarded a pending pass or a staging area. */
  rollback: RollbackResult | null;
}

function refuseMountedVolume(parentDir: string, what: string): void {
  const mp = mountPointOf(path.resolve(parentDir));
  if (mp !== null) throw new DdfsError('MOUNTED', `${parentDir}: is mounted on ${mp}: unmount it first (${what} of a mounted volume needs its daemon's control socket, not there yet)`, { path: parentDir });
}

/** Refuse a half-applied pass unless `rollback`; then roll it back. */
async function settlePass(parentDir: string, state: MirrorState, rollback: boolean): Promise<RollbackResult | null> {
  const staging = mirrorAreaPresent(parentDir, STAGING_DIRECTORY);
  if (state.pass === null && !staging) return null;
  if (!rollback) {
    const what = state.pass !== null ? `pass ${state.pass.passId} is half-applied (${state.pass.recordsApplied} records applied)` : `a staging area of an unfinished pass is present`;
    throw new DdfsError('BUSY', `${parentDir}: ${what}: finish it by copying again from the master, or add --rollback to go back to the last claim`, { path: parentDir });
  }
  return rollbackPass(parentDir);
}

function previousOf(state: MirrorState, endedBy: PreviousLineage['endedBy'], at: string): PreviousLineage[] {
  return [...(state.previousLineages ?? []), { lineage: state.lineage, lineageId: lineageIdOf(state), uniqueUuid: state.uniqueUuid, role: state.role, endedBy, endedAt: at }];
}

/**
 * Make the slave at `parentDir` the master of a new lineage (mirrorddumbfs promote).
 * @returns the new state, and what --rollback did
 * @throws DdfsError NOT_FOUND/BAD_CONFIG (not a volume), MOUNTED, INVALID (no mirror state, already a master),
 *   BUSY (a half-applied pass without --rollback); nothing is changed by any of them
 */
export async function promote(parentDir: string, options: PromoteOptions = {}): Promise<PromoteResult> {
  await readVolumeConfig(parentDir);
  refuseMountedVolume(parentDir, 'promote');
  const state = readMirrorState(parentDir);
  if (state === null) throw new DdfsError('INVALID', `${parentDir}: no mirror state: not a slave (a volume that was never mirrored is a master already)`, { path: parentDir });
  if (state.role !== 'slave') throw new DdfsError('INVALID', `${parentDir}: already a master (lineage epoch ${state.lineage}): nothing to promote`, { path: parentDir });
  const rollback = await settlePass(parentDir, state, options.rollback === true);
  const at = (options.now ?? new Date()).toISOString();
  const settled = readMirrorState(parentDir)!;
  const next: MirrorState = {
    ...settled,
    role: 'master',
    uniqueUuid: newUuid(),
    lineage: settled.lineage + 1,
    lineageId: newUuid(),
    generation: settled.generation + 1,
    // a master has no claim: the one it had as a slave is kept in lastPromote
    claim: null,
    pass: null,
    previousLineages: previousOf(settled, 'promote', at),
    lastPromote: { time: at, fromLineage: settled.lineage, fromLineageId: lineageIdOf(settled), claim: settled.claim, rolledBack: rollback !== null },
  };
  writeMirrorState(parentDir, next);
  return { state: next, rollback };
}

/**
 * Make the volume at `parentDir` (a master or a slave of an older lineage of the same shared uuid, e.g. the old
 * master once back after a promote) a slave of `master`'s lineage (mirrorddumbfs rebind OLD --from NEWMASTER).
 * Also rebinds a slave of `master`'s lineage bound to another master (§4.12 one master per slave: a forged or cloned
 * master state). Its tree is kept; it has no claim, so the next copy is a full content pass.
 * @param label the master as the user named it, for messages
 * @throws DdfsError NOT_FOUND/BAD_CONFIG, MOUNTED, INVALID (no mirror state: use init-slave; another shared uuid,
 *   block size or hash; already of that lineage and bound to that master (§4.12); a lineage it left by promote or
 *   rebind), BUSY (a half-applied pass without --rollback); nothing is changed
 */
export async function rebind(parentDir: string, master: MasterIdentity, label: string, options: PromoteOptions = {}): Promise<PromoteResult> {
  const cfg = await readVolumeConfig(parentDir);
  refuseMountedVolume(parentDir, 'rebind');
  const state = readMirrorState(parentDir);
  if (state === null) throw new DdfsError('INVALID', `${parentDir}: no mirror state: not of any lineage (an empty volume becomes a slave with mirrorddumbfs init-slave)`, { path: parentDir });
  if (state.sharedUuid !== master.sharedUuid) throw new DdfsError('INVALID', `${parentDir}: of shared uuid ${state.sharedUuid}, ${label} of ${master.sharedUuid}: rebind only joins a new lineage of the same volume family (an unrelated replica starts empty: init-slave)`, { path: parentDir });
  if (cfg.blockSize !== master.blockSize) throw new DdfsError('INVALID', `${parentDir}: block size ${cfg.blockSize}, ${label}'s is ${master.blockSize}: a replica needs the same block size`, { path: parentDir });
  if (cfg.hashName !== master.hashName) throw new DdfsError('INVALID', `${parentDir}: hash ${cfg.hashName}, ${label}'s is ${master.hashName}: a replica needs the same hash`, { path: parentDir });
  const masterLineageId = master.lineageId ?? master.sharedUuid;
  // a slave of that lineage bound to another master (§4.12 one master per slave) is rebound to this one
  const otherMaster = state.role === 'slave' && state.masterUuid !== undefined && master.masterUuid !== undefined && state.masterUuid !== master.masterUuid;
  if (lineageIdOf(state) === masterLineageId && !otherMaster) {
    throw new DdfsError('INVALID', `${parentDir}: already a ${state.role} of lineage ${masterLineageId}, the lineage of ${label}: nothing to rebind${state.role === 'master' ? ' (two masters of one lineage: promote made the other one?)' : ''}`, { path: parentDir });
  }
  // (a rebind to another master of its own lineage is no return to a lineage it left)
  const left = lineageIdOf(state) === masterLineageId ? undefined : (state.previousLineages ?? []).find((l) => l.lineageId === masterLineageId);
  if (left !== undefined) {
    throw new DdfsError('INVALID', `${parentDir}: left lineage ${masterLineageId} by ${left.endedBy} at ${left.endedAt}: a volume never goes back to a lineage it left (the other way round? mirrorddumbfs rebind ${label} --from ${parentDir})`, { path: parentDir });
  }
  const rollback = await settlePass(parentDir, state, options.rollback === true);
  const at = (options.now ?? new Date()).toISOString();
  const settled = readMirrorState(parentDir)!;
  const next: MirrorState = {
    ...settled,
    role: 'slave',
    uniqueUuid: newUuid(),
    lineage: master.lineage,
    generation: master.generation,
    claim: null,
    pass: null,
    previousLineages: previousOf(settled, 'rebind', at),
  };
  if (masterLineageId === master.sharedUuid) delete next.lineageId;
  else next.lineageId = masterLineageId;
  if (master.masterUuid !== undefined) next.masterUuid = master.masterUuid;
  else delete next.masterUuid;
  writeMirrorState(parentDir, next);
  return { state: next, rollback };
}
