/**
 * Read and hash many blocks of the block file, using every core (fsck -C, -r, -R, and the suspect re-hash of -n;
 * mirror passes hash through the persistent HashWorkers below).
 *
 * The main thread reads batches (one pread of up to HASH_JOB_SIZE_MAX bytes of consecutive addresses) into shared
 * buffers and names each batch (neither copied nor transferred) to the least busy worker, which hashes the wanted
 * blocks in place into the batch's shared hashes buffer. Up to HASH_BATCHES_IN_FLIGHT_PER_THREAD batches per worker
 * are in flight, so reading overlaps hashing. Results are delivered to `onBlock` in
 * the order of the runs, on the main thread (callers update the index there without locks).
 *
 * Small jobs (fewer than HASH_WORKER_MIN_BLOCKS blocks) and runs from TypeScript sources (tests: workers need the
 * compiled hash_worker.js) hash inline on the main thread.
 *
 * A read error (EIO) of a batch is retried block by block so one bad sector costs one block; blocks past the end of
 * the block file, or in a short read, are delivered with hash null.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HashName } from '../format/config.js';
import type { Device } from '../io/device.js';
import { createHasher } from './hash.js';
import { loadKoffiHere } from '../io/ffi.js';
import { HASH_JOB_SIZE_MAX, HASH_WORKER_NICE } from '../limits.js';
import { assert } from '../util/assert.js';

/** Largest run pack moves with one pread (4 MiB, as upstream's pack buffer); hashing uses HASH_JOB_SIZE_MAX. */
export const HASH_BATCH_SIZE_MAX = 4 * 1024 * 1024;
/** Below this many blocks, starting workers costs more than it saves. */
export const HASH_WORKER_MIN_BLOCKS = 2048;
/**
 * Batches of hashBlocks queued or hashing per hash thread. With two, each thread sat idle a quarter of fsck -C's hash
 * phase, waiting for the main thread to read its next batch (its reads and deliveries compete with the threads for
 * the same cores); four keep a batch queued behind the one hashing (hash phase of the bench volume, warm: ~2.3 ->
 * ~1.8 s; six or eight gained nothing more). Memory: this many HASH_JOB_SIZE_MAX buffers per thread.
 */
export const HASH_BATCHES_IN_FLIGHT_PER_THREAD = 4;
/** Two unwanted blocks between wanted ones are read rather than split into two preads when the gap is at most this. */
export const HASH_READ_GAP_MAX = 16;

/** What a hash thread is started with: the hash, the block size, and its nice value (set once, for its own thread). */
export interface HashWorkerData {
  hashName: HashName;
  blockSize: number;
  nice: number;
}

/** Message to a worker. */
export interface HashJob {
  id: number;
  data: ArrayBuffer;
  blockCount: number;
  /** Bytes actually read (blocks wholly inside are hashed). */
  validBytes: number;
  /** wanted[k] = 0 skips block k (a gap read only to keep one pread). */
  wanted: Uint8Array | null;
}

/** Message from a worker. */
export interface HashDone {
  id: number;
  data: ArrayBuffer;
  hashes: ArrayBuffer;
}

/**
 * Messages to a worker of HashWorkers for a shared batch (HashWorkers.sharedBatch): `slot` registers a batch's
 * SharedArrayBuffer and the one its hashes go to, once per worker; `hash` names a registered slot, so a batch crosses
 * to a thread and back with a message of a few numbers: no ArrayBuffer is transferred, detached or created per batch
 * (each of those was a postMessage copy of the backing store's bookkeeping and external memory that made V8 run a
 * full GC every 64 MiB of blocks).
 */
export type HashSlotMessage =
  | { op: 'slot'; slot: number; data: SharedArrayBuffer; hashes: SharedArrayBuffer }
  | {
    op: 'hash'; id: number; slot: number; blockCount: number; offset: number;
    /** hashBlocks only: blocks wholly inside the first validBytes of the batch are hashed (default: all). */
    validBytes?: number;
    /** hashBlocks only: wanted[k] = 0 skips block k, a gap read only to keep one pread (default: all wanted). */
    wanted?: Uint8Array | null;
  };

