/**
 * mirrorddumbfs init-slave / copy / read / write / serve / status as commands (node bin/mirrorddumbfs, compiled
 * dist/: run `npx tsc -p tsconfig.json` first): a one-way pass through a file equals a copy and carries every block
 * once; status shows the claim; mounted volumes are mirrored through their daemons (what cannot work is refused with
 * one line and nothing changes); copy --content runs a content pass where an incremental one was allowed (through
 * the daemon, through serve, unmounted); and over a real sshd on
 * 127.0.0.1 (test/helpers/sshd.ts): a copy, a verify of the result, and a copy resumed after the ssh client was
 * killed mid-pass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readMirrorState } from '../src/mirror/state.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mountVolume, unmountAll, waitFor } from './helpers/mount.js';
import { startSshd, stopAllSshd, type SshdHandle } from './helpers/sshd.js';
import { linkUfs, mkdirUfs, readUfsNode, symlinkUfs, ufsAbs, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { run, runOk } from './helpers/run.js';
import { seededBlocks } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const BS = 4096;
const volumes: TempVolume[] = [];
let work: string;

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

/** Run mirrorddumbfs (asynchronously: helpers/run.ts). */
async function mirror(args: string[], input?: Buffer): Promise<{ status: number; stdout: Buffer; stderr: string }> {
  const r = await run('node', [BIN, ...args], { timeoutMs: 180_000, input });
  return { status: r.code ?? -1, stdout: r.stdout, stderr: r.stderr.toString('latin1') };
}

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(v);
  return v.parent;
}

async function tree(master: string, files: number): Promise<void> {
  mkdirUfs(master, 'd');
  await withVolume(master, async (v) => {
    for (let k = 0; k < files; k++) await writeUfsFile(v, `d/f${String(k).padStart(4, '0')}`, block(`t${k}`, 2));
    await writeUfsFile(v, 'same', block('t0', 2));
  });
  linkUfs(master, 'd/f0000', 'hard');
  symlinkUfs(master, 'd/f0001', 'sym');
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist/mirror/pass_master.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-cli-'));
});

