/**
 * The link of a stream (§4.10): IDLE heartbeats of a silent RecordWriter that the RecordReader skips (channel.ts),
 * and the LinkMeter's byte count, activity time and -b token bucket (link_meter.ts). No timing assertion: the rate
 * is checked by the bucket's arithmetic (bytes out never above burst + rate * elapsed), not by a wall-clock bound.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RecordReader, RecordWriter } from './channel.js';
import { LinkMeter } from './link_meter.js';
import type { HelloRecord } from './record_body.js';

const HELLO: HelloRecord = {
  type: 'HELLO', version: 1, role: 'master', sharedUuid: Buffer.alloc(16, 0xaa), uniqueUuid: Buffer.alloc(16, 0xbb), generation: 1,
  blockSize: 4096, hashAlgo: 'TIGER', hashSize: 24, syncBegTid: 0n, syncEndTid: 0n, claimKind: 'none', capabilities: 0,
};

async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

describe('heartbeats', () => {
  it('a silent writer sends IDLE records after its first record; the reader skips them; none after TERM', async () => {
    const pipe = new PassThrough();
    const w = await RecordWriter.create(pipe, true, { heartbeatMs: 20 });
    const r = await RecordReader.create(pipe);
    await new Promise((res) => setTimeout(res, 60));
    expect(w.heartbeats).toBe(0); // nothing before HELLO
    await w.send(HELLO);
    await until(() => w.heartbeats >= 2);
    await w.send({ type: 'TERM', reason: 0 });
    const sentBeats = w.heartbeats;
    await w.end();
    expect((await r.next()).record.type).toBe('HELLO');
    const term = await r.next();
    expect(term.record.type).toBe('TERM');
    expect(term.seq).toBe(BigInt(2 + sentBeats)); // the heartbeats took their seqs
    expect(r.heartbeats).toBe(sentBeats);
    await new Promise((res) => setTimeout(res, 60));
    expect(w.heartbeats).toBe(sentBeats);
  });

  it('a writer with heartbeatMs 0 sends none', async () => {
    const pipe = new PassThrough();
    const w = await RecordWriter.create(pipe, true, { heartbeatMs: 0 });
    await w.send(HELLO);
    await new Promise((res) => setTimeout(res, 50));
    expect(w.heartbeats).toBe(0);
    await w.send({ type: 'TERM', reason: 0 });
    await w.end();
  });
});

describe('LinkMeter', () => {
  it('without a rate: passes bytes unchanged, counts them and notes the activity', async () => {
    const m = new LinkMeter(null);
    const out: Buffer[] = [];
    m.on('data', (c: Buffer) => out.push(c));
    const before = m.lastActivityMs;
    await new Promise((res) => setTimeout(res, 5));
    m.write(Buffer.from('abc'));
    m.end(Buffer.from('def'));
    await new Promise((res) => m.on('end', res));
    expect(Buffer.concat(out).toString()).toBe('abcdef');
    expect(m.bytes).toBe(6);
    expect(m.lastActivityMs).toBeGreaterThan(before);
  });

  it('with a rate: the bytes out never exceed the burst plus the rate times the time elapsed, and all arrive in order', async () => {
    const rate = 64 * 1024; // bytes/s; burst = 16 KiB (one piece)
    const m = new LinkMeter(rate);
    const data = Buffer.alloc(48 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const t0 = Date.now();
    const out: Buffer[] = [];
    let over = 0;
    m.on('data', (c: Buffer) => {
      out.push(c);
      const got = out.reduce((n, b) => n + b.length, 0);
      const allowed = 16 * 1024 + ((Date.now() - t0 + 5) / 1000) * rate;
      if (got > allowed) over++;
    });
    m.end(data);
    await new Promise((res) => m.on('end', res));
    expect(Buffer.concat(out).equals(data)).toBe(true);
    expect(over).toBe(0);
    // 32 KiB beyond the burst at 64 KiB/s needs at least 0.5 s (a lower bound only: a slow machine takes longer)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(490);
  });
});