/**
 * The end of a hash thread: it answers the jobs posted before it (messages are taken in order), then closes its port
 * and ends by itself. Threads are never terminated from outside: one stopped inside a koffi call (libgcrypt's TIGER)
 * aborts the whole process.
 */
export interface HashEndMessage {
  op: 'end';
}

/** A hash thread's first message: its hash (libgcrypt through koffi) is loaded; the next thread starts then. */
export interface HashThreadLoaded {
  loaded: true;
}

/** A worker's answer to a `hash` HashSlotMessage: the slot's hashes buffer holds the batch's hashes. */
export interface HashSlotDone {
  id: number;
  slot: number;
}

/** One hash thread: jobs posted and not answered yet, and the shared batches registered with it (HashWorkers). */
interface HashThread {
  w: Worker;
  pending: number;
  slots: Set<number>;
}

/**
 * Start `count` hash threads one after another, each once the one before it loaded its hash (HashThreadLoaded) or
 * ended: two threads initializing koffi at the same moment can abort the process (ffi.ts loadKoffiHere, koffi is
 * loaded in this thread first). `threads` fills as they start; jobs may be posted to a thread before it loaded.
 * `end()` starts no more threads, asks each to end after its jobs (HashEndMessage) and resolves once all ended.
 */
function startHashThreads(count: number, data: HashWorkerData, onAnswer: (m: HashDone | HashSlotDone) => void, onError: (err: unknown) => void): { threads: HashThread[]; end(): Promise<void> } {
  try {
    loadKoffiHere();
  } catch {
    // the threads fail the same way when they load the hash, and report it
  }
  const threads: HashThread[] = [];
  const exits: Array<Promise<void>> = [];
  let ending = false;
  const startOne = (i: number): void => {
    if (ending || i >= count) return;
    const w = new Worker(workerUrl()!, { workerData: data, resourceLimits: HASH_WORKER_RESOURCE_LIMITS });
    const t: HashThread = { w, pending: 0, slots: new Set() };
    let nextStarted = false;
    const startNext = (): void => {
      if (nextStarted) return;
      nextStarted = true;
      startOne(i + 1);
    };
    exits.push(new Promise<void>((resolve) => w.once('exit', () => resolve())));
    w.on('message', (m: HashDone | HashSlotDone | HashThreadLoaded) => {
      if ('loaded' in m) return startNext();
      t.pending--;
      onAnswer(m);
    });
    w.on('error', (err) => {
      onError(err);
      startNext();
    });
    w.once('exit', startNext);
    threads.push(t);
  };
  startOne(0);
  return {
    threads,
    end: async () => {
      ending = true;
      for (const t of threads) t.w.postMessage({ op: 'end' } satisfies HashEndMessage);
      await Promise.all(exits);
    },
  };
}

export interface BlockRun {
  address: number;
  count: number;
}

export interface HashBlocksOptions {
  device: Device;
  blockSize: number;
  hashName: HashName;
  /** Ascending, non-overlapping runs of addresses. */
  runs: Iterable<BlockRun>;
  /** Worker threads; 0 = inline; default: the number of CPUs (inline for small jobs). */
  threads?: number;
  /** Total blocks in `runs`, when known (decides inline vs workers and feeds progress). */
  totalBlocks?: number;
  /**
   * Called once per block of the runs, in order. `hash` is a view valid only during the call (null: unreadable).
   * `data` is the block's content (a view, same lifetime).
   */
  onBlock: (address: number, hash: Buffer | null, data: Buffer | null) => void;
  onProgress?: (blocksDone: number) => void;
  /** Stop reading once aborted (Ctrl-C): the batches in flight are delivered, then hashBlocks returns early. */
  signal?: AbortSignal;
}

export interface HashBlocksResult {
  hashed: number;
  /** Blocks that could not be read (I/O error, short read, past EOF). */
  unreadable: number;
  /** Worker threads used (0 = inline). */
  threads: number;
}

interface Batch {
  address: number;
  blockCount: number;
  wanted: Uint8Array | null;
}

