/**
 * The pass by content (mirroring spec §4.6 step 5, §4.7, §4.8, §4.9; invariants 1, 4, 5, 6, 7, 9 of §4.18 without
 * a journal), both sides in process over an in-memory duplex: a copy to an empty slave is verify-empty and reads back
 * byte for byte; a second pass sends only what changed (counted BLOCK records); a directory rename sends no BLOCK;
 * deletions, hard links, symlinks, FIFOs, devices, sparse files, non-UTF-8 and 255-byte names, empty files and
 * directories arrive; a mass delete is refused; a corrupt master block is not sent; a BLOCK that does not match its
 * hash is rejected with the slave's tree unchanged; a pass cut after a CHECKPOINT resumes without resending blocks.
 * cpddumbfs (dist/) reads files back: run `npx tsc -p tsconfig.json` first.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave, masterOverStreams, slaveOverStreams } from '../src/mirror/copy.js';
import { FileContentHasher } from '../src/mirror/digest.js';
import { activePassPins } from '../src/mirror/pass_slave.js';
import { readMirrorState, writeMirrorState } from '../src/mirror/state.js';
import { StreamEncoder } from '../src/mirror/stream_codec.js';
import { BlockStore } from '../src/store/block_store.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { run, runOk } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { fifoUfs, linkUfs, mkdirUfs, readUfsNode, symlinkUfs, truncateUfsFile, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const CP = path.join(ROOT, 'bin/cpddumbfs');
const BS = 4096;
const LATIN = Buffer.from('caf\xe9', 'latin1');
const LONG = 'n'.repeat(255);
const volumes: TempVolume[] = [];

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(v);
  return v.parent;
}

async function pair(): Promise<{ master: string; slave: string }> {
  const master = await volume();
  const slave = await volume();
  await initSlave(slave, master);
  return { master, slave };
}

const copy = (m: string, s: string, extra: Parameters<typeof copyLocal>[2] extends infer O ? Partial<O> : never = {}) =>
  copyLocal(m, s, { access: nodeTreeAccess, ...extra });

async function verifyLines(a: string, b: string): Promise<string[]> {
  return (await verifyInProcess(a, b)).lines;
}

/** The bytes of UFS file `rel` of `parent`, through cpddumbfs download. */
async function download(parent: string, rel: string): Promise<Buffer> {
  const out = path.join(os.tmpdir(), `ddfs-pass-dl-${process.pid}-${Math.random()}`);
  const r = await run('node', [CP, path.join(parent, 'ddfsroot', rel), out]);
  expect(r.code, r.stderr.toString()).toBe(0);
  const b = fs.readFileSync(out);
  fs.rmSync(out);
  return b;
}

/** A tree of every kind of entry. */
async function buildTree(master: string): Promise<void> {
  mkdirUfs(master, 'a');
  mkdirUfs(master, 'a/deep');
  mkdirUfs(master, 'emptydir', 0o700);
  mkdirUfs(master, 'b');
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'a/f1', block('f1', 3));
    await writeUfsFile(v, 'a/deep/f2', Buffer.concat([block('f2'), Buffer.from('tail')]));
    await writeUfsFile(v, 'a/dup', block('f1', 3)); // same blocks as a/f1: each hash once per pass
    await writeUfsFile(v, 'empty', Buffer.alloc(0));
    await writeUfsFile(v, 'sparse', block('sp'), 5 * BS); // five holes then one block
    await writeUfsFile(v, 'zeros', Buffer.alloc(2 * BS)); // zero blocks: never sent
    await writeUfsFile(v, Buffer.concat([Buffer.from('b/'), LATIN]), block('latin'));
    await writeUfsFile(v, `b/${LONG}`, block('long'));
  });
  linkUfs(master, 'a/f1', 'b/f1link');
  symlinkUfs(master, 'nowhere/at/all', 'dangling');
  symlinkUfs(master, Buffer.concat([Buffer.from('b/'), LATIN]), 'b/tolatin');
  await fifoUfs(master, 'a/fifo');
  await runOk('mknod', [ufsAbs(master, 'chardev').toString(), 'c', '1', '3']);
  fs.chmodSync(ufsAbs(master, 'a/f1'), 0o640);
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/cli/cpddumbfs.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
});

