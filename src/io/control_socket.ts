/**
 * The UNIX stream socket a daemon serves mirror passes on (issue 7 item 0): `<dir>/<name>`, where `dir` is the
 * volume's `ddfsmirror/` (format/layout.ts MIRROR_CONTROL_SOCKET). The system calls only; the protocol is in
 * mirror/control.ts.
 *
 * Invariants:
 * - Never through a symlink: `dir` is opened O_DIRECTORY | O_NOFOLLOW (a symlink planted at `ddfsmirror` is
 *   refused) and the socket is bound and connected through that descriptor (`/proc/self/fd/N/name`), so a later
 *   swap of `dir` cannot redirect it; bind(2) itself never follows a symlink at the last component.
 * - Mode 0600 from the start (the umask is narrowed around the synchronous bind): only the volume's owner (root)
 *   may connect; `dir` is created 0700 when missing, and removed again at close when it is still empty.
 * - A socket file left by a killed daemon (nobody accepts on it: ECONNREFUSED) is stale and replaced; a symlink
 *   planted at the socket's name is removed (unlinking a link touches nothing else); a live socket (another
 *   daemon answers) or any other file there refuses.
 * - The socket file is removed when the server closes, only if it is still ours (same inode); closing drops the
 *   connections still open, so a peer that never hangs up cannot keep a daemon from stopping.
 * Linux only (/proc/self/fd).
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as net from 'node:net';
import { DdfsError, messageOf } from '../errors.js';

/** A listening control socket. */
export interface ControlListener {
  /** The socket's path (for messages). */
  readonly socketPath: string;
  /** Stop accepting, remove the socket file if still ours; idempotent, never throws. */
  close(): Promise<void>;
}

function openDirectoryNoFollow(dir: string): number {
  try {
    return fs.openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new DdfsError('INVALID', `${dir}: not a directory (a symbolic link?): refused`, { path: dir }, err);
    if (code === 'ENOENT') throw new DdfsError('NOT_FOUND', `${dir}: not found`, { path: dir }, err);
    throw new DdfsError('IO', `${dir}: ${messageOf(err)}`, { path: dir }, err);
  }
}

/** Whether somebody accepts connections on the socket at `p`. */
function answers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: p });
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/**
 * Serve the control socket `<dir>/<name>`; `dir` is created (mode 0700) when missing.
 * @throws DdfsError INVALID (`dir` is a symlink or not a directory; a file that is not a socket is at the name),
 *   BUSY (a live socket: another daemon serves it), IO
 */
export async function listenControlSocket(dir: string, name: string, onConnection: (socket: net.Socket) => void): Promise<ControlListener> {
  let created = false;
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new DdfsError('IO', `${dir}: cannot create: ${messageOf(err)}`, { path: dir }, err);
  }
  const dirFd = openDirectoryNoFollow(dir);
  const socketPath = `${dir}/${name}`;
  const viaFd = `/proc/self/fd/${dirFd}/${name}`;
  let ino: bigint | null = null;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  try {
    const st = fs.lstatSync(viaFd, { throwIfNoEntry: false });
    if (st !== undefined) {
      if (st.isSocket()) {
        if (await answers(viaFd)) throw new DdfsError('BUSY', `${socketPath}: another daemon serves this control socket`, { path: socketPath });
      } else if (!st.isSymbolicLink()) {
        throw new DdfsError('INVALID', `${socketPath}: not a socket: refused (remove it if no ddumbfs daemon runs)`, { path: socketPath });
      }
      fs.unlinkSync(viaFd);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const old = process.umask(0o177);
      try {
        server.listen({ path: viaFd }, () => {
          server.off('error', reject);
          server.on('error', () => undefined);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
    ino = fs.lstatSync(viaFd, { bigint: true }).ino;
  } catch (err) {
    server.close();
    fs.closeSync(dirFd);
    if (err instanceof DdfsError) throw err;
    throw new DdfsError('IO', `${socketPath}: cannot serve the control socket: ${messageOf(err)}`, { path: socketPath }, err);
  }
  server.unref();
  let closed: Promise<void> | null = null;
  return {
    socketPath,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        // close waits for every connection: a peer that never hangs up must not keep the daemon from stopping
        for (const c of sockets) c.destroy();
        server.close(() => {
          try {
            const st = fs.lstatSync(viaFd, { bigint: true, throwIfNoEntry: false });
            if (st !== undefined && st.ino === ino) fs.unlinkSync(viaFd);
          } catch {
            // gone already: fine
          }
          fs.closeSync(dirFd);
          // a directory made only for the socket goes with it (a volume never mirrored keeps no ddfsmirror/)
          if (created) {
            try {
              fs.rmdirSync(dir);
            } catch {
              // not empty (a pass wrote the state meanwhile) or gone: it stays
            }
          }
          resolve();
        });
      });
      return closed;
    },
  };
}

/**
 * Connect to the control socket `<dir>/<name>` (never through a symlink at `dir`).
 * @throws DdfsError INVALID (`dir` is a symlink), NOT_FOUND (no socket, nobody serves it), IO
 */
export async function connectControlSocket(dir: string, name: string): Promise<net.Socket> {
  const dirFd = openDirectoryNoFollow(dir);
  const socketPath = `${dir}/${name}`;
  try {
    return await new Promise<net.Socket>((resolve, reject) => {
      const c = net.createConnection({ path: `/proc/self/fd/${dirFd}/${name}` });
      c.once('connect', () => {
        c.off('error', reject);
        resolve(c);
      });
      c.once('error', reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new DdfsError('NOT_FOUND', `${socketPath}: the daemon does not serve a control socket`, { path: socketPath }, err);
    throw new DdfsError('IO', `${socketPath}: ${messageOf(err)}`, { path: socketPath }, err);
  } finally {
    fs.closeSync(dirFd);
  }
}