/** Group runs into batches of consecutive addresses (small gaps are read and skipped). */
function* batchesOf(runs: Iterable<BlockRun>, blocksMax: number): Generator<Batch> {
  let cur: { address: number; count: number; wanted: number[] | null } | null = null;
  const finish = (b: { address: number; count: number; wanted: number[] | null }): Batch => {
    let wanted: Uint8Array | null = null;
    if (b.wanted) {
      wanted = new Uint8Array(b.count);
      for (const k of b.wanted) wanted[k] = 1;
    }
    return { address: b.address, blockCount: b.count, wanted };
  };
  for (const run of runs) {
    let a = run.address;
    let left = run.count;
    while (left > 0) {
      if (cur) {
        const gap = a - (cur.address + cur.count);
        assert(gap >= 0, 'hash runs must ascend');
        if (gap <= HASH_READ_GAP_MAX && cur.count + gap < blocksMax) {
          if (gap > 0 && !cur.wanted) cur.wanted = Array.from({ length: cur.count }, (_, k) => k);
          const take = Math.min(left, blocksMax - cur.count - gap);
          if (cur.wanted) for (let k = 0; k < take; k++) cur.wanted.push(cur.count + gap + k);
          cur.count += gap + take;
          a += take;
          left -= take;
          continue;
        }
        yield finish(cur);
        cur = null;
      }
      const take = Math.min(left, blocksMax);
      cur = { address: a, count: take, wanted: null };
      a += take;
      left -= take;
    }
  }
  if (cur) yield finish(cur);
}

/**
 * V8 heap bounds of a hash thread. Its heap holds only small per-batch objects (the batch bytes are transferred
 * ArrayBuffers, outside the heap), but V8's defaults let each thread's young generation grow to tens of MiB of RSS
 * before collecting: with 2 threads that was a fifth of fsck -C's peak memory (issue 9).
 */
const HASH_WORKER_RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 };

/**
 * What a HashWorkers pool hashes inline before it starts its threads (bytes): a small pass (an incremental one of a
 * few hundred blocks) is hashed in a few ms on its own thread, while starting the threads costs each of them a module
 * load (about 50 ms of CPU, 150-250 ms of wall under load on 2 cores) that the pass would wait for at its first batch.
 */
const HASH_WORKERS_INLINE_BYTES_MAX = 4 * 1024 * 1024;

let workerUrlCache: URL | null | undefined;

/** The compiled worker script, or null when running from TypeScript sources. */
function workerUrl(): URL | null {
  if (workerUrlCache !== undefined) return workerUrlCache;
  const url = new URL('./hash_worker.js', import.meta.url);
  workerUrlCache = import.meta.url.endsWith('.js') && existsSync(fileURLToPath(url)) ? url : null;
  return workerUrlCache;
}

/** Number of hash threads fsck uses by default (one per CPU). */
export function defaultHashThreads(): number {
  return workerUrl() ? availableParallelism() : 0;
}

/**
 * Read and hash every block of `runs` (spec §10.4: 1 reader, N hashing threads), or, once `options.signal` aborts,
 * those of the batches already read (the caller tells an early return by its signal).
 * @throws the device's errors other than EIO (EIO is retried per block and reported as unreadable blocks)
 */
