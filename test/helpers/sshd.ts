/**
 * A real, throw-away OpenSSH server on 127.0.0.1 for the tests of ssh transports (issue 7: mirrorddumbfs runs
 * `ssh [user@]host mirrorddumbfs serve --restrict PATH` on the far side; rsync over ssh is the benchmark baseline).
 *
 * What `startSshd()` starts, and where:
 * - a fresh mkdtemp directory `$TMPDIR/ddfs-sshd-XXXXXX` (mode 0700) holding everything: an ed25519 host key
 *   (`host_ed25519`), an ed25519 user key (`user_ed25519`, no passphrase), `authorized_keys` (the user key),
 *   `known_hosts` (the host key for `[127.0.0.1]:PORT` and `[localhost]:PORT`), `sshd_config`, `ssh_config`,
 *   `sshd.pid`;
 * - Debian's `/usr/sbin/sshd -D -e -f DIR/sshd_config` as a child process of the test worker (foreground, log on
 *   its stderr, kept in memory for `stderr()`), listening on 127.0.0.1 only, on a port the kernel handed out free
 *   (bind port 0, close, give it to sshd; if another process takes it first, sshd fails to bind and a new port is
 *   tried, at most SSHD_START_ATTEMPTS times). Nothing is read from /etc/ssh and the system's ssh service need not
 *   run: the config names its own host key, authorized keys and pid file; public-key login only (no password, no
 *   keyboard-interactive, no PAM), no DNS, no TTY, no forwarding, no user environment or rc files, no SetEnv or
 *   AcceptEnv, so a session's environment is sshd's fixed default (PATH=/usr/local/sbin:...:/usr/bin:/sbin:/bin);
 * - sshd's privilege-separation directory /run/sshd is created (0755) when missing; this needs root, as does logging
 *   in as root. The login user is the one running the test (root in CI and on the developers' machines);
 *   `PermitRootLogin prohibit-password` lets root in by key. `StrictModes no` because the authorized_keys file lives
 *   under $TMPDIR, whose 1777 mode StrictModes rejects (the directory itself is 0700 and the keys 0600).
 *
 * `startSshd()` resolves once sshd logged "Server listening on 127.0.0.1 port PORT" (so it is ours that holds the
 * port) and a TCP connection to that port read an "SSH-2.0-" banner: both polled with a bound, never a fixed sleep.
 *
 * How a test uses it:
 *   const sshd = await startSshd();                     // in beforeAll; `await sshd.stop()` in afterAll
 *   spawn(sshd.sshArgv[0], [...sshd.sshArgv.slice(1), sshd.host, 'echo', 'hello'])
 *   spawn('rsync', ['-a', '-e', sshd.sshCommand, 'src/', `${sshd.host}:${dst}/`])   // -e CMD, as rsync takes it
 *   mirrorddumbfs copy -e "<sshd.sshCommand>" /l0/ddumbfs <sshd.host>:/l1/replica  // the same for the mirror
 * Name the remote program by its absolute path (e.g. join(REPO_DIR, 'bin', 'mirrorddumbfs'), whose `env node` finds
 * /usr/bin/node): the session's PATH is sshd's default, not the test's. `sessionPids()` lists the processes below the
 * listening sshd now (a connection's sshd processes, the remote shell and its command), to watch a remote side end.
 * `sshArgv` is `ssh -F DIR/ssh_config`: that client config (the system's /etc/ssh/ssh_config and ~/.ssh are then not
 * read) sets the port, the user, the user key only (no agent), the private known_hosts with StrictHostKeyChecking yes,
 * and BatchMode yes, so ssh never prompts and fails instead. `sshCommand` is the same argv as one string for `-e`
 * (DIR never contains whitespace: startSshd refuses such a $TMPDIR).
 *
 * `stop()` (idempotent) freezes sshd and every process below it (the per-connection sshd processes, their shells and
 * the commands they run) with SIGSTOP from the top down, so no new connection or child escapes the snapshot, then
 * SIGKILLs exactly those pids (each identified by pid and start time, so a reused pid is never hit), waits until they
 * are gone, and removes DIR. A process that left the tree on its own (setsid and a double fork) is not found.
 * `stopAllSshd()` stops whatever is still running (afterAll safety net).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const SSHD_BIN = '/usr/sbin/sshd';
export const SSH_BIN = 'ssh';
export const SSH_KEYGEN_BIN = 'ssh-keygen';
/** sshd's privilege-separation directory (Debian's build); sshd refuses to start without it. */
export const SSHD_PRIVSEP_DIR = '/run/sshd';
export const SSHD_HOST = '127.0.0.1';

