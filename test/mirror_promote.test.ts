/**
 * promote, rebind and lineage refusals (mirroring spec §4.14, §5 scenario 12 without quorum, §4.18 inv. 11), and a
 * complete status (§4.16). In process over the in-memory duplex, plus the commands (node bin/mirrorddumbfs, compiled
 * dist/: run `npx tsc -p tsconfig.json` first) for the one-line refusals and status in both forms:
 * - promote refuses a half-applied pass (pending pass or staging) with one line naming both ways out, changing
 *   nothing; --rollback discards the pass and promotes (new unique uuid, lineage id, epoch + 1, generation + 1, the
 *   old lineage remembered); a master, a volume without state and a mounted volume are refused;
 * - after a promote the old master is refused as a source and as a target of the new master, a slave rebound to the
 *   new lineage refuses the old master, and a slave left in the old lineage is refused by the new master: on the
 *   slave's side alone (one-way stream) and on the master's side alone (a forged slave HELLO), nothing written;
 * - rebind turns the old master into a slave of the new lineage; the next copy makes verify empty (its own later
 *   writes are gone); rebind refuses a lineage the volume left, another shared uuid and a volume without state;
 * - verify records its result in ddfsmirror/ of the unmounted volumes that have one, and writes nothing to a plain
 *   volume; status shows role, uuids, lineage, claim, pass in progress, apply areas, last verify, last promote.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { RecordWriter } from '../src/mirror/channel.js';
import { copyLocal, initSlave, masterIdentity, masterOverStreams, slaveOverStreams } from '../src/mirror/copy.js';
import { promote, rebind } from '../src/mirror/promote.js';
import { lineageIdOf, readMirrorState } from '../src/mirror/state.js';
import { STREAM_VERSION } from '../src/mirror/stream_codec.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { treeShape } from './helpers/slave_check.js';
import { snapshotTree } from './helpers/snapshot.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const BS = 4096;
const HEX32 = /^[0-9a-f]{32}$/;
const volumes: TempVolume[] = [];
let work: string;

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(v);
  return v.parent;
}

async function mirror(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [BIN, ...args], { timeoutMs: 180_000 });
  return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

const copy = (m: string, s: string, extra: Partial<Parameters<typeof copyLocal>[2]> = {}) => copyLocal(m, s, { access: nodeTreeAccess, ...extra });

async function files(parent: string, prefix: string, count: number): Promise<void> {
  mkdirUfs(parent, prefix);
  await withVolume(parent, async (v) => {
    for (let k = 0; k < count; k++) await writeUfsFile(v, `${prefix}/f${String(k).padStart(3, '0')}`, block(`${prefix}${k}`, 2));
  });
}

/** A master with a tree and a slave holding a committed copy of it. */
async function mirroredPair(): Promise<{ master: string; slave: string }> {
  const master = await volume();
  const slave = await volume();
  await files(master, 'd', 6);
  await initSlave(slave, master);
  await copy(master, slave);
  return { master, slave };
}

/** Cut a pass after its second CHECKPOINT: the slave keeps a pending pass and a staging area. */
async function halfApply(master: string, slave: string): Promise<void> {
  let checkpoints = 0;
  await expect(copy(master, slave, {
    checkpointRecordCount: 4,
    onMasterBytes: (_b, rec) => {
      if (checkpoints === 2) throw new Error('cut');
      if (rec.type === 'CHECKPOINT') checkpoints++;
    },
  })).rejects.toThrow();
  expect(readMirrorState(slave)!.pass).not.toBeNull();
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/promote.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-promote-'));
});

