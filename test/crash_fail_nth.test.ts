/**
 * "Fail the Nth I/O" (style.md): a file is copied into a volume through Volume.openFile / UfsFile (writes of odd
 * sizes, fsync, close, then the volume is closed as at unmount), with the faulty device failing the 1st, 2nd, 3rd …
 * matching write, sync or truncate, until the copy completes without meeting the fault. For every N:
 * - the failure reaches the writer as an error with errno EIO or ENOSPC (from write, fsync, close or the volume's
 *   close), never an uncaught exception, never a hang (each run has a time limit), never silence;
 * - transient faults (only the Nth call fails): the block-hashing check afterwards finds nothing worse than
 *   reclaimable blocks (OK), and the file reads back as a prefix of the source (never wrong bytes);
 * - persistent faults (a full or dead disk: every call from the Nth fails): the close fails too, so the next mount
 *   repairs (crash flag set); then the check is OK (or WARNING with the file listed in corrupted.txt) and the file
 *   reads back as a prefix of the source wherever it is not listed.
 * The source dedups against itself and against a file already in the volume, and has zero blocks and a partial tail.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoOf } from '../src/errors.js';
import { checkVolume } from '../src/fsck/check.js';
import { repairVolume } from '../src/fsck/repair.js';
import { FaultyDeviceFactory, type FaultyDeviceOptions } from '../src/io/faulty_device.js';
import { SeededRandom } from '../src/io/crash_device.js';
import { createVolume } from '../src/volume/create.js';
import { Volume } from '../src/volume/volume.js';
import { copyVolumeDir, quietLogger, readCorruptedList, readVolumeFile, reportCount, soakCount } from './helpers/crash.js';

const BS = 4096;
const EIO = 5;
const ENOSPC = 28;
/** A run (10–50 ms on an idle machine) still going after this has hung: a hang detector, generous for slow machines. */
const RUN_TIMEOUT_MS = 60_000;
const SOURCE_VARIANTS = soakCount(1, 6);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-failnth-'));
const template = path.join(work, 'template');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A source of ~120 KiB: random blocks, repeated blocks, zero blocks, blocks of the file already stored, a tail. */
function makeSource(seed: number, existing: Buffer): Buffer {
  const rng = new SeededRandom(seed);
  const parts: Buffer[] = [];
  const repeated = rng.bytes(BS);
  for (let k = 0; k < 29; k++) {
    const r = rng.int(5);
    if (r === 0) parts.push(rng.bytes(BS));
    else if (r === 1) parts.push(repeated);
    else if (r === 2) parts.push(Buffer.alloc(BS));
    else if (r === 3) parts.push(existing.subarray(BS * rng.int(4), BS * (rng.int(4) + 1)).subarray(0, BS));
    else parts.push(rng.bytes(BS));
  }
  parts.push(rng.bytes(1 + rng.int(BS - 1)));
  return Buffer.concat(parts);
}

let existing: Buffer;
beforeAll(async () => {
  fs.mkdirSync(template);
  await createVolume(template, { partitionSize: 4 * 1024 * 1024, blockSize: BS, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
  existing = new SeededRandom(777).bytes(4 * BS);
  const v = await Volume.open(template);
  const f = await v.openFile(path.join(v.rootDir, 'existing'), { create: true });
  await f.write(0, existing);
  await f.close();
  await v.close();
});

interface RunResult {
  completed: boolean;
  errors: unknown[];
  injected: number;
  dir: string;
}

/** Copy `src` into a fresh copy of the template through `faulty`; every error is collected, nothing thrown. */
async function copyIn(dir: string, src: Buffer, faulty: FaultyDeviceFactory, rng: SeededRandom): Promise<RunResult> {
  const errors: unknown[] = [];
  let completed = false;
  const attempt = async <T>(fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      errors.push(err);
      return undefined;
    }
  };
  const work = (async () => {
    const v = await attempt(() => Volume.open(dir, { devices: faulty }));
    if (!v) return;
    const f = await attempt(() => v.openFile(path.join(v.rootDir, 'copy'), { create: true }));
    if (f) {
      let pos = 0;
      let ok = true;
      while (pos < src.length && ok) {
        const n = Math.min(src.length - pos, 1 + rng.int(3 * BS));
        ok = (await attempt(() => f.write(pos, src.subarray(pos, pos + n)))) !== undefined || !errors.length;
        if (errors.length) ok = false;
        pos += n;
      }
      if (ok) await attempt(() => f.fsync());
      await attempt(() => f.close());
    }
    await attempt(() => v.close());
    completed = errors.length === 0;
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), RUN_TIMEOUT_MS); });
  const r = await Promise.race([work.then(() => 'done' as const), timeout]);
  clearTimeout(timer);
  if (r === 'timeout') errors.push(new Error(`HANG: the copy did not finish within ${RUN_TIMEOUT_MS} ms`));
  return { completed, errors, injected: faulty.faults.length, dir };
}

/** Read the copy back (real devices); null when it cannot be read. */
async function readCopy(dir: string): Promise<Buffer | Error> {
  try {
    return await readVolumeFile(dir, 'copy');
  } catch (err) {
    return err as Error;
  }
}

interface Config {
  name: string;
  options: Omit<FaultyDeviceOptions, 'failAt'>;
}

