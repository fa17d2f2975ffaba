/**
 * The one way a test runs a child command: asynchronously. A synchronous call (spawnSync, execFileSync, a recursive
 * cpSync) blocks the vitest worker; one that lasts more than vitest's internal, unconfigurable 60 s leaves the worker
 * unable to answer vitest's RPC, and the run exits 1 ("Timeout calling onTaskUpdate", vitest-dev/vitest#8164)
 * although every test passed. On a machine ten times slower, any command of a few seconds is such a risk.
 *
 * Invariants: run() never throws for a command that starts and ends (a non-zero exit, a signal or a timeout is in the
 * result); it rejects only when the command cannot be started (ENOENT...). Output is collected in full, as bytes.
 */
import { spawn } from 'node:child_process';
import { COMMAND_TIMEOUT_MS } from './timeouts.js';

/** Options of run(). */
export interface RunOptions {
  /** Bytes (or a string, written as UTF-8) given on standard input; stdin is closed after it (empty by default). */
  input?: Buffer | string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The command is sent SIGKILL after this long (default COMMAND_TIMEOUT_MS): a hang detector, not a measure. */
  timeoutMs?: number;
}

/** What a finished command did; stdout/stderr are Buffers, or strings decoded as UTF-8 with `encoding: 'utf8'`. */
export interface RunResult<T extends Buffer | string> {
  /** Exit status; null when the command ended by a signal. */
  code: number | null;
  /** The signal that ended the command (SIGKILL after a timeout), else null. */
  signal: NodeJS.Signals | null;
  /** True when the command was killed because it ran longer than `timeoutMs`. */
  timedOut: boolean;
  stdout: T;
  stderr: T;
}

/**
 * Run `cmd` with `args` (no shell) and wait for it without blocking the worker.
 * @returns exit code or signal and the full output; Buffers unless `encoding: 'utf8'`
 * @throws Error when the command cannot be started (spawn 'error')
 */
export function run(cmd: string, args: readonly string[], options: RunOptions & { encoding: 'utf8' }): Promise<RunResult<string>>;
export function run(cmd: string, args: readonly string[], options?: RunOptions & { encoding?: 'buffer' }): Promise<RunResult<Buffer>>;
export function run(cmd: string, args: readonly string[], options: RunOptions & { encoding?: 'utf8' | 'buffer' } = {}): Promise<RunResult<Buffer | string>> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? COMMAND_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err);
      const utf8 = options.encoding === 'utf8';
      resolve({ code, signal, timedOut, stdout: utf8 ? stdout.toString('utf8') : stdout, stderr: utf8 ? stderr.toString('utf8') : stderr });
    });
    // a command that exits without reading its input must not fail the run with EPIPE
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? Buffer.alloc(0));
  });
}

/**
 * run() for a command that must succeed (cp -a, chmod, diff -r, mknod...).
 * @returns its standard output as bytes
 * @throws Error naming the command, its exit status or signal and its stderr when it does not exit 0
 */
export async function runOk(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<Buffer> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.timedOut ? 'timed out' : r.signal ?? `exit ${r.code}`}: ${r.stderr.toString('utf8')}`);
  }
  return r.stdout;
}
