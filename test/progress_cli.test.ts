/**
 * Progress and Ctrl-C of the long commands (issue 10), end to end:
 * - through a pseudo-terminal (util-linux `script -qfec CMD /dev/null`, which puts the command on a pty and copies
 *   what it writes to our stdout): the spinner line appears on a terminal, never in a pipe; `-p` gives plain lines
 *   without terminal codes; DDUMBFS_PROGRESS_INTERVAL_MS=0 shows every update, so what is seen does not depend on
 *   the machine's speed;
 * - Ctrl-C: a real ^C typed on the pty (script forwards its stdin, the line discipline sends SIGINT), or SIGINT to a
 *   child in a pipe: exit 130, the message says what was copied, the volume is fsck-clean afterwards. The copies
 *   read from a FIFO or a pipe the test feeds, and the interrupt is sent once the command reported every byte fed,
 *   so where it stops is exact; fsck -R is interrupted in a phase of a sparse 1 GiB block file (seconds of hashing);
 * - fsck's safe points in process (runFsck with an AbortSignal aborted from its own progress callback): before
 *   writing nothing changes, once fixing files the repair completes, the pack stops while copying blocks.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, truncateSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DdfsError } from '../src/errors.js';
import { runFsck } from '../src/fsck/run.js';
import { Logger } from '../src/util/log.js';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { makeTempDir, removeTempDirs } from './helpers/fixtures.js';
import { run, runOk } from './helpers/run.js';
import { COMMAND_TIMEOUT_MS, TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CP = join(REPO, 'bin', 'cpddumbfs');
const FSCK = join(REPO, 'bin', 'fsckddumbfs');
const MiB = 1024 * 1024;
/** Every update shown (progress_view.ts). */
const EVERY_UPDATE = { ...process.env, DDUMBFS_PROGRESS_INTERVAL_MS: '0' };
/** ESC: any terminal code. */
const ESC = '\u001b';

afterAll(removeTempDirs);

/** A fresh volume of `size` bytes (4 KiB blocks, TIGER) holding `files`; returns its parent. */
async function newVolume(size: number, files: Record<string, Buffer> = {}): Promise<string> {
  const parent = join(await makeTempDir('ddfs-progress-'), 'vol');
  mkdirSync(parent);
  await createVolume(parent, { partitionSize: size, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  const vol = await Volume.open(parent);
  try {
    for (const [rel, data] of Object.entries(files)) {
      const f = await vol.openFile(vol.ufsPath(rel), { create: true, mode: 0o644 });
      await f.write(0, data);
      await f.close();
    }
  } finally {
    await vol.close();
  }
  return parent;
}

/** Single-quoted for sh (the temp paths hold no quote). */
function sh(s: string): string {
  return `'${s}'`;
}

interface TtyResult {
  code: number | null;
  /** Everything the command wrote to the terminal (stdout and stderr), as latin1 text. */
  out: string;
}

/**
 * Run `args` on a pseudo-terminal through script(1), with DDUMBFS_PROGRESS_INTERVAL_MS=0. `onOutput` sees the
 * output so far after each chunk and may return a string to type on the terminal (e.g. ^C), once.
 */
function runTty(args: string[], onOutput?: (out: string) => string | null): Promise<TtyResult> {
  const cmd = `exec env DDUMBFS_PROGRESS_INTERVAL_MS=0 ${[process.execPath, ...args].map(sh).join(' ')}`;
  return new Promise((resolvePromise, reject) => {
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let typed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (!typed && onOutput) {
        const keys = onOutput(out);
        if (keys !== null) {
          typed = true;
          child.stdin.write(keys);
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString('latin1');
    });
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, out });
    });
  });
}

/** fsckddumbfs -c: exit status and the last stdout line (the filesystem status). */
async function check(parent: string): Promise<{ code: number | null; status: string }> {
  const r = await run(process.execPath, [FSCK, '-c', parent], { encoding: 'utf8' });
  return { code: r.code, status: r.stdout.trim().split('\n').pop() ?? '' };
}

/** The bytes of a UFS file, downloaded with cpddumbfs. */
async function download(parent: string, rel: string): Promise<Buffer> {
  return runOk(process.execPath, [CP, join(parent, 'ddfsroot', rel), '-']);
}

