/**
 * The slave's apply (mirroring spec §4.5 RENAME, §4.8, §4.14; §4.18 invariants 1, 3, 6, 9; §5 scenarios 2, 9, 15),
 * both sides in process as in test/mirror_pass.test.ts:
 * - RENAME hints: a renamed directory of many blocks (and of a 1 GiB sparse file) costs bytes, not node lists;
 *   cross-directory moves (old parent first and last), a swap through a temporary name, a directory moved under its
 *   former child, rename over an existing file, a file becoming a directory under one name, and a hint whose
 *   precondition fails on the slave all converge (verify empty).
 * - undo/ and rollback: a pass cut at each apply step (a kill simulated by a throwing hook, or the stream cut) keeps
 *   invariant 3 (the claim moves only with its data, never back) and invariant 6 (test/helpers/slave_check.ts);
 *   resuming gives the master's tree; rolling back gives exactly the tree of the last claim, also after a rollback
 *   that was itself killed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave, slaveOverStreams } from '../src/mirror/copy.js';
import { VolumeDigests } from '../src/mirror/digest.js';
import type { SlaveHookPoint } from '../src/mirror/pass_slave.js';
import { readMirrorState, writeMirrorState } from '../src/mirror/state.js';
import { StreamEncoder } from '../src/mirror/stream_codec.js';
import { liveUndoAreas, rollbackPass, undoAreaHashes } from '../src/mirror/undo.js';
import { referenceProblems, treeShape } from './helpers/slave_check.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { readVolumeConfig } from '../src/volume/volume.js';
import { fifoUfs, mkdirUfs, symlinkUfs, truncateUfsFile, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';
import { run } from './helpers/run.js';
import { snapshotTree } from './helpers/snapshot.js';

const BS = 4096;
const volumes: TempVolume[] = [];

function block(seed: string, count = 1): Buffer {
  return seededBlocks(seed, count, BS);
}

async function pair(size = '8M'): Promise<{ master: string; slave: string }> {
  const m = await makeTempVolume({ blockSize: BS, size });
  const s = await makeTempVolume({ blockSize: BS, size });
  volumes.push(m, s);
  await initSlave(s.parent, m.parent);
  return { master: m.parent, slave: s.parent };
}

const copy = (m: string, s: string, extra: Partial<Parameters<typeof copyLocal>[2]> = {}) =>
  copyLocal(m, s, { access: nodeTreeAccess, allowMassDelete: true, ...extra });

async function verifyLines(a: string, b: string): Promise<string[]> {
  return (await verifyInProcess(a, b)).lines;
}

const mv = (parent: string, from: string, to: string): void => fs.renameSync(ufsAbs(parent, from), ufsAbs(parent, to));

/** The slave converged: verify is empty, invariant 6 holds, no pass or undo area is left. */
async function expectConverged(master: string, slave: string): Promise<void> {
  expect(await verifyLines(master, slave)).toEqual([]);
  expect(await referenceProblems(slave)).toEqual([]);
  expect(readMirrorState(slave)!.pass).toBeNull();
  expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'undo'))).toBe(false);
  expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'staging'))).toBe(false);
}

afterAll(async () => {
  for (const v of volumes) await v.cleanup();
});

