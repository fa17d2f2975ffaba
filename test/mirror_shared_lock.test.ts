/**
 * The shared volume lock of read-only master passes (volume/lock.ts takeSharedVolumeLock; issue 8): several passes
 * of one unmounted master run at once, never beside a writer, and one replica never gets two passes at once.
 * In process (copyLocal over in-memory pipes), plus lock holders in child processes (compiled dist/: run
 * `npx tsc -p tsconfig.json` first):
 * - while a pass from the master to replica A is held in its middle, a pass to replica B runs to its end; then A
 *   finishes; both equal the master (verify empty); each replica has its own record under ddfsmirror/slaves/;
 * - meanwhile a writer (fsck, cpddumbfs, a mount: takeVolumeLock) is refused naming the reader and the shared lock,
 *   and a second pass to replica A (a slave HELLO of A's uuid) is refused BUSY, nothing written to A;
 * - a writer holding the volume refuses a pass at once (LOCKED, naming it);
 * - readers of two processes share the volume; a reader killed with -9 leaves nothing that blocks a writer.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Transform } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { RecordWriter } from '../src/mirror/channel.js';
import { copyLocal, initSlave, masterOverStreams } from '../src/mirror/copy.js';
import { readMirrorState } from '../src/mirror/state.js';
import { STREAM_VERSION } from '../src/mirror/stream_codec.js';
import { MIRROR_LOCAL_PIPE_RECORD_COUNT } from '../src/limits.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { takeSharedVolumeLock, takeVolumeLock } from '../src/volume/lock.js';
import { kill9, killLockHolders, startLockHolder } from './helpers/lock_holder.js';
import { snapshotTree } from './helpers/snapshot.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const BS = 4096;
const volumes: TempVolume[] = [];

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(v);
  return v.parent;
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/volume/lock.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
});
afterEach(async () => {
  await killLockHolders();
});
afterAll(async () => {
  for (const v of volumes) await v.cleanup();
});

/** Master-to-slave records: the first `passed` go through, the rest wait until `open()` (a pass held mid-way). */
function heldPipe(passed: number): { pipe: Transform; reached: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  let n = 0;
  const pipe = new Transform({
    readableObjectMode: true,
    readableHighWaterMark: MIRROR_LOCAL_PIPE_RECORD_COUNT,
    transform(chunk: Buffer, _enc, cb) {
      if (++n <= passed) {
        cb(null, chunk);
        return;
      }
      reach();
      void opened.then(() => cb(null, chunk));
    },
  });
  return { pipe, reached, open };
}

const objectPipe = (): PassThrough => new PassThrough({ readableObjectMode: true, readableHighWaterMark: MIRROR_LOCAL_PIPE_RECORD_COUNT });

