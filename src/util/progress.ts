/**
 * The one renderer of progress figures shared by every long command (cpddumbfs, fsckddumbfs, mirrorddumbfs; issue 10
 * "progress on a TTY for every long command"): rates, ETAs, durations and byte counts as short text.
 *
 * ETA basis: the part done so far at the rate seen so far, i.e. remaining · elapsed / done. No estimate ("?") before
 * the first unit is done or when the total is unknown (0); 0 once done reaches the total.
 *
 * Invariant: pure arithmetic on the figures given; never reads a clock, a terminal or a volume (the CLI's
 * progress view measures the time and decides where the text goes).
 */

/** Binary units of byteText, largest first. */
const BYTE_UNITS: ReadonlyArray<[string, number]> = [
  ['TiB', 1024 ** 4],
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
];

/**
 * A byte count for people: `812 B`, `1.5 KiB`, `512.0 MiB`, `1.00 GiB` (three significant digits from KiB up).
 * @param bytes a non-negative count (fractions, e.g. a rate, are allowed)
 */
export function byteText(bytes: number): string {
  for (const [unit, size] of BYTE_UNITS) {
    if (bytes >= size) {
      const v = bytes / size;
      return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
    }
  }
  return `${Math.round(bytes)} B`;
}

/** A duration in whole seconds, rounded up: `7s`, `4m05s`, `2h07m` (minutes rounded up at that scale). */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.ceil(s / 60);
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * Seconds left for `total - done` units at the rate of `done` units in `elapsedMs`.
 * @returns 0 when done ≥ total (total > 0), null when there is no estimate (nothing done yet, or total unknown: 0)
 */
export function etaSeconds(done: number, total: number, elapsedMs: number): number | null {
  if (total > 0 && done >= total) return 0;
  if (total <= 0 || done <= 0) return null;
  return ((total - done) * Math.max(elapsedMs, 1)) / 1000 / done;
}

/** `ETA 6s`, `ETA 4m05s`, or `ETA ?` without an estimate (see etaSeconds). */
export function etaText(done: number, total: number, elapsedMs: number): string {
  const eta = etaSeconds(done, total, elapsedMs);
  return `ETA ${eta === null ? '?' : durationText(eta)}`;
}

/** Units per second over `elapsedMs` (1 ms at least, so the first figure is finite). */
export function ratePerSecond(amount: number, elapsedMs: number): number {
  return amount / (Math.max(elapsedMs, 1) / 1000);
}

/** Figures of one phase of a long operation at one moment. */
export interface PhaseFigures {
  /** What is being done, as the command's log names it ("copy", "check block hash", "fix files"). */
  phase: string;
  /** Units done so far in this phase. */
  done: number;
  /** Units the phase will do; 0 when unknown (then no percentage and no ETA). */
  total: number;
  /** The unit's plural name ("blocks", "nodes", "files"); 'bytes' renders sizes with byteText. */
  unit: string;
  /** Time since the phase began, in ms. */
  elapsedMs: number;
  /**
   * Units already done when the clock of `elapsedMs` started (default 0): the rate and the ETA count only what was
   * done since, so a phase first seen after a batch does not report that batch as done in no time.
   */
  doneAtStart?: number;
}

/**
 * One progress line for a phase, without ANSI codes:
 * `check block hash: 1200/16384 blocks (7%), 2400 blocks/s, ETA 7s`,
 * `copy: 512 MiB of 1.00 GiB (50%), 14.2 MiB/s, ETA 36s`, and without a total `read files: 3072 files, 950 files/s`;
 * no rate before the first unit (`fix files: 0/12 files (0%), ETA ?`), nor before the first since `doneAtStart`.
 */
export function renderPhase(f: PhaseFigures): string {
  const base = f.doneAtStart ?? 0;
  const timed = f.done - base;
  const rate = ratePerSecond(timed, f.elapsedMs);
  const bytes = f.unit === 'bytes';
  const pct = f.total > 0 ? ` (${Math.min(100, Math.floor((100 * f.done) / f.total))}%)` : '';
  const amount = bytes
    ? `${byteText(f.done)}${f.total > 0 ? ` of ${byteText(f.total)}` : ''}${pct}`
    : `${f.done}${f.total > 0 ? `/${f.total}` : ''} ${f.unit}${pct}`;
  const rateText = bytes ? `${byteText(rate)}/s` : `${Math.round(rate)} ${f.unit}/s`;
  const parts = [amount];
  if (timed > 0) parts.push(rateText); // no rate yet at the start of a phase
  if (f.total > 0) parts.push(etaText(timed, f.total - base, f.elapsedMs));
  return `${f.phase}: ${parts.join(', ')}`;
}