afterAll(async () => {
  for (const v of volumes) await v.cleanup();
});

describe('mirror pass by content (in process)', () => {
  it('a copy to an empty slave: verify is empty, every file reads back equal, each distinct block sent once, claim recorded', async () => {
    const { master, slave } = await pair();
    await buildTree(master);
    const { master: sum, slave: ss } = await copy(master, slave);
    expect(await verifyLines(master, slave)).toEqual([]);
    // distinct non-zero blocks: f1 (3), f2 (2), sparse (1), latin (1), long (1); dup, f1link and zeros add none
    expect(sum.blocksSent).toBe(8);
    expect(ss.blocksReceived).toBe(8);
    expect(sum.blocksHeld).toBe(0);
    for (const rel of ['a/f1', 'a/deep/f2', 'a/dup', 'empty', 'sparse', 'zeros', 'b/f1link', `b/${LONG}`]) {
      expect((await download(slave, rel)).equals(await download(master, rel)), rel).toBe(true);
    }
    expect(fs.readFileSync(ufsAbs(slave, Buffer.concat([Buffer.from('b/'), LATIN]))).length).toBeGreaterThan(16);
    expect(fs.statSync(ufsAbs(slave, 'a/f1')).ino).toBe(fs.statSync(ufsAbs(slave, 'b/f1link')).ino);
    expect(fs.lstatSync(ufsAbs(slave, 'a/fifo')).isFIFO()).toBe(true);
    expect(fs.lstatSync(ufsAbs(slave, 'chardev')).isCharacterDevice()).toBe(true);
    expect(fs.readlinkSync(ufsAbs(slave, 'dangling')).toString()).toBe('nowhere/at/all');
    // the sparse file's holes are zero nodes on the slave too (address 0)
    const cfg = await readVolumeConfig(slave);
    expect((await readUfsNode(slave, cfg.nodeSize, cfg.addrSize, 'sparse', 2)).address).toBe(0);
    const st = readMirrorState(slave)!;
    expect(st.role).toBe('slave');
    expect(st.claim?.claimKind).toBe('exact');
    expect(st.pass).toBeNull();
    expect(st.sharedUuid).toBe(readMirrorState(master)!.sharedUuid);
    expect(fs.readdirSync(path.join(slave, 'ddfsmirror'))).not.toContain('staging');
  }, 120_000);

  it('a file whose node list outgrows the slave\'s staged-file buffer (staged as it arrives) and many small ones (staged whole, in the background) arrive equal', async () => {
    const { master, slave } = await pair();
    // 300 MiB of holes then one block: 76,801 nodes, a staged node list of 1.8 MiB (over MIRROR_STAGED_BUFFER_SIZE_BYTES)
    const HOLES = 300 * 256;
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'huge-sparse', block('hs'), HOLES * BS);
      for (let k = 0; k < 150; k++) await writeUfsFile(v, `small${k}`, Buffer.from(`small file ${k}`));
    });
    const { slave: ss } = await copy(master, slave, { checkpointRecordCount: 100 });
    expect(ss.blocksReceived).toBe(151);
    expect(await verifyLines(master, slave)).toEqual([]);
    const cfg = await readVolumeConfig(slave);
    expect(fs.statSync(ufsAbs(slave, 'huge-sparse')).size).toBe(16 + (HOLES + 1) * cfg.nodeSize);
    expect((await readUfsNode(slave, cfg.nodeSize, cfg.addrSize, 'huge-sparse', HOLES - 1)).address).toBe(0);
    expect((await readUfsNode(slave, cfg.nodeSize, cfg.addrSize, 'huge-sparse', HOLES)).address).toBeGreaterThan(1);
    expect((await download(slave, 'small149')).toString()).toBe('small file 149');
    expect(fs.readdirSync(path.join(slave, 'ddfsmirror'))).not.toContain('staging');
  }, 120_000);

  it('a second pass of an unchanged tree sends no BLOCK and no FILE; one changed file of many sends only its new blocks', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      for (let k = 0; k < 30; k++) await writeUfsFile(v, `f${k}`, block(`many${k}`, 2));
    });
    const first = await copy(master, slave);
    expect(first.master.blocksSent).toBe(60);
    const again = await copy(master, slave);
    expect(again.master.blocksSent).toBe(0);
    expect(again.master.filesSent).toBe(0);
    expect(again.master.bytesOnWire).toBeLessThan(1000);
    // change block 1 of f7 only: one new block crosses
    await withVolume(master, (v) => writeUfsFile(v, 'f7', block('changed'), BS));
    const third = await copy(master, slave);
    expect(third.master.blocksSent).toBe(1);
    expect(third.master.filesSent).toBe(1);
    expect(third.master.blocksHeld).toBe(1); // block 0 of f7: queried, the slave holds it
    expect(await verifyLines(master, slave)).toEqual([]);
    expect((await download(slave, 'f7')).equals(await download(master, 'f7'))).toBe(true);
  }, 120_000);

  it('renaming a directory holding many blocks sends no BLOCK; deletes, type changes and truncations arrive', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'big');
    mkdirUfs(master, 'big/sub');
    await withVolume(master, async (v) => {
      for (let k = 0; k < 10; k++) await writeUfsFile(v, `big/sub/g${k}`, block(`big${k}`, 4));
      await writeUfsFile(v, 'gone', block('gone'));
      await writeUfsFile(v, 'becomesdir', block('bd'));
      await writeUfsFile(v, 'shrink', block('shrink', 3));
    });
    await copy(master, slave);
    fs.renameSync(ufsAbs(master, 'big'), ufsAbs(master, 'moved'));
    fs.rmSync(ufsAbs(master, 'gone'));
    fs.rmSync(ufsAbs(master, 'becomesdir'));
    mkdirUfs(master, 'becomesdir');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'becomesdir/inner', Buffer.alloc(0));
      await truncateUfsFile(v, 'shrink', 100);
    });
    const r = await copy(master, slave, { allowMassDelete: true });
    // the only new content is the truncated block of shrink (its bytes past 100 are now zeros); the moved directory
    // is a RENAME hint the slave applied, so its 40 blocks are not even queried
    expect(r.master.blocksSent).toBe(1);
    expect(r.master.blocksHeld).toBe(0);
    expect(r.master.renamesMatched).toBe(1);
    expect(await verifyLines(master, slave)).toEqual([]);
    expect(fs.existsSync(ufsAbs(slave, 'gone'))).toBe(false);
    expect(fs.existsSync(ufsAbs(slave, 'big'))).toBe(false);
    expect((await download(slave, 'shrink')).equals(await download(master, 'shrink'))).toBe(true);
  }, 120_000);

  it('a pass deleting more than 25% of the slave is refused, the slave unchanged; --allow-mass-delete lets it through', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      for (let k = 0; k < 8; k++) await writeUfsFile(v, `m${k}`, block(`m${k}`));
    });
    await copy(master, slave);
    for (let k = 0; k < 4; k++) fs.rmSync(ufsAbs(master, `m${k}`));
    await expect(copy(master, slave)).rejects.toThrow(/would delete 4 of the slave's 8 entries .*--allow-mass-delete/);
    expect(fs.readdirSync(ufsAbs(slave, '')).filter((n) => n.startsWith('m')).length).toBe(8);
    expect(readMirrorState(slave)!.claim).not.toBeNull();
    await copy(master, slave, { allowMassDelete: true });
    expect(await verifyLines(master, slave)).toEqual([]);
  }, 120_000);

  it('a corrupt master block is reported and never sent; the file is not sent and the claim is only atleast', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'good', block('good'));
      await writeUfsFile(v, 'bad', block('bad', 2));
    });
    const cfg = await readVolumeConfig(master);
    const node = await readUfsNode(master, cfg.nodeSize, cfg.addrSize, 'bad', 1);
    const fd = fs.openSync(path.join(master, 'ddfsblocks'), 'r+');
    fs.writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, node.address * BS);
    fs.closeSync(fd);
    const reports: string[] = [];
    const sent: Buffer[] = [];
    const r = await copy(master, slave, {
      report: (l) => reports.push(l),
      onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(rec.hash); else if (rec.type === 'BLOCKS') sent.push(...rec.hashes); },
    });
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/^CORRUPT \S*bad\S* block 1 on the master: not sent$/);
    expect(sent.some((h) => h.equals(node.hash))).toBe(false);
    expect(r.master.corrupt).toHaveLength(1);
    expect(r.master.claimKind).toBe('atleast');
    expect(fs.existsSync(ufsAbs(slave, 'bad'))).toBe(false);
    expect((await download(slave, 'good')).equals(await download(master, 'good'))).toBe(true);
    expect(readMirrorState(slave)!.claim?.claimKind).toBe('atleast');
  }, 120_000);

  it('a corrupt master block in the middle of a read-ahead run is reported and not sent; the blocks around it, and the runs read beside it, are sent once each', async () => {
    // 3000 blocks of consecutive addresses: three runs of at most 4 MiB (1024 blocks), read side by side (runReader);
    // block 1500 is in the middle of the second
    const count = 3000;
    const bad = 1500;
    const vm = await makeTempVolume({ blockSize: BS, size: '48M' });
    const vs = await makeTempVolume({ blockSize: BS, size: '48M' });
    volumes.push(vm, vs);
    const master = vm.parent;
    const slave = vs.parent;
    await initSlave(slave, master);
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'big', block('ra', count));
      await writeUfsFile(v, 'good', block('ra-good', 3));
    });
    const cfg = await readVolumeConfig(master);
    const nodes: Array<{ address: number; hash: Buffer }> = [];
    for (let k = 0; k < count; k++) nodes.push(await readUfsNode(master, cfg.nodeSize, cfg.addrSize, 'big', k));
    // the file's blocks lie at consecutive addresses: the bad one is inside a run, not at its edge
    for (let k = 1; k < count; k++) expect(nodes[k]!.address).toBe(nodes[k - 1]!.address + 1);
    const fd = fs.openSync(path.join(master, 'ddfsblocks'), 'r+');
    fs.writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, nodes[bad]!.address * BS);
    fs.closeSync(fd);
    const reports: string[] = [];
    const sent: Buffer[] = [];
    // block reads of one block are the re-reads of blocks whose run did not hash to their nodes (recoverBlock)
    const reads = vi.spyOn(BlockStore.prototype, 'readBlocks');
    let r;
    let calls: unknown[][] = [];
    try {
      r = await copy(master, slave, {
        report: (l) => reports.push(l),
        onMasterBytes: (_b, rec) => { if (rec.type === 'BLOCK') sent.push(Buffer.from(rec.hash)); else if (rec.type === 'BLOCKS') sent.push(...rec.hashes.map((h) => Buffer.from(h))); },
      });
      calls = [...reads.mock.calls];
    } finally {
      reads.mockRestore();
    }
    // only the corrupt block was read again: every other block hashed right in the run read ahead with it
    expect(calls.filter((c) => c[1] === 1).map((c) => c[0])).toEqual([nodes[bad]!.address]);
    expect(reports).toEqual([expect.stringMatching(/^CORRUPT \S*big\S* block 1500 on the master: not sent$/)]);
    expect(r.master.corrupt).toEqual([{ path: Buffer.from('big'), blockIndex: bad }]);
    expect(sent.some((h) => h.equals(nodes[bad]!.hash))).toBe(false);
    // every other block of the file was sent, each once (and the three of 'good')
    const sentKeys = new Set(sent.map((h) => h.toString('hex')));
    expect(sentKeys.size).toBe(sent.length);
    expect(sent.length).toBe(count - 1 + 3);
    for (let k = 0; k < count; k++) if (k !== bad) expect(sentKeys.has(nodes[k]!.hash.toString('hex')), `block ${k}`).toBe(true);
    expect(r.master.blocksSent).toBe(count - 1 + 3);
    expect(r.master.claimKind).toBe('atleast');
    expect(fs.existsSync(ufsAbs(slave, 'big'))).toBe(false);
    expect((await download(slave, 'good')).equals(await download(master, 'good'))).toBe(true);
  }, 120_000);

  it('a BLOCK whose bytes do not match its hash (valid CRC) rejects the pass and leaves the slave tree unchanged', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'x', block('x')));
    await copy(master, slave);
    const before = fs.readdirSync(ufsAbs(slave, ''));
    const ms = readMirrorState(master)!;
    const cfg = await readVolumeConfig(slave);
    const store = await BlockStore.open(slave, cfg, { readOnly: true });
    const wrongHash = Buffer.alloc(cfg.hashSize);
    store.hasher.hashInto(block('other'), wrongHash, 0);
    await store.close();
    const enc = await StreamEncoder.create();
    const s = new PassThrough();
    const recs = [
      enc.encode({ type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.from(ms.sharedUuid, 'hex'), uniqueUuid: Buffer.from(ms.uniqueUuid, 'hex'), generation: 1, blockSize: BS, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0 }),
      enc.encode({ type: 'PASS_BEGIN', passId: Buffer.alloc(16, 7), tidBeg: 0n, tidEnd: 0n, mode: 'full' }),
      enc.encode({ type: 'DIR', path: Buffer.alloc(0), meta: { mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, atimeNs: 0n }, tid: 0n }),
      enc.encode({ type: 'DIRLIST', path: Buffer.alloc(0), entries: [{ name: Buffer.from('y'), entryType: 'file', tid: 0n }], continues: false }),
      enc.encode({ type: 'BLOCK', hash: wrongHash, data: block('y') }),
    ];
    s.end(Buffer.concat(recs));
    await expect(slaveOverStreams(slave, s, null, { access: nodeTreeAccess })).rejects.toThrow(/BLOCK seq 5: its bytes do not hash to .*: pass rejected/);
    expect(fs.readdirSync(ufsAbs(slave, ''))).toEqual(before);
    expect(await verifyLines(master, slave)).toEqual([]);
  }, 120_000);

  it('a pass cut after a CHECKPOINT resumes with the same pass id: no block is sent twice, and verify is empty', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      for (let k = 0; k < 12; k++) await writeUfsFile(v, `r${String(k).padStart(2, '0')}`, block(`r${k}`, 2));
    });
    let checkpoints = 0;
    let firstSent = 0;
    await expect(copy(master, slave, {
      checkpointRecordCount: 8,
      onMasterBytes: (_b, rec) => {
        if (rec.type === 'BLOCK') firstSent++;
        if (rec.type === 'BLOCKS') firstSent += rec.hashes.length;
        if (checkpoints === 2) throw new Error('cut');
        if (rec.type === 'CHECKPOINT') checkpoints++;
      },
    })).rejects.toThrow();
    const pending = readMirrorState(slave)!.pass;
    expect(pending).not.toBeNull();
    expect(pending!.keyCurHex).not.toBe('');
    const applied = fs.readdirSync(ufsAbs(slave, '')).length;
    expect(applied).toBeGreaterThan(0);
    expect(applied).toBeLessThan(12);
    const r = await copy(master, slave);
    expect(r.master.resumed).toBe(true);
    expect(firstSent + r.master.blocksSent).toBe(24);
    expect(await verifyLines(master, slave)).toEqual([]);
    expect(readMirrorState(slave)!.pass).toBeNull();
  }, 120_000);

  it('init-slave refuses a non-empty volume, another block size, and a second binding, with one line', async () => {
    const master = await volume();
    const full = await volume();
    await withVolume(full, (v) => writeUfsFile(v, 'x', block('x')));
    await expect(initSlave(full, master)).rejects.toThrow(/not an empty volume/);
    const other = await makeTempVolume({ blockSize: 8192, size: '8M' });
    volumes.push(other);
    await expect(initSlave(other.parent, master)).rejects.toThrow(/block size 8192, the master's is 4096/);
    const s = await volume();
    await initSlave(s, master);
    await expect(initSlave(s, master)).rejects.toThrow(/already a slave of/);
    expect(fs.existsSync(path.join(full, 'ddfsmirror'))).toBe(false);
  }, 60_000);

  /** A one-way stream of `master` as bytes (what `read` writes). */
  async function readStream(master: string): Promise<Buffer> {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await masterOverStreams(master, out, null, { access: nodeTreeAccess });
    return Buffer.concat(chunks);
  }

  function feed(bytes: Buffer): PassThrough {
    const s = new PassThrough();
    s.end(bytes);
    return s;
  }

  it('a master that exits after its TERM, closing the pipe before the slave answers TERM (ssh on a loaded host): the slave still reports the committed pass', async () => {
    const { master, slave } = await pair();
    await buildTree(master);
    const toSlave = new PassThrough();
    const fromSlave = new PassThrough();
    // the master's end closes the slave's way back at once, as ssh's exit does: the slave's TERM finds it destroyed
    toSlave.on('end', () => fromSlave.destroy());
    const [m, sl] = await Promise.all([
      masterOverStreams(master, toSlave, fromSlave, { access: nodeTreeAccess }),
      slaveOverStreams(slave, toSlave, fromSlave, { access: nodeTreeAccess }),
    ]);
    expect(fromSlave.destroyed).toBe(true);
    expect(m.blocksSent).toBeGreaterThan(0);
    expect(sl.committed).toBe(true);
    expect(readMirrorState(slave)!.claim!.kind).toBe('content');
    expect(await verifyLines(master, slave)).toEqual([]);
  }, 120_000);

  it('replaying a one-way pass is idempotent: every op a no-op, verify still empty', async () => {
    const { master, slave } = await pair();
    await buildTree(master);
    const bytes = await readStream(master);
    const first = await slaveOverStreams(slave, feed(bytes), null, { access: nodeTreeAccess });
    expect(first.committed).toBe(true);
    expect(await verifyLines(master, slave)).toEqual([]);
    const again = await slaveOverStreams(slave, feed(bytes), null, { access: nodeTreeAccess });
    expect(again.committed).toBe(true);
    // the files with one name are byte-equal already: no rename
    expect(again.opsNoop).toBeGreaterThanOrEqual(7);
    expect(again.deleted).toBe(0);
    expect(again.filesApplied).toBe(0);
    expect(await verifyLines(master, slave)).toEqual([]);
  }, 120_000);

  /** A forged one-way stream from `master`'s identity with `body` records between PASS_BEGIN and COMMIT. */
  async function forged(master: string, body: (enc: StreamEncoder) => Buffer[]): Promise<Buffer> {
    const ms = readMirrorState(master)!;
    const cfg = await readVolumeConfig(master);
    const enc = await StreamEncoder.create();
    const passId = Buffer.alloc(16, 9);
    return Buffer.concat([
      enc.encode({ type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.from(ms.sharedUuid, 'hex'), uniqueUuid: Buffer.from(ms.uniqueUuid, 'hex'), generation: 1, blockSize: BS, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0 }),
      enc.encode({ type: 'PASS_BEGIN', passId, tidBeg: 0n, tidEnd: 0n, mode: 'full' }),
      ...body(enc),
      enc.encode({ type: 'COMMIT', passId, tidEnd: 0n, claimKind: 'exact' }),
      enc.encode({ type: 'TERM', reason: 0 }),
    ]);
  }

  it('hostile names: a reserved root name and a path through a symlink planted on the slave are refused, nothing outside touched', async () => {
    const { master, slave } = await pair();
    const meta = { mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, atimeNs: 0n };
    const stateBefore = fs.readFileSync(path.join(slave, 'ddfsmirror', 'state'));
    const reserved = await forged(master, (enc) => [enc.encode({ type: 'DIR', path: Buffer.from('ddfsmirror'), meta, tid: 0n })]);
    await expect(slaveOverStreams(slave, feed(reserved), null, { access: nodeTreeAccess })).rejects.toThrow(/path "?ddfsmirror"?: a reserved name of the root: refused/);
    expect(fs.readdirSync(path.join(slave, 'ddfsmirror')).filter((n) => n !== 'staging')).toEqual(['state']);
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-outside-'));
    fs.symlinkSync(outside, ufsAbs(slave, 'a'));
    const cfg = await readVolumeConfig(master);
    const through = await forged(master, (enc) => [
      enc.encode({ type: 'FILE_BEGIN', path: Buffer.from('a/x'), meta: { ...meta, mode: 0o644 }, sizeBytes: 0n, nodeCount: 0n, tid: 0n, linkGroup: 0n }),
      enc.encode({ type: 'FILE_END', digest: new FileContentHasher(0, cfg.hashSize).digest() }),
    ]);
    await expect(slaveOverStreams(slave, feed(through), null, { access: nodeTreeAccess })).rejects.toThrow(/path \S*a\/x\S*: \S*a\S* is not a directory on the slave: refused/);
    expect(fs.readdirSync(outside)).toEqual([]);
    fs.rmSync(outside, { recursive: true });
    expect(readMirrorState(slave)!.claim).toBeNull();
    expect(fs.readFileSync(path.join(slave, 'ddfsmirror', 'state')).length).toBeGreaterThan(0);
    void stateBefore;
  }, 60_000);

  it('a new name for a hard-link group whose other names did not change joins the group on the slave', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'a');
    mkdirUfs(master, 'b');
    await withVolume(master, (v) => writeUfsFile(v, 'a/x', block('hl', 2)));
    linkUfs(master, 'a/x', 'b/y');
    await copy(master, slave);
    expect(await verifyLines(master, slave)).toEqual([]);
    mkdirUfs(master, 'c');
    linkUfs(master, 'a/x', 'c/z');
    const r = await copy(master, slave);
    expect(r.master.blocksSent).toBe(0);
    expect(await verifyLines(master, slave)).toEqual([]);
    const ino = fs.statSync(ufsAbs(slave, 'a/x')).ino;
    expect(fs.statSync(ufsAbs(slave, 'b/y')).ino).toBe(ino);
    expect(fs.statSync(ufsAbs(slave, 'c/z')).ino).toBe(ino);
  }, 60_000);

  it('a slave whose block file fills up aborts the pass cleanly: one line, no claim, nothing applied', async () => {
    const master = await volume();
    const small = await makeTempVolume({ blockSize: BS, size: '1M' });
    volumes.push(small);
    await initSlave(small.parent, master);
    await withVolume(master, async (v) => {
      for (let k = 0; k < 10; k++) await writeUfsFile(v, `big${k}`, block(`fill${k}`, 40));
    });
    await expect(copy(master, small.parent)).rejects.toThrow(/cannot store a block: no (space left in the block file|free block)/);
    expect(readMirrorState(small.parent)!.claim).toBeNull();
    expect(fs.readdirSync(ufsAbs(small.parent, '')).filter((n) => n !== '.ddumbfs')).toEqual([]);
  }, 60_000);

  it('a one-way stream with one flipped byte is rejected naming the seq: nothing applied, no claim', async () => {
    const { master, slave } = await pair();
    await buildTree(master);
    const bytes = await readStream(master);
    const bad = Buffer.from(bytes);
    bad[bad.length - 200] ^= 0x01; // inside one of the last records (a FILE_* or DIRLIST), after every BLOCK
    await expect(slaveOverStreams(slave, feed(bad), null, { access: nodeTreeAccess })).rejects.toThrow(/^DDMS stream: seq \d+: /);
    expect(readMirrorState(slave)!.claim).toBeNull();
    expect(fs.readdirSync(ufsAbs(slave, '')).filter((n) => n !== '.ddumbfs')).toEqual([]);
  }, 60_000);

  it('forged resume data (a key_cur the master does not have) starts a fresh pass, which still converges', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'only', block('only')));
    // a key that is not a path at all (the slave drops it), and a path the master does not have (the master does)
    for (const key of ['../../etc', 'not/on/the/master']) {
      await withVolume(master, (v) => writeUfsFile(v, 'only', block(key)));
      const st = readMirrorState(slave)!;
      writeMirrorState(slave, { ...st, pass: { passId: 'cd'.repeat(16), keyCurHex: Buffer.from(key).toString('hex'), recordsApplied: 3, startedAt: 'then' } });
      const r = await copy(master, slave);
      expect(r.master.resumed, key).toBe(false);
      expect(await verifyLines(master, slave)).toEqual([]);
      expect(readMirrorState(slave)!.pass).toBeNull();
      expect(readMirrorState(slave)!.claim?.passId).not.toBe('cd'.repeat(16));
    }
  }, 60_000);

  it('reclaim pin hook: during a pass the hashes the slave said it holds are pinned; the pins go when the pass ends', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'p', block('pin', 2)));
    await copy(master, slave);
    await withVolume(master, (v) => writeUfsFile(v, 'q', block('pin', 2))); // same blocks under a new name: held
    const cfg = await readVolumeConfig(master);
    const held = (await readUfsNode(master, cfg.nodeSize, cfg.addrSize, 'q', 1)).hash;
    let pinnedAtCommit: boolean | null = null;
    await copy(master, slave, {
      onMasterBytes: (_b, rec) => {
        if (rec.type === 'COMMIT') pinnedAtCommit = activePassPins(slave)?.has(held.toString('latin1')) ?? false;
      },
    });
    expect(pinnedAtCommit).toBe(true);
    expect(activePassPins(slave)).toBeNull();
  }, 60_000);

  it('a directory of 2100 entries (DIRLIST in pieces, DIGESTQ in batches) arrives, and one deletion in it is exact', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'wide');
    for (let k = 0; k < 2100; k++) fs.writeFileSync(ufsAbs(master, `wide/e${k}`), Buffer.alloc(0));
    const dirlists: number[] = [];
    await copy(master, slave, { onMasterBytes: (_b, rec) => { if (rec.type === 'DIRLIST' && rec.path.toString() === 'wide') dirlists.push(rec.entries.length); } });
    expect(dirlists).toEqual([2048, 52]);
    expect(await verifyLines(master, slave)).toEqual([]);
    fs.rmSync(ufsAbs(master, 'wide/e2099'));
    const r = await copy(master, slave);
    expect(r.master.filesSent).toBe(0);
    expect(fs.existsSync(ufsAbs(slave, 'wide/e2099'))).toBe(false);
    expect(fs.readdirSync(ufsAbs(slave, 'wide'))).toHaveLength(2099);
    expect(await verifyLines(master, slave)).toEqual([]);
  }, 120_000);
});
