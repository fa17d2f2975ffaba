/**
 * The slave's undo area and rollback (mirroring spec §4.2 `undo/`, §4.8 phase 2, §4.14 promote --rollback; §4.18
 * invariant 3): while a pass applies its windows, every entry of the slave's tree that an op replaces or deletes is
 * moved (rename(2), same filesystem) into `<parent>/ddfsmirror/undo/<pass>/<n>` instead of being removed, and every
 * change is first written to the area's `manifest`, so that the tree of the last committed claim can be put back.
 *
 * Manifest: text, one JSON object a line, each appended and fsynced BEFORE the change it describes (write-ahead):
 *
 * | line     | object                                                   | change                                        |
 * |----------|----------------------------------------------------------|-----------------------------------------------|
 * | first    | `{"undo":1,"seq":S,"pass":"<32 hex>"}`                   | none: the area's order among areas (S grows)  |
 * | aside    | `{"a":"aside","n":N,"p":"<hex rel>"}`                    | tree entry p moved to `<area>/N`              |
 * | create   | `{"a":"create","p":"<hex rel>"}`                         | an entry made at p, where none was            |
 * | meta     | `{"a":"meta","p":"<hex rel>","mode":M,"uid":U,"gid":G}`  | mode/owner of the directory p (old values)    |
 * | move     | `{"a":"move","n":N or null,"f":"<hex>","p":"<hex rel>"}` | RENAME: `<area>/N/f` (or tree f) moved to p   |
 *
 * A torn last line (a kill while appending) names a change that was never made and is ignored. Rollback reverses the
 * lines newest first; after each reversed line it rewrites `<area>/rolled` (the count of reversed lines, atomically),
 * so a rollback killed at any step is finished by the next one, and every reverse step is harmless when its change
 * was logged but never made.
 *
 * Invariants:
 * - An area is LIVE while `state.pass` is set (a pass not committed, or abandoned) and STALE once `state.pass` is
 *   null: COMMIT writes the claim with `pass: null` first and drops the areas after, rollback clears `pass` last.
 *   A stale area is removed without being reversed; live areas are reversed newest `seq` first.
 * - Nothing is ever read or written through a symlink: areas and manifests are opened O_NOFOLLOW (io/mirror_fs.ts).
 * - Paths are bytes (hex in the manifest), never decoded.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { ROOT_DIRECTORY } from '../format/layout.js';
import { decodeAddress } from '../format/node.js';
import { ADDR_ZERO, UFS_FILE_MAGIC, UFS_HEADER_SIZE, WALK_DEPTH_MAX } from '../limits.js';
import {
  appendDurable, ensureDirectory, listNames, lstatOrNull, readBytesOrNull, readNoFollow, removeTree, removeTreeAsync, renamePath, setMode, setOwner, syncDirectory,
  truncateDurable, writeAtomic,
} from '../io/mirror_fs.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { refuseMounted } from './pass_master.js';
import { mirrorDirectory, readMirrorState, writeMirrorState } from './state.js';

const MANIFEST = 'manifest';
const ROLLED = 'rolled';
const SLASH = 0x2f;

/** One write-ahead line of a manifest (paths are relative byte paths of the tree or of an area entry). */
export type UndoAction =
  | { a: 'aside'; n: number; p: Buffer }
  | { a: 'create'; p: Buffer }
  | { a: 'meta'; p: Buffer; mode: number; uid: number; gid: number }
  | { a: 'move'; n: number | null; f: Buffer; p: Buffer };

/** Where an entry that existed when the pass began is now: in the tree, or inside this pass's undo area. */
export interface UndoLocation {
  /** Area entry number, or null for the tree. */
  n: number | null;
  /** Path in the tree (n = null) or below `<area>/n` (empty: the area entry itself). */
  p: Buffer;
}

/** `<parent>/ddfsmirror/undo`. */
export function undoDirectory(parentDir: string): string {
  return path.join(mirrorDirectory(parentDir), 'undo');
}

