/**
 * Several replicas of one master (issue 8 item 5; mirroring spec §4.2 `slaves/<uuid>`, §4.6 step 7, §4.12): one
 * record per replica written after its ACK, independent passes, journal retention = the lowest claim capped by
 * size/age, a replica past the cap marked for a content pass, `forget` releasing retention, and cascading
 * (master -> slave A -> slave B, A serving only its committed claim).
 *
 * The master's changes go through its write-ahead journal as the daemon's would (openMasterJournal's sink, closed and
 * sealed between runs of changes, with tiny segments so retention has whole segments to drop); passes run from the
 * unmounted master through copyLocal (the journal read offline, the segments dropped under the volume lock).
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { copyLocal, initSlave, type CopyOptions } from '../src/mirror/copy.js';
import { openMasterJournal, type MasterJournal } from '../src/mirror/master_journal.js';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { applyRetention, forgetReplica, listReplicas, planRetention, readReplica, writeReplica, type ReplicaRecord } from '../src/mirror/replicas.js';
import { claimTid, masterState, readMirrorState, writeMirrorState } from '../src/mirror/state.js';
import { mirrorStatus, renderStatusLines } from '../src/mirror/status.js';
import { Journal, JOURNAL_DIRECTORY, type SegmentInfo } from '../src/mirror/journal.js';
import { fileDevices } from '../src/io/device.js';
import { Volume } from '../src/volume/volume.js';
import { logger } from '../src/util/log.js';
import { noiseBytes } from './helpers/bytes.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { SELF } from './helpers/ufs_model.js';
import { verifyInProcess } from './helpers/ufs_tree.js';

const BS = 512;
/** A segment rotates after ~one record of a short path: every change run gets segments of its own. */
const SEGMENT_SIZE = 64;
const live: TempVolume[] = [];
afterAll(async () => {
  await unmountAll();
  for (const v of live) await v.cleanup();
});

const bytesOf = (k: string): Buffer => Buffer.from(k, 'latin1');
let fileKey = 0n;

/** Run `fn` on the master opened as its daemon would (every change journaled first), then unmount it cleanly. */
async function withMaster<T>(parent: string, fn: (v: Volume, mj: MasterJournal) => Promise<T>): Promise<T> {
  const v = await Volume.open(parent);
  const mj = (await openMasterJournal(parent, { crashed: false, rootDir: v.rootDir, logger, segmentSizeMax: SEGMENT_SIZE }))!;
  v.tree.sink = mj.sink;
  try {
    return await fn(v, mj);
  } finally {
    v.tree.sink = null;
    await mj.close(true);
    await v.close();
  }
}

/** Write `data` at 0 of `k` as the daemon's ops would (the first write of a file journaled). */
async function write(v: Volume, mj: MasterJournal, k: string, data: Buffer): Promise<void> {
  await mj.sink.beforeWrite?.(++fileKey, bytesOf(k));
  const f = await v.openTreeFile(bytesOf(k), {});
  try {
    await f.write(0, data);
  } finally {
    await f.close();
  }
}

async function volume(): Promise<string> {
  const tv = await makeTempVolume({ blockSize: BS, size: '1M' });
  live.push(tv);
  return tv.parent;
}

/** A master with a few files and a sealed journal, and `n` slaves bound to it. */
async function fleet(n: number): Promise<{ master: string; slaves: string[] }> {
  const master = await volume();
  masterState(master);
  await withMaster(master, async (v, mj) => {
    await v.tree.mkdir(bytesOf('d'), 0o755, SELF);
    await v.tree.createFile(bytesOf('d/f'), 0o644, SELF, true);
    await write(v, mj, 'd/f', noiseBytes(1, BS));
  });
  const slaves: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = await volume();
    await initSlave(s, master);
    slaves.push(s);
  }
  return { master, slaves };
}

const options = (extra: Partial<CopyOptions> = {}): CopyOptions => ({ access: nodeTreeAccess, allowMassDelete: true, ...extra });

/** `count` changes on the master, each a file of its own (each gets a segment: SEGMENT_SIZE and a sync a file). */
async function changes(master: string, tag: string, count = 3): Promise<void> {
  await withMaster(master, async (v, mj) => {
    for (let i = 0; i < count; i++) {
      await v.tree.createFile(bytesOf(`${tag}${i}`), 0o644, SELF, true);
      await write(v, mj, `${tag}${i}`, noiseBytes(100 + i, BS));
      // the journal group-commits buffered records: sync so that each file's records make a segment of their own
      await mj.journal.sync();
    }
  });
}

