/**
 * `mirrorddumbfs stream SRC DST` (mirroring spec §4.10): a long-lived loop of copy passes.
 *
 * - Between passes it waits for the master's journal head (durable_head, §4.3) to move past the replica's claim:
 *   a local master's journal segments (mounted or not: read only, never written) are looked at every -i seconds, and
 *   a pass starts as soon as the head is above the claim, or when --max-interval seconds went by since the last pass
 *   (changes that leave no journal record). A master whose head cannot be read (remote, or without a journal) gets a
 *   pass every -i seconds.
 * - Each pass opens its own connection (ssh, or the daemon's control socket). Both sides of a pass send IDLE
 *   heartbeats while silent (mirror/channel.ts); a link from which nothing came for --timeout seconds is declared dead
 *   (one log line), the connection is dropped (the ssh child this process started is killed), and the stream
 *   reconnects after the back-off (doubling up to MIRROR_STREAM_BACKOFF_MAX_S). The resume point is the slave's
 *   pending pass (state.pass, sent in its HELLO, §4.9): nothing here needs to keep it.
 * - -b KBPS limits the master-to-slave bytes on the wire (mirror/link_meter.ts).
 * - Its state (ddfsmirror/stream, mirror/stream_state.ts) carries the lag: head - claim in TIDs, and in seconds the
 *   time since the start of the last completed pass (the master's head it covered was taken then) while the head is
 *   above the claim (0 when caught up).
 * - SIGTERM or SIGINT stops it at once while it waits; during a pass into a local slave, once the slave applied its
 *   next CHECKPOINT (a durable resume point: the link is dropped then) or the pass committed; into a remote slave
 *   (ssh, serve) the same: the stream to it ends right after the next CHECKPOINT record (mirror/record_cut.ts), the
 *   slave applies it, records it as its resume point and exits on the end, then the link is dropped. A second signal
 *   drops the pass at once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { fileDevices } from '../io/device.js';
import { JOURNAL_DIRECTORY, summarizeJournal } from '../mirror/journal.js';
import { LinkMeter } from '../mirror/link_meter.js';
import { CheckpointCut } from '../mirror/record_cut.js';
import { claimTid, mirrorDirectory, readMirrorState } from '../mirror/state.js';
import { writeStreamState, type StreamState } from '../mirror/stream_state.js';
import { MIRROR_STREAM_BACKOFF_MAX_S, MIRROR_STREAM_CUT_WAIT_S } from '../limits.js';
import { EXIT } from './exit_codes.js';

/** The master pass's error when an entry changed while it walked the tree (mirror/digest.ts). */
const TREE_CHANGED = /the tree changed during/;

/** Options of a stream (seconds, and -b in KiB/s). */
export interface StreamOptions {
  interval: number;
  backoff: number;
  maxInterval: number;
  timeout: number;
  /** -b: KiB (1024 bytes) per second of master-to-slave bytes, or undefined for no limit. */
  bandwidthKiBps?: number;
}

/**
 * The link of one pass: the meters its transport goes through, a watchdog over them, and what the pass learnt.
 * copyPass (mirrorddumbfs.ts) asks it for its pipes and registers what to drop when the link is declared dead.
 */