function encodeAction(x: UndoAction): string {
  switch (x.a) {
    case 'aside': return JSON.stringify({ a: x.a, n: x.n, p: x.p.toString('hex') });
    case 'create': return JSON.stringify({ a: x.a, p: x.p.toString('hex') });
    case 'meta': return JSON.stringify({ a: x.a, p: x.p.toString('hex'), mode: x.mode, uid: x.uid, gid: x.gid });
    case 'move': return JSON.stringify({ a: x.a, n: x.n, f: x.f.toString('hex'), p: x.p.toString('hex') });
  }
}

const HEX = /^([0-9a-f]{2})*$/;

/** Decode a manifest: its seq, pass id and actions; a torn last line is dropped. @throws DdfsError CORRUPT */
function decodeManifest(file: string, bytes: Buffer): { seq: number; pass: string; actions: UndoAction[] } {
  const lines = bytes.toString('latin1').split('\n');
  const torn = lines.pop(); // text after the last newline: '' or a torn line
  void torn;
  const bad = (k: number, what: string): never => {
    throw new DdfsError('CORRUPT', `${file}: line ${k + 1}: ${what}: the undo area cannot be trusted`, { path: file });
  };
  const hex = (k: number, v: unknown): Buffer => (typeof v === 'string' && HEX.test(v) ? Buffer.from(v, 'hex') : bad(k, 'bad path'));
  const int = (k: number, v: unknown): number => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : bad(k, 'bad number'));
  if (lines.length === 0) return { seq: 0, pass: '', actions: [] };
  let head: { undo?: unknown; seq?: unknown; pass?: unknown };
  try {
    head = JSON.parse(lines[0]!) as typeof head;
  } catch {
    return bad(0, 'bad JSON');
  }
  if (head.undo !== 1 || typeof head.pass !== 'string') bad(0, 'not an undo manifest');
  const actions: UndoAction[] = [];
  for (let k = 1; k < lines.length; k++) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(lines[k]!) as Record<string, unknown>;
    } catch {
      return bad(k, 'bad JSON');
    }
    if (o.a === 'aside') actions.push({ a: 'aside', n: int(k, o.n), p: hex(k, o.p) });
    else if (o.a === 'create') actions.push({ a: 'create', p: hex(k, o.p) });
    else if (o.a === 'meta') actions.push({ a: 'meta', p: hex(k, o.p), mode: int(k, o.mode), uid: int(k, o.uid), gid: int(k, o.gid) });
    else if (o.a === 'move') actions.push({ a: 'move', n: o.n === null ? null : int(k, o.n), f: hex(k, o.f), p: hex(k, o.p) });
    else bad(k, `unknown action ${String(o.a)}`);
  }
  return { seq: int(0, head.seq), pass: head.pass as string, actions };
}

/** The areas under `undo/`: directory, seq and manifest, in no particular order. */
function listAreas(parentDir: string): Array<{ dir: string; seq: number; pass: string; actions: UndoAction[] }> {
  const root = undoDirectory(parentDir);
  const st = lstatOrNull(pathBytes(root));
  if (st === null) return [];
  if (st.kind !== 'dir') throw new DdfsError('INVALID', `${root}: not a directory (a symlink?): refused`, { path: root });
  const out = [];
  for (const name of listNames(pathBytes(root))) {
    const dir = path.join(root, name.toString('latin1'));
    const file = path.join(dir, MANIFEST);
    const bytes = lstatOrNull(pathBytes(dir))?.kind === 'dir' ? readNoFollow(file) : null;
    // an area whose manifest was never written holds nothing (the manifest is written before its first change)
    out.push({ dir, ...(bytes === null ? { seq: 0, pass: '', actions: [] } : decodeManifest(file, bytes)) });
  }
  return out;
}

/**
 * The undo log of one pass on a slave: appends write-ahead lines to its area and moves entries aside.
 * Created by `UndoLog.open` at PASS_BEGIN; a resumed pass (same pass id) continues its area.
 */
export class UndoLog {
  /** Original tree path (latin1 key) → area entry number, for entries moved aside by this process. */
  private readonly asideAt = new Map<string, number>();
  /** Original tree paths moved by a RENAME into their final place: never a RENAME source again. */
  private readonly consumed = new Set<string>();

  private constructor(
    /** The area directory (text path of the parent plus ddfsmirror/undo/<pass>). */
    readonly dir: string,
    private readonly rootDir: Buffer,
    private nextN: number,
    /** The seq of an area not made yet (made on the first line), or null once it exists. */
    private newSeq: number | null,
  ) {}