function segmentCount(master: string): number {
  return fs.readdirSync(path.join(master, 'ddfsmirror', JOURNAL_DIRECTORY)).filter((n) => n.endsWith('.jnl')).length;
}

async function expectSame(a: string, b: string): Promise<void> {
  expect((await verifyInProcess(a, b)).lines).toEqual([]);
}

describe('planRetention (pure)', () => {
  const seg = (baseTid: number, lastTid: number, sizeBytes = 100, mtimeMs = 1000): SegmentInfo => ({ baseTid: BigInt(baseTid), lastTid: BigInt(lastTid), sizeBytes, mtimeMs });
  const rep = (uuid: string, claim: number, extra: Partial<ReplicaRecord> = {}): ReplicaRecord => ({
    version: 1, uuid: uuid.repeat(32).slice(0, 32), label: uuid, claimTid: String(claim), claimKind: 'exact', generation: 1, passKind: 'incremental', passId: '00',
    lastPassTime: 't', bytes: 0, lag: '0', needsContentPass: null, firstSeen: 't', ...extra,
  });
  const segs = [seg(1, 10), seg(11, 20), seg(21, 30), seg(31, 40), seg(41, 40)];
  const big = { sizeBytesMax: 1e9, ageMsMax: 1e12 };

  it('keeps what the lowest claim needs; drops only what every replica has', () => {
    const p = planRetention(segs, [rep('a', 35), rep('b', 15)], 1, 40n, big, 2000);
    expect(p.dropCount).toBe(1); // 1..10: both have them; 11..20 holds 16..20 that b needs
    expect(p.oldestTid).toBe(11n);
    expect(p.marked).toEqual([]);
    expect(p.pinnedBy).toBe(rep('b', 0).uuid);
  });

  it('the size cap drops what a dead replica needs and marks it, never the up-to-date replica', () => {
    // a is up to date but its claim sits in an older segment than the one written (the head moved after its ACK)
    const p = planRetention(segs, [rep('a', 33), rep('b', 5)], 1, 40n, { sizeBytesMax: 150, ageMsMax: 1e12 }, 2000);
    expect(p.dropCount).toBe(3); // 1..30 dropped; 31..40 kept although over the cap: a needs 34..40
    expect(p.oldestTid).toBe(31n);
    expect(p.marked.map((m) => m.uuid)).toEqual([rep('b', 0).uuid]);
    expect(p.marked[0]!.reason).toMatch(/TIDs 6\.\.30/);
    expect(p.pinnedBy).toBe(rep('a', 0).uuid);
  });

  it('a claim at the boundary (oldest TID - 1) needs nothing dropped: not marked', () => {
    const p = planRetention(segs, [rep('a', 40), rep('b', 20)], 1, 40n, { sizeBytesMax: 300, ageMsMax: 1e12 }, 2000);
    expect(p.oldestTid).toBe(21n);
    expect(p.marked).toEqual([]);
  });

  it('the age cap drops old segments; a marked replica or another generation pins nothing; no replica: all but the last go', () => {
    const aged = [seg(1, 10, 10, 0), seg(11, 20, 10, 0), seg(21, 30, 10, 5000), seg(31, 30, 16, 5000)];
    const p = planRetention(aged, [rep('a', 30), rep('b', 5)], 1, 30n, { sizeBytesMax: 1e9, ageMsMax: 1000 }, 5500);
    expect(p.dropCount).toBe(2);
    expect(p.marked.map((m) => m.uuid)).toEqual([rep('b', 0).uuid]);
    const q = planRetention(segs, [rep('b', 5, { needsContentPass: 'x' }), rep('c', 5, { generation: 2 })], 1, 40n, big, 2000);
    expect(q.dropCount).toBe(4);
    expect(q.marked).toEqual([]);
    expect(planRetention(segs, [], 1, 40n, big, 2000).dropCount).toBe(4);
  });
});

