/**
 * The volume lock (volume/lock.ts): exclusion in one process and across processes, the holder named, stale lock
 * files replaced (kill -9 of the holder, dead pid, other boot), a live holder named only in the file refused, and a
 * lock file that is a symlink, a FIFO or a directory refused and left alone. The child holders import the compiled
 * dist/volume/lock.js: build first (npx tsc -p tsconfig.json).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DdfsError } from '../errors.js';
import { LOCK_FILE } from '../format/layout.js';
import { parseLockRecord, renderLockRecord } from '../format/lock_record.js';
import { bootId, processStartTicks } from '../io/exclusive_lock.js';
import { readVolumeLockHolder, takeVolumeLock } from './lock.js';
import { kill9, killLockHolders, startLockHolder } from '../../test/helpers/lock_holder.js';


let work: string;
let counter = 0;
const children: ChildProcess[] = [];

function freshParent(): string {
  const dir = path.join(work, `p${counter++}`);
  fs.mkdirSync(dir);
  return dir;
}

async function lockedError(p: Promise<unknown>): Promise<DdfsError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DdfsError);
    return err as DdfsError;
  }
  throw new Error('the lock was taken, expected a refusal');
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-lock-'));
});

afterEach(async () => {
  for (const c of children.splice(0)) await kill9(c);
  await killLockHolders();
});

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

describe('volume lock', () => {
  it('one holder at a time in a process; the lock file names the holder and goes on release', async () => {
    const parent = freshParent();
    const lock = await takeVolumeLock(parent, 'fsckddumbfs');
    const lockPath = path.join(parent, LOCK_FILE);
    expect(lock.lockPath).toBe(lockPath);
    const record = parseLockRecord(fs.readFileSync(lockPath, 'latin1'));
    expect(record).toMatchObject({ tool: 'fsckddumbfs', pid: process.pid, startTicks: processStartTicks(process.pid) });
    const err = await lockedError(takeVolumeLock(parent, 'cpddumbfs'));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain(`fsckddumbfs (pid ${process.pid}`);
    expect(err.message).not.toContain('\n');
    // a path inside a bind mount or via a symlink names the same lock: here, a symlink to the parent
    const alias = path.join(work, `alias${counter++}`);
    fs.symlinkSync(parent, alias);
    expect((await lockedError(takeVolumeLock(alias, 'x'))).code).toBe('LOCKED');
    expect(await readVolumeLockHolder(parent)).toMatchObject({ tool: 'fsckddumbfs', pid: process.pid });
    await lock.release();
    await lock.release();
    expect(fs.existsSync(lockPath)).toBe(false);
    expect(await readVolumeLockHolder(parent)).toBeNull();
    const again = await takeVolumeLock(parent, 'cpddumbfs');
    await again.release();
  });

  it('a holder in another process is named; after its kill -9 the lock is free again', async () => {
    const parent = freshParent();
    const child = await startLockHolder(parent);
    const err = await lockedError(takeVolumeLock(parent, 'fsckddumbfs'));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain(`holder (pid ${child.pid}`);
    expect(await readVolumeLockHolder(parent)).toMatchObject({ tool: 'holder', pid: child.pid });
    await kill9(child);
    // the dead holder's file is still there, stale
    expect(parseLockRecord(fs.readFileSync(path.join(parent, LOCK_FILE), 'latin1'))?.pid).toBe(child.pid);
    expect(await readVolumeLockHolder(parent)).toBeNull();
    const lock = await takeVolumeLock(parent, 'fsckddumbfs');
    expect(parseLockRecord(fs.readFileSync(path.join(parent, LOCK_FILE), 'latin1'))?.pid).toBe(process.pid);
    await lock.release();
  });

  it('a stale lock file is replaced: a pid with another start time, another boot, garbage', async () => {
    const self = processStartTicks(1);
    expect(self).not.toBeNull();
    const boot = bootId() ?? '-';
    const stale = [
      renderLockRecord({ tool: 'ddumbfs', pid: 1, startTicks: `${BigInt(self!) + 1n}`, bootId: boot, time: '2026-01-01T00:00:00.000Z' }),
      renderLockRecord({ tool: 'ddumbfs', pid: 1, startTicks: self!, bootId: '00000000-0000-0000-0000-000000000000', time: '2026-01-01T00:00:00.000Z' }),
      '',
      'half a rec',
    ];
    for (const text of stale) {
      const parent = freshParent();
      fs.writeFileSync(path.join(parent, LOCK_FILE), text);
      const lock = await takeVolumeLock(parent, 'mkddumbfs');
      expect(parseLockRecord(fs.readFileSync(path.join(parent, LOCK_FILE), 'latin1'))?.tool, JSON.stringify(text)).toBe('mkddumbfs');
      await lock.release();
    }
  });

  it('a live holder named only in the lock file (another network namespace) is refused and named', async () => {
    const parent = freshParent();
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(sleeper);
    const start = processStartTicks(sleeper.pid!);
    expect(start).not.toBeNull();
    const text = renderLockRecord({ tool: 'ddumbfs', pid: sleeper.pid!, startTicks: start!, bootId: bootId() ?? '-', time: '2026-01-01T00:00:00.000Z' });
    fs.writeFileSync(path.join(parent, LOCK_FILE), text);
    const err = await lockedError(takeVolumeLock(parent, 'fsckddumbfs'));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain(`ddumbfs (pid ${sleeper.pid}`);
    expect(fs.readFileSync(path.join(parent, LOCK_FILE), 'latin1')).toBe(text);
    // the refusal released the socket: once the holder is gone the lock is free
    await kill9(sleeper);
    const lock = await takeVolumeLock(parent, 'fsckddumbfs');
    await lock.release();
  });

  it('a lock file that is a symlink, a FIFO or a directory is refused and left alone', async () => {
    const cases: Array<[string, (p: string) => void]> = [
      ['symlink', (p) => {
        fs.writeFileSync(path.join(work, `target${counter}`), 'precious\n');
        fs.symlinkSync(path.join(work, `target${counter}`), p);
      }],
      ['dangling symlink', (p) => fs.symlinkSync(path.join(work, 'nowhere', 'x'), p)],
      ['fifo', (p) => expect(spawnSync('mkfifo', [p]).status).toBe(0)],
      ['directory', (p) => fs.mkdirSync(p)],
    ];
    for (const [what, make] of cases) {
      const parent = freshParent();
      const lockPath = path.join(parent, LOCK_FILE);
      make(lockPath);
      const before = fs.lstatSync(lockPath);
      const err = await lockedError(takeVolumeLock(parent, 'fsckddumbfs'));
      expect(err.code, what).toBe('INVALID');
      expect(err.message, what).toContain(lockPath);
      const after = fs.lstatSync(lockPath);
      expect([after.ino, after.mode], what).toEqual([before.ino, before.mode]);
      expect(fs.readdirSync(parent), what).toEqual([LOCK_FILE]);
      if (what === 'symlink') expect(fs.readFileSync(lockPath, 'utf8')).toBe('precious\n');
      // refused, yet nothing held: another taker gets the same answer, not LOCKED
      expect((await lockedError(takeVolumeLock(parent, 'x'))).code, what).toBe('INVALID');
    }
  });

  it('a missing parent directory is NOT_FOUND', async () => {
    expect((await lockedError(takeVolumeLock(path.join(work, 'missing'), 'x'))).code).toBe('NOT_FOUND');
  });
});
