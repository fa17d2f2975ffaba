/**
 * The volume's UFS tree `ddfsroot` (spec §7, §8.3): the one place where a change of the tree happens.
 *
 * Every namespace change (create, mkdir, rmdir, unlink, rename, link, symlink, mknod, chmod, chown, utimens,
 * truncate, and a set or removal of an extended attribute: op 'xattr') is a method here taking BYTE paths relative to ddfsroot (never decoded as UTF-8; "." is the root).
 *
 * Invariants:
 * - before a change, the change sink (the mirror journal) is told when one is set, and what it returns is awaited;
 *   when none is set, or it returns null, a change costs no await beyond the method's own (the syscalls are
 *   synchronous, see io/tree_ops.ts);
 * - after a successful change the observers (a running reclaim) are told synchronously, with no await between the
 *   syscall and the notice, so an observer never misses a change that happened before it looked;
 * - while a hold is set (the final drain of a reclaim), changes that give an existing inode a new path (rename,
 *   link) wait for it to be released: they are the only changes that can hide a file from a walk;
 * - new objects belong to the caller: its uid, and its gid unless the parent directory is setgid.
 */
import * as tree from '../io/tree_ops.js';
import * as xattr from '../io/xattr.js';
import { isReservedXattr } from '../format/layout.js';
import type { NativeTreeCalls, TreeTimespec } from '../io/tree_ops.js';

export type { NativeTreeCalls, TreeTimespec } from '../io/tree_ops.js';

export type TreeChangeOp =
  | 'create' | 'mkdir' | 'rmdir' | 'unlink' | 'rename' | 'link' | 'symlink' | 'mknod'
  | 'chmod' | 'chown' | 'utimens' | 'truncate' | 'xattr';

/** A change of the tree: the op and its byte path(s), relative to ddfsroot. `dest` for rename and link. */
export interface TreeChange {
  op: TreeChangeOp;
  path: Buffer;
  dest?: Buffer;
}

/** Where changes are announced before they happen (the mirror journal hooks in here). */
export interface TreeChangeSink {
  /**
   * Told before `change` is issued (a throw or a rejection fails the change: it does not happen). Returns what to
   * await first, or null when the change may go ahead at once (the journal buffered its record, mirroring spec §4.3).
   */
  beforeChange(change: TreeChange): Promise<void> | null;
  /**
   * Before a data change of the open file `fileKey` (its inode) at tree path `path` (write, ftruncate, O_TRUNC):
   * a promise to await, or null when nothing needs awaiting (a record of this file already exists in the current
   * window, mirroring spec §4.3). Absent: data changes are not announced.
   */
  beforeWrite?(fileKey: bigint, path: Buffer): Promise<void> | null;
}

/** Told synchronously after each successful change (reclaim records renames, links and removals). */
export interface TreeChangeObserver {
  afterChange(change: TreeChange): void;
}

/** The caller a new object belongs to (FUSE context). */
export interface TreeCaller {
  uid: number;
  gid: number;
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const SLASH = 0x2f;

/** Parent directory of a relative byte path ("a/b" → "a", "b" → "."). */
export function parentOf(p: Buffer): Buffer {
  const i = p.lastIndexOf(SLASH);
  return i <= 0 ? Buffer.from('.') : p.subarray(0, i);
}

function refuseReserved(name: Buffer): void {
  if (!isReservedXattr(name)) return;
  throw Object.assign(new Error(`EPERM: ${name.toString('latin1')}: extended attribute reserved for ddumbfs`), { code: 'EPERM', errno: -1 });
}

export class UfsTree {
  /** Awaited before each change, when set. */
  sink: TreeChangeSink | null = null;
  /** The daemon's native calls for mknod of special files and utimensat with nanoseconds. */
  native: NativeTreeCalls | null = null;
  private readonly observers = new Set<TreeChangeObserver>();
  private hold: Promise<void> | null = null;
  private releaseHold: (() => void) | null = null;
  private readonly euid = process.geteuid?.() ?? 0;
  private readonly egid = process.getegid?.() ?? 0;

