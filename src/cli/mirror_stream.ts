/**
 * `mirrorddumbfs stream SRC DST` (mirroring spec §4.10): a long-lived loop of copy passes.
 *
 * - Between passes it waits for the master's journal head (durable_head, §4.3) to move past the replica's claim:
 *   a local master's journal segments (mounted or not: read only, never written) are looked at when the journal
 *   directory changes (inotify) and at least every -i seconds, each look decoding only the bytes appended since the
 *   last (HeadWatch), and a pass starts as soon as the head is above the claim: at once after a pass when the master
 *   moved during it (no -i wait while behind), or when --max-interval seconds went by since the last pass (changes
 *   that leave no journal record). A master whose head cannot be read (remote, or without a journal) gets a pass
 *   every -i seconds. After a pass that covered no TID (a content pass of an unmounted master whose journal is not
 *   trusted: its seal dropped by a refused incremental pass, or an unclean stop) the claim's TID is 0, below any
 *   head: the next pass waits for the head to pass the one looked at before that pass instead (a daemon's change
 *   makes a record above it), or --max-interval, rather than following it with content passes back to back.
 * - A refused pass (runMaster refuses the COMMIT of an incremental pass whose seal census found a change behind the
 *   journal) commits nothing: into a local slave copyLocal runs the content pass at once; into a remote one the pass
 *   fails here and the retry after the back-off is that content pass.
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
import { Crc32c } from '../mirror/crc32c.js';
import { decodeSegmentRecords, JOURNAL_DIRECTORY, JOURNAL_HEADER_SIZE, SEGMENT_NAME, segmentBaseTid } from '../mirror/journal.js';
import { LinkMeter } from '../mirror/link_meter.js';
import { CheckpointCut } from '../mirror/record_cut.js';
import { claimTid, mirrorDirectory, readMirrorState } from '../mirror/state.js';
import { writeStreamState, type StreamState } from '../mirror/stream_state.js';
import { MIRROR_STREAM_BACKOFF_MAX_S, MIRROR_STREAM_CUT_WAIT_S, MIRROR_STREAM_NO_PROGRESS_WAIT_S } from '../limits.js';
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
  /**
   * --content-interval: seconds between two content passes the stream asks for (copy --content: the whole tree by
   * digest, which repairs what the journal missed, issue 8), counted from the stream's start; 0 or undefined: never.
   */
  contentInterval?: number;
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
/** One pass of the stream over `link`; `content`: a content pass whatever the journal allows (--content-interval). */
export type RunPass = (link: PassLink, content: boolean) => Promise<number>;

/** Where the stream looks for the master's head and the replica's claim. */
export interface StreamEndpoints {
  /** The local master's parent directory, or null when it is remote. */
  localMaster: string | null;
  /** The local slave's parent directory, or null when it is remote. */
  localSlave: string | null;
  /** Where ddfsmirror/stream is written (the slave's, or the master's when the slave is remote), or null. */
  stateAt: string | null;
}

/** What HeadWatch knows of one segment: the bytes decoded so far and the highest TID in them. */
interface SegmentTail {
  /** The file's inode, size and mtime when last read. */
  ino: bigint;
  sizeBytes: number;
  mtimeNs: bigint;
  /** Bytes up to the end of the last valid record (the header's end when none); reading resumes here. */
  goodBytes: number;
  baseTid: bigint | null;
  /** Highest TID of a valid record, 0n when none. */
  maxTid: bigint;
  /**
   * A corrupt record at goodBytes: nothing after it counts until the file changes (a mount's recovery truncates the
   * segment there and appends after it, so reading goes on from goodBytes).
   */
  stopped: boolean;
}

