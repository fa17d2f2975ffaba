/**
 * In-process mirror passes for the model and adversarial tests (mirroring spec §4.18, §5): both sides of a pass run
 * in this process (runMaster / runSlave, the product's code) over two in-memory streams that a test can cut at any
 * byte offset of either direction, with every record's byte offset recorded; and the checks the tests share:
 * invariant 6 on a volume (every node's hash is in the index at that address and the block hashes to it), the
 * distinct hashes a slave lacks (invariant 9), every regular file read back through the product's reader.
 *
 * A cut stream behaves like a connection that dies: the reader sees the bytes before the cut, then the end; whatever
 * the writer sends after the cut is lost. A cut never throws inside the writer, so both sides fail as they would on a
 * broken connection (a premature end, an answer that never comes).
 */
import { PassThrough, Writable } from 'node:stream';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nodeTreeAccess } from '../../src/cli/mirrorddumbfs.js';
import { ADDR_ZERO } from '../../src/limits.js';
import { decodeAddress } from '../../src/format/node.js';
import { fileDevices } from '../../src/io/device.js';
import { LocalFrames, RecordReader, RecordWriter } from '../../src/mirror/channel.js';
import type { TreeAccess } from '../../src/mirror/digest.js';
import { runMaster, type PassSummary } from '../../src/mirror/pass_master.js';
import { runSlave, type SlaveHooks, type SlaveSummary } from '../../src/mirror/pass_slave.js';
import { openPassVolume, type PassVolume } from '../../src/mirror/pass_volume.js';
import type { RecordInput } from '../../src/mirror/stream_codec.js';
import { BlockStore } from '../../src/store/block_store.js';
import { UfsNodeFile } from '../../src/ufs/ufs_reader.js';
import { Volume, readVolumeConfig } from '../../src/volume/volume.js';

/** Where one record of a direction lies in its byte stream. */
export interface RecordAt {
  type: RecordInput['type'];
  /** Offset of the record's first byte (the first record's 8-byte preamble counts as part of it). */
  offset: number;
  sizeBytes: number;
}

/** What one direction carried. */
export interface DirectionLog {
  records: RecordAt[];
  /** Bytes the writer produced (before any cut). */
  producedBytes: number;
  /** Bytes the reader was given (at most the cut). */
  deliveredBytes: number;
  /** Every record's bytes as the writer produced them (small test passes only). */
  chunks: Buffer[];
}

export interface PassOptions {
  /** Cut the master→slave stream after this many bytes. */
  cutMasterToSlave?: number;
  /** Cut the slave→master stream after this many bytes. */
  cutSlaveToMaster?: number;
  checkpointRecordCount?: number;
  allowMassDelete?: boolean;
  /** Sees every record the master sends (before it is written). */
  onMasterRecord?: (record: RecordInput) => void;
  /** Awaited before each record of the slave reaches the master (a test changes the master there). */
  beforeSlaveRecord?: (type: RecordInput['type']) => Promise<void>;
  /** The metadata seam of each side (default nodeTreeAccess): a test counts the lstat calls through it. */
  masterAccess?: TreeAccess;
  slaveAccess?: TreeAccess;
  /** The master's findings, one line each (MasterOptions.report). */
  report?: (line: string) => void;
  /** The slave's test hooks (a hook that throws kills the slave: SlaveHooks). */
  slaveHooks?: SlaveHooks;
  /** Called with the master's opened volume before the pass (a test replaces one of its methods). */
  masterVolume?: (v: PassVolume) => void;
  /**
   * Both directions as copyLocal's in-memory pipes (object mode, LocalFrames: frames without CRC32C, blocks read and
   * hashed in their BLOCKS frame, runs of any length): no byte log of the master's direction (m2s stays empty), and
   * no cut of either direction.
   */
  localFrames?: boolean;
}

export interface PassResult {
  master: PassSummary | null;
  slave: SlaveSummary | null;
  masterError: unknown;
  slaveError: unknown;
  m2s: DirectionLog;
  s2m: DirectionLog;
}

/** A Writable forwarding to `to` until `cutAt` bytes went through; it drops the rest and ends `to` at the cut. */
class CutWritable extends Writable {
  delivered = 0;
  private cut = false;
  /** Types of the records written, in order (a RecordWriter writes one record per write). */
  readonly types: Array<RecordInput['type']> = [];
  constructor(private readonly to: PassThrough, private readonly cutAt: number | undefined, private readonly before?: (type: RecordInput['type']) => Promise<void>) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const type = this.types.shift();
    if (this.before !== undefined && type !== undefined) {
      this.before(type).then(() => this.forward(chunk, done), (err: unknown) => done(err as Error));
      return;
    }
    this.forward(chunk, done);
  }

  private forward(chunk: Buffer, done: (err?: Error | null) => void): void {
    if (this.cut || this.to.destroyed || this.to.writableEnded) return done();
    let piece = chunk;
    if (this.cutAt !== undefined && this.delivered + chunk.length >= this.cutAt) {
      piece = chunk.subarray(0, this.cutAt - this.delivered);
      this.cut = true;
    }
    this.delivered += piece.length;
    if (piece.length > 0) this.to.write(piece);
    if (this.cut) this.to.end();
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.to.writableEnded && !this.to.destroyed) this.to.end();
    done();
  }
}