describe('shared lock of read-only master passes', () => {
  it('passes to two replicas run at once; a writer and a second pass to the same replica are refused meanwhile', async () => {
    const master = await volume();
    const a = await volume();
    const b = await volume();
    mkdirUfs(master, 'd');
    await withVolume(master, async (v) => {
      for (let k = 0; k < 40; k++) await writeUfsFile(v, `d/f${k}`, seededBlocks(`s${k}`, 2, BS));
    });
    await initSlave(a, master);
    await initSlave(b, master);
    const held = heldPipe(6);
    const passA = copyLocal(master, a, { access: nodeTreeAccess, checkpointRecordCount: 4, pipes: () => ({ m2s: held.pipe, s2m: objectPipe() }) });
    passA.catch(() => undefined);
    await held.reached; // A's pass holds the master (shared) and is in its middle

    // a pass to B runs to its end beside it
    const rb = await copyLocal(master, b, { access: nodeTreeAccess });
    expect(rb.slave.committed).toBe(true);
    expect((await verifyInProcess(master, b)).lines).toEqual([]);

    // a writer is refused while A's pass reads, naming it and the shared lock
    for (const tool of ['fsckddumbfs', 'cpddumbfs', 'ddumbfs']) {
      await expect(takeVolumeLock(master, tool)).rejects.toMatchObject({
        code: 'LOCKED', message: expect.stringMatching(new RegExp(`volume in use by mirrorddumbfs \\(pid ${process.pid}, since .*\\) \\(a shared lock: read-only mirror passes\\)`)),
      });
    }
    // a second pass to replica A (a slave HELLO of A's uuid): BUSY, nothing of A written
    const stA = readMirrorState(a)!;
    const snapA = await snapshotTree(a);
    const cfg = await readVolumeConfig(a);
    const fromSlave = new PassThrough();
    const w = await RecordWriter.create(fromSlave, false);
    await w.send({
      type: 'HELLO', version: STREAM_VERSION, role: 'slave', sharedUuid: Buffer.from(stA.sharedUuid, 'hex'), uniqueUuid: Buffer.from(stA.uniqueUuid, 'hex'),
      generation: stA.generation, blockSize: cfg.blockSize, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
      masterUuid: Buffer.from(readMirrorState(master)!.uniqueUuid, 'hex'),
    });
    const toSlave = new PassThrough();
    toSlave.resume();
    await expect(masterOverStreams(master, toSlave, fromSlave, { access: nodeTreeAccess }))
      .rejects.toMatchObject({ code: 'BUSY', message: expect.stringContaining(`a pass to replica ${stA.uniqueUuid} is already running (mirrorddumbfs (pid ${process.pid}`) });
    fromSlave.end();
    expect(await snapshotTree(a)).toEqual(snapA);

    held.open();
    const ra = await passA;
    expect(ra.slave.committed).toBe(true);
    expect((await verifyInProcess(master, a)).lines).toEqual([]);
    // one record per replica
    const records = fs.readdirSync(path.join(master, 'ddfsmirror', 'slaves')).filter((n) => /^[0-9a-f]{32}$/.test(n)).sort();
    expect(records).toEqual([readMirrorState(a)!.uniqueUuid, readMirrorState(b)!.uniqueUuid].sort());

    // all readers gone: a writer takes the volume; while it holds it a pass is refused at once, naming it
    const lock = await takeVolumeLock(master, 'cpddumbfs');
    try {
      await expect(copyLocal(master, a, { access: nodeTreeAccess })).rejects.toMatchObject({ code: 'LOCKED', message: expect.stringContaining('volume in use by cpddumbfs') });
    } finally {
      await lock.release();
    }
    expect((await copyLocal(master, a, { access: nodeTreeAccess })).slave.committed).toBe(true);
  }, 300_000);

  it('readers of two processes share the volume; a writer is refused; a reader killed with -9 blocks nothing', async () => {
    const master = await volume();
    const child = await startLockHolder(master, { shared: true });
    const mine = await takeSharedVolumeLock(master, 'mirrorddumbfs');
    expect(mine.shared).toBe(true);
    await expect(takeVolumeLock(master, 'fsckddumbfs')).rejects.toMatchObject({
      code: 'LOCKED', message: expect.stringMatching(/volume in use by (holder|mirrorddumbfs) \(pid \d+, since .*\) and 1 other reader \(a shared lock/),
    });
    // alone() runs nothing while the other reader holds the volume
    expect(await mine.alone(async () => 'ran')).toBeNull();
    await mine.release();
    await expect(takeVolumeLock(master, 'fsckddumbfs')).rejects.toMatchObject({ code: 'LOCKED', data: { tool: 'holder', pid: child.pid } });
    await kill9(child);
    const w = await takeVolumeLock(master, 'fsckddumbfs');
    // and a reader is refused while the writer holds it, naming it
    await expect(takeSharedVolumeLock(master, 'mirrorddumbfs')).rejects.toMatchObject({ code: 'LOCKED', data: { tool: 'fsckddumbfs', pid: process.pid } });
    await w.release();
    const last = await takeSharedVolumeLock(master, 'mirrorddumbfs');
    expect(await last.alone(async () => 'ran')).toBe('ran');
    await last.release();
  }, 120_000);
});