describe('applyRetention on a live journal (the daemon\'s)', () => {
  it('drops the segments no pinning replica needs, marks the one past the cap, never drops the segment being written', async () => {
    const parent = await volume();
    const st = masterState(parent);
    const mirrorDir = path.join(parent, 'ddfsmirror');
    const j = await Journal.open(mirrorDir, { devices: fileDevices, segmentSizeMax: 17 }); // one record a segment
    try {
      for (let i = 0; i < 6; i++) await j.append({ op: 'create', path: bytesOf(`file-${i}`) });
      const infos = j.segmentInfos();
      expect(infos.length).toBeGreaterThanOrEqual(5);
      const rec = (uuid: string, claim: bigint): ReplicaRecord => ({
        version: 1, uuid, label: uuid.slice(0, 4), claimTid: claim.toString(), claimKind: 'exact', generation: st.generation, passKind: 'incremental', passId: '00',
        lastPassTime: 't', bytes: 0, lag: '0', needsContentPass: null, firstSeen: 't',
      });
      const up = 'a'.repeat(32);
      const dead = 'b'.repeat(32);
      writeReplica(parent, rec(up, j.durableHead));
      writeReplica(parent, rec(dead, infos[0]!.lastTid)); // has the first segment only
      const p1 = await applyRetention(parent, j, st.generation, { sizeBytesMax: 1e9, ageMsMax: 1e12 });
      expect(p1.dropCount).toBe(1);
      expect(j.segmentInfos()).toHaveLength(infos.length - 1);
      expect(readReplica(parent, dead)!.needsContentPass).toBeNull();
      // a cap of one segment: everything the up-to-date replica does not need goes, the dead one is marked
      const p2 = await applyRetention(parent, j, st.generation, { sizeBytesMax: 17, ageMsMax: 1e12 });
      expect(p2.marked.map((m) => m.uuid)).toEqual([dead]);
      expect(readReplica(parent, dead)!.needsContentPass).toMatch(/retention dropped TIDs/);
      expect(readReplica(parent, up)!.needsContentPass).toBeNull();
      expect(j.segmentInfos()).toHaveLength(1);
      expect(j.oldestTid).toBeLessThanOrEqual(j.durableHead + 1n);
      await expect(j.readRange(infos[0]!.lastTid, j.durableHead)).rejects.toThrow(/no longer held/);
      expect(await j.readRange(j.durableHead, j.durableHead)).toEqual([]);
      await j.append({ op: 'create', path: bytesOf('after') }); // the journal still takes records
      expect((await j.readRange(j.durableHead - 1n, j.durableHead)).map((r) => r.path.toString())).toEqual(['after']);
    } finally {
      await j.close();
    }
  });
});