export class PassLink {
  /** The TID the master's summary says the pass covered (a local master), or null. */
  tidEnd: bigint | null = null;
  /** Set when the watchdog declared the link dead (the pass's error then names it). */
  dead: string | null = null;
  /** Set when the stream dropped the link to stop (a signal, after a checkpoint). */
  stopped: string | null = null;
  private readonly watched: LinkMeter[] = [];
  private readonly drops: Array<() => void> = [];
  /** The cut of the stream to a remote slave (remote() as master), and its shell. */
  private cut: { cut: CheckpointCut; child: ChildProcess } | null = null;
  /** Set by stopAfterCheckpoint: the reason `stopped` gets once the cut slave exited. */
  private cutReason: string | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly rateBytesPerS: number | null, private readonly timeoutS: number, private readonly log: (line: string) => void) {}

  /** A meter for the master-to-slave bytes (rated by -b); `watch`: whether silence there declares the link dead. */
  masterToSlave(watch: boolean): LinkMeter {
    return this.meter(this.rateBytesPerS, watch);
  }

  /** A meter for the slave-to-master bytes (never rated). */
  slaveToMaster(watch: boolean): LinkMeter {
    return this.meter(null, watch);
  }

  private meter(rate: number | null, watch: boolean): LinkMeter {
    const m = new LinkMeter(rate);
    m.on('error', () => undefined);
    if (watch) this.watched.push(m);
    this.drops.push(() => m.destroy(new Error(this.dead ?? this.stopped ?? 'the link was dropped')));
    this.start();
    return m;
  }

  /**
   * The streams of a pass through the remote shell `child`: what we write goes through a meter to its stdin, what it
   * answers through a meter from its stdout; the peer's direction is watched. Killing `child` drops the link.
   */
  remote(child: ChildProcess, weAreMaster: boolean): { out: Writable; input: Readable } {
    const out = weAreMaster ? this.masterToSlave(false) : this.slaveToMaster(false);
    const input = weAreMaster ? this.slaveToMaster(true) : this.masterToSlave(true);
    if (weAreMaster) {
      // a remote slave: what we send can be cut after a CHECKPOINT when the stream stops (stopAfterCheckpoint)
      const cut = new CheckpointCut();
      cut.on('error', () => undefined);
      out.pipe(cut).pipe(child.stdin!);
      this.cut = { cut, child };
      this.drops.push(() => cut.destroy());
      if (this.cutReason !== null) this.armCut();
    } else {
      out.pipe(child.stdin!);
    }
    child.stdout!.pipe(input);
    // a remote shell gone: what we still write could never drain
    child.stdin!.on('close', () => {
      if (!out.writableFinished) out.destroy(new Error('the remote shell closed its input'));
    });
    this.drops.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    });
    return { out, input };
  }

  /** Local pipes for copyLocal (both directions watched: each carries one side's records and heartbeats). */
  local(): { m2s: LinkMeter; s2m: LinkMeter } {
    return { m2s: this.masterToSlave(true), s2m: this.slaveToMaster(true) };
  }

  private start(): void {
    if (this.timer !== null || !(this.timeoutS > 0)) return;
    this.timer = setInterval(() => this.check(), Math.min(1000, this.timeoutS * 250));
    this.timer.unref();
  }

  private check(): void {
    const now = Date.now();
    const silent = this.watched.find((m) => !m.writableFinished && !m.destroyed && now - m.lastActivityMs > this.timeoutS * 1000);
    if (silent === undefined || this.dead !== null) return;
    this.dead = `link dead: nothing from the peer for ${this.timeoutS} s (${silent.bytes} bytes came before)`;
    this.log(this.dead);
    for (const d of this.drops) d();
  }

  /**
   * The error of a failed pass through a remote shell, naming the connection's end when the shell exited with an
   * error status (255: ssh lost the connection or was killed), so the log says the link broke rather than what that
   * did to our side of the pass.
   * @param code the remote shell's exit status, -1 when it was still running
   */
  explain(err: unknown, endpoint: string, code: number): Error {
    const msg = err instanceof Error ? err.message : String(err);
    if (this.dead !== null || code <= 0) return err instanceof Error ? err : new Error(msg);
    return new Error(`${endpoint}: the connection ended (the remote shell exited with status ${code}): ${msg}`);
  }

  /**
   * Stop once the remote slave applied the next CHECKPOINT (§4.9: a durable resume point): the stream to it ends right
   * after that record, the slave applies the window, records its resume point and exits on the end of the stream,
   * then the link is dropped (the master side fails and `stopped` says why). A pass that commits first just ends.
   * Through a link made later in the pass (the remote shell not started yet), the cut is armed when it is made.
   */
  stopAfterCheckpoint(reason: string): void {
    if (this.stopped !== null || this.dead !== null || this.cutReason !== null) return;
    this.cutReason = reason;
    if (this.cut !== null) this.armCut();
  }

  private armCut(): void {
    const { cut, child } = this.cut!;
    const reason = this.cutReason!;
    cut.arm(() => {
      // the slave reads the CHECKPOINT and then the end: once its shell exited, nothing of the pass is left to keep
      const drop = (): void => this.stop(reason);
      if (child.exitCode !== null || child.signalCode !== null) {
        drop();
      } else {
        child.once('exit', drop);
        // a slave that never reads the end (a hung link) does not hold the stop: dropped after a while anyway
        setTimeout(drop, MIRROR_STREAM_CUT_WAIT_S * 1000).unref();
      }
    });
  }

  /** Drop the link now because the stream stops (`reason` is logged by the caller). */
  stop(reason: string): void {
    if (this.stopped !== null || this.dead !== null) return;
    this.stopped = reason;
    for (const d of this.drops) d();
  }

  /** Stop the watchdog (the pass ended). */
  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