const CONFIGS: Config[] = [
  { name: 'every write, EIO once', options: { ops: ['write'], errno: 'EIO' } },
  { name: 'every sync, EIO once', options: { ops: ['sync'], errno: 'EIO' } },
  { name: 'any write/sync/truncate of a UFS file, EIO once', options: { kinds: ['ufs'], errno: 'EIO' } },
  { name: 'block file writes, ENOSPC once', options: { kinds: ['block'], ops: ['write'], errno: 'ENOSPC' } },
  { name: 'index writes and syncs, EIO once', options: { kinds: ['index'], errno: 'EIO' } },
  { name: 'every write, ENOSPC from then on (disk full)', options: { ops: ['write'], errno: 'ENOSPC', sticky: true } },
  { name: 'every sync, EIO from then on', options: { ops: ['sync'], errno: 'EIO', sticky: true } },
];

const counts = { runs: 0, injected: 0, completedAfter: new Map<string, number[]>(), errnoSeen: new Map<string, number>() };
afterAll(() => {
  reportCount('crash_fail_nth: runs (one per N per configuration per source)', counts.runs);
  reportCount('crash_fail_nth: faults injected', counts.injected);
  reportCount('crash_fail_nth: matching calls in a complete copy, per configuration (per source)', [...counts.completedAfter].map(([k, v]) => `${k}: ${v.join('/')}`).join('; '));
  reportCount('crash_fail_nth: errno seen by the writer', [...counts.errnoSeen].map(([k, v]) => `${k}×${v}`).join(' '));
});

describe('fail the Nth I/O of a copy-in, then check', () => {
  for (const config of CONFIGS) {
    it(config.name, async () => {
      const problems: string[] = [];
      for (let variant = 0; variant < SOURCE_VARIANTS; variant++) {
        const src = makeSource(100 + variant, existing);
        for (let n = 1; n < 10_000; n++) {
          const dir = path.join(work, `${config.name.replace(/\W+/g, '_')}-${variant}-${n}`);
          await copyVolumeDir(template, dir);
          const faulty = new FaultyDeviceFactory({ ...config.options, failAt: n });
          const r = await copyIn(dir, src, faulty, new SeededRandom(n));
          counts.runs++;
          counts.injected += r.injected;
          const where = `N=${n}${SOURCE_VARIANTS > 1 ? ` source ${variant}` : ''} (${faulty.faults.map((x) => `${x.op} ${x.kind}`).join(', ') || 'no fault'})`;
          if (r.injected === 0) {
            if (!r.completed) problems.push(`${where}: failed without an injected fault: ${r.errors.map(String).join('; ')}`);
            counts.completedAfter.set(config.name, [...(counts.completedAfter.get(config.name) ?? []), n - 1]);
            const back = await readCopy(dir);
            if (!(back instanceof Buffer) || !back.equals(src)) problems.push(`${where}: the complete copy does not read back`);
            fs.rmSync(dir, { recursive: true, force: true });
            break;
          }
          // the fault must reach the writer, with the right errno
          if (r.errors.length === 0) problems.push(`${where}: the fault was swallowed (no error reached the writer)`);
          for (const e of r.errors) {
            const errno = errnoOf(e);
            const key = errno === EIO ? 'EIO' : errno === ENOSPC ? 'ENOSPC' : `errno ${errno}`;
            counts.errnoSeen.set(key, (counts.errnoSeen.get(key) ?? 0) + 1);
            if (errno !== EIO && errno !== ENOSPC) problems.push(`${where}: error with errno ${errno}: ${(e as Error)?.message ?? String(e)}`);
            if (/HANG/.test(String((e as Error)?.message))) problems.push(`${where}: ${(e as Error).message}`);
          }
          // the next mount: a repair when the volume could not be closed cleanly
          const uncleanClose = config.options.sticky === true;
          if (uncleanClose) {
            try {
              await repairVolume(dir, { logger: quietLogger(), crashed: true, hashThreads: 0 });
            } catch (err) {
              problems.push(`${where}: repair failed: ${(err as Error).message}`);
              continue;
            }
          }
          const check = await checkVolume(dir, { logger: quietLogger(), crashed: false, hashBlocks: true, hashThreads: 0 });
          const listed = readCorruptedList(dir).size > 0;
          const worst = check.findings.filter((f) => f.severity === 'ERR');
          if (check.exitCode === 1 || (check.exitCode === 2 && !listed) || (!uncleanClose && check.exitCode !== 0)) {
            problems.push(`${where}: check after the failure: exit ${check.exitCode}: ${worst.map((f) => f.message).join(' | ') || check.findings.map((f) => f.message).join(' | ')}`);
          }
          const back = await readCopy(dir);
          if (back instanceof Error) {
            if (!/ENOENT/.test(back.message)) problems.push(`${where}: the copy cannot be read back: ${back.message}`);
          } else if (!back.equals(src.subarray(0, back.length)) && !listed) {
            let bad = 0;
            while (bad < back.length && back[bad] === src[bad]) bad++;
            problems.push(`${where}: the copy reads back ${back.length} bytes that are not a prefix of the source (first difference at ${bad})`);
          }
          if (problems.length > 0) break;
          fs.rmSync(dir, { recursive: true, force: true });
        }
        if (problems.length > 0) break;
      }
      expect(problems, problems.join('\n')).toEqual([]);
    });
  }
});
