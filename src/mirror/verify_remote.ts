/**
 * `mirrorddumbfs verify` with a far endpoint (mirroring spec §4.11, §4.15; issue 7 item 7): the DigestTree of a
 * volume on the other side of a DDMS stream. The far side (`mirrorddumbfs serve --restrict ROOT verify PATH`) runs
 * serveVerify over its stdin/stdout; the near side's StreamDigests asks it one question at a time, and verifyTrees
 * compares it with any other DigestTree exactly as two local volumes.
 *
 * A verify session (one DDMS stream each way):
 *   asker    HELLO (zero uuids, placeholder format: the asker sends no hash and no block), VQUERY open {deep, mtime}
 *   answerer HELLO (the volume's block_size, hash_algo, hash_size; zero uuids: no state is read), then VDONE, or
 *            ERROR when the volume cannot be opened
 *   asker    VQUERY entry P    -> answerer VENTRY (0 or 1), VDONE
 *            VQUERY list P     -> answerer one VENTRY per entry of directory P, sorted bytewise, VDONE
 *            VQUERY nodes P i  -> answerer FILE_NODES (the canonical node list from index i, at most
 *                                 MIRROR_FILE_NODES_COUNT_MAX hashes), VDONE (more: ask again from the next index)
 *            VQUERY findings   -> answerer one VFINDING per CORRUPT/DANGLING finding of its volume, VDONE
 *            TERM              -> answerer TERM, and the session ends
 *   An error while answering: the answerer sends ERROR (reason IO, its message) and ends; the asker throws it.
 *
 * Invariants:
 * - The answerer reads no claim, no state file and no journal (§4.11 independence rule), opens its volume read-only
 *   and writes nothing; with `deep` its own blocks are re-hashed there, so CORRUPT/DANGLING of its side are found
 *   where the blocks are and only the findings cross.
 * - Bounded memory on both sides: every answer is a sequence of records of bounded size (one VENTRY per entry, node
 *   lists in pieces, one VFINDING per finding); the asker has one question open at a time per stream, so the
 *   answerer never writes more than one answer ahead of the asker's reading.
 * - Paths are bytes end to end (VENTRY path and link, VFINDING path); names are never decoded.
 */
import { DdfsError } from '../errors.js';
import { BLOCK_SIZE_MIN, MIRROR_FILE_NODES_COUNT_MAX, STREAM_TEXT_SIZE_MAX } from '../limits.js';
import type { HashName } from '../format/config.js';
import type { RecordReader, RecordWriter } from './channel.js';
import { VolumeDigests, type DigestTree, type EntryRecord, type IntegrityFinding, type TreeAccess, type TreeFormat } from './digest.js';
import { REASON, type HelloRecord, type MirrorRecord, type VentryRecord } from './record_body.js';
import { STREAM_VERSION, type RecordInput } from './stream_codec.js';

const ZERO_ID = Buffer.alloc(16);
const SLASH = 0x2f;

/** The HELLO of a side that states no format: the asker, and an answerer that could not open its volume. */
function placeholderHello(): HelloRecord {
  return {
    type: 'HELLO', version: STREAM_VERSION, role: 'master', sharedUuid: ZERO_ID, uniqueUuid: ZERO_ID, generation: 0,
    blockSize: BLOCK_SIZE_MIN, hashAlgo: 'none', hashSize: 1, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
  };
}

/** An error message as ERROR text: printable ASCII (other characters as \xHH), at most the text bound. */
function errorText(message: string): string {
  const t = message.replace(/[^\x20-\x7e]/g, (c) => `\\x${(c.charCodeAt(0) & 0xff).toString(16).padStart(2, '0')}`);
  return t.length > STREAM_TEXT_SIZE_MAX ? `${t.slice(0, STREAM_TEXT_SIZE_MAX - 3)}...` : t;
}

function ventryOf(p: Buffer, r: EntryRecord): VentryRecord {
  const out: VentryRecord = {
    type: 'VENTRY', path: p, kind: r.kind, mode: r.mode, uid: r.uid, gid: r.gid, sizeBytes: BigInt(r.sizeBytes),
    nodeCount: BigInt(r.nodeCount), link: r.link, target: r.target, rdev: BigInt(r.rdev), contentDigest: r.contentDigest, digest: r.digest,
  };
  if (r.mtimeNs !== null) out.mtimeNs = r.mtimeNs;
  return out;
}

