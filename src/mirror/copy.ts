/**
 * The transports of a pass (mirroring spec §4.15): both sides of `copy` in one process over an in-memory duplex,
 * one side over a pair of Node streams (a child `mirrorddumbfs serve`, ssh's stdio), and `init-slave`.
 * The same runMaster/runSlave code runs on every transport.
 *
 * Every volume is an endpoint (issue 7 item 0): an unmounted one is opened here under the volume lock
 * (pass_volume.ts); one whose lock a running ddumbfs daemon holds is served by that daemon through its control
 * socket (control.ts), the socket carrying that side's streams. Any other holder of the lock refuses the pass with
 * one line naming it; a volume mounted by a daemon that holds no lock (ddumbfs 1.1) is refused too.
 *
 * Invariants: when one side fails, the streams are destroyed so the other side stops too; the slave's error (the
 * one that explains a refusal) is preferred in the report; every volume opened here is closed and its lock
 * released, whatever happened.
 */
import { PassThrough, type Readable, type Transform, type Writable } from 'node:stream';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { MIRROR_LOCAL_PIPE_RECORD_COUNT, MIRROR_LOCAL_PIPE_SIZE_BYTES } from '../limits.js';
import { mountPointOf, readVolumeConfig } from '../volume/volume.js';
import { takeVolumeLock } from '../volume/lock.js';
import { listNames } from '../io/mirror_fs.js';
import { ROOT_DIRECTORY } from '../format/layout.js';
import { pathBytes } from '../util/path_text.js';
import { LocalFrames, RecordReader, RecordWriter } from './channel.js';
import { openControlPass, resultSummary, type ControlPass } from './control.js';
import type { TreeAccess } from './digest.js';
import { refuseMounted, runMaster, type MasterOptions, type PassSummary } from './pass_master.js';
import { runSlave, type SlaveHooks, type SlaveSummary } from './pass_slave.js';
import { openPassVolume, type PassVolume } from './pass_volume.js';
import { lineageIdOf, masterState, masterUuidOf, readMirrorState, slaveStateFor, sourceState, writeMirrorState } from './state.js';

/**
 * Nice value of the hash threads of a copy with both sides in this process (CopyOptions.hashNice): the process is
 * the copy, so its hash threads are not niced below its other threads.
 */
const COPY_HASH_NICE = 0;
/** The tool name mirrorddumbfs takes the volume lock as. */
const LOCK_TOOL = 'mirrorddumbfs';
/** The tool name the daemon takes the volume lock as (fs/mount.ts). */
const DAEMON_TOOL = 'ddumbfs';

/** Options of a copy. */
export interface CopyOptions {
  access: TreeAccess;
  allowMassDelete?: boolean;
  checkpointRecordCount?: number;
  /** The master side runs a content pass whatever the journal allows (MasterOptions.contentPass, `copy --content`). */
  contentPass?: boolean;
  progress?: MasterOptions['progress'];
  report?: MasterOptions['report'];
  /** Test hook: sees every master record's bytes (cut the stream by throwing). */
  onMasterBytes?: RecordWriter['onBytes'];
  /** Test hooks of the slave side (a simulated kill at an apply step, spec §5 scenario 9). */
  slaveHooks?: SlaveHooks;
  /** The destination as the user gave it, for the master's replica record (default: DST of copyLocal). */
  peerLabel?: string;
  /** Journal retention caps of the master side (tests; default replicas.ts DEFAULT_RETENTION). */
  retention?: MasterOptions['retention'];
  /**
   * copyLocal: the pipes between the sides (master to slave, slave to master), default a PassThrough each; a stream
   * passes link meters (mirror/link_meter.ts) to watch the link and apply -b.
   */
  pipes?: () => { m2s: Transform; s2m: Transform };
  /**
   * Set by copyLocal over its own in-memory pipes: the frames both sides' writers hand to the other side's reader
   * (their CRC32C is computed once, by the encoder; channel.ts LocalFrames). Never set across a process boundary.
   */
  localFrames?: LocalFrames;
  /**
   * Hash threads of each side (default: one per CPU). copyLocal gives each of its two sides half the CPUs: both pools
   * live in this process, and twice as many hash threads as CPUs only take turns on them.
   */
  hashThreads?: number;
  /**
   * Nice value of those hash threads (default HASH_WORKER_NICE, as in a daemon, whose FUSE ops must not wait for a
   * pass). copyLocal with both sides here gives 0: the process is the copy, and its hash threads are as much its
   * critical path as its JS thread.
   */
  hashNice?: number;
}