function logOf(writer: RecordWriter, cut?: CutWritable, also?: (record: RecordInput) => void): DirectionLog {
  const log: DirectionLog = { records: [], producedBytes: 0, deliveredBytes: 0, chunks: [] };
  writer.onBytes = (bytes, record) => {
    also?.(record);
    cut?.types.push(record.type);
    log.records.push({ type: record.type, offset: log.producedBytes, sizeBytes: bytes.length });
    log.chunks.push(bytes);
    log.producedBytes += bytes.length;
  };
  return log;
}

/** Run `fn` on the volume at `p` opened for a pass as mirrorddumbfs opens it (under the volume lock), then close it. */
export async function onVolume<T>(p: string, readOnly: boolean, fn: (v: PassVolume) => Promise<T>): Promise<T> {
  const v = await openPassVolume(p, { tool: 'mirrorddumbfs', readOnly });
  try {
    return await fn(v);
  } finally {
    await v.close();
  }
}

/**
 * One two-way pass from the local master to the local slave in this process, either direction cut at a byte offset.
 * Never throws for a failed side: the errors are in the result.
 */
export async function twoWayPass(master: string, slave: string, options: PassOptions = {}): Promise<PassResult> {
  const frames = options.localFrames ? new LocalFrames() : undefined;
  const m2s = frames ? new PassThrough({ readableObjectMode: true }) : new PassThrough();
  const s2m = frames ? new PassThrough({ readableObjectMode: true }) : new PassThrough();
  const m2sCut = new CutWritable(m2s, frames ? undefined : options.cutMasterToSlave);
  const s2mCut = new CutWritable(s2m, frames ? undefined : options.cutSlaveToMaster, options.beforeSlaveRecord);
  // with frames the writers write the pipes themselves (each frame one chunk, as copyLocal)
  const masterOut = await RecordWriter.create(frames ? m2s : m2sCut, true, { localFrames: frames });
  const slaveOut = await RecordWriter.create(frames ? s2m : s2mCut, false, { localFrames: frames });
  const m2sLog: DirectionLog = frames ? { records: [], chunks: [], producedBytes: 0, deliveredBytes: 0 } : logOf(masterOut, undefined, options.onMasterRecord);
  const s2mLog = frames ? { records: [], chunks: [], producedBytes: 0, deliveredBytes: 0 } : logOf(slaveOut, s2mCut);
  const masterIn = await RecordReader.create(s2m, { localFrames: frames });
  const slaveIn = await RecordReader.create(m2s, { localFrames: frames });
  // as copyLocal: a failed side ends its direction and destroys the other, so its peer stops at once
  const endOf = (cut: Writable, other: PassThrough) => (err: unknown): never => {
    if (!cut.writableEnded) cut.end();
    other.destroy();
    throw err;
  };
  const [m, s] = await Promise.allSettled([
    onVolume(master, true, (v) => {
      options.masterVolume?.(v);
      return runMaster(v, masterOut, { access: options.masterAccess ?? nodeTreeAccess, input: masterIn, checkpointRecordCount: options.checkpointRecordCount, report: options.report, ...(frames ? { frameRunBlockCountMin: 1 } : {}) });
    }).catch(endOf(frames ? m2s : m2sCut, s2m)),
    onVolume(slave, false, (v) => runSlave(v, slaveIn, { access: options.slaveAccess ?? nodeTreeAccess, output: slaveOut, allowMassDelete: options.allowMassDelete ?? true, hooks: options.slaveHooks })).catch(endOf(frames ? s2m : s2mCut, m2s)),
  ]);
  const finish = (log: DirectionLog, cut: CutWritable): DirectionLog => {
    log.deliveredBytes = cut.delivered;
    return log;
  };
  return {
    master: m.status === 'fulfilled' ? m.value : null,
    slave: s.status === 'fulfilled' ? s.value : null,
    masterError: m.status === 'rejected' ? m.reason : null,
    slaveError: s.status === 'rejected' ? s.reason : null,
    m2s: finish(m2sLog, m2sCut),
    s2m: finish(s2mLog, s2mCut),
  };
}

/** The one-way stream of `master` (what `mirrorddumbfs read` writes), its records logged. */
export async function readOneWay(master: string, checkpointRecordCount?: number): Promise<{ bytes: Buffer; summary: PassSummary; log: DirectionLog }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const writer = await RecordWriter.create(out, true);
  const log = logOf(writer);
  const summary = await onVolume(master, true, (v) => runMaster(v, writer, { access: nodeTreeAccess, input: null, checkpointRecordCount }));
  log.deliveredBytes = log.producedBytes;
  return { bytes: Buffer.concat(chunks), summary, log };
}

