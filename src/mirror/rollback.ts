/**
 * Rolling a slave back from a half-applied pass (mirroring spec §4.14 "rolls back with undo to the last claim"), as
 * `promote --rollback` and `rebind --rollback` need it: for a slave, the undo areas of `ddfsmirror/undo/` are
 * reversed (undo.ts `rollbackPass`), so the tree is exactly the last claim again; for a volume that is not a slave
 * (a master with a stray staging area), only the staging area is removed.
 *
 * Invariants: the claim is never changed; `state.pass` is cleared only after the tree is back (a crash in between is
 * finished by running the rollback again, or by a resumed pass); the undo areas are the only source of what is put
 * back.
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
  /** Records of that pass left applied to the tree: 0 when the undo areas were reversed. */
  recordsKept: number;
  stagingRemoved: boolean;
  /** True: the tree is exactly the last claim (a slave's undo areas were reversed, or no pass was pending). */
  exact: boolean;
  /** Undo manifest lines reversed. */
  actionsReversed: number;
}

/** Whether `ddfsmirror/<name>` is present (as anything: a stray file counts). */
export function mirrorAreaPresent(parentDir: string, name: string): boolean {
  return lstatOrNull(pathBytes(path.join(mirrorDirectory(parentDir), name))) !== null;
}

/**
 * Roll the volume at `parentDir` back from its half-applied pass: a slave's undo areas are reversed (the tree becomes
 * its last claim), staging is removed and the pending pass cleared. A volume with no pending pass and no staging is
 * left as it is (stale undo areas of a slave are dropped).
 * @throws DdfsError MOUNTED; CORRUPT/INVALID of reading the state file or an undo manifest; Node errors of the renames
 */
export async function rollbackPass(parentDir: string): Promise<RollbackResult> {
  const state = readMirrorState(parentDir);
  const stagingPresent = mirrorAreaPresent(parentDir, STAGING_DIRECTORY);
  const pass = state?.pass ?? null;
  if (state !== null && state.role === 'slave') {
    // undo.js pulls in the pass code: loaded only here, so `mirrorddumbfs status` (which reads this module) does not
    const { rollbackPass: reverseUndoAreas } = await import('./undo.js');
    const r = reverseUndoAreas(parentDir);
    return { discardedPassId: pass?.passId ?? null, recordsKept: 0, stagingRemoved: stagingPresent, exact: true, actionsReversed: r.actionsReversed };
  }
  if (stagingPresent) removeTree(path.join(mirrorDirectory(parentDir), STAGING_DIRECTORY));
  if (state !== null && pass !== null) writeMirrorState(parentDir, { ...state, pass: null });
  return { discardedPassId: pass?.passId ?? null, recordsKept: pass?.recordsApplied ?? 0, stagingRemoved: stagingPresent, exact: pass === null, actionsReversed: 0 };
}
