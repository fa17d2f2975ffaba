/**
 * Log lines to syslog / the journal without libc's syslog(3) state: one RFC 3164 datagram per line, as glibc's
 * syslog(3) formats it, `<PRI>Mmm dd HH:MM:SS ident[pid]: text`, sent on an AF_UNIX datagram socket to /dev/log
 * (rsyslog, syslog-ng and systemd-journald all listen there). Node has no AF_UNIX datagram socket, so socket(2),
 * connect(2) and send(2) are glibc's, through io/ffi.ts (as io/sd_notify.ts does).
 *
 * Best effort, never blocking the daemon's one thread: the socket is non-blocking (a full journal drops the line
 * rather than stall a FUSE answer), no listener (ENOENT, ECONNREFUSED at connect) means no syslog at all, and a
 * send that fails is not retried; the log file keeps every line anyway. `DDUMBFS_SYSLOG_SOCKET` names another socket
 * (tests bind their own).
 */
import { DdfsError } from '../errors.js';
import { lastNativeErrno, nativeFunctions } from './ffi.js';
import { notifySocketAddress } from './sd_notify.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const MSG_NOSIGNAL = 0x4000;
const MSG_DONTWAIT = 0x40;

/** The socket syslog(3) writes to. */
export const SYSLOG_SOCKET_DEFAULT = '/dev/log';
/** Environment variable naming another socket (an absolute path or an abstract `@name`). */
export const SYSLOG_SOCKET_ENV = 'DDUMBFS_SYSLOG_SOCKET';
/** Facility `daemon` (RFC 5424 §6.2.1: 3; syslog.h's LOG_DAEMON is 3 << 3). */
export const FACILITY_DAEMON = 3;
/** Largest datagram sent: longer lines are cut (rsyslog's default maximum message size is 8 KiB). */
const DATAGRAM_SIZE_MAX = 8192;

type SocketFn = (domain: number, type: number, protocol: number) => number;
type ConnectFn = (fd: number, addr: Buffer, addrlen: number) => number;
type SendFn = (fd: number, buf: Buffer, len: number, flags: number) => number;
type CloseFn = (fd: number) => number;
const libc = nativeFunctions<{ socket: SocketFn; connect: ConnectFn; send: SendFn; close: CloseFn }>('libc.so.6', {
  socket: 'int socket(int domain, int type, int protocol)',
  connect: 'int connect(int fd, const uint8_t *addr, uint32_t addrlen)',
  send: 'long send(int fd, const uint8_t *buf, size_t len, int flags)',
  close: 'int close(int fd)',
});

const EAGAIN = 11;

/** A non-blocking AF_UNIX datagram socket connected to `address`, or -1 when nothing listens there. */
function connectDatagram(address: { addr: Buffer; length: number }): number {
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (c.connect(fd, address.addr, address.length) !== 0) {
    c.close(fd);
    return -1;
  }
  return fd;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 3164 TIMESTAMP of a local time: `Mmm dd HH:MM:SS`, the day padded with a space. */
export function syslogTimestamp(d: Date): string {
  const p2 = (n: number): string => String(n).padStart(2, '0');
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

/**
 * One datagram: `<PRI>TIMESTAMP ident[pid]: ` then `text` (raw bytes kept), cut to 8 KiB, without a newline.
 * @param severity 0 (emerg) … 7 (debug)
 */
export function syslogDatagram(facility: number, severity: number, time: Date, ident: string, pid: number, text: string | Buffer): Buffer {
  const head = Buffer.from(`<${facility * 8 + severity}>${syslogTimestamp(time)} ${ident}[${pid}]: `, 'utf8');
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const end = body.length > 0 && body[body.length - 1] === 0x0a ? body.length - 1 : body.length;
  const msg = Buffer.concat([head, body.subarray(0, end)]);
  return msg.length > DATAGRAM_SIZE_MAX ? msg.subarray(0, DATAGRAM_SIZE_MAX) : msg;
}

/** A connected syslog socket. */
export class SyslogSink {
  private constructor(
    private fd: number,
    private readonly address: { addr: Buffer; length: number },
    readonly ident: string,
    readonly facility: number,
    readonly socketName: string,
  ) {}

  /**
   * Connect to the syslog socket `socketName` (default: $DDUMBFS_SYSLOG_SOCKET, else /dev/log).
   * @returns null when nothing listens there (no socket file, ECONNREFUSED, not a socket...): syslog is skipped
   * @throws DdfsError USAGE for a socket name that is neither an absolute path nor `@name`, or too long
   */
  static open(options: { ident: string; facility?: number; socketName?: string }): SyslogSink | null {
    const socketName = options.socketName ?? (process.env[SYSLOG_SOCKET_ENV] || SYSLOG_SOCKET_DEFAULT);
    let address: { addr: Buffer; length: number };
    try {
      address = notifySocketAddress(socketName);
    } catch (err) {
      throw new DdfsError('USAGE', `${SYSLOG_SOCKET_ENV}=${socketName}: neither an absolute path nor @name of at most 107 bytes`, {}, err);
    }
    const fd = connectDatagram(address);
    return fd < 0 ? null : new SyslogSink(fd, address, options.ident, options.facility ?? FACILITY_DAEMON, socketName);
  }

  /**
   * Send one line (best effort). A listener that restarted (journald, rsyslog) is connected again once; a full one
   * (EAGAIN) drops the line.
   * @param severity 0 (emerg) … 7 (debug), see util/log.ts SYSLOG_SEVERITY
   * @returns whether the datagram left
   */
  send(severity: number, text: string | Buffer, time = new Date()): boolean {
    if (this.fd < 0) return false;
    const msg = syslogDatagram(this.facility, severity, time, this.ident, process.pid, text);
    const c = libc();
    if (c.send(this.fd, msg, msg.length, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return true;
    if (lastNativeErrno() === EAGAIN) return false;
    c.close(this.fd);
    this.fd = connectDatagram(this.address);
    return this.fd >= 0 && c.send(this.fd, msg, msg.length, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0;
  }

  /** Close the socket; later sends do nothing. */
  close(): void {
    if (this.fd >= 0) libc().close(this.fd);
    this.fd = -1;
  }
}