/** Options of the answering side. */
export interface ServeVerifyOptions {
  access: TreeAccess;
  /** A note for the far side's stderr (a mounted volume is read as it is on disk). */
  note?: (line: string) => void;
}

/**
 * Answer one verify session about the volume at `parentDir`: read the asker's questions from `input`, write the
 * answers to `out` (a writer that never waits for drain), until the asker's TERM.
 * @returns 0 after a clean end, 1 after an ERROR was sent (the volume could not be opened or read)
 * @throws DdfsError CORRUPT when the asker's stream is corrupt or breaks the session's order; the stream's errors
 */
export async function serveVerify(parentDir: string, input: RecordReader, out: RecordWriter, options: ServeVerifyOptions): Promise<number> {
  const first = (await input.next()).record;
  if (first.type !== 'HELLO') throw new DdfsError('CORRUPT', `verify session: expected HELLO, got ${first.type}`);
  const d = await input.next();
  const open = d.record;
  if (open.type !== 'VQUERY' || open.op !== 'open') throw new DdfsError('CORRUPT', `verify session: seq ${d.seq}: expected VQUERY open, got ${open.type}`);
  const fail = async (err: unknown): Promise<number> => {
    await out.send({ type: 'ERROR', reason: REASON.IO, message: errorText(err instanceof Error ? err.message : String(err)) });
    await out.end();
    return 1;
  };
  let tree: VolumeDigests;
  try {
    tree = await VolumeDigests.open(parentDir, { access: options.access, deep: open.deep === true, mtime: open.mtime !== false });
  } catch (err) {
    await out.send(placeholderHello());
    return fail(err);
  }
  try {
    const fmt = await tree.format();
    await out.send({ ...placeholderHello(), blockSize: fmt.blockSize, hashAlgo: fmt.hashName, hashSize: fmt.hashSize });
    if (tree.mountPoint !== null) options.note?.(`${tree.label} is mounted on ${tree.mountPoint}: read as it is on disk; exact only if nothing writes during the verify`);
    await out.send({ type: 'VDONE', count: 0n, more: false });
    // every session asks for the root first, which needs the whole walk: it starts now, beside the other side's
    tree.prefetch();
    /** The node list being read piece by piece: the next piece continues it without reading it again. */
    let cursor: { path: Buffer; next: number; it: AsyncIterator<Buffer>; pending: Buffer } | null = null;
    const closeCursor = async (): Promise<void> => {
      await cursor?.it.return?.();
      cursor = null;
    };
    try {
      for (;;) {
        const q = await input.next();
        const r = q.record;
        if (r.type === 'TERM') {
          await out.send({ type: 'TERM', reason: REASON.OK });
          await out.end();
          return 0;
        }
        if (r.type === 'ERROR') {
          await out.end();
          return 1;
        }
        if (r.type !== 'VQUERY' || r.op === 'open') throw new DdfsError('CORRUPT', `verify session: seq ${q.seq}: expected a VQUERY or TERM, got ${r.type === 'VQUERY' ? 'VQUERY open' : r.type}`);
        try {
          if (r.op === 'entry') {
            const e = await tree.entry(r.path);
            if (e !== null) await out.send(ventryOf(r.path, e));
            await out.send({ type: 'VDONE', count: e === null ? 0n : 1n, more: false });
          } else if (r.op === 'list') {
            const es = await tree.list(r.path);
            for (const e of es) await out.send(ventryOf(r.path.length === 0 ? e.name : Buffer.concat([r.path, Buffer.from([SLASH]), e.name]), e));
            await out.send({ type: 'VDONE', count: BigInt(es.length), more: false });
          } else if (r.op === 'findings') {
            const fs = await tree.findings();
            for (const f of fs) {
              await out.send(f.kind === 'CORRUPT'
                ? { type: 'VFINDING', kind: 'corrupt', path: f.path, blockIndex: BigInt(f.blockIndex) }
                : { type: 'VFINDING', kind: 'dangling', path: f.path, hash: f.hash });
            }
            await out.send({ type: 'VDONE', count: BigInt(fs.length), more: false });
          } else {
            const from = Number(r.firstIndex ?? 0n);
            const c = cursor as { path: Buffer; next: number; it: AsyncIterator<Buffer>; pending: Buffer } | null;
            if (c === null || !c.path.equals(r.path) || c.next !== from) {
              await closeCursor();
              cursor = { path: Buffer.from(r.path), next: 0, it: tree.nodes(r.path)[Symbol.asyncIterator](), pending: Buffer.alloc(0) };
            }
            const piece = await nodesPiece(cursor!, from, fmt.hashSize);
            await out.send({ type: 'FILE_NODES', firstIndex: BigInt(from), hashes: piece.hashes });
            await out.send({ type: 'VDONE', count: 1n, more: piece.more });
            if (!piece.more) await closeCursor();
          }
        } catch (err) {
          return await fail(err);
        }
      }
    } finally {
      await closeCursor();
    }
  } finally {
    await tree.close();
  }
}

