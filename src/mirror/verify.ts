/**
 * `mirrorddumbfs verify A B` (mirroring spec §4.11, §4.18 invariant 12): compares two trees by content, through the
 * DigestTree interface of digest.ts (a local volume, or a volume on the far side of a verify session:
 * verify_remote.ts), and renders the differences.
 *
 * Independence rule: nothing here reads a claim, a state file or a journal; only digests, listings and node lists.
 *
 * The walk: the roots' digests first; equal digests end the comparison of a subtree without listing it. Where they
 * differ, both listings are merged by raw name bytes (Buffer.compare) and only mismatching entries are looked into,
 * so the requests made are O(differences × depth) listings plus one node list per file whose hash lists differ.
 *
 * Difference lines, in canonical order (pre-order, names sorted bytewise), then each side's integrity findings
 * (side A, then side B, each in canonical order). A is the reference (the master), B the replica:
 *
 *   MISSING P                 P is in A, not in B (a directory: its contents are not listed)
 *   EXTRA P                   P is in B, not in A
 *   DIFF P type|size|hashes@I|mode|uid|gid|mtime|link|target|rdev|xattr
 *                             one line per differing fact; hashes@I names the first differing block index I
 *                             within both sizes; type ends the comparison of P
 *   CORRUPT P block I on A|B  block I of file P is lost (address 1), or with --deep its bytes do not hash to the
 *                             node's hash
 *   DANGLING P HASH on A|B    a node of P names a block the volume does not have: an address beyond the block
 *                             file, or a hash the index does not map to that address (HASH in hex)
 *
 * P is the path from the volume's root with a leading '/', shown from its bytes as mirror/dump.ts shows paths
 * (quoted; space, '\', '"' and bytes that are not printable ASCII as \xHH).
 */
import { DdfsError } from '../errors.js';
import { escapeBytes } from './dump.js';
import type { DigestTree, EntryRecord, IntegrityFinding } from './digest.js';

/** Which fact of an entry differs. */
export type DiffWhat = 'type' | 'size' | 'hashes' | 'mode' | 'uid' | 'gid' | 'mtime' | 'link' | 'target' | 'rdev' | 'xattr';

/** One line of a verify report. Paths are relative byte paths (no leading '/'; the root is empty). */
export type VerifyLine =
  | { kind: 'MISSING'; path: Buffer }
  | { kind: 'EXTRA'; path: Buffer }
  | { kind: 'DIFF'; path: Buffer; what: DiffWhat; blockIndex?: number }
  | { kind: 'CORRUPT'; path: Buffer; blockIndex: number; side: 'A' | 'B' }
  | { kind: 'DANGLING'; path: Buffer; hash: Buffer; side: 'A' | 'B' };

const SLASH = Buffer.from('/', 'latin1');

/**
 * What a comparison has done so far (the progress and summary of verify): `entriesCompared` counts every path looked
 * at, the root and each entry of a listed directory, on either side or both (a subtree whose digests match counts
 * once, as its root: it is not descended); `differences` counts the lines yielded. `onEntry` is called with each.
 */
export interface VerifyProgress {
  entriesCompared: number;
  differences: number;
  onEntry?: (p: Buffer) => void;
}

function join(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? Buffer.from(name) : Buffer.concat([dir, SLASH, name]);
}

/**
 * Compare tree `a` (the reference) with tree `b`, yielding every difference, then the findings of a and of b.
 * @throws DdfsError USAGE when the two differ in block size or hash algorithm (no comparison is possible: spec §4.1
 *   non-goals); DdfsError NOT_FOUND when a root is missing; whatever the trees throw (IO when a file cannot be read)
 */
export async function* verifyTrees(a: DigestTree, b: DigestTree, progress: VerifyProgress = { entriesCompared: 0, differences: 0 }): AsyncGenerator<VerifyLine> {
  for await (const l of compareTrees(a, b, progress)) {
    progress.differences++;
    yield l;
  }
}

