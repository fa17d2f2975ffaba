/**
 * One master per slave (mirroring spec §4.12): a slave is bound to the unique uuid of its lineage's master
 * (`masterUuid` in its state, set by init-slave and rebind, by the first committed pass for an older state) and HELLO
 * carries it (optional tag 15). In process over in-memory pipes, and through the serve code path (the command with a
 * remote shell that runs `serve` locally: node bin/mirrorddumbfs, compiled dist/: run `npx tsc -p tsconfig.json`):
 * - a second master of the same lineage (a cloned or forged master state) is refused by the slave (both streams, and
 *   a one-way stream where only the slave checks) and a slave bound elsewhere is refused by the master (a forged
 *   slave HELLO): one line naming both uuids and rebind, exit 1, nothing written;
 * - a relay passes on its master's uuid: its slave is bound to the master and takes passes from both;
 * - a state without masterUuid is bound by its first committed pass; rebind binds to the other master.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { RecordWriter } from '../src/mirror/channel.js';
import { copyLocal, initSlave, masterIdentity, masterOverStreams, slaveOverStreams } from '../src/mirror/copy.js';
import { rebind } from '../src/mirror/promote.js';
import { newUuid, readMirrorState, writeMirrorState } from '../src/mirror/state.js';
import { STREAM_VERSION } from '../src/mirror/stream_codec.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { run } from './helpers/run.js';
import { snapshotTree } from './helpers/snapshot.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const BS = 4096;
const volumes: TempVolume[] = [];
let work: string;

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(v);
  return v.parent;
}

async function files(parent: string, prefix: string, count: number): Promise<void> {
  mkdirUfs(parent, prefix);
  await withVolume(parent, async (v) => {
    for (let k = 0; k < count; k++) await writeUfsFile(v, `${prefix}/f${k}`, seededBlocks(`${prefix}${k}`, 2, BS));
  });
}

// the forged master's tree is another one: a pass from it replaces the slave's (a mass delete, allowed here)
const copy = (m: string, s: string) => copyLocal(m, s, { access: nodeTreeAccess, allowMassDelete: true });

async function mirror(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [BIN, ...args], { timeoutMs: 180_000 });
  return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

/** A second master of `master`'s lineage: another volume given a copy of its state under a new unique uuid. */
async function forgedMaster(master: string): Promise<{ parent: string; uuid: string }> {
  const parent = await volume();
  await files(parent, 'forged', 2);
  const { nextTid: _n, durableHead: _d, ...st } = readMirrorState(master)!;
  const uuid = newUuid();
  writeMirrorState(parent, { ...st, uniqueUuid: uuid });
  return { parent, uuid };
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/pass_slave.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-one-master-'));
});