  /**
   * Open (or continue) the area of pass `passIdHex` on the slave at `parentDir`.
   * @throws DdfsError CORRUPT (a damaged manifest), INVALID (a symlink in the way); Node errors of the writes
   */
  static open(parentDir: string, passIdHex: string): UndoLog {
    const areas = listAreas(parentDir);
    const dir = path.join(undoDirectory(parentDir), passIdHex);
    const rootDir = pathBytes(path.join(path.resolve(parentDir), ROOT_DIRECTORY));
    const mine = areas.find((a) => a.dir === dir);
    const bytes = mine === undefined ? null : readNoFollow(path.join(dir, MANIFEST));
    if (mine !== undefined && bytes !== null) {
      // a torn last line (a kill while appending) names a change never made: cut it before appending after it
      const end = bytes.lastIndexOf(0x0a) + 1;
      if (end < bytes.length) truncateDurable(path.join(dir, MANIFEST), end);
      const n = mine.actions.reduce((m, x) => (x.a === 'aside' ? Math.max(m, x.n + 1) : m), 0);
      return new UndoLog(dir, rootDir, n, null);
    }
    return new UndoLog(dir, rootDir, 0, areas.reduce((m, a) => Math.max(m, a.seq), 0) + 1);
  }

  private log(...xs: UndoAction[]): void {
    if (xs.length === 0) return; // nothing logged, no area made
    if (this.newSeq !== null) {
      // the area is made on the first change only: a pass that changes nothing leaves no area behind
      ensureDirectory(this.dir, 0o700);
      syncDirectory(path.dirname(this.dir));
      syncDirectory(path.dirname(path.dirname(this.dir)));
      appendDurable(path.join(this.dir, MANIFEST), Buffer.from(`${JSON.stringify({ undo: 1, seq: this.newSeq, pass: path.basename(this.dir) })}\n`, 'latin1'));
      this.newSeq = null;
    }
    appendDurable(path.join(this.dir, MANIFEST), Buffer.from(xs.map((x) => `${encodeAction(x)}\n`).join(''), 'latin1'));
  }

  private treeAbs(rel: Buffer): Buffer {
    return rel.length === 0 ? this.rootDir : joinPathBytes(this.rootDir, rel);
  }

  /** The absolute path of a location. */
  absOf(loc: UndoLocation): Buffer {
    if (loc.n === null) return this.treeAbs(loc.p);
    const entry = pathBytes(path.join(this.dir, String(loc.n)));
    return loc.p.length === 0 ? entry : joinPathBytes(entry, loc.p);
  }

  /** Move the tree entry `rel` (it exists) aside into the area, logged first. */
  aside(rel: Buffer): void {
    const n = this.nextN++;
    this.log({ a: 'aside', n, p: rel });
    renamePath(this.treeAbs(rel), this.absOf({ n, p: Buffer.alloc(0) }));
    this.asideAt.set(rel.toString('latin1'), n);
  }

  /**
   * Log, in one durable append, that each of the existing tree entries `rels` is about to be moved aside, and reserve
   * their area entry numbers (a window's replaced files logged before the first is moved: one fsync instead of two a
   * file). Each is then moved with asideLogged, and what is made at its path after needs no create line: reversing an
   * aside removes whatever is at the path before putting the old entry back. A line whose move is never made is
   * harmless: its reversal finds no area entry and does nothing.
   * @returns the area entry number of each of `rels`, in order
   */
  willAsideAll(rels: Buffer[]): number[] {
    const ns = rels.map(() => this.nextN++);
    this.log(...rels.map((p, i): UndoAction => ({ a: 'aside', n: ns[i]!, p })));
    return ns;
  }

  /** Move the tree entry `rel` (it exists) aside as the area entry `n` willAsideAll logged for it. */
  asideLogged(rel: Buffer, n: number): void {
    renamePath(this.treeAbs(rel), this.absOf({ n, p: Buffer.alloc(0) }));
    this.asideAt.set(rel.toString('latin1'), n);
  }

  /** Log that an entry is about to be made at `rel`, where none is. */
  willCreate(rel: Buffer): void {
    this.log({ a: 'create', p: rel });
  }