/** Start-up includes key generation and sshd's own start on a loaded 2-core machine shared by several test runs. */
const SSHD_START_TIMEOUT_MS = 30_000;
/** Another process can take the free port between our close and sshd's bind; try that many ports. */
const SSHD_START_ATTEMPTS = 5;
/** One banner probe: the pre-auth child must fork and write its version line. */
const BANNER_PROBE_TIMEOUT_MS = 5_000;
/** SIGKILLed processes leave at once unless stuck in the kernel (D state); bound the wait anyway. */
const STOP_TIMEOUT_MS = 15_000;
/** Freezing the tree level by level: sshd -> connection -> privsep child -> shell -> command -> ... */
const TREE_DEPTH_MAX = 32;
/** Keep the tail of sshd's log (VERBOSE: a few lines per connection) for failure messages. */
const LOG_KEEP_BYTES = 256 * 1024;
const POLL_INTERVAL_MS = 50;

export interface SshdHandle {
  /** Always 127.0.0.1. */
  readonly host: string;
  readonly port: number;
  /** The login user (the user running the test: root in CI). */
  readonly user: string;
  /** `user@127.0.0.1`: the `[user@]host` part of a remote endpoint. */
  readonly destination: string;
  /** The temporary directory with keys, configs and pid file; removed by stop(). */
  readonly dir: string;
  /** Pid of the listening sshd (the test worker's child). */
  readonly pid: number;
  /** `['ssh', '-F', DIR/ssh_config]`: append the host and the remote command. */
  readonly sshArgv: readonly string[];
  /** `sshArgv` as one string, for rsync's / mirrorddumbfs's `-e CMD`. */
  readonly sshCommand: string;
  /** sshd's log so far (its tail, at most LOG_KEEP_BYTES). */
  stderr(): string;
  /** Pids of the processes now below the listening sshd (connections, their shells and commands). */
  sessionPids(): number[];
  /** Resolves when the listening sshd has exited. */
  readonly exited: Promise<void>;
  /** Kill the sshd and every process below it, wait until they are gone, remove `dir`. Idempotent. */
  stop(): Promise<void>;
}

interface ProcId {
  pid: number;
  /** Field 22 of /proc/PID/stat (clock ticks since boot): with the pid, it names one process. */
  startTime: string;
}

interface ProcStat extends ProcId {
  state: string;
  ppid: number;
}

function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, state: fields[0]!, ppid: Number(fields[1]), startTime: fields[19]! };
}

/** True while `p` is the same, not yet dead process (a zombie or a reused pid counts as gone). */
function isAlive(p: ProcId): boolean {
  const s = readProcStat(p.pid);
  return s !== null && s.startTime === p.startTime && s.state !== 'Z' && s.state !== 'X';
}

function allProcStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readProcStat(Number(name));
    if (s !== null) out.push(s);
  }
  return out;
}

/** The live processes whose parent is one of `parents`. */
function childrenOf(parents: Set<number>): ProcStat[] {
  return allProcStats().filter((s) => parents.has(s.ppid) && s.state !== 'Z' && s.state !== 'X');
}

/** Every live process below `root`, breadth first (a snapshot: the tree may change while it is read). */
function descendantsOf(root: number): ProcStat[] {
  const found: ProcStat[] = [];
  let level = new Set([root]);
  for (let depth = 0; depth < TREE_DEPTH_MAX && level.size > 0; depth++) {
    const kids = childrenOf(level);
    found.push(...kids);
    level = new Set(kids.map((k) => k.pid));
  }
  return found;
}

function signal(p: ProcId, sig: NodeJS.Signals): void {
  if (!isAlive(p)) return;
  try {
    process.kill(p.pid, sig);
  } catch {
    // gone between the check and the kill
  }
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Run a short command; resolves with its stdout, rejects with its stderr on failure. */
function runTool(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', (e) => rej(new Error(`${cmd}: ${e.message} (install openssh-client: scripts/setup.sh)`)));
    child.on('exit', (code, sig) => {
      if (code === 0) res(out);
      else rej(new Error(`${cmd} ${args.join(' ')} failed (${code ?? sig}): ${err.trim()}`));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0). */
async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, SSHD_HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? res(port) : rej(new Error('no port from listen(0)'))));
    });
  });
}

/** Connect to host:port and read the first line: true when it is an SSH-2.0 version banner. */
export function probeSshBanner(host: string, port: number, timeoutMs = BANNER_PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise((res) => {
    let line = '';
    let settled = false;
    const socket = connect({ host, port });
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      res(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (c: Buffer) => {
      line += c.toString('latin1');
      if (line.includes('\n')) finish(line.startsWith('SSH-2.0-'));
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}

/** True when a TCP connection to host:port is accepted (the probe closes it at once). */
export function portAcceptsConnection(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      res(true);
    });
    socket.once('error', () => {
      socket.destroy();
      res(false);
    });
  });
}