afterAll(async () => {
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('one master per slave (§4.12)', () => {
  it('a second master of the lineage is refused by the slave, a slave bound elsewhere by the master; nothing written', async () => {
    const master = await volume();
    const slave = await volume();
    await files(master, 'd', 4);
    await initSlave(slave, master);
    const m = readMirrorState(master)!.uniqueUuid;
    expect(readMirrorState(slave)!.masterUuid).toBe(m);
    expect((await copy(master, slave)).slave.committed).toBe(true);
    const forged = await forgedMaster(master);
    const stateBefore = readMirrorState(slave);
    const snap = await snapshotTree(slave);
    const refusal = `${slave}: refused: the source serves master ${forged.uuid}, this slave is bound to master ${m} (one master per slave: mirrorddumbfs rebind ${slave} --from SOURCE, then a full content pass)`;

    // both streams: the slave's check comes first (it reads the master's HELLO before the master reads its own)
    await expect(copy(forged.parent, slave)).rejects.toThrow(refusal);
    // the slave's check alone: a one-way stream (read | write) has no slave HELLO for the master to check
    const oneWay = new PassThrough();
    const [, sr] = await Promise.allSettled([
      masterOverStreams(forged.parent, oneWay, null, { access: nodeTreeAccess }).finally(() => oneWay.end()),
      slaveOverStreams(slave, oneWay, null, { access: nodeTreeAccess }).catch((err: unknown) => {
        oneWay.destroy();
        throw err;
      }),
    ]);
    expect(sr.status === 'rejected' && String(sr.reason)).toContain(refusal);
    // the master's check alone: a slave HELLO of its lineage bound to another master
    const cfg = await readVolumeConfig(slave);
    const other = newUuid();
    const fromSlave = new PassThrough();
    const w = await RecordWriter.create(fromSlave, false);
    await w.send({
      type: 'HELLO', version: STREAM_VERSION, role: 'slave', sharedUuid: Buffer.from(stateBefore!.sharedUuid, 'hex'), uniqueUuid: Buffer.from(stateBefore!.uniqueUuid, 'hex'),
      generation: stateBefore!.generation, blockSize: cfg.blockSize, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
      masterUuid: Buffer.from(other, 'hex'),
    });
    const toSlave = new PassThrough();
    toSlave.resume();
    await expect(masterOverStreams(master, toSlave, fromSlave, { access: nodeTreeAccess }))
      .rejects.toThrow(`the slave does not match the master: it is bound to master ${other}, this source serves master ${m} (one master per slave: rebind it, mirrorddumbfs rebind SLAVE --from MASTER)`);
    fromSlave.end();
    expect(await snapshotTree(slave)).toEqual(snap);
    expect(readMirrorState(slave)).toEqual(stateBefore);
    // no replica record on the master for the refused slave
    expect(fs.existsSync(path.join(master, 'ddfsmirror', 'slaves', stateBefore!.uniqueUuid))).toBe(true); // the real pass's
    expect(fs.existsSync(path.join(master, 'ddfsmirror', 'slaves', other))).toBe(false);

    // the right master still passes
    await files(master, 'e', 2);
    expect((await copy(master, slave)).slave.committed).toBe(true);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);

    // rebind to the other master of the lineage: allowed (a full content pass next); then the first one is refused
    await rebind(slave, await masterIdentity(forged.parent), forged.parent);
    expect(readMirrorState(slave)).toMatchObject({ masterUuid: forged.uuid, claim: null });
    await expect(rebind(slave, await masterIdentity(forged.parent), forged.parent)).rejects.toThrow(`${slave}: already a slave of lineage`);
    expect((await copy(forged.parent, slave)).slave.committed).toBe(true);
    expect((await verifyInProcess(forged.parent, slave)).lines).toEqual([]);
    await expect(copy(master, slave)).rejects.toThrow(`${slave}: refused: the source serves master ${m}, this slave is bound to master ${forged.uuid}`);
  }, 300_000);

  it('a relay passes on its master: its slave takes passes from both; an older state is bound by its first commit', async () => {
    const master = await volume();
    const relay = await volume();
    const leaf = await volume();
    await files(master, 'd', 3);
    await initSlave(relay, master);
    await copy(master, relay);
    await initSlave(leaf, relay);
    const m = readMirrorState(master)!.uniqueUuid;
    expect(readMirrorState(leaf)!.masterUuid).toBe(m);
    expect((await copy(relay, leaf)).slave.committed).toBe(true);
    await files(master, 'e', 2);
    expect((await copy(master, leaf)).slave.committed).toBe(true);
    expect((await verifyInProcess(master, leaf)).lines).toEqual([]);
    // a relay bound to another master is refused by its slave
    const forged = await forgedMaster(master);
    const { masterUuid: _b, ...unbound } = readMirrorState(relay)!;
    writeMirrorState(relay, { ...unbound, masterUuid: forged.uuid });
    await expect(copy(relay, leaf)).rejects.toThrow(`${leaf}: refused: the source serves master ${forged.uuid}, this slave is bound to master ${m}`);
    writeMirrorState(relay, unbound);
    // a relay not bound (an older state) names no master: the lineage check alone, as before
    expect((await copy(relay, leaf)).slave.committed).toBe(true);

    // an older slave state (no masterUuid): its first committed pass binds it
    const { masterUuid: _l, ...older } = readMirrorState(leaf)!;
    writeMirrorState(leaf, older);
    await expect(copy(forged.parent, leaf)).resolves.toBeDefined(); // not bound yet: the lineage matches
    expect(readMirrorState(leaf)!.masterUuid).toBe(forged.uuid);
    await expect(copy(master, leaf)).rejects.toThrow(`${leaf}: refused: the source serves master ${m}, this slave is bound to master ${forged.uuid}`);
  }, 300_000);

  it('through serve (a remote shell running serve locally): a push and a pull to the wrong master exit 1 with the one line', async () => {
    const master = await volume();
    const slave = await volume();
    await files(master, 'd', 2);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    const forged = await forgedMaster(master);
    const m = readMirrorState(master)!.uniqueUuid;
    const rsh = path.join(work, 'local-rsh');
    fs.writeFileSync(rsh, '#!/bin/sh\n# HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$1"\n', { mode: 0o755 });
    const remote = ['-e', rsh, '--mirror-path', BIN];
    // a remote identity carries the master uuid: init-slave --from host:PATH binds to it
    const viaIdentity = await volume();
    expect((await mirror(['init-slave', viaIdentity, '--from', `here:${master}`, ...remote])).status).toBe(0);
    expect(readMirrorState(viaIdentity)!.masterUuid).toBe(m);
    const snap = await snapshotTree(slave);
    // push: the slave side is `serve slave`
    const push = await mirror(['copy', ...remote, forged.parent, `here:${slave}`]);
    expect(push.status).toBe(1);
    expect(push.stderr).toContain(`${slave}: refused: the source serves master ${forged.uuid}, this slave is bound to master ${m}`);
    // pull: the master side is `serve master`
    const pull = await mirror(['copy', ...remote, `here:${forged.parent}`, slave]);
    expect(pull.status).toBe(1);
    expect(pull.stderr).toContain(`${slave}: refused: the source serves master ${forged.uuid}, this slave is bound to master ${m}`);
    expect(await snapshotTree(slave)).toEqual(snap);
    // the right master through serve passes
    const ok = await mirror(['copy', ...remote, master, `here:${slave}`]);
    expect(ok.status, ok.stderr).toBe(0);
  }, 300_000);
});
