/**
 * The record of the volume lock file `ddfs.lock` (layout.ts; the lock itself is volume/lock.ts): who holds the
 * volume. One ASCII line, written once by the holder, never updated:
 *
 * | field              | example                                   | meaning                                            |
 * |--------------------|-------------------------------------------|----------------------------------------------------|
 * | `ddumbfs-lock 1`   |                                           | signature and record version                       |
 * | `tool=NAME`        | `tool=fsckddumbfs`                        | the command holding the lock ([a-z0-9_-], ≤ 32)    |
 * | `pid=N`            | `pid=4242`                                | its process id                                     |
 * | `start=TICKS`      | `start=1234567`                           | its start time, clock ticks after boot (/proc/PID/stat field 22): with `boot`, tells a live holder from a reused pid |
 * | `boot=UUID`        | `boot=0f1e…`                              | /proc/sys/kernel/random/boot_id at the time of writing ('-' when unknown) |
 * | `time=ISO`         | `time=2026-12-02T01:30:00.000Z`           | when the lock was taken, for humans                |
 *
 * Fields are separated by one space, in this order; the line ends with `\n`. A record that does not parse is not a
 * lock record (parseLockRecord returns null): the taker decides what to do with it.
 */

/** The holder named by a lock record. */
export interface LockRecord {
  tool: string;
  pid: number;
  /** Start time of the holder in clock ticks after boot, as decimal text (it may exceed 2^53 on a long uptime). */
  startTicks: string;
  /** Boot id, or '-' when /proc did not say. */
  bootId: string;
  /** When the lock was taken (ISO 8601). */
  time: string;
}

const SIGNATURE = 'ddumbfs-lock 1';
const TOOL_PATTERN = /^[a-z0-9_-]{1,32}$/;
const RECORD_PATTERN =
  /^ddumbfs-lock 1 tool=([a-z0-9_-]{1,32}) pid=([1-9][0-9]{0,9}) start=([0-9]{1,20}) boot=([0-9a-f-]{1,36}) time=([0-9T:.Z-]{1,30})\n$/;

/**
 * Render a record as the lock file's bytes.
 * @throws Error for a tool name outside [a-z0-9_-]{1,32} or a pid that is not a positive integer (programmer error)
 */
export function renderLockRecord(r: LockRecord): string {
  if (!TOOL_PATTERN.test(r.tool)) throw new Error(`lock record: bad tool name ${JSON.stringify(r.tool)}`);
  if (!Number.isSafeInteger(r.pid) || r.pid <= 0) throw new Error(`lock record: bad pid ${r.pid}`);
  return `${SIGNATURE} tool=${r.tool} pid=${r.pid} start=${r.startTicks} boot=${r.bootId} time=${r.time}\n`;
}

/** Parse the lock file's text. @returns the record, or null when the text is not exactly one record line */
export function parseLockRecord(text: string): LockRecord | null {
  const m = RECORD_PATTERN.exec(text);
  if (!m) return null;
  return { tool: m[1]!, pid: Number(m[2]), startTicks: m[3]!, bootId: m[4]!, time: m[5]! };
}