/** A volume of a pass: opened here, or served by its daemon. */
type Endpoint = { kind: 'local'; vol: PassVolume } | { kind: 'daemon'; label: string };

/**
 * Open `p` for a pass: under the volume lock, or through its daemon when a running ddumbfs holds the lock. A master
 * side asked for a content pass (`contentPass`) takes no seal census (openPassVolume `sealCensus`).
 * @throws DdfsError LOCKED (another tool holds it), MOUNTED (mounted by a daemon without the lock), as openPassVolume
 */
async function openEndpoint(p: string, readOnly: boolean, contentPass = false): Promise<Endpoint> {
  let vol: PassVolume;
  try {
    // a master side only reads the volume: its lock is shared with other master passes (never with a writer); a
    // volume never mirrored gets its master state (new uuids) while nobody else can start, so two first passes agree
    const shared = readOnly ? { underGate: () => { if (readMirrorState(p) === null) masterState(p); } } : undefined;
    vol = await openPassVolume(p, { tool: LOCK_TOOL, readOnly, sealCensus: !contentPass, ...(shared !== undefined ? { shared } : {}) });
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'LOCKED' && err.data.tool === DAEMON_TOOL) return { kind: 'daemon', label: p };
    throw err;
  }
  const mp = mountPointOf(vol.parentDir);
  if (mp !== null) {
    await vol.close();
    throw new DdfsError('MOUNTED', `${p}: is mounted on ${mp} by a daemon that does not hold the volume lock (ddumbfs 1.1?): unmount it first`, { path: p });
  }
  return { kind: 'local', vol };
}

async function closeEndpoint(e: Endpoint | null): Promise<void> {
  if (e?.kind === 'local') await e.vol.close();
}

/**
 * The daemon's side of a pass of the mounted `label`.
 * @throws DdfsError NOT_FOUND in one line when its daemon serves no control socket (mounted -o ro)
 */
async function controlPass(label: string, request: Parameters<typeof openControlPass>[1], onLine?: Parameters<typeof openControlPass>[2]): Promise<ControlPass> {
  try {
    return await openControlPass(label, request, onLine);
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'NOT_FOUND') {
      throw new DdfsError('NOT_FOUND', `${label}: mounted, and its daemon serves no control socket (mounted -o ro?): unmount it or mount it writable`, { path: label }, err);
    }
    throw err;
  }
}

/** The daemon's report and progress lines, to the options' callbacks. */
function lineSink(options: CopyOptions) {
  return (kind: 'progress' | 'report', line: string): void => (kind === 'report' ? options.report : options.progress)?.(line);
}

function masterOptions(options: CopyOptions, input: RecordReader | null): MasterOptions {
  return { access: options.access, input, checkpointRecordCount: options.checkpointRecordCount, progress: options.progress, report: options.report, peerLabel: options.peerLabel, retention: options.retention, hashThreads: options.hashThreads, hashNice: options.hashNice, contentPass: options.contentPass };
}

/**
 * Run the master side on `src` with `out` (its records) and `input` (the slave's, null for one way).
 * Through a daemon, its DDMS stream is relayed to `out` and `input` to it.
 */
