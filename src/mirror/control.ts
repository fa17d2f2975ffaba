/**
 * Mirror passes of a mounted volume through its daemon (issue 7 item 0): the daemon serves the control socket
 * `<parent>/ddfsmirror/control` (io/control_socket.ts), and for each connection runs the SAME runMaster/runSlave
 * against its own open Volume (pass_volume.ts daemonPassVolume), the socket carrying the DDMS streams.
 *
 * Frames on the socket, both directions (integers big-endian):
 *
 * | offset | size | description                                                             |
 * |--------|------|-------------------------------------------------------------------------|
 * | 0      | 1    | kind: 1 REQUEST, 2 DATA, 3 END, 4 RESULT, 5 LINE                          |
 * | 1      | 4    | payload length L (at most MIRROR_CONTROL_FRAME_SIZE_MAX)                 |
 * | 5      | L    | payload                                                                  |
 *
 * - REQUEST (client → daemon, first frame): JSON `{ role: "master" | "slave", twoWay, allowMassDelete?,
 *   checkpointRecordCount?, peerLabel?, contentPass? }`: the side the daemon runs, and whether the peer answers (copy) or not (read/write).
 * - DATA: bytes of the DDMS stream of that direction; END: that stream ended (the DDMS writer's end()).
 * - RESULT (daemon → client, last frame): JSON `{ ok: true, summary }` or `{ ok: false, code, message }`.
 * - LINE (daemon → client): JSON `{ kind: "progress" | "report", line }`, the master's progress and findings.
 *
 * Invariants: one pass at a time per daemon (a second connection gets RESULT BUSY); a slave pass only into a
 * read-only served mount (FUSE writers never race a pass); a pass's failure ends its
 * DDMS direction so the peer stops too; a connection that closes early destroys both DDMS directions, so a pass
 * waiting on it fails instead of hanging. Payload lengths are checked before anything is allocated.
 */
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { DdfsError, ERROR_CODES, messageOf, type DdfsErrorCode as ErrorCode } from '../errors.js';
import { MIRROR_CONTROL_DOCUMENT_SIZE_MAX, MIRROR_CONTROL_FRAME_SIZE_MAX, MIRROR_MASTER_PASS_COUNT_MAX, MIRROR_REPLICA_LABEL_SIZE_MAX } from '../limits.js';
import { MIRROR_CONTROL_SOCKET } from '../format/layout.js';
import { connectControlSocket, listenControlSocket, type ControlListener } from '../io/control_socket.js';
import type { Logger } from '../util/log.js';
import { RecordReader, RecordWriter } from './channel.js';
import type { TreeAccess } from './digest.js';
import { runMaster, renderSummary, type PassSummary } from './pass_master.js';
import { runSlave, type SlaveSummary } from './pass_slave.js';
import type { PassVolume } from './pass_volume.js';
import { mirrorDirectory } from './state.js';

const KIND = { REQUEST: 1, DATA: 2, END: 3, RESULT: 4, LINE: 5 } as const;
const FRAME_HEADER_SIZE = 5;

/** What the client asks the daemon to run. */
export interface ControlRequest {
  role: 'master' | 'slave';
  twoWay: boolean;
  allowMassDelete?: boolean;
  checkpointRecordCount?: number;
  /** Master side: the destination as the user gave it, for the replica's record (mirror/replicas.ts). */
  peerLabel?: string;
  /** Master side: a content pass whatever the journal allows (MasterOptions.contentPass). Absent: false. */
  contentPass?: boolean;
}

/** The daemon's answer at the end of a pass. */
export type ControlResult =
  | { ok: true; summary: PassSummary | SlaveSummary }
  | { ok: false; code: ErrorCode; message: string };

function frame(kind: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_SIZE);
  h[0] = kind;
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

function documentFrame(kind: number, doc: unknown): Buffer {
  return frame(kind, Buffer.from(JSON.stringify(doc), 'utf8'));
}

function parseDocument(payload: Buffer, what: string): unknown {
  if (payload.length > MIRROR_CONTROL_DOCUMENT_SIZE_MAX) throw new DdfsError('CORRUPT', `control socket: ${what} of ${payload.length} bytes (at most ${MIRROR_CONTROL_DOCUMENT_SIZE_MAX})`);
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    throw new DdfsError('CORRUPT', `control socket: the ${what} is not JSON`);
  }
}

/**
 * One connection's frames: `ddmsIn` yields the peer's DATA until its END, `ddmsOut` sends DATA and, on end, END;
 * every other frame goes to `onFrame`.
 */
class FrameChannel {
  readonly ddmsIn: Readable;
  readonly ddmsOut: Writable;
  private pending: Buffer = Buffer.alloc(0);
  private inEnded = false;
  /** Whether the socket is corked until the next tick (ddmsOut's writes). */
  private corked = false;

