/**
 * The mirror model test (issue 7; mirroring spec §4.17 "a property-based test generates operation sequences
 * interleaved with passes and crashes", §4.18 invariants 1, 3, 4, 6, 7, 9): fast-check draws a sequence of tree
 * operations applied to a master volume through the product's own code (Volume.tree and UfsFile, so node lists,
 * blocks and the index are real) — write, overwrite, truncate, rename of files and directories (over an existing
 * entry, a swap through a temporary name, a directory moved under its former child), delete, link, symlink,
 * mkdir/rmdir, chmod, chown, utimens — interleaved with passes: two-way, one-way through a buffer, two-way cut at a byte offset of
 * either direction, one-way cut (a slave "crash"), and reclaim on the master (reuse_asap or not) or on the slave
 * between passes. A model (path -> kind, inode content, mode) says what the master
 * must hold.
 *
 * Checked: at every cut, the claim is unchanged unless the COMMIT record arrived (inv. 3), invariant 6 holds on the
 * slave, and every slave file is in full one of its two versions (inv. 4); at every complete two-way pass, BLOCK
 * records = distinct hashes the slave lacked (inv. 9), and a one-way stream holds each distinct block once; after a
 * final pass: verify (deep) is empty (inv. 1), every slave file reads back equal to the master's and the model's
 * through the product's reader, invariant 6 on the slave, and one more pass sends no BLOCK and no FILE (inv. 7).
 *
 * Seeds: the seed is printed; DDUMBFS_SEED=<n> replays it (DDUMBFS_PATH=<path> the shrunk case fast-check printed);
 * DDUMBFS_RUNS=<n> sets the number of runs; DDUMBFS_SOAK=1 runs 1000 (the CI default, 80, keeps the file well under a minute).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { HashName } from '../src/format/config.js';
import { initSlave } from '../src/mirror/copy.js';
import { readMirrorState, type MirrorClaim } from '../src/mirror/state.js';
import type { Volume } from '../src/volume/volume.js';
import { noiseBytes } from './helpers/bytes.js';
import {
  lackedCount, readAllFiles, readOneWay, referencedHashes, referenceProblems, twoWayPass, writeOneWay,
} from './helpers/mirror_harness.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { SELF } from './helpers/ufs_model.js';
import { verifyInProcess, withVolume } from './helpers/ufs_tree.js';

const BS = 512;
const SOAK = process.env.DDUMBFS_SOAK === '1';
const RUNS = Number(process.env.DDUMBFS_RUNS ?? (SOAK ? 1000 : 80));
const SEED = process.env.DDUMBFS_SEED !== undefined ? Number(process.env.DDUMBFS_SEED) : (Date.now() ^ (process.pid << 8)) >>> 1;
const live: TempVolume[] = [];
/** What the runs did, printed at the end: effective operations by kind (a no-op's log line has a colon). */
const tally = new Map<string, number>();

afterAll(async () => {
  for (const v of live) await v.cleanup();
});

/** Names: bytewise order differs from a locale's (B < Z_1 < a), bytes that are not UTF-8, a 255-byte name. */
const NAMES = ['a', 'b', 'B', 'Z_1', 'a b', 'caf\xe9', '\xff\xfe', 'L'.repeat(255)].map((n) => Buffer.from(n, 'latin1'));
/** Block contents a write draws from: shared between files (dedup), the last one is a zero block. */
const POOL = [...[1, 2, 3, 4, 5].map((s) => noiseBytes(s, BS)), Buffer.alloc(BS)];
const MODES = [0o600, 0o640, 0o644, 0o700, 0o755];
/** uid/gid pairs of chown (the test runs as root on the test machine; elsewhere chown fails and the op says so). */
const OWNERS = [[0, 0], [1000, 1000], [65534, 65534], [0, 1000]] as const;
const TARGETS = ['nowhere', '../up/and/away', 'a', 'B/a b', '\xe9\xff'].map((t) => Buffer.from(t, 'latin1'));

// ---- the model ---------------------------------------------------------------------------------------------------

interface Inode {
  content: Buffer;
  mode: number;
}
type Entry = { kind: 'dir'; mode: number } | { kind: 'file'; inode: Inode } | { kind: 'symlink'; target: Buffer };

/** Path (latin1 of the bytes, no leading '/') -> entry; the root is implicit. */
type Model = Map<string, Entry>;

