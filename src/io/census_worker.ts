/**
 * Worker thread of startTreeCensus (journal_dir.ts): takes the census of one tree, or its share of one when the
 * census is split between threads (nativeTreeCensus, the same as treeCensus at half its CPU; treeCensus itself when
 * glibc lacks the calls; mirroring spec §4.3) and posts it back once. Protocol: workerData `CensusRequest`; the
 * message `{ loaded: true }` once its native calls are bound (the next census thread starts then), then one
 * `CensusReply` with the census or the error; then the thread ends.
 * A failure of the walk is posted as `{ error }` (the caller turns it into a rejection); a thread that dies without
 * a reply is an error for the caller too (never a "no change" verdict). A stop (`stopFlag` set) ends the walk before
 * its next directory with the error "the census was stopped": the thread is never terminated from outside while it
 * may be inside a native call.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { censusHere, type CensusReply, type CensusRequest } from './journal_dir.js';
import { bindNativeCensus } from './tree_census_native.js';

const request = workerData as CensusRequest;
// koffi is loaded (or not) before the next census thread starts (ffi.ts loadKoffiHere): say so first
bindNativeCensus();
parentPort!.postMessage({ loaded: true } satisfies CensusReply);
let reply: CensusReply;
try {
  const c = censusHere(Buffer.from(request.root), request.depthMax, new Set(request.skipTopNames), request.share, request.stopFlag);
  reply = { entryCount: c.entryCount, ctimeMaxNs: c.ctimeMaxNs.toString() };
} catch (err) {
  reply = { error: err instanceof Error ? err.message : String(err) };
}
parentPort!.postMessage(reply);