describe('RENAME hints (spec §4.5, §4.18 inv. 9, §5 scenario 2)', () => {
  it('a renamed directory of many blocks and a 1 GiB sparse file, then the renamed file alone, send no BLOCK, no node list, and < 1/20 of the node lists in bytes', async () => {
    const { master, slave } = await pair('32M');
    mkdirUfs(master, 'data');
    mkdirUfs(master, 'data/sub');
    const realBlocks = 1024;
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'data/sub/real', block('real', realBlocks));
      await writeUfsFile(v, 'data/sparse', Buffer.alloc(0));
      await truncateUfsFile(v, 'data/sparse', 1024 * 1024 * 1024);
      await writeUfsFile(v, 'other', block('other', 2));
    });
    const first = await copy(master, slave);
    expect(first.master.blocksSent).toBe(realBlocks + 2);
    mv(master, 'data', 'renamed');
    const r = await copy(master, slave);
    const nodeListBytes = (realBlocks + (1024 * 1024 * 1024) / BS) * (await readVolumeConfig(master)).hashSize;
    console.log(`directory rename of ${realBlocks} blocks + a 1 GiB sparse file: ${r.master.bytesOnWire} bytes on the wire, node lists ${nodeListBytes} bytes, first copy ${first.master.bytesOnWire} bytes`);
    expect(r.master.blocksSent).toBe(0);
    expect(r.master.filesSent).toBe(0);
    expect(r.master.renamesSent).toBe(1);
    expect(r.master.renamesMatched).toBe(1);
    expect(r.slave.renamesApplied).toBe(1);
    expect(r.master.bytesOnWire).toBeLessThan(nodeListBytes / 20);
    expect(r.master.bytesOnWire).toBeLessThan(1024 * 1024);
    await expectConverged(master, slave);
    // a file too: the 1 GiB sparse file moved out of the directory costs no node list (262,144 hashes)
    mv(master, 'renamed/sparse', 'sparse-top');
    const f = await copy(master, slave);
    console.log(`file rename of a 1 GiB sparse file: ${f.master.bytesOnWire} bytes on the wire`);
    expect(f.master.filesSent).toBe(0);
    expect(f.master.renamesMatched).toBe(1);
    expect(f.master.bytesOnWire).toBeLessThan(1024 * 1024);
    await expectConverged(master, slave);
  }, 300_000);

  for (const order of ['old parent sorts first', 'old parent sorts last'] as const) {
    it(`a cross-directory move whose ${order} is a RENAME, nothing resent`, async () => {
      const { master, slave } = await pair();
      const [from, to] = order === 'old parent sorts first' ? ['a', 'z'] : ['z', 'a'];
      mkdirUfs(master, from);
      mkdirUfs(master, to);
      mkdirUfs(master, `${from}/big`);
      await withVolume(master, async (v) => {
        for (let k = 0; k < 4; k++) await writeUfsFile(v, `${from}/big/f${k}`, block(`${order}${k}`, 8));
        await writeUfsFile(v, `${from}/stays`, block('stays'));
        await writeUfsFile(v, `${to}/here`, block('here'));
      });
      await copy(master, slave);
      mv(master, `${from}/big`, `${to}/big`);
      const r = await copy(master, slave);
      expect(r.master.blocksSent).toBe(0);
      expect(r.master.filesSent).toBe(0);
      expect(r.master.renamesMatched).toBe(1);
      await expectConverged(master, slave);
    }, 120_000);
  }

  it('a swap a<->b through a temporary name, rename over an existing file, and a directory moved under its former child', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'p');
    mkdirUfs(master, 'p/c');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'a', block('A', 3));
      await writeUfsFile(v, 'b', block('B', 3));
      await writeUfsFile(v, 'over', block('over', 2));
      await writeUfsFile(v, 'victim', block('victim', 2));
      await writeUfsFile(v, 'p/c/x', block('x', 2));
      await writeUfsFile(v, 'p/y', block('y', 2));
    });
    symlinkUfs(master, 'nowhere', 'p/c/link');
    await copy(master, slave);
    mv(master, 'a', 'tmp');
    mv(master, 'b', 'a');
    mv(master, 'tmp', 'b');
    mv(master, 'over', 'victim');
    mv(master, 'p', 'tmp');
    mv(master, 'tmp/c', 'c');
    mv(master, 'tmp', 'c/p');
    const before = treeShape(slave);
    const r = await copy(master, slave);
    expect(r.master.blocksSent).toBe(0);
    expect(r.master.filesSent).toBe(0); // every file reached its new name by a RENAME
    expect(r.master.renamesMatched).toBeGreaterThanOrEqual(5);
    await expectConverged(master, slave);
    // the master's tree differs from the slave's old one at exactly these names
    const after = treeShape(slave);
    const name = (s: string) => Buffer.from(s).toString('hex');
    expect(after[name('a')]).toBe(before[name('b')]);
    expect(after[name('b')]).toBe(before[name('a')]);
    expect(after[name('victim')]).toBe(before[name('over')]);
    expect(after[name('c/x')]).toBe(before[name('p/c/x')]);
    expect(after[name('c/p/y')]).toBe(before[name('p/y')]);
  }, 120_000);

  it('a file becoming a directory under one name (its old content moved inside) converges', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'x', block('x', 4));
      await writeUfsFile(v, 'keep', block('keep'));
    });
    await copy(master, slave);
    mv(master, 'x', 'tmp');
    mkdirUfs(master, 'x');
    mv(master, 'tmp', 'x/inner');
    const r = await copy(master, slave);
    expect(r.master.blocksSent).toBe(0);
    expect(r.master.filesSent).toBe(0);
    expect(fs.lstatSync(ufsAbs(slave, 'x')).isDirectory()).toBe(true);
    await expectConverged(master, slave);
  }, 120_000);

  it('a RENAME whose precondition fails (the slave copy altered behind the mirror during the pass) is refused, and the state is sent', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'd1');
    mkdirUfs(master, 'd2');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'd1/f', block('f', 4));
      await writeUfsFile(v, 'd1/stays', block('stays'));
      await writeUfsFile(v, 'd2/other', block('other'));
    });
    await copy(master, slave);
    mv(master, 'd1/f', 'd2/f');
    let altered = false;
    const r = await copy(master, slave, {
      slaveHooks: {
        at: (point) => {
          // the first apply step of the pass: after the slave gave the hint, before the RENAME is checked
          if (point === 'op-applied' && !altered) {
            altered = true;
            fs.chmodSync(ufsAbs(slave, 'd1/f'), 0o600);
          }
        },
      },
    });
    expect(altered).toBe(true);
    expect(r.master.renamesSent).toBe(1);
    expect(r.master.renamesMatched).toBe(0);
    expect(r.slave.renamesRefused).toBe(1);
    expect(r.master.filesSent).toBe(1); // sent as state instead; its blocks were held
    expect(r.master.blocksSent).toBe(0);
    await expectConverged(master, slave);
  }, 120_000);
});

