/**
 * Daemon counters and the text of `/.ddumbfs/stats` (spec §8.9): one `%-30s %9lld` line per non-zero counter in the
 * fixed order below, then the always-present volume lines.
 */

/** Counter names in print order (spec §8.9). */
export const COUNTER_NAMES = [
  'header_load', 'header_save', 'hash', 'block_write', 'read_before_write', 'ghost_write', 'write_save', 'eof_write',
  'block_write_try_next_node', 'block_write_slide', 'block_read', 'block_read_zero', 'block_locked_max', 'getattr',
  'fgetattr', 'do_truncate', 'ftruncate', 'truncate', 'create', 'open', 'read', 'write', 'flush', 'release', 'fsync',
  'inode_counter', 'fh_counter', 'lock_zone', 'wait_for_zone', 'wait_buf_write', 'wait_buf_truncate',
  'wait_writer_pool_on_flush', 'wait_writer_pool_on_submit', 'wait_writer_pool_on_ready',
  'wait_writer_pool_try_active_wait', 'wait_writer_pool_active_wait', 'wait_on_submit', 'calc_hash', 'xstat_resize',
  'counter1', 'counter2', 'counter3', 'counter4',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];

/** Counters printed with the `mms` suffix (µs timers). */
const MICROSECOND_COUNTERS = new Set<CounterName>(['wait_on_submit', 'calc_hash']);

export class Counters {
  private readonly values = new Map<CounterName, number>();

  add(name: CounterName, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  get(name: CounterName): number {
    return this.values.get(name) ?? 0;
  }

  reset(): void {
    this.values.clear();
  }

  /** The counter lines of the stats file. */
  renderLines(): string {
    let s = '';
    for (const name of COUNTER_NAMES) {
      const v = this.get(name);
      if (v === 0) continue;
      s += `${statsLine(name, v)}${MICROSECOND_COUNTERS.has(name) ? 'mms' : ''}\n`;
    }
    return s;
  }
}

/** `%-30s %9lld` */
export function statsLine(name: string, value: number | string): string {
  return `${name.padEnd(30)} ${String(value).padStart(9)}`;
}