describe('several replicas (spec §4.12)', () => {
  it('two replicas: independent passes, one record each, status shows head, claims and lag', async () => {
    const { master, slaves: [a, b] } = await fleet(2);
    const ra = await copyLocal(master, a!, options());
    const rb = await copyLocal(master, b!, options());
    expect(ra.master.passKind).toBe('content');
    expect(rb.master.passKind).toBe('content');
    const ua = readMirrorState(a!)!.uniqueUuid;
    const ub = readMirrorState(b!)!.uniqueUuid;
    expect(listReplicas(master).replicas.map((r) => r.uuid).sort()).toEqual([ua, ub].sort());
    expect(readReplica(master, ua)).toMatchObject({ label: a, claimTid: claimTid(readMirrorState(a!)!.claim).toString(), passKind: 'content', lag: '0', needsContentPass: null });
    await changes(master, 'x', 2);
    // only A passes: B's record does not move
    const beforeB = readReplica(master, ub)!;
    const a2 = await copyLocal(master, a!, options());
    expect(a2.master.passKind).toBe('incremental');
    expect(readReplica(master, ub)).toEqual(beforeB);
    await changes(master, 'y', 1);
    const b2 = await copyLocal(master, b!, options());
    expect(b2.master.passKind).toBe('incremental');
    expect(b2.master.tidBeg).toBe(BigInt(beforeB.claimTid) + 1n); // both runs of changes in one pass
    await expectSame(master, b!);
    expect((await verifyInProcess(master, a!)).lines).toEqual(['MISSING "/y0"']); // A has not passed since
    const st = await mirrorStatus(master);
    expect(st.head).toBe(readMirrorState(master)!.durableHead);
    expect(st.replicas!.map((r) => r.uuid).sort()).toEqual([ua, ub].sort());
    expect(st.retention).toMatchObject({ markedCount: 0, pinnedBy: ua }); // A is behind the last change
    const lines = renderStatusLines(st, master).join('\n');
    expect(lines).toMatch(new RegExp(`replica: .*\\(${ua}\\): claim exact@\\d+, generation \\d+, lag [1-9]\\d* TIDs`));
    expect(lines).toMatch(new RegExp(`replica: .*\\(${ub}\\): claim exact@\\d+, generation \\d+, lag 0 TIDs`));
    expect(JSON.parse(JSON.stringify(st)).retention.oldestTid).toMatch(/^\d+$/);
    expect((await copyLocal(master, a!, options())).master.passKind).toBe('incremental');
    await expectSame(master, a!);
  });

  it('a dead replica does not block the other; retention is capped, the dead one is marked, then takes a content pass', async () => {
    const { master, slaves: [a, dead] } = await fleet(2);
    await copyLocal(master, a!, options());
    await copyLocal(master, dead!, options());
    const ud = readMirrorState(dead!)!.uniqueUuid;
    const ua = readMirrorState(a!)!.uniqueUuid;
    const retention = { sizeBytesMax: 4 * SEGMENT_SIZE, ageMsMax: 1e12 };
    const reports: string[] = [];
    for (let round = 0; round < 4; round++) {
      await changes(master, `r${round}-`, 3);
      const r = await copyLocal(master, a!, options({ retention, report: (l) => reports.push(l) }));
      // the up-to-date replica is never marked by the cap: every pass of it stays incremental
      expect(r.master.passKind).toBe('incremental');
      expect(readReplica(master, ua)!.needsContentPass).toBeNull();
      // bounded: at most what the cap holds plus the segment being written
      expect(segmentCount(master)).toBeLessThanOrEqual(6);
    }
    await expectSame(master, a!);
    const marked = readReplica(master, ud)!;
    expect(marked.needsContentPass).toMatch(/retention dropped TIDs/);
    expect(reports.some((l) => l.includes(ud) && /marked for a content pass/.test(l))).toBe(true);
    expect((await mirrorStatus(master)).retention).toMatchObject({ markedCount: 1, pinnedBy: ua });
    // the dead one comes back: a content pass that says why, then its mark is gone and it is incremental again
    const back = await copyLocal(master, dead!, options({ retention }));
    expect(back.master.passKind).toBe('content');
    expect(back.master.contentReason).toMatch(/marked for a content pass: journal retention/);
    await expectSame(master, dead!);
    expect(readReplica(master, ud)!.needsContentPass).toBeNull();
    await changes(master, 'z', 1);
    expect((await copyLocal(master, dead!, options({ retention }))).master.passKind).toBe('incremental');
    await expectSame(master, dead!);
  });

  it('forget releases retention: the dead replica no longer holds the journal back', async () => {
    const { master, slaves: [a, dead] } = await fleet(2);
    await copyLocal(master, a!, options());
    await copyLocal(master, dead!, options());
    for (let round = 0; round < 3; round++) {
      await changes(master, `f${round}-`, 2);
      await copyLocal(master, a!, options());
    }
    const pinned = segmentCount(master);
    expect(pinned).toBeGreaterThan(3); // no cap reached: the dead replica's claim keeps them
    expect(() => forgetReplica(master, 'no-such-replica')).toThrow(/no replica no-such-replica/);
    const gone = forgetReplica(master, `${dead!}/`); // by label: the destination as given (the same path)
    expect(gone.uuid).toBe(readMirrorState(dead!)!.uniqueUuid);
    expect(listReplicas(master).replicas.map((r) => r.label)).toEqual([a]);
    await changes(master, 'g', 1);
    await copyLocal(master, a!, options());
    expect(segmentCount(master)).toBeLessThan(pinned);
    expect(segmentCount(master)).toBeLessThanOrEqual(2);
    await expectSame(master, a!);
  });

  it('cascading: master -> A -> B, A serving only its committed claim; verify is empty on both', async () => {
    const { master, slaves: [a] } = await fleet(1);
    const b = await volume();
    await initSlave(b, a!).then(
      () => { throw new Error('a relay with no claim must refuse to bind a slave'); },
      (err: Error) => expect(err.message).toMatch(/committed no pass yet/),
    );
    await copyLocal(master, a!, options());
    await initSlave(b, a!); // a relay binds slaves of its lineage
    expect(readMirrorState(b)!.sharedUuid).toBe(readMirrorState(master)!.sharedUuid);
    const r1 = await copyLocal(a!, b, options());
    expect(r1.master.passKind).toBe('content');
    expect(r1.master.contentReason).toMatch(/relay/);
    await expectSame(master, a!);
    await expectSame(master, b);
    // B's claim is what A last committed (same TID, generation and kind)
    expect(readMirrorState(b)!.claim).toMatchObject({ syncEndTid: readMirrorState(a!)!.claim!.syncEndTid, generation: readMirrorState(a!)!.claim!.generation, claimKind: 'exact' });
    expect(listReplicas(a!).replicas.map((r) => r.uuid)).toEqual([readMirrorState(b)!.uniqueUuid]);
    await changes(master, 'c', 2);
    expect((await copyLocal(master, a!, options())).master.passKind).toBe('incremental');
    await copyLocal(a!, b, options());
    await expectSame(master, a!);
    await expectSame(master, b);
    await expectSame(a!, b);
    // a half-applied pass on A: it serves nothing until it is finished
    const sa = readMirrorState(a!)!;
    writeMirrorState(a!, { ...sa, pass: { passId: 'ab'.repeat(16), keyCurHex: '', recordsApplied: 0, startedAt: new Date().toISOString() } });
    await expect(copyLocal(a!, b, options())).rejects.toThrow(/pass in progress.*serves only committed state/);
    writeMirrorState(a!, sa);
    // a claim of A that changes during the relay pass (as a pass applied to A would): no COMMIT, B keeps its claim
    const bClaim = readMirrorState(b)!.claim;
    let changed = false;
    const hook = (_bytes: Buffer, record: { type: string }): void => {
      if (record.type === 'PASS_BEGIN' && !changed) {
        changed = true;
        writeMirrorState(a!, { ...sa, claim: { ...sa.claim!, passId: 'cd'.repeat(16) } });
      }
    };
    await expect(copyLocal(a!, b, options({ onMasterBytes: hook }))).rejects.toThrow(/claim changed during the pass/);
    expect(changed).toBe(true);
    expect(readMirrorState(b)!.claim).toEqual(bClaim);
    expect(readMirrorState(b)!.pass).not.toBeNull(); // the pass began on B and was not committed: the next one resumes it
    writeMirrorState(a!, sa);
    expect((await copyLocal(a!, b, options())).master.passKind).toBe('content');
    await expectSame(a!, b);
    // B's claim came from A, yet it is a claim on the master's lineage: B can switch to the master incrementally
    await changes(master, 'e', 1);
    const direct = await copyLocal(master, b, options());
    expect(direct.master.passKind).toBe('incremental');
    await expectSame(master, b);
  });
});

