/**
 * alterddumbfs (spec §13.2) on copies of the clean upstream fixture v11-4k-tiger, one alteration kind at a time:
 * the check finds the damage, the light repair (-n) fixes what can be fixed and lists the rest, the next check is
 * clean (0, or 2 where blocks are really lost), and every file of MD5SUMS reads back intact whenever its blocks
 * survived. Losing the index (-I) is repaired by a rebuild (-r and -R) byte for byte.
 * Our -u and -f are also compared with what upstream's alterddumbfs made (fixtures crash-u and funny-f): the same
 * check summary before the repair, the same per-file verdicts after it.
 *
 * Counts: CI runs ALTER_SEEDS seeds per node alteration kind; DDUMBFS_SOAK=1 runs more.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMAND_TIMEOUT_MS, MOUNT_TIMEOUT_MS } from './helpers/timeouts.js';
import { alterVolume, type AlterRequest, type FileOperation } from '../src/alter/alter.js';
import { NODE_ALTERATION_KINDS } from '../src/alter/index_nodes.js';
import { checkVolume } from '../src/fsck/check.js';
import { renderSummary } from '../src/fsck/findings.js';
import {
  FIXTURE_VOLS, copyFixtureVolume, fsck, md5Mismatches, quietLogger, readCorruptedList, reportCount, soakCount,
} from './helpers/crash.js';
import { run } from './helpers/run.js';

const CLEAN = 'v11-4k-tiger';
const ALTER_SEEDS = soakCount(3, 40);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'alter-fixtures-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let copies = 0;
const kindsRun = new Set<string>();
afterAll(() => reportCount('alter_fixtures: alteration kinds exercised', `${kindsRun.size} (${[...kindsRun].join(' ')})`));

async function freshCopy(): Promise<string> {
  return copyFixtureVolume(CLEAN, path.join(work, `${copies++}`));
}

async function alter(dir: string, request: AlterRequest, seed = 42): Promise<string[]> {
  return (await alterVolume(dir, request, { seed })).lines;
}

/** The flags column of corrupted.txt keyed by file name. */
function flagsByName(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, flags] of readCorruptedList(dir)) out[path.basename(p)] = flags;
  return out;
}

/** The `== Summary` block of an upstream output file, up to the status line. */
function upstreamSummary(file: string): string[] {
  const lines = fs.readFileSync(path.join(FIXTURE_VOLS, file), 'utf8').split('\n');
  return lines.slice(lines.indexOf('== Summary   '), lines.findIndex((l) => l.startsWith('Filesystem status')) + 1);
}

