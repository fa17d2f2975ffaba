/**
 * The seal's ctime boundary (mirroring spec §4.3 offline detection, issue 8): ctimes come from a coarse clock (one
 * jiffy, 1-10 ms on kernels before multigrain timestamps), so a UFS file rewritten in place while unmounted, in the
 * tick of the newest ctime the seal saw, keeps ctime == ctimeMaxNs and the same entry count. The old rule (ctime >
 * ctimeMaxNs) passed it unseen and an incremental pass missed the edit. The seal now waits until the clock has passed
 * ctimeMaxNs and records that stamp as ctimeBoundaryNs; any ctime >= the boundary is a change.
 * The coarse clock is modelled (the kernel here may stamp fine-grained ctimes after a stat, so the hole cannot be
 * forced on a real file system); the real probe file clock is checked on a real tree too.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { treeCensus, type TreeCensus } from '../src/io/journal_dir.js';
import { censusMismatch, probeFileClock, sealBoundary, type MirrorSeal, type SealClock } from '../src/mirror/master_journal.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const TICK_NS = 4_000_000n; // HZ=250

/** A file system whose ctimes come from a coarse clock: time moves only when the clock sleeps. */
function coarseWorld(): { clock: SealClock; entries: Map<string, bigint>; change(name: string): void; census(): TreeCensus; advanceUs(us: number): void } {
  let nowNs = 1_000_000_000_123_456n;
  const coarse = (): bigint => (nowNs / TICK_NS) * TICK_NS;
  const entries = new Map<string, bigint>();
  return {
    clock: {
      probeNs: () => coarse(),
      nowMs: () => Number(nowNs / 1_000_000n),
      sleep: async (ms) => {
        nowNs += BigInt(ms) * 1_000_000n;
      },
    },
    entries,
    change: (name) => {
      entries.set(name, coarse());
    },
    census: () => ({ entryCount: entries.size, ctimeMaxNs: [...entries.values()].reduce((a, b) => (b > a ? b : a), 0n) }),
    advanceUs: (us) => {
      nowNs += BigInt(us) * 1000n;
    },
  };
}

function sealOf(census: TreeCensus, boundaryNs: bigint | undefined): MirrorSeal {
  return {
    version: boundaryNs === undefined ? 1 : 2, lastTid: '7', nextTid: '8', generation: 1, sealedAt: new Date().toISOString(),
    entryCount: census.entryCount, ctimeMaxNs: census.ctimeMaxNs.toString(),
    ...(boundaryNs !== undefined ? { ctimeBoundaryNs: boundaryNs.toString() } : {}),
  };
}

/** The rule before the boundary: only the count and a ctime above ctimeMaxNs. */
function oldRule(seal: MirrorSeal, census: TreeCensus): string | null {
  if (census.entryCount !== seal.entryCount) return 'count';
  return census.ctimeMaxNs > BigInt(seal.ctimeMaxNs) ? 'ctime' : null;
}

