/**
 * One error class for every operating error of the product (style.md "Errors and exit codes").
 *
 * A DdfsError carries a stable `code` (never renamed: tests and scripts match on it), the errno that a FUSE op
 * answers with, and structured `data` (paths, addresses). Programmer errors use `assert` from util/assert.ts instead.
 */
import { constants } from 'node:os';

const E = constants.errno;

/** The code table: code -> errno returned to FUSE callers. */
export const ERROR_CODES = {
  NOT_FOUND: E.ENOENT,
  EXISTS: E.EEXIST,
  NO_SPACE: E.ENOSPC,
  CORRUPT: E.EIO,
  IO: E.EIO,
  BUSY: E.EBUSY,
  ACCESS: E.EACCES,
  INVALID: E.EINVAL,
  BAD_CONFIG: E.EINVAL,
  BAD_MAGIC: E.EIO,
  TOO_SHORT: E.EIO,
  BAD_HEADER: E.EIO,
  USAGE: E.EINVAL,
  NOT_SUPPORTED: E.ENOTSUP,
  MOUNTED: E.EBUSY,
  NEEDS_CHECK: E.EBUSY,
  /** The volume lock is held by another process (volume/lock.ts). */
  LOCKED: E.EBUSY,
  /** A write to a volume served or opened read-only (mount option ro). */
  READ_ONLY: E.EROFS,
  /** A walk of the UFS tree met a mount point (another device) and did not cross it. */
  CROSS_DEVICE: E.EXDEV,
  SYMLINK: E.ELOOP,
  /** A truncate or write beyond the largest file the volume can address (UfsFile.sizeMax, limits.ts). */
  FILE_TOO_BIG: E.EFBIG,
  /** A long offline operation stopped at a safe point after SIGINT (the CLI exits 130). */
  INTERRUPTED: E.EINTR,
} as const;

export type DdfsErrorCode = keyof typeof ERROR_CODES;

export class DdfsError extends Error {
  readonly code: DdfsErrorCode;
  readonly errno: number;
  readonly data: Record<string, unknown>;

  constructor(code: DdfsErrorCode, message: string, data: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'DdfsError';
    this.code = code;
    this.errno = ERROR_CODES[code];
    this.data = data;
  }
}

/**
 * Map any thrown value to a positive errno: DdfsError -> its errno, a Node system error -> its errno,
 * anything else -> EIO. Used once at the FUSE boundary.
 */
export function errnoOf(err: unknown): number {
  if (err instanceof DdfsError) return err.errno;
  const e = err as { errno?: unknown; code?: unknown };
  if (typeof e?.errno === 'number' && e.errno !== 0) return Math.abs(e.errno);
  if (typeof e?.code === 'string') {
    const n = (E as Record<string, number>)[e.code];
    if (typeof n === 'number') return n;
  }
  return E.EIO;
}

/** A one-line human message for any thrown value (CLI boundary; never a stack trace). */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
