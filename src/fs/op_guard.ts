/**
 * The FUSE boundary: turns the promise-based op table (FsOps, what ops.ts implements) into the callback table of
 * the binding (FuseOps), wrapping every op exactly once (style.md "Every FUSE op is wrapped once").
 *
 * Invariants:
 * - every request is answered exactly once: with the result, or with a negative errno (errnoOf of what was thrown,
 *   EIO for anything unexpected, EIO after `timeoutMs`); a late result after a timeout is dropped (and a late open
 *   is released so no handle leaks);
 * - no handler runs synchronously inside the native dispatch: a synchronous throw is a rejected promise;
 * - FUSE-owned memory (`buf` of read/write) is only touched before the answer: write copies its data first, read
 *   copies its result in just before answering;
 * - an AssertionError (programmer error) answers EIO, then calls `onFatal` (the daemon stops and leaves .autofsck).
 */
import { constants } from 'node:os';
import { DdfsError, errnoOf, messageOf } from '../errors.js';
import { AssertionError } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { displayPath } from './byte_path.js';
import type { BytePath, FuseContext, FuseOps, FuseStat, FuseStatfs, FuseTimespec } from './fuse_binding.js';

const EIO = constants.errno.EIO;

/** What open/create/opendir answer. */
export interface OpenResult {
  fh: number;
  /** fuse_file_info flags (FI_DIRECT_IO ...). */
  fiFlags?: number;
}

/** A directory listing: names (byte strings) and, at the same index, their stats. */
export interface DirListing {
  names: BytePath[];
  stats: FuseStat[];
}

/**
 * The op table of the daemon, promise-based. Paths are byte strings ("/" = the root of the mount).
 * Every method may throw a DdfsError or a Node system error; the guard maps it to an errno.
 */
export interface FsOps {
  getattr(path: BytePath, ctx: FuseContext): Promise<FuseStat>;
  fgetattr(path: BytePath | null, fh: number, ctx: FuseContext): Promise<FuseStat>;
  readdir(path: BytePath, ctx: FuseContext): Promise<DirListing>;
  access(path: BytePath, mode: number, ctx: FuseContext): Promise<void>;
  statfs(path: BytePath, ctx: FuseContext): Promise<FuseStatfs>;
  readlink(path: BytePath, ctx: FuseContext): Promise<BytePath>;
  mkdir(path: BytePath, mode: number, ctx: FuseContext): Promise<void>;
  rmdir(path: BytePath, ctx: FuseContext): Promise<void>;
  unlink(path: BytePath, ctx: FuseContext): Promise<void>;
  rename(src: BytePath, dest: BytePath, ctx: FuseContext): Promise<void>;
  link(src: BytePath, dest: BytePath, ctx: FuseContext): Promise<void>;
  symlink(target: BytePath, path: BytePath, ctx: FuseContext): Promise<void>;
  chmod(path: BytePath, mode: number, ctx: FuseContext): Promise<void>;
  chown(path: BytePath, uid: number, gid: number, ctx: FuseContext): Promise<void>;
  utimens(path: BytePath, atime: FuseTimespec, mtime: FuseTimespec, ctx: FuseContext): Promise<void>;
  mknod(path: BytePath, mode: number, dev: number, ctx: FuseContext): Promise<void>;
  truncate(path: BytePath, size: number, ctx: FuseContext): Promise<void>;
  ftruncate(path: BytePath | null, fh: number, size: number, ctx: FuseContext): Promise<void>;
  open(path: BytePath, flags: number, ctx: FuseContext): Promise<OpenResult>;
  create(path: BytePath, mode: number, flags: number, ctx: FuseContext): Promise<OpenResult>;
  /** @returns at most `length` bytes read at `offset` (fewer at EOF) */
  read(path: BytePath | null, fh: number, length: number, offset: number, ctx: FuseContext): Promise<Buffer>;
  /** `data` is the daemon's own copy. @returns bytes written */
  write(path: BytePath | null, fh: number, data: Buffer, offset: number, ctx: FuseContext): Promise<number>;
  flush(path: BytePath | null, fh: number, ctx: FuseContext): Promise<void>;
  fsync(path: BytePath | null, datasync: boolean, fh: number, ctx: FuseContext): Promise<void>;
  fsyncdir(path: BytePath, datasync: boolean, fh: number, ctx: FuseContext): Promise<void>;
  release(path: BytePath | null, fh: number, ctx: FuseContext): Promise<void>;
  opendir(path: BytePath, flags: number, ctx: FuseContext): Promise<OpenResult>;
  releasedir(path: BytePath | null, fh: number, ctx: FuseContext): Promise<void>;
  /** `value` is the daemon's own copy; `flags` XATTR_CREATE / XATTR_REPLACE. */
  setxattr(path: BytePath, name: BytePath, value: Buffer, flags: number, ctx: FuseContext): Promise<void>;
  /** @param size the caller's buffer (bytes), 0 for a size probe. @throws ENODATA, ERANGE (value longer than a non-zero size) */
  getxattr(path: BytePath, name: BytePath, size: number, ctx: FuseContext): Promise<Buffer>;
  /** @returns the attribute names (bytes, no NUL) */
  listxattr(path: BytePath, ctx: FuseContext): Promise<Buffer[]>;
  removexattr(path: BytePath, name: BytePath, ctx: FuseContext): Promise<void>;
}