describe('cpddumbfs progress', () => {
  it('on a terminal: a spinner line with bytes, rate and ETA; in a pipe: nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB);
    const dir = await makeTempDir('ddfs-progress-src-');
    const src = join(dir, 'src');
    const data = randomBytes(6 * MiB + 123);
    await runOk('sh', ['-c', 'cat > "$1"', 'sh', src], { input: data });

    const tty = await runTty([CP, src, join(parent, 'ddfsroot', 'a')]);
    expect(tty.code, tty.out).toBe(0);
    expect(tty.out).toMatch(/upload: \d+\.\d+ MiB of 6\.00 MiB \(\d+%\), [\d.]+ [KMG]?i?B\/s, ETA \d+s/);
    expect(tty.out).toContain(`${ESC}[`);

    const down = await runTty([CP, join(parent, 'ddfsroot', 'a'), join(dir, 'back')]);
    expect(down.code, down.out).toBe(0);
    expect(down.out).toMatch(/download: \d+\.\d+ MiB of 6\.00 MiB/);
    expect(readFileSync(join(dir, 'back')).equals(data)).toBe(true);

    const piped = await run(process.execPath, [CP, src, join(parent, 'ddfsroot', 'b')], { encoding: 'utf8', env: EVERY_UPDATE });
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe('');
  });

  it('-p: plain lines without terminal codes, the last one at 100%', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB);
    const data = randomBytes(3 * MiB);
    const r = await run(process.execPath, [CP, '-p', '-', join(parent, 'ddfsroot', 'a')], { input: data, encoding: 'utf8', env: EVERY_UPDATE });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const l of lines) expect(l).toMatch(/^cpddumbfs: progress upload: [\d.]+ [KMG]?i?B(, [\d.]+ [KMG]?i?B\/s)?$/);
    expect(lines.at(-1)).toMatch(/upload: 3\.00 MiB, /);
    expect(r.stderr).not.toContain(ESC);
    // on a terminal too: -p means plain lines
    const tty = await runTty([CP, '-p', join(parent, 'ddfsroot', 'a'), '/dev/null']);
    expect(tty.code, tty.out).toBe(0);
    expect(tty.out).toContain('cpddumbfs: progress download: 3.00 MiB of 3.00 MiB (100%)');
    expect(tty.out).not.toContain(ESC);
  });

  it('Ctrl-C on a terminal: exit 130, the bytes copied are said and kept, the volume is fsck-clean', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB);
    const fifo = join(await makeTempDir('ddfs-progress-fifo-'), 'fifo');
    await runOk('mkfifo', [fifo]);
    const fed = Buffer.alloc(2 * MiB, 7);
    const writer = createWriteStream(fifo);
    writer.write(fed); // the FIFO stays open: the copy then waits for more
    const tty = await runTty([CP, fifo, join(parent, 'ddfsroot', 't')], (out) => (out.includes('upload: 2.00 MiB') ? '\u0003' : null));
    writer.destroy();
    expect(tty.code, tty.out).toBe(130);
    expect(tty.out).toContain('cpddumbfs: interrupted: copied 2097152 bytes (2.00 MiB) into');
    expect(tty.out).toContain('the volume is consistent');
    expect(await check(parent)).toEqual({ code: 0, status: 'Filesystem status        : OK' });
    expect((await download(parent, 't')).equals(fed)).toBe(true);
  });

  it('SIGINT in a pipe, while stdin waits: exit 130 and the message; an upload over an old file keeps what was copied', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB, { old: randomBytes(5 * MiB) });
    const child = spawn(process.execPath, [CP, '-p', '-', join(parent, 'ddfsroot', 'old')], { env: EVERY_UPDATE, stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    const fed = randomBytes(MiB);
    const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    child.stderr.on('data', (d: Buffer) => {
      const before = err;
      err += d.toString();
      if (!before.includes('upload: 1.00 MiB') && err.includes('upload: 1.00 MiB')) child.kill('SIGINT');
    });
    child.stdin.write(fed);
    const code = await done;
    expect(code, err).toBe(130);
    expect(err).toContain('cpddumbfs: interrupted: copied 1048576 bytes (1.00 MiB) into');
    expect(await check(parent)).toEqual({ code: 0, status: 'Filesystem status        : OK blocks can be reclaimed' });
    expect((await download(parent, 'old')).equals(fed)).toBe(true);
  });
});

describe('fsckddumbfs progress and Ctrl-C', () => {
  it('on a terminal: phases with done/total and ETA; in a pipe without -p: no progress', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB, { a: randomBytes(4 * MiB), b: randomBytes(2 * MiB) });
    const tty = await runTty([FSCK, '-C', parent]);
    expect(tty.code, tty.out).toBe(0);
    expect(tty.out).toMatch(/check index: \d+\/\d+ nodes \(\d+%\)/);
    expect(tty.out).toMatch(/check block hash: \d+\/1536 blocks \(\d+%\)(, \d+ blocks\/s)?, ETA (\d+s|\?)/);
    expect(tty.out).toContain(`${ESC}[`);
    const piped = await run(process.execPath, [FSCK, '-C', parent], { encoding: 'utf8', env: EVERY_UPDATE });
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toContain('progress');
    expect(piped.stderr + piped.stdout).not.toContain(ESC);
    const plain = await run(process.execPath, [FSCK, '-C', '-p', parent], { encoding: 'utf8', env: EVERY_UPDATE });
    expect(plain.stderr).toMatch(/^\d\d:\d\d:\d\d INF progress check block hash: 1536\/1536 blocks \(100%\), \d+ blocks\/s, ETA 0s$/m);
    expect(plain.stderr).not.toContain(ESC);
  });

  it('Ctrl-C during -R: exit 130, nothing changed, no marker left, the volume checks clean', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(1024 * MiB, { a: randomBytes(3 * MiB) });
    // -R hashes every block of the block file: a sparse 1 GiB one is seconds of work
    truncateSync(join(parent, 'ddfsblocks'), 1024 * MiB);
    const index = readFileSync(join(parent, 'ddfsidx'));
    const tty = await runTty([FSCK, '-R', parent], (out) => (/read and hash blocks: [1-9]\d*\//.test(out) ? '\u0003' : null));
    expect(tty.code, tty.out).toBe(130);
    expect(tty.out).toMatch(/WAR interrupted during read and hash blocks \(\d+\/262142 blocks \(\d+%\).*\): the rebuild did not start writing, nothing was changed/);
    expect(existsSync(join(parent, '.rebuildfsck'))).toBe(false);
    expect(existsSync(join(parent, '.autofsck'))).toBe(false);
    expect(readFileSync(join(parent, 'ddfsidx')).equals(index)).toBe(true);
    const r = await run(process.execPath, [FSCK, '-C', parent], { encoding: 'utf8' });
    expect(r.code, r.stdout).toBe(0);
  });
});

