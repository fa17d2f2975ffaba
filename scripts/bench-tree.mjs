#!/usr/bin/env node
// npm run bench -- tree (or BENCH_ONLY=tree npm run bench): trees of small files through the mount against the host
// file system of the work dir (issue 9: goal at most 4x the host for cp -a and rm -rf, at most 0.6 ms per small file).
// The sources are first copied to /dev/shm (tmpfs, when present) so reading them costs the same on both sides.
// Workloads, host then mount, ROUNDS rounds on fresh copies, the better round kept (the disk is noisy):
//   cp -a of each tree of BENCH_TREES (default /usr/share/doc:/usr/include), a second cp -a of it (all duplicate
//   on the mount), tar -c of the first copy after drop_caches (a restore: piped, so GNU tar reads every file, which
//   it skips when writing to /dev/null; issue 9 goal at most 5x), rm -rf of both copies, then tar -x of the tree from
//   a tarball in tmpfs and rsync -a of it (both new on the host, duplicate on the mount); cp -a of 500 small files
//   (100..3100 random bytes) as ms per file; cp -a and rm -rf of a generated tree of BENCH_TREE_FILES (default
//   100000, 0 skips it) such files in directories of 100, also as ms per file (issue 9: "a 100,000-file tree took
//   22 minutes through the mount").
// A benchmark, not a test. Environment: BENCH_DIR, BENCH_TREES, BENCH_TREE_ROUNDS, BENCH_TREE_FILES.
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
/** The content of small file number `i` of a generated set: 100..3100 random bytes. */
const smallFileBytes = (i) => randomBytes(100 + ((i * 7919) % 3000));

/** Run the tree section in `work`. */
export async function benchTree(work) {
  const trees = (process.env.BENCH_TREES ?? '/usr/share/doc:/usr/include').split(':').filter((t) => fs.existsSync(t));
  const rounds = Number(process.env.BENCH_TREE_ROUNDS ?? 2);
  const generatedCount = Number(process.env.BENCH_TREE_FILES ?? 100_000);
  const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/ddumbfs-bench-tree-') : path.join(work, 'tree-src');
  fs.mkdirSync(shm, { recursive: true });
  const parent = path.join(work, 'tvol');
  const mnt = path.join(work, 'tmnt');
  const host = path.join(work, 'thost');
  const generatedName = `a generated tree of ${generatedCount} files`;
  const what = [...trees, '500 small files', ...(generatedCount > 0 ? [generatedName] : [])].join(', ');
  console.log(`== trees of small files: ${what}; host = the file system of ${work}; ${rounds} rounds, best kept`);
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
    for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(small, `f${i}`), smallFileBytes(i));
    sources.push({ name: '500 small files', src: small, perFile: 500 });
    if (generatedCount > 0) {
      const gen = path.join(shm, 'generated');
      for (let i = 0; i < generatedCount; i++) {
        const dir = path.join(gen, `d${String(Math.floor(i / 100)).padStart(4, '0')}`);
        if (i % 100 === 0) fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, `f${i % 100}`), smallFileBytes(i));
      }
      sources.push({ name: generatedName, src: gen, perFile: generatedCount, remove: true });
    }
    const perFileOf = new Map(sources.filter((x) => x.perFile).flatMap((x) => [[`cp -a ${x.name}`, x.perFile], [`rm -rf of ${x.name}`, x.perFile]]));

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
          sources.forEach(({ name, src, tarball, perFile, remove }, i) => {
            sync();
            keep(`cp -a ${name}`, side, seconds(() => runChild('cp', ['-a', src, path.join(dir, `a${i}`)])));
            if (perFile) {
              if (!remove) return;
              sync();
              keep(`rm -rf of ${name}`, side, seconds(() => runChild('rm', ['-rf', path.join(dir, `a${i}`)])));
              return;
            }
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
      const n = perFileOf.get(label);
      const per = n ? `  ${((m / n) * 1000).toFixed(2)} ms/file (host ${((h / n) * 1000).toFixed(2)})` : '';
      console.log(`${label.padEnd(52)} host ${h.toFixed(2).padStart(6)} s  mount ${m.toFixed(2).padStart(6)} s  ${(m / h).toFixed(1).padStart(5)}x host${per}`);
    }
  } finally {
    fs.rmSync(shm, { recursive: true, force: true });
    for (const d of [parent, host]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  }
}
