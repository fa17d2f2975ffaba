/**
 * mirrorddumbfs stream (spec §4.10): a local stream picks up changes of an offline master between passes and stops on
 * SIGTERM; with a mounted master it waits for the journal head to move past the claim (no pass while it stands still,
 * a pass once a write moved it) and shows the lag in TIDs; a peer that never answers is declared dead after
 * --timeout and the stream backs off; -b is accepted and the pass still completes; --content-interval runs a
 * content pass on schedule, which repairs what no head movement shows.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { afterAll, expect, it } from 'vitest';
import * as path from 'node:path';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mountVolume, unmountAll, waitFor } from './helpers/mount.js';
import { withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { run } from './helpers/run.js';
import { seededBlocks } from './helpers/bytes.js';
import { readStreamState } from '../src/mirror/stream_state.js';
import { readMirrorState } from '../src/mirror/state.js';

const BIN = path.join(path.resolve(__dirname, '..'), 'bin/mirrorddumbfs');
const volumes: TempVolume[] = [];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-stream-'));
afterAll(async () => {
  await unmountAll();
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: 4096, size: '16M' });
  volumes.push(v);
  return v.parent;
}

it('streams passes until SIGTERM, then exits 0 with state stopped', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => writeUfsFile(v, 'a', seededBlocks('a', 2, 4096)));
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  const child = spawn('node', [BIN, 'stream', '-i', '0.2', '--backoff', '0.2', master, slave], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  try {
    await waitFor(() => (readStreamState(slave)?.passCount ?? 0) >= 1, 120_000);
    const verify1 = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
    expect(verify1.code).toBe(0);
    const before = readStreamState(slave)!.passCount;
    expect(readStreamState(slave)!.pid).toBe(child.pid);
    expect(before).toBeGreaterThanOrEqual(1);
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  expect(readStreamState(slave)!.connection).toBe('stopped');
  const st = await run('node', [BIN, 'status', slave, '--json'], { timeoutMs: 60_000 });
  expect(JSON.parse(st.stdout.toString()).stream.connection).toBe('stopped');
  const lines = await run('node', [BIN, 'status', slave], { timeoutMs: 60_000 });
  expect(lines.stdout.toString()).toMatch(new RegExp(`\nstream: stopped \\(pid ${child.pid}\\), [1-9]\\d* passes`));
}, 300_000);

/** Start `mirrorddumbfs stream ARGS`; its stderr is kept. */
function startStream(args: string[]) {
  const child = spawn('node', [BIN, 'stream', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('latin1')));
  child.stdout.resume();
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { child, exited, stderr: () => stderr };
}

it('with a mounted master: no pass while the journal head stands at the claim, a pass once a write moves it; lag in TIDs', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => writeUfsFile(v, 'a', seededBlocks('a', 2, 4096)));
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  const m = await mountVolume(master, mnt);
  try {
    fs.writeFileSync(path.join(mnt, 'b'), seededBlocks('b', 1, 4096)); // a journal record: the head is above 0
    const s = startStream(['-i', '0.1', '--max-interval', '100000', '--backoff', '0.2', '-b', '2048', master, slave]);
    try {
      expect(await waitFor(() => {
        const st = readStreamState(slave);
        return st !== null && st.passCount >= 1 && st.lagTids === '0';
      }, 120_000)).toBe(true);
      const first = readStreamState(slave)!;
      expect(first.headTid).not.toBeNull();
      expect(first.claimTid).toBe(first.headTid);
      const looks = first.headLooks ?? 0;
      // 20 looks at a head that does not move: no pass
      expect(await waitFor(() => (readStreamState(slave)?.headLooks ?? 0) >= looks + 20, 120_000)).toBe(true);
      expect(readStreamState(slave)!.passCount).toBe(first.passCount);
      expect(readStreamState(slave)!.lagSeconds).toBe(0);
      fs.writeFileSync(path.join(mnt, 'c'), seededBlocks('c', 3, 4096));
      expect(await waitFor(() => {
        const st = readStreamState(slave);
        return st !== null && st.passCount > first.passCount && st.lagTids === '0' && BigInt(st.claimTid ?? '0') > BigInt(first.claimTid!);
      }, 120_000)).toBe(true);
      const verify = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
      expect(verify.stdout.toString()).toBe('');
      expect(verify.code).toBe(0);
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toBe(0);
  } finally {
    await m.unmount();
  }
}, 300_000);

it('--content-interval: a content pass on schedule repairs a loss the head never shows (the master stands still)', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'a', seededBlocks('a', 2, 4096));
    await writeUfsFile(v, 'kept', seededBlocks('k', 1, 4096));
  });
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
  const m = await mountVolume(master, mnt);
  try {
    fs.writeFileSync(path.join(mnt, 'b'), seededBlocks('b', 1, 4096)); // a journal record: the head is above 0
    expect((await run('node', [BIN, 'copy', master, slave], { timeoutMs: 180_000 })).code).toBe(0);
    // behind the mirror's back: the slave loses `kept`; the master's head does not move again
    fs.rmSync(path.join(slave, 'ddfsroot', 'kept'));
    const s = startStream(['-i', '0.1', '--max-interval', '100000', '--content-interval', '1', master, slave]);
    try {
      expect(await waitFor(() => fs.existsSync(path.join(slave, 'ddfsroot', 'kept')), 120_000), s.stderr()).toBe(true);
      expect(s.stderr()).toMatch(/stream: a content pass \(--content-interval 1 s\)/);
      expect(await waitFor(() => readStreamState(slave)?.connection === 'idle', 120_000)).toBe(true);
      const verify = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
      expect({ code: verify.code, stdout: verify.stdout.toString() }).toEqual({ code: 0, stdout: '' });
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toBe(0);
  } finally {
    await m.unmount();
  }
  // a negative interval is a usage error
  const bad = await run('node', [BIN, 'stream', '--content-interval', '-1', master, slave], { timeoutMs: 60_000 });
  expect({ code: bad.code, stderr: bad.stderr.toString() }).toEqual({ code: 2, stderr: 'mirrorddumbfs: stream: --content-interval takes a positive number of seconds\n' });
}, 300_000);

