/**
 * The transports of a pass (mirroring spec §4.15): both sides of `copy` in one process over an in-memory duplex,
 * one side over a pair of Node streams (a child `mirrorddumbfs serve`, ssh's stdio), and `init-slave`.
 * The same runMaster/runSlave code runs on every transport.
 *
 * Invariants: when one side fails, the streams are destroyed so the other side stops too; the slave's error (the
 * one that explains a refusal) is preferred in the report.
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { readVolumeConfig } from '../volume/volume.js';
import { listNames } from '../io/mirror_fs.js';
import { ROOT_DIRECTORY } from '../format/layout.js';
import { pathBytes } from '../util/path_text.js';
import { RecordReader, RecordWriter } from './channel.js';
import type { TreeAccess } from './digest.js';
import { refuseMounted, runMaster, type MasterOptions, type PassSummary } from './pass_master.js';
import { runSlave, type SlaveHooks, type SlaveSummary } from './pass_slave.js';
import { lineageIdOf, masterState, readMirrorState, slaveStateFor, writeMirrorState } from './state.js';

/** Options of a copy. */
export interface CopyOptions {
  access: TreeAccess;
  allowMassDelete?: boolean;
  checkpointRecordCount?: number;
  progress?: MasterOptions['progress'];
  report?: MasterOptions['report'];
  /** Test hook: sees every master record's bytes (cut the stream by throwing). */
  onMasterBytes?: RecordWriter['onBytes'];
  /** Test hooks of the slave side (a simulated kill at an apply step, spec §5 scenario 9). */
  slaveHooks?: SlaveHooks;
}

/**
 * One pass from the local master `src` to the local slave `dst`, both sides in this process.
 * @throws DdfsError of either side (the slave's when both fail)
 */
export async function copyLocal(src: string, dst: string, options: CopyOptions): Promise<{ master: PassSummary; slave: SlaveSummary }> {
  refuseMounted(src);
  refuseMounted(dst);
  const m2s = new PassThrough();
  const s2m = new PassThrough();
  const masterOut = await RecordWriter.create(m2s, true);
  masterOut.onBytes = options.onMasterBytes ?? null;
  const slaveOut = await RecordWriter.create(s2m, false);
  const masterIn = await RecordReader.create(s2m);
  const slaveIn = await RecordReader.create(m2s);
  // a side that fails ends its own direction (the peer reads what was sent, then the end) and destroys the other, so
  // a peer waiting for room to write (or writing later) fails at once instead of waiting for a reader that is gone
  const endOf = (out: PassThrough, other: PassThrough) => (err: unknown): never => {
    if (!out.writableEnded) out.end();
    other.destroy();
    throw err;
  };
  const results = await Promise.allSettled([
    runMaster(src, masterOut, { access: options.access, input: masterIn, checkpointRecordCount: options.checkpointRecordCount, progress: options.progress, report: options.report }).catch(endOf(m2s, s2m)),
    runSlave(dst, slaveIn, { access: options.access, output: slaveOut, allowMassDelete: options.allowMassDelete, hooks: options.slaveHooks }).catch(endOf(s2m, m2s)),
  ]);
  const [m, s] = results;
  if (s.status === 'rejected') throw s.reason;
  if (m.status === 'rejected') throw m.reason;
  return { master: m.value, slave: s.value };
}

/** The master side over a stream pair (the far side is `serve` or `write`). */
export async function masterOverStreams(src: string, out: Writable, input: Readable | null, options: CopyOptions): Promise<PassSummary> {
  const writer = await RecordWriter.create(out, true);
  writer.onBytes = options.onMasterBytes ?? null;
  const reader = input === null ? null : await RecordReader.create(input);
  return runMaster(src, writer, { access: options.access, input: reader, checkpointRecordCount: options.checkpointRecordCount, progress: options.progress, report: options.report });
}

/** A slave's summary with what its streams carried (the summary line of `write` and of a pull). */
export interface SlaveStreamSummary extends SlaveSummary {
  /** Bytes read and written on the streams. */
  bytesOnWire: number;
  elapsedMs: number;
}

