/**
 * dump rendering: one line per record whatever bytes a path holds, paths escaped from their bytes, lists cut
 * unless --full, the summary line, and the lines before a fault delivered before the fault.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DdfsError } from '../errors.js';
import type { HelloRecord } from './record_body.js';
import { dumpLines, escapeBytes, renderRecord } from './dump.js';
import { StreamEncoder, type RecordInput } from './stream_codec.js';

const HELLO: HelloRecord = {
  type: 'HELLO',
  version: 1,
  role: 'master',
  sharedUuid: Buffer.alloc(16, 0x11),
  uniqueUuid: Buffer.alloc(16, 0x22),
  generation: 1,
  blockSize: 4096,
  hashAlgo: 'TIGER',
  hashSize: 24,
  syncBegTid: 0n,
  syncEndTid: 0n,
  claimKind: 'none',
  capabilities: 0,
};

async function encode(records: RecordInput[]): Promise<Buffer> {
  const e = await StreamEncoder.create();
  return Buffer.concat(records.map((r) => e.encode(r)));
}

async function lines(stream: Buffer, full = false): Promise<{ lines: string[]; fault: unknown }> {
  const out: string[] = [];
  async function* source(): AsyncGenerator<Buffer> {
    for (let at = 0; at < stream.length; at += 7) yield stream.subarray(at, at + 7);
  }
  try {
    for await (const line of dumpLines(source(), { full })) out.push(line);
    return { lines: out, fault: null };
  } catch (err) {
    return { lines: out, fault: err };
  }
}

describe('escapeBytes', () => {
  it('keeps printable ASCII and escapes everything else, quote and backslash included', () => {
    expect(escapeBytes(Buffer.from('a b/c'))).toBe('"a\\x20b/c"');
    expect(escapeBytes(Buffer.from([0xff, 0x0a, 0x22, 0x5c, 0x00, 0xc3, 0xa9]))).toBe('"\\xff\\x0a\\x22\\x5c\\x00\\xc3\\xa9"');
    expect(escapeBytes(Buffer.alloc(0))).toBe('""');
  });

  it('is injective and never yields a space, a newline or a bare quote inside', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), (a, b) => {
        const ea = escapeBytes(a);
        expect(ea).not.toMatch(/[\s]/);
        expect(ea.slice(1, -1)).not.toContain('"');
        if (!Buffer.from(a).equals(Buffer.from(b))) expect(ea).not.toBe(escapeBytes(b));
      }),
    );
  });
});

describe('dumpLines', () => {
  it('prints one line per record, paths escaped from their bytes, then a summary', async () => {
    const name = Buffer.from([0x64, 0x69, 0x72, 0x2f, 0xff, 0x0a, 0x78]); // "dir/\xff\nx": not UTF-8, with a newline
    const stream = await encode([
      HELLO,
      { type: 'DELETE', path: name, tid: 9n },
      { type: 'FILE_NODES', firstIndex: 0n, hashes: Array.from({ length: 6 }, (_, i) => Buffer.alloc(24, i)) },
      { type: 'TERM', reason: 0 },
    ]);
    const { lines: out, fault } = await lines(stream);
    expect(fault).toBeNull();
    expect(out).toHaveLength(5);
    expect(out[0]).toMatch(/^1 HELLO @8\+\d+ version=1 role=master shared_uuid=1{32} /);
    expect(out[1]).toMatch(/^2 DELETE @\d+\+\d+ path="dir\/\\xff\\x0ax" tid=9$/);
    expect(out[2]).toContain(`hashes=6[${'00'.repeat(24)},${'01'.repeat(24)},${'02'.repeat(24)},${'03'.repeat(24)},...+2]`);
    expect(out[3]).toMatch(/^4 TERM @\d+\+34 reason=0$/);
    expect(out[4]).toBe(`# 4 records, ${stream.length} bytes, ends with TERM`);
    const fullOut = (await lines(stream, true)).lines;
    expect(fullOut[2]).toContain(`${'04'.repeat(24)},${'05'.repeat(24)}]`);
  });

  it('yields the lines of the records before a fault, then throws the fault naming its seq', async () => {
    const e = await StreamEncoder.create();
    const frames = [HELLO, { type: 'IDLE', headTid: 1n }, { type: 'IDLE', headTid: 2n }, { type: 'TERM', reason: 0 }].map((r) => e.encode(r as RecordInput));
    const bad = Buffer.concat(frames);
    const thirdAt = frames[0]!.length + frames[1]!.length; // frames[0] includes the magic
    bad[thirdAt + 30]! ^= 0x01; // a body byte of seq 3
    const { lines: out, fault } = await lines(bad);
    expect(out.map((l) => l.split(' ')[0])).toEqual(['1', '2']);
    expect(fault).toBeInstanceOf(DdfsError);
    expect((fault as DdfsError).data.seq).toBe(3n);
  });

  it('renders an unknown, skippable record by its type code', () => {
    const line = renderRecord({ seq: 5n, flags: 0, offset: 100, sizeBytes: 30, record: { type: 'UNKNOWN', typeCode: 4000, body: Buffer.alloc(6) } });
    expect(line).toBe('5 UNKNOWN @100+30 type_code=4000 body=<6 bytes>');
  });
});