afterAll(async () => {
  await unmountAll();
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('promote', () => {
  it('refuses a half-applied pass with one line naming both ways out and changes nothing; --rollback then promotes', async () => {
    const { master, slave } = await mirroredPair();
    await files(master, 'e', 12);
    const claimed = treeShape(slave);
    await halfApply(master, slave);
    expect(treeShape(slave)).not.toEqual(claimed);
    const before = readMirrorState(slave)!;
    const snap = await snapshotTree(slave);
    const r = await mirror(['promote', slave]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`mirrorddumbfs: ${slave}: pass ${before.pass!.passId} is half-applied (${before.pass!.recordsApplied} records applied): finish it by copying again from the master, or add --rollback to go back to the last claim\n`);
    expect(await snapshotTree(slave)).toEqual(snap);

    // a staging area alone (a pass that died before its first CHECKPOINT was recorded) is refused too
    const other = await mirroredPair();
    fs.mkdirSync(path.join(other.slave, 'ddfsmirror', 'staging', 'ab'.repeat(16)), { recursive: true });
    await expect(promote(other.slave)).rejects.toThrow(`${other.slave}: a staging area of an unfinished pass is present: finish it by copying again from the master, or add --rollback to go back to the last claim`);

    const p = await mirror(['promote', slave, '--rollback']);
    expect(p.status, p.stderr).toBe(0);
    expect(p.stderr).toMatch(new RegExp(`^mirrorddumbfs: rollback: pass ${before.pass!.passId} discarded with its staging area; the tree is back at the last claim \\([1-9][0-9]* changes undone\\)\n$`));
    expect(treeShape(slave)).toEqual(claimed);
    const after = readMirrorState(slave)!;
    expect(p.stdout).toBe(`${slave}: master of lineage ${before.lineage + 1} (${after.lineageId}), generation ${before.generation + 1}, unique uuid ${after.uniqueUuid}\n`);
    expect(after.role).toBe('master');
    expect(after.pass).toBeNull();
    expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'staging'))).toBe(false);
    expect(after.sharedUuid).toBe(before.sharedUuid);
    expect(after.uniqueUuid).toMatch(HEX32);
    expect(after.uniqueUuid).not.toBe(before.uniqueUuid);
    expect(after.lineageId).toMatch(HEX32);
    expect(after.lineageId).not.toBe(lineageIdOf(readMirrorState(master)!));
    expect(after.lineage).toBe(before.lineage + 1);
    expect(after.generation).toBe(before.generation + 1);
    expect(after.previousLineages).toEqual([{ lineage: before.lineage, lineageId: before.sharedUuid, uniqueUuid: before.uniqueUuid, role: 'slave', endedBy: 'promote', endedAt: after.lastPromote!.time }]);
    expect(after.lastPromote).toEqual({ time: after.lastPromote!.time, fromLineage: before.lineage, fromLineageId: before.sharedUuid, claim: before.claim, rolledBack: true });
    // the windows applied before the cut stay (stated by the rollback line): the tree is not the master's
    expect(fs.readdirSync(ufsAbs(slave, '')).sort()).toContain('d');
  }, 180_000);

  it('refuses a master, a volume without mirror state and a mounted slave, each with one line, changing nothing', async () => {
    const { master, slave } = await mirroredPair();
    const plain = await volume();
    const snaps = [await snapshotTree(master), await snapshotTree(plain)];
    const m = await mirror(['promote', master]);
    expect(m.status).toBe(1);
    expect(m.stderr).toBe(`mirrorddumbfs: ${master}: already a master (lineage epoch 1): nothing to promote\n`);
    const n = await mirror(['promote', plain]);
    expect(n.status).toBe(1);
    expect(n.stderr).toBe(`mirrorddumbfs: ${plain}: no mirror state: not a slave (a volume that was never mirrored is a master already)\n`);
    expect([await snapshotTree(master), await snapshotTree(plain)]).toEqual(snaps);
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    const mv = await mountVolume(slave, mnt);
    try {
      const state = fs.readFileSync(path.join(slave, 'ddfsmirror', 'state'));
      const r = await mirror(['promote', slave]);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`mirrorddumbfs: ${slave}: is mounted on ${mnt}: unmount it first (promote of a mounted volume needs its daemon's control socket, not there yet)\n`);
      expect(fs.readFileSync(path.join(slave, 'ddfsmirror', 'state')).equals(state)).toBe(true);
    } finally {
      await mv.unmount();
    }
    expect(readMirrorState(slave)!.role).toBe('slave');
  }, 180_000);
});

