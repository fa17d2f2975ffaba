/**
 * Byte compatibility with volumes written by the upstream ddumbfs 1.1 C tools (fixtures README):
 * - every file of the clean volumes downloads with its MD5 (library download, with -c semantics: all blocks ok);
 * - createVolume with the README's mkddumbfs options writes the same ddfs.cfg;
 * - uploading the fixture sources in the order of the .upload.out gives the same -v lines, the same ddfsidx,
 *   ddfsblocks and UFS files, byte for byte (next-fit allocation, sorted insertion with shifting, node encoding,
 *   header);
 * - writing a new file into a copy of a fixture volume keeps every original file intact and the index sound.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UfsDownload, type DownloadBlockRecord } from '../src/copy/download.js';
import { fileReader, streamReader } from '../src/copy/stream_io.js';
import { openVolumeForUpload, uploadFile, type UploadBlockRecord } from '../src/copy/upload.js';
import { formatUploadLine } from '../src/cli/cpddumbfs.js';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import {
  CLEAN_VOLUMES, FIXTURE_SRC_DIR, copyFixtureVolume, fixtureVolumePath, listFiles, makeTempDir, md5, readMd5Sums,
  readUploadLog, removeTempDirs,
} from './helpers/fixtures.js';

afterAll(removeTempDirs);

/** Download a UFS file with the library; returns the bytes and the per-node records. */
async function downloadBytes(volume: Volume, ufsPath: string, check = true): Promise<{ data: Buffer; records: DownloadBlockRecord[]; intact: boolean }> {
  const dl = await UfsDownload.open(volume, ufsPath);
  const parts: Buffer[] = [];
  const records: DownloadBlockRecord[] = [];
  try {
    const r = await dl.copyTo(async (d) => void parts.push(Buffer.from(d)), { check, onBlock: (x) => void records.push(x) });
    const data = Buffer.concat(parts);
    expect(r.writtenSize).toBe(data.length);
    expect(r.size).toBe(data.length);
    return { data, records, intact: r.intact };
  } finally {
    await dl.close();
  }
}

/** Upload one host file into a volume parent the way one upstream cpddumbfs process does (open, copy, close). */
async function uploadHostFile(parent: string, hostPath: string, ufsRelPath: string): Promise<UploadBlockRecord[]> {
  const ufsPath = join(parent, 'ddfsroot', ufsRelPath);
  await mkdir(dirname(ufsPath), { recursive: true });
  const volume = await openVolumeForUpload(parent);
  const records: UploadBlockRecord[] = [];
  const fh = await open(hostPath, 'r');
  try {
    await uploadFile(volume, fileReader(fh), ufsPath, { onBlock: (r) => void records.push(r) });
  } finally {
    await fh.close();
    await volume.close();
  }
  return records;
}

