/**
 * Progress of migrateddumbfs and resizeddumbfs: a spinner on a terminal (ora, loaded only then), plain throttled
 * lines `HH:MM:SS INF progress PHASE: DONE[/TOTAL] (PCT%)` on stderr with `-p` otherwise (one per phase change, else
 * at most one a second), nothing else. Log lines go through `write`, which keeps the spinner whole.
 */
import type { Ora } from 'ora';
import { clockText } from '../util/log.js';

/** A progress event: `done` of `total` units (0 = unknown). */
export interface ProgressLine {
  phase: string;
  done: number;
  total: number;
}

export interface ProgressOutput {
  update(e: ProgressLine): void;
  /** Write a log line to stderr without tearing the spinner. */
  write(line: string | Buffer): void;
  stop(): void;
}

/**
 * The progress output for this process's stderr.
 * @param plain `-p`: plain lines when stderr is not a terminal
 */
export async function progressOutput(plain: boolean): Promise<ProgressOutput> {
  // a terminal of 0 columns (e.g. under script(1)) would make ora's line accounting run away
  const tty = process.stderr.isTTY === true && (process.stderr.columns ?? 0) > 0;
  const ora = tty ? (await import('ora')).default : null;
  let spinner: Ora | null = null;
  let last = 0;
  let lastPhase = '';
  return {
    update(e) {
      const pct = e.total > 0 ? ` (${Math.floor((100 * e.done) / e.total)}%)` : '';
      const text = `${e.phase}: ${e.done}${e.total > 0 ? `/${e.total}` : ''}${pct}`;
      if (ora) {
        spinner ??= ora({ stream: process.stderr, discardStdin: false }).start();
        spinner.text = text;
        return;
      }
      if (!plain) return;
      const now = performance.now();
      if (e.phase === lastPhase && now - last < 1000 && e.done !== e.total) return;
      last = now;
      lastPhase = e.phase;
      process.stderr.write(`${clockText(new Date())} INF progress ${text}\n`);
    },
    write(line) {
      if (spinner) {
        spinner.clear();
        process.stderr.write(line);
        spinner.render();
      } else {
        process.stderr.write(line);
      }
    },
    stop() {
      spinner?.stop();
      spinner = null;
    },
  };
}