describe('lineage refusals and rebind (scenario 12 without quorum)', () => {
  it('the old master is refused as source and target, both ways of another lineage are refused before any change, rebind restores', async () => {
    const { master: oldMaster, slave: newMaster } = await mirroredPair();
    const stayed = await volume(); // a second slave of the old lineage, never rebound
    const rebound = await volume(); // a third, rebound to the new lineage
    await initSlave(stayed, oldMaster);
    await initSlave(rebound, oldMaster);
    await copy(oldMaster, stayed);
    await copy(oldMaster, rebound);
    const oldLineage = lineageIdOf(readMirrorState(oldMaster)!);
    await promote(newMaster);
    const newLineage = lineageIdOf(readMirrorState(newMaster)!);
    await rebind(rebound, await masterIdentity(newMaster), newMaster);
    expect(readMirrorState(rebound)).toMatchObject({ role: 'slave', lineageId: newLineage, lineage: 2, claim: null });
    // both keep writing: split brain
    await withVolume(oldMaster, (v) => writeUfsFile(v, 'old-only', block('old')));
    await withVolume(newMaster, (v) => writeUfsFile(v, 'new-only', block('new')));
    const all = [oldMaster, newMaster, stayed, rebound];
    const snaps = await Promise.all(all.map((p) => snapshotTree(p)));

    // the old master as a source for the new master, and as a target of it: both are masters
    await expect(copy(oldMaster, newMaster)).rejects.toThrow(`${newMaster}: is a master (lineage epoch 2): not a target; to make it a replica of another master: mirrorddumbfs rebind ${newMaster} --from MASTER`);
    await expect(copy(newMaster, oldMaster)).rejects.toThrow(`${oldMaster}: is a master (lineage epoch 1): not a target; to make it a replica of another master: mirrorddumbfs rebind ${oldMaster} --from MASTER`);
    // the slave rebound to the new lineage refuses the old master (same shared uuid, another lineage)
    await expect(copy(oldMaster, rebound)).rejects.toThrow(`${rebound}: refused: the master is of lineage ${oldLineage}, this slave is bound to lineage ${newLineage} (epoch 2) (an old master after a promote? mirrorddumbfs rebind)`);
    // the new master refuses (and is refused by) the slave left in the old lineage
    await expect(copy(newMaster, stayed)).rejects.toThrow(`${stayed}: refused: the master is of lineage ${newLineage}, this slave is bound to lineage ${oldLineage} (epoch 1)`);
    // the slave's check alone: a one-way stream (read | write) has no slave HELLO for the master to check
    const oneWay = new PassThrough();
    const [mr, sr] = await Promise.allSettled([
      masterOverStreams(oldMaster, oneWay, null, { access: nodeTreeAccess }).finally(() => oneWay.end()),
      slaveOverStreams(rebound, oneWay, null, { access: nodeTreeAccess }).catch((err: unknown) => {
        oneWay.destroy(); // the slave stopped reading: let the master stop too
        throw err;
      }),
    ]);
    expect(sr.status === 'rejected' && String(sr.reason)).toMatch(`the master is of lineage ${oldLineage}, this slave is bound to lineage ${newLineage}`);
    void mr;
    // the master's check alone: a slave HELLO of the old lineage, as an older peer would send it (no lineage_id: the
    // initial lineage, whose id is the shared uuid)
    const cfg = await readVolumeConfig(stayed);
    const st = readMirrorState(stayed)!;
    const fromSlave = new PassThrough();
    const w = await RecordWriter.create(fromSlave, false);
    await w.send({
      type: 'HELLO', version: STREAM_VERSION, role: 'slave', sharedUuid: Buffer.from(st.sharedUuid, 'hex'), uniqueUuid: Buffer.from(st.uniqueUuid, 'hex'),
      generation: st.generation, blockSize: cfg.blockSize, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'exact', capabilities: 0,
    });
    const toSlave = new PassThrough();
    toSlave.resume();
    await expect(masterOverStreams(newMaster, toSlave, fromSlave, { access: nodeTreeAccess }))
      .rejects.toThrow(`the slave does not match the master: it is bound to lineage ${oldLineage}, this master is lineage ${newLineage} (epoch 2): rebind it (mirrorddumbfs rebind SLAVE --from MASTER)`);
    fromSlave.end();
    expect(await Promise.all(all.map((p) => snapshotTree(p)))).toEqual(snaps);

    // rebind refusals, nothing changed: back into a lineage the new master left; a volume without state; a stranger
    await expect(rebind(newMaster, await masterIdentity(oldMaster), oldMaster)).rejects.toThrow(`${newMaster}: left lineage ${oldLineage} by promote at `);
    const plain = await volume();
    await expect(rebind(plain, await masterIdentity(newMaster), newMaster)).rejects.toThrow(`${plain}: no mirror state: not of any lineage (an empty volume becomes a slave with mirrorddumbfs init-slave)`);
    const stranger = await volume();
    await masterIdentity(stranger); // a master of its own shared uuid
    await expect(rebind(stranger, await masterIdentity(newMaster), newMaster)).rejects.toThrow(/: of shared uuid [0-9a-f]{32}, .* of [0-9a-f]{32}: rebind only joins a new lineage/);
    await expect(rebind(rebound, await masterIdentity(newMaster), newMaster)).rejects.toThrow(`${rebound}: already a slave of lineage ${newLineage}`);
    expect(await Promise.all(all.map((p) => snapshotTree(p)))).toEqual(snaps);

    // rebind the old master (the command), then one copy: verify is empty and its split-brain write is gone
    const rb = await mirror(['rebind', oldMaster, '--from', newMaster]);
    expect(rb.status, rb.stderr).toBe(0);
    const ob = readMirrorState(oldMaster)!;
    expect(rb.stdout).toBe(`${oldMaster}: slave of lineage 2 (${newLineage}) of ${newMaster}, unique uuid ${ob.uniqueUuid}: the next copy is a full content pass\n`);
    expect(ob).toMatchObject({ role: 'slave', lineage: 2, lineageId: newLineage, claim: null, pass: null });
    expect(ob.previousLineages).toMatchObject([{ lineage: 1, lineageId: oldLineage, role: 'master', endedBy: 'rebind' }]);
    const c = await copy(newMaster, oldMaster);
    expect(c.slave.committed).toBe(true);
    expect((await verifyInProcess(newMaster, oldMaster)).lines).toEqual([]);
    expect(fs.existsSync(ufsAbs(oldMaster, 'old-only'))).toBe(false);
    expect(fs.existsSync(ufsAbs(oldMaster, 'new-only'))).toBe(true);
    // and the rebound slave takes the new master's passes
    await copy(newMaster, rebound);
    expect((await verifyInProcess(newMaster, rebound)).lines).toEqual([]);
  }, 300_000);
});