describe('hostile RENAMEs (spec §4.15, §4.18 inv. 10)', () => {
  it('a RENAME out of ddfsmirror, through a symlink planted on the slave, into one, or with a wrong digest moves nothing', async () => {
    const { master, slave } = await pair();
    await withVolume(master, (v) => writeUfsFile(v, 'real', block('real')));
    await copy(master, slave);
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-apply-outside-'));
    await fifoUfs(slave, 'probe');
    fs.renameSync(ufsAbs(slave, 'probe'), Buffer.from(path.join(outside, 'secret')));
    fs.symlinkSync(outside, ufsAbs(slave, 'lnk'));
    const stateBefore = fs.readFileSync(path.join(slave, 'ddfsmirror', 'state'));
    const before = treeShape(slave);
    // the right digests, so that only the containment checks can refuse
    const digests = await VolumeDigests.open(slave, { access: nodeTreeAccess });
    const secretDigest = (await digests.digestAt(Buffer.from(path.join(outside, 'secret'))))!;
    // the state file is no UFS file: it has no digest, the reserved name refuses it before any digest is computed
    const stateDigest = (await digests.digestAt(Buffer.from(path.join(slave, 'ddfsmirror', 'state')))) ?? Buffer.alloc(32, 2);
    const realDigest = (await digests.digestAt(ufsAbs(slave, 'real')))!;
    await digests.close();
    const ms = readMirrorState(master)!;
    const cfg = await readVolumeConfig(master);
    const enc = await StreamEncoder.create();
    const passId = Buffer.alloc(16, 7);
    const rename = (from: string, to: string, fromDigest: Buffer) => enc.encode({ type: 'RENAME', from: Buffer.from(from), to: Buffer.from(to), tid: 0n, fromType: 'file', fromDigest });
    const stream = new PassThrough();
    stream.end(Buffer.concat([
      enc.encode({ type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.from(ms.sharedUuid, 'hex'), uniqueUuid: Buffer.from(ms.uniqueUuid, 'hex'), generation: 1, blockSize: BS, hashAlgo: cfg.hashName, hashSize: cfg.hashSize, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0 }),
      enc.encode({ type: 'PASS_BEGIN', passId, tidBeg: 0n, tidEnd: 0n, mode: 'full' }),
      enc.encode({ type: 'DIGESTQ', path: Buffer.alloc(0), digest: Buffer.alloc(32) }),
      rename('lnk/secret', 'stolen', secretDigest),
      rename('ddfsmirror/state', 'stolen', stateDigest),
      rename('real', 'lnk/real', realDigest),
      rename('real', 'elsewhere', Buffer.alloc(32, 1)),
      enc.encode({ type: 'COMMIT', passId, tidEnd: 0n, claimKind: 'exact' }),
      enc.encode({ type: 'TERM', reason: 0 }),
    ]));
    const r = await slaveOverStreams(slave, stream, null, { access: nodeTreeAccess });
    expect(r.renamesApplied).toBe(0);
    expect(r.renamesRefused).toBe(4);
    expect(fs.readdirSync(outside)).toEqual(['secret']);
    expect(fs.readFileSync(path.join(slave, 'ddfsmirror', 'state')).subarray(0, 20)).toEqual(stateBefore.subarray(0, 20));
    expect(treeShape(slave)).toEqual(before);
    fs.rmSync(outside, { recursive: true });
  }, 60_000);
});

