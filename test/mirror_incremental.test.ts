/**
 * Incremental mirror passes by TID (issue 8 item 3; mirroring spec §4.4, §4.6, §4.18 inv. 1, 2, 7, 8, §5 scenarios
 * 2, 10, 11, 12): a master whose tree changes go through its write-ahead journal (openMasterJournal's sink on the
 * volume's tree, data writes through beforeWrite as the daemon's ops do), closed cleanly (sealed) between runs of
 * changes, then a pass from the unmounted master (its journal read offline, nothing written).
 *
 * Model test (fast-check): random tree ops (write, overwrite, delete, rename over or into a directory, swap through a
 * temporary name, a directory moved under its former child, file -> directory at one name, mkdir, rmdir, chmod)
 * interleaved with passes. An oracle snapshots the model at every TID. After each pass: the first is a content pass
 * (no TID claim yet), every later one incremental over exactly (claim, head]; the claim is exact@head (the master was
 * quiescent) and the slave's tree equals the oracle's snapshot at that TID (inv. 2); verify is empty (inv. 1); a pass
 * with nothing changed is IDLE and sends no file (inv. 7).
 *
 * Scenarios: a generation bump and a claim older than the journal's retention get a content pass; a change made
 * behind the journal's back (a dropped record) is not sent by an incremental pass but shows in verify, and the next
 * content pass repairs it (scenario 12); changes at tid_beg and tid_end are covered.
 *
 * Seeds: DDUMBFS_SEED=<n> replays; DDUMBFS_RUNS=<n>; DDUMBFS_SOAK=1 runs 2000 (CI: 300).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { initSlave } from '../src/mirror/copy.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Crc32c } from '../src/mirror/crc32c.js';
import { encodeJournalRecord, JOURNAL_DIRECTORY, JOURNAL_HEADER_SIZE, JOURNAL_MAGIC, readJournalOffline } from '../src/mirror/journal.js';
import { fileDevices } from '../src/io/device.js';
import { openMasterJournal, readSeal, type MasterJournal } from '../src/mirror/master_journal.js';
import { bumpMasterGeneration, claimTid, masterState, readMirrorState } from '../src/mirror/state.js';
import { openPassVolume } from '../src/mirror/pass_volume.js';
import { mirrorStatus, renderStatusLines } from '../src/mirror/status.js';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import type { TreeAccess } from '../src/mirror/digest.js';
import { renderSummary, type PassSummary } from '../src/mirror/pass_master.js';
import { DdfsError } from '../src/errors.js';
import { MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX } from '../src/limits.js';
import type { RecordInput } from '../src/mirror/stream_codec.js';
import { Volume } from '../src/volume/volume.js';
import { logger } from '../src/util/log.js';
import { noiseBytes } from './helpers/bytes.js';
import { readAllFiles, twoWayPass, walkRoot } from './helpers/mirror_harness.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { SELF } from './helpers/ufs_model.js';
import { verifyInProcess } from './helpers/ufs_tree.js';

const BS = 512;
const SOAK = process.env.DDUMBFS_SOAK === '1';
const RUNS = Number(process.env.DDUMBFS_RUNS ?? (SOAK ? 2000 : 300));
const SEED = process.env.DDUMBFS_SEED !== undefined ? Number(process.env.DDUMBFS_SEED) : (Date.now() ^ (process.pid << 8)) >>> 1;
const live: TempVolume[] = [];
afterAll(async () => {
  for (const v of live) await v.cleanup();
});

const NAMES = ['a', 'b', 'B', 'caf\xe9', '\xff'].map((n) => Buffer.from(n, 'latin1'));
const POOL = [1, 2, 3].map((s) => noiseBytes(s, BS));
const MODES = [0o600, 0o644, 0o755];

type Entry = { kind: 'dir'; mode: number } | { kind: 'file'; content: Buffer; mode: number };
type Model = Map<string, Entry>;
const bytesOf = (k: string): Buffer => Buffer.from(k, 'latin1');
const parentKey = (k: string): string => (k.lastIndexOf('/') < 0 ? '' : k.slice(0, k.lastIndexOf('/')));
const join = (dir: string, name: Buffer): string => (dir === '' ? name.toString('latin1') : `${dir}/${name.toString('latin1')}`);
const under = (k: string, dir: string): boolean => k.startsWith(`${dir}/`);
const sorted = (m: Model, pred: (k: string, e: Entry) => boolean): string[] => [...m.keys()].filter((k) => pred(k, m.get(k)!)).sort();
const dirs = (m: Model): string[] => ['', ...sorted(m, (_k, e) => e.kind === 'dir')];
const children = (m: Model, d: string): string[] => [...m.keys()].filter((k) => parentKey(k) === d);
const pick = <T>(xs: T[], n: number): T | undefined => (xs.length === 0 ? undefined : xs[n % xs.length]);
function moveKeys(m: Model, from: string, to: string): void {
  const moved = [...m.entries()].filter(([k]) => k === from || under(k, from));
  for (const [k] of moved) m.delete(k);
  for (const [k, e] of moved) m.set(to + k.slice(from.length), e);
}
const clone = (m: Model): Model => new Map([...m].map(([k, e]) => [k, e.kind === 'file' ? { ...e, content: Buffer.from(e.content) } : { ...e }]));

/** A master opened as its daemon would: every tree change and the first write of a file journaled first. */
interface Master {
  v: Volume;
  mj: MasterJournal;
  /** A data write journaled as ops.ts does (one record per file per window; each call a new file key here). */
  write(k: string, offset: number, data: Buffer): Promise<void>;
}
let fileKey = 0n;
async function withMaster<T>(parent: string, fn: (m: Master) => Promise<T>): Promise<T> {
  const v = await Volume.open(parent);
  const mj = (await openMasterJournal(parent, { crashed: false, rootDir: v.rootDir, logger }))!;
  v.tree.sink = mj.sink;
  const write = async (k: string, offset: number, data: Buffer): Promise<void> => {
    await mj.sink.beforeWrite?.(++fileKey, bytesOf(k));
    const f = await v.openTreeFile(bytesOf(k), {});
    try {
      await f.write(offset, data);
    } finally {
      await f.close();
    }
  };
  try {
    return await fn({ v, mj, write });
  } finally {
    v.tree.sink = null;
    await mj.close(true);
    await v.close();
  }
}