  constructor(private readonly socket: Socket, onFrame: (kind: number, payload: Buffer) => void, onFault: (err: Error) => void) {
    this.ddmsIn = new Readable({ read: () => socket.resume() });
    this.ddmsOut = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        if (socket.destroyed) {
          cb(new Error('the control socket closed'));
          return;
        }
        // the frames of one turn of the event loop leave in one writev: a pass writes many small records (HAVE,
        // DIGESTA, ACK...) and each write(2) woke the peer process on its own
        if (!this.corked) {
          this.corked = true;
          socket.cork();
          process.nextTick(() => {
            this.corked = false;
            socket.uncork();
          });
        }
        for (let at = 0; at < chunk.length; at += MIRROR_CONTROL_FRAME_SIZE_MAX) {
          const piece = chunk.subarray(at, at + MIRROR_CONTROL_FRAME_SIZE_MAX);
          const last = at + MIRROR_CONTROL_FRAME_SIZE_MAX >= chunk.length;
          socket.write(frame(KIND.DATA, piece), last ? (err) => cb(err ?? null) : undefined);
        }
        if (chunk.length === 0) cb();
      },
      final: (cb) => {
        if (socket.destroyed) cb();
        else socket.write(frame(KIND.END, Buffer.alloc(0)), () => cb());
      },
    });
    this.ddmsOut.on('error', () => undefined);
    this.ddmsIn.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      try {
        while (this.pending.length >= FRAME_HEADER_SIZE) {
          const kind = this.pending[0]!;
          const size = this.pending.readUInt32BE(1);
          if (size > MIRROR_CONTROL_FRAME_SIZE_MAX) throw new DdfsError('CORRUPT', `control socket: a frame of ${size} bytes (at most ${MIRROR_CONTROL_FRAME_SIZE_MAX})`);
          if (this.pending.length < FRAME_HEADER_SIZE + size) break;
          const payload = this.pending.subarray(FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + size);
          this.pending = this.pending.subarray(FRAME_HEADER_SIZE + size);
          if (kind === KIND.DATA) {
            if (!this.inEnded && !this.ddmsIn.push(Buffer.from(payload))) socket.pause();
          } else if (kind === KIND.END) {
            if (!this.inEnded) this.ddmsIn.push(null);
            this.inEnded = true;
          } else if (kind === KIND.REQUEST || kind === KIND.RESULT || kind === KIND.LINE) {
            onFrame(kind, Buffer.from(payload));
          } else {
            throw new DdfsError('CORRUPT', `control socket: unknown frame kind ${kind}`);
          }
        }
      } catch (err) {
        onFault(err as Error);
        this.destroy(err as Error);
      }
    });
    socket.on('close', () => this.destroy(new Error('the control socket closed')));
  }

  /** Send a document frame (REQUEST, RESULT, LINE). */
  send(kind: number, doc: unknown): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(documentFrame(kind, doc), () => resolve());
    });
  }

  destroy(err: Error): void {
    if (!this.inEnded) {
      this.inEnded = true;
      this.ddmsIn.destroy(err);
    }
    if (!this.ddmsOut.destroyed) this.ddmsOut.destroy();
    this.socket.destroy();
  }
}

function encodeSummary(s: PassSummary | SlaveSummary): unknown {
  if ('filesVisited' in s) return { ...s, corrupt: s.corrupt.map((c) => ({ path: c.path.toString('hex'), blockIndex: c.blockIndex })), skippedFiles: s.skippedFiles.map((p) => p.toString('hex')), tidBeg: s.tidBeg.toString(), tidEnd: s.tidEnd.toString() };
  return s;
}

function decodeMasterSummary(doc: unknown): PassSummary {
  const d = doc as PassSummary & { corrupt: Array<{ path: string; blockIndex: number }>; skippedFiles: string[] };
  if (typeof d?.filesVisited !== 'number' || !Array.isArray(d.corrupt) || !Array.isArray(d.skippedFiles)) throw new DdfsError('CORRUPT', 'control socket: the daemon\'s result is not a master summary');
  return { ...d, corrupt: d.corrupt.map((c) => ({ path: Buffer.from(String(c.path), 'hex'), blockIndex: Number(c.blockIndex) })), skippedFiles: d.skippedFiles.map((p) => Buffer.from(String(p), 'hex')),
    // TIDs travel as decimal text (JSON has no bigint); a daemon of before issue 8 sends none
    passKind: d.passKind ?? 'content', tidBeg: BigInt(String(d.tidBeg ?? 0)), tidEnd: BigInt(String(d.tidEnd ?? 0)), contentReason: d.contentReason ?? null, dirtyCount: Number(d.dirtyCount ?? 0),
    divergenceAlarms: Number(d.divergenceAlarms ?? 0), concurrentNeeds: Number(d.concurrentNeeds ?? 0), directoriesNamed: Number(d.directoriesNamed ?? 0) };
}

