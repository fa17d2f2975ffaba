/**
 * Directory look-ups of the master's journal (mirroring spec §4.2 `ddfsmirror/journal/`): which segment files
 * exist, and whether a path is a real directory (never a symlink planted in its place); and the census of the tree
 * that the seal of a clean unmount records (treeCensus, §4.3), also on a worker thread beside a pass
 * (startTreeCensus, census_worker.ts). mirror/ may not import node:fs (test/layering.test.ts); the segment files
 * themselves are read and written through the Device seam.
 *
 * Invariants: names are returned as the kernel gives them (journal names are ASCII, so text is exact); nothing here
 * writes but removeNoFollow; a census that did not walk the whole tree is never returned (startTreeCensus rejects).
 */
import * as fs from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DdfsError } from '../errors.js';
import { nativeTreeCensus, throwIfCensusStopped, type CensusShare } from './tree_census_native.js';
import { loadKoffiHere } from './ffi.js';

/**
 * The names in directory `dir`, unsorted.
 * @throws Node errors (ENOENT, ENOTDIR...) unchanged
 */
export function listNames(dir: string): string[] {
  return fs.readdirSync(dir);
}

/**
 * What is at `p` without following a symlink: 'dir', 'file', 'other', or null when nothing is there.
 * @throws Node errors other than ENOENT/ENOTDIR
 */