export interface GuardOptions {
  logger: Logger;
  /** An op not answered after this long answers EIO (0 = never). */
  timeoutMs: number;
  /** Called after an AssertionError was answered. */
  onFatal: (err: unknown) => void;
  /** When set, every answered op is counted with its latency (debug: env DDUMBFS_OPSTATS, printed at unmount). */
  opStats?: OpStats;
}

/** Upper bounds of the latency buckets of OpStats, µs (the last bucket is everything above). */
const LATENCY_BUCKETS_US = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] as const;

/**
 * Per-op counts and latency histograms (request entry in JS to answer), for profiling the daemon: a debug aid, not a
 * statistic of the volume (/.ddumbfs/stats has those).
 */
export class OpStats {
  private readonly ops = new Map<string, { count: number; totalNs: bigint; buckets: number[] }>();

  /** Record one answered `op` that took `ns` nanoseconds. */
  add(op: string, ns: bigint): void {
    let e = this.ops.get(op);
    if (!e) {
      e = { count: 0, totalNs: 0n, buckets: new Array<number>(LATENCY_BUCKETS_US.length + 1).fill(0) };
      this.ops.set(op, e);
    }
    e.count++;
    e.totalNs += ns;
    const us = Number(ns) / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS_US.length && us > LATENCY_BUCKETS_US[i]!) i++;
    e.buckets[i]!++;
  }

  /** Count of `op` so far. */
  count(op: string): number {
    return this.ops.get(op)?.count ?? 0;
  }

  /** One line per op: count, mean µs and the histogram (`<=10us:n ...`), busiest first. */
  report(): string[] {
    const labels = [...LATENCY_BUCKETS_US.map((b) => `<=${b}us`), `>${LATENCY_BUCKETS_US[LATENCY_BUCKETS_US.length - 1]}us`];
    return [...this.ops.entries()]
      .sort((a, b) => Number(b[1].totalNs - a[1].totalNs))
      .map(([op, e]) => {
        const hist = e.buckets.map((n, i) => (n ? `${labels[i]}:${n}` : '')).filter(Boolean).join(' ');
        const meanUs = Number(e.totalNs / BigInt(e.count)) / 1000;
        return `${op.padEnd(10)} ${String(e.count).padStart(8)} ops  mean ${meanUs.toFixed(1).padStart(8)} us  total ${(Number(e.totalNs) / 1e6).toFixed(0).padStart(7)} ms  ${hist}`;
      });
  }
}

/** Errors that are the normal answer of a file system (not worth more than a debug line). */
const QUIET_CODES = new Set(['ENOENT', 'EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'ENODATA', 'ERANGE', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ELOOP', 'ENAMETOOLONG']);

