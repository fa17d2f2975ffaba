/**
 * A child process that holds a volume lock (the compiled dist/volume/lock.js, so build first) until it is killed:
 * for the tests that a second taker is refused and that a kill -9 frees the lock. Every child started here is
 * remembered; `killLockHolders()` in afterEach/afterAll ends the ones still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { REPO_DIR } from './mount.js';

const DIST_LOCK = path.join(REPO_DIR, 'dist', 'volume', 'lock.js');
const holders: ChildProcess[] = [];

/** Start a child that takes the lock of `parent` as tool 'holder' (`shared`: takeSharedVolumeLock); resolves once it holds it. */
export async function startLockHolder(parent: string, options: { shared?: boolean } = {}): Promise<ChildProcess> {
  const take = options.shared ? 'takeSharedVolumeLock' : 'takeVolumeLock';
  const script = `import(${JSON.stringify(DIST_LOCK)}).then(async (m) => { await m.${take}(${JSON.stringify(parent)}, 'holder');` +
    ` process.stdout.write('held\\n'); setInterval(() => {}, 1000); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  holders.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('held')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`holder exited early (${code})`)));
  });
  return child;
}

/** SIGKILL `child` (if it still runs) and wait for its exit. */
export async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** kill -9 every holder started here that still runs. */
export async function killLockHolders(): Promise<void> {
  for (const c of holders.splice(0)) await kill9(c);
}