/** Up to MIRROR_FILE_NODES_COUNT_MAX hashes of the node list from index `from` (skipping to it). */
async function nodesPiece(c: { next: number; it: AsyncIterator<Buffer>; pending: Buffer }, from: number, hashSize: number): Promise<{ hashes: Buffer[]; more: boolean }> {
  const hashes: Buffer[] = [];
  let ended = false;
  while (hashes.length < MIRROR_FILE_NODES_COUNT_MAX) {
    if (c.pending.length === 0) {
      const n = await c.it.next();
      if (n.done) {
        ended = true;
        break;
      }
      c.pending = n.value;
    }
    const h = c.pending.subarray(0, hashSize);
    c.pending = c.pending.subarray(hashSize);
    if (c.next++ >= from) hashes.push(Buffer.from(h));
  }
  if (!ended && c.pending.length === 0) {
    const n = await c.it.next();
    if (n.done) ended = true;
    else c.pending = n.value;
  }
  return { hashes, more: !ended };
}

/** Options of the asking side. */
export interface StreamDigestsOptions {
  deep: boolean;
  mtime: boolean;
}

/**
 * The DigestTree of a volume on the far side of a verify session (`label`: the endpoint, for messages).
 * Questions are serialized: one is open at a time.
 */
export class StreamDigests implements DigestTree {
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(readonly label: string, private readonly input: RecordReader, private readonly out: RecordWriter, private readonly fmt: TreeFormat) {}

  /**
   * Start the session: send HELLO and VQUERY open, read the answerer's HELLO and its VDONE.
   * @throws DdfsError IO (the far side could not open its volume: its message), CORRUPT (a broken session)
   */
  static async open(label: string, input: RecordReader, out: RecordWriter, options: StreamDigestsOptions): Promise<StreamDigests> {
    await out.send(placeholderHello());
    await out.send({ type: 'VQUERY', op: 'open', path: Buffer.alloc(0), deep: options.deep, mtime: options.mtime });
    const h = (await input.next()).record;
    if (h.type !== 'HELLO') throw new DdfsError('CORRUPT', `${label}: verify session: expected HELLO, got ${h.type}`);
    const t = new StreamDigests(label, input, out, { blockSize: h.blockSize, hashName: h.hashAlgo as HashName, hashSize: h.hashSize });
    await t.expect('VDONE');
    return t;
  }

  async format(): Promise<TreeFormat> {
    return this.fmt;
  }

  entry(p: Buffer): Promise<EntryRecord | null> {
    return this.ask({ type: 'VQUERY', op: 'entry', path: p }, async () => {
      const rs = await this.entries();
      return rs.length === 0 ? null : rs[0]!;
    });
  }

  list(p: Buffer): Promise<EntryRecord[]> {
    return this.ask({ type: 'VQUERY', op: 'list', path: p }, () => this.entries());
  }

