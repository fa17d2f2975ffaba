/**
 * State of a running `mirrorddumbfs stream` (mirroring spec §4.10), kept in ddfsmirror/stream of the slave (a local
 * one; a remote slave's is kept beside the local master) so `status --json` shows lag and connection state.
 * Written atomically without following symlinks (io/mirror_fs.ts writeAtomic).
 */
import { mirrorDirectory } from './state.js';
import { entryKind } from '../io/journal_dir.js';
import { readNoFollow, writeAtomic } from '../io/mirror_fs.js';

/** File name of the stream state under ddfsmirror/. */
export const STREAM_STATE_FILE = 'stream';

/** The stream's state: times are ISO 8601 text, durations in seconds. */
export interface StreamState {
  pid: number;
  connection: 'connecting' | 'passing' | 'idle' | 'backoff' | 'stopped';
  /** End time of the last pass that completed, null before the first. */
  lastPassTime: string | null;
  passCount: number;
  /** Failed attempts since the last pass that completed. */
  retryCount: number;
  /**
   * Lag in time, seconds: 0 while the replica's claim is at the master's head; otherwise the time since the start of
   * the last completed pass (the head it covered was taken then); null before the first.
   */
  lagSeconds: number | null;
  lastError: string | null;
  /** Start time of the last completed pass, null before the first. */
  lastPassStartTime?: string | null;
  /** The master's journal head as last read (decimal TID text), null when unknown (remote, no journal). */
  headTid?: string | null;
  /** The replica's claim TID (decimal text), null when it has none or it is unknown. */
  claimTid?: string | null;
  /** Lag in TIDs: headTid - claimTid (decimal text, 0 when caught up), null when the head is unknown. */
  lagTids?: string | null;
  /** Looks at the master's journal head so far (while waiting for it to move past the claim). */
  headLooks?: number;
}

/** Write `s` to PARENT/ddfsmirror/stream (no-op when ddfsmirror/ is missing). @throws Node errors, DdfsError INVALID */
export function writeStreamState(parentDir: string, s: StreamState): void {
  const dir = mirrorDirectory(parentDir);
  if (entryKind(dir) !== 'dir') return; // a symlink in its place is not written through
  writeAtomic(dir, STREAM_STATE_FILE, Buffer.from(`${JSON.stringify(s)}\n`));
}

/** The stream state of the volume at `parentDir`, or null when none was written or it does not parse. */
export function readStreamState(parentDir: string): StreamState | null {
  const b = readNoFollow(`${mirrorDirectory(parentDir)}/${STREAM_STATE_FILE}`);
  if (b === null) return null;
  try {
    return JSON.parse(b.toString('utf8')) as StreamState;
  } catch {
    return null;
  }
}