function decodeSlaveSummary(doc: unknown): SlaveSummary {
  const d = doc as SlaveSummary;
  if (typeof d?.blocksReceived !== 'number' || typeof d.committed !== 'boolean') throw new DdfsError('CORRUPT', 'control socket: the daemon\'s result is not a slave summary');
  return d;
}

function parseRequest(doc: unknown): ControlRequest {
  const r = doc as ControlRequest;
  if ((r?.role !== 'master' && r?.role !== 'slave') || typeof r.twoWay !== 'boolean') throw new DdfsError('CORRUPT', 'control socket: a malformed request');
  const n = r.checkpointRecordCount;
  if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new DdfsError('CORRUPT', 'control socket: a malformed checkpoint record count');
  const label = typeof r.peerLabel === 'string' ? r.peerLabel.slice(0, MIRROR_REPLICA_LABEL_SIZE_MAX) : undefined;
  return { role: r.role, twoWay: r.twoWay, allowMassDelete: r.allowMassDelete === true, checkpointRecordCount: n, contentPass: r.contentPass === true, ...(label !== undefined ? { peerLabel: label } : {}) };
}

/** The daemon's control server. */
export interface ControlServer {
  readonly socketPath: string;
  /** Stop serving, wait for a running pass to end, remove the socket. */
  close(): Promise<void>;
}

/**
 * Serve mirror passes of the daemon's volume `vol` on `<parent>/ddfsmirror/control` (issue 7 item 0). The slave
 * side is refused (MOUNTED) unless `slaveAllowed`: the mount is served read-only, so only passes write the volume.
 * @throws DdfsError INVALID (a symlink at `ddfsmirror` or a non-socket at `control`), BUSY (another daemon serves
 *   it), IO — see io/control_socket.ts
 */
export async function serveMirrorControl(vol: PassVolume, options: { access: TreeAccess; logger: Logger; slaveAllowed: boolean }): Promise<ControlServer> {
  const log = options.logger;
  /** Passes running: master sides run side by side (one per replica, §4.12), a slave side runs alone. */
  const running = new Set<Promise<void>>();
  let slaveRunning = false;
  const connections = new Set<FrameChannel>();

  const handle = (socket: Socket): void => {
    let requested = false;
    const channel: FrameChannel = new FrameChannel(socket, (kind, payload) => {
      if (kind !== KIND.REQUEST || requested) {
        channel.destroy(new Error('unexpected frame'));
        return;
      }
      requested = true;
      let request: ControlRequest;
      try {
        request = parseRequest(parseDocument(payload, 'request'));
      } catch (err) {
        void channel.send(KIND.RESULT, { ok: false, code: 'CORRUPT', message: messageOf(err) }).then(() => socket.end());
        return;
      }
      if (request.role === 'slave' && !options.slaveAllowed) {
        // FUSE writers would race the pass: a slave is written by its passes alone (a read-only mount)
        void channel.send(KIND.RESULT, { ok: false, code: 'MOUNTED', message: `${vol.parentDir}: mounted writable (it was mounted before it became a slave): unmount it and mount it again to apply passes` }).then(() => socket.end());
        return;
      }
      // a slow or dead replica never blocks the others (§4.12): master sides only read, so they share the volume; a
      // slave side writes it, so it runs alone (a relay never serves a half-applied pass)
      const busy = request.role === 'slave' ? running.size > 0 : slaveRunning || running.size >= MIRROR_MASTER_PASS_COUNT_MAX;
      if (busy) {
        const why = slaveRunning || request.role === 'slave' ? 'a mirror pass is already running on this volume' : `${running.size} master passes are already running on this volume`;
        void channel.send(KIND.RESULT, { ok: false, code: 'BUSY', message: `${vol.parentDir}: ${why}; try again when it has finished` }).then(() => socket.end());
        return;
      }
      if (request.role === 'slave') slaveRunning = true;
      const pass: Promise<void> = runPass(channel, request).finally(() => {
        running.delete(pass);
        if (request.role === 'slave') slaveRunning = false;
        connections.delete(channel);
        socket.end();
      });
      running.add(pass);
    }, () => undefined);
    connections.add(channel);
    socket.on('close', () => {
      if (!requested) connections.delete(channel);
    });
  };

  const runPass = async (channel: FrameChannel, request: ControlRequest): Promise<void> => {
    const line = (kind: 'progress' | 'report') => (text: string): void => {
      void channel.send(KIND.LINE, { kind, line: text });
    };
    log.info(`mirror: ${request.role} side of a pass through the control socket (${request.twoWay ? 'two-way' : 'one-way'})`);
    let result: ControlResult;
    try {
      let summary: PassSummary | SlaveSummary;
      if (request.role === 'master') {
        const writer = await RecordWriter.create(channel.ddmsOut, true);
        const reader = request.twoWay ? await RecordReader.create(channel.ddmsIn) : null;
        summary = await runMaster(vol, writer, {
          access: options.access, input: reader, checkpointRecordCount: request.checkpointRecordCount, progress: line('progress'), report: line('report'), peerLabel: request.peerLabel, contentPass: request.contentPass,
        });
        log.info(`mirror: master pass done: ${renderSummary(summary)}`);
      } else {
        const reader = await RecordReader.create(channel.ddmsIn);
        const writer = request.twoWay ? await RecordWriter.create(channel.ddmsOut, false) : null;
        summary = await runSlave(vol, reader, { access: options.access, output: writer, allowMassDelete: request.allowMassDelete });
        log.info(`mirror: slave pass applied: ${summary.blocksReceived} blocks received, ${summary.filesApplied} files applied, ${summary.deleted} entries deleted`);
      }
      result = { ok: true, summary: encodeSummary(summary) as PassSummary };
    } catch (err) {
      const code: ErrorCode = err instanceof DdfsError ? err.code : 'IO';
      log.warn(`mirror: ${request.role} pass failed: ${messageOf(err)}`);
      result = { ok: false, code, message: messageOf(err) };
      if (!channel.ddmsOut.writableEnded) channel.ddmsOut.end();
    }
    await channel.send(KIND.RESULT, result);
  };

  const listener: ControlListener = await listenControlSocket(mirrorDirectory(vol.parentDir), MIRROR_CONTROL_SOCKET, handle);
  log.info(`mirror: control socket ${listener.socketPath}`);
  return {
    socketPath: listener.socketPath,
    close: async () => {
      await listener.close();
      for (const c of connections) c.destroy(new Error('the daemon is stopping'));
      await Promise.allSettled([...running]);
    },
  };
}