/** A slave with a committed claim, and a master changed since in every way an apply step handles. */
async function changedPair(): Promise<{ master: string; slave: string; claimPass: string; claimShape: Record<string, string> }> {
  const { master, slave } = await pair();
  mkdirUfs(master, 'a');
  mkdirUfs(master, 'a/deep');
  mkdirUfs(master, 'm');
  await withVolume(master, async (v) => {
    for (let k = 0; k < 6; k++) await writeUfsFile(v, `a/f${k}`, block(`f${k}`, 2));
    await writeUfsFile(v, 'a/deep/g', block('g', 3));
    await writeUfsFile(v, 'm/moved', block('moved', 4));
    await writeUfsFile(v, 'typechange', block('tc'));
    await writeUfsFile(v, 'rewritten', block('rw1', 2));
    await writeUfsFile(v, 'gone', block('gone'));
  });
  await copy(master, slave);
  const claimPass = readMirrorState(slave)!.claim!.passId;
  const claimShape = treeShape(slave);
  // the changes of the next pass: new blocks, a rewrite, a deletion, a type change, a move, a chmod, new entries
  fs.rmSync(ufsAbs(master, 'gone'));
  fs.rmSync(ufsAbs(master, 'typechange'));
  mkdirUfs(master, 'typechange');
  mv(master, 'm/moved', 'a/moved');
  fs.chmodSync(ufsAbs(master, 'a'), 0o700);
  mkdirUfs(master, 'n');
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'rewritten', block('rw2', 2));
    await writeUfsFile(v, 'typechange/inside', block('inside', 2));
    for (let k = 0; k < 6; k++) await writeUfsFile(v, `n/new${k}`, block(`new${k}`, 2));
  });
  symlinkUfs(master, 'target', 'n/link');
  return { master, slave, claimPass, claimShape };
}

/** Invariants 3 and 6 after a kill: the claim is the old one (or a new one whose data is all there), refs intact. */
async function expectSafeAfterKill(master: string, slave: string, claimPass: string): Promise<void> {
  const st = readMirrorState(slave)!;
  expect(st.claim).not.toBeNull();
  if (st.claim!.passId !== claimPass) {
    // the claim moved: only at COMMIT, after every op was applied and made durable
    expect(st.pass).toBeNull();
    expect(await verifyLines(master, slave)).toEqual([]);
  } else {
    expect(st.pass).not.toBeNull();
  }
  expect(await referenceProblems(slave)).toEqual([]);
}

