/**
 * The read-only gate of the daemon (mount option `ro`, and later a slave's mount): the one place where every write
 * op answers EROFS. mount.ts wraps the op table with it before op_guard.ts, so no op of ops.ts needs to know.
 *
 * Invariants:
 * - only the ops of READ_OPS reach the op table; every other op — those that change the tree, a file's data or its
 *   metadata (WRITE_OPS), and any op the table gains later until it is listed as a reader — rejects with DdfsError
 *   READ_ONLY (errno EROFS), so a new write op can never slip past the gate;
 * - open answers EROFS for a write access mode or O_TRUNC; opening a special file of /.ddumbfs/ answers EROFS too,
 *   because regenerating it writes its UFS file (and /.ddumbfs/reclaim would run a reclaim); access answers EROFS
 *   when asked for write permission, as access(2) does on a read-only file system.
 * The kernel refuses most writes to a mount flagged `ro` before they reach the daemon; this gate does not rely on it.
 */
import { DdfsError } from '../errors.js';
import { O_ACCMODE, O_RDONLY, O_TRUNC } from '../io/open_flags.js';
import { displayPath, specialFileOf } from './byte_path.js';
import type { BytePath } from './fuse_binding.js';
import type { FsOps } from './op_guard.js';

/** Ops that only read: they reach the op table (open and access after a look at their flags). */
export const READ_OPS: ReadonlySet<string> = new Set([
  'getattr', 'fgetattr', 'readdir', 'access', 'statfs', 'readlink', 'open', 'read', 'flush', 'fsync', 'fsyncdir', 'release', 'opendir',
  'releasedir', 'getxattr', 'listxattr',
]);

/** The ops of the table known to write (every op outside READ_OPS answers EROFS anyway; listed for tests and docs). */
export const WRITE_OPS = [
  'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'chmod', 'chown', 'utimens', 'mknod', 'truncate', 'ftruncate',
  'create', 'write', 'setxattr', 'removexattr',
] as const;

/** access(2)'s W_OK bit. */
const W_OK = 2;

function readOnlyError(op: string, path: unknown): DdfsError {
  const where = typeof path === 'string' ? ` ${displayPath(path)}` : '';
  return new DdfsError('READ_ONLY', `${op}${where}: read-only file system`, { op });
}

/**
 * The op table `ops` with every write answered EROFS (see the file comment).
 * @returns a table of the same shape; `ops` itself is not changed
 */
export function readOnlyOps(ops: FsOps): FsOps {
  return new Proxy(ops, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof prop !== 'string' || typeof value !== 'function') return value;
      if (!READ_OPS.has(prop)) {
        return async (path: unknown) => {
          throw readOnlyError(prop, path);
        };
      }
      if (prop === 'access') {
        return async (path: BytePath, mode: number, ...rest: unknown[]) => {
          if (mode & W_OK) throw readOnlyError('access for writing', path);
          return (value as (...a: unknown[]) => unknown).call(target, path, mode, ...rest);
        };
      }
      if (prop === 'open') {
        return async (path: BytePath, flags: number, ...rest: unknown[]) => {
          if ((flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) throw readOnlyError('open for writing', path);
          if (specialFileOf(path) !== null) throw readOnlyError('open of a special file (regenerated on open)', path);
          return (value as (...a: unknown[]) => unknown).call(target, path, flags, ...rest);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}