/** A pass run by a daemon, seen from mirrorddumbfs. */
export interface ControlPass {
  /** The daemon's DDMS stream (what its side sends). */
  readonly ddmsIn: Readable;
  /** The DDMS stream to the daemon's side (end it after the last record). */
  readonly ddmsOut: Writable;
  /** The daemon's result, once its side ended. @throws DdfsError when the connection closes without one */
  readonly result: Promise<ControlResult>;
  /** Drop the connection (after a failure of our side). */
  close(): void;
}

/**
 * Ask the daemon of the mounted volume `parentDir` to run one side of a pass (`request`).
 * @param onLine the daemon master's progress and report lines
 * @throws DdfsError NOT_FOUND (no control socket: a daemon without one), INVALID (a symlink at ddfsmirror), IO
 */
export async function openControlPass(parentDir: string, request: ControlRequest, onLine?: (kind: 'progress' | 'report', line: string) => void): Promise<ControlPass> {
  const socket = await connectControlSocket(mirrorDirectory(path.resolve(parentDir)), MIRROR_CONTROL_SOCKET);
  socket.on('error', () => undefined);
  let settle: ((r: ControlResult) => void) | null = null;
  let fail: ((e: Error) => void) | null = null;
  const result = new Promise<ControlResult>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  result.catch(() => undefined);
  const channel = new FrameChannel(socket, (kind, payload) => {
    try {
      const doc = parseDocument(payload, kind === KIND.RESULT ? 'result' : 'line');
      if (kind === KIND.RESULT) settle?.(doc as ControlResult);
      else if (kind === KIND.LINE) {
        const l = doc as { kind: 'progress' | 'report'; line: string };
        onLine?.(l.kind === 'report' ? 'report' : 'progress', String(l.line));
      }
    } catch (err) {
      fail?.(err as Error);
    }
  }, (err) => fail?.(err));
  socket.on('close', () => fail?.(new DdfsError('IO', `${parentDir}: the daemon closed the control socket without a result`, { path: parentDir })));
  await channel.send(KIND.REQUEST, request);
  return { ddmsIn: channel.ddmsIn, ddmsOut: channel.ddmsOut, result, close: () => channel.destroy(new Error('closed')) };
}

/**
 * The summary in a daemon's result, or its error thrown.
 * @throws DdfsError the daemon's (its code and message)
 */
export function resultSummary(r: ControlResult, role: 'master'): PassSummary;
export function resultSummary(r: ControlResult, role: 'slave'): SlaveSummary;
export function resultSummary(r: ControlResult, role: 'master' | 'slave'): PassSummary | SlaveSummary {
  if (!r.ok) throw new DdfsError(Object.hasOwn(ERROR_CODES, r.code) ? r.code : 'IO', String(r.message));
  return role === 'master' ? decodeMasterSummary(r.summary) : decodeSlaveSummary(r.summary);
}