describe('a slow replica never blocks the others (a mounted master serves passes side by side)', () => {
  it('while the pass to A waits on A, a pass to B runs to its end; then A finishes; both equal the master', async () => {
    const { master, slaves: [a, b] } = await fleet(2);
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-replicas-mnt-'));
    const m = await mountVolume(master, mnt);
    try {
      await fsp.writeFile(path.join(mnt, 'big'), noiseBytes(9, 8 * BS));
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      let entered!: () => void;
      const waiting = new Promise<void>((r) => { entered = r; });
      // A's side stalls at its first look at its tree (its first DIGESTA): the master's pass to A waits on A
      const slow = {
        async lstat(p: Buffer) {
          entered();
          await gate;
          return nodeTreeAccess.lstat(p);
        },
        readlink: (p: Buffer) => nodeTreeAccess.readlink(p),
      };
      const toA = copyLocal(master, a!, options({ access: slow }));
      toA.catch(() => undefined);
      await waiting;
      const toB = await copyLocal(master, b!, options());
      expect(toB.slave.committed).toBe(true);
      let aDone = false;
      void toA.then(() => { aDone = true; });
      await new Promise((r) => setImmediate(r));
      expect(aDone).toBe(false); // A is still held back, B is done
      release();
      expect((await toA).slave.committed).toBe(true);
      expect(listReplicas(master).replicas.map((r) => r.label).sort()).toEqual([a, b].sort());
    } finally {
      await m.unmount();
      fs.rmdirSync(mnt); // the mount point was made by this test
    }
    await expectSame(master, a!);
    await expectSame(master, b!);
  }, 300_000);
});

