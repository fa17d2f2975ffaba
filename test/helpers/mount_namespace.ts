/**
 * A private mount namespace for tests that run mount(8), umount(8) or fstab lines: a `sleep` started by
 * `unshare -m --propagation private` keeps it alive, every command runs in it through `nsenter`, and what it mounts
 * is seen nowhere else (read from outside through /proc/PID/mounts and /proc/PID/root). `close()` lazily unmounts
 * what is still mounted on the given mount points, kills the daemons whose argv names one of them, then the holder:
 * only processes of this test. Needs root (unshare, nsenter).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { waitFor } from './mount.js';
import { run } from './run.js';
import { EXIT_TIMEOUT_MS } from './timeouts.js';

export interface MountNamespace {
  holder: ChildProcess;
  pid: number;
  /** Run a command inside the namespace (the environment is `env`, else this process's). */
  run(cmd: string, args: string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The fs type and options mounted on `dir` in the namespace (the last mount there), or null. */
  mountAt(dir: string): { type: string; options: string } | null;
  /** `p` as seen from inside the namespace (through a mount there). */
  inside(p: string): string;
  /** umount -l what is mounted on `mountPoints` in the namespace, kill their daemons, then the holder. */
  close(mountPoints: string[]): Promise<void>;
}

/** PIDs of processes whose argv has `mountDir` as one argument (the daemons serving it). */
export function daemonsOf(mountDir: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(mountDir)) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Start a private mount namespace; resolves once its holder runs in it. */
export async function openMountNamespace(): Promise<MountNamespace> {
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '100000'], { stdio: 'ignore' });
  const pid = holder.pid!;
  // unshare execs sleep in the new namespace: ready once its mount namespace differs from ours
  const ours = fs.readlinkSync('/proc/self/ns/mnt');
  const ready = await waitFor(() => {
    try {
      return fs.readlinkSync(`/proc/${pid}/ns/mnt`) !== ours && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep');
    } catch {
      return false;
    }
  }, EXIT_TIMEOUT_MS);
  expect(ready).toBe(true);
  const ns: MountNamespace = {
    holder,
    pid,
    run: (cmd, args, options = {}) =>
      run('nsenter', ['-t', String(pid), '-m', '--', cmd, ...args], { encoding: 'utf8', env: options.env, timeoutMs: options.timeoutMs }),
    mountAt: (dir) => {
      let found: { type: string; options: string } | null = null;
      for (const line of fs.readFileSync(`/proc/${pid}/mounts`, 'utf8').split('\n')) {
        const f = line.split(' ');
        if (f.length >= 4 && f[1] === dir) found = { type: f[2]!, options: f[3]! };
      }
      return found;
    },
    inside: (p) => path.join(`/proc/${pid}/root`, p),
    close: async (mountPoints) => {
      for (const mnt of mountPoints) {
        if (ns.mountAt(mnt) !== null) await ns.run('umount', ['-l', mnt]);
      }
      holder.kill('SIGKILL');
      for (const mnt of mountPoints) {
        for (const daemon of daemonsOf(mnt)) {
          try {
            process.kill(daemon, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    },
  };
  return ns;
}