  /**
   * Log, in one durable append, that entries are about to be made at each of `rels`, where none is (a window's new
   * entries logged before the first of them is made: one fsync instead of one per entry). A line whose entry is
   * never made is harmless: its reversal removes nothing.
   */
  willCreateAll(rels: Buffer[]): void {
    this.log(...rels.map((p): UndoAction => ({ a: 'create', p })));
  }

  /** Log the old mode and owner of the existing directory `rel` before they change. */
  willChangeMeta(rel: Buffer, old: { mode: number; uid: number; gid: number }): void {
    this.log({ a: 'meta', p: rel, mode: old.mode, uid: old.uid, gid: old.gid });
  }

  /**
   * Where the entry that was at tree path `rel` when this process opened the area is now, or null when a RENAME
   * already put it (or an ancestor) in its final place. The nearest moved path (itself, then its ancestors) decides.
   */
  locate(rel: Buffer): UndoLocation | null {
    for (let end = rel.length; end > 0; end = rel.lastIndexOf(SLASH, end - 1)) {
      const key = rel.subarray(0, end).toString('latin1');
      if (this.consumed.has(key)) return null;
      const n = this.asideAt.get(key);
      if (n !== undefined) return { n, p: end === rel.length ? Buffer.alloc(0) : Buffer.from(rel.subarray(end + 1)) };
      if (end === 0) break;
    }
    return { n: null, p: rel };
  }

  /** RENAME: move the entry at `from` (a location) to tree path `to` (free), logged first. */
  move(source: Buffer, from: UndoLocation, to: Buffer): void {
    this.log({ a: 'move', n: from.n, f: from.p, p: to });
    renamePath(this.absOf(from), this.treeAbs(to));
    this.consumed.add(source.toString('latin1'));
  }
}

/** What a rollback did. */
export interface RollbackSummary {
  /** Live areas reversed (passes not committed since the last claim). */
  areasReversed: number;
  /** Manifest lines reversed by this call. */
  actionsReversed: number;
  /** Stale areas (of committed passes) removed without reversing. */
  areasDropped: number;
}

/** Test hooks of a rollback: `at` is called after each reversed line, before its progress is written. */
export interface RollbackOptions {
  onStep?: (actionIndex: number) => void;
}

/** Whether every proper parent of the tree path `rel` is a real directory (no symlink, nothing missing). */
function realParentsOf(rootDir: Buffer, rel: Buffer): boolean {
  for (let at = rel.indexOf(SLASH); at >= 0; at = rel.indexOf(SLASH, at + 1)) {
    if (lstatOrNull(joinPathBytes(rootDir, rel.subarray(0, at)))?.kind !== 'dir') return false;
  }
  return true;
}

/** Reverse one manifest line of the area `dir` (harmless when its change was logged but never made). */
function reverse(dir: string, rootDir: Buffer, x: UndoAction): void {
  const tree = (rel: Buffer): Buffer => (rel.length === 0 ? rootDir : joinPathBytes(rootDir, rel));
  const area = (n: number, sub: Buffer): Buffer => {
    const entry = pathBytes(path.join(dir, String(n)));
    return sub.length === 0 ? entry : joinPathBytes(entry, sub);
  };
  switch (x.a) {
    case 'create':
      // only below real directories: what a pass made has real parents, and nothing is removed through a symlink
      if (realParentsOf(rootDir, x.p)) removeTree(tree(x.p));
      break;
    case 'aside': {
      const from = area(x.n, Buffer.alloc(0));
      if (lstatOrNull(from) === null) break; // never moved (or already put back)
      removeTree(tree(x.p));
      renamePath(from, tree(x.p));
      break;
    }
    case 'meta': {
      const p = tree(x.p);
      if (lstatOrNull(p)?.kind !== 'dir') break;
      setMode(p, x.mode);
      setOwner(p, x.uid, x.gid);
      break;
    }
    case 'move': {
      const back = x.n === null ? tree(x.f) : area(x.n, x.f);
      if (lstatOrNull(back) !== null || lstatOrNull(tree(x.p)) === null) break; // never moved (or already back)
      renamePath(tree(x.p), back);
      break;
    }
  }
}

