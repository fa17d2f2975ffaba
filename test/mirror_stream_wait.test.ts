/**
 * How `mirrorddumbfs stream` waits between passes (cli/mirror_stream.ts, spec §4.10), in process, against a real
 * journal (mirror/journal.ts) and a stand-in for the pass (it records what it covered and may append records, as a
 * master written during a pass): while the head is above the claim the next pass starts without waiting -i; caught
 * up, no pass; a record appended then wakes the stream before -i (an -i of an hour: a pass at all proves it did not
 * wait). And HeadWatch: each look decodes only what was appended since the previous one, and agrees with the
 * journal's own summary (torn tail, corrupt record, segment dropped).
 * Assertions are on the sequence of passes and on bytes read, never on time.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HeadWatch, runStream, type PassLink } from '../src/cli/mirror_stream.js';
import { EXIT } from '../src/cli/exit_codes.js';
import { fileDevices } from '../src/io/device.js';
import { Journal, JOURNAL_DIRECTORY, summarizeJournal } from '../src/mirror/journal.js';
import { mirrorDirectory } from '../src/mirror/state.js';
import { readStreamState } from '../src/mirror/stream_state.js';
import { waitFor } from './helpers/mount.js';

const HOUR_S = 3600;
let parent: string;
let journal: Journal;

beforeEach(async () => {
  parent = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-stream-wait-'));
  fs.mkdirSync(mirrorDirectory(parent), { mode: 0o700 });
  journal = await Journal.open(mirrorDirectory(parent), { devices: fileDevices });
});

afterEach(async () => {
  await journal.close().catch(() => undefined);
  fs.rmSync(parent, { recursive: true, force: true });
});

const record = (name: string): Promise<bigint> => journal.append({ op: 'create', path: Buffer.from(name, 'latin1') });

const segments = (): string[] => fs.readdirSync(path.join(mirrorDirectory(parent), JOURNAL_DIRECTORY)).filter((n) => n.endsWith('.jnl')).sort();

describe('stream waits', () => {
  it('while behind, the next pass starts without waiting -i; caught up, none; a journal record wakes it before -i', async () => {
    await record('a');
    const covered: bigint[] = [];
    const stop = new AbortController();
    const passes = async (link: PassLink): Promise<number> => {
      // a pass covers the durable head as it starts
      link.tidEnd = journal.durableHead;
      covered.push(link.tidEnd);
      if (covered.length === 1) await record('b'); // the master moved during the first pass: the stream is behind
      if (link.tidEnd === 3n) stop.abort();
      return EXIT.OK;
    };
    const lines: string[] = [];
    const done = runStream({ localMaster: parent, localSlave: null, stateAt: parent },
      { interval: HOUR_S, maxInterval: HOUR_S, backoff: 1, timeout: 0 }, passes, (l) => lines.push(l), stop.signal);
    // passes 1 and 2 back to back: the second did not wait the hour of -i
    expect(await waitFor(() => readStreamState(parent)?.passCount === 2 && readStreamState(parent)?.connection === 'idle', 60_000)).toBe(true);
    expect(covered).toEqual([1n, 2n]);
    const idle = readStreamState(parent)!;
    expect(idle.claimTid).toBe('2');
    expect(idle.lagTids).toBe('0');
    expect(idle.lagSeconds).toBe(0);
    // caught up: the stream looked at the head and started no pass
    expect(idle.headLooks).toBeGreaterThanOrEqual(1);
    expect(covered).toHaveLength(2);
    await record('c'); // wakes it: the third pass comes long before the hour of -i
    const woken = await waitFor(() => covered.includes(3n), 60_000);
    stop.abort(); // (done already when woken: the pass covering 3 aborted)
    expect(woken).toBe(true);
    expect(await done).toBe(EXIT.OK);
    // the record on disk wakes the stream, possibly before its fsync made it durable: a pass may then cover 2 again
    // (nothing new) and the next one, after MIRROR_STREAM_NO_PROGRESS_WAIT_S, covers 3
    expect(covered.slice(0, 2)).toEqual([1n, 2n]);
    expect(covered.slice(2).every((t) => t === 2n || t === 3n)).toBe(true);
    expect(covered[covered.length - 1]).toBe(3n);
    expect(readStreamState(parent)!.connection).toBe('stopped');
    // stopped inside the third pass (no local slave here: as for a remote one, after its next checkpoint)
    expect(lines).toEqual(["stream: SIGTERM: stopping after the slave's next checkpoint"]);
  });
});

describe('HeadWatch', () => {
  it('reads only what was appended since its last look and agrees with the journal summary', async () => {
    for (let k = 0; k < 200; k++) await record(`f${k}`);
    const w = new HeadWatch(parent);
    const summaryHead = async (): Promise<bigint> => BigInt((await summarizeJournal(mirrorDirectory(parent), fileDevices))!.durableHead);
    expect(await w.read()).toBe(200n);
    expect(await summaryHead()).toBe(200n);
    const first = w.bytesRead;
    expect(first).toBe(fs.statSync(path.join(mirrorDirectory(parent), JOURNAL_DIRECTORY, segments()[0]!)).size);
    expect(await w.read()).toBe(200n); // nothing appended: nothing read
    expect(w.bytesRead).toBe(first);
    await record('one-more');
    expect(await w.read()).toBe(201n);
    const oneRecord = w.bytesRead - first;
    expect(oneRecord).toBeGreaterThan(0);
    expect(oneRecord).toBeLessThan(64); // that record alone, not the segment again

    // a torn tail (a record being written): the head stays at the last whole record, then moves once it is whole
    await journal.close();
    const seg = path.join(mirrorDirectory(parent), JOURNAL_DIRECTORY, segments()[0]!);
    const whole = fs.readFileSync(seg);
    const lastRecord = whole.subarray(whole.length - oneRecord);
    fs.truncateSync(seg, whole.length - oneRecord);
    const w2 = new HeadWatch(parent);
    expect(await w2.read()).toBe(200n);
    fs.appendFileSync(seg, lastRecord.subarray(0, 10));
    expect(await w2.read()).toBe(200n);
    expect(await summaryHead()).toBe(200n);
    fs.appendFileSync(seg, lastRecord.subarray(10));
    expect(await w2.read()).toBe(201n);
    expect(await summaryHead()).toBe(201n);

    // a corrupt record: nothing after it counts, as in the summary
    const bad = Buffer.from(lastRecord);
    bad.writeBigUInt64LE(202n, 8); // another TID under the old CRC
    fs.appendFileSync(seg, bad);
    expect(await w2.read()).toBe(201n);
    expect(await summaryHead()).toBe(201n);

    // the segment dropped (retention) and a new one begun: the head is read from what is there now
    journal = await Journal.open(mirrorDirectory(parent), { devices: fileDevices });
    await record('after-reopen');
    const head = journal.durableHead;
    expect(await w2.read()).toBe(await summaryHead());
    expect(await w2.read()).toBe(head);
  });
});
