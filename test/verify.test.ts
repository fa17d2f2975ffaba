/**
 * `mirrorddumbfs verify A B` (mirroring spec §4.11, invariant 12 of §4.18) as a command (node bin/mirrorddumbfs,
 * compiled dist/: run `npx tsc -p tsconfig.json` first), on pairs of volumes that differ in exactly one way: a copy
 * (cp -a) of one built tree with one change behind the mirror's back, and the exact line each change gives.
 * Then in process: the comparison lists only directories whose digests differ (an unchanged subtree is not
 * descended), counted through the DigestTree interface.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededBlocks } from './helpers/bytes.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VolumeDigests, type DigestTree } from '../src/mirror/digest.js';
import { BlockStore } from '../src/store/block_store.js';
import { renderVerifyLine, verifyTrees } from '../src/mirror/verify.js';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { run, runOk } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import {
  fifoUfs, linkUfs, mkdirUfs, readUfsNode, symlinkUfs, truncateUfsFile, ufsAbs, withVolume, writeUfsFile, writeUfsNode,
} from './helpers/ufs_tree.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const BS = 4096;
const LATIN = Buffer.from('caf\xe9', 'latin1');
const T0 = 1_600_000_000;

let base: TempVolume;
let work: string;
let copies = 0;

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

/** Run mirrorddumbfs (asynchronously: helpers/run.ts). */
async function mirror(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [BIN, ...args], { timeoutMs: 120_000 });
  return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

/** A private copy of the base volume (cp -a: modes, owners, ns times and hard links kept). */
async function copyOfBase(): Promise<string> {
  const dest = path.join(work, `copy${copies++}`);
  await runOk('cp', ['-a', base.parent, dest]);
  return dest;
}

/** The lines of `verify A B [args]`, and its exit status. */
async function verify(a: string, b: string, args: string[] = []): Promise<{ status: number; lines: string[]; stderr: string }> {
  const r = await mirror(['verify', a, b, ...args]);
  return { status: r.status, lines: r.stdout.split('\n').filter((l) => l !== ''), stderr: r.stderr };
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/verify.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-verify-'));
  base = await makeTempVolume({ blockSize: BS, size: '4M' });
  const p = base.parent;
  for (const d of ['d', 'ed', 'keep', 'keep/sub']) mkdirUfs(p, d);
  await withVolume(p, async (v) => {
    await writeUfsFile(v, 'big', block('big', 3));
    await writeUfsFile(v, 'd/f1', block('f1'));
    await writeUfsFile(v, 'e', Buffer.alloc(0));
    await writeUfsFile(v, 'h1', block('h1'));
    await writeUfsFile(v, LATIN, block('latin'));
    for (let k = 0; k < 4; k++) await writeUfsFile(v, `keep/sub/k${k}`, block(`k${k}`, 2));
  });
  linkUfs(p, 'h1', 'd/h2');
  symlinkUfs(p, 'big', 's');
  await fifoUfs(p, 'p');
  for (const f of ['big', 'd/f1', 'e', 'h1', LATIN, 'keep/sub/k0', 'keep/sub/k1', 'keep/sub/k2', 'keep/sub/k3', 'p']) {
    fs.utimesSync(ufsAbs(p, f), T0, T0);
  }
  fs.lutimesSync(ufsAbs(p, 's'), T0, T0);
}, 120_000);