const key = (b: Buffer): string => b.toString('latin1');
const bytesOf = (k: string): Buffer => Buffer.from(k, 'latin1');
const parentKey = (k: string): string => (k.lastIndexOf('/') < 0 ? '' : k.slice(0, k.lastIndexOf('/')));
const join = (dir: string, name: Buffer): string => (dir === '' ? key(name) : `${dir}/${key(name)}`);
const under = (k: string, dir: string): boolean => k.startsWith(`${dir}/`);

function sortedKeys(m: Model, pred: (k: string, e: Entry) => boolean): string[] {
  return [...m.keys()].filter((k) => pred(k, m.get(k)!)).sort((x, y) => Buffer.compare(bytesOf(x), bytesOf(y)));
}
function pick<T>(xs: T[], n: number): T | undefined {
  return xs.length === 0 ? undefined : xs[n % xs.length];
}
function dirs(m: Model): string[] {
  return ['', ...sortedKeys(m, (_k, e) => e.kind === 'dir')];
}
function children(m: Model, dir: string): string[] {
  return [...m.keys()].filter((k) => parentKey(k) === dir);
}
/** Move every key at or under `from` to `to`. */
function moveKeys(m: Model, from: string, to: string): void {
  const moved = [...m.entries()].filter(([k]) => k === from || under(k, from));
  for (const [k] of moved) m.delete(k);
  for (const [k, e] of moved) m.set(to + k.slice(from.length), e);
}

// ---- the operations ----------------------------------------------------------------------------------------------

type Op =
  | { t: 'write'; pick: number; dir: number; name: number; fresh: boolean; offsetBlocks: number; blocks: number[]; tail: number }
  | { t: 'truncate'; pick: number; sizeBytes: number }
  | { t: 'rename'; pick: number; dir: number; name: number; over: boolean; overPick: number }
  | { t: 'swap'; a: number; b: number }
  | { t: 'underChild'; pick: number }
  | { t: 'delete'; pick: number }
  | { t: 'link'; pick: number; dir: number; name: number }
  | { t: 'symlink'; dir: number; name: number; target: number }
  | { t: 'mkdir'; dir: number; name: number }
  | { t: 'rmdir'; pick: number }
  | { t: 'chmod'; pick: number; mode: number }
  | { t: 'utimens'; pick: number; sec: number; nsec: number }
  | { t: 'chown'; pick: number; owner: number }
  | { t: 'reclaim'; slave: boolean }
  | { t: 'pass' }
  | { t: 'oneway' }
  | { t: 'cut'; toSlave: boolean; atBytes: number }
  | { t: 'crash'; atBytes: number };

const nat = (max: number) => fc.nat({ max });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('write' as const), pick: nat(50), dir: nat(50), name: nat(NAMES.length - 1), fresh: fc.boolean(), offsetBlocks: nat(4), blocks: fc.array(nat(POOL.length - 1), { maxLength: 3 }), tail: nat(BS - 1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('truncate' as const), pick: nat(50), sizeBytes: nat(5 * BS) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('rename' as const), pick: nat(50), dir: nat(50), name: nat(NAMES.length - 1), over: fc.boolean(), overPick: nat(50) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('swap' as const), a: nat(50), b: nat(50) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('underChild' as const), pick: nat(50) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('delete' as const), pick: nat(50) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('link' as const), pick: nat(50), dir: nat(50), name: nat(NAMES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('symlink' as const), dir: nat(50), name: nat(NAMES.length - 1), target: nat(TARGETS.length - 1) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('mkdir' as const), dir: nat(50), name: nat(NAMES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('rmdir' as const), pick: nat(50) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('chmod' as const), pick: nat(50), mode: nat(MODES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('utimens' as const), pick: nat(50), sec: nat(1000), nsec: nat(999_999_999) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('chown' as const), pick: nat(50), owner: nat(OWNERS.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reclaim' as const), slave: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant({ t: 'pass' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'oneway' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cut' as const), toSlave: fc.boolean(), atBytes: nat(5_000) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), atBytes: nat(12_000) }) },
);

/** The ops that are not tree ops of the master (they run with the master volume closed). */
const NOT_TREE_OPS: string[] = ['reclaim', 'pass', 'oneway', 'cut', 'crash'];

/** A file's content after writing `data` at `offset` (a gap reads as zeros). */
function written(content: Buffer, offset: number, data: Buffer): Buffer {
  const out = Buffer.alloc(Math.max(content.length, offset + data.length));
  content.copy(out);
  data.copy(out, offset);
  return out;
}