describe.each(CLEAN_VOLUMES)('fixture $name', (vol) => {
  it('every source file downloads with its MD5 and checks ok', async () => {
    const sums = await readMd5Sums();
    expect(sums.size).toBe(7);
    const parent = await copyFixtureVolume(vol.name);
    const volume = await Volume.open(parent, { readOnly: true });
    try {
      for (const [rel, sum] of sums) {
        const { data, records, intact } = await downloadBytes(volume, join(parent, 'ddfsroot', rel));
        expect(md5(data), rel).toBe(sum);
        expect(intact, rel).toBe(true);
        expect(records.length, rel).toBe(Math.ceil(data.length / vol.blockSize));
        expect(records.every((r) => r.status === 'ok'), rel).toBe(true);
      }
    } finally {
      await volume.close();
    }
  });

  it('mkfs + uploads in .upload.out order reproduce cfg, -v lines, index, block file and UFS files byte for byte', async () => {
    const parent = join(await makeTempDir(), vol.name);
    await mkdir(parent);
    await createVolume(parent, {
      partitionSize: vol.partitionSize, blockSize: vol.blockSize, hashName: vol.hashName, nodeOverflow: 1.3, reuseAsap: false,
    });
    const fixture = fixtureVolumePath(vol.name);
    expect(await readFile(join(parent, 'ddfs.cfg'))).toEqual(await readFile(join(fixture, 'ddfs.cfg')));

    const log = await readUploadLog(vol.name);
    expect(log.length).toBe(7);
    for (const entry of log) {
      const records = await uploadHostFile(parent, join(FIXTURE_SRC_DIR, entry.path), entry.path);
      expect(records.map(formatUploadLine), entry.path).toEqual(entry.lines);
    }

    const idx = await readFile(join(parent, 'ddfsidx'));
    const fixtureIdx = await readFile(join(fixture, 'ddfsidx'));
    expect(idx.length).toBe(fixtureIdx.length);
    expect(idx.equals(fixtureIdx)).toBe(true);
    expect((await readFile(join(parent, 'ddfsblocks'))).equals(await readFile(join(fixture, 'ddfsblocks')))).toBe(true);

    const skip = new Set(['.ddumbfs']);
    const ours = await listFiles(join(parent, 'ddfsroot'), skip);
    const theirs = await listFiles(join(fixture, 'ddfsroot'), skip);
    expect(ours).toEqual(theirs);
    for (const rel of theirs) {
      const a = await readFile(join(parent, 'ddfsroot', rel));
      const b = await readFile(join(fixture, 'ddfsroot', rel));
      expect(a.toString('hex'), rel).toBe(b.toString('hex'));
    }
    // cpddumbfs writes no checkpoint (spec §11: no checkpoint; the fixture has none either)
    expect((await listFiles(parent, new Set(['ddfsroot']))).sort()).toEqual(['ddfs.cfg', 'ddfsblocks', 'ddfsidx']);
  });

  it('a new file written into a copy keeps every original intact and the index sound', async () => {
    const parent = await copyFixtureVolume(vol.name);
    const gen = await readFile(join(FIXTURE_SRC_DIR, 'gen-s3.bin'));
    // new blocks (a pattern no fixture file has), a block shared with gen-s3.bin, a zero block, a partial tail
    const fresh = Buffer.alloc(vol.blockSize * 2);
    let x = 12345;
    for (let i = 0; i < fresh.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      fresh[i] = x >>> 24;
    }
    const content = Buffer.concat([fresh, gen.subarray(0, vol.blockSize), Buffer.alloc(vol.blockSize), Buffer.from('tail')]);

    const before = await Volume.open(parent, { readOnly: true });
    const usedBefore = before.store.blockCountUsed;
    await before.close();

    const volume = await openVolumeForUpload(parent);
    const records: UploadBlockRecord[] = [];
    try {
      async function* one(): AsyncIterable<Buffer> { yield content; }
      await uploadFile(volume, streamReader(one()), join(parent, 'ddfsroot', 'new.bin'), { onBlock: (r) => void records.push(r) });
    } finally {
      await volume.close();
    }
    expect(records.length).toBe(5);
    expect(records[3]!.address).toBe(0);
    expect(records.filter((r) => r.address >= 2).length).toBe(4);

    const after = await Volume.open(parent, { readOnly: true });
    try {
      // 2 fresh blocks + 1 fresh tail; the gen-s3 block and the zero block take no new space
      expect(after.store.blockCountUsed).toBe(usedBefore + 3);
      expect(after.store.index.nodes.checkInvariants()).toEqual([]);
      expect(after.store.index.nodes.countUsed() + 2).toBe(after.store.blockCountUsed);
      for (const [rel, sum] of await readMd5Sums()) {
        const { data, intact } = await downloadBytes(after, join(parent, 'ddfsroot', rel));
        expect(md5(data), rel).toBe(sum);
        expect(intact, rel).toBe(true);
      }
      const back = await downloadBytes(after, join(parent, 'ddfsroot', 'new.bin'));
      expect(back.data.equals(content)).toBe(true);
      expect(back.intact).toBe(true);
    } finally {
      await after.close();
    }
  });
});