afterAll(async () => {
  await unmountAll();
  await stopAllSshd();
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

describe('mirrorddumbfs commands', () => {
  it('read > file, write < file equals copy; the file holds each distinct block once; status shows the claim', async () => {
    const master = await volume();
    const viaCopy = await volume();
    const viaFile = await volume();
    await tree(master, 6);
    for (const s of [viaCopy, viaFile]) expect((await mirror(['init-slave', s, '--from', master])).status).toBe(0);
    const c = await mirror(['copy', master, viaCopy]);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    expect(c.stdout.toString()).toMatch(/^mirrorddumbfs: content pass, 9 files visited, 7 files sent, 12 blocks sent, 0 blocks already held by the replica, \d+ bytes on the wire, [\d.]+ s, claim exact\n$/);
    const r = await mirror(['read', master]);
    expect(r.status, r.stderr).toBe(0);
    // a first pass sends each distinct block of the tree once (6 files of 2 blocks; 'same' and 'hard' share f0000's),
    // and every byte it wrote is the stream on standard output
    expect(r.stderr).toMatch(new RegExp(`^mirrorddumbfs: content pass, 9 files visited, 7 files sent, 12 blocks sent, 0 blocks already held by the replica, ${r.stdout.length} bytes on the wire, [\\d.]+ s, claim exact\n$`));
    const streamFile = path.join(work, 'pass.ddms');
    fs.writeFileSync(streamFile, r.stdout);
    const dump = await mirror(['dump', '--full'], r.stdout);
    expect(dump.status).toBe(0);
    expect(dump.stdout.toString().split('\n').filter((l) => / BLOCK /.test(l))).toHaveLength(12);
    const w = await mirror(['write', viaFile], fs.readFileSync(streamFile));
    // the stream's every byte was read from standard input: the summary's bytes on the wire is the file's size
    expect(w.stderr).toMatch(new RegExp(`^mirrorddumbfs: 12 blocks received, 7 files applied, 0 entries deleted, ${r.stdout.length} bytes on the wire, [\\d.]+ s\n$`));
    expect(w.status).toBe(0);
    for (const [a, b] of [[master, viaFile], [viaCopy, viaFile]]) {
      const v = await mirror(['verify', a!, b!]);
      expect(v.stdout.toString()).toBe('');
      expect(v.status).toBe(0);
    }
    const st = await mirror(['status', viaFile]);
    expect(st.stdout.toString()).toMatch(/^role: slave\nshared uuid: [0-9a-f]{32}\nunique uuid: [0-9a-f]{32}\nlineage: 1, generation: 1\nlineage id: [0-9a-f]{32} \(the initial lineage\)\nclaim: exact, content pass at \S+ \(pass [0-9a-f]{32}\)\npass in progress: none\nlast promote: none\napply areas present: none\nlast verify: \S+, 0 differences, against \S+\n$/);
    const js = JSON.parse((await mirror(['status', viaFile, '--json'])).stdout.toString()) as { state: { role: string; sharedUuid: string; claim: { claimKind: string } } };
    expect(js.state.role).toBe('slave');
    expect(js.state.sharedUuid).toBe(readMirrorState(master)!.sharedUuid);
    expect(js.state.claim.claimKind).toBe('exact');
    // a slave of another master refuses the stream before any change
    const stranger = await volume();
    const other = await volume();
    expect((await mirror(['init-slave', stranger, '--from', other])).status).toBe(0);
    const wrong = await mirror(['write', stranger], fs.readFileSync(streamFile));
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/^mirrorddumbfs: \S+: refused: the master's shared uuid is [0-9a-f]{32}, this slave is bound to [0-9a-f]{32}\n$/);
    expect(fs.readdirSync(ufsAbs(stranger, '')).filter((n) => n !== '.ddumbfs')).toEqual([]);
  }, 240_000);

  it('-p prints plain progress lines on stderr (one at each CHECKPOINT), the summary on stdout', async () => {
    const master = await volume();
    const slave = await volume();
    await tree(master, 20);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    const c = await mirror(['copy', '-p', '--checkpoint-records', '10', master, slave]);
    expect(c.status).toBe(0);
    const lines = c.stderr.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const l of lines) expect(l).toMatch(/^mirrorddumbfs: progress files \d+, blocks sent \d+, held \d+, \d+ bytes, \d+ B\/s, ETA (\d+s|\?) \(\d+ of 40 used blocks\), at \S+$/);
    // the ETA's basis is the master's 40 used blocks; what was done is what was sent and held so far
    for (const l of lines) {
      const m = /blocks sent (\d+), held (\d+), .* \((\d+) of 40 used blocks\)/.exec(l)!;
      expect(Number(m[3])).toBe(Number(m[1]) + Number(m[2]));
    }
    expect(c.stdout.toString()).toMatch(/^mirrorddumbfs: content pass, 23 files visited, 21 files sent, 40 blocks sent, 0 blocks already held/);
  }, 120_000);

  it('serve --restrict refuses a volume outside its root: one line, exit 2, nothing on stdout', async () => {
    const inside = await volume();
    for (const role of ['verify', 'master', 'slave']) {
      const r = await mirror(['serve', '--restrict', inside, role, path.dirname(inside)], Buffer.alloc(0));
      expect(r.status).toBe(2);
      expect(r.stdout.length).toBe(0);
      expect(r.stderr).toBe(`mirrorddumbfs: ${path.dirname(inside)}: outside the restricted root ${inside}: refused\n`);
    }
  }, 60_000);

  it('mounted volumes are mirrored through their daemons (copy, read | write); what cannot work is refused with one line', async () => {
    const master = await volume();
    const slave = await volume();
    const other = await volume();
    await tree(master, 2);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    expect((await mirror(['init-slave', other, '--from', master])).status).toBe(0);
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    const mntSlave = fs.mkdtempSync(path.join(work, 'mnt-'));
    const mm = await mountVolume(master, mnt);
    const ms = await mountVolume(slave, mntSlave);
    try {
      // both mounted: each side runs in its own daemon, mirrorddumbfs relays the streams
      const c = await mirror(['copy', master, slave]);
      expect(c.stderr).toBe('');
      expect(c.status).toBe(0);
      expect(c.stdout.toString()).toMatch(/^mirrorddumbfs: content pass, 5 files visited, 3 files sent, .*claim exact(@\d+)?(, content pass because .*)?\n$/);
      expect(fs.readFileSync(path.join(mntSlave, 'd', 'f0001')).equals(block('t1', 2))).toBe(true);
      // one way from the mounted master, into an unmounted slave
      const r = await mirror(['read', master]);
      expect({ status: r.status, stderr: r.stderr.toString() }).toMatchObject({ status: 0 });
      expect(r.stderr).toMatch(/^mirrorddumbfs: content pass, 5 files visited, 3 files sent, \d+ blocks sent, 0 blocks already held/);
      const w = await mirror(['write', other], r.stdout);
      expect(w.status).toBe(0);
      expect((await mirror(['verify', master, other])).status).toBe(0);
      // init-slave of a mounted volume cannot work (its daemon would keep serving it writable)
      const mountedOther = await volume();
      const mo = fs.mkdtempSync(path.join(work, 'mnt-'));
      const mov = await mountVolume(mountedOther, mo);
      try {
        const i = await mirror(['init-slave', mountedOther, '--from', master]);
        expect(i.status).toBe(1);
        expect(i.stderr).toBe(`mirrorddumbfs: ${mountedOther}: is mounted on ${mo}: unmount it first (its daemon would keep serving it writable)\n`);
        expect(readMirrorState(mountedOther)).toBeNull();
      } finally {
        await mov.unmount();
      }
    } finally {
      await ms.unmount();
      await mm.unmount();
    }
    expect(fs.existsSync(path.join(master, 'ddfsmirror', 'control'))).toBe(false);
    expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'control'))).toBe(false);
    // a read-only mount serves no control socket (nothing may be written to it): refused, nothing written
    const ro = await mountVolume(master, mnt, ['ro']);
    try {
      const r = await mirror(['read', master]);
      expect(r.status).toBe(1);
      expect(r.stdout.length).toBe(0);
      expect(r.stderr).toBe(`mirrorddumbfs: ${master}: mounted, and its daemon serves no control socket (mounted -o ro?): unmount it or mount it writable\n`);
    } finally {
      await ro.unmount();
    }
  }, 300_000);
});

