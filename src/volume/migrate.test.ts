/**
 * migrateVolume's index placement (spec §13.1): a crowded source table (3000 of 4096 blocks used, so runs of
 * displaced nodes are long) placed into a smaller and into a larger table satisfies the invariants
 * of spec §5.5 and finds every source hash at its source address; the bitmap bits are copied.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { makeTempVolume, openTempVolume, type TempVolume } from '../../test/helpers/temp_volume.js';
import { writeUfsFile } from '../../test/helpers/ufs_tree.js';
import { lcgBytes } from '../../test/helpers/bytes.js';
import { Logger } from '../util/log.js';
import { migrateVolume } from './migrate.js';

const BS = 512;
const vols: TempVolume[] = [];
afterAll(async () => {
  for (const v of vols) await v.cleanup();
});

async function sourceWithBlocks(blockCount: number, used: number): Promise<TempVolume> {
  const v = await makeTempVolume({ blockSize: BS, size: blockCount * BS });
  vols.push(v);
  const vol = await openTempVolume(v.parent);
  try {
    await writeUfsFile(vol, 'data', lcgBytes(used * BS, 7));
  } finally {
    await vol.close();
  }
  return v;
}

describe('migrateVolume index placement', () => {
  it.each([
    ['smaller (4096 -> 3584 blocks, 84 % used)', 4096, 3000, 3584],
    ['larger (addr_size 2 -> 3)', 4096, 3000, 70_000],
  ])('into a %s table keeps §5.5 and every hash', { timeout: 120_000 }, async (_name, srcBlocks, used, dstBlocks) => {
    const src = await sourceWithBlocks(srcBlocks, used);
    const dst = await makeTempVolume({ blockSize: BS, size: dstBlocks * BS });
    vols.push(dst);
    const logger = new Logger(() => undefined);
    const report = await migrateVolume(src.parent, dst.parent, { logger });
    expect(report.badFiles).toBe(0);
    expect(report.files).toBe(1);
    const s = await openTempVolume(src.parent, { readOnly: true });
    const d = await openTempVolume(dst.parent, { readOnly: true });
    try {
      const si = s.store.index.nodes;
      const di = d.store.index.nodes;
      expect(di.checkInvariants()).toEqual([]);
      let nodes = 0;
      for (let i = 0; i < si.nodeCount; i++) {
        if (si.isEmpty(i)) continue;
        nodes++;
        expect(di.lookupAddress(si.hashView(i))).toBe(si.address(i));
      }
      expect(nodes).toBe(used);
      expect(di.countUsed()).toBe(used);
      expect(report.nodes).toBe(used);
      expect(d.store.index.bitmap.countSet).toBe(s.store.index.bitmap.countSet);
    } finally {
      await s.close();
      await d.close();
    }
  });
});
