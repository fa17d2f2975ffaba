/**
 * verify through a verify session (src/mirror/verify_remote.ts) in process: serveVerify answers over a pair of
 * in-memory streams, StreamDigests asks, and the report must be line for line the report of the same two volumes
 * opened locally: differences, findings of the far side computed there (--deep), a node list longer than one
 * FILE_NODES piece, non-UTF-8 names; the far side's read error and a path that is no volume come back as one
 * DdfsError IO naming the endpoint, and the answerer ends (no hang).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { DdfsError } from '../src/errors.js';
import { MIRROR_FILE_NODES_COUNT_MAX } from '../src/limits.js';
import { RecordReader, RecordWriter } from '../src/mirror/channel.js';
import { VolumeDigests, type DigestTree } from '../src/mirror/digest.js';
import { renderVerifyLine, verifyTrees } from '../src/mirror/verify.js';
import { serveVerify, StreamDigests } from '../src/mirror/verify_remote.js';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { runOk } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, readUfsNode, symlinkUfs, ufsAbs, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const BS = 4096;
const LATIN = Buffer.from('caf\xe9', 'latin1');
/** A block index past the first FILE_NODES piece. */
const FAR_INDEX = MIRROR_FILE_NODES_COUNT_MAX + 100;
const T0 = 1_600_000_000;

let base: TempVolume;
let work: string;
let copies = 0;

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function copyOfBase(): Promise<string> {
  const dest = path.join(work, `copy${copies++}`);
  await runOk('cp', ['-a', base.parent, dest]);
  return dest;
}

interface Far {
  tree: StreamDigests;
  served: Promise<number>;
}

/** The volume at `parent` behind a verify session over in-memory streams. */
async function far(parent: string, options: { deep?: boolean; mtime?: boolean } = {}): Promise<Far> {
  const toServer = new PassThrough();
  const toClient = new PassThrough();
  const served = (async () => serveVerify(parent, await RecordReader.create(toServer), await RecordWriter.create(toClient, false), { access: nodeTreeAccess }))();
  const tree = await StreamDigests.open(`far:${parent}`, await RecordReader.create(toClient), await RecordWriter.create(toServer, true), { deep: options.deep ?? false, mtime: options.mtime ?? true });
  return { tree, served };
}

async function lines(a: DigestTree, b: DigestTree): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const l of verifyTrees(a, b)) out.push(renderVerifyLine(l));
  } finally {
    await a.close();
    await b.close();
  }
  return out;
}

/** The report of a vs b opened locally, with b remote, and with both remote; the sessions' end statuses. */
async function threeWays(a: string, b: string, options: { deep?: boolean; mtime?: boolean } = {}): Promise<{ local: string[]; bFar: string[]; bothFar: string[]; statuses: number[] }> {
  const open = (p: string): Promise<VolumeDigests> => VolumeDigests.open(p, { access: nodeTreeAccess, ...options });
  const local = await lines(await open(a), await open(b));
  const fb = await far(b, options);
  const bFar = await lines(await open(a), fb.tree);
  const fa2 = await far(a, options);
  const fb2 = await far(b, options);
  const bothFar = await lines(fa2.tree, fb2.tree);
  return { local, bFar, bothFar, statuses: await Promise.all([fb.served, fa2.served, fb2.served]) };
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-verify-remote-'));
  base = await makeTempVolume({ blockSize: BS, size: '4M' });
  const p = base.parent;
  for (const d of ['d', 'keep']) mkdirUfs(p, d);
  await withVolume(p, async (v) => {
    await writeUfsFile(v, 'big', block('big', 3));
    await writeUfsFile(v, 'd/f1', block('f1'));
    await writeUfsFile(v, LATIN, block('latin'));
    await writeUfsFile(v, 'sparse', block('far'), FAR_INDEX * BS);
    for (let k = 0; k < 3; k++) await writeUfsFile(v, `keep/k${k}`, block(`k${k}`, 2));
  });
  symlinkUfs(p, 'big', 's');
  for (const f of ['big', 'd/f1', LATIN, 'sparse', 'keep/k0', 'keep/k1', 'keep/k2']) fs.utimesSync(ufsAbs(p, f), T0, T0);
}, 120_000);