describe('copy --content', () => {
  it('runs a content pass where the journal allows an incremental one, through the daemon and through serve: a loss the incremental pass does not see is repaired', async () => {
    const master = await volume();
    const slave = await volume();
    await tree(master, 3);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    const mm = await mountVolume(master, mnt);
    try {
      fs.writeFileSync(path.join(mnt, 'd', 'new'), block('n', 1)); // a journaled change: the next claim has a TID
      expect((await mirror(['copy', master, slave])).status).toBe(0);
      // behind the mirror's back the slave loses `same` (at the root); the master only rewrites d/f0002, so the
      // incremental pass lists neither the root nor d/ (no entry of theirs changed) and does not see the loss
      fs.rmSync(ufsAbs(slave, 'same'));
      fs.writeFileSync(path.join(mnt, 'd', 'f0002'), block('rewritten', 2));
      const inc = await mirror(['copy', master, slave]);
      expect(inc.status).toBe(0);
      expect(inc.stdout.toString()).toMatch(/^mirrorddumbfs: incremental pass \(TIDs \d+\.\.\d+\), 1 files visited, 1 files sent, /);
      expect((await mirror(['verify', master, slave])).stdout.toString()).toBe('MISSING "/same"\n');
      const con = await mirror(['copy', '--content', master, slave]);
      expect(con.status).toBe(0);
      expect(con.stdout.toString()).toMatch(/^mirrorddumbfs: content pass, .*claim exact@\d+, content pass because a content pass was asked for \(--content\)\n$/);
      expect(readMirrorState(slave)!.claim!.kind).toBe('content');
      const v = await mirror(['verify', master, slave]);
      expect({ status: v.status, stdout: v.stdout.toString() }).toEqual({ status: 0, stdout: '' });
      // through serve (a "remote shell" that runs the command here): the flag reaches the master's side
      const rsh = path.join(work, 'local-rsh');
      fs.writeFileSync(rsh, '#!/bin/sh\n# HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$1"\n', { mode: 0o755 });
      fs.writeFileSync(path.join(mnt, 'd', 'f0002'), block('again', 2));
      const remoteInc = await mirror(['copy', '-e', rsh, '--mirror-path', BIN, `here:${master}`, slave]);
      expect(remoteInc.status).toBe(0);
      expect(readMirrorState(slave)!.claim!.kind).toBe('incremental');
      const remote = await mirror(['copy', '--content', '-e', rsh, '--mirror-path', BIN, `here:${master}`, slave]);
      expect({ status: remote.status, stderr: remote.stderr }).toEqual({ status: 0, stderr: '' });
      expect(readMirrorState(slave)!.claim!.kind).toBe('content');
    } finally {
      await mm.unmount();
    }
    // unmounted: the master's side runs in the command itself
    const off = await mirror(['copy', '--content', master, slave]);
    expect(off.status, off.stderr).toBe(0);
    expect(off.stdout.toString()).toMatch(/content pass because a content pass was asked for \(--content\)\n$/);
    expect((await mirror(['verify', master, slave])).status).toBe(0);
  }, 300_000);
});