async function masterSide(src: Endpoint, out: Writable, input: Readable | null, options: CopyOptions): Promise<PassSummary> {
  if (src.kind === 'local') {
    const local = options.localFrames === undefined ? {} : { localFrames: options.localFrames };
    const writer = await RecordWriter.create(out, true, local);
    writer.onBytes = options.onMasterBytes ?? null;
    const reader = input === null ? null : await RecordReader.create(input, local);
    return runMaster(src.vol, writer, masterOptions(options, reader));
  }
  const ctl = await controlPass(src.label, { role: 'master', twoWay: input !== null, checkpointRecordCount: options.checkpointRecordCount, contentPass: options.contentPass === true, ...(options.peerLabel !== undefined ? { peerLabel: options.peerLabel } : {}) }, lineSink(options));
  return relay(ctl, out, input).then((r) => resultSummary(r, 'master'));
}

/** Run the slave side on `dst` reading `input`, answering on `out` (null for one way); with the bytes both carried. */
async function slaveSide(dst: Endpoint, input: Readable, out: Writable | null, options: CopyOptions): Promise<SlaveSummary & { bytesOnWire: number }> {
  if (dst.kind === 'local') {
    const local = options.localFrames === undefined ? {} : { localFrames: options.localFrames };
    const reader = await RecordReader.create(input, local);
    const writer = out === null ? null : await RecordWriter.create(out, false, local);
    const s = await runSlave(dst.vol, reader, { access: options.access, output: writer, allowMassDelete: options.allowMassDelete, hooks: options.slaveHooks, hashThreads: options.hashThreads, hashNice: options.hashNice });
    return { ...s, bytesOnWire: reader.bytes + (writer?.counters.bytes ?? 0) };
  }
  const ctl = await controlPass(dst.label, { role: 'slave', twoWay: out !== null, allowMassDelete: options.allowMassDelete });
  let bytesOnWire = 0;
  const count = (c: Buffer): void => {
    bytesOnWire += c.length;
  };
  input.on('data', count);
  ctl.ddmsIn.on('data', count);
  const s = resultSummary(await relay(ctl, out, input), 'slave');
  input.off('data', count);
  return { ...s, bytesOnWire };
}

/**
 * Relay a daemon's side: its DDMS stream to `out` (ended with it; when `out` is null the daemon answers nothing),
 * `input` to it. Resolves with the daemon's result; a failure of either stream drops the connection.
 */
async function relay(ctl: ControlPass, out: Writable | null, input: Readable | null): Promise<Awaited<ControlPass['result']>> {
  const broken = (): void => ctl.close();
  if (out !== null) {
    ctl.ddmsIn.pipe(out);
    out.on('error', broken);
    out.on('close', () => {
      if (!out.writableFinished) broken();
    });
  } else {
    ctl.ddmsIn.resume();
  }
  if (input !== null) {
    input.pipe(ctl.ddmsOut);
    input.on('error', broken);
  } else {
    ctl.ddmsOut.end();
  }
  try {
    return await ctl.result;
  } finally {
    if (input !== null) input.unpipe(ctl.ddmsOut);
    ctl.close();
  }
}

/**
 * One pass from the local master `src` to the local slave `dst`, both sides in this process (each served by its
 * daemon when mounted). An incremental pass of an unmounted master whose seal census found a change behind the
 * journal is not committed (runMaster's COMMIT gate, spec §4.3); it is run again at once, as the content pass it then is.
 * @throws DdfsError of either side (the slave's when both fail); LOCKED, MOUNTED (openEndpoint)
 */
export async function copyLocal(src: string, dst: string, options: CopyOptions): Promise<{ master: PassSummary; slave: SlaveSummary }> {
  try {
    return await copyLocalOnce(src, dst, options);
  } catch (err) {
    if (!refusedForContentPass(err)) throw err;
    options.report?.(`${err.message}: running it again`);
    return copyLocalOnce(src, dst, options);
  }
}

/** Whether `err` is runMaster's refused COMMIT of an incremental pass (its data says contentPassNext): run it again. */
function refusedForContentPass(err: unknown): err is DdfsError {
  return err instanceof DdfsError && (err.data as { contentPassNext?: unknown }).contentPassNext === true;
}

