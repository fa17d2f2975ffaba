#!/usr/bin/env node
// npm run bench [-- GIB]: throughput of the mount and of cpddumbfs against the raw disk, on the same disk.
// Prints MB/s and the ratio to raw dd for: first write of unique data (testddumbfs), a second write of the same
// content under another name (dedup), a sequential read after dropping caches, cpddumbfs upload (new and
// duplicate) and download; for volumes of 4 KiB and 128 KiB blocks. A benchmark, not a test: nothing here fails on
// slowness. Environment: BENCH_DIR (default a new directory under /var/tmp).
// Then the mirror section (scripts/bench-mirror.mjs): `npm run bench -- mirror [GIB]` or BENCH_ONLY=mirror runs only it
// (`npm run bench -- mirror-files [COUNT]` or BENCH_ONLY=mirror-files only its many-files row);
// then the fsck section (scripts/bench-fsck.mjs, issue 9's volume shape): `npm run bench -- fsck [GIB]` or
// BENCH_ONLY=fsck runs only it; then the journal-cost section (scripts/bench-journal.mjs, issue 8):
// `npm run bench -- journal [GIB]` or BENCH_ONLY=journal runs only it; then the tree section (scripts/bench-tree.mjs,
// issue 9: cp -a and rm -rf of /usr/share/doc and /usr/include, 500 small files, against the host file system):
// `npm run bench -- tree` or BENCH_ONLY=tree runs only it.
// The stream-lag section (scripts/bench-stream.mjs, issue 8 item 4) runs only on its own: `npm run bench -- stream`
// or BENCH_ONLY=stream.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bin, dropCaches as dropPageCaches, mounted, runChild, unmount } from './bench-common.mjs';