afterAll(async () => {
  await unmountAll();
  await base?.cleanup();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('mirrorddumbfs verify: one line per difference', () => {
  it('identical trees (cp -a) print nothing and exit 0, with and without --deep', async () => {
    const b = await copyOfBase();
    expect(await verify(base.parent, b)).toEqual({ status: 0, lines: [], stderr: '' });
    expect(await verify(base.parent, b, ['--deep'])).toEqual({ status: 0, lines: [], stderr: '' });
  });

  const cases: Array<{ name: string; change: (b: string) => Promise<void> | void; lines: string[]; args?: string[] }> = [
    { name: 'a deleted file', change: (b) => fs.unlinkSync(ufsAbs(b, 'd/f1')), lines: ['MISSING "/d/f1"'] },
    { name: 'a deleted directory (its contents not listed)', change: (b) => fs.rmSync(ufsAbs(b, 'keep'), { recursive: true }), lines: ['MISSING "/keep"'] },
    { name: 'a file that is not UTF-8, deleted', change: (b) => fs.unlinkSync(ufsAbs(b, LATIN)), lines: ['MISSING "/caf\\xe9"'] },
    { name: 'an extra file', change: (b) => withVolume(b, (v) => writeUfsFile(v, 'n', block('n'))), lines: ['EXTRA "/n"'] },
    { name: 'a truncated file', change: (b) => withVolume(b, (v) => truncateUfsFile(v, 'big', 2 * BS)), lines: ['DIFF "/big" size'] },
    { name: 'an overwritten block', change: (b) => withVolume(b, (v) => writeUfsFile(v, 'big', block('other'), BS)), lines: ['DIFF "/big" hashes@1'] },
    { name: 'a chmod', change: (b) => fs.chmodSync(ufsAbs(b, 'd/f1'), 0o600), lines: ['DIFF "/d/f1" mode'] },
    { name: 'a chmod of a directory', change: (b) => fs.chmodSync(ufsAbs(b, 'd'), 0o700), lines: ['DIFF "/d" mode'] },
    { name: 'a chown', change: (b) => fs.chownSync(ufsAbs(b, 'd/f1'), 1234, 0), lines: ['DIFF "/d/f1" uid'] },
    { name: 'a chgrp', change: (b) => fs.chownSync(ufsAbs(b, 'd/f1'), 0, 4321), lines: ['DIFF "/d/f1" gid'] },
    { name: 'a file replaced by a directory', change: (b) => { fs.unlinkSync(ufsAbs(b, 'e')); mkdirUfs(b, 'e'); }, lines: ['DIFF "/e" type'] },
    { name: 'a FIFO replaced by a file', change: async (b) => { fs.unlinkSync(ufsAbs(b, 'p')); await withVolume(b, (v) => writeUfsFile(v, 'p', Buffer.alloc(0))); }, lines: ['DIFF "/p" type'] },
    { name: 'a symlink retargeted', change: (b) => { fs.unlinkSync(ufsAbs(b, 's')); symlinkUfs(b, 'elsewhere', 's'); }, lines: ['DIFF "/s" target'] },
    {
      name: 'a hard link replaced by a copy',
      change: async (b) => { fs.unlinkSync(ufsAbs(b, 'd/h2')); await runOk('cp', ['-p', ufsAbs(b, 'h1').toString(), ufsAbs(b, 'd/h2').toString()]); },
      lines: ['DIFF "/d/h2" link', 'DIFF "/h1" link'],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.lines.join(' | ')}`, async () => {
      const b = await copyOfBase();
      await c.change(b);
      expect(await verify(base.parent, b, ['--no-mtime', ...(c.args ?? [])])).toEqual({ status: 1, lines: c.lines, stderr: '' });
    });
  }

  it('an mtime is compared unless --no-mtime; a directory mtime never is', async () => {
    const b = await copyOfBase();
    fs.utimesSync(ufsAbs(b, 'd/f1'), T0 + 10, T0 + 10);
    fs.utimesSync(ufsAbs(b, 'keep'), T0 + 10, T0 + 10);
    expect(await verify(base.parent, b)).toEqual({ status: 1, lines: ['DIFF "/d/f1" mtime'], stderr: '' });
    expect(await verify(base.parent, b, ['--no-mtime'])).toEqual({ status: 0, lines: [], stderr: '' });
  });

  it('a block whose bytes were overwritten in the block file: CORRUPT with --deep only', async () => {
    const b = await copyOfBase();
    const cfg = base.config;
    const { address } = await readUfsNode(b, cfg.nodeSize, cfg.addrSize, 'big', 0);
    expect(address).toBeGreaterThan(1);
    const fd = fs.openSync(path.join(b, cfg.blockFilename), 'r+');
    fs.writeSync(fd, Buffer.alloc(BS, 0x77), 0, BS, address * BS);
    fs.closeSync(fd);
    expect(await verify(base.parent, b)).toEqual({ status: 0, lines: [], stderr: '' });
    expect(await verify(base.parent, b, ['--deep'])).toEqual({ status: 1, lines: ['CORRUPT "/big" block 0 on B'], stderr: '' });
    expect(await verify(b, base.parent, ['--deep'])).toEqual({ status: 1, lines: ['CORRUPT "/big" block 0 on A'], stderr: '' });
  });

  it('a lost block (address 1): CORRUPT without --deep, on the side that lost it', async () => {
    const a = await copyOfBase();
    const cfg = base.config;
    const n = await readUfsNode(a, cfg.nodeSize, cfg.addrSize, 'big', 2);
    await writeUfsNode(a, cfg.nodeSize, cfg.addrSize, 'big', 2, 1, n.hash);
    fs.utimesSync(ufsAbs(a, 'big'), T0, T0); // the node write moved the UFS file's mtime: the file's own
    expect(await verify(a, base.parent)).toEqual({ status: 1, lines: ['CORRUPT "/big" block 2 on A'], stderr: '' });
  });

  it('a node naming an address beyond the block file, or one its index does not hold there: DANGLING', async () => {
    const b = await copyOfBase();
    const cfg = base.config;
    const n1 = await readUfsNode(b, cfg.nodeSize, cfg.addrSize, 'big', 1);
    const n0 = await readUfsNode(b, cfg.nodeSize, cfg.addrSize, 'd/f1', 0);
    await writeUfsNode(b, cfg.nodeSize, cfg.addrSize, 'big', 1, cfg.blockCount + 5, n1.hash);
    await writeUfsNode(b, cfg.nodeSize, cfg.addrSize, 'd/f1', 0, n1.address, n0.hash);
    for (const f of ['big', 'd/f1']) fs.utimesSync(ufsAbs(b, f), T0, T0);
    expect(await verify(base.parent, b)).toEqual({
      status: 1,
      lines: [`DANGLING "/big" ${n1.hash.toString('hex')} on B`, `DANGLING "/d/f1" ${n0.hash.toString('hex')} on B`],
      stderr: '',
    });
  });

  it('a UFS file with a bad header: verify stops with one line naming it, exit 1, nothing on stdout', async () => {
    const b = await copyOfBase();
    const fd = fs.openSync(ufsAbs(b, 'keep/sub/k1'), 'r+');
    fs.writeSync(fd, Buffer.from('DDUMBFSX'), 0, 8, 0);
    fs.closeSync(fd);
    const r = await mirror(['verify', base.parent, b]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`${b}: cannot read ${path.join(b, 'ddfsroot/keep/sub/k1')}`);
    expect(r.stderr).toContain('verify aborted');
  });

  it('--json: one document with every line, paths escaped and in hex', async () => {
    const b = await copyOfBase();
    fs.unlinkSync(ufsAbs(b, LATIN));
    fs.chmodSync(ufsAbs(b, 'd/f1'), 0o600);
    const r = await mirror(['verify', '--json', base.parent, b]);
    expect(r.status).toBe(1);
    const doc = JSON.parse(r.stdout) as { count: number; lines: unknown[]; deep: boolean; mtime: boolean };
    expect(doc.count).toBe(2);
    expect(doc.deep).toBe(false);
    expect(doc.mtime).toBe(true);
    expect(doc.lines).toEqual([
      { kind: 'MISSING', path: '/caf\\xe9', pathHex: Buffer.concat([Buffer.from('/'), LATIN]).toString('hex') },
      { kind: 'DIFF', path: '/d/f1', pathHex: Buffer.from('/d/f1').toString('hex'), what: 'mode' },
    ]);
    const same = await mirror(['verify', '--json', base.parent, await copyOfBase()]);
    expect(same.status).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ count: 0, lines: [] });
  });

  it('different block sizes or hashes: one line on stderr, exit 2, nothing on stdout', async () => {
    const other = await makeTempVolume({ blockSize: 8192, size: '4M' });
    const sha = await makeTempVolume({ blockSize: BS, size: '4M', hash: 'SHA1' });
    try {
      for (const [o, what] of [[other, 'different block sizes'], [sha, 'different hashes']] as const) {
        const r = await mirror(['verify', base.parent, o.parent]);
        expect(r.status).toBe(2);
        expect(r.stdout).toBe('');
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toContain(what);
      }
    } finally {
      await other.cleanup();
      await sha.cleanup();
    }
  });

  it('-p: plain progress lines and the summary on stderr, the report on stdout unchanged; its figures are the walk\'s', async () => {
    const b = await copyOfBase();
    fs.unlinkSync(ufsAbs(b, 'd/f1'));
    const r = await mirror(['verify', '-p', base.parent, b]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('MISSING "/d/f1"\n');
    const err = r.stderr.split('\n').filter((l) => l !== '');
    // the first entry (the root) always gives a line; the others at most one a second
    expect(err[0]).toMatch(/^mirrorddumbfs: progress entries 1, differences 0, \d+ entries\/s, at "\/"$/);
    for (const l of err.slice(0, -1)) expect(l).toMatch(/^mirrorddumbfs: progress entries \d+, differences [01], \d+ entries\/s, at "\/[^"]*"$/);
    // the root, its 9 entries, then the 2 of /d (f1 on A only, h2): 12 entries; one line printed
    expect(err[err.length - 1]).toMatch(/^mirrorddumbfs: 12 entries compared, 1 differences, [\d.]+ s$/);
    // an equal pair: the root's digests match, nothing is listed
    const same = await mirror(['verify', '-p', base.parent, await copyOfBase()]);
    expect(same.status).toBe(0);
    expect(same.stdout).toBe('');
    expect(same.stderr).toMatch(/^mirrorddumbfs: progress entries 1, differences 0, \d+ entries\/s, at "\/"\nmirrorddumbfs: 1 entries compared, 0 differences, [\d.]+ s\n$/);
  });

  it('on a terminal (script(1), 80 columns): the ora spinner shows the progress, then the summary; the report is whole', async () => {
    const b = await copyOfBase();
    fs.unlinkSync(ufsAbs(b, 'd/f1'));
    // ora draws no spinner when CI is set (as CI runs this suite) and no colours with NO_COLOR: a user's terminal has neither
    const env = { ...process.env };
    delete env.CI;
    delete env.NO_COLOR;
    const r = await run('script', ['-qec', `stty cols 80 rows 24; node ${BIN} verify ${base.parent} ${b}`, '/dev/null'], { timeoutMs: 120_000, env });
    const tty = r.stdout.toString('utf8'); // ora's frames are UTF-8; the report's paths are escaped ASCII
    expect(r.code).toBe(1);
    expect(tty).toContain('MISSING "/d/f1"\r\n');
    expect(tty).toMatch(/\x1b\[\d+m\S+\x1b\[\d+m entries 1, differences 0, \d+ entries\/s, at "\/"/); // a spinner frame and its text
    expect(tty).toMatch(/mirrorddumbfs: 12 entries compared, 1 differences, [\d.]+ s\r\n/);
  });

  it('a remote shell that fails, a missing argument, a path that is no volume', async () => {
    // the far side never answers: one line naming the endpoint and the remote shell's status (over ssh: test/mirror_cli)
    const remote = await mirror(['verify', '-e', 'false', base.parent, 'backup2:/l1/replica']);
    expect(remote.status).toBe(1);
    expect(remote.stdout).toBe('');
    expect(remote.stderr).toBe('mirrorddumbfs: backup2:/l1/replica: the remote side exited with status 1\n');
    expect((await mirror(['verify', base.parent])).status).toBe(2);
    const none = await mirror(['verify', base.parent, work]);
    expect(none.status).toBe(1);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toContain('ddfs.cfg: not found');
  });
});

/** A DigestTree that records each request it passes on. */
class RecordingTree implements DigestTree {
  readonly requests: string[] = [];
  constructor(private readonly inner: DigestTree) {}
  get label(): string {
    return this.inner.label;
  }
  format() {
    return this.inner.format();
  }
  entry(p: Buffer) {
    this.requests.push(`entry /${p.toString('latin1')}`);
    return this.inner.entry(p);
  }
  list(p: Buffer) {
    this.requests.push(`list /${p.toString('latin1')}`);
    return this.inner.list(p);
  }
  nodes(p: Buffer) {
    this.requests.push(`nodes /${p.toString('latin1')}`);
    return this.inner.nodes(p);
  }
  findings() {
    return this.inner.findings();
  }
  close() {
    return this.inner.close();
  }
}

async function requestsOf(a: string, b: string): Promise<{ lines: string[]; ra: string[]; rb: string[]; scans: number }> {
  const ta = new RecordingTree(await VolumeDigests.open(a, { access: nodeTreeAccess }));
  const vb = await VolumeDigests.open(b, { access: nodeTreeAccess });
  const tb = new RecordingTree(vb);
  try {
    const lines: string[] = [];
    for await (const l of verifyTrees(ta, tb)) lines.push(renderVerifyLine(l));
    return { lines, ra: ta.requests, rb: tb.requests, scans: vb.counters.fileScans };
  } finally {
    await ta.close();
    await tb.close();
  }
}

describe('verify descends only into mismatches', () => {
  it('identical trees: one root entry per side, no listing, no node list', async () => {
    const r = await requestsOf(base.parent, await copyOfBase());
    expect(r.lines).toEqual([]);
    expect(r.ra).toEqual(['entry /']);
    expect(r.rb).toEqual(['entry /']);
  });

  it('one changed file two levels down: the root and its directories are listed, no sibling subtree', async () => {
    const b = await copyOfBase();
    await withVolume(b, (v) => writeUfsFile(v, 'keep/sub/k2', block('changed'), BS));
    fs.utimesSync(ufsAbs(b, 'keep/sub/k2'), T0, T0);
    const r = await requestsOf(base.parent, b);
    expect(r.lines).toEqual(['DIFF "/keep/sub/k2" hashes@1']);
    const want = ['entry /', 'list /', 'list /keep', 'list /keep/sub', 'nodes /keep/sub/k2'];
    expect(r.ra).toEqual(want);
    expect(r.rb).toEqual(want);
    // the listings read the node lists of the files they list: the root's 4 (big, e, h1, caf\xe9), keep/sub's 4,
    // none of /d
    expect(r.scans).toBe(4 + 4);
  });

  it('a chmod of a directory: the directory is not listed (its entries did not change)', async () => {
    const b = await copyOfBase();
    fs.chmodSync(ufsAbs(b, 'keep'), 0o700);
    const r = await requestsOf(base.parent, b);
    expect(r.lines).toEqual(['DIFF "/keep" mode']);
    expect(r.ra).toEqual(['entry /', 'list /']);
  });
});

describe('verify of a mounted volume', () => {
  it('reads its UFS tree as it is on disk, says so on stderr, and does not take a lagging index file for DANGLING', async () => {
    const b = await copyOfBase();
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-verify-mnt-'));
    const m = await mountVolume(b, mnt);
    try {
      const same = await verify(base.parent, b);
      expect(same.status).toBe(0);
      expect(same.lines).toEqual([]);
      expect(same.stderr).toBe(`mirrorddumbfs: ${b} is mounted on ${mnt}: read as it is on disk; exact only if nothing writes during the verify\n`);
      // a new block written through the mount: in the daemon's index, not yet in the index file
      fs.writeFileSync(path.join(mnt, 'new'), block('through the mount'));
      const cfg = base.config;
      const node = await readUfsNode(b, cfg.nodeSize, cfg.addrSize, 'new', 0);
      expect(node.address).toBeGreaterThan(1);
      const onDisk = await BlockStore.open(b, cfg, { readOnly: true });
      try {
        expect(onDisk.index.nodes.lookup(node.hash, 0).found).toBe(false); // the premise: the index file lags
      } finally {
        await onDisk.blockDevice.close();
        await onDisk.index.device.close();
      }
      const after = await verify(base.parent, b);
      expect(after.lines).toEqual(['EXTRA "/new"']);
      expect(after.status).toBe(1);
    } finally {
      await m.unmount();
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  }, 120_000);
});