function sshdConfigText(dir: string, port: number, user: string): string {
  return [
    '# Written by test/helpers/sshd.ts for one test run; nothing comes from /etc/ssh.',
    `ListenAddress ${SSHD_HOST}:${port}`,
    'AddressFamily inet',
    `HostKey ${join(dir, 'host_ed25519')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    `AllowUsers ${user}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'HostbasedAuthentication no',
    'PermitEmptyPasswords no',
    'PermitRootLogin prohibit-password',
    // the authorized_keys path runs through $TMPDIR (mode 1777), which StrictModes refuses; DIR itself is 0700
    'StrictModes no',
    'UsePAM no',
    'UseDNS no',
    'PermitUserEnvironment no',
    'PermitUserRC no',
    'PermitTTY no',
    'X11Forwarding no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'AllowStreamLocalForwarding no',
    'PermitTunnel no',
    'PrintMotd no',
    'PrintLastLog no',
    'Compression no',
    'LoginGraceTime 30',
    // several test files may open many connections at once (resumed passes, parallel verifies)
    'MaxStartups 64:30:128',
    'MaxSessions 16',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

function sshConfigText(dir: string, port: number, user: string): string {
  return [
    '# Written by test/helpers/sshd.ts: the client side of one throw-away sshd; use with ssh -F this-file.',
    'Host *',
    `  Port ${port}`,
    `  User ${user}`,
    `  IdentityFile ${join(dir, 'user_ed25519')}`,
    '  IdentitiesOnly yes',
    '  IdentityAgent none',
    `  UserKnownHostsFile ${join(dir, 'known_hosts')}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  CheckHostIP no',
    '  UpdateHostKeys no',
    '  HashKnownHosts no',
    '  BatchMode yes',
    '  PreferredAuthentications publickey',
    '  PasswordAuthentication no',
    '  KbdInteractiveAuthentication no',
    '  ConnectTimeout 20',
    '  ConnectionAttempts 1',
    '  ControlMaster no',
    '  ControlPath none',
    '  ForwardAgent no',
    '  ForwardX11 no',
    '  ClearAllForwardings yes',
    '  RequestTTY no',
    '  EscapeChar none',
    '  Compression no',
    '  LogLevel ERROR',
    '',
  ].join('\n');
}

const live = new Set<SshdHandle>();

/**
 * Start a throw-away sshd on 127.0.0.1 (see the file header for what it starts and where).
 * @returns a handle whose `sshArgv` / `sshCommand` reach it as the current user without prompts
 * @throws when /usr/sbin/sshd or ssh-keygen is missing (install openssh-server: scripts/setup.sh), when /run/sshd is
 *   missing and cannot be created, or when sshd does not come up within SSHD_START_TIMEOUT_MS (its log is in the
 *   message); the temporary directory is removed then
 */
export async function startSshd(): Promise<SshdHandle> {
  if (!existsSync(SSHD_BIN)) {
    throw new Error(`${SSHD_BIN} is missing: install openssh-server (scripts/setup.sh does)`);
  }
  if (!existsSync(SSHD_PRIVSEP_DIR)) mkdirSync(SSHD_PRIVSEP_DIR, { mode: 0o755 });
  const user = userInfo().username;
  const dir = await mkdtemp(join(tmpdir(), 'ddfs-sshd-'));
  try {
    if (/\s/.test(dir)) throw new Error(`temporary directory ${JSON.stringify(dir)} has whitespace: sshCommand could not name it`);
    const hostKey = join(dir, 'host_ed25519');
    const userKey = join(dir, 'user_ed25519');
    await Promise.all([
      runTool(SSH_KEYGEN_BIN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'ddfs-test-sshd-host', '-f', hostKey]),
      runTool(SSH_KEYGEN_BIN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'ddfs-test-sshd-user', '-f', userKey]),
    ]);
    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim();
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${userKey}.pub`), { mode: 0o600 });
    const deadline = Date.now() + SSHD_START_TIMEOUT_MS;
    const failures: string[] = [];
    for (let attempt = 0; attempt < SSHD_START_ATTEMPTS; attempt++) {
      const port = await freePort();
      await writeFile(join(dir, 'known_hosts'), `[${SSHD_HOST}]:${port},[localhost]:${port} ${hostPub}\n`, { mode: 0o600 });
      await writeFile(join(dir, 'sshd_config'), sshdConfigText(dir, port, user), { mode: 0o600 });
      await writeFile(join(dir, 'ssh_config'), sshConfigText(dir, port, user), { mode: 0o600 });
      const started = await launch(dir, port, user, deadline);
      if ('handle' in started) return started.handle;
      failures.push(`port ${port}: ${started.reason}`);
      if (!started.retry || Date.now() > deadline) break;
    }
    throw new Error(`sshd did not start:\n${failures.join('\n')}`);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

type LaunchResult = { handle: SshdHandle } | { reason: string; retry: boolean };

/** Spawn sshd on `port` and wait until it serves; on failure the child is gone when this resolves. */
async function launch(dir: string, port: number, user: string, deadline: number): Promise<LaunchResult> {
  const child: ChildProcess = spawn(SSHD_BIN, ['-D', '-e', '-f', join(dir, 'sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => {
    log += c.toString('latin1');
    if (log.length > LOG_KEEP_BYTES) log = log.slice(log.length - LOG_KEEP_BYTES);
  });
  let exitStatus: string | undefined;
  const exited = new Promise<void>((res) => {
    child.on('exit', (code, sig) => {
      exitStatus = `exit ${code ?? sig}`;
      res();
    });
  });
  let spawnError: Error | undefined;
  child.on('error', (e) => {
    spawnError = e;
    exitStatus ??= `spawn error ${e.message}`;
  });
  const listening = `Server listening on ${SSHD_HOST} port ${port}.`;
  let ready = false;
  while (exitStatus === undefined && Date.now() < deadline) {
    if (log.includes(listening) && (await probeSshBanner(SSHD_HOST, port))) {
      ready = true;
      break;
    }
    await sleep(POLL_INTERVAL_MS);
  }
  if (!ready) {
    if (exitStatus === undefined) {
      child.kill('SIGKILL');
      await exited;
      return { reason: `not serving within ${SSHD_START_TIMEOUT_MS} ms; log:\n${log}`, retry: false };
    }
    if (spawnError === undefined) await exited;
    const retry = /Address already in use|Cannot bind any address/.test(log);
    return { reason: `sshd ended (${exitStatus}) before serving; log:\n${log}`, retry };
  }
  const pid = child.pid!;
  const self = readProcStat(pid);
  if (self === null) {
    child.kill('SIGKILL');
    throw new Error(`sshd pid ${pid} vanished right after serving; log:\n${log}`);
  }
  const sshArgv = [SSH_BIN, '-F', join(dir, 'ssh_config')];
  let stopping: Promise<void> | null = null;
  const handle: SshdHandle = {
    host: SSHD_HOST,
    port,
    user,
    destination: `${user}@${SSHD_HOST}`,
    dir,
    pid,
    sshArgv,
    sshCommand: sshArgv.join(' '),
    stderr: () => log,
    sessionPids: () => (exitStatus === undefined ? descendantsOf(pid).map((p) => p.pid) : []),
    exited,
    stop: () => {
      stopping ??= (async () => {
        try {
          await killTree(self, () => exitStatus !== undefined);
        } finally {
          live.delete(handle);
          await rm(dir, { recursive: true, force: true });
        }
      })();
      return stopping;
    },
  };
  live.add(handle);
  return { handle };
}

/**
 * Freeze `root` and everything below it top down (SIGSTOP: a stopped process neither forks nor accepts), SIGKILL
 * exactly the frozen set, wait until all are gone.
 * @throws when a process survives SIGKILL for STOP_TIMEOUT_MS (its pid is named)
 */
async function killTree(root: ProcId, rootGone: () => boolean): Promise<void> {
  const end = Date.now() + STOP_TIMEOUT_MS;
  const frozen: ProcId[] = [];
  if (!rootGone()) {
    let level: ProcId[] = [root];
    for (let depth = 0; depth <= TREE_DEPTH_MAX && level.length > 0; depth++) {
      for (const p of level) signal(p, 'SIGSTOP');
      // kill(2) only queues the signal: a process in the middle of fork() may still finish it, so read a level's
      // children only once each of its processes is really stopped (state T) or gone
      await waitUntil(() => level.every((p) => !isAlive(p) || readProcStat(p.pid)?.state === 'T'), end, level, 'SIGSTOP');
      frozen.push(...level);
      level = childrenOf(new Set(level.map((p) => p.pid)));
    }
  }
  for (const p of frozen) signal(p, 'SIGKILL');
  await waitUntil(() => frozen.every((p) => (p.pid === root.pid ? rootGone() : !isAlive(p))), end, frozen, 'SIGKILL');
}

async function waitUntil(pred: () => boolean, deadline: number, procs: ProcId[], what: string): Promise<void> {
  while (!pred()) {
    if (Date.now() > deadline) {
      throw new Error(`sshd stop: ${what} not obeyed within ${STOP_TIMEOUT_MS} ms by pids ${procs.map((p) => p.pid).join(' ')}`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Stop every sshd startSshd started and that is still running (afterAll safety net). */
export async function stopAllSshd(): Promise<void> {
  await Promise.all([...live].map((h) => h.stop()));
}