type Op =
  | { t: 'write'; pick: number; dir: number; name: number; fresh: boolean; block: number; at: number }
  | { t: 'delete'; pick: number }
  | { t: 'rename'; pick: number; dir: number; name: number; over: boolean }
  | { t: 'swap'; a: number; b: number }
  | { t: 'underChild'; pick: number }
  | { t: 'fileToDir'; pick: number }
  | { t: 'mkdir'; dir: number; name: number }
  | { t: 'chmod'; pick: number; mode: number }
  | { t: 'pass' };
const nat = (max: number) => fc.nat({ max });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('write' as const), pick: nat(30), dir: nat(30), name: nat(NAMES.length - 1), fresh: fc.boolean(), block: nat(POOL.length - 1), at: nat(2) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('delete' as const), pick: nat(30) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('rename' as const), pick: nat(30), dir: nat(30), name: nat(NAMES.length - 1), over: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('swap' as const), a: nat(30), b: nat(30) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('underChild' as const), pick: nat(30) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('fileToDir' as const), pick: nat(30) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('mkdir' as const), dir: nat(30), name: nat(NAMES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('chmod' as const), pick: nat(30), mode: nat(MODES.length - 1) }) },
  { weight: 3, arbitrary: fc.constant({ t: 'pass' as const }) },
);

async function removeTree(v: Volume, m: Model, k: string): Promise<void> {
  if (m.get(k)!.kind === 'dir') {
    for (const c of children(m, k)) await removeTree(v, m, c);
    await v.tree.rmdir(bytesOf(k));
  } else {
    await v.tree.unlink(bytesOf(k));
  }
  m.delete(k);
}

async function applyOp(ms: Master, m: Model, op: Exclude<Op, { t: 'pass' }>): Promise<string> {
  const v = ms.v;
  const free = (dir: string, n: number): string | undefined => {
    for (let i = 0; i < NAMES.length; i++) {
      const k = join(dir, NAMES[(n + i) % NAMES.length]!);
      if (!m.has(k)) return k;
    }
    return undefined;
  };
  switch (op.t) {
    case 'write': {
      let k = op.fresh ? undefined : pick(sorted(m, (_k, e) => e.kind === 'file'), op.pick);
      if (k === undefined) {
        k = free(pick(dirs(m), op.dir)!, op.name);
        if (k === undefined) return 'write: no name';
        await v.tree.createFile(bytesOf(k), 0o644, SELF, true);
        m.set(k, { kind: 'file', content: Buffer.alloc(0), mode: 0o644 });
      }
      const e = m.get(k) as Extract<Entry, { kind: 'file' }>;
      await ms.write(k, op.at * BS, POOL[op.block]!);
      const c = Buffer.alloc(Math.max(e.content.length, (op.at + 1) * BS));
      e.content.copy(c);
      POOL[op.block]!.copy(c, op.at * BS);
      e.content = c;
      return `write ${k}`;
    }
    case 'delete': {
      const k = pick(sorted(m, () => true), op.pick);
      if (k === undefined) return 'delete: nothing';
      await removeTree(v, m, k);
      return `delete ${k}`;
    }
    case 'rename': {
      const src = pick(sorted(m, () => true), op.pick);
      if (src === undefined) return 'rename: nothing';
      const e = m.get(src)!;
      let dest = op.over ? pick(sorted(m, (k, d) => k !== src && !under(k, src) && !under(src, k)
        && (e.kind === 'dir' ? d.kind === 'dir' && children(m, k).length === 0 : d.kind !== 'dir')), op.pick) : undefined;
      if (dest === undefined) {
        const d = pick(dirs(m).filter((x) => x !== src && !under(x, src)), op.dir);
        dest = d === undefined ? undefined : free(d, op.name);
      }
      if (dest === undefined) return 'rename: no target';
      await v.tree.rename(bytesOf(src), bytesOf(dest));
      m.delete(dest);
      moveKeys(m, src, dest);
      return `rename ${src} -> ${dest}`;
    }
    case 'swap': {
      const all = sorted(m, () => true);
      const a = pick(all, op.a);
      const b = pick(all, op.b);
      if (a === undefined || b === undefined || a === b || under(a, b) || under(b, a)) return 'swap: no pair';
      const tmp = free(parentKey(a), 0);
      if (tmp === undefined) return 'swap: no name';
      await v.tree.rename(bytesOf(a), bytesOf(tmp));
      moveKeys(m, a, tmp);
      await v.tree.rename(bytesOf(b), bytesOf(a));
      moveKeys(m, b, a);
      await v.tree.rename(bytesOf(tmp), bytesOf(b));
      moveKeys(m, tmp, b);
      return `swap ${a} ${b}`;
    }
    case 'underChild': {
      const d = pick(sorted(m, (k, e) => e.kind === 'dir' && children(m, k).some((c) => m.get(c)!.kind === 'dir')), op.pick);
      if (d === undefined) return 'underChild: none';
      const c = children(m, d).filter((x) => m.get(x)!.kind === 'dir').sort()[0]!;
      const up = free(parentKey(d), op.pick);
      if (up === undefined) return 'underChild: no name';
      await v.tree.rename(bytesOf(c), bytesOf(up));
      moveKeys(m, c, up);
      const down = join(up, bytesOf(d.slice(d.lastIndexOf('/') + 1)));
      if (m.has(down)) return 'underChild: half';
      await v.tree.rename(bytesOf(d), bytesOf(down));
      moveKeys(m, d, down);
      return `underChild ${d} -> ${down}`;
    }
    case 'fileToDir': {
      const k = pick(sorted(m, (_k, e) => e.kind === 'file'), op.pick);
      if (k === undefined) return 'fileToDir: none';
      await v.tree.unlink(bytesOf(k));
      await v.tree.mkdir(bytesOf(k), 0o755, SELF);
      m.set(k, { kind: 'dir', mode: 0o755 });
      return `fileToDir ${k}`;
    }
    case 'mkdir': {
      const k = free(pick(dirs(m), op.dir)!, op.name);
      if (k === undefined) return 'mkdir: no name';
      await v.tree.mkdir(bytesOf(k), 0o755, SELF);
      m.set(k, { kind: 'dir', mode: 0o755 });
      return `mkdir ${k}`;
    }
    case 'chmod': {
      const k = pick(sorted(m, () => true), op.pick);
      if (k === undefined) return 'chmod: none';
      await v.tree.chmod(bytesOf(k), MODES[op.mode]!);
      m.get(k)!.mode = MODES[op.mode]!;
      return `chmod ${k}`;
    }
  }
}

