#!/usr/bin/env node
// npm run bench -- stream (or BENCH_ONLY=stream npm run bench): how far behind `mirrorddumbfs stream` keeps a replica
// of a mounted master that is ingesting `cp -a /usr/share` (or BENCH_STREAM_TREE) (issue 8 item 4: goal within 10 s).
// The master is mounted (journal on), the replica is a local unmounted volume, the stream runs with -i 1.
// Every second the master's journal head (its segments, read only) and the replica's claim (its state file) are
// sampled; the lag of a sample at time t with head H is the time until the claim reached H. Prints the maximum and
// the mean of that lag while the copy runs, the time from the copy's end until the replica holds the final head, the
// stream's own lagSeconds maximum (status --json `stream`), the pass count, and whether verify is empty.
// A benchmark, not a test: nothing fails on slowness. Environment: BENCH_DIR, BENCH_STREAM_TREE, BENCH_STREAM_INTERVAL.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, here, runChild, unmount } from './bench-common.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Run the stream section in `work`. */
export async function benchStream(work) {
  // BENCH_STREAM_TREE may name several trees separated by ':' (a shorter run with the same shapes, e.g.
  // /usr/share/man:/usr/share/package-lists: a directory of 18k entries and files of tens of MiB), copied by one cp -a
  const trees = (process.env.BENCH_STREAM_TREE ?? '/usr/share').split(':').filter((t) => t !== '');
  const tree = trees.join(' ');
  const interval = process.env.BENCH_STREAM_INTERVAL ?? '1';
  const { summarizeJournal } = await import(path.join(here, 'dist/mirror/journal.js'));
  const { fileDevices } = await import(path.join(here, 'dist/io/device.js'));
  const { readMirrorState, claimTid, mirrorDirectory } = await import(path.join(here, 'dist/mirror/state.js'));
  const { readStreamState } = await import(path.join(here, 'dist/mirror/stream_state.js'));
  const treeBytes = Number(runChild('du', ['-sbc', ...trees]).stdout.trim().split('\n').pop().split(/\s/)[0]);
  console.log(`== stream lag: cp -a ${tree} (${(treeBytes / 1024 ** 2).toFixed(0)} MiB) into a mounted master, mirrorddumbfs stream -i ${interval} to a local replica`);
  const master = path.join(work, 'stream-master');
  const slave = path.join(work, 'stream-slave');
  const mnt = path.join(work, 'stream-mnt');
  const sizeMiB = Math.ceil((treeBytes * 1.5) / 1024 ** 2) + 512;
  for (const d of [master, slave, mnt]) {
    fs.rmSync(d, { recursive: true, force: true });
    fs.mkdirSync(d, { recursive: true });
  }
  runChild(bin('mkddumbfs'), ['-s', `${sizeMiB}M`, '-B', '4096', master]);
  runChild(bin('mkddumbfs'), ['-s', `${sizeMiB}M`, '-B', '4096', slave]);
  runChild(bin('mirrorddumbfs'), ['init-slave', slave, '--from', master]);
  runChild(bin('ddumbfs'), [mnt, '-o', `parent=${master}`]);
  let stream = null;
  try {
    const head = async () => {
      const st = readMirrorState(master);
      const j = await summarizeJournal(mirrorDirectory(master), fileDevices, st?.nextTid !== undefined ? BigInt(st.nextTid) : 1n);
      return j === null ? 0n : BigInt(j.durableHead);
    };
    const claim = () => {
      try {
        return claimTid(readMirrorState(slave)?.claim ?? null);
      } catch {
        return 0n; // the state is being replaced: the next sample reads it
      }
    };
    let t0 = Date.now();
    stream = spawn(process.execPath, [bin('mirrorddumbfs'), 'stream', '-i', interval, '--backoff', '1', master, slave], { stdio: ['ignore', 'pipe', 'pipe'] });
    let streamErr = '';
    const failures = []; // seconds from the copy's start at which a pass failed
    stream.stderr.on('data', (c) => {
      streamErr += c.toString();
      for (const _ of c.toString().match(/pass failed/g) ?? []) failures.push((Date.now() - t0) / 1000);
    });
    // the pass timeline: each pass's summary line (stdout) with the time it came, relative to the copy's start
    const passes = []; // { end, elapsed, kind, tidBeg, tidEnd, filesVisited, filesSent, blocksSent }
    let outBuf = '';
    let alarms = 0; // divergence alarms the passes reported (entries a replica lacked although its claim covered them)
    stream.stdout.on('data', (c) => {
      outBuf += c.toString();
      let nl;
      while ((nl = outBuf.indexOf('\n')) >= 0) {
        const line = outBuf.slice(0, nl);
        outBuf = outBuf.slice(nl + 1);
        const m = /(incremental pass \(TIDs (\d+)\.\.(\d+)\)|content pass), (\d+) files visited, (\d+) files sent, (\d+) blocks sent.*?, ([\d.]+) s, claim/.exec(line);
        if (m === null) continue;
        alarms += Number(/(\d+) divergence alarms/.exec(line)?.[1] ?? 0);
        passes.push({
          end: (Date.now() - t0) / 1000, elapsed: Number(m[7]), kind: m[2] === undefined ? 'content' : 'incr',
          tidBeg: m[2] ?? '', tidEnd: m[3] ?? '', filesVisited: Number(m[4]), filesSent: Number(m[5]), blocksSent: Number(m[6]),
        });
      }
    });
    let stopping = false;
    stream.on('exit', (code, sig) => {
      if (!stopping) console.log(`  the stream exited early (${code ?? sig}): ${streamErr.split('\n').slice(-5).join(' | ')}`);
    });
    t0 = Date.now();
    const cpArgs = trees.length === 1 ? [trees[0], path.join(mnt, 'tree')] : [...trees, mnt];
    const cp = spawn('cp', ['-a', ...cpArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
    let cpErr = '';
    cp.stderr.on('data', (c) => (cpErr += c.toString()));
    let cpEnd = null;
    const cpDone = new Promise((r) => cp.on('exit', (code) => {
      cpEnd = Date.now();
      r(code);
    }));
    const samples = []; // { t, head }
    const reached = []; // time at which the claim reached sample i's head
    let maxStreamLag = 0;
    const observe = async () => {
      const now = Date.now();
      const h = await head();
      const c = claim();
      samples.push({ t: now, head: h });
      for (let i = reached.length; i < samples.length && c >= samples[i].head; i++) reached.push(now);
      const ss = readStreamState(slave);
      if (ss?.lagSeconds != null && ss.lagSeconds > maxStreamLag) maxStreamLag = ss.lagSeconds;
      return { h, c };
    };
    while (cpEnd === null) {
      await observe();
      await sleep(1000);
    }
    const cpCode = await cpDone;
    if (cpCode !== 0) console.log(`  cp -a exited ${cpCode}: ${cpErr.split('\n').slice(0, 3).join(' | ')}`);
    const duringCount = samples.length;
    const finalHead = await head();
    let caughtUp = null;
    const limit = Date.now() + 10 * 60 * 1000;
    while (Date.now() < limit) {
      const { c } = await observe();
      if (c >= finalHead) {
        caughtUp = Date.now();
        break;
      }
      await sleep(250);
    }
    const lags = samples.slice(0, duringCount).map((s, i) => ((reached[i] ?? caughtUp ?? Date.now()) - s.t) / 1000);
    const max = Math.max(...lags);
    const mean = lags.reduce((a, b) => a + b, 0) / lags.length;
    const ss = readStreamState(slave);
    // stop the stream between passes: a SIGTERM inside a pass leaves the replica mid-pass (at a checkpoint), which
    // verify then reports as differences; the journal may still move after the copy (its last utimens records)
    const idleBy = Date.now() + 60 * 1000;
    while (Date.now() < idleBy) {
      const s2 = readStreamState(slave);
      if (s2?.connection === 'idle' && s2.lagTids === '0') break;
      await sleep(100);
    }
    stopping = true;
    stream.kill('SIGTERM');
    await new Promise((r) => stream.on('exit', r));
    stream = null;
    unmount(mnt);
    const v = spawn(process.execPath, [bin('mirrorddumbfs'), 'verify', master, slave], { stdio: ['ignore', 'pipe', 'pipe'] });
    let vOut = '';
    v.stdout.on('data', (c) => (vOut += c.toString()));
    const vCode = await new Promise((r) => v.on('exit', r));
    console.log(`  cp -a ${((cpEnd - t0) / 1000).toFixed(1)} s, final head TID ${finalHead}, ${ss?.passCount ?? '?'} passes, ${(streamErr.match(/pass failed/g) ?? []).length} failed, ${alarms} divergence alarms`);
    for (const l of [...new Set(streamErr.split('\n').filter((x) => /pass failed|link dead/.test(x)))].slice(0, 5)) console.log(`  ${l.slice(0, 300)}`);
    const cpS = (cpEnd - t0) / 1000;
    const during = passes.filter((p) => p.end - p.elapsed < cpS);
    if (during.length > 0) {
      const el = during.map((p) => p.elapsed);
      const gaps = during.slice(1).map((p, i) => p.end - p.elapsed - during[i].end);
      const fmt = (a) => `max ${Math.max(...a).toFixed(1)} s, mean ${(a.reduce((x, y) => x + y, 0) / a.length).toFixed(1)} s`;
      console.log(`  passes started during the copy: ${during.length}; pass time ${fmt(el)}; files sent per pass max ${Math.max(...during.map((p) => p.filesSent))}${gaps.length > 0 ? `; gap between passes ${fmt(gaps)}` : ''}`);
    }
    if (process.env.BENCH_STREAM_TIMELINE) {
      // one line per pass: when it started and ended (s from the copy's start), what it covered and shipped
      for (const p of passes) {
        console.log(`  pass ${(p.end - p.elapsed).toFixed(1)}..${p.end.toFixed(1)} s (${p.elapsed.toFixed(1)} s) ${p.kind} ${p.tidBeg}..${p.tidEnd} visited ${p.filesVisited} sent ${p.filesSent} blocks ${p.blocksSent}`);
      }
      if (failures.length > 0) console.log(`  failed passes at ${failures.map((f) => f.toFixed(1)).join(', ')} s`);
      for (const [i, s] of samples.entries()) {
        if (i % 5 === 0) console.log(`  sample ${((s.t - t0) / 1000).toFixed(1)} s head ${s.head} reached at ${reached[i] === undefined ? '-' : ((reached[i] - t0) / 1000).toFixed(1)} s`);
      }
    }
    console.log(`stream lag during the copy: max ${max.toFixed(1)} s, mean ${mean.toFixed(1)} s over ${lags.length} samples (goal: max <= 10 s)`);
    console.log(`stream catch-up after the copy ended: ${caughtUp === null ? 'not within 10 min' : `${((caughtUp - cpEnd) / 1000).toFixed(1)} s`}`);
    console.log(`stream's own lagSeconds (status --json): max ${maxStreamLag.toFixed(1)} s`);
    const diffs = vOut.split('\n').filter((l) => l !== '');
    console.log(`verify after the stream: exit ${vCode}, ${diffs.length} differences${diffs.length > 0 ? ` (${diffs.slice(0, 3).join(' | ')})` : ''}\n`);
    return { max, mean };
  } finally {
    if (stream !== null) {
      stream.kill('SIGTERM');
      await new Promise((r) => stream.on('exit', r));
    }
    unmount(mnt);
    if (!process.env.BENCH_DIR) for (const d of [master, slave, mnt]) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  }
}
