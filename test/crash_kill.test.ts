/**
 * kill -9 of the daemon during writes (spec §16 "crash", §8.2 step 4): per kill point, three `testddumbfs -o F`
 * writers with their own seeds write 2–4 MiB files one after another into the mount; at a kill point chosen by
 * progress, never by elapsed time (round r waits until r % 3 files have completed, then until the files still being
 * written hold a seeded random number of bytes, up to 2 MiB), the daemon gets SIGKILL; the dead mount is lazily
 * unmounted (umount -l); the volume is mounted again, and that mount runs the automatic repair because `.autofsck`
 * was left behind. So every third round kills before any file completed, and the others after one or two did,
 * however slow the machine. Then:
 * - every file whose testddumbfs exited 0 before the kill (F fsyncs at the end) compares equal with
 *   `testddumbfs -o C`;
 * - every other file (if it exists) is an exact prefix of its generated content, or is listed in corrupted.txt;
 * - periodically and at the end, after a clean unmount, the block-hashing check (-C) reports OK (or WARNING).
 * The same volume lives through all the kill points (repairs on top of repairs); files are deleted after their
 * round has been verified (the completed ones one round later, after surviving one more crash).
 *
 * Needs the built daemon (dist/cli/ddumbfs.js) and /dev/fuse; skipped otherwise. CI: KILL_POINTS kill points;
 * DDUMBFS_SOAK=1: many more. A failing kill point prints its round and seed; DDUMBFS_SEED=<seed> replays the
 * writers' seeds and the kill points' progress targets (how far the kernel got with them at the kill still varies).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alterVolume } from '../src/alter/alter.js';
import { checkVolume } from '../src/fsck/check.js';
import { SeededRandom } from '../src/io/crash_device.js';
import { BlockGenerator } from '../src/testgen/lcg.js';
import { REPO_DIR, isMounted, makeVolume, mountVolume, sh, sleep, unmountAll, type MountedVolume } from './helpers/mount.js';
import { SOAK, quietLogger, readCorruptedList, reportCount, soakCount } from './helpers/crash.js';
import { MOUNT_TIMEOUT_MS } from './helpers/timeouts.js';

const BUILT = fs.existsSync(path.join(REPO_DIR, 'dist', 'cli', 'ddumbfs.js')) && fs.existsSync('/dev/fuse');
const KILL_POINTS = soakCount(20, 200);
const CHECK_EVERY = SOAK ? 10 : 7;
const BS = 4096;
const TESTDDUMBFS = path.join(REPO_DIR, 'bin', 'testddumbfs');
const SEED = Number(process.env.DDUMBFS_SEED ?? 4242);
/** Upper bound of the bytes the files in progress hold at a kill point (below the smallest file, 2 MiB - 5000 B). */
const KILL_BYTES_MAX = 2 * 1024 * 1024 - 8192;
/** Progress is sampled this often (a poll interval, not a limit). */
const POLL_MS = 50;
/** Writers that add no byte for this long have hung (a hang detector only: progress decides the kill point). */
const STALL_MS = 5 * 60_000;


interface WrittenFile {
  name: string;
  seed: number;
  size: number;
  /** testddumbfs -o F exited 0: fsync acknowledged. */
  completed: boolean;
  round: number;
}

let work: string;
let parent: string;
let mnt: string;

beforeAll(async () => {
  if (!BUILT) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-kill-'));
  parent = path.join(work, 'vol');
  mnt = path.join(work, 'mnt');
  fs.mkdirSync(parent);
  fs.mkdirSync(mnt);
  await makeVolume(parent, { blockSize: '4k', size: '256M' });
});

afterAll(async () => {
  if (!BUILT) return;
  await unmountAll();
  if (isMounted(mnt)) await sh('umount', ['-l', mnt]);
  fs.rmSync(work, { recursive: true, force: true });
});

/** Run a command to its end; resolves with the exit code (null when killed). */
function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.on('error', () => resolve({ code: -1, stdout }));
    child.on('exit', (code) => resolve({ code, stdout }));
  });
}