describe('mirrorddumbfs replicas, forget, status (CLI; a mounted master)', () => {
  const BIN = path.resolve(__dirname, '..', 'bin', 'mirrorddumbfs');
  const cli = async (args: string[]): Promise<{ status: number; stdout: string; stderr: string }> => {
    const r = await run('node', [BIN, ...args], { timeoutMs: 180_000 });
    return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
  };

  it('two replicas of a mounted master (the daemon records them), a relay, replicas --json, forget by label', async () => {
    const { master, slaves: [a, b] } = await fleet(2);
    const c = await volume();
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-replicas-mnt-'));
    const m = await mountVolume(master, mnt);
    try {
      for (const s of [a!, b!]) expect((await cli(['copy', master, s])).status).toBe(0);
      await fsp.writeFile(path.join(mnt, 'new'), noiseBytes(7, 3 * BS));
      const again = await cli(['copy', master, a!]);
      expect(again.status).toBe(0);
      expect(again.stdout).toMatch(/incremental pass/);
      const listed = await cli(['replicas', master, '--json']);
      expect(listed.status).toBe(0);
      const doc = JSON.parse(listed.stdout) as { head: string; replicas: ReplicaRecord[]; damaged: unknown[] };
      expect(doc.replicas.map((r) => r.label).sort()).toEqual([a, b].sort());
      expect(doc.damaged).toEqual([]);
      const rb = doc.replicas.find((r) => r.label === b)!;
      expect(BigInt(doc.head)).toBeGreaterThan(BigInt(rb.claimTid)); // B lags behind the write
      const human = await cli(['replicas', master]);
      expect(human.stdout).toMatch(new RegExp(`^${b}.*lag [1-9]\\d* TIDs`, 'm'));
      const status = JSON.parse((await cli(['status', master, '--json'])).stdout) as { head: string; retention: { pinnedBy: string | null }; replicas: ReplicaRecord[] };
      expect(status.head).toBe(doc.head);
      expect(status.retention.pinnedBy).toBe(rb.uuid);
      expect(status.replicas).toHaveLength(2);
      // a relay: A serves its committed claim to C
      expect((await cli(['init-slave', c, '--from', a!])).status).toBe(0);
      const relay = await cli(['copy', a!, c]);
      expect(relay.status).toBe(0);
      expect(relay.stdout).toMatch(/content pass because the source is a slave \(a relay\)/);
      expect((await verifyInProcess(a!, c)).lines).toEqual([]);
      const f = await cli(['forget', master, b!]);
      expect(f.status).toBe(0);
      expect(f.stdout).toContain(rb.uuid);
      expect(JSON.parse((await cli(['replicas', master, '--json'])).stdout).replicas.map((r: ReplicaRecord) => r.label)).toEqual([a]);
      const missing = await cli(['forget', master, b!]);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/no replica/);
      expect(missing.stderr).not.toMatch(/\n\s+at /); // one line, no stack trace
      // a mounted relay: its daemon serves its committed claim (a read-only mount of a slave)
      await fsp.writeFile(path.join(mnt, 'later'), noiseBytes(8, BS));
      expect((await cli(['copy', master, a!])).status).toBe(0);
      const mntA = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-replicas-mnt-'));
      const ma = await mountVolume(a!, mntA);
      try {
        const viaDaemon = await cli(['copy', a!, c]);
        expect(viaDaemon.status).toBe(0);
        expect(viaDaemon.stdout).toMatch(/the source is a slave \(a relay\)/);
      } finally {
        await ma.unmount();
        fs.rmdirSync(mntA);
      }
      expect(readMirrorState(c)!.claim!.syncEndTid).toBe(readMirrorState(a!)!.claim!.syncEndTid);
      expect((await verifyInProcess(a!, c)).lines).toEqual([]);
    } finally {
      await m.unmount();
      fs.rmdirSync(mnt); // the mount point was made by this test
    }
    await expectSame(master, a!);
  }, 300_000);
});
