import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { HelloRecord } from './record_body.js';
import { CheckpointCut } from './record_cut.js';
import { StreamEncoder, type RecordInput } from './stream_codec.js';

const HELLO: HelloRecord = {
  type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.alloc(16, 0xaa), uniqueUuid: Buffer.alloc(16, 0xbb), generation: 3, blockSize: 4096,
  hashAlgo: 'TIGER', hashSize: 24, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
};

async function frames(): Promise<{ parts: Buffer[]; checkpoints: number[] }> {
  const enc = await StreamEncoder.create();
  const inputs: RecordInput[] = [
    HELLO,
    { type: 'PASS_BEGIN', passId: Buffer.alloc(16, 1), tidBeg: 0n, tidEnd: 5n, mode: 'full' },
    { type: 'BLOCK', hash: Buffer.alloc(24, 2), data: randomBytes(4096) },
    { type: 'IDLE', headTid: 0n },
    { type: 'CHECKPOINT', keyCur: Buffer.from('a') },
    { type: 'BLOCK', hash: Buffer.alloc(24, 3), data: randomBytes(100) },
    { type: 'CHECKPOINT', keyCur: Buffer.from('b') },
    { type: 'BLOCK', hash: Buffer.alloc(24, 4), data: randomBytes(3000) },
  ];
  const parts = inputs.map((r) => enc.encode(r));
  return { parts, checkpoints: inputs.flatMap((r, i) => (r.type === 'CHECKPOINT' ? [i] : [])) };
}

/** Feed `bytes` through a cut in chunks of random sizes (1..max), arming it after `armAt` bytes (-1: never). */
async function through(bytes: Buffer, max: number, armAt: number): Promise<{ out: Buffer; cut: boolean }> {
  const cut = new CheckpointCut();
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => sink.on('end', () => r()));
  cut.pipe(sink);
  let cutSeen = false;
  for (let at = 0; at < bytes.length;) {
    if (armAt >= 0 && at >= armAt && !cutSeen) {
      cut.arm(() => (cutSeen = true));
      armAt = -1;
    }
    const n = 1 + Math.floor(Math.random() * max);
    cut.write(bytes.subarray(at, at + n));
    at += n;
  }
  cut.end();
  await ended;
  return { out: Buffer.concat(chunks), cut: cutSeen };
}

describe('CheckpointCut', () => {
  it('unarmed: every byte passes unchanged, whatever the chunking', async () => {
    const { parts } = await frames();
    const all = Buffer.concat(parts);
    for (const max of [1, 7, 24, 5000, 100_000]) expect((await through(all, max, -1)).out.equals(all)).toBe(true);
  });

  it('armed: the stream ends right after the next CHECKPOINT record that ends after arm(), split anywhere', async () => {
    const { parts, checkpoints } = await frames();
    const all = Buffer.concat(parts);
    const endOf = (i: number): number => Buffer.concat(parts.slice(0, i + 1)).length;
    for (const max of [1, 3, 24, 25, 4200, 100_000]) {
      const first = await through(all, max, 0);
      expect(first.cut).toBe(true);
      expect(first.out.equals(all.subarray(0, endOf(checkpoints[0]!)))).toBe(true);
      // armed inside the first CHECKPOINT's window (after it ended): the second one
      const second = await through(all, Math.min(max, 8), endOf(checkpoints[0]!) + 1);
      expect(second.out.equals(all.subarray(0, endOf(checkpoints[1]!)))).toBe(true);
    }
    // armed after the last CHECKPOINT: nothing to cut at, every byte passes
    const late = await through(all, 16, endOf(checkpoints[1]!) + 1);
    expect(late.cut).toBe(false);
    expect(late.out.equals(all)).toBe(true);
  });
});