/**
 * Reads a local master's journal head (spec §4.3 durable_head as the segments on disk show it) and wakes a waiting
 * stream when the journal directory changes. Segments are append-only (journal.ts), so each read decodes only the
 * bytes appended since the previous one (from the end of the last valid record): a look costs O(new records), not
 * O(journal) (a whole-journal scan took 0.1-0.5 s per look at 66k records, and grew with the run: the gap between
 * passes of a stream behind a master ingesting cp -a went from 0.15 s to 0.95 s). A segment that shrank or was
 * replaced is read again from its start; one dropped by retention is forgotten.
 * The head read is that of the records on disk: a trigger for a pass, never what a pass covers (the pass takes its
 * own durable head).
 */
export class HeadWatch {
  private readonly dir: string;
  private readonly tails = new Map<string, SegmentTail>();
  private crc: Crc32c | null = null;
  private watcher: fs.FSWatcher | null = null;
  private onChange: (() => void) | null = null;
  /** Bytes decoded so far (tests: a look reads only what was appended). */
  bytesRead = 0;

  constructor(private readonly parentDir: string) {
    this.dir = path.join(mirrorDirectory(parentDir), JOURNAL_DIRECTORY);
  }

  /** The head TID, or null when there is no journal or it cannot be read now. */
  async read(): Promise<bigint | null> {
    let names: string[];
    try {
      if (!fs.lstatSync(this.dir).isDirectory()) return this.forget();
      names = fs.readdirSync(this.dir).filter((n) => SEGMENT_NAME.test(n)).sort();
    } catch {
      return this.forget();
    }
    this.crc ??= await Crc32c.load();
    for (const known of [...this.tails.keys()]) if (!names.includes(known)) this.tails.delete(known);
    try {
      for (const n of names) this.readSegment(n);
    } catch {
      return this.forget(); // a segment dropped by retention while read: read again at the next look
    }
    let next = 1n;
    let head = 0n;
    for (const n of names) {
      const t = this.tails.get(n)!;
      if (t.baseTid !== null && t.baseTid > next) next = t.baseTid;
      if (t.maxTid > head) head = t.maxTid;
    }
    if (head === 0n) {
      // no record: the head is below next_tid (journal.ts summarizeJournal), the state's next_tid a floor
      const st = readMirrorState(this.parentDir);
      const floor = st?.nextTid !== undefined ? BigInt(st.nextTid) : 1n;
      head = (floor > next ? floor : next) - 1n;
    }
    return head;
  }

  private forget(): null {
    this.tails.clear();
    return null;
  }