describe('mirrorddumbfs over a real sshd', () => {
  let sshd: SshdHandle;
  beforeAll(async () => {
    sshd = await startSshd();
  }, 120_000);
  afterAll(async () => {
    await sshd?.stop();
  });

  const remoteArgs = (): string[] => ['-e', sshd.sshCommand, '--mirror-path', BIN];

  it('init-slave --from user@127.0.0.1:PATH, copy to user@127.0.0.1:PATH, verify is empty, pull back', async () => {
    const master = await volume();
    const slave = await volume();
    await tree(master, 5);
    // init-slave --from host:PATH: the master's identity comes over ssh (its uuids are made there on first use)
    const init = await mirror(['init-slave', ...remoteArgs(), slave, '--from', `${sshd.destination}:${master}`]);
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
    expect(readMirrorState(slave)!.sharedUuid).toBe(readMirrorState(master)!.sharedUuid);
    const c = await mirror(['copy', ...remoteArgs(), master, `${sshd.destination}:${slave}`]);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    expect(c.stdout.toString()).toMatch(/10 blocks sent/);
    const v = await mirror(['verify', master, slave]);
    expect(v.stdout.toString()).toBe('');
    expect(v.status).toBe(0);
    // pulling from a remote master into a local slave: nothing left to send
    const back = await mirror(['copy', ...remoteArgs(), `${sshd.destination}:${master}`, slave]);
    expect(back.status, back.stderr).toBe(0);
    expect(back.stdout.toString()).toMatch(/^mirrorddumbfs: 0 blocks received, 0 files applied, 0 entries deleted, \d+ bytes on the wire, [\d.]+ s\n$/);
  }, 240_000);

  it('a remote slave of another master refuses the pass before any change; both sides end (no hang)', async () => {
    const master = await volume();
    const stranger = await volume();
    await tree(master, 2);
    expect((await mirror(['init-slave', stranger, '--from', await volume()])).status).toBe(0);
    const c = await mirror(['copy', ...remoteArgs(), master, `${sshd.destination}:${stranger}`]);
    expect(c.status).toBe(1);
    // both sides check the other's HELLO at once: whichever refusal reaches stderr first names both uuids
    expect(c.stderr).toMatch(new RegExp(
      '^mirrorddumbfs: (the slave does not match the master: it is bound to [0-9a-f]{32}, this master is [0-9a-f]{32} \\(init-slave it from this master\\)'
      + `|${stranger.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: refused: the master's shared uuid is [0-9a-f]{32}, this slave is bound to [0-9a-f]{32})$`, 'm'));
    expect(fs.readdirSync(ufsAbs(stranger, '')).filter((n) => n !== '.ddumbfs')).toEqual([]);
    expect(readMirrorState(stranger)!.claim).toBeNull();
    expect(await waitFor(() => sshd.sessionPids().length === 0, 30_000)).toBe(true);
  }, 120_000);

  it('verify with a remote side or two: the same lines, exit codes and JSON as a local verify; the far side ends', async () => {
    const master = await volume();
    await tree(master, 3);
    const replica = path.join(work, 'replica');
    await runOk('cp', ['-a', master, replica]);
    const far = `${sshd.destination}:${replica}`;
    const verifyBoth = async (extra: string[]): Promise<Array<{ status: number; stdout: string; stderr: string }>> => {
      const out = [];
      for (const [a, b] of [[master, replica], [master, far], [`${sshd.destination}:${master}`, far]]) {
        const r = await mirror(['verify', ...remoteArgs(), ...extra, a!, b!]);
        out.push({ status: r.status, stdout: r.stdout.toString('latin1'), stderr: r.stderr });
      }
      return out;
    };
    const equal = { status: 0, stdout: '', stderr: '' };
    expect(await verifyBoth(['--deep'])).toEqual([equal, equal, equal]);
    // behind the mirror's back, on the replica: a deleted file, an extra file, a chmod, one flipped byte of a block
    fs.unlinkSync(ufsAbs(replica, 'd/f0002'));
    await withVolume(replica, (v) => writeUfsFile(v, 'd/x', block('extra')));
    fs.chmodSync(ufsAbs(replica, 'same'), 0o600);
    const cfg = volumes[volumes.length - 1]!.config;
    const { address } = await readUfsNode(replica, cfg.nodeSize, cfg.addrSize, 'd/f0001', 0);
    const fd = fs.openSync(path.join(replica, cfg.blockFilename), 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, address * BS + 100);
    fs.closeSync(fd);
    const shallow = ['MISSING "/d/f0002"', 'EXTRA "/d/x"', 'DIFF "/same" mode'];
    const lines = (l: string[]): { status: number; stdout: string; stderr: string } => ({ status: 1, stdout: l.map((x) => `${x}\n`).join(''), stderr: '' });
    expect(await verifyBoth([])).toEqual([lines(shallow), lines(shallow), lines(shallow)]);
    const deep = [...shallow, 'CORRUPT "/d/f0001" block 0 on B'];
    expect(await verifyBoth(['--deep'])).toEqual([lines(deep), lines(deep), lines(deep)]);
    const json = (await verifyBoth(['--deep', '--json'])).map((r) => {
      expect(r.status).toBe(1);
      return JSON.parse(r.stdout) as { a: string; b: string; count: number; lines: unknown[] };
    });
    expect(json.map((d) => [d.a, d.b])).toEqual([[master, replica], [master, far], [`${sshd.destination}:${master}`, far]]);
    expect(json[0]!.count).toBe(4);
    for (const d of json) expect({ count: d.count, lines: d.lines }).toEqual({ count: json[0]!.count, lines: json[0]!.lines });
    expect(await waitFor(() => sshd.sessionPids().length === 0, 30_000)).toBe(true);
    // a far path that is no volume: one line from the far side, exit 1
    const none = await mirror(['verify', ...remoteArgs(), master, `${sshd.destination}:${work}`]);
    expect(none.status).toBe(1);
    expect(none.stdout.toString()).toBe('');
    expect(none.stderr).toBe(`mirrorddumbfs: ${sshd.destination}:${work}: ${path.join(work, 'ddfs.cfg')}: not found: ${work} is not a ddumbfs volume\n`);
  }, 300_000);

  it('a copy whose ssh client is killed after a CHECKPOINT resumes that pass and converges', async () => {
    const master = await volume();
    const slave = await volume();
    await tree(master, 300);
    expect((await mirror(['init-slave', slave, '--from', master])).status).toBe(0);
    const child = spawn('node', [BIN, 'copy', '--checkpoint-records', '20', ...remoteArgs(), master, `${sshd.destination}:${slave}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    // the slave has applied a CHECKPOINT window: stop the master, kill its ssh client (its child), let it go on
    const sawCheckpoint = await waitFor(() => {
      try {
        const p = readMirrorState(slave)?.pass;
        return p !== null && p !== undefined && p.keyCurHex !== '';
      } catch {
        return false;
      }
    }, 120_000);
    expect(sawCheckpoint).toBe(true);
    process.kill(child.pid!, 'SIGSTOP');
    const sshPids = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'latin1').trim().split(/\s+/).filter((p) => p !== '').map(Number);
    expect(sshPids.length).toBe(1);
    process.kill(sshPids[0]!, 'SIGKILL');
    process.kill(child.pid!, 'SIGCONT');
    expect(await exited).toBe(1);
    expect(err).not.toBe('');
    await waitFor(() => sshd.sessionPids().length === 0, 30_000);
    const st = readMirrorState(slave)!;
    expect(st.claim).toBeNull();
    expect(st.pass).not.toBeNull();
    const again = await mirror(['copy', ...remoteArgs(), master, `${sshd.destination}:${slave}`]);
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(again.stdout.toString()).toMatch(/, resumed\n$/);
    const v = await mirror(['verify', master, slave]);
    expect(v.stdout.toString()).toBe('');
    expect(v.status).toBe(0);
    expect(readMirrorState(slave)!.pass).toBeNull();
  }, 300_000);
});
