/**
 * Worker thread of the hash pool (hash_pool.ts): hashes the wanted blocks of a batch read by the main thread
 * and sends back their hashes, returning the batch buffer for reuse. Protocol in hash_pool.ts: `HashThreadLoaded` first,
 * then `HashJob`/`HashSlotMessage` answered by `HashDone`/`HashSlotDone`, until `HashEndMessage`.
 */
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { createHasher } from './hash.js';
import type { HashDone, HashEndMessage, HashJob, HashSlotDone, HashSlotMessage, HashThreadLoaded, HashWorkerData } from './hash_pool.js';

const { hashName, blockSize, nice } = workerData as HashWorkerData;
const hasher = createHasher(hashName);
try {
  // this thread only (Linux nice values are per thread): at HASH_WORKER_NICE (a daemon, fsck) the JS thread that
  // reads and feeds it keeps its core; a mirrorddumbfs copy runs its hash threads at 0 (copy.ts COPY_HASH_NICE)
  if (nice !== 0) setPriority(nice);
} catch {
  // not allowed, or not supported: the default priority is correct, only slower under contention
}

// the hash is loaded (koffi, for libgcrypt's TIGER): the next hash thread may start (hash_pool.ts startHashThreads)
parentPort!.postMessage({ loaded: true } satisfies HashThreadLoaded);

/** Shared batches registered by HashWorkers (HashSlotMessage `slot`), by slot number. */
const slots = new Map<number, { data: Buffer; hashes: Buffer }>();

parentPort!.on('message', (job: HashJob | HashSlotMessage | HashEndMessage) => {
  if ('op' in job) {
    if (job.op === 'end') {
      // every job posted before it was answered: the thread ends by itself, never inside a native call
      parentPort!.close();
      return;
    }
    if (job.op === 'slot') {
      slots.set(job.slot, { data: Buffer.from(job.data), hashes: Buffer.from(job.hashes) });
      return;
    }
    // hashed in place: the batch and its hashes are shared with the main thread, only the id goes back
    const s = slots.get(job.slot)!;
    const at = job.offset;
    const wanted = job.wanted ?? null;
    const count = job.validBytes === undefined ? job.blockCount : Math.min(job.blockCount, Math.floor(job.validBytes / blockSize));
    for (let k = 0; k < count; k++) {
      if (wanted !== null && wanted[k] === 0) continue;
      hasher.hashInto(s.data.subarray(at + k * blockSize, at + (k + 1) * blockSize), s.hashes, k * hasher.hashSize);
    }
    parentPort!.postMessage({ id: job.id, slot: job.slot } satisfies HashSlotDone);
    return;
  }
  const data = Buffer.from(job.data, 0, job.blockCount * blockSize);
  const out = new Uint8Array(job.blockCount * hasher.hashSize);
  const hashes = Buffer.from(out.buffer);
  for (let k = 0; k < job.blockCount; k++) {
    if ((k + 1) * blockSize > job.validBytes) break;
    if (job.wanted && job.wanted[k] === 0) continue;
    hasher.hashInto(data.subarray(k * blockSize, (k + 1) * blockSize), hashes, k * hasher.hashSize);
  }
  const done: HashDone = { id: job.id, data: job.data, hashes: out.buffer };
  parentPort!.postMessage(done, [job.data, out.buffer]);
});
