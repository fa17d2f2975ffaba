/**
 * Worker thread of startTreeCensus (journal_dir.ts): takes the census of one tree (nativeTreeCensus, the same as
 * treeCensus at half its CPU; treeCensus itself when glibc lacks the calls; mirroring spec §4.3) and posts it back
 * once. Protocol: workerData `CensusRequest`; one message `CensusReply`; then the thread ends.
 * A failure of the walk is posted as `{ error }` (the caller turns it into a rejection); a thread that dies without
 * a reply is an error for the caller too (never a "no change" verdict).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DdfsError } from '../errors.js';
import { treeCensus, type CensusReply, type CensusRequest, type TreeCensus } from './journal_dir.js';
import { nativeTreeCensus } from './tree_census_native.js';

const request = workerData as CensusRequest;
let reply: CensusReply;
try {
  const root = Buffer.from(request.root);
  const skip = new Set(request.skipTopNames);
  let c: TreeCensus;
  try {
    c = nativeTreeCensus(root, request.depthMax, skip);
  } catch (err) {
    // glibc without statx/getdents64 (the loader's error): the node:fs walk, same census; a failed walk is final
    if (err instanceof DdfsError) throw err;
    c = treeCensus(root, request.depthMax, skip);
  }
  reply = { entryCount: c.entryCount, ctimeMaxNs: c.ctimeMaxNs.toString() };
} catch (err) {
  reply = { error: err instanceof Error ? err.message : String(err) };
}
parentPort!.postMessage(reply);