function testddumbfs(op: 'F' | 'C', file: WrittenFile): Promise<{ code: number | null; stdout: string }> {
  return run(process.execPath, [TESTDDUMBFS, '-o', op, '-B', String(BS), '-S', String(file.size), '-s', String(file.seed), path.join(mnt, file.name)]);
}

/** The content testddumbfs -o F writes (spec §14): ceil(size/bs) blocks of the LCG. */
function generated(file: WrittenFile): Buffer {
  const gen = new BlockGenerator(BS, BigInt(file.seed));
  const blocks = Math.ceil(file.size / BS);
  const out = Buffer.allocUnsafe(blocks * BS);
  for (let b = 0; b < blocks; b++) gen.nextInto(out, b * BS);
  return out;
}

const totals = { killPoints: 0, filesCompleted: 0, filesInterrupted: 0, interruptedPresent: 0, listed: 0, checks: 0, checkWarnings: 0 };

/** Bytes of `file` on the mount so far (0 when it does not exist yet). Asynchronous: a hung daemon must not block
 * the test's event loop, so that its time limit still fires. */
async function sizeOnMount(file: WrittenFile): Promise<number> {
  try {
    return (await fs.promises.stat(path.join(mnt, file.name))).size;
  } catch {
    return 0;
  }
}

describe.skipIf(!BUILT)('kill -9 of the daemon during parallel writes, remount (automatic repair), verify', () => {
  // per kill point: a few MiB written through FUSE, a kill, a remount with its repair, the files read back (about
  // 2.5 s on an idle machine); the limit allows 25 times that, so a machine ten times slower passes
  it(`${KILL_POINTS} kill points`, { timeout: MOUNT_TIMEOUT_MS + KILL_POINTS * 60_000 }, async () => {
    const rng = new SeededRandom(SEED);
    const killRng = new SeededRandom(SEED + 1);
    const problems: string[] = [];
    let mv: MountedVolume = await mountVolume(parent, mnt);
    // alterddumbfs refuses a mounted volume
    await expect(alterVolume(parent, { rounds: 1 }, { seed: 1 })).rejects.toMatchObject({ code: 'MOUNTED' });
    let keep: WrittenFile[] = [];
    const t0 = performance.now();
    for (let round = 0; round < KILL_POINTS && problems.length === 0; round++) {
      const files: WrittenFile[] = [];
      let killed = false;
      let writeFailed: string | null = null;
      const writer = async (w: number): Promise<void> => {
        for (let k = 0; !killed && writeFailed === null; k++) {
          const file: WrittenFile = {
            name: `r${round}-w${w}-f${k}`, seed: SEED * 1000 + round * 100 + w * 10 + k, size: rng.range(2, 4) * 1024 * 1024 - rng.int(5000), completed: false, round,
          };
          files.push(file);
          const r = await testddumbfs('F', file);
          file.completed = r.code === 0;
          if (!file.completed && !killed) writeFailed = `${file.name} (seed ${file.seed}): testddumbfs -o F exited ${String(r.code)} before the kill: ${r.stdout.trim()}`;
        }
      };
      const writers = [0, 1, 2].map((w) => writer(w));
      // the kill point, by progress: `completedTarget` files completed, then `bytesTarget` bytes in the files in
      // progress (a file counts once its testddumbfs has started; its size is what the daemon reports)
      const completedTarget = round % 3;
      const bytesTarget = killRng.int(KILL_BYTES_MAX);
      let progress = -1;
      let progressAt = Date.now();
      for (;;) {
        const completedCount = files.filter((x) => x.completed).length;
        let inProgressBytes = 0;
        for (const x of files.filter((y) => !y.completed)) inProgressBytes += await sizeOnMount(x);
        if (writeFailed !== null || (completedCount >= completedTarget && inProgressBytes >= bytesTarget)) break;
        const now = completedCount * 2 ** 32 + inProgressBytes;
        if (now !== progress) {
          progress = now;
          progressAt = Date.now();
        } else if (Date.now() - progressAt > STALL_MS) {
          writeFailed = `the writers made no progress for ${STALL_MS} ms (${completedCount} files completed, ${inProgressBytes} bytes in progress)`;
          break;
        }
        await sleep(POLL_MS);
      }
      if (writeFailed !== null) problems.push(`round ${round}: ${writeFailed}`);
      killed = true;
      process.kill(mv.pid, 'SIGKILL');
      await mv.exited;
      await Promise.all(writers);
      await sh('umount', ['-l', mnt]);
      await mv.unmount();
      if (!fs.existsSync(path.join(parent, '.autofsck'))) problems.push(`round ${round}: .autofsck missing after the kill`);
      try {
        mv = await mountVolume(parent, mnt);
      } catch (err) {
        problems.push(`round ${round}: the remount (with its automatic repair) failed: ${(err as Error).message}`);
        break;
      }
      totals.killPoints++;
      const listed = readCorruptedList(parent);
      const isListed = (f: WrittenFile): boolean => listed.has(path.join(parent, 'ddfsroot', f.name));
      totals.listed += [...listed.keys()].length;
      // the completed files of this round (testddumbfs -o C) and of the previous one, which survived one more
      // crash and repair (compared in-process with the same generator)
      const completed = files.filter((x) => x.completed);
      await Promise.all([0, 1, 2].map(async (lane) => {
        for (let k = lane; k < completed.length; k += 3) {
          const f = completed[k]!;
          const c = await testddumbfs('C', f);
          if (c.code !== 0) problems.push(`round ${round}: completed file ${f.name} (seed ${f.seed}) differs: ${c.stdout.trim()}${isListed(f) ? ' [listed]' : ''}`);
        }
      }));
      for (const f of keep) {
        const got = await fs.promises.readFile(path.join(mnt, f.name)).catch((err: Error) => err);
        if (!(got instanceof Buffer) || !got.equals(generated(f))) {
          problems.push(`round ${round}: file ${f.name} completed in round ${f.round} (seed ${f.seed}) differs after one more crash${isListed(f) ? ' [listed]' : ''}`);
        }
      }
      for (const f of files.filter((x) => !x.completed)) {
        totals.filesInterrupted++;
        const p = path.join(mnt, f.name);
        if (!fs.existsSync(p)) continue;
        totals.interruptedPresent++;
        const got = await fs.promises.readFile(p);
        const want = generated(f);
        if (got.length > want.length || !got.equals(want.subarray(0, got.length))) {
          if (!isListed(f)) {
            let at = 0;
            while (at < got.length && got[at] === want[at]) at++;
            problems.push(`round ${round}: interrupted file ${f.name} (seed ${f.seed}, ${got.length} bytes) is not a prefix of its content (first difference at ${at}) and is not listed in corrupted.txt`);
          }
        }
      }
      totals.filesCompleted += files.filter((x) => x.completed).length;
      // space: drop what was verified (the completed files once more crash later)
      for (const f of [...keep, ...files.filter((x) => !x.completed)]) fs.rmSync(path.join(mnt, f.name), { force: true });
      keep = files.filter((x) => x.completed);
      if ((round + 1) % CHECK_EVERY === 0 || round === KILL_POINTS - 1) {
        await mv.unmount();
        const check = await checkVolume(parent, { logger: quietLogger(), hashBlocks: true, crashed: false });
        totals.checks++;
        if (check.exitCode === 2) totals.checkWarnings++;
        if (check.exitCode === 1) problems.push(`round ${round}: check -C after a clean unmount: ERROR: ${check.findings.filter((x) => x.severity === 'ERR').map((x) => x.message).join(' | ')}`);
        if (round < KILL_POINTS - 1) mv = await mountVolume(parent, mnt);
      }
    }
    if (isMounted(mnt)) await mv.unmount();
    reportCount('crash_kill: kill points', `${totals.killPoints} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    reportCount('crash_kill: files completed before the kill (compared with testddumbfs -o C)', totals.filesCompleted);
    reportCount('crash_kill: files interrupted / present after the repair / entries in corrupted.txt', `${totals.filesInterrupted} / ${totals.interruptedPresent} / ${totals.listed}`);
    reportCount('crash_kill: checks -C after a clean unmount / with WARNING', `${totals.checks} / ${totals.checkWarnings}`);
    expect(problems, problems.join('\n')).toEqual([]);
    expect(totals.filesCompleted, 'no file completed before a kill: the kill points are too early').toBeGreaterThan(0);
  });
});