/** Apply a one-way stream (`mirrorddumbfs write`), cut after `cutAt` bytes when given. @throws the slave's error */
export async function writeOneWay(slave: string, bytes: Buffer, cutAt?: number): Promise<SlaveSummary> {
  const s = new PassThrough();
  s.end(cutAt === undefined ? bytes : bytes.subarray(0, cutAt));
  const reader = await RecordReader.create(s);
  return onVolume(slave, false, (v) => runSlave(v, reader, { access: nodeTreeAccess, output: null, allowMassDelete: true }));
}

const SLASH = Buffer.from('/');

/** Every entry under ddfsroot (outside .ddumbfs, a directory before its children, names sorted bytewise). */
export function walkRoot(parent: string): Array<{ rel: Buffer; st: fs.Stats }> {
  const root = Buffer.from(path.join(parent, 'ddfsroot'));
  const out: Array<{ rel: Buffer; st: fs.Stats }> = [];
  const visit = (rel: Buffer): void => {
    const dir = rel.length === 0 ? root : Buffer.concat([root, SLASH, rel]);
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      if (rel.length === 0 && name.toString('latin1') === '.ddumbfs') continue;
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
      const st = fs.lstatSync(Buffer.concat([root, SLASH, childRel]));
      out.push({ rel: childRel, st });
      if (st.isDirectory()) visit(childRel);
    }
  };
  visit(Buffer.alloc(0));
  return out;
}

/**
 * A TreeAccess (the product's nodeTreeAccess) whose first lstat runs `gate` first and waits for it: a side of a pass
 * built on it holds back its first answer (a slave's first DIGESTA) while the test changes the master's tree.
 * `opened` turns true once the gate has run.
 */
export function gatedAccess(gate: () => Promise<void>): TreeAccess & { opened: boolean } {
  let pending: Promise<void> | null = null;
  const a = {
    opened: false,
    async lstat(p: Buffer) {
      pending ??= gate().then(() => {
        a.opened = true;
      });
      await pending;
      return nodeTreeAccess.lstat(p);
    },
    readlink: (p: Buffer) => nodeTreeAccess.readlink(p),
  };
  return a;
}

/** Every regular file's logical bytes, read through the volume's own reader (UfsFile), keyed by latin1 path. */
export async function readAllFiles(parent: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const v = await Volume.open(parent, { readOnly: true });
  try {
    for (const { rel, st } of walkRoot(parent)) {
      if (!st.isFile()) continue;
      const f = await v.openTreeFile(rel, { readOnly: true });
      try {
        out.set(rel.toString('latin1'), Buffer.from(await f.read(0, f.size)));
      } finally {
        await f.close();
      }
    }
  } finally {
    await v.close();
  }
  return out;
}

/** Invariant 6 of §4.18 (one checker for every mirror test: test/helpers/slave_check.ts). */
export { referenceProblems } from './slave_check.js';

/** The distinct non-zero hashes the files of `master` reference (latin1 keys), holes and zero blocks excluded. */
export async function referencedHashes(parent: string): Promise<Set<string>> {
  const cfg = await readVolumeConfig(parent);
  const store = await BlockStore.open(parent, cfg, { readOnly: true });
  const out = new Set<string>();
  try {
    for (const { rel, st } of walkRoot(parent)) {
      if (!st.isFile()) continue;
      const f = await UfsNodeFile.open(fileDevices, Buffer.concat([Buffer.from(path.join(parent, 'ddfsroot')), SLASH, rel]), cfg.nodeSize, { strict: true });
      try {
        const count = Math.min(f.nodeCount, Math.ceil(f.size / cfg.blockSize));
        const nodes = count > 0 ? await f.readNodes(0, count) : Buffer.alloc(0);
        for (let i = 0; i < count; i++) {
          const at = i * cfg.nodeSize;
          if (decodeAddress(nodes, at, cfg.addrSize) === ADDR_ZERO) continue;
          const h = nodes.subarray(at + cfg.addrSize, at + cfg.nodeSize);
          if (!store.isZeroHash(h)) out.add(h.toString('latin1'));
        }
      } finally {
        await f.close();
      }
    }
  } finally {
    await store.close();
  }
  return out;
}

/** How many of `hashes` (latin1 keys) the index of `parent` does not hold: the blocks a pass must send (inv. 9). */
export async function lackedCount(parent: string, hashes: Set<string>): Promise<number> {
  const cfg = await readVolumeConfig(parent);
  const store = await BlockStore.open(parent, cfg, { readOnly: true });
  try {
    let n = 0;
    for (const k of hashes) {
      const r = store.index.nodes.lookup(Buffer.from(k, 'latin1'), 0);
      if (!r.found || r.address < 2) n++;
    }
    return n;
  } finally {
    await store.close();
  }
}
