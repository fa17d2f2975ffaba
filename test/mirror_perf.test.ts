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
import { setMtimes } from '../src/io/mirror_fs.js';
import { MIRROR_DIGEST_CACHE_RACY_MS } from '../src/limits.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { DigestCache, type UfsFileIdentity } from '../src/mirror/digest_cache.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { readUfsNode, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';

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
    const r = await copyLocal(master, slave, { access: nodeTreeAccess, onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(rec.hash); else if (rec.type === 'BLOCKS') sent.push(...rec.hashes); } });
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
    const r = await copyLocal(master, slave, { access: nodeTreeAccess, onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(rec.hash); else if (rec.type === 'BLOCKS') sent.push(...rec.hashes); } });
    expect(r.master.blocksHeld).toBe(1);
    expect(sent.some((h) => h.equals(node.hash))).toBe(false);
    expect(slaveBlockAt(slave, node.address).equals(block('y'))).toBe(false);
  }, 120_000);
});

describe('the digest cache of a pass (mirror/digest_cache.ts)', () => {
  const id = { dev: 7, ino: 1234n, sizeOnDiskBytes: 4160, mtimeNs: 1_000_000_000n, ctimeNs: 1_000_000_500n };
  const value = { sizeBytes: 8192, contentDigest: createHash('sha256').update('c').digest() };
  const later = 10n ** 18n; // a pass start long after the entry's ctime: the entry is not racy

  it('answers a saved entry only for the very same identity; a changed ctime, size or mtime is a miss', async () => {
    const { master } = await pair();
    const a = DigestCache.open(master, 24, later);
    expect(a.lookup(id)).toBeNull();
    a.store(id, value);
    a.save();
    const b = DigestCache.open(master, 24, later);
    expect(b.lookup(id)?.contentDigest.equals(value.contentDigest)).toBe(true);
    expect(b.lookup({ ...id, ctimeNs: id.ctimeNs + 1n })).toBeNull();
    expect(b.lookup({ ...id, sizeOnDiskBytes: id.sizeOnDiskBytes + 1 })).toBeNull();
    expect(b.lookup({ ...id, mtimeNs: id.mtimeNs - 1n })).toBeNull();
    expect(b.lookup({ ...id, ino: id.ino + 1n })).toBeNull();
    expect(DigestCache.open(master, 20, later).lookup(id)).toBeNull(); // another hash size: not this volume's cache
  });

  it('keeps no entry for a file changed within the racy margin of the pass start', async () => {
    const { master } = await pair();
    const a = DigestCache.open(master, 24, id.ctimeNs + 1_000_000n); // 1 ms after the change
    a.store(id, value);
    expect(a.lookup(id)).not.toBeNull(); // within the pass: answered from memory
    a.save();
    expect(DigestCache.open(master, 24, later).lookup(id)).toBeNull();
  });

  it('a damaged cache file (a flipped byte, cut, garbage, a directory) is ignored, never an error', async () => {
    const { master } = await pair();
    const file = path.join(master, 'ddfsmirror', 'digest-cache');
    const a = DigestCache.open(master, 24, later);
    a.store(id, value);
    a.save();
    const good = fs.readFileSync(file);
    for (const bad of [
      Buffer.concat([good.subarray(0, 60), Buffer.from([good[60]! ^ 1]), good.subarray(61)]),
      good.subarray(0, good.length - 1),
      Buffer.from('not a cache at all'),
      Buffer.alloc(0),
    ]) {
      fs.writeFileSync(file, bad);
      expect(DigestCache.open(master, 24, later).lookup(id)).toBeNull();
    }
    fs.rmSync(file);
    fs.mkdirSync(file);
    expect(DigestCache.open(master, 24, later).lookup(id)).toBeNull();
  });

  it('a file rewritten keeping its size and mtime is sent by the next pass (its ctime changed), the rest answered from the cache', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'same', block('same'));
      await writeUfsFile(v, 'f', block('old', 2));
    });
    const before = fs.lstatSync(ufsAbs(master, 'f'), { bigint: true });
    // older than the racy margin at the pass's start, so the first pass keeps both files' entries
    await new Promise((r) => setTimeout(r, MIRROR_DIGEST_CACHE_RACY_MS + 500));
    await copyLocal(master, slave, { access: nodeTreeAccess });
    const cached = DigestCache.open(master, (await readVolumeConfig(master)).hashSize);
    expect(cached.lookup(idOf(fs.lstatSync(ufsAbs(master, 'same'), { bigint: true })))).not.toBeNull();
    expect(cached.lookup(idOf(before))).not.toBeNull();
    await withVolume(master, (v) => writeUfsFile(v, 'f', block('new', 2)));
    await setMtimes([{ path: ufsAbs(master, 'f'), mtimeNs: before.mtimeNs }]);
    const after = fs.lstatSync(ufsAbs(master, 'f'), { bigint: true });
    expect([after.size, after.mtimeNs, after.ino]).toEqual([before.size, before.mtimeNs, before.ino]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);
    const r = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect(r.master.filesSent).toBe(1);
    expect(r.master.blocksSent).toBe(2);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    // the master's cache never answered for the old state: a damaged cache file changes nothing either
    const file = path.join(master, 'ddfsmirror', 'digest-cache');
    const bytes = fs.readFileSync(file);
    bytes[20] = bytes[20]! ^ 0xff;
    fs.writeFileSync(file, bytes);
    const r2 = await copyLocal(master, slave, { access: nodeTreeAccess });
    expect([r2.master.filesSent, r2.master.blocksSent, r2.slave.committed]).toEqual([0, 0, true]);
  }, 120_000);
});

function idOf(st: fs.BigIntStats): UfsFileIdentity {
  return { dev: Number(st.dev), ino: st.ino, sizeOnDiskBytes: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}