  async *nodes(p: Buffer): AsyncGenerator<Buffer> {
    let from = 0n;
    for (;;) {
      const piece = await this.ask({ type: 'VQUERY', op: 'nodes', path: p, firstIndex: from }, async () => {
        const n = await this.expect('FILE_NODES');
        if (n.firstIndex !== from) throw this.broken(`FILE_NODES from node ${n.firstIndex}, asked from ${from}`);
        const done = await this.expect('VDONE');
        return { hashes: n.hashes, more: done.more };
      });
      from += BigInt(piece.hashes.length);
      if (piece.hashes.length > 0) yield Buffer.concat(piece.hashes);
      if (!piece.more) return;
      if (piece.hashes.length === 0) throw this.broken('an empty FILE_NODES piece that says more follows');
    }
  }

  findings(): Promise<IntegrityFinding[]> {
    return this.ask({ type: 'VQUERY', op: 'findings', path: Buffer.alloc(0) }, async () => {
      const out: IntegrityFinding[] = [];
      for (;;) {
        const r = await this.nextRecord();
        if (r.type === 'VDONE') return out;
        if (r.type !== 'VFINDING') throw this.broken(`expected VFINDING or VDONE, got ${r.type}`);
        if (r.kind === 'corrupt' && r.blockIndex !== undefined) out.push({ kind: 'CORRUPT', path: r.path, blockIndex: Number(r.blockIndex) });
        else if (r.kind === 'dangling' && r.hash !== undefined) out.push({ kind: 'DANGLING', path: r.path, hash: r.hash });
        else throw this.broken(`a VFINDING ${r.kind} without its ${r.kind === 'corrupt' ? 'block_index' : 'hash'}`);
      }
    });
  }

  /** End the session (TERM) and read the answerer's TERM. Never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.queue.catch(() => undefined);
      await this.out.send({ type: 'TERM', reason: REASON.OK });
      await this.out.end();
      await this.input.next();
    } catch {
      // the far side is gone already: its exit status says why
    }
    await this.input.close().catch(() => undefined);
  }

  /** Send `q`, then read its answer with `answer`, after every earlier question was answered. */
  private ask<T>(q: RecordInput, answer: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      await this.out.send(q);
      return answer();
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async entries(): Promise<EntryRecord[]> {
    const out: EntryRecord[] = [];
    for (;;) {
      const r = await this.nextRecord();
      if (r.type === 'VDONE') {
        if (r.count !== BigInt(out.length)) throw this.broken(`VDONE counts ${r.count} entries, ${out.length} came`);
        return out;
      }
      if (r.type !== 'VENTRY') throw this.broken(`expected VENTRY or VDONE, got ${r.type}`);
      out.push(this.recordOf(r));
    }
  }

  private recordOf(r: VentryRecord): EntryRecord {
    const num = (v: bigint, what: string): number => {
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.broken(`${what} ${v} is out of range`);
      return Number(v);
    };
    return {
      name: Buffer.from(r.path.subarray(r.path.lastIndexOf(SLASH) + 1)),
      kind: r.kind, mode: r.mode, uid: r.uid, gid: r.gid, mtimeNs: r.mtimeNs ?? null,
      sizeBytes: num(r.sizeBytes, 'size'), nodeCount: num(r.nodeCount, 'node count'), link: r.link, target: r.target,
      rdev: num(r.rdev, 'rdev'), contentDigest: r.contentDigest, digest: r.digest,
    };
  }

  private async expect<T extends MirrorRecord['type']>(type: T): Promise<Extract<MirrorRecord, { type: T }>> {
    const r = await this.nextRecord();
    if (r.type !== type) throw this.broken(`expected ${type}, got ${r.type}`);
    return r as Extract<MirrorRecord, { type: T }>;
  }

  /** The next record; the far side's ERROR becomes its message. */
  private async nextRecord(): Promise<MirrorRecord> {
    const d = await this.input.next();
    const r = d.record;
    if (r.type === 'ERROR') throw new DdfsError('IO', `${this.label}: ${r.message ?? `the far side failed (reason ${r.reason})`}`, { reason: r.reason, remote: true });
    if (r.type === 'UNKNOWN') return this.nextRecord();
    return r;
  }

  private broken(what: string): DdfsError {
    return new DdfsError('CORRUPT', `${this.label}: verify session: ${what}`);
  }
}