export function guardOps(ops: FsOps, options: GuardOptions): FuseOps {
  const { logger } = options;

  function report(op: string, path: BytePath | null, err: unknown): void {
    const where = `${op} ${displayPath(path)}`;
    if (err instanceof AssertionError) {
      logger.error(`${where}: ${err.message}\n${err.stack ?? ''}`);
      options.onFatal(err);
      return;
    }
    if (err instanceof DdfsError) {
      if (err.code === 'NOT_FOUND' || err.code === 'EXISTS') logger.dbg(`${where}: ${err.message}`);
      else logger.warn(`${where}: ${err.message}`);
      return;
    }
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) {
      if (QUIET_CODES.has(code)) logger.dbg(`${where}: ${messageOf(err)}`);
      else logger.warn(`${where}: ${messageOf(err)}`);
      return;
    }
    logger.error(`${where}: unexpected error: ${messageOf(err)}\n${(err as Error)?.stack ?? ''}`);
  }

  /**
   * Ops not answered yet that have a deadline, swept by one timer for the whole table: no timer is armed or cleared
   * per op (a metadata op of a small file costs a few µs of JS; a Timeout per op was a measurable part of it).
   */
  const pending = new Set<{ deadline: number; expire: () => void }>();
  let sweep: NodeJS.Timeout | null = null;
  const sweepEveryMs = Math.max(1, Math.min(1000, Math.floor(options.timeoutMs / 10)));
  function watch(entry: { deadline: number; expire: () => void }): void {
    pending.add(entry);
    if (sweep) return;
    sweep = setInterval(() => {
      const now = Date.now();
      for (const e of pending) if (e.deadline <= now) e.expire();
      if (pending.size === 0 && sweep) {
        clearInterval(sweep);
        sweep = null;
      }
    }, sweepEveryMs);
    sweep.unref();
  }

  /**
   * Run `work` and answer once: `ok(value)` or `fail(-errno)`. `late(value)` cleans up a result that arrives after
   * the timeout answered.
   */
  function run<T>(op: string, path: BytePath | null, work: () => Promise<T>, ok: (v: T) => void, fail: (res: number) => void, late?: (v: T) => void): void {
    let answered = false;
    const stats = options.opStats;
    const t0 = stats ? process.hrtime.bigint() : 0n;
    let entry: { deadline: number; expire: () => void } | null = null;
    if (options.timeoutMs > 0) {
      entry = {
        deadline: Date.now() + options.timeoutMs,
        expire: () => {
          pending.delete(entry!);
          if (answered) return;
          answered = true;
          logger.error(`${op} ${displayPath(path)}: no answer after ${options.timeoutMs} ms, answering EIO`);
          fail(-EIO);
        },
      };
      watch(entry);
    }
    const finish = (): boolean => {
      if (answered) return false;
      answered = true;
      if (entry) pending.delete(entry);
      if (stats) stats.add(op, process.hrtime.bigint() - t0);
      return true;
    };
    Promise.resolve()
      .then(work)
      .then(
        (value) => {
          if (!finish()) {
            late?.(value);
            return;
          }
          try {
            ok(value);
          } catch (err) {
            report(op, path, err);
            fail(-EIO);
          }
        },
        (err: unknown) => {
          if (!finish()) return;
          report(op, path, err);
          fail(-errnoOf(err));
        },
      );
  }

  /** An op whose only answer is 0 / -errno. */
  function plain(op: string, path: BytePath | null, work: () => Promise<void>, cb: (res: number) => void): void {
    run(op, path, work, () => cb(0), cb);
  }

  function releaseLate(path: BytePath, r: OpenResult, ctx: FuseContext, isDir: boolean): void {
    const p = isDir ? ops.releasedir(path, r.fh, ctx) : ops.release(path, r.fh, ctx);
    p.catch((err: unknown) => report('release(late open)', path, err));
  }

  return {
    init(cb) {
      cb(0);
    },
    getattr(path, cb, ctx) {
      run('getattr', path, () => ops.getattr(path, ctx), (st) => cb(0, st), (res) => cb(res));
    },
    fgetattr(path, fh, cb, ctx) {
      run('fgetattr', path, () => ops.fgetattr(path, fh, ctx), (st) => cb(0, st), (res) => cb(res));
    },
    readdir(path, cb, ctx) {
      run('readdir', path, () => ops.readdir(path, ctx), (d) => cb(0, d.names, d.stats), (res) => cb(res));
    },
    access(path, mode, cb, ctx) {
      plain('access', path, () => ops.access(path, mode, ctx), cb);
    },
    statfs(path, cb, ctx) {
      run('statfs', path, () => ops.statfs(path, ctx), (s) => cb(0, s), (res) => cb(res));
    },
    readlink(path, cb, ctx) {
      run('readlink', path, () => ops.readlink(path, ctx), (t) => cb(0, t), (res) => cb(res));
    },
    mkdir(path, mode, cb, ctx) {
      plain('mkdir', path, () => ops.mkdir(path, mode, ctx), cb);
    },
    rmdir(path, cb, ctx) {
      plain('rmdir', path, () => ops.rmdir(path, ctx), cb);
    },
    unlink(path, cb, ctx) {
      plain('unlink', path, () => ops.unlink(path, ctx), cb);
    },
    rename(src, dest, cb, ctx) {
      plain('rename', src, () => ops.rename(src, dest, ctx), cb);
    },
    link(src, dest, cb, ctx) {
      plain('link', dest, () => ops.link(src, dest, ctx), cb);
    },
    symlink(target, path, cb, ctx) {
      plain('symlink', path, () => ops.symlink(target, path, ctx), cb);
    },
    chmod(path, mode, cb, ctx) {
      plain('chmod', path, () => ops.chmod(path, mode, ctx), cb);
    },
    chown(path, uid, gid, cb, ctx) {
      plain('chown', path, () => ops.chown(path, uid, gid, ctx), cb);
    },
    utimens(path, atime, mtime, cb, ctx) {
      plain('utimens', path, () => ops.utimens(path, atime, mtime, ctx), cb);
    },
    mknod(path, mode, dev, cb, ctx) {
      plain('mknod', path, () => ops.mknod(path, mode, dev, ctx), cb);
    },
    truncate(path, size, cb, ctx) {
      plain('truncate', path, () => ops.truncate(path, size, ctx), cb);
    },
    ftruncate(path, fh, size, cb, ctx) {
      plain('ftruncate', path, () => ops.ftruncate(path, fh, size, ctx), cb);
    },
    open(path, flags, cb, ctx) {
      run('open', path, () => ops.open(path, flags, ctx), (r) => cb(0, r.fh, r.fiFlags ?? 0), (res) => cb(res), (r) => releaseLate(path, r, ctx, false));
    },
    create(path, mode, flags, cb, ctx) {
      run('create', path, () => ops.create(path, mode, flags, ctx), (r) => cb(0, r.fh, r.fiFlags ?? 0), (res) => cb(res), (r) => releaseLate(path, r, ctx, false));
    },
    opendir(path, flags, cb, ctx) {
      run('opendir', path, () => ops.opendir(path, flags, ctx), (r) => cb(0, r.fh, r.fiFlags ?? 0), (res) => cb(res), (r) => releaseLate(path, r, ctx, true));
    },
    read(path, fh, buf, length, offset, cb, ctx) {
      run(
        'read',
        path,
        () => ops.read(path, fh, length, offset, ctx),
        (data) => {
          const n = Math.min(data.length, length, buf.length);
          data.copy(buf, 0, 0, n);
          cb(n);
        },
        cb,
      );
    },
    write(path, fh, buf, length, offset, cb, ctx) {
      // FUSE reuses `buf` once answered; the op keeps its own copy (it may buffer a partial block).
      const data = Buffer.from(buf.subarray(0, Math.min(length, buf.length)));
      run('write', path, () => ops.write(path, fh, data, offset, ctx), (n) => cb(n), cb);
    },
    flush(path, fh, cb, ctx) {
      plain('flush', path, () => ops.flush(path, fh, ctx), cb);
    },
    fsync(path, datasync, fh, cb, ctx) {
      plain('fsync', path, () => ops.fsync(path, datasync !== 0, fh, ctx), cb);
    },
    fsyncdir(path, datasync, fh, cb, ctx) {
      plain('fsyncdir', path, () => ops.fsyncdir(path, datasync !== 0, fh, ctx), cb);
    },
    release(path, fh, cb, ctx) {
      plain('release', path, () => ops.release(path, fh, ctx), cb);
    },
    releasedir(path, fh, cb, ctx) {
      plain('releasedir', path, () => ops.releasedir(path, fh, ctx), cb);
    },
    setxattr(path, name, value, flags, cb, ctx) {
      // FUSE reuses `value` once answered: the op gets its own copy
      const data = Buffer.from(value);
      plain('setxattr', path, () => ops.setxattr(path, name, data, flags, ctx), cb);
    },
    getxattr(path, name, size, cb, ctx) {
      run('getxattr', path, () => ops.getxattr(path, name, size, ctx), (v) => cb(0, v), (res) => cb(res));
    },
    listxattr(path, _size, cb, ctx) {
      run('listxattr', path, () => ops.listxattr(path, ctx), (names) => cb(0, names), (res) => cb(res));
    },
    removexattr(path, name, cb, ctx) {
      plain('removexattr', path, () => ops.removexattr(path, name, ctx), cb);
    },
  };
}