describe('fsck safe points (runFsck with an AbortSignal)', () => {
  const quiet = (): Logger => {
    const l = new Logger(() => undefined);
    l.quiet = true;
    return l;
  };

  /** runFsck in `mode`, aborted at the first progress event of `phase`; returns the INTERRUPTED error's message. */
  async function interruptAt(parent: string, mode: 'repair' | 'rebuild', phase: string, pack = false): Promise<string> {
    const controller = new AbortController();
    try {
      await runFsck(parent, {
        mode, pack, logger: quiet(), signal: controller.signal,
        progress: (e) => {
          if (e.phase === phase) controller.abort();
        },
      });
    } catch (err) {
      if (err instanceof DdfsError && err.code === 'INTERRUPTED') return err.message;
      throw err;
    }
    throw new Error(`not interrupted at ${phase}`);
  }

  async function checkExit(parent: string): Promise<number> {
    return (await runFsck(parent, { mode: 'check', logger: quiet() })).exitCode;
  }

  it('before writing (read files): the volume as it was, no .autofsck', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB, { a: randomBytes(MiB) });
    const index = readFileSync(join(parent, 'ddfsidx'));
    expect(await interruptAt(parent, 'repair', 'read files')).toBe('interrupted during read files: the repair did not start writing, nothing was changed');
    expect(readFileSync(join(parent, 'ddfsidx')).equals(index)).toBe(true);
    expect(existsSync(join(parent, '.autofsck'))).toBe(false);
    expect(await checkExit(parent)).toBe(0);
  });

  it('once fixing files: the repair completes, the pack is skipped', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB, { a: randomBytes(MiB), b: randomBytes(MiB) });
    unlinkSync(join(parent, 'ddfsroot', 'a'));
    const msg = await interruptAt(parent, 'repair', 'fix files', true);
    expect(msg).toBe('interrupted: the repair was writing and completed, the pack (-k) was not run; run fsckddumbfs -n -k to pack');
    expect(existsSync(join(parent, '.autofsck'))).toBe(false);
    // the repair freed a's blocks (no "can be reclaimed"); the pack did not move b down
    const c = await runFsck(parent, { mode: 'check', logger: quiet() });
    expect(c.exitCode).toBe(0);
    expect(c.check!.summary.lastUsedBlock).toBeGreaterThan(c.check!.summary.usedBlocks);
  });

  it('the pack while copying blocks: nothing moved, the repaired volume intact', { timeout: TEST_TIMEOUT_MS }, async () => {
    const b = randomBytes(12 * MiB);
    const parent = await newVolume(64 * MiB, { a: randomBytes(12 * MiB), b });
    unlinkSync(join(parent, 'ddfsroot', 'a'));
    const msg = await interruptAt(parent, 'repair', 'pack: copy blocks', true);
    expect(msg).toMatch(/^interrupted during pack: copy blocks: the repair completed, the pack moved nothing; run fsckddumbfs -n -k to pack$/);
    expect(existsSync(join(parent, '.autofsck'))).toBe(false);
    expect(await checkExit(parent)).toBe(0);
    expect((await download(parent, 'b')).equals(b)).toBe(true);
  });

  it('a rebuild before writing: .rebuildfsck removed, the old index kept', { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = await newVolume(64 * MiB, { a: randomBytes(2 * MiB) });
    const index = readFileSync(path.join(parent, 'ddfsidx'));
    expect(await interruptAt(parent, 'rebuild', 'read and hash blocks')).toBe('interrupted during read and hash blocks: the rebuild did not start writing, nothing was changed');
    expect(existsSync(join(parent, '.rebuildfsck'))).toBe(false);
    expect(readFileSync(join(parent, 'ddfsidx')).equals(index)).toBe(true);
    expect(await checkExit(parent)).toBe(0);
  });
});
