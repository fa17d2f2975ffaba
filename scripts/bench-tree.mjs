#!/usr/bin/env node
// npm run bench -- tree (or BENCH_ONLY=tree npm run bench): trees of small files through the mount against the host
// file system of the work dir (issue 9: goal at most 4x the host for cp -a and rm -rf, at most 0.6 ms per small file).
// The sources are first copied to /dev/shm (tmpfs, when present) so reading them costs the same on both sides.
// Workloads, host then mount, ROUNDS rounds on fresh copies, the better round kept (the disk is noisy):
//   cp -a of each tree of BENCH_TREES (default /usr/share/doc:/usr/include), a second cp -a of it (all duplicate
//   on the mount), tar -c of the first copy after drop_caches (a restore: piped, so GNU tar reads every file, which
//   it skips when writing to /dev/null; issue 9 goal at most 5x), rm -rf of both copies, then tar -x of the tree from
//   a tarball in tmpfs and rsync -a of it (both new on the host, duplicate on the mount); cp -a of 500 small files
//   (100..3100 random bytes) as ms per file.
// A benchmark, not a test. Environment: BENCH_DIR, BENCH_TREES, BENCH_TREE_ROUNDS.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, dropCaches, runChild, unmount } from './bench-common.mjs';

function seconds(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
const sync = () => runChild('sync', []);

/** Run the tree section in `work`. */
export async function benchTree(work) {
  const trees = (process.env.BENCH_TREES ?? '/usr/share/doc:/usr/include').split(':').filter((t) => fs.existsSync(t));
  const rounds = Number(process.env.BENCH_TREE_ROUNDS ?? 2);
  const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/ddumbfs-bench-tree-') : path.join(work, 'tree-src');
  fs.mkdirSync(shm, { recursive: true });
  const parent = path.join(work, 'tvol');
  const mnt = path.join(work, 'tmnt');
  const host = path.join(work, 'thost');
  console.log(`== trees of small files: ${trees.join(', ')} and 500 small files; host = the file system of ${work}; ${rounds} rounds, best kept`);
  try {
    const sources = trees.map((t, i) => {
      const dest = path.join(shm, `t${i}`);
      runChild('cp', ['-a', t, dest]);
      const tarball = path.join(shm, `t${i}.tar`);
      runChild('tar', ['-cf', tarball, '-C', shm, `t${i}`]);
      return { name: t, src: dest, tarball };
    });
    const small = path.join(shm, 'small');
    fs.mkdirSync(small);
    for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(small, `f${i}`), randomBytes(100 + ((i * 7919) % 3000)));
    sources.push({ name: '500 small files', src: small, perFile: 500 });

    const best = new Map();
    const keep = (label, side, s) => {
      const k = `${label}|${side}`;
      best.set(k, Math.min(best.get(k) ?? Infinity, s));
    };
    for (let r = 0; r < rounds; r++) {
      for (const d of [parent, host]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
      fs.mkdirSync(parent, { recursive: true });
      fs.mkdirSync(mnt, { recursive: true });
      fs.mkdirSync(host, { recursive: true });
      runChild(bin('mkddumbfs'), ['-s', '8G', '-B', '4096', parent]);
      runChild(bin('ddumbfs'), [mnt, '-o', `parent=${parent}`]);
      try {
        for (const [side, dir] of [['host', host], ['mount', mnt]]) {
          sources.forEach(({ name, src, tarball }, i) => {
            sync();
            keep(`cp -a ${name}`, side, seconds(() => runChild('cp', ['-a', src, path.join(dir, `a${i}`)])));
            if (name === '500 small files') return;
            keep(`cp -a ${name} again (duplicate)`, side, seconds(() => runChild('cp', ['-a', src, path.join(dir, `b${i}`)])));
            dropCaches();
            keep(`tar -c of ${name} after drop_caches`, side, seconds(() => runChild('sh', ['-c', 'tar -cf - -C "$1" . | wc -c >/dev/null', 'tar-c', path.join(dir, `a${i}`)])));
            sync();
            keep(`rm -rf of both copies of ${name}`, side, seconds(() => runChild('rm', ['-rf', path.join(dir, `a${i}`), path.join(dir, `b${i}`)])));
            fs.mkdirSync(path.join(dir, `x${i}`));
            sync();
            keep(`tar -x of ${name}`, side, seconds(() => runChild('tar', ['-xf', tarball, '-C', path.join(dir, `x${i}`)])));
            sync();
            keep(`rsync -a of ${name}`, side, seconds(() => runChild('rsync', ['-a', `${src}/`, path.join(dir, `r${i}`)])));
            runChild('rm', ['-rf', path.join(dir, `x${i}`), path.join(dir, `r${i}`)]);
          });
        }
      } finally {
        unmount(mnt);
      }
    }
    const labels = [...new Set([...best.keys()].map((k) => k.split('|')[0]))];
    for (const label of labels) {
      const h = best.get(`${label}|host`);
      const m = best.get(`${label}|mount`);
      const per = label === 'cp -a 500 small files' ? `  ${((m / 500) * 1000).toFixed(2)} ms/file (host ${((h / 500) * 1000).toFixed(2)})` : '';
      console.log(`${label.padEnd(52)} host ${h.toFixed(2).padStart(6)} s  mount ${m.toFixed(2).padStart(6)} s  ${(m / h).toFixed(1).padStart(5)}x host${per}`);
    }
  } finally {
    fs.rmSync(shm, { recursive: true, force: true });
    for (const d of [parent, host]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  }
}
