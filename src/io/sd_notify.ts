/**
 * sd_notify(3) without libsystemd: a service manager that started the daemon with $NOTIFY_SOCKET (systemd's
 * Type=notify) is told "READY=1" once the file system is served and "STOPPING=1" when it goes, by one datagram on
 * that AF_UNIX socket (a path, or an abstract name written "@name"). Node has no AF_UNIX datagram socket, so
 * socket(2) and sendto(2) are glibc's, through io/ffi.ts. The datagram leaves from the daemon's own PID, which is
 * what systemd checks against the service's main PID (NotifyAccess=main).
 */
import { constants as osc } from 'node:os';
import { DdfsError } from '../errors.js';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un): sa_family_t then sun_path[108]. */
const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 108;

type SocketFn = (domain: number, type: number, protocol: number) => number;
type SendtoFn = (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
type CloseFn = (fd: number) => number;
const libc = nativeFunctions<{ socket: SocketFn; sendto: SendtoFn; close: CloseFn }>('libc.so.6', {
  socket: 'int socket(int domain, int type, int protocol)',
  sendto: 'long sendto(int fd, const uint8_t *buf, size_t len, int flags, const uint8_t *addr, uint32_t addrlen)',
  close: 'int close(int fd)',
});

/**
 * The struct sockaddr_un of a $NOTIFY_SOCKET value and its length: "/path" (NUL-terminated) or "@name" (abstract:
 * a leading NUL, no terminator).
 * @throws DdfsError USAGE for a value that is neither, or longer than sun_path (108 bytes)
 */
export function notifySocketAddress(socketName: string): { addr: Buffer; length: number } {
  const name = Buffer.from(socketName, 'utf8');
  const abstract = name[0] === 0x40; // '@'
  if (!abstract && name[0] !== 0x2f) throw new DdfsError('USAGE', `NOTIFY_SOCKET=${socketName}: neither an absolute path nor @name`);
  if (name.length > SUN_PATH_MAX - (abstract ? 0 : 1)) throw new DdfsError('USAGE', `NOTIFY_SOCKET=${socketName}: longer than ${SUN_PATH_MAX} bytes`);
  const addr = Buffer.alloc(SOCKADDR_UN_SIZE);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  if (abstract) addr[2] = 0;
  // abstract names count exactly their bytes; a path counts its terminating NUL
  return { addr, length: 2 + name.length + (abstract ? 0 : 1) };
}

/**
 * Send `state` (newline-separated VAR=value lines, sd_notify(3): "READY=1", "STOPPING=1", "STATUS=...") to the
 * socket named by `socketName` (the value of $NOTIFY_SOCKET).
 * @throws DdfsError USAGE for a bad socket name; a Node-style system error (ECONNREFUSED, ENOENT...) when sending
 *   fails
 */
export function sendNotify(socketName: string, state: string): void {
  const { addr, length } = notifySocketAddress(socketName);
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errnoError('socket', socketName);
  try {
    const msg = Buffer.from(state, 'utf8');
    if (c.sendto(fd, msg, msg.length, MSG_NOSIGNAL, addr, length) < 0) throw errnoError('sendto', socketName);
  } finally {
    c.close(fd);
  }
}

function errnoError(syscall: string, socketName: string): NodeJS.ErrnoException {
  const errno = lastNativeErrno();
  const code = Object.entries(osc.errno).find(([, n]) => n === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${syscall} '${socketName}'`), { errno: -errno, code, syscall });
}