  /** @param base byte prefix that turns a tree path into a syscall path: "<ddfsroot>/", or empty when cwd is ddfsroot */
  constructor(private base: Buffer) {}

  /** Resolve tree paths relative to the process cwd, which the caller has made ddfsroot (the daemon). */
  useCwdAsRoot(): void {
    this.base = Buffer.alloc(0);
  }

  /** The syscall path of a tree path. */
  resolve(p: Buffer): Buffer {
    return this.base.length === 0 ? p : Buffer.concat([this.base, p]);
  }

  addObserver(o: TreeChangeObserver): void {
    this.observers.add(o);
  }

  removeObserver(o: TreeChangeObserver): void {
    this.observers.delete(o);
  }

  /** Make rename and link wait until `release` is called (idempotent while held). */
  holdPathChanges(): () => void {
    if (!this.hold) {
      this.hold = new Promise<void>((resolve) => {
        this.releaseHold = resolve;
      });
    }
    return () => {
      this.releaseHold?.();
      this.hold = null;
      this.releaseHold = null;
    };
  }

  /**
   * What to await before `change`, or null when nothing is to be awaited (no sink or one that returns null, no
   * hold): no await cost then. @throws what the sink throws (the change must not happen)
   */
  private before(change: TreeChange, gated: boolean): Promise<void> | null {
    const recorded = this.sink ? this.sink.beforeChange(change) : null;
    if (!(gated && this.hold)) return recorded;
    return this.beforeSlow(recorded);
  }

  private async beforeSlow(recorded: Promise<void> | null): Promise<void> {
    if (recorded) await recorded;
    while (this.hold) await this.hold;
  }

  private after(change: TreeChange): void {
    for (const o of this.observers) o.afterChange(change);
  }

  /** Give a new object to the caller (uid; gid unless the parent is setgid); restore set-id bits chown cleared. */
  private chownNew(p: Buffer, caller: TreeCaller, mode?: number): void {
    let gid = caller.gid;
    if (tree.directoryMode(this.resolve(parentOf(p))) & S_ISGID) gid = -1;
    if (caller.uid === this.euid && (gid === -1 || gid === this.egid)) return;
    const at = this.resolve(p);
    tree.changeOwner(at, caller.uid, gid);
    if (mode !== undefined && mode & (S_ISUID | S_ISGID)) tree.changeMode(at, mode & 0o7777);
  }

