/**
 * Plain progress lines for the commands without a spinner (migrateddumbfs, resizeddumbfs `-p`): one stderr line
 * `HH:MM:SS INF progress PHASE: DONE[/TOTAL] (PCT%)` per phase change, else at most one a second.
 */
import { clockText } from '../util/log.js';

/** A progress event: `done` of `total` units (0 = unknown). */
export interface ProgressLine {
  phase: string;
  done: number;
  total: number;
}

/** A progress sink writing throttled lines to stderr when `enabled`, else a no-op. */
export function progressLines(enabled: boolean): (e: ProgressLine) => void {
  let last = 0;
  let lastPhase = '';
  return (e) => {
    if (!enabled) return;
    const now = performance.now();
    if (e.phase === lastPhase && now - last < 1000 && e.done !== e.total) return;
    last = now;
    lastPhase = e.phase;
    const pct = e.total > 0 ? ` (${Math.floor((100 * e.done) / e.total)}%)` : '';
    process.stderr.write(`${clockText(new Date())} INF progress ${e.phase}: ${e.done}${e.total > 0 ? `/${e.total}` : ''}${pct}\n`);
  };
}