  /** Decode what was appended to segment `name` since the last read (all of it when new, shrunk or replaced). */
  private readSegment(name: string): void {
    const file = path.join(this.dir, name);
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const stat = fs.fstatSync(fd, { bigint: true });
      const size = Number(stat.size);
      let t = this.tails.get(name);
      if (t !== undefined && t.ino === stat.ino && t.sizeBytes === size && t.mtimeNs === stat.mtimeNs) return;
      if (t === undefined || t.ino !== stat.ino || size < t.goodBytes) {
        // new, replaced, or cut below what was read: from its start
        t = { ino: stat.ino, sizeBytes: 0, mtimeNs: 0n, goodBytes: 0, baseTid: null, maxTid: 0n, stopped: false };
        this.tails.set(name, t);
      }
      t.sizeBytes = size;
      t.mtimeNs = stat.mtimeNs;
      t.stopped = false;
      const from = t.goodBytes;
      const buf = Buffer.allocUnsafe(size - from);
      let got = 0;
      while (got < buf.length) {
        const n = fs.readSync(fd, buf, got, buf.length - got, from + got);
        if (n === 0) break;
        got += n;
      }
      this.bytesRead += got;
      const bytes = buf.subarray(0, got);
      let o = 0;
      if (from === 0) {
        // a segment being created (its header comes next), or not a segment (yet): read again when it changes
        t.baseTid = segmentBaseTid(bytes);
        if (t.baseTid === null) return;
        o = JOURNAL_HEADER_SIZE;
      }
      // a torn record is one being written: read from its start next time; a corrupt one (or TIDs out of order)
      // stops the reading until the file changes
      const run = decodeSegmentRecords(this.crc!, bytes, o, t.maxTid > 0n ? t.maxTid : t.baseTid! - 1n);
      if (run.recordCount > 0) t.maxTid = run.maxTid;
      t.stopped = run.stop === 'corrupt';
      t.goodBytes = from + run.endBytes;
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Call `onChange` whenever the journal directory or a segment in it changes (inotify through fs.watch), so a
   * waiting stream looks at the head at once rather than at its next -i look. Best effort: without a journal
   * directory, or where watching fails, nothing is called and the looks every -i remain.
   */
  watch(onChange: () => void): void {
    this.onChange = onChange;
    if (this.watcher !== null) return;
    try {
      this.watcher = fs.watch(this.dir, { persistent: false }, () => this.onChange?.());
      this.watcher.on('error', () => this.unwatch());
    } catch {
      this.watcher = null;
    }
  }

  /** Whether changes wake the stream (watch() succeeded and was not closed). */
  get watching(): boolean {
    return this.watcher !== null;
  }

  /** Stop watching. */
  unwatch(): void {
    this.watcher?.close();
    this.watcher = null;
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
 * @param stop aborting it acts as a SIGTERM (tests, and a caller that embeds the stream)
 * @returns EXIT.OK after SIGTERM (or `stop`), EXIT.INTERRUPTED after SIGINT
 */
export async function runStream(ends: StreamEndpoints, opts: StreamOptions, runPass: RunPass, log: (line: string) => void, stop?: AbortSignal): Promise<number> {
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
  const onAbort = (): void => onSignal('SIGTERM');
  stop?.addEventListener('abort', onAbort);
  if (stop?.aborted === true) onSignal('SIGTERM');
  const heads = ends.localMaster === null ? null : new HeadWatch(ends.localMaster);
  const st: StreamState = {
    pid: process.pid, connection: 'connecting', lastPassTime: null, passCount: 0, retryCount: 0, lagSeconds: null, lastError: null,
    headTid: null, claimTid: null, lagTids: null, lastPassStartTime: null, headLooks: 0,
  };
  let claim: bigint | null = ends.localSlave === null ? null : slaveClaim(ends.localSlave);
  let head: bigint | null = null;
  /**
   * The TID the head must pass for the next pass: the claim, except after a pass that covered no TID (tid_end 0: a
   * content pass of an unmounted master whose journal is not trusted, e.g. its seal dropped by a refused incremental
   * pass, or a mount that did not end cleanly). Such a claim stays 0 while the head is above it, so comparing the
   * two started a full content pass back to back, forever, until the next mount. It is the head looked at before
   * that pass started instead: a change since then made by a daemon has a record above it; one made offline leaves
   * none, as for any master, and --max-interval covers it.
   */
  let waitAbove: bigint | null = claim;
  /** --content-interval: when the last content pass the stream asked for ended (first: the stream's start). */
  const contentEveryMs = (opts.contentInterval ?? 0) * 1000;
  let lastContentAt = Date.now();
  const contentDue = (): boolean => contentEveryMs > 0 && Date.now() - lastContentAt >= contentEveryMs;
  const save = (): void => {
    st.headTid = head === null ? null : head.toString();
    st.claimTid = claim === null ? null : claim.toString();
    // the lag is counted from what the replica reflects: its claim, or after a pass that covered no TID the head
    // that pass started at (a content pass reflects every change made before it began), not from TID 0
    const reflected = waitAbove ?? claim;
    st.lagTids = head === null ? null : (head > (reflected ?? 0n) ? head - (reflected ?? 0n) : 0n).toString();
    const behind = head === null || reflected === null || head > reflected;
    st.lagSeconds = st.lastPassStartTime == null ? null : behind ? (Date.now() - Date.parse(st.lastPassStartTime!)) / 1000 : 0;
    if (ends.stateAt === null) return;
    try {
      writeStreamState(ends.stateAt, st);
    } catch {
      // the state is informative only
    }
  };
  /** Sleep `seconds`, cut short by a signal, and with `onJournal` by a change of the master's journal too. */
  let journalWake: (() => void) | null = null;
  const sleep = (seconds: number, onJournal = false): Promise<void> => new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      wake = null;
      journalWake = null;
      resolve();
    };
    const t = setTimeout(done, seconds * 1000);
    wake = done;
    if (onJournal) journalWake = done;
  });
  /**
   * Wait until the head is above the claim, --max-interval ran out, or a signal came. While the head is above the
   * claim (the master moved during the last pass) this returns at once: no -i wait while behind. With a readable
   * head it looks again every -i seconds, and at once when the journal directory changes (HeadWatch.watch).
   * @param progressed whether the last pass moved the claim: if not, a head above it is a record not yet durable
   *   (the pass took the durable head), so the next look comes after MIRROR_STREAM_NO_PROGRESS_WAIT_S
   */
  const waitForChange = async (since: number, progressed: boolean): Promise<void> => {
    if (!progressed && heads !== null) await sleep(Math.min(opts.interval, MIRROR_STREAM_NO_PROGRESS_WAIT_S));
    for (;;) {
      if (stopSignal !== null) return;
      head = heads === null ? null : await heads.read();
      if (heads !== null) st.headLooks = (st.headLooks ?? 0) + 1;
      save();
      const base = waitAbove ?? claim;
      if (contentDue()) return;
      if (head === null || base === null) {
        // nothing to compare: a pass every -i
        if (Date.now() - since >= opts.interval * 1000) return;
      } else if (head > base) {
        return;
      }
      if (Date.now() - since >= opts.maxInterval * 1000) return;
      if (heads === null) {
        await sleep(Math.max(0, opts.interval - (Date.now() - since) / 1000));
      } else {
        heads.watch(() => journalWake?.());
        await sleep(Math.min(opts.interval, Math.max(0, opts.maxInterval - (Date.now() - since) / 1000)), true);
      }
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
      const headAtStart = head;
      const link = new PassLink(rate, opts.timeout, (l) => log(`stream: ${l}`));
      current = link;
      const content = contentDue();
      if (content) log(`stream: a content pass (--content-interval ${opts.contentInterval} s)`);
      try {
        // a pass that reports a problem (a remote side's error exit, master blocks not sent) is retried like a failed one
        const code = await runPass(link, content);
        current = null;
        if (checkpointWatch !== null) clearInterval(checkpointWatch);
        checkpointWatch = null;
        if (code !== EXIT.OK) throw new Error(`the pass exited ${code}`);
        st.passCount += 1;
        st.retryCount = 0;
        st.lastError = null;
        st.lastPassTime = new Date().toISOString();
        st.lastPassStartTime = startedAt;
        if (content) lastContentAt = Date.now();
        const claimBefore = claim;
        claim = ends.localSlave !== null ? slaveClaim(ends.localSlave) : link.tidEnd !== null && link.tidEnd > 0n ? link.tidEnd : null;
        const coveredNoTid = ends.localSlave !== null ? claim === 0n : link.tidEnd === 0n;
        waitAbove = coveredNoTid && headAtStart !== null ? headAtStart : claim;
        if (coveredNoTid && headAtStart !== null) log(`stream: the pass covered no TID (the master's journal is not trusted): the next pass waits for the journal head to pass ${headAtStart}, or --max-interval`);
        backoff = opts.backoff;
        st.connection = 'idle';
        head = heads === null ? null : await heads.read(); // the state never pairs the new claim with an older head
        save();
        await waitForChange(Date.now(), claim === null || claimBefore === null || claim > claimBefore);
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
    heads?.unwatch();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    stop?.removeEventListener('abort', onAbort);
    st.connection = 'stopped';
    save();
  }
  return stopSignal === 'SIGINT' ? EXIT.INTERRUPTED : EXIT.OK;
}
