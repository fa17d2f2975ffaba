/**
 * The read-only gate of the daemon (mount option `ro`, and later a slave's mount): the one place where every write
 * op answers EROFS. mount.ts wraps the op table with it before op_guard.ts, so no op of ops.ts needs to know.
 *
 * Invariants:
 * - every op that changes the tree, a file's data or its metadata (WRITE_OPS, including the extended-attribute ops
 *   the op table may gain) rejects with DdfsError READ_ONLY (errno EROFS) without reaching the op table;
 * - open answers EROFS for a write access mode or O_TRUNC; opening a special file of /.ddumbfs/ answers EROFS too,
 *   because regenerating it writes its UFS file (and /.ddumbfs/reclaim would run a reclaim);
 * - every other op (getattr, readdir, read, statfs, release...) reaches the op table unchanged.
 * The kernel refuses most writes to a mount flagged `ro` before they reach the daemon; this gate does not rely on it.
 */
import { DdfsError } from '../errors.js';
import { O_ACCMODE, O_RDONLY, O_TRUNC } from '../io/open_flags.js';
import { displayPath, specialFileOf } from './byte_path.js';
import type { BytePath } from './fuse_binding.js';
import type { FsOps } from './op_guard.js';

/** Ops that write, answered EROFS. The xattr names are listed so that the ops, once added, are gated at once. */
export const WRITE_OPS = [
  'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'chmod', 'chown', 'utimens', 'mknod', 'truncate', 'ftruncate',
  'create', 'write', 'setxattr', 'removexattr',
] as const;

const WRITE_OP_SET: ReadonlySet<string> = new Set(WRITE_OPS);

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
      if (WRITE_OP_SET.has(prop)) {
        return async (path: unknown) => {
          throw readOnlyError(prop, path);
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
