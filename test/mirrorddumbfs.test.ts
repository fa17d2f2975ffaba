/**
 * mirrorddumbfs as a command (node bin/mirrorddumbfs, compiled dist/ — run `npx tsc -p tsconfig.json` first):
 * `dump` on an encoded DDMS stream, on a corrupt and a truncated one, and the exit codes of style.md
 * (0 ok, 1 error, 2 usage).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { StreamEncoder, type RecordInput } from '../src/mirror/stream_codec.js';
import { run } from './helpers/run.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');

beforeAll(() => {
  if (!existsSync(path.join(ROOT, 'dist/cli/mirrorddumbfs.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
});

/** Run mirrorddumbfs (asynchronously: helpers/run.ts). */
async function mirror(args: string[], input?: Buffer): Promise<{ status: number; stdout: string; stderr: string }> {
  const r = await run('node', [BIN, ...args], { input: input ?? Buffer.alloc(0), timeoutMs: 60_000 });
  return { status: r.code ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString('latin1') };
}

const NAME = Buffer.from([0x6e, 0x6f, 0x6e, 0x2d, 0xe9, 0xff, 0x20, 0x31]); // "non-\xe9\xff 1": not UTF-8, with a space

/** A small pass: HELLO, PASS_BEGIN, a BLOCK, a file, a listing, a checkpoint, COMMIT, TERM; and each frame's bytes. */
async function samplePass(): Promise<{ stream: Buffer; frames: Buffer[] }> {
  const e = await StreamEncoder.create();
  const hash = Buffer.alloc(24, 0x5a);
  const records: RecordInput[] = [
    { type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.alloc(16, 1), uniqueUuid: Buffer.alloc(16, 2), generation: 4, blockSize: 4096, hashAlgo: 'TIGER', hashSize: 24, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0 },
    { type: 'PASS_BEGIN', passId: Buffer.alloc(16, 3), tidBeg: 1n, tidEnd: 12n, mode: 'full' },
    { type: 'BLOCK', hash, data: Buffer.alloc(4096, 0x5a) },
    { type: 'FILE_BEGIN', path: Buffer.concat([Buffer.from('dir/'), NAME]), meta: { mode: 0o100640, uid: 1000, gid: 100, mtimeNs: 1_700_000_000_000_000_000n, atimeNs: 0n }, sizeBytes: 4096n, nodeCount: 1n, tid: 11n, linkGroup: 0n },
    { type: 'FILE_NODES', firstIndex: 0n, hashes: [hash] },
    { type: 'FILE_END', digest: Buffer.alloc(32, 0x44) },
    { type: 'DIRLIST', path: Buffer.from('dir'), entries: [{ name: NAME, entryType: 'file', tid: 11n }], continues: false },
    { type: 'CHECKPOINT', keyCur: Buffer.from('dir') },
    { type: 'COMMIT', passId: Buffer.alloc(16, 3), tidEnd: 12n, claimKind: 'exact' },
    { type: 'TERM', reason: 0 },
  ];
  const frames = records.map((r, i) => e.encode(r, { compress: i === 2 }));
  return { stream: Buffer.concat(frames), frames };
}

describe('mirrorddumbfs dump', () => {
  it('decodes an encoded stream: one line per record, paths escaped, exit 0', async () => {
    const { stream } = await samplePass();
    const r = await mirror(['dump'], stream);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual([
      '1 HELLO', '2 PASS_BEGIN', '3 BLOCK', '4 FILE_BEGIN', '5 FILE_NODES', '6 FILE_END', '7 DIRLIST', '8 CHECKPOINT', '9 COMMIT', '10 TERM', '# 10',
    ]);
    expect(lines[0]).toContain('block_size=4096 hash_algo="TIGER" hash_size=24');
    expect(lines[2]).toContain('flags=deflate');
    expect(lines[2]).toContain('data=<4096 bytes>');
    expect(lines[3]).toContain('path="dir/non-\\xe9\\xff\\x201"');
    expect(lines[3]).toContain('meta={mode=0100640 uid=1000 gid=100 mtime_ns=1700000000000000000 atime_ns=0}');
    expect(lines[6]).toContain('entries=1["non-\\xe9\\xff\\x201":file:11]');
    expect(lines[7]).toMatch(/key_cur="dir" record_count=7 running_digest=[0-9a-f]{64}$/);
    expect(lines[10]).toBe(`# 10 records, ${stream.length} bytes, ends with TERM`);
  });

  it('exits 1 on a corrupt stream, printing the records before the fault and the fault naming its seq', async () => {
    const { frames } = await samplePass();
    const bad = Buffer.concat(frames);
    const fifthAt = frames.slice(0, 4).reduce((n, f) => n + f.length, 0); // frames[0] includes the magic
    bad[fifthAt + 26]! ^= 0x10; // a body byte of seq 5
    const r = await mirror(['dump'], bad);
    expect(r.status).toBe(1);
    expect(r.stdout.trimEnd().split('\n').map((l) => l.split(' ')[0])).toEqual(['1', '2', '3', '4']);
    expect(r.stderr).toMatch(/^mirrorddumbfs: DDMS stream: seq 5: CRC32C mismatch .*\n$/);
  });

  it('exits 1 on a truncated stream, naming the missing seq', async () => {
    const { stream, frames } = await samplePass();
    const r = await mirror(['dump'], stream.subarray(0, stream.length - frames[9]!.length));
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('mirrorddumbfs: DDMS stream: seq 10: missing: the stream ended after seq 9 without TERM (stream offset ' + `${stream.length - frames[9]!.length})\n`);
    const empty = await mirror(['dump'], Buffer.alloc(0));
    expect(empty.status).toBe(1);
    expect(empty.stderr).toContain('seq 1: truncated: the stream ended in the preamble (0 of 8 bytes)');
    const text = await mirror(['dump'], Buffer.from('hello world\n'));
    expect(text.status).toBe(1);
    expect(text.stderr).toContain('not a DDMS v1 stream');
  });
});

describe('mirrorddumbfs usage', () => {
  it('exits 2 without a command, with an unknown one, or with stray arguments', async () => {
    for (const args of [[], ['bogus', 'a'], ['promote'], ['rebind', 'a'], ['promote', 'a', 'b'], ['copy', 'a'], ['dump', 'extra'], ['dump', '--bogus'], ['copy', '--checkpoint-records', '0', 'a', 'b']]) {
      const r = await mirror(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).not.toContain('    at '); // no stack trace
    }
  });

  it('--help lists the commands, says what is not there yet, and gives the exit codes', async () => {
    const r = await mirror(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('dump');
    expect(r.stdout).toMatch(/\n  verify \[options\] <A> <B>/);
    for (const c of ['init-slave [options] <SLAVE>', 'copy [options] <SRC> <DST>', 'stream [options] <SRC> <DST>', 'read [options] <MASTER>', 'write [options] <SLAVE>', 'serve [options] <ROLE> <VOLUME>', 'status [options] <VOLUME>', 'promote [options] <VOLUME>', 'rebind [options] <VOLUME>']) {
      expect(r.stdout).toContain(`\n  ${c}`);
    }
    expect(r.stdout).toMatch(/stream repeats copy passes/);
    expect(r.stdout).toMatch(/a mounted one is read or applied through its\s+daemon.s control socket/);
    expect(r.stdout).toContain('2    usage error');
    const d = await mirror(['dump', '--help']);
    expect(d.status).toBe(0);
    expect(d.stdout).toContain('SEQ TYPE @OFFSET+SIZE');
  });
});
