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
  /** Seconds since the last completed pass (lag in time); null before the first. */
  lagSeconds: number | null;
  lastError: string | null;
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