/** How one pass is run: copyPass of mirrorddumbfs.ts with the link. @returns its exit code */
export type RunPass = (link: PassLink) => Promise<number>;

/** Where the stream looks for the master's head and the replica's claim. */
export interface StreamEndpoints {
  /** The local master's parent directory, or null when it is remote. */
  localMaster: string | null;
  /** The local slave's parent directory, or null when it is remote. */
  localSlave: string | null;
  /** Where ddfsmirror/stream is written (the slave's, or the master's when the slave is remote), or null. */
  stateAt: string | null;
}

/** Journal segment names and sizes: changes whenever a record is appended or a segment added or dropped. */
function journalSignature(parentDir: string): string | null {
  const dir = path.join(mirrorDirectory(parentDir), JOURNAL_DIRECTORY);
  let names: string[];
  try {
    if (!fs.lstatSync(dir).isDirectory()) return null;
    names = fs.readdirSync(dir).sort();
  } catch {
    return null;
  }
  const parts: string[] = [];
  for (const n of names) {
    try {
      parts.push(`${n}:${fs.lstatSync(path.join(dir, n)).size}`);
    } catch {
      parts.push(`${n}:gone`);
    }
  }
  return parts.join(',');
}

/**
 * Reads a local master's journal head, scanning the segments only when their names or sizes changed since the
 * last read. The head read is that of the records on disk: a trigger for a pass, never what a pass covers (the pass
 * takes its own durable head).
 */
export class HeadWatch {
  private signature: string | null = null;
  private head: bigint | null = null;

  constructor(private readonly parentDir: string) {}

  /** The head TID, or null when there is no journal or it cannot be read now. */
  async read(): Promise<bigint | null> {
    const sig = journalSignature(this.parentDir);
    if (sig === null) return (this.head = null);
    if (sig === this.signature) return this.head;
    try {
      const st = readMirrorState(this.parentDir);
      const floor = st?.nextTid !== undefined ? BigInt(st.nextTid) : 1n;
      const j = await summarizeJournal(mirrorDirectory(this.parentDir), fileDevices, floor);
      this.head = j === null ? null : BigInt(j.durableHead);
      this.signature = sig;
    } catch {
      this.head = null; // a segment dropped by retention while read: try again at the next look
      this.signature = null;
    }
    return this.head;
  }
}

/** The claim TID of the local slave `parentDir`, or null. */
function slaveClaim(parentDir: string): bigint | null {
  try {
    const st = readMirrorState(parentDir);
    return st?.claim?.syncEndTid === undefined ? null : claimTid(st.claim);
  } catch {
    return null;
  }
}

/**
 * Run the stream until SIGTERM or SIGINT.
 * @param log one line on stderr (without the program name)
 * @returns EXIT.OK after SIGTERM, EXIT.INTERRUPTED after SIGINT
 */
