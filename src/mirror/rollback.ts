/**
 * Rolling a slave back from a half-applied pass (mirroring spec §4.14 "rolls back with undo to the last claim").
 *
 * INTERIM BODY: the slave's undo area (`ddfsmirror/undo/`) is built by helper "apply" on another branch, whose
 * `rollbackPass(parent)` replaces the body of this function at the merge. Until then a rollback discards the staging
 * area and the pending pass: the tree KEEPS the windows already applied (each window is a consistent set of renames,
 * §4.8), so after it the tree is the last claim plus those windows, not exactly the last claim. The result says so.
 *
 * Invariants: the claim is never changed; `state.pass` is cleared only after staging is gone (a crash in between
 * leaves a pass that a next rollback or pass clears again); nothing under `ddfsroot/` is touched.
 */
import * as path from 'node:path';
import { lstatOrNull, removeTree } from '../io/mirror_fs.js';
import { pathBytes } from '../util/path_text.js';
import { mirrorDirectory, readMirrorState, writeMirrorState } from './state.js';

/** The slave-side apply areas under `ddfsmirror/` (§4.2, §4.8). */
export const STAGING_DIRECTORY = 'staging';
export const UNDO_DIRECTORY = 'undo';

/** What a rollback did. */
export interface RollbackResult {
  /** The pass id that was pending, or null when none was. */
  discardedPassId: string | null;
  /** Records of that pass already applied to the tree (kept: see the file comment). */
  recordsKept: number;
  stagingRemoved: boolean;
  /** True: the tree is exactly the last claim; false (interim body): it keeps the windows already applied. */
  exact: boolean;
}

/** Whether `ddfsmirror/<name>` is present (as anything: a stray file counts). */
export function mirrorAreaPresent(parentDir: string, name: string): boolean {
  return lstatOrNull(pathBytes(path.join(mirrorDirectory(parentDir), name))) !== null;
}

/**
 * Roll the slave at `parentDir` back from its half-applied pass (see the file comment for what the interim body
 * keeps). A volume with no pending pass and no staging is left as it is.
 * @throws DdfsError CORRUPT/INVALID of reading the state file; Node errors of the removal
 */
export async function rollbackPass(parentDir: string): Promise<RollbackResult> {
  const state = readMirrorState(parentDir);
  const stagingPresent = mirrorAreaPresent(parentDir, STAGING_DIRECTORY);
  if (stagingPresent) removeTree(path.join(mirrorDirectory(parentDir), STAGING_DIRECTORY));
  const pass = state?.pass ?? null;
  if (state !== null && pass !== null) writeMirrorState(parentDir, { ...state, pass: null });
  return { discardedPassId: pass?.passId ?? null, recordsKept: pass?.recordsApplied ?? 0, stagingRemoved: stagingPresent, exact: pass === null };
}