/**
 * RECLAIM HOOK (spec §4.8: "every hash in a staged or undo node list is pinned"): the directories of the LIVE undo
 * areas of the slave at `parentDir` (a pass is in progress or was abandoned), newest first. The UFS files below them
 * are what a rollback puts back, so reclaim on the slave must count their node lists as references, as it does the
 * tree's; the reclaim rewrite (helper "ns") calls it. Empty when no pass is in progress (stale areas do not count).
 * @throws DdfsError CORRUPT (a damaged manifest or state), INVALID (a symlink in the way)
 */
export function liveUndoAreas(parentDir: string): string[] {
  const state = readMirrorState(parentDir);
  if (state === null || state.pass === null) return [];
  return listAreas(parentDir).sort((a, b) => b.seq - a.seq).map((a) => a.dir);
}

/** Whether an undo area of the slave at `parentDir` is half rolled back (a rollback was killed). */
export function rollbackInterrupted(parentDir: string): boolean {
  return listAreas(parentDir).some((a) => lstatOrNull(pathBytes(path.join(a.dir, ROLLED))) !== null);
}

/**
 * Remove the stale areas of the slave at `parentDir` (when no pass is in progress they belong to committed passes).
 * @throws as rollbackPass
 */
export function dropUndoAreas(parentDir: string): number {
  const areas = listAreas(parentDir);
  if (lstatOrNull(pathBytes(undoDirectory(parentDir))) !== null) {
    removeTree(undoDirectory(parentDir));
    syncDirectory(mirrorDirectory(parentDir));
  }
  return areas.length;
}

/**
 * dropUndoAreas in the thread pool: for a slave whose claim was just written (state.pass is null), the areas of the
 * pass it covers go while the master ends the pass (after the ACK), not before it; what is left by a process killed
 * meanwhile goes at the start of the next pass, as any stale area does.
 * @throws Node errors of the removal or of the directory's fsync
 */
export async function dropUndoAreasAsync(parentDir: string): Promise<void> {
  if (lstatOrNull(pathBytes(undoDirectory(parentDir))) === null) return;
  await removeTreeAsync(undoDirectory(parentDir));
  syncDirectory(mirrorDirectory(parentDir));
}

/**
 * Roll the slave at `parentDir` back to its last committed claim (spec §4.14 `promote --rollback`, §4.8 "or back using
 * undo"): reverse every live undo area newest first (entries created by the passes removed, entries moved aside put
 * back, directory modes and owners restored, RENAMEs undone), then remove the areas and `staging/`, and clear the pass
 * in progress from `ddfsmirror/state` (the claim itself is not touched). Idempotent: a rollback killed at any step is
 * finished by running it again, and a pass can also be resumed (rolled forward) from that state, which finishes the
 * rollback first. With no pass in progress it only removes stale areas.
 * @returns what was reversed
 * @throws DdfsError MOUNTED; INVALID (not a slave, a symlink in the way); CORRUPT (a damaged manifest or progress file)
 */
export function rollbackPass(parentDir: string, options: RollbackOptions = {}): RollbackSummary {
  refuseMounted(parentDir);
  const parent = path.resolve(parentDir);
  const state = readMirrorState(parent);
  if (state === null || state.role !== 'slave') throw new DdfsError('INVALID', `${parentDir}: not a slave: nothing to roll back`, { path: parentDir });
  const summary: RollbackSummary = { areasReversed: 0, actionsReversed: 0, areasDropped: 0 };
  const rootDir = pathBytes(path.join(parent, ROOT_DIRECTORY));
  if (state.pass === null) {
    summary.areasDropped = dropUndoAreas(parent);
  } else {
    const areas = listAreas(parent).sort((a, b) => b.seq - a.seq);
    for (const a of areas) {
      const progressFile = path.join(a.dir, ROLLED);
      const progress = readNoFollow(progressFile);
      let rolled = progress === null ? 0 : Number(progress.toString('latin1').trim());
      if (!Number.isInteger(rolled) || rolled < 0 || rolled > a.actions.length) {
        throw new DdfsError('CORRUPT', `${progressFile}: bad rollback progress ${pathText(progress ?? Buffer.alloc(0))}`, { path: progressFile });
      }
      for (let k = a.actions.length - 1 - rolled; k >= 0; k--) {
        reverse(a.dir, rootDir, a.actions[k]!);
        options.onStep?.(k);
        rolled++;
        writeAtomic(a.dir, ROLLED, Buffer.from(`${rolled}\n`, 'latin1'), 0o600);
        summary.actionsReversed++;
      }
      syncTreeDirectories(rootDir, a.actions);
      removeTree(a.dir);
      syncDirectory(undoDirectory(parent));
      summary.areasReversed++;
    }
  }
  if (state.pass !== null) dropUndoAreas(parent); // all reversed and removed: only the empty undo/ is left
  removeTree(path.join(mirrorDirectory(parent), 'staging'));
  if (state.pass !== null) writeMirrorState(parent, { ...state, pass: null });
  return summary;
}