interface Kill {
  name: string;
  hooks?: (n: { count: number }) => { at: (point: SlaveHookPoint, detail: number) => void };
  cutAtByte?: number;
}

const KILL = new Error('simulated kill');
const at = (want: SlaveHookPoint, nth: number) => (n: { count: number }) => ({
  at: (point: SlaveHookPoint) => {
    if (point === want && ++n.count === nth) throw KILL;
  },
});

const KILLS: Kill[] = [
  { name: 'between block write and index update', hooks: at('block-stored', 3) },
  { name: 'between the staged write and the rename', hooks: at('staged-synced', 2) },
  { name: 'in the middle of a window\'s renames', hooks: at('op-applied', 7) },
  { name: 'between the state rewrite and ACK', hooks: at('claim-written', 1) },
  { name: 'by cutting the stream mid-pass', cutAtByte: 6000 },
];

describe('a slave killed at each apply step (spec §5 scenario 9; §4.18 inv. 3, 4, 6)', () => {
  for (const kill of KILLS) {
    it(`killed ${kill.name}: invariants 3 and 6 hold; resuming converges; rolling back gives the last claim's tree`, async () => {
      for (const after of ['resume', 'rollback'] as const) {
        const { master, slave, claimPass, claimShape } = await changedPair();
        const n = { count: 0 };
        let bytes = 0;
        await expect(copy(master, slave, {
          checkpointRecordCount: 6,
          slaveHooks: kill.hooks?.(n),
          onMasterBytes: kill.cutAtByte === undefined ? undefined : (b: Buffer) => {
            bytes += b.length;
            if (bytes > kill.cutAtByte!) throw new Error('stream cut');
          },
        })).rejects.toThrow();
        await expectSafeAfterKill(master, slave, claimPass);
        const committed = readMirrorState(slave)!.claim!.passId !== claimPass;
        if (after === 'resume') {
          await copy(master, slave);
          await expectConverged(master, slave);
        } else {
          const sum = rollbackPass(slave);
          expect(readMirrorState(slave)!.pass).toBeNull();
          if (committed) {
            // nothing to roll back past a durable claim: the areas were stale
            expect(sum.actionsReversed).toBe(0);
            expect(await verifyLines(master, slave)).toEqual([]);
          } else {
            expect(sum.actionsReversed).toBeGreaterThan(0);
            expect(treeShape(slave)).toEqual(claimShape);
            expect(readMirrorState(slave)!.claim!.passId).toBe(claimPass);
          }
          expect(await referenceProblems(slave)).toEqual([]);
          expect(fs.existsSync(path.join(slave, 'ddfsmirror', 'undo'))).toBe(false);
          await copy(master, slave);
          await expectConverged(master, slave);
        }
      }
    }, 300_000);
  }

  it('two passes cut in a row, then a rollback killed mid-way: rolling back again gives the last claim\'s tree', async () => {
    const { master, slave, claimPass, claimShape } = await changedPair();
    await expect(copy(master, slave, { checkpointRecordCount: 6, slaveHooks: at('op-applied', 5)({ count: 0 }) })).rejects.toThrow();
    // a second pass with a fresh pass id (resume data the master cannot validate: it starts over, spec §4.9) is cut
    // later too: two live undo areas
    const st = readMirrorState(slave)!;
    writeMirrorState(slave, { ...st, pass: { ...st.pass!, keyCurHex: Buffer.from('no/such/key').toString('hex') } });
    await withVolume(master, async (v) => writeUfsFile(v, 'n/later', block('later', 2)));
    await expect(copy(master, slave, { checkpointRecordCount: 6, slaveHooks: at('op-applied', 12)({ count: 0 }) })).rejects.toThrow();
    await expectSafeAfterKill(master, slave, claimPass);
    expect(liveUndoAreas(slave)).toHaveLength(2); // what reclaim must keep (RECLAIM HOOK)
    let steps = 0;
    expect(() => rollbackPass(slave, {
      onStep: () => {
        if (++steps === 3) throw KILL;
      },
    })).toThrow(KILL);
    expect(readMirrorState(slave)!.pass).not.toBeNull();
    const sum = rollbackPass(slave);
    expect(sum.actionsReversed).toBeGreaterThan(0);
    expect(treeShape(slave)).toEqual(claimShape);
    expect(readMirrorState(slave)!.claim!.passId).toBe(claimPass);
    expect(await referenceProblems(slave)).toEqual([]);
    // and once more: nothing left to do, nothing changes
    expect(rollbackPass(slave)).toEqual({ areasReversed: 0, actionsReversed: 0, areasDropped: 0 });
    expect(liveUndoAreas(slave)).toEqual([]);
    expect(treeShape(slave)).toEqual(claimShape);
  }, 300_000);

  it('manifest lines whose change was never made (a kill right after the log) and a torn last line are harmless to resume and rollback', async () => {
    const { master, slave, claimPass, claimShape } = await changedPair();
    await expect(copy(master, slave, { checkpointRecordCount: 6, slaveHooks: at('op-applied', 8)({ count: 0 }) })).rejects.toThrow();
    const [area] = liveUndoAreas(slave);
    const hex = (p: string) => Buffer.from(p).toString('hex');
    // write-ahead lines of changes a kill prevented: an aside, a RENAME and a creation never made, then a torn line
    fs.appendFileSync(path.join(area!, 'manifest'), [
      JSON.stringify({ a: 'aside', n: 999, p: hex('a/f0') }),
      JSON.stringify({ a: 'move', n: null, f: hex('a/f1'), p: hex('a/f1-moved') }),
      JSON.stringify({ a: 'create', p: hex('never-made') }),
      '{"a":"asi',
    ].join('\n'));
    // the pass resumes into the same area (its torn tail cut first), logs more changes, and is killed again
    const linesBefore = fs.readFileSync(path.join(area!, 'manifest'), 'latin1').split('\n').length;
    await expect(copy(master, slave, { checkpointRecordCount: 6, slaveHooks: at('block-stored', 3)({ count: 0 }) })).rejects.toThrow();
    expect(liveUndoAreas(slave)).toEqual([area]);
    const linesAfter = fs.readFileSync(path.join(area!, 'manifest'), 'latin1').split('\n').length;
    expect(linesAfter).toBeGreaterThan(linesBefore);
    await expectSafeAfterKill(master, slave, claimPass);
    rollbackPass(slave);
    expect(treeShape(slave)).toEqual(claimShape);
    await copy(master, slave);
    await expectConverged(master, slave);
  }, 300_000);

  it('a rollback killed mid-way, then a pass (roll forward): the pass finishes the rollback first and converges', async () => {
    const { master, slave, claimPass } = await changedPair();
    await expect(copy(master, slave, { checkpointRecordCount: 6, slaveHooks: at('op-applied', 9)({ count: 0 }) })).rejects.toThrow();
    let steps = 0;
    expect(() => rollbackPass(slave, {
      onStep: () => {
        if (++steps === 2) throw KILL;
      },
    })).toThrow(KILL);
    await expectSafeAfterKill(master, slave, claimPass);
    await copy(master, slave);
    await expectConverged(master, slave);
  }, 300_000);
});

