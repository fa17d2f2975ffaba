#!/usr/bin/env node
// npm run bench -- fsck [GIB] (or BENCH_ONLY=fsck npm run bench): fsckddumbfs in every mode on the volume shape of
// issue 9: a GIB (default 4) volume of 4 KiB blocks holding one 1 GiB file of unique data and 4,400 small files
// (1..31 blocks each, most not block-aligned), written offline through the volume's own writer (dist/).
// For each mode prints the wall time, the CPU time (user + sys of the child, from /usr/bin/time -v, the figure to
// compare on a shared machine), the peak RSS and the ratio of the peak RSS to the index file's size (goal <= 2x), the
// same ratio without the command's fixed RSS (node and its modules: the peak of -c on an empty 64 MiB volume, ~60 MiB,
// which alone is 1.7x a 4 GiB volume's index; the part that grows with the volume), and C ddumbfs 1.1's figures measured on the same shape (issue 9) for comparison. Page caches are dropped before each
// mode when the benchmark runs as root. A benchmark, not a test: nothing fails on slowness. Environment: BENCH_DIR (a
// work directory to use and keep), BENCH_FSCK_GIB.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, dropCaches, MIB, runChild, withOfflineVolume } from './bench-common.mjs';

const BLOCK_SIZE = 4096;
const BIG_FILE_BYTES = 1024 * MIB;
const SMALL_FILE_COUNT = 4400;
const SMALL_FILES_PER_DIR = 100;
// issue 9, measured with ddumbfs 1.1 on this shape: seconds (wall) and peak RSS
const C_SECONDS = { '-c': 0.22, '-C': 2.5, '-n': 0.40, '-r': 2.5, '-R': 2.2 };
const C_PEAK_MIB = 38;

const run = (cmd, args) => runChild(cmd, args).stdout;

/** Write the tree into the unmounted volume `parent`. */
export async function fill(parent) {
  await withOfflineVolume(parent, async (write) => {
    await write('big.bin', BIG_FILE_BYTES);
    let sizeSeed = 1;
    for (let k = 0; k < SMALL_FILE_COUNT; k++) {
      const dir = `small/d${String(Math.floor(k / SMALL_FILES_PER_DIR)).padStart(3, '0')}`;
      if (k % SMALL_FILES_PER_DIR === 0) fs.mkdirSync(path.join(parent, 'ddfsroot', dir), { recursive: true });
      sizeSeed = (sizeSeed * 1103515245 + 12345) % 2 ** 31;
      await write(`${dir}/f${k}`, BLOCK_SIZE * (1 + (sizeSeed % 31)) - (sizeSeed % 7) * 100);
    }
  });
}

/** Run `fsckddumbfs mode parent` under /usr/bin/time -v. @returns wall and CPU seconds, peak RSS bytes */
function timedFsck(mode, parent) {
  const r = spawnSync('/usr/bin/time', ['-v', bin('fsckddumbfs'), mode, parent], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MIB });
  const err = r.stderr.toString();
  if (r.status !== 0 && r.status !== 2) throw new Error(`fsckddumbfs ${mode} exited ${r.status}: ${err}`);
  const field = (name) => {
    const m = new RegExp(`${name}: ([\\d.:]+)`).exec(err);
    if (!m) throw new Error(`no "${name}" in /usr/bin/time -v output: ${err}`);
    return m[1];
  };
  const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)').split(':').reduce((s, x) => s * 60 + Number(x), 0);
  const cpu = Number(field('User time \\(seconds\\)')) + Number(field('System time \\(seconds\\)'));
  return { wall, cpu, peakBytes: Number(field('Maximum resident set size \\(kbytes\\)')) * 1024 };
}

/** Peak RSS of `fsckddumbfs -c` on an empty 64 MiB volume: node, the modules and the smallest index (bytes). */
function baselinePeak(work) {
  const tiny = path.join(work, 'fsck-empty');
  fs.mkdirSync(tiny, { recursive: true });
  try {
    run(bin('mkddumbfs'), ['-s', '64M', '-B', String(BLOCK_SIZE), tiny]);
    return timedFsck('-c', tiny).peakBytes;
  } finally {
    fs.rmSync(tiny, { recursive: true, force: true });
  }
}

export async function benchFsck(gib, work) {
  const parent = path.join(work, 'fsck-vol');
  fs.mkdirSync(parent, { recursive: true });
  try {
    run(bin('mkddumbfs'), ['-s', `${gib * 1024}M`, '-B', String(BLOCK_SIZE), parent]);
    console.log(`== fsckddumbfs: ${gib} GiB volume, 4 KiB blocks, a 1 GiB file + ${SMALL_FILE_COUNT} small files`);
    await fill(parent);
    const indexBytes = fs.statSync(path.join(parent, /^index_filename: *(.*)$/m.exec(fs.readFileSync(path.join(parent, 'ddfs.cfg'), 'latin1'))[1])).size;
    const baseBytes = baselinePeak(work);
    const dropped = dropCaches();
    console.log(`index file ${(indexBytes / MIB).toFixed(1)} MiB; fixed RSS (-c of an empty volume) ${(baseBytes / MIB).toFixed(1)} MiB${dropped ? '' : '; page caches not dropped (not root)'}`);
    console.log(`${'mode'.padEnd(6)} ${'wall s'.padStart(8)} ${'cpu s'.padStart(8)} ${'peak MiB'.padStart(9)} ${'peak/index'.padStart(11)} ${'(peak-fixed)/index'.padStart(19)}   C 1.1 (issue 9)`);
    for (const mode of ['-c', '-C', '-n', '-N', '-r', '-R']) {
      dropCaches();
      const t = timedFsck(mode, parent);
      const c = C_SECONDS[mode] === undefined ? '' : `${C_SECONDS[mode].toFixed(2)} s, ${C_PEAK_MIB} MiB`;
      const grown = ((t.peakBytes - baseBytes) / indexBytes).toFixed(2);
      console.log(`${mode.padEnd(6)} ${t.wall.toFixed(2).padStart(8)} ${t.cpu.toFixed(2).padStart(8)} ${(t.peakBytes / MIB).toFixed(1).padStart(9)} ${(t.peakBytes / indexBytes).toFixed(2).padStart(10)}x ${grown.padStart(18)}x   ${c}`);
    }
    console.log('goals: each mode at least as fast as C; peak/index <= 2x\n');
  } finally {
    fs.rmSync(parent, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  }
}