export async function runStream(ends: StreamEndpoints, opts: StreamOptions, runPass: RunPass, log: (line: string) => void): Promise<number> {
  let stopSignal: NodeJS.Signals | null = null;
  let wake: (() => void) | null = null;
  let current: PassLink | null = null;
  let checkpointWatch: NodeJS.Timeout | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    const again = stopSignal !== null;
    stopSignal = sig;
    wake?.();
    if (current === null) return;
    if (again) {
      current.stop(`stopping on a second ${sig}: the pass is dropped now`);
      return;
    }
    if (ends.localSlave === null) {
      // a remote slave: the stream to it ends after the next CHECKPOINT it gets, which it applies before it stops
      log(`stream: ${sig}: stopping after the slave's next checkpoint`);
      current.stopAfterCheckpoint(`stopped on ${sig} after a checkpoint (the next pass resumes from it)`);
      return;
    }
    // a local slave: stop at its next applied CHECKPOINT (a durable resume point), or when the pass commits
    log(`stream: ${sig}: stopping after the slave's next checkpoint`);
    const slaveDir = ends.localSlave;
    const progress = (): string | null => {
      try {
        const p = readMirrorState(slaveDir)?.pass;
        return p === null || p === undefined ? null : `${p.passId}/${p.keyCurHex}/${p.recordsApplied}`;
      } catch {
        return null;
      }
    };
    const at = progress();
    const link = current;
    checkpointWatch = setInterval(() => {
      const now = progress();
      if (now !== null && now !== at) link.stop(`stopped on ${sig} after a checkpoint (the next pass resumes from it)`);
    }, 100);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const heads = ends.localMaster === null ? null : new HeadWatch(ends.localMaster);
  const st: StreamState = {
    pid: process.pid, connection: 'connecting', lastPassTime: null, passCount: 0, retryCount: 0, lagSeconds: null, lastError: null,
    headTid: null, claimTid: null, lagTids: null, lastPassStartTime: null, headLooks: 0,
  };
  let claim: bigint | null = ends.localSlave === null ? null : slaveClaim(ends.localSlave);
  let head: bigint | null = null;
  const save = (): void => {
    st.headTid = head === null ? null : head.toString();
    st.claimTid = claim === null ? null : claim.toString();
    st.lagTids = head === null ? null : (head > (claim ?? 0n) ? head - (claim ?? 0n) : 0n).toString();
    const behind = head === null || claim === null || head > claim;
    st.lagSeconds = st.lastPassStartTime == null ? null : behind ? (Date.now() - Date.parse(st.lastPassStartTime!)) / 1000 : 0;
    if (ends.stateAt === null) return;
    try {
      writeStreamState(ends.stateAt, st);
    } catch {
      // the state is informative only
    }
  };
  const sleep = (seconds: number): Promise<void> => new Promise((resolve) => {
    const t = setTimeout(resolve, seconds * 1000);
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  });
  /** Wait until the head is above the claim, --max-interval ran out, or a signal came. */
  const waitForChange = async (since: number): Promise<void> => {
    for (;;) {
      if (stopSignal !== null) return;
      head = heads === null ? null : await heads.read();
      if (heads !== null) st.headLooks = (st.headLooks ?? 0) + 1;
      save();
      if (head === null || claim === null) {
        // nothing to compare: a pass every -i
        if (Date.now() - since >= opts.interval * 1000) return;
      } else if (head > claim) {
        return;
      }
      if (Date.now() - since >= opts.maxInterval * 1000) return;
      await sleep(heads === null ? Math.max(0, opts.interval - (Date.now() - since) / 1000) : opts.interval);
    }
  };
  const rate = opts.bandwidthKiBps === undefined ? null : opts.bandwidthKiBps * 1024;
  let backoff = opts.backoff;
  try {
    head = heads === null ? null : await heads.read();
    while (stopSignal === null) {
      st.connection = 'passing';
      save();
      const startedAt = new Date().toISOString();
      const link = new PassLink(rate, opts.timeout, (l) => log(`stream: ${l}`));
      current = link;
      try {
        // a pass that reports a problem (a remote side's error exit, master blocks not sent) is retried like a failed one
        const code = await runPass(link);
        current = null;
        if (checkpointWatch !== null) clearInterval(checkpointWatch);
        checkpointWatch = null;
        if (code !== EXIT.OK) throw new Error(`the pass exited ${code}`);
        st.passCount += 1;
        st.retryCount = 0;
        st.lastError = null;
        st.lastPassTime = new Date().toISOString();
        st.lastPassStartTime = startedAt;
        claim = ends.localSlave !== null ? slaveClaim(ends.localSlave) : link.tidEnd !== null && link.tidEnd > 0n ? link.tidEnd : null;
        backoff = opts.backoff;
        st.connection = 'idle';
        head = heads === null ? null : await heads.read(); // the state never pairs the new claim with an older head
        save();
        await waitForChange(Date.now());
      } catch (err) {
        if (link.stopped !== null) {
          log(`stream: ${link.stopped}`);
          break;
        }
        st.retryCount += 1;
        const msg = err instanceof Error ? err.message : String(err);
        st.lastError = link.dead !== null ? `${link.dead} (${msg})` : msg;
        // the master's tree changed under its walk (it is being written): not a link failure, try again after -i
        const busyTree = link.dead === null && TREE_CHANGED.test(msg);
        const delay = busyTree ? opts.interval : backoff;
        st.connection = 'backoff';
        save();
        log(`stream: pass failed (${st.lastError}); retry ${st.retryCount} in ${delay} s`);
        if (stopSignal === null) await sleep(delay);
        if (!busyTree) backoff = Math.min(backoff * 2, MIRROR_STREAM_BACKOFF_MAX_S);
      } finally {
        link.close();
        current = null;
        if (checkpointWatch !== null) clearInterval(checkpointWatch);
        checkpointWatch = null;
      }
    }
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    st.connection = 'stopped';
    save();
  }
  return stopSignal === 'SIGINT' ? EXIT.INTERRUPTED : EXIT.OK;
}