/** fsync the tree directories the reversed lines changed, so the restored tree is durable before its area goes. */
function syncTreeDirectories(rootDir: Buffer, actions: UndoAction[]): void {
  const dirs = new Set<string>();
  const parentOf = (rel: Buffer): Buffer => {
    const at = rel.lastIndexOf(SLASH);
    return at < 0 ? rootDir : joinPathBytes(rootDir, rel.subarray(0, at));
  };
  for (const x of actions) {
    dirs.add(parentOf(x.p).toString('latin1'));
    if (x.a === 'move' && x.n === null) dirs.add(parentOf(x.f).toString('latin1'));
  }
  for (const d of dirs) {
    const b = Buffer.from(d, 'latin1');
    if (lstatOrNull(b)?.kind === 'dir') syncDirectory(b);
  }
}

/** The node geometry undoAreaHashes needs (a DdfsConfig has it). */
export interface UndoNodeGeometry {
  nodeSize: number;
  addrSize: number;
  hashSize: number;
}

/**
 * RECLAIM REFERENCES of the undo areas (spec §4.8: "every hash in a staged or undo node list is pinned"): the hash of
 * every node with a non-zero address in every UFS file kept in a LIVE undo area of the slave at `parentDir` (a pass in
 * progress or abandoned). A rollback puts those files back into the tree, so a reclaim that freed their blocks would
 * leave them naming freed blocks (invariant 6); the slave's daemon gives this to its reclaim as a reference provider.
 * Synchronous (reclaim reads providers at its start and in its last synchronous check before the sweep).
 * @returns the hashes (copies; repeats possible), empty when no area is live
 * @throws DdfsError CORRUPT (a damaged manifest or state, a kept file that is not a UFS file), INVALID (a symlink in
 *   the way, an area deeper than WALK_DEPTH_MAX); Node errors of reading: reclaim then frees nothing
 */
export function undoAreaHashes(parentDir: string, geometry: UndoNodeGeometry): Buffer[] {
  const out: Buffer[] = [];
  const { nodeSize, addrSize, hashSize } = geometry;
  const collect = (p: Buffer, depth: number): void => {
    if (depth > WALK_DEPTH_MAX) throw new DdfsError('INVALID', `${pathText(p)}: an undo area deeper than ${WALK_DEPTH_MAX} levels`);
    const st = lstatOrNull(p);
    if (st === null) return;
    if (st.kind === 'dir') {
      for (const name of listNames(p)) collect(joinPathBytes(p, name), depth + 1);
      return;
    }
    if (st.kind !== 'file') return;
    const bytes = readBytesOrNull(p);
    if (bytes === null) return;
    if (bytes.length < UFS_HEADER_SIZE || bytes.subarray(0, 8).toString('latin1') !== UFS_FILE_MAGIC) {
      throw new DdfsError('CORRUPT', `${pathText(p)}: a file kept in the undo area is not a UFS file: reclaim cannot tell what it references`);
    }
    for (let at = UFS_HEADER_SIZE; at + nodeSize <= bytes.length; at += nodeSize) {
      if (decodeAddress(bytes, at, addrSize) !== ADDR_ZERO) out.push(Buffer.from(bytes.subarray(at + addrSize, at + addrSize + hashSize)));
    }
  };
  for (const dir of liveUndoAreas(parentDir)) {
    for (const name of listNames(pathBytes(dir))) {
      // the entries moved aside are the numbered names; manifest and rolled are the area's own files
      if (!/^[0-9]+$/.test(name.toString('latin1'))) continue;
      collect(joinPathBytes(pathBytes(dir), name), 1);
    }
  }
  return out;
}