describe('alterddumbfs index node alterations: check finds, -n repairs, check clean, files intact', () => {
  for (const kind of NODE_ALTERATION_KINDS) {
    it(`${kind} ×3 (${ALTER_SEEDS} seeds)`, async () => {
      kindsRun.add(kind);
      for (let seed = 1; seed <= ALTER_SEEDS; seed++) {
        const dir = await freshCopy();
        const lines = await alter(dir, { nodes: { [kind]: 3 } }, seed);
        expect(lines, `seed ${seed}`).toHaveLength(3);
        expect(lines.join('\n')).not.toMatch(/nothing done/);
        const before = await fsck(dir, 'check');
        expect(before.exitCode, `seed ${seed}: the check must find ${kind}\n${lines.join('\n')}`).toBe(1);
        const repair = await fsck(dir, 'repair');
        expect(repair.exitCode, `seed ${seed}\n${repair.log.join('')}`).toBe(0);
        const after = await fsck(dir, 'check');
        expect(after.exitCode, `seed ${seed}: check after repair\n${lines.join('\n')}\n${after.log.join('\n')}`).toBe(0);
        expect(await md5Mismatches(dir), `seed ${seed}`).toEqual([]);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('-i 5: five rounds of everything (like the fixture index-i)', async () => {
    kindsRun.add('-i');
    for (let seed = 42; seed < 42 + ALTER_SEEDS; seed++) {
      const dir = await freshCopy();
      const lines = await alter(dir, { rounds: 5 }, seed);
      expect(lines).toHaveLength(5 * NODE_ALTERATION_KINDS.length);
      expect((await fsck(dir, 'check')).exitCode).toBe(1);
      const repair = await fsck(dir, 'repair');
      expect(repair.exitCode, repair.log.join('')).toBe(0);
      const after = await fsck(dir, 'check');
      expect(after.exitCode, `seed ${seed}\n${after.log.join('\n')}`).toBe(0);
      expect(await md5Mismatches(dir)).toEqual([]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the same seed makes the same damage; .autofsck is created', async () => {
    const a = await freshCopy();
    const b = await freshCopy();
    const la = await alter(a, { rounds: 2, funny: true, crash: true }, 7);
    const lb = await alter(b, { rounds: 2, funny: true, crash: true }, 7);
    expect(la).toEqual(lb);
    expect(fs.readFileSync(path.join(a, 'ddfsidx')).equals(fs.readFileSync(path.join(b, 'ddfsidx')))).toBe(true);
    expect(fs.readFileSync(path.join(a, 'ddfsblocks')).equals(fs.readFileSync(path.join(b, 'ddfsblocks')))).toBe(true);
    expect(fs.existsSync(path.join(a, '.autofsck'))).toBe(true);
    const c = await freshCopy();
    expect(await alter(c, { rounds: 2 }, 8)).not.toEqual(await alter(await freshCopy(), { rounds: 2 }, 7));
  });
});

describe('alterddumbfs -u: a simulated power cut', () => {
  it('matches upstream crash-u: the check sees 2 recent blocks, 1 wrong; -n marks the bad file lost; check warns', async () => {
    kindsRun.add('-u');
    const dir = await freshCopy();
    const lines = await alter(dir, { crash: true });
    expect(lines).toHaveLength(3);
    expect(fs.statSync(path.join(dir, 'ddfsusedblocks')).size).toBe(128);
    const text: string[] = [];
    const before = await checkVolume(dir, { logger: quietLogger(), out: (l) => text.push(String(l)) });
    expect(before.exitCode).toBe(1);
    const ours = renderSummary(before.summary, before.status);
    expect(ours).toEqual(upstreamSummary('crash-u.fsck-c.out'));
    const repair = await fsck(dir, 'repair');
    expect(repair.exitCode).toBe(0); // as upstream: a corrupted file does not make the repair fail
    expect(repair.result?.repair?.corruptedFiles).toBe(1);
    expect(flagsByName(dir)).toEqual({ ff_unexpected_shutdown_bad: ' C  ' });
    const after = await fsck(dir, 'check-blocks');
    expect(after.exitCode, after.log.join('\n')).toBe(2);
    expect(after.result?.check?.summary.filesLostBlocks).toBe(1);
    expect(await md5Mismatches(dir)).toEqual([]);
    const again = await fsck(dir, 'repair');
    expect(again.exitCode).toBe(0); // converged: still one corrupted file, nothing else
    expect(again.result?.repair?.corruptedFiles).toBe(1);
    expect(again.result?.repair?.fixedFiles).toBe(0);
  });
});

describe('alterddumbfs -f: the funny files', () => {
  it('matches upstream funny-f: same check summary, same per-file verdicts after -n', async () => {
    kindsRun.add('-f');
    const dir = await freshCopy();
    const lines = await alter(dir, { funny: true });
    expect(lines).toHaveLength(5 + 15);
    const before = await checkVolume(dir, { logger: quietLogger() });
    expect(before.exitCode).toBe(1);
    expect(renderSummary(before.summary, before.status)).toEqual(upstreamSummary('funny-f.fsck-c.out'));
    const repair = await fsck(dir, 'repair');
    expect(repair.exitCode).toBe(0); // upstream's -n of funny-f exits 0 too (fixture README)
    expect(repair.result?.repair?.corruptedFiles).toBe(6); // upstream: "Corrupted:6"
    const upstreamFlags: Record<string, string> = {};
    for (const line of fs.readFileSync(path.join(FIXTURE_VOLS, 'funny-f.after-n', 'ddfsroot', '.ddumbfs', 'corrupted.txt'), 'utf8').split('\n')) {
      if (line.length > 5) upstreamFlags[path.basename(line.slice(5))] = line.slice(0, 4);
    }
    expect(flagsByName(dir)).toEqual(upstreamFlags);
    // the files with a bad header stay errors until deleted (as upstream); the lost blocks stay warnings
    const after = await fsck(dir, 'check');
    expect(after.exitCode).toBe(1);
    const kinds = new Set(after.result!.check!.findings.filter((f) => f.severity === 'ERR').map((f) => f.kind));
    expect([...kinds]).toEqual(['FILE_BAD_HEADER']);
    fs.rmSync(path.join(dir, 'ddfsroot', 'ff_bad_header_short'));
    fs.rmSync(path.join(dir, 'ddfsroot', 'ff_bad_header_long'));
    const clean = await fsck(dir, 'check-blocks');
    expect(clean.exitCode, clean.log.join('\n')).toBe(2);
    expect(clean.result?.check?.summary.filesLostBlocks).toBe(4);
    expect(await md5Mismatches(dir)).toEqual([]);
    for (const name of ['ff_already_corrupted', 'ff_block_not_found_1', 'ff_block_not_found_2', 'ff_bad_zero']) {
      fs.rmSync(path.join(dir, 'ddfsroot', name));
    }
    expect((await fsck(dir, 'repair')).exitCode).toBe(0);
    expect((await fsck(dir, 'check-blocks')).exitCode).toBe(0);
  });
});

describe('alterddumbfs -k: a shaken file', () => {
  it('-n re-points every node by its hash; -R too', async () => {
    kindsRun.add('-k');
    for (const mode of ['repair', 'rebuild-blocks'] as const) {
      const dir = await freshCopy();
      const lines = await alter(dir, { shakeFiles: ['random-100k.bin'] }, 3);
      expect(lines[0]).toMatch(/25 of 25 block addresses replaced/);
      const before = await fsck(dir, 'check');
      expect(before.exitCode).toBe(1);
      const r = await fsck(dir, mode);
      expect(r.exitCode, r.log.join('')).toBe(0);
      expect(flagsByName(dir)).toEqual({ 'random-100k.bin': 'F   ' });
      expect((await fsck(dir, 'check-blocks')).exitCode).toBe(0);
      expect(await md5Mismatches(dir)).toEqual([]);
    }
  });
});

describe('alterddumbfs -I: the index file', () => {
  const ops: FileOperation[] = ['delete', 'truncate', 'empty', 'magic'];
  for (const op of ops) {
    for (const mode of ['rebuild', 'rebuild-blocks'] as const) {
      it(`-I ${op}: check and -n refuse, ${mode === 'rebuild' ? '-r' : '-R'} restores every file byte for byte`, async () => {
        kindsRun.add(`-I ${op}`);
        const dir = await freshCopy();
        await alter(dir, { indexFile: op });
        const before = await fsck(dir, 'check');
        expect(before.exitCode).toBe(1);
        expect(before.error?.message).toMatch(/index/);
        const light = await fsck(dir, 'repair');
        expect(light.exitCode).toBe(1);
        const r = await fsck(dir, mode);
        expect(r.exitCode, r.log.join('')).toBe(0);
        expect(fs.existsSync(path.join(dir, '.rebuildfsck'))).toBe(false);
        expect(fs.existsSync(path.join(dir, '.autofsck'))).toBe(false);
        const after = await fsck(dir, 'check-blocks');
        expect(after.exitCode, after.log.join('\n')).toBe(0);
        expect(await md5Mismatches(dir)).toEqual([]);
      });
    }
  }
});

describe('alterddumbfs -B: the block file', () => {
  it('-B magic: check refuses; -f -n rewrites the header; files intact', async () => {
    kindsRun.add('-B magic');
    const dir = await freshCopy();
    await alter(dir, { blockFile: 'magic' });
    const before = await fsck(dir, 'check');
    expect(before.exitCode).toBe(1);
    expect(before.error?.message).toMatch(/magic/);
    expect((await fsck(dir, 'repair')).exitCode).toBe(1);
    const r = await fsck(dir, 'repair', { force: true });
    expect(r.exitCode, r.log.join('')).toBe(0);
    expect((await fsck(dir, 'check-blocks')).exitCode).toBe(0);
    expect(await md5Mismatches(dir)).toEqual([]);
  });

  it('-B truncate: -C finds the missing blocks; -n marks every file block lost; check then only warns', async () => {
    kindsRun.add('-B truncate');
    const dir = await freshCopy();
    await alter(dir, { blockFile: 'truncate' });
    const before = await fsck(dir, 'check-blocks');
    expect(before.exitCode).toBe(1);
    const r = await fsck(dir, 'repair');
    expect(r.exitCode, r.log.join('')).toBe(0);
    expect(r.result?.repair?.corruptedFiles).toBeGreaterThanOrEqual(4);
    const flags = flagsByName(dir);
    for (const name of ['hello.txt', 'random-100k.bin', 'gen-s3.bin', 'nested.txt']) expect(flags[name]).toBe(' C  ');
    const after = await fsck(dir, 'check-blocks');
    expect(after.exitCode, after.log.join('\n')).toBe(2);
    expect(after.result?.check?.summary.usedBlocks).toBe(2);
  });

  it('-B empty: check refuses; -f -n rewrites the header, every block is lost', async () => {
    kindsRun.add('-B empty');
    const dir = await freshCopy();
    await alter(dir, { blockFile: 'empty' });
    expect((await fsck(dir, 'check')).exitCode).toBe(1);
    const r = await fsck(dir, 'repair', { force: true });
    expect(r.exitCode, r.log.join('')).toBe(0);
    expect(r.result?.repair?.corruptedFiles).toBeGreaterThan(0);
    expect((await fsck(dir, 'check-blocks')).exitCode).toBe(2);
  });

  it('-B delete: check and repair fail and name the block file', async () => {
    kindsRun.add('-B delete');
    const dir = await freshCopy();
    await alter(dir, { blockFile: 'delete' });
    const c = await fsck(dir, 'check');
    expect(c.exitCode).toBe(1);
    expect(c.error?.message).toMatch(/ddfsblocks/);
    const r = await fsck(dir, 'repair', { force: true });
    expect(r.exitCode).toBe(1);
    expect(r.error?.message).toMatch(/ddfsblocks/);
  });
});

describe('bin/alterddumbfs (built CLI)', () => {
  const built = fs.existsSync(path.resolve('dist/cli/alterddumbfs.js')) && fs.existsSync(path.resolve('dist/cli/fsckddumbfs.js'));
  it.skipIf(!built)('-f run as upstream was (cwd = vols, PARENT = funny-f): the funny files match upstream byte for byte but for bb', async () => {
    const cwd = fs.mkdtempSync(path.join(work, 'cwd-'));
    await copyFixtureVolume(CLEAN, path.join(cwd, 'funny-f'));
    const a = await run(process.execPath, [path.resolve('bin', 'alterddumbfs'), '-n', '42', '-f', 'funny-f'], { cwd, encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
    expect(a.code, a.stderr).toBe(0);
    const ours = (name: string): Buffer => fs.readFileSync(path.join(cwd, 'funny-f', 'ddfsroot', name));
    const theirs = (name: string): Buffer => fs.readFileSync(path.join(FIXTURE_VOLS, 'funny-f', 'ddfsroot', name));
    // independent of the random block bb
    for (const name of ['ff_already_corrupted', 'ff_block_not_found_1', 'ff_bad_zero', 'ff_ok_zero_null', 'ff_ok_zero_zero', 'ff_empty',
      'ff_bad_header_short', 'ff_bad_header_long']) {
      expect(ours(name).toString('hex'), name).toBe(theirs(name).toString('hex'));
    }
    // bb is a random block stored at the same address (37) as upstream's: same bytes except its hash
    const hs = 24;
    const maskHash = (b: Buffer, nodeOffsets: number[]): string => {
      const c = Buffer.from(b);
      for (const o of nodeOffsets) c.fill(0, o + 2, Math.min(c.length, o + 2 + hs));
      return c.toString('hex');
    };
    for (const [name, nodes] of [['ff_ok_bb', [16]], ['ff_recoverable_1', [16]], ['ff_recoverable_2', [16]], ['ff_size_in_header_too_big', [16]],
      ['ff_size_in_header_too_small', [16, 42, 68]], ['ff_extra_data', [16, 42]], ['ff_block_not_found_2', []]] as const) {
      expect(maskHash(ours(name), [...nodes]), name).toBe(maskHash(theirs(name), [...nodes]));
    }
    // the useless blocks W X Y Z at 38..41, the block file as long as upstream's
    const blocks = fs.readFileSync(path.join(cwd, 'funny-f', 'ddfsblocks'));
    const upstream = fs.readFileSync(path.join(FIXTURE_VOLS, 'funny-f', 'ddfsblocks'));
    expect(blocks.length).toBe(upstream.length);
    expect(blocks.subarray(38 * 4096).equals(upstream.subarray(38 * 4096))).toBe(true);
    expect(blocks.subarray(0, 37 * 4096).equals(upstream.subarray(0, 37 * 4096))).toBe(true);
  });

  it.skipIf(!built)('-n 42 -i 5, then fsckddumbfs -c / -n / -c exit 1 / 0 / 0; usage errors exit 1 as upstream', async () => {
    const dir = await freshCopy();
    const cli = (bin: string, args: string[]) => run(process.execPath, [path.resolve('bin', bin), ...args], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
    const a = await cli('alterddumbfs', ['-n', '42', '-i', '5', dir]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout.trim().split('\n')).toHaveLength(35);
    expect((await cli('fsckddumbfs', ['-c', dir])).code).toBe(1);
    expect((await cli('fsckddumbfs', ['-n', dir])).code).toBe(0);
    expect((await cli('fsckddumbfs', ['-c', dir])).code).toBe(0);
    // usage errors exit 1 as upstream, with one line
    const none = await cli('alterddumbfs', [dir]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^alterddumbfs: [^\n]+\n$/);
    const badOp = await cli('alterddumbfs', ['-I', 'nope', dir]);
    expect(badOp.code).toBe(1);
    expect(badOp.stderr).toMatch(/^alterddumbfs: [^\n]*nope[^\n]*\n$/);
    const notVolume = await cli('alterddumbfs', ['-r', '1', work]);
    expect(notVolume.code).toBe(1);
    expect(notVolume.stderr).toMatch(/not inside a ddumbfs volume/);
    // the first line without -n gives the seed to replay
    const b = await cli('alterddumbfs', ['-s', '1', dir]);
    expect(b.stdout, b.stderr).toMatch(/^seed \d+ \(replay with -n \d+\)/);
  });
});

/**
 * Upstream's `alter_meta` scenario (spec §16): after -I delete/truncate/empty/magic or -B magic the daemon must
 * refuse to mount, and `fsckddumbfs -f -r` must make the volume mountable again with every file intact.
 */
describe('alter_meta: a damaged index or block file is refused by the daemon; fsck -f -r fixes it', () => {
  const daemon = fs.existsSync(path.resolve('dist/cli/ddumbfs.js')) && fs.existsSync('/dev/fuse');
  const cases: AlterRequest[] = [
    { indexFile: 'delete' }, { indexFile: 'truncate' }, { indexFile: 'empty' }, { indexFile: 'magic' }, { blockFile: 'magic' },
  ];
  it.skipIf(!daemon)(`${cases.length} cases`, { timeout: MOUNT_TIMEOUT_MS + cases.length * 60_000 }, async () => {
    const { mountVolume, unmountAll } = await import('./helpers/mount.js');
    const mnt = fs.mkdtempSync(path.join(work, 'mnt-'));
    try {
      for (const request of cases) {
        const what = Object.entries(request).map(([k, v]) => `${k}=${v}`).join(' ');
        kindsRun.add(`mount refused after ${what}`);
        const dir = await freshCopy();
        await alter(dir, request);
        await expect(mountVolume(dir, mnt), what).rejects.toThrow();
        const r = await fsck(dir, 'rebuild', { force: true });
        expect(r.exitCode, `${what}\n${r.log.join('')}`).toBe(0);
        const mv = await mountVolume(dir, mnt);
        expect(fs.readFileSync(path.join(mnt, 'hello.txt')).length).toBe(14);
        await mv.unmount();
        expect(await md5Mismatches(dir), what).toEqual([]);
      }
    } finally {
      await unmountAll();
    }
  });
});