/** What the slave's tree is: path -> kind, mode, content (files). */
async function treeOf(parent: string): Promise<Map<string, string>> {
  const files = await readAllFiles(parent);
  const out = new Map<string, string>();
  for (const { rel, st } of walkRoot(parent)) {
    const k = rel.toString('latin1');
    out.set(k, st.isDirectory() ? `dir ${(st.mode & 0o7777).toString(8)}` : `file ${(st.mode & 0o7777).toString(8)} ${files.get(k)!.toString('hex')}`);
  }
  return out;
}
function modelTree(m: Model): Map<string, string> {
  return new Map([...m].map(([k, e]) => [k, e.kind === 'dir' ? `dir ${e.mode.toString(8)}` : `file ${e.mode.toString(8)} ${e.content.toString('hex')}`]));
}
function treeDiff(a: Map<string, string>, b: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [k, x] of a) if (b.get(k) !== x) lines.push(`${JSON.stringify(k)}: ${x.slice(0, 40)} vs ${b.get(k)?.slice(0, 40)}`);
  for (const k of b.keys()) if (!a.has(k)) lines.push(`${JSON.stringify(k)}: missing vs ${b.get(k)!.slice(0, 40)}`);
  return lines;
}

async function pair(): Promise<{ master: string; slave: string }> {
  const mv = await makeTempVolume({ blockSize: BS, size: '1M' });
  const sv = await makeTempVolume({ blockSize: BS, size: '1M' });
  live.push(mv, sv);
  masterState(mv.parent);
  // a first clean mount: the journal and its seal exist (this first one bumps the generation: no seal yet)
  await withMaster(mv.parent, async () => undefined);
  await initSlave(sv.parent, mv.parent);
  return { master: mv.parent, slave: sv.parent };
}

async function runCase(ops: Op[]): Promise<void> {
  const { master, slave } = await pair();
  const model: Model = new Map();
  /** The oracle: the model after every TID (§4.18 inv. 2). */
  const oracle = new Map<bigint, Model>();
  const log: string[] = [];
  let passes = 0;
  let i = 0;
  const pass = async (): Promise<void> => {
    const before = readMirrorState(slave)!.claim;
    const r = await twoWayPass(master, slave, { checkpointRecordCount: 3 });
    expect(r.masterError, `pass after ${log.join(' | ')}`).toBeNull();
    expect(r.slaveError).toBeNull();
    const s = r.master!;
    const st = readMirrorState(slave)!;
    const head = BigInt(readMirrorState(master)!.durableHead ?? '0');
    expect(s.tidEnd, 'a pass covers the durable head at its start, never above it (inv. 8)').toBe(head);
    expect(claimTid(st.claim)).toBe(head);
    // a TID claim of 0 is no TID claim (nothing was ever journaled): a content pass again
    if (passes === 0 || claimTid(before) === 0n) expect(s.passKind).toBe('content');
    else {
      expect(s.passKind, `pass ${passes}: ${s.contentReason}`).toBe('incremental');
      expect(s.tidBeg).toBe(claimTid(before) + 1n);
    }
    expect(st.claim!.claimKind, 'the master was quiescent: exact').toBe('exact');
    // exact@T: the slave's tree is the master's at T (inv. 2), the latest snapshot at or below T
    let at: Model = new Map();
    for (const [tid, snap] of oracle) if (tid <= head) at = snap;
    expect(treeDiff(await treeOf(slave), modelTree(at)), `exact@${head} after ${log.join(' | ')}`).toEqual([]);
    expect((await verifyInProcess(master, slave)).lines, `verify after ${log.join(' | ')}`).toEqual([]);
    passes++;
    log.push(`pass ${s.passKind} ${s.tidBeg}..${s.tidEnd} sent ${s.filesSent}`);
  };
  while (i < ops.length) {
    if (ops[i]!.t === 'pass') {
      i++;
      await pass();
      continue;
    }
    await withMaster(master, async (ms) => {
      while (i < ops.length && ops[i]!.t !== 'pass') {
        log.push(await applyOp(ms, model, ops[i++] as Exclude<Op, { t: 'pass' }>));
        oracle.set(ms.mj.journal.durableHead, clone(model));
      }
    });
  }
  await pass();
  // nothing changed: IDLE, no file sent (inv. 7)
  const again = await twoWayPass(master, slave);
  if (claimTid(readMirrorState(slave)!.claim) === 0n) return;
  expect(again.master!.passKind).toBe('incremental');
  expect(again.m2s.records.some((r) => r.type === 'IDLE')).toBe(true);
  expect(again.master!.filesSent).toBe(0);
}

