/**
 * Logging in ddumbfs's style (spec §8.9): stderr lines `HH:MM:SS LVL message`, and, when a log file is attached,
 * `YYYY-MM-DD HH:MM:SS LVL message` appended to `ddfsroot/.ddumbfs/ddumbfs.log`, rolled over at 10 MiB keeping
 * `.1` … `.10` (spec §2). LVL is one of ERR, WAR, INF, NOT, DEB. The daemon also sends the stderr form of each line
 * to syslog (`attachSink`, io/syslog.ts).
 *
 * A message is text or bytes: a Buffer message (a line naming a UFS path that is not UTF-8, see `rawText` in
 * path_text.ts) is written as its raw bytes, to the file and to the sink, so a name in the log is the name on disk.
 *
 * The log file is opened by the caller's `open` function (io/no_follow.ts: O_APPEND|O_CREAT|O_NOFOLLOW, mode 0600),
 * so a symlink planted at its path is never followed; a log found writable by group or others is made 0600 (it
 * names every file a repair touched and is never meant for other users).
 */
import * as fs from 'node:fs';
import { LOG_FILE_SIZE_MAX, LOG_FILE_BACKUP_COUNT } from '../limits.js';

export type LogLevel = 'ERR' | 'WAR' | 'INF' | 'NOT' | 'DEB';

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `HH:MM:SS` of a local time. */
export function clockText(d: Date): string {
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** Opens the log file for appending (creating it 0600) and returns its descriptor. */
export type LogFileOpener = (path: string) => number;

/**
 * A third destination of log lines besides stderr and the file: syslog (io/syslog.ts SyslogSink). It gets the
 * stderr form of each line, `HH:MM:SS LVL message` without the newline, and the RFC 5424 severity of its level.
 */
export interface LogLineSink {
  send(severity: number, line: string | Buffer): unknown;
}

/** RFC 5424 severity of each level (ERR 3 err, WAR 4 warning, NOT 5 notice, INF 6 info, DEB 7 debug). */
export const SYSLOG_SEVERITY: Readonly<Record<LogLevel, number>> = { ERR: 3, WAR: 4, NOT: 5, INF: 6, DEB: 7 };

/** A log message: text, or raw bytes (UTF-8 text around raw name bytes). */
export type LogMessage = string | Buffer;

export class Logger {
  private filePath: string | null = null;
  private openFile: LogFileOpener | null = null;
  private lineSink: LogLineSink | null = null;
  debug = false;
  quiet = false;

  /** @param stderr receives each stderr line with its newline: a string, or a Buffer for a bytes message */
  constructor(private readonly stderr: (line: string | Buffer) => void = (l) => process.stderr.write(l)) {}

  /**
   * Append log lines to `path` too, each opened with `open` (best effort: a failing log file never fails the
   * caller, and a log that cannot be opened, e.g. a symlink, is skipped).
   */
  attachFile(path: string, open: LogFileOpener): void {
    this.filePath = path;
    this.openFile = open;
  }

  /** Send every line to `sink` too (syslog), also when `quiet`; null detaches it. */
  attachSink(sink: LogLineSink | null): void {
    this.lineSink = sink;
  }

  log(level: LogLevel, message: LogMessage): void {
    if (level === 'DEB' && !this.debug) return;
    const now = new Date();
    if (!this.quiet || this.lineSink) {
      const line = withPrefix(`${clockText(now)} ${level} `, message);
      if (!this.quiet) this.stderr(line);
      if (this.lineSink) {
        try {
          this.lineSink.send(SYSLOG_SEVERITY[level], typeof line === 'string' ? line.slice(0, -1) : line.subarray(0, -1));
        } catch {
          // best effort, like the file
        }
      }
    }
    if (this.filePath) this.appendFile(now, level, message);
  }

  error(m: LogMessage): void { this.log('ERR', m); }
  warn(m: LogMessage): void { this.log('WAR', m); }
  info(m: LogMessage): void { this.log('INF', m); }
  notice(m: LogMessage): void { this.log('NOT', m); }
  dbg(m: LogMessage): void { this.log('DEB', m); }

  private appendFile(now: Date, level: LogLevel, message: LogMessage): void {
    const path = this.filePath!;
    try {
      const date = `${now.getFullYear()}-${pad2(now.getMonth() + 1)}-${pad2(now.getDate())}`;
      const fd = this.openFile!(path);
      let size: number;
      try {
        const st = fs.fstatSync(fd);
        if ((st.mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600);
        const line = withPrefix(`${date} ${clockText(now)} ${level} `, message);
        if (typeof line === 'string') fs.writeSync(fd, line);
        else fs.writeSync(fd, line);
        size = fs.fstatSync(fd).size;
      } finally {
        fs.closeSync(fd);
      }
      if (size > LOG_FILE_SIZE_MAX) rollOver(path, LOG_FILE_BACKUP_COUNT);
    } catch {
      // logging is best effort
    }
  }
}

/** `prefix` + message + newline: a string for a text message, raw bytes for a bytes message. */
function withPrefix(prefix: string, message: LogMessage): string | Buffer {
  if (typeof message === 'string') return `${prefix}${message}\n`;
  return Buffer.concat([Buffer.from(prefix, 'utf8'), message, Buffer.from('\n')]);
}

/**
 * Rename `path` to `path.1`, `path.1` to `path.2`, … keeping `count` backups (spec §2, §10.6). rename(2) moves a
 * symlink itself, never its target, and presence is tested with lstat, so a planted link is never followed.
 */
export function rollOver(path: string, count: number): void {
  const present = (p: string): boolean => fs.lstatSync(p, { throwIfNoEntry: false }) !== undefined;
  for (let i = count - 1; i >= 1; i--) {
    if (present(`${path}.${i}`)) fs.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
  }
  if (present(path)) fs.renameSync(path, `${path}.1`);
}

/** The process-wide logger; commands may attach a file or change verbosity. */
export const logger = new Logger();
