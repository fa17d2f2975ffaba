/**
 * A refused pass inside `mirrorddumbfs stream` (mirroring spec §4.3, §4.6, §4.10): the stream's pass from an
 * unmounted master starts incremental (its sealed journal is above the replica's claim), the seal's census finds an
 * edit made behind the journal, and runMaster refuses the COMMIT (contentPassNext). The stream must not die or spin,
 * the refused pass must not move the claim, the next pass must be a content pass, and the replica must converge
 * (verify empty). Into a local slave copyLocal runs the content pass at once; into a remote slave (serve through a
 * remote shell) the stream's loop retries it after its back-off.
 *
 * The master's journaled changes and the edit behind its back are made under the master's volume lock (the lock
 * every pass takes), so no pass of the stream can run between the seal and the edit: by construction, not timing.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openMasterJournal } from '../src/mirror/master_journal.js';
import { readMirrorState } from '../src/mirror/state.js';
import { readStreamState } from '../src/mirror/stream_state.js';
import { logger } from '../src/util/log.js';
import { takeVolumeLock } from '../src/volume/lock.js';
import { Volume } from '../src/volume/volume.js';
import { seededBlocks } from './helpers/bytes.js';
import { waitFor } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { SELF } from './helpers/ufs_model.js';
import { withVolume, writeUfsFile } from './helpers/ufs_tree.js';

const BIN = path.join(path.resolve(__dirname, '..'), 'bin/mirrorddumbfs');
const BS = 4096;
const volumes: TempVolume[] = [];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-stream-refused-'));
afterAll(async () => {
  for (const v of volumes) await v.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(v);
  return v.parent;
}

/**
 * A mount session of the master as its daemon runs one, under its volume lock: `fn`'s tree changes are journaled,
 * the journal is closed and sealed, then `afterSeal` runs (still under the lock), then the lock is released.
 */
async function session(master: string, fn: (v: Volume) => Promise<void>, afterSeal: () => void = () => undefined): Promise<void> {
  const lock = await takeVolumeLock(master, 'test');
  const v = await Volume.open(master, { lock, logger });
  try {
    const mj = (await openMasterJournal(master, { crashed: false, rootDir: v.rootDir, logger }))!;
    v.tree.sink = mj.sink;
    try {
      await fn(v);
    } finally {
      v.tree.sink = null;
      await mj.close(true);
    }
    afterSeal();
  } finally {
    await v.close();
  }
}

