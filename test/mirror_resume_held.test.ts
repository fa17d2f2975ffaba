/**
 * Issue 7 (resumable passes): a pass cut after its 2nd CHECKPOINT, then resumed (mirroring spec §4.7, §4.8, §4.9):
 * the blocks the slave stored and flushed in the windows applied before the cut are answered "have" (held), and the
 * files applied before the resume point match their DIGESTQ, so the resume sends fewer files and blocks than the
 * first pass; the resumed pass still ends with verify empty. A stream cut inside a window: the slave stored its blocks
 * and closed cleanly, so they are re-read, hashed and held too (§4.8 conservative HAVE).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { initSlave } from '../src/mirror/copy.js';
import { renderSummary } from '../src/mirror/pass_master.js';
import { readMirrorState } from '../src/mirror/state.js';
import { noiseBytes } from './helpers/bytes.js';
import { twoWayPass } from './helpers/mirror_harness.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';

const BS = 512;
const volumes: TempVolume[] = [];

afterAll(async () => {
  for (const v of volumes) await v.cleanup();
});

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '2M' });
  volumes.push(v);
  return v.parent;
}

/** A master of 40 two-block files under d/, then e/dup: the bytes of d/f00 (its blocks are held after window 1). */
async function buildMaster(master: string): Promise<void> {
  mkdirUfs(master, 'd');
  mkdirUfs(master, 'e');
  await withVolume(master, async (v) => {
    for (let i = 0; i < 40; i++) await writeUfsFile(v, `d/f${String(i).padStart(2, '0')}`, Buffer.concat([noiseBytes(100 + 2 * i, BS), noiseBytes(101 + 2 * i, BS)]));
    await writeUfsFile(v, 'e/dup', Buffer.concat([noiseBytes(100, BS), noiseBytes(101, BS)]));
  });
}

const CP = 30;

describe('a resumed pass ships only what the cut pass had not', () => {
  for (const how of ['stream cut after the 2nd CHECKPOINT', 'slave killed after the 2nd CHECKPOINT window', 'stream cut inside the 3rd window']) {
    it(`${how}: the resume holds the blocks of the applied windows and skips their files`, async () => {
      const master = await volume();
      const fresh = await volume();
      await initSlave(fresh, master);
      await buildMaster(master);
      const first = await twoWayPass(master, fresh, { checkpointRecordCount: CP });
      expect(first.slaveError).toBeNull();
      const checkpoints = first.m2s.records.filter((r) => r.type === 'CHECKPOINT');
      expect(checkpoints.length).toBeGreaterThanOrEqual(4);
      // the same pass onto another fresh slave, interrupted after its 2nd CHECKPOINT
      const slave = await volume();
      await initSlave(slave, master);
      let windows = 0;
      const blocks2 = first.m2s.records.filter((r) => (r.type === 'BLOCK' || r.type === 'BLOCKS') && r.offset > checkpoints[1]!.offset && r.offset < checkpoints[2]!.offset);
      const cut = how === 'stream cut inside the 3rd window'
        ? await twoWayPass(master, slave, { checkpointRecordCount: CP, cutMasterToSlave: blocks2[blocks2.length - 1]!.offset + blocks2[blocks2.length - 1]!.sizeBytes })
        : how.startsWith('stream')
        ? await twoWayPass(master, slave, { checkpointRecordCount: CP, cutMasterToSlave: checkpoints[1]!.offset + checkpoints[1]!.sizeBytes })
        : await twoWayPass(master, slave, {
          checkpointRecordCount: CP, slaveHooks: {
            at: (point) => {
              if (point === 'staged-synced') windows++;
              if (point === 'block-stored' && windows >= 3) throw new Error('simulated kill');
            },
          },
        });
      expect(cut.slave?.committed ?? false).toBe(false);
      expect(readMirrorState(slave)!.pass).not.toBeNull();
      const again = await twoWayPass(master, slave, { checkpointRecordCount: CP });
      expect(again.slaveError).toBeNull();
      expect(again.masterError).toBeNull();
      expect(again.master!.resumed).toBe(true);
      // e/dup's blocks were stored in the first window: held, not sent again
      expect(again.master!.blocksHeld, `sent ${again.master!.blocksSent} of ${first.master!.blocksSent}, files ${again.master!.filesSent} of ${first.master!.filesSent}`).toBeGreaterThanOrEqual(2);
      expect(again.master!.blocksSent).toBeLessThan(first.master!.blocksSent - 2);
      expect(again.master!.filesSent).toBeLessThan(first.master!.filesSent);
      expect(renderSummary(again.master!)).toMatch(new RegExp(`, ${again.master!.blocksHeld} blocks already held by the replica, .*, resumed$`));
      expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    }, 120_000);
  }

  it('the summary of a resumed pass that found no block held says why (by design, spec §4.7)', async () => {
    const master = await volume();
    const slave = await volume();
    await initSlave(slave, master);
    await buildMaster(master);
    const s = (await twoWayPass(master, slave)).master!;
    expect(renderSummary({ ...s, resumed: true, blocksHeld: 0 })).toMatch(/, 0 blocks already held by the replica \(a resumed pass skips by digest what the replica applied; the blocks of a window cut before its CHECKPOINT, not flushed, are sent again\), .*, resumed$/);
    expect(renderSummary({ ...s, resumed: false, blocksHeld: 0 })).toMatch(/, 0 blocks already held by the replica, /);
  }, 120_000);
});