/** Delete `k` and everything under it, children first, through the volume's tree. */
async function removeTree(v: Volume, m: Model, k: string): Promise<void> {
  const e = m.get(k)!;
  if (e.kind === 'dir') {
    for (const c of children(m, k)) await removeTree(v, m, c);
    await v.tree.rmdir(bytesOf(k));
  } else {
    await v.tree.unlink(bytesOf(k));
  }
  m.delete(k);
}

/** Apply one tree operation to the open master volume and to the model; an op whose target is missing is a no-op. */
async function applyOp(v: Volume, m: Model, op: Op): Promise<string> {
  const freeName = (dir: string, n: number): string | undefined => {
    for (let i = 0; i < NAMES.length; i++) {
      const k = join(dir, NAMES[(n + i) % NAMES.length]!);
      if (!m.has(k)) return k;
    }
    return undefined;
  };
  switch (op.t) {
    case 'write': {
      const files = sortedKeys(m, (_k, e) => e.kind === 'file');
      let k = op.fresh ? undefined : pick(files, op.pick);
      if (k === undefined) {
        k = freeName(pick(dirs(m), op.dir)!, op.name);
        if (k === undefined) return 'write: no free name';
        await v.tree.createFile(bytesOf(k), 0o644, SELF, true);
        m.set(k, { kind: 'file', inode: { content: Buffer.alloc(0), mode: 0o644 } });
      }
      const data = Buffer.concat([...op.blocks.map((b) => POOL[b]!), POOL[op.blocks.length % 5]!.subarray(0, op.tail)]);
      const offset = op.offsetBlocks * BS;
      const f = await v.openTreeFile(bytesOf(k), {});
      try {
        if (data.length > 0) await f.write(offset, data);
      } finally {
        await f.close();
      }
      const e = m.get(k) as Extract<Entry, { kind: 'file' }>;
      if (data.length > 0) e.inode.content = written(e.inode.content, offset, data);
      return `write ${JSON.stringify(k)} @${offset} +${data.length}`;
    }
    case 'truncate': {
      const k = pick(sortedKeys(m, (_k, e) => e.kind === 'file'), op.pick);
      if (k === undefined) return 'truncate: no file';
      const f = await v.openTreeFile(bytesOf(k), {});
      try {
        await v.tree.truncate(bytesOf(k), () => f.truncate(op.sizeBytes));
      } finally {
        await f.close();
      }
      const e = m.get(k) as Extract<Entry, { kind: 'file' }>;
      const c = Buffer.alloc(op.sizeBytes);
      e.inode.content.copy(c, 0, 0, Math.min(op.sizeBytes, e.inode.content.length));
      e.inode.content = c;
      return `truncate ${JSON.stringify(k)} to ${op.sizeBytes}`;
    }
    case 'rename': {
      const src = pick(sortedKeys(m, () => true), op.pick);
      if (src === undefined) return 'rename: nothing';
      const e = m.get(src)!;
      let dest: string | undefined;
      if (op.over) {
        // over an existing entry of a compatible type: a non-directory over a non-directory, a directory over an
        // empty directory that is not under it
        dest = pick(sortedKeys(m, (k, d) => k !== src && !under(k, src) && !under(src, k)
          && (e.kind === 'dir' ? d.kind === 'dir' && children(m, k).length === 0 : d.kind !== 'dir')), op.overPick);
        // a rename between two names of one inode does nothing (POSIX); keep the model the same
        if (dest !== undefined && e.kind === 'file' && (m.get(dest) as { inode?: Inode }).inode === e.inode) return 'rename: same inode';
      }
      if (dest === undefined) {
        const d = pick(dirs(m).filter((x) => x !== src && !under(x, src)), op.dir);
        dest = d === undefined ? undefined : freeName(d, op.name);
      }
      if (dest === undefined) return 'rename: no target';
      await v.tree.rename(bytesOf(src), bytesOf(dest));
      if (m.has(dest)) m.delete(dest);
      moveKeys(m, src, dest);
      return `rename ${JSON.stringify(src)} -> ${JSON.stringify(dest)}`;
    }
    case 'swap': {
      const all = sortedKeys(m, () => true);
      const a = pick(all, op.a);
      const b = pick(all, op.b);
      if (a === undefined || b === undefined || a === b || under(a, b) || under(b, a)) return 'swap: no pair';
      const tmp = freeName(parentKey(a), 0);
      if (tmp === undefined) return 'swap: no free name';
      const ea = m.get(a)!;
      const eb = m.get(b)!;
      if (ea.kind === 'file' && eb.kind === 'file' && ea.inode === eb.inode) return 'swap: same inode';
      await v.tree.rename(bytesOf(a), bytesOf(tmp));
      moveKeys(m, a, tmp);
      await v.tree.rename(bytesOf(b), bytesOf(a));
      moveKeys(m, b, a);
      await v.tree.rename(bytesOf(tmp), bytesOf(b));
      moveKeys(m, tmp, b);
      return `swap ${JSON.stringify(a)} <-> ${JSON.stringify(b)}`;
    }
    case 'underChild': {
      // d/c exists: move c up next to d, then d under c (a directory moved under its former child)
      const d = pick(sortedKeys(m, (k, e) => e.kind === 'dir' && children(m, k).some((c) => m.get(c)!.kind === 'dir')), op.pick);
      if (d === undefined) return 'underChild: no directory with a subdirectory';
      const c = children(m, d).filter((x) => m.get(x)!.kind === 'dir').sort()[0]!;
      const up = freeName(parentKey(d), op.pick);
      if (up === undefined) return 'underChild: no free name';
      await v.tree.rename(bytesOf(c), bytesOf(up));
      moveKeys(m, c, up);
      const down = join(up, bytesOf(d.slice(d.lastIndexOf('/') + 1)));
      if (m.has(down)) return 'underChild: half';
      await v.tree.rename(bytesOf(d), bytesOf(down));
      moveKeys(m, d, down);
      return `underChild ${JSON.stringify(d)} -> ${JSON.stringify(down)}`;
    }
    case 'delete': {
      const k = pick(sortedKeys(m, () => true), op.pick);
      if (k === undefined) return 'delete: nothing';
      await removeTree(v, m, k);
      return `delete ${JSON.stringify(k)}`;
    }
    case 'link': {
      const src = pick(sortedKeys(m, (_k, e) => e.kind === 'file'), op.pick);
      const dest = freeName(pick(dirs(m), op.dir)!, op.name);
      if (src === undefined || dest === undefined) return 'link: nothing';
      await v.tree.link(bytesOf(src), bytesOf(dest));
      m.set(dest, m.get(src)!);
      return `link ${JSON.stringify(src)} ${JSON.stringify(dest)}`;
    }
    case 'symlink': {
      const k = freeName(pick(dirs(m), op.dir)!, op.name);
      if (k === undefined) return 'symlink: no free name';
      await v.tree.symlink(TARGETS[op.target]!, bytesOf(k), SELF);
      m.set(k, { kind: 'symlink', target: TARGETS[op.target]! });
      return `symlink ${JSON.stringify(k)}`;
    }
    case 'mkdir': {
      const k = freeName(pick(dirs(m), op.dir)!, op.name);
      if (k === undefined) return 'mkdir: no free name';
      await v.tree.mkdir(bytesOf(k), 0o755, SELF);
      m.set(k, { kind: 'dir', mode: 0o755 });
      return `mkdir ${JSON.stringify(k)}`;
    }
    case 'rmdir': {
      const k = pick(sortedKeys(m, (x, e) => e.kind === 'dir' && children(m, x).length === 0), op.pick);
      if (k === undefined) return 'rmdir: no empty directory';
      await v.tree.rmdir(bytesOf(k));
      m.delete(k);
      return `rmdir ${JSON.stringify(k)}`;
    }
    case 'chmod': {
      // never a symlink: chmod follows it
      const k = pick(sortedKeys(m, (_x, e) => e.kind !== 'symlink'), op.pick);
      if (k === undefined) return 'chmod: nothing';
      await v.tree.chmod(bytesOf(k), MODES[op.mode]!);
      const e = m.get(k)!;
      if (e.kind === 'dir') e.mode = MODES[op.mode]!;
      else if (e.kind === 'file') e.inode.mode = MODES[op.mode]!;
      return `chmod ${JSON.stringify(k)} ${MODES[op.mode]!.toString(8)}`;
    }
    case 'utimens': {
      // any entry, a symlink too (never followed); mtime is compared by verify, content unchanged
      const k = pick(sortedKeys(m, () => true), op.pick);
      if (k === undefined) return 'utimens: nothing';
      await v.tree.utimens(bytesOf(k), { sec: 1_600_000_000, nsec: 0 }, { sec: 1_600_000_000 + op.sec, nsec: op.nsec });
      return `utimens ${JSON.stringify(k)}`;
    }
    case 'chown': {
      const k = pick(sortedKeys(m, () => true), op.pick);
      if (k === undefined) return 'chown: nothing';
      const [uid, gid] = OWNERS[op.owner]!;
      try {
        await v.tree.chown(bytesOf(k), uid, gid);
      } catch (err) {
        if ((err as { code?: string }).code === 'EPERM') return 'chown: not permitted';
        throw err;
      }
      return `chown ${JSON.stringify(k)} ${uid}:${gid}`;
    }
    default:
      throw new Error(`not a tree op: ${op.t}`);
  }
}