export function entryKind(p: string): 'dir' | 'file' | 'other' | null {
  try {
    const st = fs.lstatSync(p);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/**
 * The modification time of `p` in ms since the epoch, without following a symlink (a journal segment's age for
 * retention, mirroring spec §4.12), or null when nothing is there.
 * @throws Node errors other than ENOENT/ENOTDIR
 */
export function mtimeMsOf(p: string): number | null {
  try {
    return fs.lstatSync(p).mtimeMs;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Entry count and highest ctime of a tree (the seal of a clean unmount, mirroring spec §4.3). */
export interface TreeCensus {
  entryCount: number;
  /** Highest ctime in ns of any entry, the root included. */
  ctimeMaxNs: bigint;
}

/**
 * Count the entries under `root` (not the root itself) and find the highest ctime, with lstat only (never following
 * a symlink, never crossing into another file system, at most `depthMax` levels). Entries that vanish meanwhile are
 * skipped. `skipTopNames` (latin1 of the raw names) are left out at the top level, with all they hold. With
 * `stopFlag`, the walk stops before the next directory once another thread set it (throwIfCensusStopped).
 * Cost: one readdir per directory and one lstat per entry (a pass of an unmounted master pays it, mirroring spec
 * §4.3). The walk lstats with number stats (ctimeMs, a double: about 0.25 µs resolution today), which are cheaper
 * than bigint ones; the exact maximum in ns is then taken with a bigint lstat of only the entries whose ctimeMs is
 * the highest seen. That is exact, not an approximation: rounding ns to a double is monotonic, so the entry of the
 * highest ctimeNs always has the highest ctimeMs and is among the ones re-read (an entry changed between the two
 * reads only gets a newer ctime, which can only make a mismatch more likely, never hide one).
 * @throws Node errors of the root's lstat; DdfsError INTERRUPTED once `stopFlag` is set
 */
export function treeCensus(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set(), stopFlag?: Int32Array): TreeCensus {
  const top = fs.lstatSync(root, { bigint: true });
  const topDev = Number(top.dev);
  const out: TreeCensus = { entryCount: 0, ctimeMaxNs: top.ctimeNs };
  let maxMs = -Infinity;
  let atMax: Buffer[] = [];
  const slash = Buffer.from('/');
  const walk = (dir: Buffer, depth: number): void => {
    if (depth > depthMax) return;
    throwIfCensusStopped(stopFlag);
    let names: Buffer[];
    try {
      names = fs.readdirSync(dir, { encoding: 'buffer' });
    } catch {
      return;
    }
    const prefix = Buffer.concat([dir, slash]);
    for (const name of names) {
      if (depth === 1 && skipTopNames.has(name.toString('latin1'))) continue;
      const p = Buffer.concat([prefix, name]);
      let st: fs.Stats | undefined;
      try {
        st = fs.lstatSync(p, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (st === undefined) continue;
      out.entryCount++;
      if (st.ctimeMs > maxMs) {
        maxMs = st.ctimeMs;
        atMax = [p];
      } else if (st.ctimeMs === maxMs) atMax.push(p);
      if (st.isDirectory() && st.dev === topDev) walk(p, depth + 1);
    }
  };
  walk(root, 1);
  for (const p of atMax) {
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch {
      continue;
    }
    if (st !== undefined && st.ctimeNs > out.ctimeMaxNs) out.ctimeMaxNs = st.ctimeNs;
  }
  return out;
}

/**
 * The census of `root` in this thread, as fast as the platform allows (mirroring spec §4.3): nativeTreeCensus
 * (getdents64 + statx, about half the CPU of treeCensus), or treeCensus when glibc lacks those calls. With `share`,
 * only that share of it (see tree_census_native.ts; without the native calls share 0 takes the whole census and the
 * others count nothing, so the shares still add up). The daemon's seal check at mount and its seal at clean unmount
 * take it, and so does each census thread (with `stopFlag`, its stop: throwIfCensusStopped).
 * @throws DdfsError IO or Node errors of a walk that failed (never a census of part of the tree); INTERRUPTED once
 *   `stopFlag` is set
 */
export function censusHere(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set(), share?: CensusShare, stopFlag?: Int32Array): TreeCensus {
  try {
    return nativeTreeCensus(root, depthMax, skipTopNames, share, stopFlag);
  } catch (err) {
    // a failed walk is final; only the dynamic loader's error (no statx/getdents64 in this glibc) falls back
    if (err instanceof DdfsError) throw err;
    return share === undefined || share.part === 0 ? treeCensus(root, depthMax, skipTopNames, stopFlag) : { entryCount: 0, ctimeMaxNs: 0n };
  }
}

/** What startTreeCensus hands its worker (census_worker.ts). */
export interface CensusRequest {
  root: Uint8Array;
  depthMax: number;
  /** latin1 of the raw top-level names left out. */
  skipTopNames: string[];
  /** This worker's share of a census split between threads (tree_census_native.ts CensusShare); absent: all of it. */
  share?: CensusShare;
  /** Int32Array over a SharedArrayBuffer: element 0 set to 1 asks the walk to stop (CensusJob.stop). */
  stopFlag: Int32Array;
}

/**
 * The worker's messages: `{ loaded: true }` once its native calls are bound (the next census thread starts then),
 * then its one answer: the census (ctime in ns, decimal), or why the walk failed.
 */
export type CensusReply = { entryCount: number; ctimeMaxNs: string } | { error: string } | { loaded: true };

/** A census running beside the caller (startTreeCensus). */
export interface CensusJob {
  /**
   * The census once the walk is done.
   * @throws Error when the walk failed (the root's lstat), the worker could not start, died or was stopped before
   *   answering: never a census of part of the tree
   */
  readonly result: Promise<TreeCensus>;
  /**
   * Stop the walk (its result is no longer wanted); `result` then rejects unless it was already settled. Resolves once
   * every census thread ended (each stops before its next directory; one stuck for 30 s is let go). Idempotent.
   */
  stop(): Promise<void>;
  /** Whether the walk runs on a worker thread (false: in this thread, from TypeScript sources). */
  readonly threaded: boolean;
}

/** V8 heap bounds of the census thread: it holds one directory listing and a few paths at a time. */
const CENSUS_WORKER_RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };
/**
 * Threads a census is split between at most (tree_census_native.ts CensusShare). Two: each share still lists every
 * directory, so more threads add listings, and the machines this runs on have two cores or more.
 */
export const CENSUS_THREAD_COUNT_MAX = 2;
/**
 * How long CensusJob.stop waits for its threads to end, in ms: a thread checks its stop flag before each directory,
 * so it ends within one directory's listing (a million entries take about a second); one stuck longer is let go.
 */
const CENSUS_STOP_WAIT_MS = 30_000;

/** The compiled worker script, or null when running from TypeScript sources (vitest): then the walk runs inline. */
function censusWorkerUrl(): URL | null {
  const url = new URL('./census_worker.js', import.meta.url);
  return import.meta.url.endsWith('.js') && fs.existsSync(fileURLToPath(url)) ? url : null;
}

/**
 * Start treeCensus of `root` on worker threads (census_worker.ts), so that the caller's work (an unmounted master's
 * incremental pass, mirroring spec §4.3, §4.6) runs while the tree is walked; the caller awaits `result` before it
 * relies on the verdict. The walk is split between `threads` workers (default: CENSUS_THREAD_COUNT_MAX, at most the
 * cores there are), each taking one share of the entries (tree_census_native.ts): their counts add up, their highest
 * ctimes give the maximum, the same census as one walk. Each worker costs one thread start (a few ms) and a core
 * while it walks. From TypeScript sources (no compiled worker script) or with `inline`, the walk runs whole in this
 * thread at the next turn of the event loop (same result, no overlap).
 * @returns the job; it never throws: every failure is a rejection of `result` (one share that fails fails it all)
 */
export function startTreeCensus(root: Buffer, depthMax: number, skipTopNames: ReadonlySet<string> = new Set(), options: { inline?: boolean; threads?: number } = {}): CensusJob {
  const url = options.inline === true ? null : censusWorkerUrl();
  if (url === null) {
    let stopped = false;
    const result = new Promise<TreeCensus>((resolve, reject) => {
      setImmediate(() => {
        if (stopped) return reject(new Error('the census was stopped'));
        try {
          resolve(treeCensus(root, depthMax, skipTopNames));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    result.catch(() => undefined); // a job stopped or never awaited is no unhandled rejection
    return { result, threaded: false, stop: async () => { stopped = true; } };
  }
  const parts = Math.max(1, Math.min(options.threads ?? CENSUS_THREAD_COUNT_MAX, availableParallelism()));
  // koffi is loaded here first, and each census thread starts once the one before it loaded it (ffi.ts
  // loadKoffiHere): two threads initializing koffi at once can abort the process
  try {
    loadKoffiHere();
  } catch {
    // the threads fall back to the node:fs walk
  }
  const stopFlag = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  const workers: Worker[] = [];
  const exits: Array<Promise<void>> = [];
  let stopped = false;
  const settlers: Array<{ resolve: (c: TreeCensus) => void; reject: (e: Error) => void }> = [];
  const shares: Array<Promise<TreeCensus>> = [];
  for (let part = 0; part < parts; part++) shares.push(new Promise<TreeCensus>((resolve, reject) => settlers.push({ resolve, reject })));
  const startPart = (part: number): void => {
    const { resolve, reject } = settlers[part]!;
    if (stopped) return reject(new Error('the census was stopped'));
    const request: CensusRequest = { root: new Uint8Array(root), depthMax, skipTopNames: [...skipTopNames], stopFlag, ...(parts > 1 ? { share: { part, parts } } : {}) };
    let worker: Worker;
    try {
      worker = new Worker(url, { workerData: request, resourceLimits: CENSUS_WORKER_RESOURCE_LIMITS });
    } catch (err) {
      reject(new Error(`the census thread did not start: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    workers.push(worker);
    exits.push(new Promise<void>((resolve) => worker.once('exit', () => resolve())));
    let answered = false;
    let next = part + 1 < parts;
    const startNext = (): void => {
      if (!next) return;
      next = false;
      startPart(part + 1);
    };
    worker.on('message', (m: CensusReply) => {
      if ('loaded' in m) return startNext();
      answered = true;
      if ('error' in m) reject(new Error(m.error));
      else resolve({ entryCount: m.entryCount, ctimeMaxNs: BigInt(m.ctimeMaxNs) });
      startNext();
    });
    worker.once('error', (err) => {
      answered = true;
      reject(new Error(`the census thread failed: ${err instanceof Error ? err.message : String(err)}`));
      startNext();
    });
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`the census thread ended (exit code ${code}) before its census`));
      startNext();
    });
  };
  startPart(0);
  const result = Promise.all(shares).then((all) => all.reduce((sum, c) => ({
    entryCount: sum.entryCount + c.entryCount,
    ctimeMaxNs: c.ctimeMaxNs > sum.ctimeMaxNs ? c.ctimeMaxNs : sum.ctimeMaxNs,
  })));
  result.catch(() => undefined);
  // a thread is asked to stop (at its next directory) and left to end by itself: Worker.terminate() while it is
  // inside a koffi call aborts the whole process (napi_throw from a thread being torn down)
  const askStop = (): void => {
    stopped = true;
    Atomics.store(stopFlag, 0, 1);
  };
  // the other shares are not wanted once one failed
  result.then(undefined, askStop);
  return {
    result,
    threaded: true,
    stop: async () => {
      askStop();
      const ended = Promise.all(exits.splice(0));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), CENSUS_STOP_WAIT_MS);
      });
      const inTime = await Promise.race([ended.then(() => true), late]);
      clearTimeout(timer);
      // a thread stuck in one directory (a hung network file system) is left to finish its read-only walk: it no
      // longer holds this process open
      if (!inTime) for (const w of workers) w.unref();
      workers.splice(0);
    },
  };
}

/**
 * Remove the file `p` (unlink: a symlink there is removed, never followed).
 * @returns false when nothing was there
 * @throws Node errors other than ENOENT
 */
export function removeNoFollow(p: string): boolean {
  try {
    fs.unlinkSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