  /**
   * Create an empty regular file (a 0-byte UFS file is a valid empty file, spec §7).
   * @returns true when created, false when it existed and `exclusive` is false
   * @throws EEXIST when it exists and `exclusive`; Node errors
   */
  async createFile(p: Buffer, mode: number, caller: TreeCaller, exclusive: boolean): Promise<boolean> {
    const change: TreeChange = { op: 'create', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    const created = tree.createRegularFile(this.resolve(p), mode, exclusive);
    if (created) {
      this.chownNew(p, caller, mode);
      this.after(change);
    }
    return created;
  }

  async mkdir(p: Buffer, mode: number, caller: TreeCaller): Promise<void> {
    const change: TreeChange = { op: 'mkdir', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.makeDirectory(this.resolve(p), mode);
    this.chownNew(p, caller);
    this.after(change);
  }

  async rmdir(p: Buffer): Promise<void> {
    const change: TreeChange = { op: 'rmdir', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.removeDirectory(this.resolve(p));
    this.after(change);
  }

  async unlink(p: Buffer): Promise<void> {
    const change: TreeChange = { op: 'unlink', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.unlinkEntry(this.resolve(p));
    this.after(change);
  }

  async rename(src: Buffer, dest: Buffer): Promise<void> {
    const change: TreeChange = { op: 'rename', path: src, dest };
    const wait = this.before(change, true);
    if (wait) await wait;
    tree.renameEntry(this.resolve(src), this.resolve(dest));
    this.after(change);
  }

  async link(src: Buffer, dest: Buffer): Promise<void> {
    const change: TreeChange = { op: 'link', path: src, dest };
    const wait = this.before(change, true);
    if (wait) await wait;
    tree.linkEntry(this.resolve(src), this.resolve(dest));
    this.after(change);
  }

  /** Create symlink `p` pointing to `target` (bytes, stored as given). */
  async symlink(target: Buffer, p: Buffer, caller: TreeCaller): Promise<void> {
    const change: TreeChange = { op: 'symlink', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.makeSymlink(target, this.resolve(p));
    this.chownNew(p, caller);
    this.after(change);
  }

  /** @throws DdfsError NOT_SUPPORTED for a special file without native calls; Node errors */
  async mknod(p: Buffer, mode: number, dev: number, caller: TreeCaller): Promise<void> {
    const change: TreeChange = { op: 'mknod', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.makeNode(this.resolve(p), mode, dev, this.native);
    this.chownNew(p, caller, mode);
    this.after(change);
  }

  async chmod(p: Buffer, mode: number): Promise<void> {
    const change: TreeChange = { op: 'chmod', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.changeMode(this.resolve(p), mode);
    this.after(change);
  }

  /** lchown; -1 leaves an id unchanged. */
  async chown(p: Buffer, uid: number, gid: number): Promise<void> {
    const change: TreeChange = { op: 'chown', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.changeOwner(this.resolve(p), uid, gid);
    this.after(change);
  }

  /** Set times (never following a symlink); nsec may be UTIME_NOW / UTIME_OMIT. */
  async utimens(p: Buffer, atime: TreeTimespec, mtime: TreeTimespec): Promise<void> {
    const change: TreeChange = { op: 'utimens', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    tree.changeTimes(this.resolve(p), atime, mtime, this.native);
    this.after(change);
  }

  /**
   * Announce a truncate of the file at `p` and run it (`apply` truncates the shared UfsFile of that inode, spec §7
   * "Truncate"): the node list changes in the UfsFile, the announcement happens here.
   */
  async truncate(p: Buffer, apply: () => Promise<void>): Promise<void> {
    const change: TreeChange = { op: 'truncate', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    await apply();
    this.after(change);
  }

  /**
   * Set extended attribute `name` of the UFS object at `p` itself (a symlink is not followed): where a mount's
   * attributes and POSIX ACLs (system.posix_acl_access, system.posix_acl_default) live.
   * @param flags 0, XATTR_CREATE or XATTR_REPLACE (io/xattr.ts)
   * @throws EPERM for a reserved name; the host's EEXIST, ENODATA, E2BIG, ENOSPC, ENOTSUP, EPERM...
   */
  async setXattr(p: Buffer, name: Buffer, value: Buffer, flags: number): Promise<void> {
    refuseReserved(name);
    const change: TreeChange = { op: 'xattr', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    xattr.setXattr(this.resolve(p), name, value, flags);
    this.after(change);
  }

  /**
   * Remove extended attribute `name` of the UFS object at `p` itself.
   * @throws EPERM for a reserved name; the host's ENODATA, ENOTSUP, EPERM...
   */
  async removeXattr(p: Buffer, name: Buffer): Promise<void> {
    refuseReserved(name);
    const change: TreeChange = { op: 'xattr', path: p };
    const wait = this.before(change, false);
    if (wait) await wait;
    xattr.removeXattr(this.resolve(p), name);
    this.after(change);
  }

  /**
   * The value of extended attribute `name` of the UFS object at `p` itself.
   * @param sizeMax the caller's buffer (bytes): a longer value throws ERANGE; 0 (a size probe) reads the whole
   *   value, whose length the FUSE layer answers
   * @throws ENODATA (also for a reserved name), ERANGE, ENOTSUP...
   */
  getXattr(p: Buffer, name: Buffer, sizeMax: number): Buffer {
    if (isReservedXattr(name)) throw Object.assign(new Error(`ENODATA: ${name.toString('latin1')}`), { code: 'ENODATA', errno: -61 });
    return xattr.getXattr(this.resolve(p), name, sizeMax === 0 ? xattr.XATTR_LIST_SIZE_MAX : sizeMax);
  }

  /** The extended attribute names of the UFS object at `p` itself, reserved ones left out. */
  listXattrs(p: Buffer): Buffer[] {
    return xattr.listXattrs(this.resolve(p)).filter((name) => !isReservedXattr(name));
  }
}