afterAll(async () => {
  await base?.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('verify over a verify session gives the local report', () => {
  it('an equal pair: no line, both sessions end with status 0', async () => {
    const b = await copyOfBase();
    const r = await threeWays(base.parent, b, { deep: true });
    expect(r).toEqual({ local: [], bFar: [], bothFar: [], statuses: [0, 0, 0] });
  });

  it('a deleted file, an extra file, a chmod, a retargeted symlink, a change past the first FILE_NODES piece', async () => {
    const b = await copyOfBase();
    fs.unlinkSync(ufsAbs(b, 'd/f1'));
    await withVolume(b, async (v) => {
      await writeUfsFile(v, Buffer.concat([Buffer.from('keep/'), LATIN, Buffer.from('2')]), block('extra'));
      await writeUfsFile(v, 'sparse', block('other'), FAR_INDEX * BS);
    });
    fs.chmodSync(ufsAbs(b, 'big'), 0o600);
    fs.unlinkSync(ufsAbs(b, 's'));
    symlinkUfs(b, 'elsewhere', 's');
    const r = await threeWays(base.parent, b, { mtime: false });
    const expected = ['DIFF "/big" mode', 'MISSING "/d/f1"', 'EXTRA "/keep/caf\\xe92"', 'DIFF "/s" target', `DIFF "/sparse" hashes@${FAR_INDEX}`];
    expect(r).toEqual({ local: expected, bFar: expected, bothFar: expected, statuses: [0, 0, 0] });
  });

  it('--deep: a flipped block on the far side is found there: CORRUPT on B (and on A the other way round)', async () => {
    const b = await copyOfBase();
    const cfg = base.config;
    const { address } = await readUfsNode(b, cfg.nodeSize, cfg.addrSize, 'keep/k1', 1);
    const fd = fs.openSync(path.join(b, cfg.blockFilename), 'r+');
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, address * BS + 7);
    fs.closeSync(fd);
    const shallow = await threeWays(base.parent, b);
    expect(shallow).toEqual({ local: [], bFar: [], bothFar: [], statuses: [0, 0, 0] });
    const deep = await threeWays(base.parent, b, { deep: true });
    const onB = ['CORRUPT "/keep/k1" block 1 on B'];
    expect(deep).toEqual({ local: onB, bFar: onB, bothFar: onB, statuses: [0, 0, 0] });
    const reverse = await threeWays(b, base.parent, { deep: true });
    const onA = ['CORRUPT "/keep/k1" block 1 on A'];
    expect(reverse).toEqual({ local: onA, bFar: onA, bothFar: onA, statuses: [0, 0, 0] });
  });

  it('a read error on the far side: one DdfsError IO naming the endpoint and the file; the answerer ends with 1', async () => {
    const b = await copyOfBase();
    const fd = fs.openSync(ufsAbs(b, 'keep/k1'), 'r+');
    fs.writeSync(fd, Buffer.from('garbage!'), 0, 8, 0);
    fs.closeSync(fd);
    const f = await far(b);
    const a = await VolumeDigests.open(base.parent, { access: nodeTreeAccess });
    const err = await lines(a, f.tree).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DdfsError);
    expect((err as DdfsError).code).toBe('IO');
    expect((err as DdfsError).message).toMatch(new RegExp(`^far:${b}: ${b}: cannot read ${path.join(b, 'ddfsroot/keep/k1')}: .*verify aborted$`));
    expect(await f.served).toBe(1);
  });

  it('a far volume of another block size: the USAGE refusal of a local verify, from the far side\'s HELLO', async () => {
    const other = await makeTempVolume({ blockSize: 2 * BS, size: '4M' });
    try {
      const f = await far(other.parent);
      const a = await VolumeDigests.open(base.parent, { access: nodeTreeAccess });
      const err = await lines(a, f.tree).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(DdfsError);
      expect((err as DdfsError).code).toBe('USAGE');
      expect((err as DdfsError).message).toContain(`different block sizes (${BS} and ${2 * BS})`);
      expect(await f.served).toBe(0);
    } finally {
      await other.cleanup();
    }
  });

  it('a path that is no volume: StreamDigests.open throws IO with the far side\'s reason; the answerer ends with 1', async () => {
    const none = fs.mkdtempSync(path.join(work, 'none-'));
    const toServer = new PassThrough();
    const toClient = new PassThrough();
    const served = (async () => serveVerify(none, await RecordReader.create(toServer), await RecordWriter.create(toClient, false), { access: nodeTreeAccess }))();
    const err = await StreamDigests.open(`far:${none}`, await RecordReader.create(toClient), await RecordWriter.create(toServer, true), { deep: false, mtime: true }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DdfsError);
    expect((err as DdfsError).code).toBe('IO');
    expect((err as DdfsError).message).toContain(`far:${none}: `);
    expect((err as DdfsError).message).toContain('ddfs.cfg: not found');
    expect(await served).toBe(1);
  });
});