describe('status and the recorded verify', () => {
  it('status shows a pass in progress and its staging (human and JSON); verify records its result only where ddfsmirror/ is', async () => {
    const { master, slave } = await mirroredPair();
    const plain = await volume();
    const plainSnap = await snapshotTree(plain);
    const pv = await mirror(['verify', plain, master]);
    expect(pv.status).toBe(1); // they differ
    expect(await snapshotTree(plain)).toEqual(plainSnap); // a plain volume gets nothing
    const lv = JSON.parse(fs.readFileSync(path.join(master, 'ddfsmirror', 'verify'), 'utf8')) as { differences: number; deep: boolean; peer: string };
    expect(lv).toMatchObject({ deep: false, peer: plain });
    expect(lv.differences).toBeGreaterThan(0);

    await files(master, 'e', 12);
    await halfApply(master, slave);
    const st = readMirrorState(slave)!;
    const h = await mirror(['status', slave]);
    expect(h.status).toBe(0);
    const key = Buffer.from(st.pass!.keyCurHex, 'hex').toString('latin1');
    expect(h.stdout).toBe([
      'role: slave',
      `shared uuid: ${st.sharedUuid}`,
      `unique uuid: ${st.uniqueUuid}`,
      'lineage: 1, generation: 1',
      `lineage id: ${st.sharedUuid} (the initial lineage)`,
      `claim: exact, content pass at ${st.claim!.time} (pass ${st.claim!.passId})`,
      `pass in progress: ${st.pass!.passId} since ${st.pass!.startedAt}, applied up to "/${key}" (${st.pass!.recordsApplied} records)`,
      'last promote: none',
      'apply areas present: staging, undo',
      'last verify: none recorded',
    ].join('\n') + '\n');
    const j = JSON.parse((await mirror(['status', slave, '--json'])).stdout) as Record<string, unknown>;
    expect(j).toEqual({ statusVersion: 1, volume: slave, state: st, lineageId: st.sharedUuid, staging: true, undo: true, lastVerify: null });
  }, 180_000);

  it('after promote and verify: status shows the new lineage, the previous one, the last promote and the last verify', async () => {
    const { master, slave } = await mirroredPair();
    const v0 = await mirror(['verify', master, slave, '--deep']);
    expect(v0.status, v0.stdout + v0.stderr).toBe(0);
    const claim = readMirrorState(slave)!.claim!;
    expect((await mirror(['promote', slave])).status).toBe(0);
    const st = readMirrorState(slave)!;
    const j = JSON.parse((await mirror(['status', slave, '--json'])).stdout) as { state: typeof st; lineageId: string; staging: boolean; undo: boolean; lastVerify: { time: string; differences: number; deep: boolean; mtime: boolean; peer: string } };
    expect(j.state).toEqual(st);
    expect(j.lineageId).toBe(st.lineageId);
    expect([j.staging, j.undo]).toEqual([false, false]);
    expect(j.lastVerify).toEqual({ time: j.lastVerify.time, differences: 0, deep: true, mtime: true, peer: master });
    const jm = JSON.parse((await mirror(['status', master, '--json'])).stdout) as { lastVerify: unknown };
    expect(jm.lastVerify).toEqual({ ...j.lastVerify, peer: slave });
    expect(st.claim).toBeNull(); // a master has no claim: the slave's last one is in lastPromote
    const h = (await mirror(['status', slave])).stdout.split('\n');
    expect(h).toEqual([
      'role: master',
      `shared uuid: ${st.sharedUuid}`,
      `unique uuid: ${st.uniqueUuid}`,
      'lineage: 2, generation: 2',
      `lineage id: ${st.lineageId}`,
      `last promote: ${st.lastPromote!.time}, from lineage 1 (${st.sharedUuid}), claim exact at ${claim.time}`,
      `previous lineage: 1 (${st.sharedUuid}) as slave, left by promote at ${st.lastPromote!.time}`,
      'apply areas present: none',
      `last verify: ${j.lastVerify.time}, 0 differences, deep, against ${master}`,
      '',
    ]);
  }, 180_000);
});