async function* compareTrees(a: DigestTree, b: DigestTree, progress: VerifyProgress): AsyncGenerator<VerifyLine> {
  const [fa, fb] = await Promise.all([a.format(), b.format()]);
  if (fa.blockSize !== fb.blockSize) {
    throw new DdfsError('USAGE', `${a.label} and ${b.label} have different block sizes (${fa.blockSize} and ${fb.blockSize}): verify compares volumes of one block size and hash`, { a: fa, b: fb });
  }
  if (fa.hashName !== fb.hashName || fa.hashSize !== fb.hashSize) {
    throw new DdfsError('USAGE', `${a.label} and ${b.label} use different hashes (${fa.hashName} and ${fb.hashName}): verify compares volumes of one block size and hash`, { a: fa, b: fb });
  }
  const root = Buffer.alloc(0);
  const [ra, rb] = await Promise.all([a.entry(root), b.entry(root)]);
  if (ra === null || rb === null) throw new DdfsError('NOT_FOUND', `${(ra === null ? a : b).label}: the root of the tree is missing`);
  const cmp = new Comparison(a, b, fa.hashSize, progress);
  progress.entriesCompared++;
  progress.onEntry?.(root);
  if (!ra.digest.equals(rb.digest)) yield* cmp.entries(root, ra, rb);
  const [la, lb] = await Promise.all([a.findings(), b.findings()]);
  for (const f of la) yield finding(f, 'A');
  for (const f of lb) yield finding(f, 'B');
}

function finding(f: IntegrityFinding, side: 'A' | 'B'): VerifyLine {
  return f.kind === 'CORRUPT' ? { kind: 'CORRUPT', path: f.path, blockIndex: f.blockIndex, side } : { kind: 'DANGLING', path: f.path, hash: f.hash, side };
}

/**
 * Whether the extended attributes of two records of one path differ: compared when both sides sent them; when one
 * did not (a remote verify), inferred from entry digests that differ while every other fact and the content agree.
 */
function xattrsDiffer(x: EntryRecord, y: EntryRecord): boolean {
  if (x.xattrs !== undefined && y.xattrs !== undefined) {
    return x.xattrs.length !== y.xattrs.length || x.xattrs.some((a, i) => !a.name.equals(y.xattrs![i]!.name) || !a.value.equals(y.xattrs![i]!.value));
  }
  return !x.digest.equals(y.digest) && x.contentDigest.equals(y.contentDigest) && x.sizeBytes === y.sizeBytes && x.mode === y.mode && x.uid === y.uid
    && x.gid === y.gid && x.mtimeNs === y.mtimeNs && x.link.equals(y.link) && x.target.equals(y.target) && x.rdev === y.rdev;
}

class Comparison {
  constructor(private readonly a: DigestTree, private readonly b: DigestTree, private readonly hashSize: number, private readonly progress: VerifyProgress) {}

  /** The differences of two records of one path whose digests differ. */
  async *entries(p: Buffer, x: EntryRecord, y: EntryRecord): AsyncGenerator<VerifyLine> {
    if (x.kind !== y.kind) {
      yield { kind: 'DIFF', path: p, what: 'type' };
      return;
    }
    if (x.kind === 'file' && x.sizeBytes !== y.sizeBytes) yield { kind: 'DIFF', path: p, what: 'size' };
    if (x.kind === 'file' && !x.contentDigest.equals(y.contentDigest)) {
      const i = await this.firstDifferentNode(p, Math.min(x.nodeCount, y.nodeCount));
      if (i >= 0) yield { kind: 'DIFF', path: p, what: 'hashes', blockIndex: i };
    }
    if (x.mode !== y.mode) yield { kind: 'DIFF', path: p, what: 'mode' };
    if (x.uid !== y.uid) yield { kind: 'DIFF', path: p, what: 'uid' };
    if (x.gid !== y.gid) yield { kind: 'DIFF', path: p, what: 'gid' };
    if (x.mtimeNs !== y.mtimeNs) yield { kind: 'DIFF', path: p, what: 'mtime' };
    if (!x.link.equals(y.link)) yield { kind: 'DIFF', path: p, what: 'link' };
    if (!x.target.equals(y.target)) yield { kind: 'DIFF', path: p, what: 'target' };
    if (x.rdev !== y.rdev) yield { kind: 'DIFF', path: p, what: 'rdev' };
    if (xattrsDiffer(x, y)) yield { kind: 'DIFF', path: p, what: 'xattr' };
    if (x.kind === 'directory' && !x.contentDigest.equals(y.contentDigest)) yield* this.directories(p);
  }

