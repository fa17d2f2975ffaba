/**
 * Real mounts for FUSE integration tests (style.md "FUSE integration"):
 * - the daemon always runs in a child process (`node bin/ddumbfs MNT -o parent=P -f`), never in the test worker:
 *   a synchronous call on the mount from the process serving it would deadlock;
 * - `unmount()` does `fusermount -u` with a timeout and waits for the child; if that fails it kills only that pid
 *   and lazily unmounts;
 * - every wait is for an event (the "mounted on" line, the child's exit); its limit (helpers/timeouts.ts) only ends
 *   a hang, so the helpers behave the same on a slow or loaded machine;
 * - `unmountAll()` (for afterAll) cleans up whatever a test left mounted.
 * Needs a built tree (`npx tsc -p tsconfig.json`, done by scripts/setup.sh) and root with /dev/fuse.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run as runCommand } from './run.js';
import { COMMAND_TIMEOUT_MS, EXIT_TIMEOUT_MS, MOUNT_TIMEOUT_MS, UNMOUNT_TIMEOUT_MS } from './timeouts.js';


export const REPO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DDUMBFS_BIN = join(REPO_DIR, 'bin', 'ddumbfs');
export const MKDDUMBFS_BIN = join(REPO_DIR, 'bin', 'mkddumbfs');

export interface MountedVolume {
  pid: number;
  parentDir: string;
  mountDir: string;
  /** The daemon's stderr so far. */
  stderr(): string;
  /** Resolves with the daemon's exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  /** fusermount -u, wait for the daemon; fallback: kill that pid + umount -l. Idempotent. */
  unmount(): Promise<void>;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The fs type mounted on `mountDir` (e.g. "fuse.ddumbfs"), or null. */
export function mountTypeAt(mountDir: string): string | null {
  const target = resolve(mountDir);
  let type: string | null = null;
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length >= 3 && unescapeMountField(f[1]!) === target) type = f[2]!;
  }
  return type;
}

export function isMounted(mountDir: string): boolean {
  return mountTypeAt(mountDir) !== null;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Poll `pred` every 50 ms until true. @returns false on timeout */
export async function waitFor(pred: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

/**
 * Run a command; never throws. A command still running after `timeoutMs` (default COMMAND_TIMEOUT_MS) is killed.
 * A thin shape over run() (helpers/run.ts), kept for its many callers: code is 1 for a command that could not start
 * or ended by a signal, and stdout/stderr are decoded as UTF-8.
 */
export async function sh(cmd: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await runCommand(cmd, args, { timeoutMs: options.timeoutMs, env: options.env, encoding: 'utf8' });
    return { code: r.code ?? 1, stdout: r.stdout, stderr: r.stderr || (r.signal !== null ? `killed by ${r.signal}` : '') };
  } catch (err) {
    return { code: 1, stdout: '', stderr: String(err) };
  }
}

function checkBuilt(): void {
  if (!existsSync(join(REPO_DIR, 'dist', 'cli', 'ddumbfs.js'))) {
    throw new Error('dist/ is not built: run scripts/setup.sh (or npx tsc -p tsconfig.json) first');
  }
}

/** mkddumbfs into an existing directory `dir` (spec §12 CLI). */
export async function makeVolume(dir: string, options: { blockSize: number | string; size: number | string; hash?: string }): Promise<void> {
  checkBuilt();
  const args = [MKDDUMBFS_BIN, '-s', String(options.size), '-B', String(options.blockSize)];
  if (options.hash) args.push('-H', options.hash);
  args.push(dir);
  const r = await sh(process.execPath, args);
  if (r.code !== 0) throw new Error(`mkddumbfs ${dir} failed (${r.code}): ${r.stderr}`);
}

const live = new Set<MountedVolume>();

/**
 * Mount `parentDir` on `mountDir` with a foreground daemon in a child process; resolves once the file system is
 * served (the daemon logged "mounted on" and the mount is in /proc/self/mounts). `extraOpts` are more -o options
 * (e.g. ['check', 'reclaim=90']).
 * @throws when the daemon exits first or the mount does not appear in time (the child is then killed)
 */
export async function mountVolume(parentDir: string, mountDir: string, extraOpts: string[] = []): Promise<MountedVolume> {
  checkBuilt();
  const opts = [`parent=${parentDir}`, ...extraOpts].join(',');
  const child: ChildProcess = spawn(process.execPath, [DDUMBFS_BIN, mountDir, '-o', opts, '-f'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let errText = '';
  child.stderr?.on('data', (c: Buffer) => {
    errText += c.toString();
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => {
    child.on('exit', (code) => {
      exitCode = code;
      res(code);
    });
  });
  // served = the daemon got libfuse's INIT (its "mounted on" line), not only mount(2) (already in /proc/mounts)
  const served = (): boolean => / filesystem .* mounted on /.test(errText) && mountTypeAt(mountDir) === 'fuse.ddumbfs';
  const mounted = await waitFor(() => exitCode !== undefined || served(), MOUNT_TIMEOUT_MS);
  if (exitCode !== undefined || !mounted) {
    if (exitCode === undefined) child.kill('SIGKILL');
    throw new Error(`ddumbfs did not mount ${mountDir} (exit ${String(exitCode)}): ${errText}`);
  }
  let done: Promise<void> | null = null;
  const mv: MountedVolume = {
    pid: child.pid!,
    parentDir,
    mountDir,
    stderr: () => errText,
    exited,
    unmount: () => {
      done ??= (async () => {
        if (isMounted(mountDir)) await sh('fusermount', ['-u', mountDir], { timeoutMs: UNMOUNT_TIMEOUT_MS });
        const timedOut = await new Promise<boolean>((res) => {
          const timer = setTimeout(() => res(true), EXIT_TIMEOUT_MS);
          void exited.then(() => {
            clearTimeout(timer);
            res(false);
          });
        });
        if (timedOut && exitCode === undefined) {
          child.kill('SIGKILL');
          await exited;
        }
        if (isMounted(mountDir)) await sh('umount', ['-l', mountDir], { timeoutMs: UNMOUNT_TIMEOUT_MS });
        live.delete(mv);
      })();
      return done;
    },
  };
  live.add(mv);
  return mv;
}

/** Unmount everything mountVolume mounted and that is still up (afterAll safety net). */
export async function unmountAll(): Promise<void> {
  await Promise.all([...live].map((m) => m.unmount()));
}
