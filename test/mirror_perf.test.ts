/**
 * What the pass does faster must not make it less right (issue 7 benchmark work; mirroring spec §4.8): HAVE answers
 * are conservative after an unclean stop (a damaged slave block is re-received, not trusted), and the pass's digest
 * cache never answers for a file that changed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { readUfsNode, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';

const BS = 4096;
const volumes: TempVolume[] = [];

function block(seed: string, count = 1): Buffer {
  const out = Buffer.alloc(count * BS);
  for (let k = 0; k * 32 < out.length; k++) createHash('sha256').update(`${seed}:${k}`).digest().copy(out, k * 32);
  return out;
}

async function pair(): Promise<{ master: string; slave: string }> {
  const m = await makeTempVolume({ blockSize: BS, size: '8M' });
  const s = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(m, s);
  await initSlave(s.parent, m.parent);
  return { master: m.parent, slave: s.parent };
}

afterAll(async () => {
  for (const v of volumes) await v.cleanup();
});

/** Overwrite the first 16 bytes of the slave's block holding node 0 of `rel`; returns its address and hash. */
async function damageSlaveBlock(slave: string, rel: string): Promise<{ address: number; hash: Buffer }> {
  const cfg = await readVolumeConfig(slave);
  const node = await readUfsNode(slave, cfg.nodeSize, cfg.addrSize, rel, 0);
  const fd = fs.openSync(path.join(slave, 'ddfsblocks'), 'r+');
  fs.writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, node.address * BS);
  fs.closeSync(fd);
  return node;
}

function slaveBlockAt(slave: string, address: number): Buffer {
  const out = Buffer.alloc(BS);
  const fd = fs.openSync(path.join(slave, 'ddfsblocks'), 'r');
  fs.readSync(fd, out, 0, BS, address * BS);
  fs.closeSync(fd);
  return out;
}

describe('conservative HAVE (spec §4.8)', () => {
  it('after an unclean stop a slave block that no longer hashes to its hash is answered missing and received again', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'one', block('x')));
    await copyLocal(master, slave, { access: nodeTreeAccess });
    const node = await damageSlaveBlock(slave, 'one');
    fs.writeFileSync(path.join(slave, '.autofsck'), ''); // the slave was not cleanly closed
    await withVolume(master, (v) => writeUfsFile(v, 'two', block('x'))); // a new file naming the damaged hash
    const sent: Buffer[] = [];
    const r = await copyLocal(master, slave, { access: nodeTreeAccess, onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(rec.hash); } });
    expect(r.slave.committed).toBe(true);
    expect(sent.some((h) => h.equals(node.hash))).toBe(true);
    expect(slaveBlockAt(slave, node.address).equals(block('x'))).toBe(true);
    expect((await verifyInProcess(master, slave, { deep: true })).lines).toEqual([]);
  }, 120_000);

  it('after a clean stop the index is trusted: the same damage is not re-read (the simple sound form)', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'one', block('y')));
    await copyLocal(master, slave, { access: nodeTreeAccess });
    const node = await damageSlaveBlock(slave, 'one');
    await withVolume(master, (v) => writeUfsFile(v, 'two', block('y')));
    const sent: Buffer[] = [];
    const r = await copyLocal(master, slave, { access: nodeTreeAccess, onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(rec.hash); } });
    expect(r.master.blocksHeld).toBe(1);
    expect(sent.some((h) => h.equals(node.hash))).toBe(false);
    expect(slaveBlockAt(slave, node.address).equals(block('y'))).toBe(false);
  }, 120_000);
});