/** Start `mirrorddumbfs stream ARGS`; its stdout and stderr are kept. */
function startStream(args: string[]) {
  const child = spawn('node', [BIN, 'stream', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr.on('data', (c: Buffer) => (out += c.toString('latin1')));
  child.stdout.on('data', (c: Buffer) => (out += c.toString('latin1')));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { child, exited, output: () => out };
}

/** A master with a file and a sealed journal naming a TID, and its slave bound to it. */
async function pair(): Promise<{ master: string; slave: string }> {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => writeUfsFile(v, 'a', seededBlocks('a', 2, BS)));
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  await session(master, async (v) => {
    await v.tree.createFile(Buffer.from('g'), 0o644, SELF, true);
  });
  return { master, slave };
}

/**
 * Journaled changes, then an edit of ddfsroot behind the journal once the seal is written (a chmod: only the seal's
 * ctime boundary sees it), under the lock.
 */
async function editBehindTheJournal(master: string): Promise<void> {
  await session(master, async (v) => {
    await v.tree.chmod(Buffer.from('g'), 0o600);
    await v.tree.mkdir(Buffer.from('e'), 0o755, SELF);
  }, () => fs.chmodSync(path.join(master, 'ddfsroot', 'a'), 0o640));
}

/** The stream's pass count stays put over 20 more looks at the master's head: no pass while nothing changes. */
async function expectNoSpin(stateAt: string): Promise<void> {
  const st = readStreamState(stateAt)!;
  const looks = st.headLooks ?? 0;
  expect(await waitFor(() => (readStreamState(stateAt)?.headLooks ?? 0) >= looks + 20, 120_000)).toBe(true);
  expect(readStreamState(stateAt)!.passCount).toBe(st.passCount);
}

async function expectVerifyClean(master: string, slave: string, remote: string[] = []): Promise<void> {
  const verify = await run('node', [BIN, 'verify', ...remote, master, slave], { timeoutMs: 180_000 });
  expect(verify.stdout.toString()).toBe('');
  expect(verify.code).toBe(0);
}

/**
 * After the refusal: a mount session's journaled change moves the head past the TID the stream waits for, so it
 * passes again (a content pass: that mount bumped the generation, its seal makes the journal trusted again); the
 * next change gets an incremental pass. Each time the replica converges.
 */
async function afterMount(master: string, slave: string, output: () => string, stateAt = slave): Promise<void> {
  const passes = readStreamState(stateAt)!.passCount;
  await session(master, async (v) => {
    await v.tree.createFile(Buffer.from('after'), 0o644, SELF, true);
  });
  expect(await waitFor(() => (readStreamState(stateAt)?.passCount ?? 0) > passes && readStreamState(stateAt)?.lagTids === '0', 120_000), output()).toBe(true);
  expect(readMirrorState(slave)!.claim!.kind).toBe('content');
  expect(BigInt(readMirrorState(slave)!.claim!.syncEndTid ?? '0')).toBeGreaterThan(0n);
  const passes2 = readStreamState(stateAt)!.passCount;
  await session(master, async (v) => v.tree.chmod(Buffer.from('after'), 0o600));
  expect(await waitFor(() => (readStreamState(stateAt)?.passCount ?? 0) > passes2 && readStreamState(stateAt)?.lagTids === '0', 120_000), output()).toBe(true);
  expect(readMirrorState(slave)!.claim!.kind).toBe('incremental');
  expect(fs.statSync(path.join(slave, 'ddfsroot', 'after')).mode & 0o777).toBe(0o600);
}

describe('a refused pass inside a stream', () => {
  it('into a local slave: the refused incremental pass commits nothing, the content pass run at once converges, the stream waits again', async () => {
    const { master, slave } = await pair();
    const s = startStream(['-i', '0.2', '--max-interval', '100000', '--backoff', '0.2', master, slave]);
    try {
      expect(await waitFor(() => {
        const st = readStreamState(slave);
        return st !== null && st.passCount >= 1 && st.lagTids === '0';
      }, 120_000)).toBe(true);
      const claimBefore = readMirrorState(slave)!.claim!;
      const passesBefore = readStreamState(slave)!.passCount;
      await editBehindTheJournal(master);
      expect(await waitFor(() => /the incremental pass is not committed, the next pass is a content pass: running it again/.test(s.output()), 120_000), s.output()).toBe(true);
      expect(await waitFor(() => (readStreamState(slave)?.passCount ?? 0) > passesBefore && readMirrorState(slave)?.claim?.passId !== claimBefore.passId, 120_000), s.output()).toBe(true);
      // the refused pass committed nothing: the claim is the content pass's, which covers no TID (no seal now)
      const claim = readMirrorState(slave)!.claim!;
      expect(claim.kind).toBe('content');
      expect(claim.syncEndTid ?? '0').toBe('0');
      expect(readMirrorState(slave)!.pass).toBeNull();
      await expectVerifyClean(master, slave);
      // no content pass after content pass while the head stays above that claim of TID 0
      await expectNoSpin(slave);
      // its lag counts from the head that content pass started at, not from TID 0
      expect(readStreamState(slave)!.lagTids).toBe('0');
      expect(s.output()).toMatch(/stream: the pass covered no TID \(the master's journal is not trusted\): the next pass waits for the journal head to pass \d+, or --max-interval/);
      // a mount's journaled change moves the head: a pass (content: the mount bumped the generation), then incremental
      await afterMount(master, slave, s.output);
      expect(s.child.exitCode).toBeNull();
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toBe(0);
  }, 300_000);

  it('into a remote slave (serve through a remote shell): the refused pass fails in the loop, the claim stays, the retry is a content pass, the stream waits again', async () => {
    const { master, slave } = await pair();
    // the serve transport over a child process pipe: a "remote shell" that runs the command here (no sshd)
    const rsh = path.join(work, 'local-rsh');
    fs.writeFileSync(rsh, '#!/bin/sh\n# HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$1"\n', { mode: 0o755 });
    const remote = ['-e', rsh, '--mirror-path', BIN];
    const s = startStream([...remote, '-i', '0.2', '--max-interval', '100000', '--backoff', '0.2', master, `here:${slave}`]);
    try {
      // the slave is remote: the stream's state is the master's
      expect(await waitFor(() => {
        const st = readStreamState(master);
        return st !== null && st.passCount >= 1 && st.lagTids === '0';
      }, 120_000), s.output()).toBe(true);
      const claimBefore = readMirrorState(slave)!.claim!;
      const passesBefore = readStreamState(master)!.passCount;
      await editBehindTheJournal(master);
      expect(await waitFor(() => /stream: pass failed \(.*the incremental pass is not committed, the next pass is a content pass\); retry \d+ in/.test(s.output()), 120_000), s.output()).toBe(true);
      expect(await waitFor(() => (readStreamState(master)?.passCount ?? 0) > passesBefore, 120_000), s.output()).toBe(true);
      const claim = readMirrorState(slave)!.claim!;
      expect(claim.passId).not.toBe(claimBefore.passId);
      expect(claim.kind).toBe('content');
      // one committed pass since the refusal: the content pass (the refused one did not count, nor move the claim)
      expect(readStreamState(master)!.passCount).toBe(passesBefore + 1);
      expect(readMirrorState(slave)!.pass).toBeNull();
      await expectVerifyClean(master, `here:${slave}`, remote);
      await expectNoSpin(master);
      expect(readStreamState(master)!.lagTids).toBe('0');
      await afterMount(master, slave, s.output, master);
      expect(s.child.exitCode).toBeNull();
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toBe(0);
  }, 300_000);
});
