/**
 * The system calls behind the volume lock (volume/lock.ts holds the policy): an exclusive name the kernel releases
 * when its holder dies, the lock file's create / read / remove without following symlinks, and process identity
 * from /proc.
 *
 * Why an abstract UNIX socket: Node has no flock(2) or fcntl locks, and a lock made of files alone cannot break a
 * stale lock without a race (two takers that both see the dead holder's file can both remove it and both win).
 * Binding a listening socket in Linux's abstract namespace (a name starting with NUL) is exclusive (EADDRINUSE for
 * a second binder), needs no file (so it works on a read-only file system), is not inherited across exec (libuv
 * sets CLOEXEC), and is released by the kernel when the process exits, also on kill -9: flock semantics. The
 * holder answers each connection with its lock record, so a refused taker can name it.
 *
 * Linux only (abstract names); the name is scoped to the network namespace.
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as net from 'node:net';

/** An exclusive name held by this process. */
export interface HeldName {
  /** Stop holding the name (idempotent). */
  release(): Promise<void>;
}

/**
 * Bind the abstract socket `\0name` exclusively; each connection to it is answered with `answer()` and closed.
 * The socket does not keep the process alive.
 * @returns the held name, or null when another socket (any process of this network namespace) holds it
 * @throws Node system errors other than EADDRINUSE
 */
export function bindExclusiveName(name: string, answer: () => string): Promise<HeldName | null> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((conn) => {
      conn.on('error', () => undefined);
      conn.end(answer());
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      server.close();
      if (err.code === 'EADDRINUSE') resolve(null);
      else reject(err);
    };
    server.once('error', onError);
    server.listen({ path: `\0${name}` }, () => {
      server.off('error', onError);
      server.on('error', () => undefined);
      server.unref();
      let released: Promise<void> | null = null;
      resolve({
        release: () => {
          released ??= new Promise<void>((done) => server.close(() => done()));
          return released;
        },
      });
    });
  });
}

/**
 * Ask the holder of `\0name` what it answers (see bindExclusiveName).
 * @returns the answer (at most `sizeMax` bytes, as latin1 text), or null when nobody holds the name, the holder
 *   does not answer within `timeoutMs`, or the connection fails
 */
export function queryExclusiveName(name: string, sizeMax: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (value: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(value);
    };
    const conn = net.createConnection({ path: `\0${name}` });
    const timer = setTimeout(() => finish(null), timeoutMs);
    conn.on('data', (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size > sizeMax) finish(null);
    });
    conn.on('end', () => finish(Buffer.concat(chunks).toString('latin1')));
    conn.on('error', () => finish(null));
  });
}

/** Device and inode of a directory (follows symlinks: the directory itself, whatever path or bind mount names it). */
export function directoryIdentity(dir: string): { dev: bigint; ino: bigint } {
  const st = fs.statSync(dir, { bigint: true });
  return { dev: st.dev, ino: st.ino };
}

/**
 * Start time of process `pid` in clock ticks after boot (/proc/PID/stat field 22), as decimal text.
 * @returns null when the process does not exist (or /proc is not readable)
 */
export function processStartTicks(pid: number): string | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // "pid (comm) state ppid ..." where comm may hold spaces and parentheses: fields count from the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const start = rest[22 - 3];
  return start !== undefined && /^[0-9]+$/.test(start) ? start : null;
}

/** This boot's id (/proc/sys/kernel/random/boot_id), or null when unknown. */
export function bootId(): string | null {
  try {
    const id = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
    return /^[0-9a-f-]{1,36}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** What is at a lock file's path. */
export type LockFileState =
  | { kind: 'missing' }
  | { kind: 'symlink' }
  /** a directory, FIFO, socket, device, or a file larger than asked for */
  | { kind: 'other' }
  | { kind: 'file'; ino: bigint; text: string };

/**
 * Look at `path` without following a symlink and read it when it is a small regular file. Opened
 * O_NOFOLLOW | O_NONBLOCK, so neither a symlink nor a FIFO planted there is opened or blocks the reader.
 * @throws Node system errors other than ENOENT (EACCES, EIO...)
 */
export function readLockFile(path: string, sizeMax: number): LockFileState {
  const st = fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
  if (!st) return { kind: 'missing' };
  if (st.isSymbolicLink()) return { kind: 'symlink' };
  if (!st.isFile() || st.size > BigInt(sizeMax)) return { kind: 'other' };
  let fd: number;
  try {
    fd = fs.openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'symlink' };
    throw err;
  }
  try {
    const fst = fs.fstatSync(fd, { bigint: true });
    if (!fst.isFile()) return { kind: 'other' };
    const buf = Buffer.alloc(sizeMax + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n > sizeMax) return { kind: 'other' };
    return { kind: 'file', ino: fst.ino, text: buf.subarray(0, n).toString('latin1') };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Create the lock file: O_CREAT | O_EXCL | O_NOFOLLOW (an existing file or symlink, even a dangling one, fails
 * with EEXIST; nothing is followed), mode 0644, write `text`, fsync, close.
 * @returns the new file's inode
 * @throws Node system errors (EEXIST, EROFS, EACCES...); a file created but not fully written is removed first
 */
export function createLockFile(path: string, text: string): bigint {
  const fd = fs.openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
  try {
    const bytes = Buffer.from(text, 'latin1');
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    fs.fsyncSync(fd);
    return fs.fstatSync(fd, { bigint: true }).ino;
  } catch (err) {
    fs.rmSync(path, { force: true });
    throw err;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Remove the regular file at `path` if it is still inode `ino` (a lock file replaced meanwhile is left alone).
 * @returns true when it was removed
 */
export function removeLockFile(path: string, ino: bigint): boolean {
  const st = fs.lstatSync(path, { bigint: true, throwIfNoEntry: false });
  if (!st || !st.isFile() || st.ino !== ino) return false;
  try {
    fs.unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * The abstract UNIX socket names bound in this network namespace that start with `prefix` (without the leading NUL),
 * from /proc/net/unix (where an abstract name shows as `@name`, and the NULs Node pads it with as `@`: trailing ones
 * are dropped, so a name must not end with `@`); each name once. Names holding a space or a newline are not listed
 * (ours hold neither).
 * @returns the names, or null when /proc/net/unix cannot be read (the caller cannot tell who holds what)
 */
export function listAbstractNames(prefix: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return null;
  }
  const out = new Set<string>();
  const needle = ` @${prefix}`;
  for (const line of text.split('\n')) {
    const at = line.indexOf(needle);
    if (at < 0) continue;
    // Node binds an abstract name padded with NULs to the whole sun_path (shown as '@'): they are not part of it
    const name = line.slice(at + 2).replace(/@+$/, '');
    if (name.length > 0 && !name.includes(' ')) out.add(name);
  }
  return [...out];
}
