/**
 * The rate and ETA of a pass's progress line (issue 7 item 9: "files, blocks sent/held, bytes, rate, ETA"), on the
 * shared progress renderer (util/progress.ts).
 *
 * Basis of the estimate: the master's used-block count (its bitmap's set bits less the two reserved addresses) is
 * the total, and the blocks the pass has dealt with so far (sent, or found held by the replica) are the part done;
 * the rest is expected at the block rate seen so far. A subtree whose digests match is skipped without counting its
 * blocks, and blocks shared by several files count once, so the estimate is an upper bound on an incremental pass
 * and exact only for a first pass over a volume with no unreferenced blocks.
 *
 * Invariant: pure arithmetic on the figures given; never reads a clock or a volume.
 */
import { etaText, ratePerSecond } from '../util/progress.js';

/** Figures of a pass at one moment. */
export interface PassFigures {
  /** Blocks sent or found held by the replica so far. */
  blocksDone: number;
  /** The master's used blocks (the ETA's total). */
  blocksUsed: number;
  /** Bytes written to the stream so far. */
  bytes: number;
  /** Time since the pass began, in ms. */
  elapsedMs: number;
}

/**
 * "R B/s, ETA T (D of U used blocks)": the stream's byte rate and the estimate described above (T as
 * util/progress.ts durationText: `6s`, `4m05s`); "ETA ?" before the first block (no rate yet), "ETA 0s" once the
 * used blocks are all done (also when there are none).
 */
export function renderRateAndEta(f: PassFigures): string {
  const rate = Math.round(ratePerSecond(f.bytes, f.elapsedMs));
  const eta = f.blocksDone >= f.blocksUsed ? 'ETA 0s' : etaText(f.blocksDone, f.blocksUsed, f.elapsedMs);
  return `${rate} B/s, ${eta} (${f.blocksDone} of ${f.blocksUsed} used blocks)`;
}
