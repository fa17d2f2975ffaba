/**
 * Daemon counters and the text of `/.ddumbfs/stats` (spec §8.9): one `%-30s %9lld` line per non-zero counter in the
 * fixed order below, then the always-present volume lines.
 *
 * Two departures from ddumbfs 1.1, so that every line parses as `name number` with unique names (issue 10): the
 * counter of hashes computed is printed `hash_count` (1.1 prints it `hash`, the name of the always-present line that
 * names the hash function), and the two µs timers (`wait_on_submit`, `calc_hash`) print a bare number (1.1 appends
 * `mms`). The unit is in the man page (ddumbfs(8), THE .ddumbfs DIRECTORY) and in the schema of the JSON twin `stats.json`.
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

/** Counters that count microseconds (1.1 printed them with an `mms` suffix; we print the bare number). */
export const MICROSECOND_COUNTERS: ReadonlySet<CounterName> = new Set<CounterName>(['wait_on_submit', 'calc_hash']);

/**
 * The name a counter is printed under in `/.ddumbfs/stats` and keyed by in `stats.json`: its own name, except the
 * `hash` counter, printed `hash_count` so that `hash` names only the hash function (file comment).
 */
export function counterKey(name: CounterName): string {
  return name === 'hash' ? 'hash_count' : name;
}

export class Counters {
  private readonly values = new Map<CounterName, number>();

  add(name: CounterName, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  get(name: CounterName): number {
    return this.values.get(name) ?? 0;
  }

  /** Every counter, zero or not, in print order, keyed as printed (`counterKey`); values are counts or µs. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of COUNTER_NAMES) out[counterKey(name)] = this.get(name);
    return out;
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
      s += `${statsLine(counterKey(name), v)}\n`;
    }
    return s;
  }
}

/** `%-30s %9lld` */
export function statsLine(name: string, value: number | string): string {
  return `${name.padEnd(30)} ${String(value).padStart(9)}`;
}
