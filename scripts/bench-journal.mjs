#!/usr/bin/env node
// npm run bench -- journal (or BENCH_ONLY=journal npm run bench): the write-ahead journal's cost on the daemon
// (issue 8: at most 5 %). Two volumes of 4 KiB blocks in the same run: a plain one (journal off) and a mirror
// master (journal on: another volume was init-slave'd from it, so it has mirror state and journals every change).
// Workloads, alternating off/on, ROUNDS rounds each, the better round kept (the disk is noisy):
//   (a) `cp -a /usr/share/doc` (or BENCH_JOURNAL_TREE) into a fresh directory of the mount;
//   (b) `dd if=/dev/urandom-like source bs=1M conv=fsync` of GIB (default 2) GiB.
// Prints each time, the daemon's CPU time (user + system, from /proc) for each, and the ratios on/off (goal <= 1.05). A benchmark, not a test; run it on a quiet
// machine (nothing else benchmarking). Environment: BENCH_DIR, BENCH_JOURNAL_GIB, BENCH_JOURNAL_TREE, BENCH_JOURNAL_ROUNDS.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, runChild, unmount } from './bench-common.mjs';

/**
 * CPU seconds (user + system) used so far by the daemon serving `mnt`: the process whose command line names it
 * (read from /proc, nothing is signalled), or NaN when it is not found.
 */
function daemonCpuSeconds(mnt) {
  const tick = 100; // USER_HZ on Linux
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
      if (!argv.includes(mnt) || !argv.some((a) => a.endsWith('ddumbfs') || a.endsWith('ddumbfs.js'))) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      // gone meanwhile
    }
  }
  return NaN;
}

function seconds(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Run the journal section in `work` with `gib` GiB for the stream workload. */
export async function benchJournal(gib, work) {
  const tree = process.env.BENCH_JOURNAL_TREE ?? '/usr/share/doc';
  const rounds = Number(process.env.BENCH_JOURNAL_ROUNDS ?? 2);
  console.log(`== journal cost: cp -a ${tree}, dd ${gib} GiB conv=fsync; ${rounds} rounds, best kept`);
  const src = path.join(work, 'journal-source.bin');
  runChild(bin('testddumbfs'), ['-o', 'F', '-B', '4096', '-S', `${gib * 1024}M`, '-s', '11', src]);
  // A fresh volume per side and round: the dd source is the same each round, so a reused volume would measure a
  // duplicate write in round 2.
  const sides = { off: { cp: Infinity, dd: Infinity, cpCpu: Infinity, ddCpu: Infinity }, on: { cp: Infinity, dd: Infinity, cpCpu: Infinity, ddCpu: Infinity } };
  const fresh = (kind, r) => {
    const parent = path.join(work, `jvol-${kind}`);
    const mnt = path.join(work, `jmnt-${kind}`);
    const slave = path.join(work, `jvol-slave-${kind}`);
    for (const d of [parent, slave]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
    fs.mkdirSync(parent, { recursive: true });
    fs.mkdirSync(mnt, { recursive: true });
    runChild(bin('mkddumbfs'), ['-s', `${Math.ceil((gib * 2 + 2) * 1024)}M`, '-B', '4096', parent]);
    if (kind === 'on') {
      fs.mkdirSync(slave, { recursive: true });
      runChild(bin('mkddumbfs'), ['-s', '256M', '-B', '4096', slave]);
      runChild(bin('mirrorddumbfs'), ['init-slave', slave, '--from', parent]);
    }
    Object.assign(sides[kind], { parent, mnt, slave });
  };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const kind of r % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
        fresh(kind, r);
        const s = sides[kind];
        runChild(bin('ddumbfs'), [s.mnt, '-o', `parent=${s.parent}`]);
        try {
          const cpu0 = daemonCpuSeconds(s.mnt);
          const cp = seconds(() => runChild('cp', ['-a', tree, path.join(s.mnt, `tree${r}`)]));
          const cpu1 = daemonCpuSeconds(s.mnt);
          const dd = seconds(() => runChild('dd', [`if=${src}`, `of=${path.join(s.mnt, `big${r}.bin`)}`, 'bs=1M', 'conv=fsync']));
          const cpu2 = daemonCpuSeconds(s.mnt);
          s.cp = Math.min(s.cp, cp);
          s.dd = Math.min(s.dd, dd);
          // the daemon's own CPU (user + system): what the journal adds to the daemon, less noisy than the wall clock
          s.cpCpu = Math.min(s.cpCpu, cpu1 - cpu0);
          s.ddCpu = Math.min(s.ddCpu, cpu2 - cpu1);
          console.log(`  round ${r} journal ${kind.padEnd(3)}  cp -a ${cp.toFixed(2).padStart(7)} s (daemon CPU ${(cpu1 - cpu0).toFixed(2)} s)   dd ${dd.toFixed(2).padStart(7)} s (daemon CPU ${(cpu2 - cpu1).toFixed(2)} s)`);
        } finally {
          unmount(s.mnt);
        }
      }
    }
    const cpRatio = sides.on.cp / sides.off.cp;
    const ddRatio = sides.on.dd / sides.off.dd;
    console.log(`journal cost, small-file copy: on ${sides.on.cp.toFixed(2)} s / off ${sides.off.cp.toFixed(2)} s = ${cpRatio.toFixed(3)} (goal <= 1.05)`);
    console.log(`journal cost, ${gib} GiB dd:       on ${sides.on.dd.toFixed(2)} s / off ${sides.off.dd.toFixed(2)} s = ${ddRatio.toFixed(3)} (goal <= 1.05)`);
    const cpCpuRatio = sides.on.cpCpu / sides.off.cpCpu;
    const ddCpuRatio = sides.on.ddCpu / sides.off.ddCpu;
    console.log(`journal cost, small-file copy, daemon CPU: on ${sides.on.cpCpu.toFixed(2)} s / off ${sides.off.cpCpu.toFixed(2)} s = ${cpCpuRatio.toFixed(3)} (goal <= 1.05)`);
    console.log(`journal cost, ${gib} GiB dd, daemon CPU:       on ${sides.on.ddCpu.toFixed(2)} s / off ${sides.off.ddCpu.toFixed(2)} s = ${ddCpuRatio.toFixed(3)} (goal <= 1.05)\n`);
    return { cpRatio, ddRatio, cpCpuRatio, ddCpuRatio };
  } finally {
    for (const s of Object.values(sides)) {
      if (!s.mnt) continue;
      unmount(s.mnt);
      for (const d of [s.parent, s.slave]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
    }
    fs.rmSync(src, { force: true });
  }
}