async function copyLocalOnce(src: string, dst: string, options: CopyOptions): Promise<{ master: PassSummary; slave: SlaveSummary }> {
  const m = await openEndpoint(src, true, options.contentPass === true);
  let s: Endpoint | null = null;
  try {
    // a relay that cannot serve (a pass in progress on it, no claim) says so before the slave side starts (the slave
    // would only see a stream cut before its HELLO); reading the state is all it takes, mounted or not
    if (readMirrorState(src)?.role === 'slave') sourceState(src);
    s = await openEndpoint(dst, false);
    // each record's bytes reach the reader as written (object mode reads: no concatenation of chunks, a BLOCK is
    // decoded in place); up to MIRROR_LOCAL_PIPE_SIZE_BYTES wait in a direction, so a side that waits for its disk
    // (a CHECKPOINT's syncs) does not stop the other at once
    const pipe = (): PassThrough => new PassThrough({ readableObjectMode: true, readableHighWaterMark: MIRROR_LOCAL_PIPE_RECORD_COUNT, writableHighWaterMark: MIRROR_LOCAL_PIPE_SIZE_BYTES });
    const { m2s, s2m } = options.pipes?.() ?? { m2s: pipe(), s2m: pipe() };
    // over these pipes (object-mode reads: each chunk is a frame as written) no frame's CRC is computed and BLOCKS
    // frames are reused (channel.ts LocalFrames); through the caller's pipes (link meters, tests) every frame is
    // checked in full. Only when both sides run here: a daemon's side relays the frames out of this process
    const bothHere = m.kind === 'local' && s.kind === 'local';
    if (options.pipes === undefined && bothHere) options = { ...options, localFrames: new LocalFrames() };
    if (bothHere) options = { ...options, hashThreads: options.hashThreads ?? Math.max(1, Math.floor(availableParallelism() / 2)), hashNice: options.hashNice ?? COPY_HASH_NICE };
    // a side that fails ends its own direction (the peer reads what was sent, then the end) and destroys the other, so
    // a peer waiting for room to write (or writing later) fails at once instead of waiting for a reader that is gone
    const endOf = (out: Transform, other: Transform) => (err: unknown): never => {
      if (!out.writableEnded) out.end();
      other.destroy();
      throw err;
    };
    const results = await Promise.allSettled([
      masterSide(m, m2s, s2m, { ...options, peerLabel: options.peerLabel ?? dst }).catch(endOf(m2s, s2m)),
      slaveSide(s, m2s, s2m, options).catch(endOf(s2m, m2s)),
    ]);
    const [mr, sr] = results;
    // a slave that failed only because the master's stream ended early: the master's error says why
    if (sr.status === 'rejected' && mr.status === 'rejected' && endedEarly(sr.reason)) throw mr.reason;
    // the master refused to commit (the slave only saw its ERROR): copyLocal runs the pass again
    if (mr.status === 'rejected' && refusedForContentPass(mr.reason)) throw mr.reason;
    if (sr.status === 'rejected') throw sr.reason;
    if (mr.status === 'rejected') throw mr.reason;
    return { master: mr.value, slave: sr.value };
  } finally {
    await closeEndpoint(s);
    await closeEndpoint(m);
  }
}

/** Whether `err` is the codec's fault of a stream that ended before its TERM (the sender stopped). */
function endedEarly(err: unknown): boolean {
  const reason = err instanceof DdfsError ? (err.data as { reason?: unknown } | undefined)?.reason : undefined;
  return reason === 'missing' || reason === 'truncated';
}

/** The master side over a stream pair (the far side is `serve` or `write`). */
export async function masterOverStreams(src: string, out: Writable, input: Readable | null, options: CopyOptions): Promise<PassSummary> {
  const m = await openEndpoint(src, true, options.contentPass === true);
  try {
    return await masterSide(m, out, input, options);
  } finally {
    await closeEndpoint(m);
  }
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
  const s = await openEndpoint(dst, false);
  try {
    return { ...(await slaveSide(s, input, out, options)), elapsedMs: Date.now() - t0 };
  } finally {
    await closeEndpoint(s);
  }
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
  /**
   * The unique uuid of the master a slave of it is bound to (§4.12: the master's own; a relay's bound master); absent
   * from older peers and from a relay not bound yet: the slave is bound by its first pass.
   */
  masterUuid?: string;
}

