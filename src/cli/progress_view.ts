/**
 * Where the progress of a long command goes (issue 10): one implementation for cpddumbfs, fsckddumbfs and
 * mirrorddumbfs. The figures are rendered by util/progress.ts; this module measures the time and picks the sink:
 *
 * - stderr a terminal (and TERM not `dumb`), no -p: an ora spinner line on stderr, its text updated at most every
 *   TTY_INTERVAL_MS (0.5 s) and at each new phase; cleared when the command ends or writes a line.
 * - -p/--progress: plain lines without ANSI codes (terminal or not): one at each new phase, one when a phase reaches
 *   its total, and otherwise at most one every PLAIN_INTERVAL_MS (5 s).
 * - otherwise (a pipe, a file, a dumb terminal): nothing.
 * DDUMBFS_PROGRESS_INTERVAL_MS=N (digits) replaces both intervals (0: every update; for tests through a
 * pseudo-terminal).
 *
 * ora is imported only when a spinner is shown: loading it costs about a third of a short command's startup. A
 * terminal that reports 0 columns (a pseudo-terminal nobody sized, as under script(1)) is taken as 80 columns,
 * because ora divides by the width to count the lines it must clear.
 */
import type { Ora } from 'ora';
import { renderPhase } from '../util/progress.js';

/** Least time between two updates of the spinner's text. */
export const TTY_INTERVAL_MS = 500;
/** Least time between two plain progress lines of the same phase. */
export const PLAIN_INTERVAL_MS = 5000;
/** Width assumed for a terminal that reports 0 columns. */
const DEFAULT_COLUMNS = 80;

/** Progress of one phase: `done` of `total` units (total 0: unknown). */
export interface ProgressUpdate {
  phase: string;
  done: number;
  total: number;
  /** Plural unit name; 'bytes' renders sizes (util/progress.ts renderPhase). */
  unit: string;
}

/** The last figures of a phase, how long since it was first seen, and what it had done then. */
export interface PhaseState extends ProgressUpdate {
  elapsedMs: number;
  doneAtStart: number;
}

export interface ProgressViewOptions {
  /** -p/--progress: plain lines, also on a terminal. */
  plain: boolean;
  /** The whole plain line for a progress text, with its newline (default: `progress TEXT\n`). */
  plainLine?: (text: string) => string;
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Default process.env (DDUMBFS_PROGRESS_INTERVAL_MS, TERM). */
  env?: NodeJS.ProcessEnv;
}

export type ProgressMode = 'tty' | 'plain' | 'off';

/** The interval override of DDUMBFS_PROGRESS_INTERVAL_MS, or null (unset or not digits). */
function intervalOverride(env: NodeJS.ProcessEnv): number | null {
  const v = env.DDUMBFS_PROGRESS_INTERVAL_MS;
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
}

export class ProgressView {
  private spinner: Ora | null = null;
  private current: PhaseState | null = null;
  private phaseStart = 0;
  private lastShown = -Infinity;
  private readonly interval: number;
  private readonly plainLine: (text: string) => string;
  private readonly stream: NodeJS.WriteStream;

  private constructor(readonly mode: ProgressMode, private readonly ora: typeof import('ora').default | null, options: ProgressViewOptions) {
    this.stream = options.stream ?? process.stderr;
    this.plainLine = options.plainLine ?? ((t) => `progress ${t}\n`);
    this.interval = intervalOverride(options.env ?? process.env) ?? (mode === 'tty' ? TTY_INTERVAL_MS : PLAIN_INTERVAL_MS);
  }

  /** The mode for a stream: see the module comment. */
  static modeFor(options: ProgressViewOptions): ProgressMode {
    if (options.plain) return 'plain';
    const stream = options.stream ?? process.stderr;
    const env = options.env ?? process.env;
    return stream.isTTY === true && env.TERM !== 'dumb' ? 'tty' : 'off';
  }

  /** A view for the command's options; loads ora only for a spinner. */
  static async create(options: ProgressViewOptions): Promise<ProgressView> {
    const mode = ProgressView.modeFor(options);
    const ora = mode === 'tty' ? (await import('ora')).default : null;
    return new ProgressView(mode, ora, options);
  }

  /** A view made synchronously, for a command that has loaded ora already. */
  static withOra(options: ProgressViewOptions, ora: typeof import('ora').default): ProgressView {
    return new ProgressView(ProgressView.modeFor(options), ora, options);
  }

  /** True when updates are shown somewhere (callers may skip computing figures otherwise). */
  get enabled(): boolean {
    return this.mode !== 'off';
  }

  /** The figures of the latest update (kept also when nothing is shown), for an "interrupted" message. */
  get last(): PhaseState | null {
    return this.current === null ? null : { ...this.current, elapsedMs: performance.now() - this.phaseStart };
  }

  /**
   * Record an update and show it when due: at a new phase, at the end of a phase (plain), or once the interval has
   * passed since the last one shown. Synchronous, so it also shows during a long synchronous loop.
   */
  update(u: ProgressUpdate): void {
    const now = performance.now();
    const newPhase = this.current === null || this.current.phase !== u.phase;
    if (newPhase) this.phaseStart = now;
    // a phase first seen after some units (a batch) times only those that follow
    const doneAtStart = newPhase ? u.done : this.current!.doneAtStart;
    this.current = { ...u, elapsedMs: now - this.phaseStart, doneAtStart };
    if (this.mode === 'off') return;
    const end = this.mode === 'plain' && u.total > 0 && u.done >= u.total;
    if (!newPhase && !end && now - this.lastShown < this.interval) return;
    this.lastShown = now;
    const text = renderPhase(this.current);
    if (this.mode === 'plain') {
      this.stream.write(this.plainLine(text));
      return;
    }
    this.showSpinner(text);
  }

  /** Show `text` as it is on the spinner (tty) or as a plain line (plain); nothing when off. */
  showText(text: string): void {
    if (this.mode === 'plain') this.stream.write(this.plainLine(text));
    else if (this.mode === 'tty') this.showSpinner(text);
  }

  private showSpinner(text: string): void {
    if (!this.spinner) {
      if ((this.stream.columns ?? 0) <= 0) this.stream.columns = DEFAULT_COLUMNS;
      // isEnabled: the terminal test is ours (ora's own turns the spinner off when CI is set)
      this.spinner = this.ora!({ stream: this.stream, discardStdin: false, isEnabled: true, text }).start();
    }
    this.spinner.text = text;
    this.spinner.render();
  }

  /** Write a line to stderr or stdout without tearing the spinner. */
  write(line: string | Buffer, stream: NodeJS.WriteStream = this.stream): void {
    if (this.spinner) {
      this.spinner.clear();
      stream.write(line);
      this.spinner.render();
    } else {
      stream.write(line);
    }
  }

  /** Clear the spinner (the terminal line is left empty) and stop its timer; updates after this show again. */
  stop(): void {
    this.spinner?.stop();
    this.spinner = null;
  }
}
