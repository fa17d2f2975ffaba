/**
 * Child processes of the tests (issue 6 §4): test/helpers/run.ts runs a command without blocking the vitest worker,
 * with its exit status, signal and output as bytes; and no test starts a child process synchronously any more
 * (a worker blocked for more than vitest's internal 60 s fails the run with "Timeout calling onTaskUpdate",
 * vitest-dev/vitest#8164, although every test passed).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { run, runOk } from './helpers/run.js';

const ROOT = path.resolve(__dirname, '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-child-run-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('run()', () => {
  it('does not block the worker: the command waits for a file that only this worker, on a later turn, writes', async () => {
    const flag = path.join(work, 'flag');
    const pending = run('sh', ['-c', 'while [ ! -e "$1" ]; do sleep 0.05; done; echo seen', 'sh', flag], { encoding: 'utf8' });
    // a synchronous runner would never get here before its command ended, and its command waits for this
    await new Promise((resolve) => setTimeout(resolve, 0));
    fs.writeFileSync(flag, '');
    const r = await pending;
    expect(r).toEqual({ code: 0, signal: null, timedOut: false, stdout: 'seen\n', stderr: '' });
  });

  it('gives input, cwd and env to the command and returns stdout/stderr as bytes, never decoded', async () => {
    const bytes = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x0a]); // "bad\xff\xfe\n": not UTF-8
    const r = await run('sh', ['-c', 'cat; pwd >&2; printf %s "$RUN_TEST_VAR" >&2; exit 3'], {
      input: bytes, cwd: work, env: { ...process.env, RUN_TEST_VAR: 'v1' },
    });
    expect(r.code).toBe(3);
    expect(r.signal).toBeNull();
    expect(Buffer.isBuffer(r.stdout)).toBe(true);
    expect(r.stdout.equals(bytes)).toBe(true);
    expect(r.stderr.toString('utf8')).toBe(`${fs.realpathSync(work)}\nv1`);
  });

  it('kills a command that outlives timeoutMs and says so', async () => {
    const r = await run('sleep', ['600'], { timeoutMs: 200 });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.code).toBeNull();
  });

  it('rejects a command that cannot be started; runOk throws naming a command that fails', async () => {
    await expect(run(path.join(work, 'no-such-command'), [])).rejects.toThrow(/ENOENT/);
    await expect(runOk('sh', ['-c', 'echo why >&2; exit 4'])).rejects.toThrow(/^sh -c echo why >&2; exit 4: exit 4: why/);
    expect((await runOk('printf', ['ok'])).toString()).toBe('ok');
  });
});

/**
 * Synchronous child processes that stay, each sub-millisecond work on an idle machine and no bin/ command:
 * `git rev-parse` / `git check-ignore` (repo_hygiene), a python3 statvfs one-liner (fs_read_only), mkfifo (lock).
 */
const KEPT_SYNC: Record<string, number> = {
  'test/repo_hygiene.test.ts': 2,
  'test/fs_read_only.test.ts': 1,
  'src/volume/lock.test.ts': 1,
};

function testSources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'fixtures') out.push(...testSources(rel));
    } else if (e.name.endsWith('.ts') && (dir.startsWith('test') || e.name.endsWith('.test.ts'))) {
      out.push(rel);
    }
  }
  return out;
}

describe('no test blocks its worker on a child process', () => {
  it(`spawnSync / execSync / execFileSync / cpSync appear only where kept (${Object.keys(KEPT_SYNC).join(', ')})`, () => {
    const found: Record<string, number> = {};
    for (const rel of [...testSources('test'), ...testSources('src')]) {
      const calls = fs.readFileSync(path.join(ROOT, rel), 'utf8').match(/\b(spawnSync|execSync|execFileSync|cpSync)\(/g);
      if (calls) found[rel] = calls.length;
    }
    expect(found).toEqual(KEPT_SYNC);
  });
});
