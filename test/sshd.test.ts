/**
 * The throw-away sshd of test/helpers/sshd.ts (issue 7's ssh transport tests): a real Debian sshd on 127.0.0.1 that
 * ssh reaches without prompts, a binary-safe byte stream both ways (what a stream protocol such as DDMS needs), a
 * killed client ends the remote command, stop() leaves no port, no sshd and no session process behind, and rsync -e
 * (the benchmark baseline) works through the same `sshCommand`.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portAcceptsConnection, probeSshBanner, startSshd, stopAllSshd, type SshdHandle } from './helpers/sshd.js';

/** Bound on one ssh / rsync run on a loaded machine; a hang fails the test instead of the suite. */
const RUN_TIMEOUT_MS = 60_000;
const WAIT_TIMEOUT_MS = 20_000;

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Run `cmd args`, feed `input` on stdin (then EOF), collect stdout as bytes. */
function run(cmd: string, args: readonly string[], input?: Buffer): Promise<RunResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', rej);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on('error', () => {}); // EPIPE when the far side ends first shows in the exit status instead
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/** `ssh -F cfg HOST remoteCommand` through the handle. */
function ssh(sshd: SshdHandle, remoteCommand: string, input?: Buffer): Promise<RunResult> {
  return run(sshd.sshArgv[0]!, [...sshd.sshArgv.slice(1), sshd.host, remoteCommand], input);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** True while `pid` is a live process (a zombie counts as ended: it runs nothing any more). */
function processRuns(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  return state !== 'Z' && state !== 'X';
}

async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Spawn `ssh HOST 'echo REMOTE_PID=$$ >&2; exec CMD'` and resolve once the remote pid is known: the remote shell
 * runs on this machine, so the test can watch that process directly.
 */
async function spawnRemote(sshd: SshdHandle, command: string): Promise<{ child: ReturnType<typeof spawn>; remotePid: number; closed: Promise<void> }> {
  const child = spawn(sshd.sshArgv[0]!, [...sshd.sshArgv.slice(1), sshd.host, `echo REMOTE_PID=$$ >&2; exec ${command}`], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const closed = new Promise<void>((res) => child.on('close', () => res()));
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  child.stdin!.on('error', () => {});
  const seen = await waitFor(() => /REMOTE_PID=\d+\n/.test(err) || child.exitCode !== null, WAIT_TIMEOUT_MS);
  const m = /REMOTE_PID=(\d+)\n/.exec(err);
  if (!seen || m === null) {
    child.kill('SIGKILL');
    throw new Error(`remote command did not start (exit ${String(child.exitCode)}): ${err}`);
  }
  return { child, remotePid: Number(m[1]), closed };
}

afterAll(async () => {
  await stopAllSshd();
});

describe('a throw-away sshd on 127.0.0.1', () => {
  let sshd: SshdHandle;

  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  it('serves an SSH-2.0 banner on its own 127.0.0.1 port, from a private directory', async () => {
    expect(sshd.host).toBe('127.0.0.1');
    expect(sshd.port).toBeGreaterThan(0);
    expect(sshd.port).not.toBe(22);
    expect(await probeSshBanner(sshd.host, sshd.port)).toBe(true);
    expect(sshd.stderr()).toContain(`Server listening on 127.0.0.1 port ${sshd.port}.`);
    // started with its own config, not the system's (sshd rewrites its argv into one title string)
    const title = readFileSync(`/proc/${sshd.pid}/cmdline`, 'latin1');
    expect(title).toContain(`-f ${join(sshd.dir, 'sshd_config')}`);
    expect(sshd.sshCommand).toBe(`ssh -F ${join(sshd.dir, 'ssh_config')}`);
  });

  it('runs a remote command by public key, without prompts: echo hello', async () => {
    const r = await ssh(sshd, 'echo hello');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe('hello\n');
    expect(sshd.stderr()).toContain(`Accepted publickey for ${sshd.user} from 127.0.0.1`);
    // the [user@]host form of a remote endpoint reaches it too
    const r2 = await run(sshd.sshArgv[0]!, [...sshd.sshArgv.slice(1), sshd.destination, 'id -un']);
    expect(r2.code).toBe(0);
    expect(r2.stdout.toString()).toBe(`${sshd.user}\n`);
  });

  it('fails instead of prompting when the host key does not match', async () => {
    const alias = join(sshd.dir, 'ssh_config_wrong_host_key');
    const wrong = join(sshd.dir, 'known_hosts_wrong');
    const otherKey = join(sshd.dir, 'other_host_ed25519');
    expect((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey])).code).toBe(0);
    await writeFile(wrong, `[127.0.0.1]:${sshd.port} ${(await readFile(`${otherKey}.pub`, 'utf8')).trim()}\n`);
    const cfg = readFileSync(join(sshd.dir, 'ssh_config'), 'utf8').replace(join(sshd.dir, 'known_hosts'), wrong);
    await writeFile(alias, cfg);
    const r = await run('ssh', ['-F', alias, sshd.host, 'echo hello']);
    expect(r.code).toBe(255);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('carries 1 MiB of random bytes through a remote cat unchanged (binary-safe byte transport)', async () => {
    const data = randomBytes(1024 * 1024);
    const r = await ssh(sshd, 'cat', data);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(data.length);
    expect(sha256(r.stdout)).toBe(sha256(data));
  });

  it('ends the remote command when the ssh client is killed mid-transfer', async () => {
    const { child, remotePid, closed } = await spawnRemote(sshd, 'cat');
    expect(processRuns(remotePid)).toBe(true);
    expect(sshd.sessionPids()).toContain(remotePid);
    // keep the pipe full: write until the test kills the client, count what comes back
    let echoedBytes = 0;
    child.stdout!.on('data', (c: Buffer) => (echoedBytes += c.length));
    let writing = true;
    const chunk = randomBytes(64 * 1024);
    const pump = (): void => {
      while (writing && child.stdin!.writable && child.stdin!.write(chunk));
      if (writing && child.stdin!.writable) child.stdin!.once('drain', pump);
    };
    pump();
    expect(await waitFor(() => echoedBytes >= 512 * 1024, WAIT_TIMEOUT_MS)).toBe(true);
    expect(processRuns(remotePid)).toBe(true); // still mid-transfer
    writing = false;
    child.kill('SIGKILL');
    await closed;
    expect(child.signalCode).toBe('SIGKILL');
    expect(await waitFor(() => !processRuns(remotePid), WAIT_TIMEOUT_MS)).toBe(true);
    expect(await waitFor(() => sshd.sessionPids().length === 0, WAIT_TIMEOUT_MS)).toBe(true);
    // and the server still takes new connections
    const r = await ssh(sshd, 'echo still-here');
    expect(r.stdout.toString()).toBe('still-here\n');
  });

  it('rsync -a -e "<sshCommand>" copies a small tree to 127.0.0.1', async () => {
    const src = await mkdtemp(join(tmpdir(), 'ddfs-sshd-rsync-src-'));
    const dst = await mkdtemp(join(tmpdir(), 'ddfs-sshd-rsync-dst-'));
    try {
      await mkdir(join(src, 'sub', 'deeper'), { recursive: true });
      await writeFile(join(src, 'a.txt'), 'alpha\n');
      await writeFile(join(src, 'sub', 'b.bin'), randomBytes(200 * 1024 + 17));
      await writeFile(join(src, 'sub', 'deeper', 'empty'), '');
      await chmod(join(src, 'a.txt'), 0o640);
      await symlink('a.txt', join(src, 'link'));
      const r = await run('rsync', ['-a', '-e', sshd.sshCommand, `${src}/`, `${sshd.host}:${dst}/`]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((await readdir(dst)).sort()).toEqual(['a.txt', 'link', 'sub']);
      expect((await readdir(join(dst, 'sub'))).sort()).toEqual(['b.bin', 'deeper']);
      for (const rel of ['a.txt', join('sub', 'b.bin'), join('sub', 'deeper', 'empty')]) {
        expect(sha256(await readFile(join(dst, rel)))).toBe(sha256(await readFile(join(src, rel))));
        expect((await lstat(join(dst, rel))).mode).toBe((await lstat(join(src, rel))).mode);
      }
      expect(await readlink(join(dst, 'link'))).toBe('a.txt');
      expect((await lstat(join(dst, 'sub', 'b.bin'))).mtimeMs).toBe((await lstat(join(src, 'sub', 'b.bin'))).mtimeMs);
    } finally {
      await rm(src, { recursive: true, force: true });
      await rm(dst, { recursive: true, force: true });
    }
  });
});

describe('startSshd()', () => {
  it('creates the privilege-separation directory /run/sshd when it is missing', async () => {
    // rmdir only removes it when empty, i.e. when no sshd of ours uses it (test files run one at a time)
    if (existsSync('/run/sshd')) await rmdir('/run/sshd');
    expect(existsSync('/run/sshd')).toBe(false);
    const sshd = await startSshd();
    try {
      const st = await lstat('/run/sshd');
      expect(st.isDirectory()).toBe(true);
      expect(st.uid).toBe(0);
      expect(st.mode & 0o022).toBe(0);
      expect((await ssh(sshd, 'echo hello')).stdout.toString()).toBe('hello\n');
    } finally {
      await sshd.stop();
    }
  });
});

describe('SshdHandle.stop()', () => {
  it('closes the port, ends sshd and its sessions, removes the directory; idempotent', async () => {
    const sshd = await startSshd();
    const { child, remotePid, closed } = await spawnRemote(sshd, 'sleep 600');
    expect(sshd.sessionPids()).toContain(remotePid);
    const sessions = sshd.sessionPids();
    expect(sessions.length).toBeGreaterThanOrEqual(2); // the connection's sshd and the command at least
    await sshd.stop();
    expect(await portAcceptsConnection(sshd.host, sshd.port)).toBe(false);
    expect(processRuns(sshd.pid)).toBe(false);
    for (const pid of sessions) expect(processRuns(pid)).toBe(false);
    expect(existsSync(sshd.dir)).toBe(false);
    expect(sshd.sessionPids()).toEqual([]);
    await closed; // the client sees its connection end
    expect(child.exitCode).toBe(255);
    await sshd.stop(); // a second stop is a no-op
    expect(existsSync(sshd.dir)).toBe(false);
  });

  it('two servers at once get different ports and do not share keys', async () => {
    const [a, b] = await Promise.all([startSshd(), startSshd()]);
    try {
      expect(a.port).not.toBe(b.port);
      expect(a.dir).not.toBe(b.dir);
      expect(readFileSync(join(a.dir, 'host_ed25519.pub'), 'utf8')).not.toBe(readFileSync(join(b.dir, 'host_ed25519.pub'), 'utf8'));
      // a's client config trusts only a's host key: pointed at b's port it refuses
      const r = await run(a.sshArgv[0]!, [...a.sshArgv.slice(1), '-p', String(b.port), b.host, 'echo hello']);
      expect(r.code).toBe(255);
      expect(r.stdout.length).toBe(0);
      const ok = await ssh(b, 'echo hello');
      expect(ok.stdout.toString()).toBe('hello\n');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
