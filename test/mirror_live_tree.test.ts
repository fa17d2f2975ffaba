/**
 * A master pass over a tree written while it runs (a mounted master ingesting, as `mirrorddumbfs stream` meets it):
 * a file that grows between the listing that made its record and the read of its node list is sent with the size of
 * the node list read (FILE_BEGIN's size and node count agree), not rejected by the slave as "N nodes for 0 bytes";
 * the claim is atleast, and the next pass makes the replica equal.
 */
import { afterAll, expect, it } from 'vitest';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import type { TreeAccess } from '../src/mirror/digest.js';
import { fileDevices } from '../src/io/device.js';
import { UfsNodeFile } from '../src/ufs/ufs_reader.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const BS = 4096;
const volumes: TempVolume[] = [];
afterAll(async () => { for (const v of volumes) await v.cleanup(); });

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(v);
  return v.parent;
}

it('a file that grows between its listing and its node-list read is sent with a size that matches its nodes', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'x', seededBlocks('x', 1, BS));
    await writeUfsFile(v, 'y', Buffer.alloc(0)); // created empty, written later (cp's order)
    await writeUfsFile(v, 'z', seededBlocks('z', 1, BS));
  });
  await initSlave(slave, master);
  const z = ufsAbs(master, 'z');
  let zLooks = 0;
  // the master lists the root after its first walk: at its second lstat of z (the listing), y's record is made;
  // y grows now, before the master reads y's node list (3 zero blocks: a header size, no nodes needed)
  const access: TreeAccess = {
    async lstat(p) {
      if (p.equals(z) && ++zLooks === 2) {
        const f = await UfsNodeFile.open(fileDevices, ufsAbs(master, 'y'), 0, { write: true, strict: true });
        try {
          await f.writeHeader(3 * BS);
        } finally {
          await f.close();
        }
      }
      return nodeTreeAccess.lstat(p);
    },
    readlink: (p) => nodeTreeAccess.readlink(p),
  };
  const first = await copyLocal(master, slave, { access });
  expect(zLooks).toBeGreaterThanOrEqual(2);
  expect(first.master.claimKind).toBe('atleast');
  const second = await copyLocal(master, slave, { access: nodeTreeAccess });
  expect(second.master.claimKind).toBe('exact');
  expect((await verifyInProcess(master, slave)).lines).toEqual([]);
}, 120_000);