const mirrorOnly = process.argv[2] === 'mirror' || process.env.BENCH_ONLY === 'mirror';
if (mirrorOnly) {
  const { benchMirror } = await import('./bench-mirror.mjs');
  const mgib = Number((process.argv[2] === 'mirror' ? process.argv[3] : process.argv[2]) ?? process.env.BENCH_MIRROR_GIB ?? 2);
  const mwork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-mirror-');
  try {
    await benchMirror(mgib, mwork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(mwork, { recursive: true, force: true });
  }
  process.exit(0);
}
if (process.argv[2] === 'mirror-files' || process.env.BENCH_ONLY === 'mirror-files') {
  const { benchMirrorFiles } = await import('./bench-mirror.mjs');
  const count = Number((process.argv[2] === 'mirror-files' ? process.argv[3] : undefined) ?? process.env.BENCH_MIRROR_FILES ?? 20000);
  const mwork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-mirror-');
  try {
    await benchMirrorFiles(count, mwork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(mwork, { recursive: true, force: true });
  }
  process.exit(0);
}
const fsckOnly = process.argv[2] === 'fsck' || process.env.BENCH_ONLY === 'fsck';
if (fsckOnly) {
  const { benchFsck } = await import('./bench-fsck.mjs');
  const fgib = Number((process.argv[2] === 'fsck' ? process.argv[3] : process.argv[2]) ?? process.env.BENCH_FSCK_GIB ?? 4);
  const fwork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-fsck-');
  try {
    await benchFsck(fgib, fwork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(fwork, { recursive: true, force: true });
  }
  process.exit(0);
}
const journalOnly = process.argv[2] === 'journal' || process.env.BENCH_ONLY === 'journal';
if (journalOnly) {
  const { benchJournal } = await import('./bench-journal.mjs');
  const jgib = Number((process.argv[2] === 'journal' ? process.argv[3] : process.argv[2]) ?? process.env.BENCH_JOURNAL_GIB ?? 2);
  const jwork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-journal-');
  try {
    await benchJournal(jgib, jwork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(jwork, { recursive: true, force: true });
  }
  process.exit(0);
}
const treeOnly = process.argv[2] === 'tree' || process.env.BENCH_ONLY === 'tree';
if (treeOnly) {
  const { benchTree } = await import('./bench-tree.mjs');
  const twork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-tree-');
  try {
    await benchTree(twork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(twork, { recursive: true, force: true });
  }
  process.exit(0);
}
if (process.argv[2] === 'stream' || process.env.BENCH_ONLY === 'stream') {
  const { benchStream } = await import('./bench-stream.mjs');
  const swork = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-stream-');
  try {
    await benchStream(swork);
  } finally {
    if (!process.env.BENCH_DIR) fs.rmSync(swork, { recursive: true, force: true });
  }
  process.exit(0);
}
const gib = Number(process.argv[2] ?? process.env.BENCH_GIB ?? 2);
const bytes = gib * 1024 ** 3;
const work = process.env.BENCH_DIR ?? fs.mkdtempSync('/var/tmp/ddumbfs-bench-');
const results = [];

const run = (cmd, args, opts = {}) => runChild(cmd, args, opts).stdout;
function timed(label, n, fn) {
  const t0 = process.hrtime.bigint();
  fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const mbs = n / 1e6 / s;
  results.push({ label, seconds: s, mbs });
  console.log(`${label.padEnd(44)} ${s.toFixed(2).padStart(7)} s ${mbs.toFixed(1).padStart(8)} MB/s`);
  return mbs;
}
function dropCaches() {
  if (!dropPageCaches()) console.log('  (cannot drop caches: not root?)');
}
function median(xs) { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }

// fsck and reclaim on the volume just filled (about 2·GIB of unique blocks referenced by 4 files). MB/s is over the
// bytes of used blocks, the data each mode has to read at most.
function fsckTimings(parent, mnt, tag) {
  const fsck = (mode) => {
    const r = spawnSync(bin('fsckddumbfs'), [mode, parent], { stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0 && r.status !== 2) throw new Error(`fsckddumbfs ${mode} exited ${r.status}: ${r.stderr}`);
  };
  const usedBytes = fs.statSync(path.join(parent, 'ddfsblocks')).blocks * 512;
  for (const mode of ['-c', '-C', '-n', '-r', '-R']) {
    dropCaches();
    timed(`[${tag}] fsckddumbfs ${mode}`, usedBytes, () => fsck(mode));
  }
  run(bin('ddumbfs'), [mnt, '-o', `parent=${parent}`]);
  try {
    fs.rmSync(path.join(mnt, 'up2.bin'));
    fs.rmSync(path.join(mnt, 'first.bin'));
    timed(`[${tag}] reclaim (/.ddumbfs/reclaim)`, usedBytes, () => fs.readFileSync(path.join(mnt, '.ddumbfs', 'reclaim')));
  } finally {
    unmount(mnt);
  }
}

console.log(`== benchmark: ${gib} GiB per run, work dir ${work}, ${os.cpus().length} cores`);
const raw = path.join(work, 'raw.bin');
const rawW = timed('raw dd write (conv=fdatasync, 1 MiB)', bytes, () => run('dd', ['if=/dev/zero', `of=${raw}`, 'bs=1M', `count=${gib * 1024}`, 'conv=fdatasync']));
dropCaches();
const rawR = timed('raw dd read after drop_caches', bytes, () => run('dd', [`if=${raw}`, 'of=/dev/null', 'bs=1M']));
fs.rmSync(raw);

const src = path.join(work, 'source.bin');
// Full mode: every 8 bytes differ, so the file is unique at any block size.
run(bin('testddumbfs'), ['-o', 'F', '-B', '131072', '-S', `${gib * 1024}M`, '-s', '7', src]);

for (const bs of [4096, 131072]) {
  const tag = `${bs / 1024} KiB blocks`;
  const parent = path.join(work, `vol-${bs}`);
  const mnt = path.join(work, `mnt-${bs}`);
  fs.mkdirSync(parent, { recursive: true });
  fs.mkdirSync(mnt, { recursive: true });
  run(bin('mkddumbfs'), ['-s', `${Math.ceil((gib * 3 + 1) * 1024)}M`, '-B', String(bs), parent]);
  run(bin('ddumbfs'), [mnt, '-o', `parent=${parent}`]);
  try {
    // Fast mode changes 3 words per generator block: with the generator block = the volume block, every volume
    // block is new on the first write (a larger generator block would repeat most sub-blocks).
    const args = (seed, name) => ['-o', 'F', '-B', String(bs), '-S', `${gib * 1024}M`, '-f', '-s', String(seed), path.join(mnt, name)];
    timed(`[${tag}] mount: first write (unique)`, bytes, () => run(bin('testddumbfs'), args(1, 'first.bin')));
    timed(`[${tag}] mount: second write (duplicate)`, bytes, () => run(bin('testddumbfs'), args(1, 'second.bin')));
    dropCaches();
    timed(`[${tag}] mount: read after drop_caches`, bytes, () => run('dd', [`if=${path.join(mnt, 'first.bin')}`, 'of=/dev/null', 'bs=128k']));
  } finally {
    unmount(mnt);
  }
  timed(`[${tag}] cpddumbfs upload (new)`, bytes, () => run(bin('cpddumbfs'), [src, path.join(parent, 'ddfsroot', 'up1.bin')]));
  timed(`[${tag}] cpddumbfs upload (duplicate)`, bytes, () => run(bin('cpddumbfs'), [src, path.join(parent, 'ddfsroot', 'up2.bin')]));
  dropCaches();
  timed(`[${tag}] cpddumbfs download`, bytes, () => run(bin('cpddumbfs'), [path.join(parent, 'ddfsroot', 'up1.bin'), '/dev/null']));
  if (bs === 4096) fsckTimings(parent, mnt, tag);
  fs.rmSync(parent, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
}
fs.rmSync(src);

console.log('\n== ratios to raw disk (write vs raw write, read vs raw read)');
for (const r of results.slice(2).filter((x) => !/fsck|reclaim/.test(x.label))) {
  const base = /read|download/.test(r.label) ? rawR : rawW;
  console.log(`${r.label.padEnd(44)} ${r.mbs.toFixed(1).padStart(8)} MB/s  ${(r.mbs / base).toFixed(2)}x raw`);
}
console.log(`raw write ${rawW.toFixed(1)} MB/s, raw read ${rawR.toFixed(1)} MB/s\n`);
const { benchMirror } = await import('./bench-mirror.mjs');
await benchMirror(Number(process.env.BENCH_MIRROR_GIB ?? gib), work);
const { benchFsck } = await import('./bench-fsck.mjs');
await benchFsck(Number(process.env.BENCH_FSCK_GIB ?? 4), work);
const { benchJournal } = await import('./bench-journal.mjs');
await benchJournal(Number(process.env.BENCH_JOURNAL_GIB ?? gib), work);
const { benchTree } = await import('./bench-tree.mjs');
await benchTree(work);
if (!process.env.BENCH_DIR) fs.rmSync(work, { recursive: true, force: true });