describe('seal ctime boundary', () => {
  it('an in-place rewrite in the tick of the newest ctime is caught (the old rule passed it unseen)', async () => {
    const w = coarseWorld();
    for (const n of ['a', 'b', 'c']) w.change(n);
    w.advanceUs(100);
    w.change('a'); // the daemon's last write, just before the unmount
    const census = w.census();
    const b = await sealBoundary(census.ctimeMaxNs, w.clock);
    expect(b.above).toBe(true);
    expect(b.boundaryNs).toBeGreaterThan(census.ctimeMaxNs);
    expect(b.probes).toBeGreaterThan(1); // it had to wait for the tick to end
    const seal = sealOf(census, b.boundaryNs);
    // an offline edit right after the seal: b rewritten in place
    w.change('b');
    const after = w.census();
    expect(censusMismatch(seal, after)).toMatch(/ctime/);

    // the same edit after a seal taken without the wait: same count, ctime == ctimeMaxNs, the old rule sees nothing
    const v = coarseWorld();
    for (const n of ['a', 'b', 'c']) v.change(n);
    const noWait = v.census();
    v.advanceUs(50);
    v.change('b');
    expect(v.census()).toEqual(noWait);
    expect(oldRule(sealOf(noWait, undefined), v.census())).toBeNull();
    // and a seal whose boundary is in that tick (written without waiting) flags it under the new rule
    expect(censusMismatch(sealOf(noWait, noWait.ctimeMaxNs), v.census())).toMatch(/boundary/);
  });

  it('a clean tree still matches its seal (clean unmounts keep incremental passes)', async () => {
    const w = coarseWorld();
    for (let i = 0; i < 10; i++) w.change(`f${i}`);
    const census = w.census();
    const b = await sealBoundary(census.ctimeMaxNs, w.clock);
    const seal = sealOf(census, b.boundaryNs);
    w.advanceUs(60_000_000);
    expect(censusMismatch(seal, w.census())).toBeNull();
    // a census whose newest ctime is older than the current tick costs one probe, no wait
    const b2 = await sealBoundary(census.ctimeMaxNs, w.clock);
    expect(b2.probes).toBe(1);
    expect(b2.above).toBe(true);
  });

  it('a ctime ahead of the clock: the wait is capped and the seal then flags the tree (a content pass)', async () => {
    const w = coarseWorld();
    w.change('a');
    const census = { entryCount: 1, ctimeMaxNs: w.census().ctimeMaxNs + 3600n * 1_000_000_000n };
    const b = await sealBoundary(census.ctimeMaxNs, w.clock, 50);
    expect(b.above).toBe(false);
    expect(b.probes).toBeLessThan(100);
    expect(censusMismatch(sealOf(census, b.boundaryNs), census)).toMatch(/boundary/);
  });

  it('a version 1 seal (no boundary) is a mismatch; count and newer ctime still are', () => {
    const census = { entryCount: 3, ctimeMaxNs: 5_000_000n };
    expect(censusMismatch(sealOf(census, undefined), census)).toMatch(/no ctime boundary/);
    const seal = sealOf(census, 9_000_000n);
    expect(censusMismatch(seal, census)).toBeNull();
    expect(censusMismatch(seal, { ...census, entryCount: 4 })).toMatch(/entries/);
    expect(censusMismatch(seal, { ...census, ctimeMaxNs: 5_000_001n })).toMatch(/newer ctime/);
  });

  it('the probe file clock on a real tree: every edit right after the seal is caught, a clean tree matches', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'seal-'));
    dirs.push(root);
    const tree = path.join(root, 'ddfsroot');
    const mirror = path.join(root, 'ddfsmirror');
    fs.mkdirSync(tree);
    fs.mkdirSync(mirror);
    for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(tree, `f${i}`), `x${i}`);
    const clock = probeFileClock(mirror);
    for (let round = 0; round < 30; round++) {
      fs.writeFileSync(path.join(tree, 'f0'), `r${round % 10}`); // the newest entry, just now
      const census = treeCensus(Buffer.from(tree), 64);
      const b = await sealBoundary(census.ctimeMaxNs, clock);
      expect(b.above).toBe(true);
      const seal = sealOf(census, b.boundaryNs);
      expect(censusMismatch(seal, treeCensus(Buffer.from(tree), 64))).toBeNull();
      // rewrite another file in place at once: same size, same count
      const fd = fs.openSync(path.join(tree, `f${1 + (round % 4)}`), 'r+');
      fs.writeSync(fd, 'y', 0);
      fs.closeSync(fd);
      const after = treeCensus(Buffer.from(tree), 64);
      expect(after.entryCount).toBe(census.entryCount);
      expect(censusMismatch(seal, after), `round ${round}`).not.toBeNull();
    }
    expect(fs.lstatSync(path.join(mirror, 'seal.probe')).isFile()).toBe(true);
  });
});