/**
 * The identity of the master volume `master` (its uuids are made on first use).
 * @throws DdfsError NOT_FOUND/BAD_CONFIG (not a volume), INVALID (a slave with a pass in progress or no claim: sourceState)
 */
export async function masterIdentity(master: string): Promise<MasterIdentity> {
  const cm = await readVolumeConfig(master);
  const ms = sourceState(master); // a relay (a slave with a committed claim) can bind slaves too (§4.12)
  const id: MasterIdentity = { sharedUuid: ms.sharedUuid, lineage: ms.lineage, generation: ms.generation, blockSize: cm.blockSize, hashName: cm.hashName, lineageId: lineageIdOf(ms) };
  const bound = masterUuidOf(ms);
  if (bound !== null) id.masterUuid = bound;
  return id;
}

/**
 * Bind the empty volume `slave` to the master of identity `master` (described by `label` in messages).
 * @throws DdfsError INVALID (not empty, another block size or hash, already bound), MOUNTED, LOCKED (another tool
 *   holds the volume lock)
 */
export async function bindSlave(slave: string, master: MasterIdentity, label: string): Promise<{ sharedUuid: string; uniqueUuid: string }> {
  refuseMounted(slave, 'unmount it first (its daemon would keep serving it writable)');
  const cs = await readVolumeConfig(slave);
  if (cs.blockSize !== master.blockSize) throw new DdfsError('INVALID', `${slave}: block size ${cs.blockSize}, the master's is ${master.blockSize}: a replica needs the same block size`, { path: slave });
  if (cs.hashName !== master.hashName) throw new DdfsError('INVALID', `${slave}: hash ${cs.hashName}, the master's is ${master.hashName}: a replica needs the same hash`, { path: slave });
  // the state is written under the volume lock: never beside a repairing fsck or another mirrorddumbfs
  const lock = await takeVolumeLock(slave, LOCK_TOOL);
  try {
    const existing = readMirrorState(slave);
    if (existing !== null) throw new DdfsError('INVALID', `${slave}: already a ${existing.role} of ${existing.sharedUuid}`, { path: slave });
    const names = listNames(pathBytes(path.join(path.resolve(slave), ROOT_DIRECTORY))).filter((n) => n.toString('latin1') !== '.ddumbfs');
    if (names.length > 0) throw new DdfsError('INVALID', `${slave}: not an empty volume (${names.length} entries in ${ROOT_DIRECTORY}): a slave starts empty`, { path: slave });
    const ss = slaveStateFor({ version: 1, sharedUuid: master.sharedUuid, uniqueUuid: master.sharedUuid, role: 'master', lineage: master.lineage, generation: master.generation, claim: null, pass: null, lineageId: master.lineageId });
    // bound to the master the identity names (§4.12), or by the first pass when it names none (an older peer)
    if (master.masterUuid !== undefined) ss.masterUuid = master.masterUuid;
    else delete ss.masterUuid;
    writeMirrorState(slave, ss);
    void label;
    return { sharedUuid: ss.sharedUuid, uniqueUuid: ss.uniqueUuid };
  } finally {
    await lock.release();
  }
}

/**
 * Bind the empty volume `slave` to `master`'s lineage (mirrorddumbfs init-slave), both local.
 * @throws as masterIdentity and bindSlave; INVALID when both are the same volume
 */
export async function initSlave(slave: string, master: string): Promise<{ sharedUuid: string; uniqueUuid: string }> {
  refuseMounted(slave, 'unmount it first (its daemon would keep serving it writable)');
  if (path.resolve(slave) === path.resolve(master)) throw new DdfsError('INVALID', `${slave}: the slave and the master are the same volume`, { path: slave });
  await readVolumeConfig(slave);
  return bindSlave(slave, await masterIdentity(master), master);
}
