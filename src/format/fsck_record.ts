/**
 * The record of the last fsckddumbfs run, `PARENT/ddfs.fsck` (layout.ts FSCK_RECORD_FILE): one JSON object and a
 * newline, replaced whole (tmp + rename, io/no_follow.ts) each time a repair, rebuild or pack finishes with a
 * result, and each time a check does on a volume nobody else has (a check of a volume in use is a reader that
 * writes nothing); read by statddumbfs ("last fsck and its result", issue 10). A run refused before it could look
 * at the volume (bad arguments, a volume mounted or locked, a symlinked special path) leaves the previous record.
 *
 * | field       | example                              | meaning                                                      |
 * |-------------|--------------------------------------|--------------------------------------------------------------|
 * | `version`   | `1`                                  | record version                                               |
 * | `tool`      | `"fsckddumbfs"`                      | who ran it: fsckddumbfs, or ddumbfs (its repair at mount after an unclean shutdown or with -o check, as -n) |
 * | `time`      | `"2026-12-03T07:50:00.000Z"`         | when the run finished (ISO 8601, UTC)                        |
 * | `mode`      | `"check"`                            | check, check-blocks, repair, repair-relaxed, rebuild, rebuild-blocks |
 * | `option`    | `"-c"`                               | the option that selected it (-c -C -n -N -r -R)              |
 * | `pack`      | `false`                              | -k was given (and applied)                                   |
 * | `status`    | `"OK blocks can be reclaimed"`       | the text of the "Filesystem status" line when one was printed, else OK, WARNING or ERROR from the exit code |
 * | `exit_code` | `0`                                  | fsckddumbfs's exit code (fsckddumbfs(8))                     |
 * | `fixed_files` | `1`                                | repair and rebuild modes: files fixed; null for a check      |
 * | `corrupted_files` | `0`                            | repair and rebuild modes: files left corrupted (corrupted.txt); null for a check |
 */

/** One fsckddumbfs run, as recorded. */
export interface FsckRecord {
  version: 1;
  tool: 'fsckddumbfs' | 'ddumbfs';
  time: string;
  mode: string;
  option: string;
  pack: boolean;
  status: string;
  exit_code: number;
  fixed_files: number | null;
  corrupted_files: number | null;
}

/** The fsckddumbfs option of each mode. */
export const FSCK_MODE_OPTIONS: Readonly<Record<string, string>> = {
  check: '-c', 'check-blocks': '-C', repair: '-n', 'repair-relaxed': '-N', rebuild: '-r', 'rebuild-blocks': '-R',
};

/** The record's bytes: one JSON line. */
export function renderFsckRecord(r: FsckRecord): string {
  return `${JSON.stringify(r)}\n`;
}

/**
 * Parse a record file's text.
 * @returns the record, or null when the text is not a version-1 record (garbage, truncated, another tool's file)
 */
export function parseFsckRecord(text: string): FsckRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  const ok = r.version === 1 && (r.tool === 'fsckddumbfs' || r.tool === 'ddumbfs') && typeof r.time === 'string' && !Number.isNaN(Date.parse(r.time))
    && typeof r.mode === 'string' && r.mode in FSCK_MODE_OPTIONS && typeof r.option === 'string'
    && typeof r.pack === 'boolean' && typeof r.status === 'string' && Number.isInteger(r.exit_code)
    && (r.fixed_files === null || Number.isInteger(r.fixed_files)) && (r.corrupted_files === null || Number.isInteger(r.corrupted_files));
  return ok ? (r as unknown as FsckRecord) : null;
}