/**
 * Wait (up to 120 s) until the slave has applied a first checkpoint window of a pass (its pass record names a key):
 * the pass is under way. Returns the records applied then.
 */
async function firstWindowApplied(slave: string): Promise<number> {
  let applied = -1;
  expect(await waitFor(() => {
    try {
      const p = readMirrorState(slave)?.pass;
      if (p === null || p === undefined || p.keyCurHex === '') return false;
      applied = p.recordsApplied;
      return true;
    } catch {
      return false;
    }
  }, 120_000)).toBe(true);
  return applied;
}

/**
 * A stream stopped by SIGTERM inside its first pass: it said so on stderr, the slave has no claim yet (stopped inside
 * the pass, not after it) and applied the checkpoint that followed the signal (more records than `applied`, the count
 * when the signal was sent).
 */
function expectStoppedAfterCheckpoint(stderr: string, slave: string, applied: number): void {
  expect(stderr).toMatch(/stream: SIGTERM: stopping after the slave's next checkpoint\n/);
  expect(stderr).toMatch(/stream: stopped on SIGTERM after a checkpoint \(the next pass resumes from it\)\n/);
  const st = readMirrorState(slave)!;
  expect(st.claim).toBeNull();
  expect(st.pass).not.toBeNull();
  expect(st.pass!.recordsApplied).toBeGreaterThan(applied);
}

it('a peer that never answers is declared dead after --timeout; the stream backs off and keeps trying', async () => {
  const master = await volume();
  // a remote shell that accepts the connection and then says nothing (a hung link)
  const rsh = path.join(work, 'hung-rsh');
  fs.writeFileSync(rsh, '#!/bin/sh\nexec sleep 600\n', { mode: 0o755 });
  const s = startStream(['-e', rsh, '--timeout', '1', '--backoff', '0.2', '-b', '64', master, 'nowhere:/replica']);
  try {
    expect(await waitFor(() => (s.stderr().match(/link dead/g) ?? []).length >= 2, 120_000)).toBe(true);
    expect(s.stderr()).toMatch(/stream: link dead: nothing from the peer for 1 s/);
    expect(s.stderr()).toMatch(/stream: pass failed \(link dead: .*\); retry 1 in 0.2 s/);
    const st = readStreamState(master)!;
    expect(st.retryCount).toBeGreaterThanOrEqual(1);
    expect(st.passCount).toBe(0);
  } finally {
    s.child.kill('SIGTERM');
  }
  expect(await s.exited).toBe(0);
}, 300_000);

it('SIGTERM during a pass into a local slave stops after its next checkpoint; a later copy resumes from it', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => {
    for (let k = 0; k < 600; k++) await writeUfsFile(v, `f${String(k).padStart(4, '0')}`, seededBlocks(`s${k}`, 1, 4096));
  });
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  const s = startStream(['--checkpoint-records', '10', '--backoff', '0.2', master, slave]);
  let applied = -1;
  try {
    applied = await firstWindowApplied(slave);
  } finally {
    s.child.kill('SIGTERM');
  }
  expect(await s.exited).toBe(0);
  expectStoppedAfterCheckpoint(s.stderr(), slave, applied);
  expect(readStreamState(slave)!.connection).toBe('stopped');
  const again = await run('node', [BIN, 'copy', master, slave], { timeoutMs: 180_000 });
  expect(again.code).toBe(0);
  expect(again.stdout.toString()).toMatch(/resumed\n$/);
  const verify = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
  expect(verify.stdout.toString()).toBe('');
  expect(verify.code).toBe(0);
}, 300_000);

it('SIGTERM during a pass into a REMOTE slave (serve through a remote shell) stops after its next checkpoint, not after the pass', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => {
    for (let k = 0; k < 600; k++) await writeUfsFile(v, `f${String(k).padStart(4, '0')}`, seededBlocks(`r${k}`, 1, 4096));
  });
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  // the serve transport over a child process pipe: a "remote shell" that runs the command here (no sshd)
  const rsh = path.join(work, 'local-rsh');
  fs.writeFileSync(rsh, '#!/bin/sh\n# HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$1"\n', { mode: 0o755 });
  // -b slows the pass down (about 1.5 s for the 600 blocks) so the signal lands inside it
  const s = startStream(['-e', rsh, '--mirror-path', BIN, '--checkpoint-records', '10', '--backoff', '0.2', '-b', '1024', master, `here:${slave}`]);
  let applied = -1;
  try {
    applied = await firstWindowApplied(slave);
  } finally {
    s.child.kill('SIGTERM');
  }
  expect(await s.exited).toBe(0);
  expectStoppedAfterCheckpoint(s.stderr(), slave, applied);
  expect(s.stderr()).not.toMatch(/retry/);
  expect(readStreamState(master)!.connection).toBe('stopped'); // the slave is remote: the state is the master's
  const again = await run('node', [BIN, 'copy', '-e', rsh, '--mirror-path', BIN, master, `here:${slave}`], { timeoutMs: 180_000 });
  expect(again.code, again.stderr.toString()).toBe(0);
  expect(again.stdout.toString()).toMatch(/resumed\n$/);
  const verify = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
  expect(verify.stdout.toString()).toBe('');
  expect(verify.code).toBe(0);
}, 300_000);
