/**
 * Writes answered ahead of storing (write-behind, spec §8.6 step 6) whose blocks then cannot be stored (issue 6 §3):
 * they must never read back as other bytes. The block file's writes fail with ENOSPC from the Nth on (a filesystem
 * filled by someone else after the space check): every answered block then reads back as written or fails with
 * CORRUPT (EIO); the lost ones are address-1 nodes carrying the hash of what was written, the file is listed in
 * corrupted.txt, fsckddumbfs -c reports lost blocks (WARNING) and cpddumbfs -c refuses the file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeAddress } from '../src/format/node.js';
import { checkVolume } from '../src/fsck/check.js';
import { FaultyDeviceFactory } from '../src/io/faulty_device.js';
import { ADDR_LOST, UFS_HEADER_SIZE } from '../src/limits.js';
import { Volume } from '../src/volume/volume.js';
import { quietLogger, readCorruptedList, reportCount } from './helpers/crash.js';
import { REPO_DIR, sh } from './helpers/mount.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { noiseBytes } from './helpers/bytes.js';

const BS = 4096;
const volumes: TempVolume[] = [];
afterAll(async () => {
  for (const tv of volumes) await tv.cleanup();
});

/** Answer writes of `pieceSize` bytes ahead of storing until one is refused; the bytes answered. */
async function answerWrites(f: Awaited<ReturnType<Volume['openFile']>>, data: Buffer, pieceSize: number): Promise<number> {
  let answered = 0;
  for (let pos = 0; pos < data.length; pos += pieceSize) {
    try {
      await f.writeBehind(pos, data.subarray(pos, pos + pieceSize), 1024 * 1024);
    } catch {
      break;
    }
    answered = Math.min(data.length, pos + pieceSize);
  }
  return answered;
}

describe('answered writes whose blocks cannot be stored', () => {
  for (const failAt of [1, 3, 6]) {
    it(`block-file writes fail with ENOSPC from write #${failAt} on: each answered block reads as written or fails, lost ones are reported`, async () => {
      const tv = await makeTempVolume({ blockSize: BS, size: '4M' });
      volumes.push(tv);
      const faulty = new FaultyDeviceFactory({ kinds: ['block'], ops: ['write'], errno: 'ENOSPC', sticky: true, failAt });
      const logger = quietLogger();
      const v = await Volume.open(tv.parent, { devices: faulty, logger });
      const p = path.join(v.rootDir, 'wb');
      const f = await v.openFile(p, { create: true });
      const data = noiseBytes(failAt, 12 * BS + 1000);
      // pieces straddle blocks, so partial blocks are buffered and answered too
      const answered = await answerWrites(f, data, 3000);
      expect(answered).toBeGreaterThan(0);
      await f.flush().catch(() => undefined);
      expect(f.size).toBeGreaterThanOrEqual(answered);

      const blockCount = Math.ceil(answered / BS);
      const lost: number[] = [];
      for (let j = 0; j < blockCount; j++) {
        const want = data.subarray(j * BS, Math.min(answered, (j + 1) * BS));
        try {
          const got = await f.read(j * BS, want.length);
          expect(got.equals(want), `block ${j} reads back other bytes`).toBe(true);
        } catch (err) {
          expect(err).toMatchObject({ code: 'CORRUPT' });
          lost.push(j);
        }
      }
      await f.close().catch(() => undefined);
      await v.close();
      reportCount(`lost_blocks failAt=${failAt}: answered bytes / lost blocks`, `${answered} / ${lost.length}`);
      expect(lost.length, 'no block was lost: the fault did not hit an answered write').toBeGreaterThan(0);

      // on disk: address 1 and the hash of what was written (zero-padded past EOF), so a repair can re-link it
      const ufs = fs.readFileSync(p);
      const { nodeSize, addrSize } = tv.config;
      expect(ufs.readBigUInt64BE(8)).toBeGreaterThanOrEqual(BigInt(answered));
      const reader = await Volume.open(tv.parent, { readOnly: true });
      try {
        const size = Number(ufs.readBigUInt64BE(8));
        for (const j of lost) {
          const off = UFS_HEADER_SIZE + j * nodeSize;
          expect(decodeAddress(ufs, off, addrSize)).toBe(ADDR_LOST);
          const block = Buffer.alloc(BS);
          data.copy(block, 0, j * BS, Math.min(size, (j + 1) * BS));
          expect(ufs.subarray(off + addrSize, off + nodeSize).equals(reader.store.hasher.hash(block))).toBe(true);
        }
        const g = await reader.openFile(p, { readOnly: true });
        await expect(g.read(lost[0]! * BS, 1)).rejects.toMatchObject({ code: 'CORRUPT' });
        await g.close();
      } finally {
        await reader.close();
      }

      const listed = readCorruptedList(tv.parent);
      expect(listed.get(p), [...listed.keys()].join(', ')).toBe(' C  ');
      expect(logger.lines.some((l) => l.includes('marked lost'))).toBe(true);
      const check = await checkVolume(tv.parent, { logger: quietLogger(), crashed: false, hashThreads: 0 });
      expect(check.findings.some((x) => x.kind === 'FILE_LOST_BLOCK'), check.findings.map((x) => x.message).join('\n')).toBe(true);
      expect(check.exitCode, check.findings.map((x) => x.message).join('\n')).toBe(2);
      if (failAt === 3) {
        // the commands say so too: fsckddumbfs -c WARNING (2), cpddumbfs -c refuses the file (1, a corrupted block)
        const fsck = await sh(process.execPath, [path.join(REPO_DIR, 'bin', 'fsckddumbfs'), '-c', tv.parent]);
        expect(fsck.code, fsck.stdout + fsck.stderr).toBe(2);
        const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-lost-out-'));
        const cp = await sh(process.execPath, [path.join(REPO_DIR, 'bin', 'cpddumbfs'), '-c', p, path.join(outDir, 'wb')]);
        fs.rmSync(outDir, { recursive: true, force: true });
        expect(cp.code, cp.stderr).toBe(1);
        expect(cp.stderr).toMatch(/corrupted/);
      }
    });
  }
});
