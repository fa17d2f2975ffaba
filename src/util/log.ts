/**
 * Logging in ddumbfs's style (spec §8.9): stderr lines `HH:MM:SS LVL message`, and, when a log file is attached,
 * `YYYY-MM-DD HH:MM:SS LVL message` appended to `ddfsroot/.ddumbfs/ddumbfs.log`, rolled over at 10 MiB keeping
 * `.1` … `.10` (spec §2). LVL is one of ERR, WAR, INF, NOT, DEB.
 *
 * A message is text or bytes: a Buffer message (a line naming a UFS path that is not UTF-8, see `rawText` in
 * path_text.ts) is written as its raw bytes, to the file and to the sink, so a name in the log is the name on disk.
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

/** A log message: text, or raw bytes (UTF-8 text around raw name bytes). */
export type LogMessage = string | Buffer;

export class Logger {
  private filePath: string | null = null;
  debug = false;
  quiet = false;

  /** @param stderr receives each stderr line with its newline: a string, or a Buffer for a bytes message */
  constructor(private readonly stderr: (line: string | Buffer) => void = (l) => process.stderr.write(l)) {}

  /** Append log lines to `path` too (best effort: a failing log file never fails the caller). */
  attachFile(path: string): void {
    this.filePath = path;
  }

  log(level: LogLevel, message: LogMessage): void {
    if (level === 'DEB' && !this.debug) return;
    const now = new Date();
    if (!this.quiet) this.stderr(withPrefix(`${clockText(now)} ${level} `, message));
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
      fs.appendFileSync(path, withPrefix(`${date} ${clockText(now)} ${level} `, message));
      if (fs.statSync(path).size > LOG_FILE_SIZE_MAX) rollOver(path, LOG_FILE_BACKUP_COUNT);
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

/** Rename `path` to `path.1`, `path.1` to `path.2`, … keeping `count` backups (spec §2, §10.6). */
export function rollOver(path: string, count: number): void {
  for (let i = count - 1; i >= 1; i--) {
    if (fs.existsSync(`${path}.${i}`)) fs.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
  }
  if (fs.existsSync(path)) fs.renameSync(path, `${path}.1`);
}

/** The process-wide logger; commands may attach a file or change verbosity. */
export const logger = new Logger();