describe('incremental passes by TID', () => {
  it(`random journaled changes and passes: incremental over (claim, head], exact claims sound, verify empty (${RUNS} runs)`, async () => {
    console.log(`mirror incremental: seed ${SEED}, ${RUNS} runs (replay: DDUMBFS_SEED=${SEED})`);
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 3, maxLength: 14 }), (ops) => runCase(ops)), { seed: SEED, numRuns: RUNS, path: process.env.DDUMBFS_PATH });
  }, 3_600_000);
});

describe('incremental pass scenarios', () => {
  /** A pair with a first content pass done (a TID claim > 0) after `setup` ran on the master. */
  async function claimed(): Promise<{ master: string; slave: string }> {
    const p = await pair();
    await withMaster(p.master, async (ms) => {
      await ms.v.tree.mkdir(bytesOf('d'), 0o755, SELF);
      await ms.v.tree.createFile(bytesOf('d/f'), 0o644, SELF, true);
      await ms.write('d/f', 0, POOL[0]!);
      await ms.v.tree.createFile(bytesOf('g'), 0o644, SELF, true);
    });
    const r = await twoWayPass(p.master, p.slave);
    expect(r.master!.passKind).toBe('content');
    expect(claimTid(readMirrorState(p.slave)!.claim)).toBeGreaterThan(0n);
    return p;
  }

  /**
   * The pass after an edit behind the journal of the sealed, unmounted master: it starts incremental (the seal's
   * census runs beside it) and is refused at its COMMIT (spec §4.3): the slave's claim is not advanced and its pass is
   * left pending; the seal is dropped, so the next pass is a content pass, after which the pair is equal.
   * @returns the refused pass's master error message and the content pass's summary
   */
  async function refusedThenContent(master: string, slave: string, what: string): Promise<{ refusal: string; content: PassSummary }> {
    const before = readMirrorState(slave)!.claim;
    const modes: string[] = [];
    const r = await twoWayPass(master, slave, { onMasterRecord: (x) => { if (x.type === 'PASS_BEGIN') modes.push(x.mode); } });
    expect(r.master, `${what}: the pass was committed`).toBeNull();
    expect(modes, what).toEqual(['incremental']);
    expect(r.m2s.records.some((x) => x.type === 'COMMIT'), what).toBe(false);
    expect(r.m2s.records.some((x) => x.type === 'ERROR'), what).toBe(true);
    const refusal = (r.masterError as Error).message;
    expect(refusal, what).toMatch(/does not prove the tree since the seal .*the incremental pass is not committed/);
    expect(((r.masterError as DdfsError).data as { contentPassNext?: boolean }).contentPassNext, what).toBe(true);
    const after = readMirrorState(slave)!;
    expect(after.claim, `${what}: the claim moved`).toEqual(before);
    expect(after.pass, what).not.toBeNull();
    expect(readSeal(master), `${what}: the seal stays`).toBeNull();
    const c = await twoWayPass(master, slave);
    expect(c.master?.passKind, `${what}: ${String(c.masterError ?? c.slaveError)}`).toBe('content');
    expect((await verifyInProcess(master, slave)).lines, what).toEqual([]);
    return { refusal, content: c.master! };
  }

  it('one change: an incremental pass of exactly that TID (tid_beg = tid_end), sending only it', async () => {
    const { master, slave } = await claimed();
    const t = claimTid(readMirrorState(slave)!.claim);
    await withMaster(master, (ms) => ms.write('g', BS, POOL[1]!));
    const r = await twoWayPass(master, slave);
    expect(r.master!.passKind).toBe('incremental');
    expect([r.master!.tidBeg, r.master!.tidEnd]).toEqual([t + 1n, t + 1n]);
    expect(r.master!.filesSent).toBe(1);
    expect(r.m2s.records.filter((x) => x.type === 'FILE_BEGIN').length).toBe(1);
    expect(readMirrorState(slave)!.claim).toMatchObject({ kind: 'incremental', claimKind: 'exact', syncEndTid: String(t + 1n) });
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    // status names the claim's TID and generation
    const gen = readMirrorState(master)!.generation;
    expect(renderStatusLines(await mirrorStatus(slave), slave)).toContain(`claim: exact@${t + 1n}, generation ${gen}, incremental pass at ${readMirrorState(slave)!.claim!.time} (pass ${readMirrorState(slave)!.claim!.passId})`);
  });

  it('dirty small files in several directories go without a DIGESTQ, in one HASHQ window; a large dirty file is asked first', async () => {
    const { master, slave } = await claimed();
    const big = noiseBytes(7, BS * (MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX + 6));
    await withMaster(master, async (ms) => {
      await ms.v.tree.mkdir(bytesOf('e'), 0o755, SELF);
      await ms.v.tree.createFile(bytesOf('e/big'), 0o644, SELF, true);
      await ms.write('e/big', 0, big);
    });
    expect((await twoWayPass(master, slave)).master!.passKind).toBe('incremental');
    const watched = () => {
      const w = { asked: [] as string[], hashq: [] as number[] };
      return { w, onMasterRecord: (x: RecordInput) => {
        if (x.type === 'DIGESTQ') w.asked.push(x.path.toString('latin1'));
        if (x.type === 'HASHQ') w.hashq.push(x.hashes.length);
      } };
    };
    await withMaster(master, async (ms) => {
      await ms.write('d/f', 0, POOL[1]!);
      await ms.write('g', 0, POOL[2]!);
      await ms.write('e/big', BS, POOL[0]!);
    });
    const one = watched();
    const r = await twoWayPass(master, slave, { onMasterRecord: one.onMasterRecord });
    expect(r.master!.passKind).toBe('incremental');
    expect(r.master!.filesSent).toBe(3);
    // only the file whose node list is worth a round trip is asked; the three files' new blocks in one window
    expect(one.w.asked).toEqual(['e/big']);
    expect(one.w.hashq.filter((n) => n > 0)).toHaveLength(1);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    const files = await readAllFiles(slave);
    expect(files.get('d/f')).toEqual(POOL[1]);
    expect(files.get('e/big')).toEqual(Buffer.concat([big.subarray(0, BS), POOL[0]!, big.subarray(2 * BS)]));
    // a small file rewritten with the bytes it had: sent unasked, applied as the no-op it is
    await withMaster(master, (ms) => ms.write('g', 0, POOL[2]!));
    const two = watched();
    const again = await twoWayPass(master, slave, { onMasterRecord: two.onMasterRecord });
    expect(again.master!.passKind).toBe('incremental');
    expect(two.w.asked).toEqual([]);
    expect(again.master!.filesSent).toBe(1);
    expect(again.master!.blocksSent).toBe(0);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('a generation bump (an offline writer) gets a content pass', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o600));
    bumpMasterGeneration(master);
    const r = await twoWayPass(master, slave);
    expect(r.master!.passKind).toBe('content');
    expect(r.master!.contentReason).toMatch(/generation/);
    expect(readMirrorState(slave)!.claim).toMatchObject({ kind: 'content', generation: readMirrorState(master)!.generation });
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('a claim older than the journal\'s oldest TID (retention) gets a content pass', async () => {
    const { master, slave } = await claimed();
    const t = claimTid(readMirrorState(slave)!.claim);
    await withMaster(master, async (ms) => {
      await ms.v.tree.chmod(bytesOf('g'), 0o600);
      await ms.v.tree.mkdir(bytesOf('e'), 0o700, SELF);
    });
    // retention dropped TID t + 1: the journal holds t + 2 .. head only
    const mirrorDir = path.join(master, 'ddfsmirror');
    const head = BigInt(readMirrorState(master)!.durableHead!);
    const view = (await readJournalOffline(mirrorDir, fileDevices, head))!;
    const kept = await view.readRange(t + 1n, head);
    const crc = await Crc32c.load();
    const header = Buffer.alloc(JOURNAL_HEADER_SIZE);
    JOURNAL_MAGIC.copy(header);
    header.writeBigUInt64LE(t + 2n, 8);
    const seg = path.join(mirrorDir, JOURNAL_DIRECTORY, '00000001.jnl');
    expect(fs.existsSync(seg)).toBe(true);
    fs.writeFileSync(seg, Buffer.concat([header, ...kept.map((r) => encodeJournalRecord(crc, r))]));
    const r = await twoWayPass(master, slave);
    expect(r.masterError).toBeNull();
    expect(r.master!.passKind).toBe('content');
    expect(r.master!.contentReason).toMatch(/older than the journal/);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('a sealed master whose ddfsroot was edited while unmounted (a newer ctime, another entry count) is not committed incrementally, then gets a content pass (spec §4.3)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o640)); // a seal naming a TID
    // at once, no wait for the coarse clock: the seal's ctime boundary catches an edit in the tick of its newest ctime
    fs.chmodSync(path.join(master, 'ddfsroot', 'd', 'f'), 0o600); // behind the journal: no record
    const r = await refusedThenContent(master, slave, 'chmod');
    expect(r.refusal).toMatch(/changed while unmounted/);
    expect(r.content.contentReason).toMatch(/resumes a pass|no seal/);
    // the same edit kind by entry count: a directory made by hand
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o644));
    await twoWayPass(master, slave); // the mount after the dropped seal bumped the generation: a content pass
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o640));
    expect((await twoWayPass(master, slave)).master!.passKind).toBe('incremental');
    fs.mkdirSync(path.join(master, 'ddfsroot', 'by-hand'));
    fs.utimesSync(path.join(master, 'ddfsroot', 'by-hand'), 0, 0);
    const c = await refusedThenContent(master, slave, 'mkdir');
    expect(c.refusal).toMatch(/entries, the seal counted/);
    // with the tree as sealed again, the journal is trusted: a content pass that sets a TID claim, then incremental
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o600));
    const t = await twoWayPass(master, slave);
    expect(t.master!.contentReason).toMatch(/no TID claim/);
    expect(claimTid(readMirrorState(slave)!.claim)).toBeGreaterThan(0n);
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o644));
    const n = await twoWayPass(master, slave);
    expect(n.master!.passKind, `${n.master!.contentReason}`).toBe('incremental');
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('offline edits of ddfsroot by a tool that does not journal (ddumbfs 1.1 cpddumbfs, a hand edit) are not committed incrementally, then get a content pass: a UFS file rewritten in place, a new file in a deep directory, a rename (spec §4.3)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, async (ms) => {
      await ms.v.tree.mkdir(bytesOf('d/deep'), 0o755, SELF);
      await ms.v.tree.mkdir(bytesOf('d/deep/er'), 0o755, SELF);
      await ms.v.tree.createFile(bytesOf('d/deep/er/h'), 0o644, SELF, true);
      await ms.write('d/deep/er/h', 0, POOL[1]!);
    });
    const root = path.join(master, 'ddfsroot');
    const edits: Array<[string, () => void]> = [
      ['in place', () => {
        // the UFS file of d/f gets the node list of d/deep/er/h, written over its bytes: no directory changes
        const other = fs.readFileSync(path.join(root, 'd', 'deep', 'er', 'h'));
        const fd = fs.openSync(path.join(root, 'd', 'f'), 'r+');
        fs.writeSync(fd, other, 0, other.length, 0);
        fs.ftruncateSync(fd, other.length);
        fs.closeSync(fd);
      }],
      ['new deep file', () => fs.copyFileSync(path.join(root, 'd', 'f'), path.join(root, 'd', 'deep', 'er', 'new'))],
      ['rename', () => fs.renameSync(path.join(root, 'd', 'deep', 'er', 'new'), path.join(root, 'd', 'moved'))],
    ];
    for (const [what, edit] of edits) {
      await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o600)); // a seal naming a TID
      const t = await twoWayPass(master, slave);
      expect(t.master!.passKind, `${what}: ${t.master!.contentReason}`).toBe('incremental');
      // at once, no wait for the coarse clock: the seal's ctime boundary catches an edit in the tick of its newest ctime
      edit();
      expect((await refusedThenContent(master, slave, what)).refusal, what).toMatch(/changed while unmounted/);
      // the content pass bumped nothing on the master: the next mount sees the tree the seal does not, and bumps it
      await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o644));
      await twoWayPass(master, slave);
    }
  });

  it('the seal census runs beside the incremental pass and is awaited before COMMIT: an offline edit it finds leaves the claim where it was, though the journaled change was already sent; the content pass that follows makes the pair equal (spec §4.3, §4.6)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, (ms) => ms.write('d/f', 0, POOL[2]!)); // journaled: the dirty path of the pass
    fs.chmodSync(path.join(master, 'ddfsroot', 'g'), 0o600); // behind the journal: only the census sees it
    const claimBefore = readMirrorState(slave)!.claim;
    /** The records the master had sent when the pass first asked for the census's verdict. */
    let sentAtVerdict: string[] | null = null;
    const sent: string[] = [];
    const r = await twoWayPass(master, slave, {
      onMasterRecord: (rec) => sent.push(rec.type),
      masterVolume: (v) => {
        const proof = v.journalProof!.bind(v);
        v.journalProof = async () => {
          sentAtVerdict ??= [...sent];
          return proof();
        };
      },
    });
    expect(r.master).toBeNull();
    expect((r.masterError as Error).message).toMatch(/changed while unmounted.*not committed/);
    // the verdict was asked for at the COMMIT gate: after the dirty file went out, before any COMMIT
    expect(sentAtVerdict).toContain('FILE_BEGIN');
    expect(sentAtVerdict).not.toContain('COMMIT');
    expect(r.m2s.records.map((x) => x.type)).not.toContain('COMMIT');
    const s1 = readMirrorState(slave)!;
    expect(s1.claim).toEqual(claimBefore);
    expect(s1.pass).not.toBeNull();
    expect(readSeal(master)).toBeNull(); // dropped: every later pass is a content pass at once
    const c = await twoWayPass(master, slave);
    expect(c.master!.passKind).toBe('content');
    expect(readMirrorState(slave)!.pass).toBeNull();
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'g')).mode & 0o777).toBe(0o600);
  });

  it('a census that does not complete (its thread died) proves nothing: the incremental pass is not committed and the seal stays; the replica\'s next pass is a content pass (spec §4.3)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, (ms) => ms.write('d/f', 0, POOL[1]!));
    const claimBefore = readMirrorState(slave)!.claim;
    const r = await twoWayPass(master, slave, {
      masterVolume: (v) => {
        const proof = v.journalProof!.bind(v);
        v.journalProof = async () => {
          await proof(); // the real census matched (nothing was edited), then its thread is taken for dead
          return 'the census of ddfsroot did not complete (the census thread ended (exit code 1) before its census)';
        };
      },
    });
    expect(r.master).toBeNull();
    expect((r.masterError as Error).message).toMatch(/did not complete.*not committed/);
    expect(readMirrorState(slave)!.claim).toEqual(claimBefore);
    expect(readSeal(master)).not.toBeNull();
    const c = await twoWayPass(master, slave);
    expect(c.master!.passKind).toBe('content');
    expect(c.master!.contentReason).toMatch(/resumes a pass/);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    // the journal is trusted again from the pass after: incremental
    await withMaster(master, (ms) => ms.v.tree.chmod(bytesOf('g'), 0o640));
    const n = await twoWayPass(master, slave);
    expect(n.master?.passKind, String(n.masterError)).toBe(c.master!.tidEnd > 0n ? 'incremental' : 'content');
  });

  /** nodeTreeAccess counting the lstat calls of byte paths under `<parent>/ddfsroot/<sub>/`. */
  function countingAccess(parent: string, sub: string): { access: TreeAccess; count: () => number } {
    const prefix = Buffer.from(path.join(path.resolve(parent), 'ddfsroot', sub) + '/');
    let n = 0;
    const access: TreeAccess = {
      lstat: (p) => {
        if (p.length >= prefix.length && p.subarray(0, prefix.length).equals(prefix)) n++;
        return nodeTreeAccess.lstat(p);
      },
      readlink: (p) => nodeTreeAccess.readlink(p),
    };
    return { access, count: () => n };
  }

  it('an incremental pass never lists, stats nor digests an untouched subtree, on either side (issue 8 item 3)', async () => {
    const { master, slave } = await claimed();
    // an untouched subtree of 3 levels with files, mirrored by a first incremental pass
    await withMaster(master, async (ms) => {
      await ms.v.tree.mkdir(bytesOf('u'), 0o755, SELF);
      await ms.v.tree.mkdir(bytesOf('u/k'), 0o755, SELF);
      for (let n = 0; n < 12; n++) {
        await ms.v.tree.createFile(bytesOf(`u/k/x${n}`), 0o644, SELF, true);
        await ms.write(`u/k/x${n}`, 0, POOL[n % POOL.length]!);
      }
    });
    // the control (the seam does count): u/ is dirty in this pass, its subtree is digested
    const control = countingAccess(master, 'u');
    const first = await twoWayPass(master, slave, { masterAccess: control.access });
    expect(first.master!.passKind).toBe('incremental');
    expect(control.count()).toBeGreaterThanOrEqual(13);
    // changes outside u/: a file rewritten, a file created, a directory renamed
    await withMaster(master, async (ms) => {
      await ms.write('g', 0, POOL[2]!);
      await ms.v.tree.createFile(bytesOf('new'), 0o644, SELF, true);
      await ms.write('new', 0, POOL[1]!);
      await ms.v.tree.rename(bytesOf('d'), bytesOf('d2'));
    });
    const m = countingAccess(master, 'u');
    const sl = countingAccess(slave, 'u');
    const sent: string[] = [];
    const r = await twoWayPass(master, slave, { masterAccess: m.access, slaveAccess: sl.access, onMasterRecord: (x) => {
      if (x.type === 'FILE_BEGIN') sent.push(x.path.toString('latin1'));
    } });
    expect(r.masterError).toBeNull();
    expect(r.slaveError).toBeNull();
    expect(r.master!.passKind, `${r.master!.contentReason}`).toBe('incremental');
    expect(m.count(), 'master lstat calls under u/').toBe(0);
    expect(sl.count(), 'slave lstat calls under u/').toBe(0);
    // the rename is a RENAME hint taken from the journal (the slave found none: no walk): d/f is not sent again
    expect(r.master!.renamesSent).toBe(1);
    expect(r.master!.renamesMatched).toBe(1);
    expect(sent).toEqual(['g', 'new']);
    expect(r.master!.filesSent).toBe(2);
    expect(treeDiff(await treeOf(slave), await treeOf(master))).toEqual([]);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('a directory on the way with 1000 subdirectories and one dirty below: one lstat of its entries, not 1000 (issue 8)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, async (ms) => {
      await ms.v.tree.mkdir(bytesOf('w'), 0o755, SELF);
      for (let k = 0; k < 1000; k++) await ms.v.tree.mkdir(bytesOf(`w/d${k}`), 0o750, SELF);
      await ms.v.tree.createFile(bytesOf('w/d500/f'), 0o644, SELF, true);
      await ms.write('w/d500/f', 0, POOL[0]!);
    });
    expect((await twoWayPass(master, slave)).master!.passKind).toBe('incremental');
    // w/ is now only on the way to w/d500/f: listed by d_type, only w/d500 (visited below, its DIR meta) lstat'ed
    await withMaster(master, async (ms) => {
      await ms.write('w/d500/f', 0, POOL[1]!);
      await ms.v.tree.chmod(bytesOf('w/d500'), 0o700);
    });
    const prefix = Buffer.from(path.join(path.resolve(master), 'ddfsroot', 'w') + '/');
    const direct: string[] = [];
    let below = 0;
    const access: TreeAccess = {
      lstat: (p) => {
        if (p.length > prefix.length && p.subarray(0, prefix.length).equals(prefix)) {
          if (p.indexOf(0x2f, prefix.length) < 0) direct.push(p.subarray(prefix.length).toString('latin1'));
          else below++;
        }
        return nodeTreeAccess.lstat(p);
      },
      readlink: (p) => nodeTreeAccess.readlink(p),
    };
    const r = await twoWayPass(master, slave, { masterAccess: access });
    expect(r.masterError).toBeNull();
    expect(r.slaveError).toBeNull();
    expect(r.master!.passKind, `${r.master!.contentReason}`).toBe('incremental');
    // d500 only: once for the listing's DIR meta, once by the plan (is the chmod'ed path a directory?)
    expect([...new Set(direct)], 'master lstat calls of the entries of w/').toEqual(['d500']);
    expect(direct.length).toBeLessThanOrEqual(2);
    expect(below, 'master lstat calls below w/*/').toBeLessThanOrEqual(3);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'w', 'd500')).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.join(slave, 'ddfsroot', 'w')).length).toBe(1000);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('NEED: an entry the replica lacks although its claim covers it (deleted on the slave, a dropped record) is sent again within the incremental pass and counted as a divergence alarm (spec §4.8)', async () => {
    const { master, slave } = await claimed();
    // behind the mirror's back: the slave loses g; the master gains h/x without a journal record
    fs.rmSync(path.join(slave, 'ddfsroot', 'g'));
    await withMaster(master, async (ms) => {
      ms.v.tree.sink = null; // the dropped records
      await ms.v.tree.mkdir(bytesOf('h'), 0o755, SELF);
      await ms.v.tree.createFile(bytesOf('h/x'), 0o644, SELF, true);
      ms.v.tree.sink = ms.mj.sink;
      await ms.write('d/f', 0, POOL[2]!);
      // a journaled entry at the root: the root's entries changed in the range, so it is listed (DIRLIST)
      await ms.v.tree.createFile(bytesOf('n'), 0o644, SELF, true);
    });
    const reports: string[] = [];
    const r = await twoWayPass(master, slave, { report: (l) => reports.push(l) });
    expect(r.masterError).toBeNull();
    expect(r.slaveError).toBeNull();
    expect(r.master!.passKind).toBe('incremental');
    expect(r.s2m.records.filter((x) => x.type === 'NEED').length).toBe(1);
    expect(r.slave!.needsSent).toBe(2);
    expect(r.master!.divergenceAlarms).toBe(2);
    expect(reports.filter((l) => /divergence alarm/.test(l)).sort()).toEqual([
      'divergence alarm: the replica lacks g although its claim covers it: sent again',
      'divergence alarm: the replica lacks h although its claim covers it: sent again',
    ]);
    expect(renderSummary(r.master!)).toMatch(/2 divergence alarms/);
    expect(treeDiff(await treeOf(slave), await treeOf(master))).toEqual([]);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    // nothing lacked: no NEED, no alarm
    await withMaster(master, (ms) => ms.v.tree.createFile(bytesOf('n2'), 0o644, SELF, true).then(() => undefined));
    const again = await twoWayPass(master, slave);
    expect(again.master!.passKind).toBe('incremental');
    expect(again.m2s.records.some((x) => x.type === 'DIRLIST')).toBe(true);
    expect(again.s2m.records.some((x) => x.type === 'NEED')).toBe(false);
    expect(again.master!.divergenceAlarms).toBe(0);
  });

  it('a range of content and metadata changes lists no directory (spec §4.6 step 2: only a parent whose entries changed gets a DIRLIST); a loss on the slave beside them is left to verify and a content pass', async () => {
    const { master, slave } = await claimed();
    fs.rmSync(path.join(slave, 'ddfsroot', 'g')); // behind the mirror's back, in a directory on the way
    await withMaster(master, async (ms) => {
      await ms.write('d/f', 0, POOL[1]!);
      await ms.v.tree.chmod(bytesOf('d'), 0o700);
    });
    const r = await twoWayPass(master, slave);
    expect(r.masterError).toBeNull();
    expect(r.master!.passKind).toBe('incremental');
    // the root and d/ are on the way, and neither's entries changed: visited by name, no DIRLIST, no NEED
    expect(r.m2s.records.filter((x) => x.type === 'DIRLIST')).toEqual([]);
    expect(r.m2s.records.filter((x) => x.type === 'DIR').length).toBe(2);
    expect(r.master!.directoriesNamed).toBe(2);
    expect(r.s2m.records.some((x) => x.type === 'NEED')).toBe(false);
    expect(r.master!.divergenceAlarms).toBe(0);
    // what changed arrived
    const slaveFiles = await readAllFiles(slave);
    expect(slaveFiles.get('d/f')?.equals((await readAllFiles(master)).get('d/f')!)).toBe(true);
    expect(fs.statSync(path.join(slave, 'ddfsroot', 'd')).mode & 0o777).toBe(0o700);
    // the loss is not trusted away: verify names it, and a content pass puts it back
    expect((await verifyInProcess(master, slave)).lines.join('\n')).toMatch(/^MISSING "\/g"$/m);
    bumpMasterGeneration(master);
    const content = await twoWayPass(master, slave);
    expect(content.master!.passKind).toBe('content');
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('a change made behind the journal (a dropped record) is not trusted away: verify shows it, a content pass repairs it (scenario 12)', async () => {
    const { master, slave } = await claimed();
    await withMaster(master, async (ms) => {
      ms.v.tree.sink = null; // the missed stamp
      await ms.v.tree.chmod(bytesOf('d/f'), 0o600);
      ms.v.tree.sink = ms.mj.sink;
      await ms.v.tree.mkdir(bytesOf('h'), 0o755, SELF);
    });
    const r = await twoWayPass(master, slave);
    expect(r.master!.passKind).toBe('incremental');
    const lines = (await verifyInProcess(master, slave)).lines;
    expect(lines.join('\n')).toMatch(/d\/f/);
    bumpMasterGeneration(master);
    const c = await twoWayPass(master, slave);
    expect(c.master!.passKind).toBe('content');
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });
});