export async function hashBlocks(options: HashBlocksOptions): Promise<HashBlocksResult> {
  const bs = options.blockSize;
  const blocksMax = Math.max(1, Math.floor(HASH_JOB_SIZE_MAX / bs));
  let threads = options.threads ?? availableParallelism();
  if (!workerUrl() || (options.totalBlocks !== undefined && options.totalBlocks < HASH_WORKER_MIN_BLOCKS)) threads = 0;
  const hasher = createHasher(options.hashName);
  const hs = hasher.hashSize;
  let hashed = 0;
  let unreadable = 0;
  let done = 0;

  const deliver = (batch: Batch, data: Buffer, validBytes: number, hashes: Buffer | null, badBlocks: Set<number> | null): void => {
    for (let k = 0; k < batch.blockCount; k++) {
      if (batch.wanted && batch.wanted[k] === 0) continue;
      const a = batch.address + k;
      const ok = (k + 1) * bs <= validBytes && !(badBlocks?.has(k));
      if (!ok) {
        unreadable++;
        options.onBlock(a, null, null);
      } else {
        const block = data.subarray(k * bs, (k + 1) * bs);
        const h = hashes ? hashes.subarray(k * hs, (k + 1) * hs) : hasher.hashInto(block, Buffer.allocUnsafe(hs), 0);
        hashed++;
        options.onBlock(a, h, block);
      }
      done++;
    }
    options.onProgress?.(done);
  };

  /** pread a batch; EIO ⇒ per-block reads, failing blocks reported in badBlocks. */
  const readBatch = async (batch: Batch, buf: Buffer): Promise<{ validBytes: number; badBlocks: Set<number> | null }> => {
    const len = batch.blockCount * bs;
    try {
      return { validBytes: await options.device.read(buf, 0, len, batch.address * bs), badBlocks: null };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EIO') throw err;
      const bad = new Set<number>();
      let valid = len;
      for (let k = 0; k < batch.blockCount; k++) {
        try {
          const n = await options.device.read(buf, k * bs, bs, (batch.address + k) * bs);
          if (n < bs) { valid = Math.min(valid, k * bs + n); break; }
        } catch {
          bad.add(k);
          buf.fill(0, k * bs, (k + 1) * bs);
        }
      }
      return { validBytes: valid, badBlocks: bad };
    }
  };

  if (threads === 0) {
    const buf = Buffer.allocUnsafe(blocksMax * bs);
    for (const batch of batchesOf(options.runs, blocksMax)) {
      if (options.signal?.aborted) break;
      const { validBytes, badBlocks } = await readBatch(batch, buf);
      deliver(batch, buf, validBytes, null, badBlocks);
    }
    return { hashed, unreadable, threads: 0 };
  }

  const waiting = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>();
  let failure: unknown = null;
  const pool = startHashThreads(threads, { hashName: options.hashName, blockSize: bs, nice: HASH_WORKER_NICE }, (m) => {
    const p = waiting.get(m.id);
    waiting.delete(m.id);
    p?.resolve();
  }, (err) => {
    failure = err;
    for (const p of waiting.values()) p.reject(err);
    waiting.clear();
  });
  const workers = pool.threads;
  try {
    // Batches are shared buffers (slots) registered once with each thread that hashes them: a job crosses with a
    // message of a few numbers, where transferring each batch's ArrayBuffer there and back cost ~150 µs of
    // postMessage per MiB on each side and a full GC every few dozen MiB (fsck -C of 1.3 GiB: ~0.5 s of CPU).
    const free: BatchSlot[] = [];
    let slotCount = 0;
    const queue: Array<{ batch: Batch; slot: BatchSlot; result: Promise<void>; validBytes: number; badBlocks: Set<number> | null }> = [];
    let nextId = 0;
    const inFlightMax = HASH_BATCHES_IN_FLIGHT_PER_THREAD * threads;
    const finishOne = async (): Promise<void> => {
      const head = queue.shift()!;
      await head.result;
      deliver(head.batch, head.slot.data, head.validBytes, head.slot.hashes, head.badBlocks);
      free.push(head.slot);
    };
    for (const batch of batchesOf(options.runs, blocksMax)) {
      if (failure) throw failure;
      if (options.signal?.aborted) break;
      const slot = free.pop() ?? newBatchSlot(slotCount++, blocksMax * bs, blocksMax * hs);
      const { validBytes, badBlocks } = await readBatch(batch, slot.data);
      const t = workers.reduce((x, y) => (y.pending < x.pending ? y : x));
      const id = nextId++;
      const result = new Promise<void>((resolve, reject) => waiting.set(id, { resolve, reject }));
      t.pending++;
      if (!t.slots.has(slot.slot)) {
        t.slots.add(slot.slot);
        t.w.postMessage({ op: 'slot', slot: slot.slot, data: slot.dataBuffer, hashes: slot.hashesBuffer } satisfies HashSlotMessage);
      }
      t.w.postMessage({ op: 'hash', id, slot: slot.slot, blockCount: batch.blockCount, offset: 0, validBytes, wanted: batch.wanted } satisfies HashSlotMessage);
      queue.push({ batch, slot, result, validBytes, badBlocks });
      while (queue.length >= inFlightMax) await finishOne();
    }
    while (queue.length > 0) await finishOne();
    if (failure) throw failure;
  } finally {
    await pool.end();
  }
  return { hashed, unreadable, threads };
}

