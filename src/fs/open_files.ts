/**
 * Open files and file handles of the daemon (spec §8.4: per-inode shared state found by inode number).
 *
 * Invariants:
 * - at most one UfsFile per inode (st_ino of the UFS file), shared by every handle of that inode (hard links,
 *   several opens, a file unlinked while open); `handleCount` counts its users and the UfsFile is closed when it
 *   drops to zero;
 * - opening an inode waits for a pending open or close of the same inode, so an inode is never read from disk while
 *   an earlier UfsFile of it is still flushing;
 * - fh numbers are positive int32 values, never reused while in use (fh 0 means "no handle" to fuse-native).
 */
import type * as fsp from 'node:fs/promises';
import { constants } from 'node:os';
import { DdfsError } from '../errors.js';
import type { UfsFile } from '../ufs/ufs_file.js';

/** An open regular file (outside /.ddumbfs/) and its users. */
export interface OpenFile {
  readonly ino: bigint;
  readonly file: UfsFile;
  handleCount: number;
}

/** A handle of a deduplicated regular file. */
export interface UfsHandle {
  readonly kind: 'ufs';
  readonly openFile: OpenFile;
}

/** A handle of a raw (pass-through) file: files in /.ddumbfs/. */
export interface RawHandle {
  readonly kind: 'raw';
  readonly fileHandle: fsp.FileHandle;
}

export type Handle = UfsHandle | RawHandle;

const FH_MAX = 0x7fffffff;

function badHandle(fh: number): Error {
  return Object.assign(new Error(`bad file handle ${fh}`), { code: 'EBADF', errno: constants.errno.EBADF });
}

export class OpenFiles {
  private readonly byIno = new Map<bigint, OpenFile>();
  /** Opens and closes in progress, per inode: the next open of the inode waits for them. */
  private readonly busy = new Map<bigint, Promise<unknown>>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;

  /** The open file of an inode, if any. */
  find(ino: bigint): OpenFile | undefined {
    return this.byIno.get(ino);
  }

  /** Every open file. */
  files(): OpenFile[] {
    return [...this.byIno.values()];
  }

  /** Number of handles in use. */
  get handleCount(): number {
    return this.handles.size;
  }

  /**
   * Take one use of inode `ino`, opening its UfsFile with `open` when nobody has it open.
   * @throws what `open` throws (the use is not taken then)
   */
  async acquire(ino: bigint, open: () => Promise<UfsFile>): Promise<OpenFile> {
    for (;;) {
      const existing = this.byIno.get(ino);
      if (existing) {
        existing.handleCount++;
        return existing;
      }
      const pending = this.busy.get(ino);
      if (!pending) break;
      await pending.catch(() => undefined);
    }
    const opening = open().then((file) => {
      const entry: OpenFile = { ino, file, handleCount: 1 };
      this.byIno.set(ino, entry);
      return entry;
    });
    this.busy.set(ino, opening);
    try {
      return await opening;
    } finally {
      if (this.busy.get(ino) === opening) this.busy.delete(ino);
    }
  }

  /** Drop one use of `entry`; the last one closes the UfsFile (flushing it). @throws what close throws */
  async release(entry: OpenFile): Promise<void> {
    entry.handleCount--;
    if (entry.handleCount > 0) return;
    this.byIno.delete(entry.ino);
    const closing = entry.file.close();
    this.busy.set(entry.ino, closing);
    try {
      await closing;
    } finally {
      if (this.busy.get(entry.ino) === closing) this.busy.delete(entry.ino);
    }
  }

  /** Register a handle. @returns its fh */
  addHandle(handle: Handle): number {
    for (let tries = 0; tries <= this.handles.size; tries++) {
      const fh = this.nextFh;
      this.nextFh = fh >= FH_MAX ? 1 : fh + 1;
      if (!this.handles.has(fh)) {
        this.handles.set(fh, handle);
        return fh;
      }
    }
    throw new DdfsError('BUSY', 'no free file handle');
  }

  /** @throws EBADF for an unknown fh */
  handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw badHandle(fh);
    return h;
  }

  /** Unregister a handle. @throws EBADF for an unknown fh */
  removeHandle(fh: number): Handle {
    const h = this.handle(fh);
    this.handles.delete(fh);
    return h;
  }

  /**
   * Close everything still open (shutdown after the FUSE loop ended). Every file is attempted.
   * @returns the errors met
   */
  async closeAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    const raw = [...this.handles.values()].filter((h): h is RawHandle => h.kind === 'raw');
    this.handles.clear();
    for (const h of raw) await h.fileHandle.close().catch((err: unknown) => errors.push(err));
    await Promise.all([...this.busy.values()].map((p) => p.catch(() => undefined)));
    const files = [...this.byIno.values()];
    this.byIno.clear();
    for (const f of files) await f.file.close().catch((err: unknown) => errors.push(err));
    return errors;
  }
}