/** A slave killed right after a window replaced `rewritten`: its old version (blocks only it names) is in undo. */
async function abandonedPass(): Promise<{ master: string; slave: string; claimShape: Record<string, string> }> {
  const { master, slave } = await pair();
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'rewritten', block('old', 3));
    await writeUfsFile(v, 'z', block('z1'));
  });
  await copy(master, slave);
  const claimShape = treeShape(slave);
  await withVolume(master, async (v) => {
    await writeUfsFile(v, 'rewritten', block('new', 3));
    await writeUfsFile(v, 'z', block('z2'));
  });
  // the window's ops: DIR '', DIRLIST '', FILE rewritten, FILE z; killed before z, after rewritten was replaced (both
  // old files were moved aside together before the first op: one undo append for the window's replaced files)
  await expect(copy(master, slave, { slaveHooks: at('op-applied', 3)({ count: 0 }) })).rejects.toThrow('simulated kill');
  expect(liveUndoAreas(slave)).toHaveLength(1);
  return { master, slave, claimShape };
}


describe('reclaim on a slave with an abandoned pass (spec §4.8 "every hash in an undo node list is pinned")', () => {
  it('without the undo references reclaim frees the kept file\'s blocks and the rollback leaves it dangling; with them, nothing is lost', async () => {
    // the hazard, shown: a reclaim that does not read the undo areas frees the three old blocks and z1's, all moved
    // aside (and z2's block, received but named only by the discarded staging area: harmless, a resumed pass sends it
    // again)
    const bare = await abandonedPass();
    const cfg = await readVolumeConfig(bare.slave);
    const freed = await withVolume(bare.slave, (v) => v.runReclaim());
    expect(freed.nodeDeleted).toBe(5);
    rollbackPass(bare.slave);
    expect(treeShape(bare.slave)).toEqual(bare.claimShape);
    expect((await referenceProblems(bare.slave)).length).toBeGreaterThan(0);

    // the slave's daemon gives its reclaim undoAreaHashes: the old blocks stay, the rollback gives a sound tree
    const kept = await abandonedPass();
    const hashes = undoAreaHashes(kept.slave, cfg);
    expect(hashes.length).toBe(4);
    const report = await withVolume(kept.slave, async (v) => {
      v.addReferenceProvider({ hashes: () => undoAreaHashes(kept.slave, cfg) });
      return v.runReclaim();
    });
    expect(report.nodeDeleted).toBe(1);
    rollbackPass(kept.slave);
    expect(treeShape(kept.slave)).toEqual(kept.claimShape);
    expect(await referenceProblems(kept.slave)).toEqual([]);
    // and resuming instead converges too
    await copy(kept.master, kept.slave);
    await expectConverged(kept.master, kept.slave);
  }, 120_000);

  it('a file in an undo area that is not a UFS file makes the references fail (reclaim then frees nothing), never skipped', async () => {
    const { slave } = await abandonedPass();
    const cfg = await readVolumeConfig(slave);
    const area = liveUndoAreas(slave)[0]!;
    const kept = fs.readdirSync(area).find((n) => /^[0-9]+$/.test(n))!;
    fs.writeFileSync(path.join(area, kept), 'not a UFS file');
    expect(() => undoAreaHashes(slave, cfg)).toThrow(/is not a UFS file/);
  }, 60_000);
});

describe('fsckddumbfs on a slave with an abandoned pass (spec §4.8)', () => {
  const FSCK = path.resolve(__dirname, '..', 'bin', 'fsckddumbfs');
  it('-n keeps the blocks the undo area names (the rollback is sound); -r, -R and -k wait for the pass, changing nothing', async () => {
    const { master, slave, claimShape } = await abandonedPass();
    for (const args of [['-r'], ['-R'], ['-n', '-k']]) {
      const before = await snapshotTree(slave);
      const r = await run(process.execPath, [FSCK, ...args, slave], { timeoutMs: 120_000 });
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.toString()).toContain('a mirror pass is half-applied (1 undo areas in ddfsmirror/undo)');
      expect(await snapshotTree(slave), args.join(' ')).toEqual(before);
    }
    const n = await run(process.execPath, [FSCK, '-n', slave], { timeoutMs: 120_000 });
    expect(n.code, n.stderr.toString()).toBe(0);
    rollbackPass(slave);
    expect(treeShape(slave)).toEqual(claimShape);
    expect(await referenceProblems(slave)).toEqual([]);
    await copy(master, slave);
    await expectConverged(master, slave);
  }, 180_000);
});