/** One shared batch buffer of hashBlocks and the shared buffer its hashes are written to (registered per thread). */
interface BatchSlot {
  slot: number;
  dataBuffer: SharedArrayBuffer;
  hashesBuffer: SharedArrayBuffer;
  data: Buffer;
  hashes: Buffer;
}

function newBatchSlot(slot: number, dataBytes: number, hashBytes: number): BatchSlot {
  const dataBuffer = new SharedArrayBuffer(dataBytes);
  const hashesBuffer = new SharedArrayBuffer(hashBytes);
  return { slot, dataBuffer, hashesBuffer, data: Buffer.from(dataBuffer), hashes: Buffer.from(hashesBuffer) };
}

/** What HashWorkers.hash resolves to: the batch's bytes handed back, and hashSize bytes of hash per block. */
export interface HashedBatch {
  data: Buffer;
  hashes: Buffer;
}

/**
 * A persistent pool of hash threads for a stream of batches (mirror passes: the master re-hashes every block it
 * sends, the slave every block it receives, spec mirroring §4.6 step 6 and §4.7). Unlike hashBlocks, the caller reads
 * the bytes; each batch is transferred to the least busy worker (not copied) and handed back with its hashes.
 * Results of different batches may settle in any order; each promise names its own batch.
 *
 * With 0 threads (or from TypeScript sources, where no compiled worker exists) batches are hashed inline, at once;
 * so are the first HASH_WORKERS_INLINE_BYTES_MAX bytes of any pool (the threads start with the batch past them).
 * Invariant: a worker failure rejects every batch in flight and every later one; close() ends the threads.
 */
export class HashWorkers {
  private workers: HashThread[] = [];
  private pool: { end(): Promise<void> } | null = null;
  private readonly waiting = new Map<number, { resolve: (d: HashDone | HashSlotDone) => void; reject: (e: unknown) => void }>();
  private readonly hasher;
  private failure: unknown = null;
  private nextId = 0;
  /** Bytes hashed inline so far, before the threads start (see HASH_WORKERS_INLINE_BYTES_MAX). */
  private inlineBytes = 0;
  /** Threads still to start (at the first batch past the inline bytes). */
  private threadsToStart: number;
  /** Shared batches seen by hash(): their slot number and the shared buffer their hashes are written to. */
  private readonly slots = new WeakMap<SharedArrayBuffer, { slot: number; hashesBuffer: SharedArrayBuffer; hashes: Buffer }>();
  private nextSlot = 0;
  /** Threads of this pool, started or to start (0 once closed). */
  private threadCount: number;

  /**
   * A batch buffer of `byteLength` bytes over a SharedArrayBuffer, for hash(): the batch is hashed in place by a
   * worker (nothing transferred, nothing allocated per batch), and the caller keeps using the same Buffer. Reuse one
   * for many batches (a few per pass): each new one is registered with every worker that hashes it.
   */
  static sharedBatch(byteLength: number): Buffer {
    return Buffer.from(new SharedArrayBuffer(byteLength));
  }

  private constructor(private readonly hashName: HashName, private readonly blockSize: number, threads: number, private readonly nice: number) {
    this.hasher = createHasher(hashName);
    this.threadsToStart = threads;
    this.threadCount = threads;
  }

  private startThreads(): void {
    const { hashName, blockSize, nice } = this;
    const threads = this.threadsToStart;
    this.threadsToStart = 0;
    const pool = startHashThreads(threads, { hashName, blockSize, nice }, (m) => {
      const p = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      p?.resolve(m);
    }, (err) => {
      this.failure = err;
      for (const p of this.waiting.values()) p.reject(err);
      this.waiting.clear();
    });
    this.workers = pool.threads;
    this.pool = pool;
  }

  /**
   * Start `threads` hash threads (default: one per CPU; 0, or no compiled worker script: hash inline), each at nice
   * value `nice` (default HASH_WORKER_NICE; Linux nice values are per thread).
   * @throws DdfsError NOT_SUPPORTED when the hash cannot be loaded (createHasher)
   */
  static start(hashName: HashName, blockSize: number, threads = defaultHashThreads(), nice = HASH_WORKER_NICE): HashWorkers {
    return new HashWorkers(hashName, blockSize, workerUrl() ? threads : 0, nice);
  }