/** The slave side over a stream pair (`serve`, or `write` with out = null). */
export async function slaveOverStreams(dst: string, input: Readable, out: Writable | null, options: CopyOptions): Promise<SlaveStreamSummary> {
  const t0 = Date.now();
  const reader = await RecordReader.create(input);
  const writer = out === null ? null : await RecordWriter.create(out, false);
  const s = await runSlave(dst, reader, { access: options.access, output: writer, allowMassDelete: options.allowMassDelete });
  return { ...s, bytesOnWire: reader.bytes + (writer?.counters.bytes ?? 0), elapsedMs: Date.now() - t0 };
}

/** The slave's summary as one line (issue 7 item 9, as the slave sees a pass). */
export function renderSlaveSummary(s: SlaveStreamSummary): string {
  return `${s.blocksReceived} blocks received, ${s.filesApplied} files applied, ${s.deleted} entries deleted, ${s.bytesOnWire} bytes on the wire, ${(s.elapsedMs / 1000).toFixed(1)} s`;
}

/** What a slave needs of its master to bind to it (what `serve identity` prints as JSON). */
export interface MasterIdentity {
  sharedUuid: string;
  lineage: number;
  generation: number;
  blockSize: number;
  hashName: string;
  /** The master's lineage id (§4.14); absent from older peers: the initial lineage (the shared uuid). */
  lineageId?: string;
}

/**
 * The identity of the master volume `master` (its uuids are made on first use).
 * @throws DdfsError NOT_FOUND/BAD_CONFIG (not a volume), INVALID (it is a slave)
 */
export async function masterIdentity(master: string): Promise<MasterIdentity> {
  const cm = await readVolumeConfig(master);
  const ms = masterState(master);
  return { sharedUuid: ms.sharedUuid, lineage: ms.lineage, generation: ms.generation, blockSize: cm.blockSize, hashName: cm.hashName, lineageId: lineageIdOf(ms) };
}

/**
 * Bind the empty volume `slave` to the master of identity `master` (described by `label` in messages).
 * @throws DdfsError INVALID (not empty, another block size or hash, already bound), MOUNTED
 */
export async function bindSlave(slave: string, master: MasterIdentity, label: string): Promise<{ sharedUuid: string; uniqueUuid: string }> {
  refuseMounted(slave);
  const cs = await readVolumeConfig(slave);
  if (cs.blockSize !== master.blockSize) throw new DdfsError('INVALID', `${slave}: block size ${cs.blockSize}, the master's is ${master.blockSize}: a replica needs the same block size`, { path: slave });
  if (cs.hashName !== master.hashName) throw new DdfsError('INVALID', `${slave}: hash ${cs.hashName}, the master's is ${master.hashName}: a replica needs the same hash`, { path: slave });
  const existing = readMirrorState(slave);
  if (existing !== null) throw new DdfsError('INVALID', `${slave}: already a ${existing.role} of ${existing.sharedUuid}`, { path: slave });
  const names = listNames(pathBytes(path.join(path.resolve(slave), ROOT_DIRECTORY))).filter((n) => n.toString('latin1') !== '.ddumbfs');
  if (names.length > 0) throw new DdfsError('INVALID', `${slave}: not an empty volume (${names.length} entries in ${ROOT_DIRECTORY}): a slave starts empty`, { path: slave });
  const ss = slaveStateFor({ version: 1, sharedUuid: master.sharedUuid, uniqueUuid: master.sharedUuid, role: 'master', lineage: master.lineage, generation: master.generation, claim: null, pass: null, lineageId: master.lineageId });
  writeMirrorState(slave, ss);
  void label;
  return { sharedUuid: ss.sharedUuid, uniqueUuid: ss.uniqueUuid };
}

/**
 * Bind the empty volume `slave` to `master`'s lineage (mirrorddumbfs init-slave), both local.
 * @throws as masterIdentity and bindSlave; INVALID when both are the same volume
 */
export async function initSlave(slave: string, master: string): Promise<{ sharedUuid: string; uniqueUuid: string }> {
  refuseMounted(slave);
  if (path.resolve(slave) === path.resolve(master)) throw new DdfsError('INVALID', `${slave}: the slave and the master are the same volume`, { path: slave });
  await readVolumeConfig(slave);
  return bindSlave(slave, await masterIdentity(master), master);
}