  /** Merge the listings of directory `p` on both sides; look only into entries whose digests differ. */
  private async *directories(p: Buffer): AsyncGenerator<VerifyLine> {
    const byName = (u: EntryRecord, v: EntryRecord): number => Buffer.compare(u.name, v.name);
    const [la, lb] = await Promise.all([this.a.list(p), this.b.list(p)]);
    la.sort(byName);
    lb.sort(byName);
    let i = 0;
    let j = 0;
    while (i < la.length || j < lb.length) {
      const c = i >= la.length ? 1 : j >= lb.length ? -1 : Buffer.compare(la[i]!.name, lb[j]!.name);
      this.progress.entriesCompared++;
      this.progress.onEntry?.(join(p, (c > 0 ? lb[j] : la[i])!.name));
      if (c < 0) {
        yield { kind: 'MISSING', path: join(p, la[i++]!.name) };
      } else if (c > 0) {
        yield { kind: 'EXTRA', path: join(p, lb[j++]!.name) };
      } else {
        const x = la[i++]!;
        const y = lb[j++]!;
        if (!x.digest.equals(y.digest)) yield* this.entries(join(p, x.name), x, y);
      }
    }
  }

  /**
   * The first block index below `count` where the canonical node lists of `p` differ, or -1 when they agree there
   * (the lists then differ only past the shorter one: the size says so).
   */
  private async firstDifferentNode(p: Buffer, count: number): Promise<number> {
    const hs = this.hashSize;
    const xs = new NodeCursor(this.a.nodes(p)[Symbol.asyncIterator]());
    const ys = new NodeCursor(this.b.nodes(p)[Symbol.asyncIterator]());
    try {
      const limitBytes = count * hs;
      let doneBytes = 0;
      while (doneBytes < limitBytes) {
        const u = await xs.peek();
        const v = await ys.peek();
        if (u === null || v === null) return -1;
        const n = Math.min(u.length, v.length, limitBytes - doneBytes);
        if (u.compare(v, 0, n, 0, n) !== 0) {
          for (let k = 0; k < n; k += hs) {
            if (u.compare(v, k, k + hs, k, k + hs) !== 0) return (doneBytes + k) / hs;
          }
        }
        xs.skip(n);
        ys.skip(n);
        doneBytes += n;
      }
      return -1;
    } finally {
      await Promise.all([xs.close(), ys.close()]);
    }
  }
}

/** Reads a chunked node list by byte counts (chunks of the two sides need not line up). */
class NodeCursor {
  private current: Buffer | null = null;
  private ended = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  async peek(): Promise<Buffer | null> {
    while (!this.ended && (this.current === null || this.current.length === 0)) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.current = r.value;
    }
    return this.ended && (this.current === null || this.current.length === 0) ? null : this.current;
  }

  skip(n: number): void {
    this.current = this.current!.subarray(n);
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** `p` as a report shows it: '/' + the path, escaped from its bytes (mirror/dump.ts). */
export function renderPath(p: Buffer): string {
  return escapeBytes(Buffer.concat([SLASH, p]));
}

/** One text line (no newline) of the report, as the file header describes it. */
export function renderVerifyLine(l: VerifyLine): string {
  const p = renderPath(l.path);
  switch (l.kind) {
    case 'MISSING':
    case 'EXTRA':
      return `${l.kind} ${p}`;
    case 'DIFF':
      return `DIFF ${p} ${l.what}${l.what === 'hashes' ? `@${l.blockIndex}` : ''}`;
    case 'CORRUPT':
      return `CORRUPT ${p} block ${l.blockIndex} on ${l.side}`;
    case 'DANGLING':
      return `DANGLING ${p} ${l.hash.toString('hex')} on ${l.side}`;
  }
}

/**
 * One line as a JSON value: `kind`, `path` (the escaped text of the line, without its quotes), `pathHex` (the exact
 * bytes), and `what`, `block`, `hash`, `side` where they apply.
 */
export function verifyLineJson(l: VerifyLine): Record<string, unknown> {
  const text = renderPath(l.path);
  const out: Record<string, unknown> = { kind: l.kind, path: text.slice(1, -1), pathHex: Buffer.concat([SLASH, l.path]).toString('hex') };
  if (l.kind === 'DIFF') {
    out.what = l.what;
    if (l.what === 'hashes') out.block = l.blockIndex;
  }
  if (l.kind === 'CORRUPT') {
    out.block = l.blockIndex;
    out.side = l.side;
  }
  if (l.kind === 'DANGLING') {
    out.hash = l.hash.toString('hex');
    out.side = l.side;
  }
  return out;
}