  /** Worker threads running, or to be started past the first HASH_WORKERS_INLINE_BYTES_MAX (0 = inline). */
  get threads(): number {
    return this.threadCount;
  }

  /**
   * Hash the `blockCount` whole blocks at the start of `data`. `data` is a view of a SharedArrayBuffer (sharedBatch(),
   * or a local copy's frame, channel.ts LocalFrames), at any byte offset in it: hashed in place, `data` stays usable,
   * though it must not be written until the promise settles; the hashes are a view of the shared buffer's own hashes
   * buffer, valid until a view of the same shared buffer is hashed again, so one shared buffer has at most one batch
   * in flight per pool. Or `data` owns its whole ArrayBuffer (Buffer.allocUnsafeSlow: transferred, `data` is
   * detached until the promise hands it back).
   * @throws the worker's error (a worker that died)
   */
  async hash(data: Buffer, blockCount: number): Promise<HashedBatch> {
    const bs = this.blockSize;
    const hs = this.hasher.hashSize;
    assert(blockCount * bs <= data.length, 'hash batch larger than its buffer');
    if (this.failure) throw this.failure;
    if (this.threadsToStart > 0 && this.inlineBytes + blockCount * bs > HASH_WORKERS_INLINE_BYTES_MAX) this.startThreads();
    const shared = data.buffer instanceof SharedArrayBuffer ? data.buffer : null;
    let own: { slot: number; hashesBuffer: SharedArrayBuffer; hashes: Buffer } | undefined;
    if (shared !== null) {
      assert(data.byteOffset + blockCount * bs <= shared.byteLength, 'shared hash batch past its buffer');
      own = this.slots.get(shared);
      if (own === undefined) {
        const hashesBuffer = new SharedArrayBuffer(Math.max(1, Math.floor(shared.byteLength / bs)) * hs);
        own = { slot: this.nextSlot++, hashesBuffer, hashes: Buffer.from(hashesBuffer) };
        this.slots.set(shared, own);
      }
    }
    if (this.workers.length === 0) {
      this.inlineBytes += blockCount * bs;
      const hashes = own !== undefined ? own.hashes.subarray(0, blockCount * hs) : Buffer.allocUnsafe(blockCount * hs);
      for (let k = 0; k < blockCount; k++) this.hasher.hashInto(data.subarray(k * bs, (k + 1) * bs), hashes, k * hs);
      return { data, hashes };
    }
    const id = this.nextId++;
    const slot = this.workers.reduce((x, y) => (y.pending < x.pending ? y : x));
    const result = new Promise<HashDone | HashSlotDone>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    slot.pending++;
    if (own !== undefined && shared !== null) {
      if (!slot.slots.has(own.slot)) {
        slot.slots.add(own.slot);
        slot.w.postMessage({ op: 'slot', slot: own.slot, data: shared, hashes: own.hashesBuffer } satisfies HashSlotMessage);
      }
      slot.w.postMessage({ op: 'hash', id, slot: own.slot, blockCount, offset: data.byteOffset } satisfies HashSlotMessage);
      await result;
      return { data, hashes: own.hashes.subarray(0, blockCount * hs) };
    }
    assert(data.byteOffset === 0 && data.buffer.byteLength === data.length, 'a hash batch must own its ArrayBuffer');
    const ab = data.buffer as ArrayBuffer;
    const job: HashJob = { id, data: ab, blockCount, validBytes: blockCount * bs, wanted: null };
    slot.w.postMessage(job, [ab]);
    const r = (await result) as HashDone;
    return { data: Buffer.from(r.data), hashes: Buffer.from(r.hashes, 0, blockCount * hs) };
  }

  /** End the threads (batches still in flight are rejected; each thread ends once it answered them). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    this.threadsToStart = 0;
    this.threadCount = 0;
    for (const p of this.waiting.values()) p.reject(new Error('hash workers closed'));
    this.waiting.clear();
    this.workers = [];
    await pool?.end();
  }
}