// ---- the checks --------------------------------------------------------------------------------------------------

/** The model's regular files by latin1 path. */
function modelFiles(m: Model): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, e] of m) if (e.kind === 'file') out.set(k, e.inode.content);
  return out;
}

function sameFiles(actual: Map<string, Buffer>, want: Map<string, Buffer>): string {
  const lines: string[] = [];
  for (const [p, b] of want) {
    const got = actual.get(p);
    if (got === undefined) lines.push(`missing ${JSON.stringify(p)}`);
    else if (!got.equals(b)) lines.push(`differs ${JSON.stringify(p)} (${got.length} vs ${b.length} bytes)`);
  }
  for (const p of actual.keys()) if (!want.has(p)) lines.push(`unexpected ${JSON.stringify(p)}`);
  return lines.join('; ');
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The checks after a cut pass (inv. 3, 4, 6). */
async function afterCut(slave: string, claimBefore: MirrorClaim | null, commitArrived: boolean, before: Map<string, Buffer>, master: Map<string, Buffer>, where: string): Promise<void> {
  const st = readMirrorState(slave)!;
  if (!commitArrived) expect(st.claim, `${where}: the claim moved before its COMMIT arrived`).toEqual(claimBefore);
  expect(await referenceProblems(slave), where).toEqual([]);
  for (const [p, b] of await readAllFiles(slave)) {
    expect(master.get(p)?.equals(b) === true || before.get(p)?.equals(b) === true, `${where}: ${JSON.stringify(p)} is half written`).toBe(true);
  }
}

/** Run one op sequence on a fresh master/slave pair; returns the log of what it did (for a failure message). */
async function runCase(hash: HashName, reuseAsap: boolean, ops: Op[]): Promise<void> {
  const mv = await makeTempVolume({ blockSize: BS, size: '1M', reuseAsap, hash });
  const sv = await makeTempVolume({ blockSize: BS, size: '1M', hash });
  live.push(mv, sv);
  const master = mv.parent;
  const slave = sv.parent;
  const log: string[] = [];
  try {
    await initSlave(slave, master);
    const model: Model = new Map();
    let i = 0;
    while (i < ops.length) {
      // a run of tree ops in one open of the master volume
      if (!NOT_TREE_OPS.includes(ops[i]!.t)) {
        await withVolume(master, async (v) => {
          while (i < ops.length && !NOT_TREE_OPS.includes(ops[i]!.t)) log.push(await applyOp(v, model, ops[i++]!));
        });
        continue;
      }
      const op = ops[i++]!;
      const where = `op ${i} (${op.t}) after: ${log.slice(-6).join(' | ')}`;
      const claimBefore = readMirrorState(slave)!.claim;
      if (op.t === 'reclaim') {
        // master: reuse_asap hands freed addresses to new data (the master's addresses are local and change); slave:
        // between passes nothing is pinned, blocks of a cut pass not yet referenced go, and a resume must resend them
        const r = await withVolume(op.slave ? slave : master, (v) => v.runReclaim());
        log.push(`reclaim ${op.slave ? 'slave' : 'master'}: ${r.nodeDeleted} freed`);
      } else if (op.t === 'pass') {
        const lacked = await lackedCount(slave, await referencedHashes(master));
        // every other pass as a local copy's (in-memory frames: blocks read, hashed and stored in their BLOCKS frame)
        const r = await twoWayPass(master, slave, { checkpointRecordCount: 4, localFrames: i % 2 === 0 });
        expect(r.slaveError, `${where}: ${errorText(r.slaveError)}`).toBeNull();
        expect(r.masterError, `${where}: ${errorText(r.masterError)}`).toBeNull();
        expect(r.master!.blocksSent, `${where}: BLOCK records vs hashes the slave lacked`).toBe(lacked);
        const st = readMirrorState(slave)!;
        expect(st.pass, where).toBeNull();
        expect(st.claim?.passId, where).not.toBe(claimBefore?.passId);
        log.push(`pass: ${r.master!.blocksSent} blocks`);
      } else if (op.t === 'oneway') {
        const { bytes, summary } = await readOneWay(master, 4);
        expect(summary.blocksSent, `${where}: a one-way stream holds each distinct block once`).toBe((await referencedHashes(master)).size);
        const s = await writeOneWay(slave, bytes);
        expect(s.committed, where).toBe(true);
        log.push(`oneway: ${bytes.length} bytes`);
      } else if (op.t === 'cut') {
        const before = await readAllFiles(slave);
        const r = await twoWayPass(master, slave, { checkpointRecordCount: 4, ...(op.toSlave ? { cutMasterToSlave: op.atBytes } : { cutSlaveToMaster: op.atBytes }) });
        const commit = r.m2s.records.find((x) => x.type === 'COMMIT');
        const arrived = commit !== undefined && r.m2s.deliveredBytes >= commit.offset + commit.sizeBytes;
        await afterCut(slave, claimBefore, arrived, before, await readAllFiles(master), where);
        log.push(`cut ${op.toSlave ? 'm2s' : 's2m'} at ${op.atBytes}: ${r.slaveError === null ? 'slave done' : 'slave cut'}`);
      } else if (op.t === 'crash') {
        const before = await readAllFiles(slave);
        const { bytes, log: rec } = await readOneWay(master, 4);
        const commit = rec.records.find((x) => x.type === 'COMMIT')!;
        const at = op.atBytes % (bytes.length + 1);
        await writeOneWay(slave, bytes, at).catch(() => undefined);
        await afterCut(slave, claimBefore, at >= commit.offset + commit.sizeBytes, before, await readAllFiles(master), where);
        log.push(`crash at ${at} of ${bytes.length}`);
      }
    }
    for (const l of log) {
      const word = l.split(/[ :]/)[0]!;
      const name = l.startsWith(`${word}:`) && !['pass', 'oneway', 'reclaim'].includes(word) ? `${word} (no-op)` : word;
      tally.set(name, (tally.get(name) ?? 0) + 1);
    }
    // the master holds what the model says
    const masterFiles = await readAllFiles(master);
    expect(sameFiles(masterFiles, modelFiles(model)), `master vs model after: ${log.join(' | ')}`).toBe('');
    // a final pass; then invariants 1, 6, 7, 9
    const lacked = await lackedCount(slave, await referencedHashes(master));
    const last = await twoWayPass(master, slave, { localFrames: ops.length % 2 === 0 });
    expect(last.slaveError, `final pass: ${errorText(last.slaveError)} after: ${log.join(' | ')}`).toBeNull();
    expect(last.masterError, `final pass: ${errorText(last.masterError)}`).toBeNull();
    expect(last.master!.blocksSent, 'final pass: BLOCK records vs hashes the slave lacked').toBe(lacked);
    expect((await verifyInProcess(master, slave, { deep: true })).lines, `verify after: ${log.join(' | ')}`).toEqual([]);
    expect(sameFiles(await readAllFiles(slave), masterFiles), `slave vs master after: ${log.join(' | ')}`).toBe('');
    expect(await referenceProblems(slave)).toEqual([]);
    expect(readMirrorState(slave)!.pass).toBeNull();
    const again = await twoWayPass(master, slave);
    expect(again.slaveError).toBeNull();
    expect(again.master!.blocksSent).toBe(0);
    expect(again.master!.filesSent, `an idempotent pass sends no file after: ${log.join(' | ')}`).toBe(0);
  } finally {
    await mv.cleanup();
    await sv.cleanup();
  }
}

describe('mirror model (fast-check)', () => {
  it(`random tree operations interleaved with passes, cuts and crashes converge (${RUNS} runs)`, async () => {
    console.log(`mirror model: seed ${SEED}, ${RUNS} runs (replay: DDUMBFS_SEED=${SEED})`);
    await fc.assert(fc.asyncProperty(
      fc.constantFrom<HashName>('TIGER', 'SHA1', 'TIGER128'),
      fc.boolean(),
      fc.array(opArb, { minLength: 10, maxLength: 60, size: 'max' }),
      (hash, reuseAsap, ops) => runCase(hash, reuseAsap, ops),
    ), {
      seed: SEED,
      numRuns: RUNS,
      path: process.env.DDUMBFS_PATH,
    });
    console.log(`mirror model: ${[...tally].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }, 3_600_000);
});
