/**
 * The master's TID journal (mirroring spec §4.2, §4.3, §4.18 inv. 8): record codec, recovery of torn and corrupt
 * tails, next_tid above every TID ever written (also after a crash cut at every byte of the last segment and after
 * power cuts of the crash device), group commit counted through the Device seam, rotation, retention, reader API.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CrashDeviceFactory, SeededRandom } from '../io/crash_device.js';
import { fileDevices, type Device, type DeviceFactory } from '../io/device.js';
import { JOURNAL_PENDING_SIZE_MAX } from '../limits.js';
import { Crc32c } from './crc32c.js';
import {
  decodeJournalRecord, encodeJournalRecord, Journal, JOURNAL_DIRECTORY, JOURNAL_FRAME_SIZE, JOURNAL_HEADER_SIZE, readJournalOffline, type JournalRecord,
} from './journal.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-journal-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A factory over real files that counts device syncs, and the number of waiters resolved before each sync ended;
 * while `hold` is set a sync waits for it, and with `fail` set a sync throws it.
 */
function countingDevices(): DeviceFactory & { syncs: number; syncsDone: number; hold: Promise<void> | null; fail: Error | null } {
  const f = {
    syncs: 0,
    syncsDone: 0,
    hold: null as Promise<void> | null,
    fail: null as Error | null,
    async open(p: string | Buffer, o: Parameters<DeviceFactory['open']>[1]): Promise<Device> {
      const d = await fileDevices.open(p, o);
      return {
        path: d.path,
        read: (...a: Parameters<Device['read']>) => d.read(...a),
        write: (...a: Parameters<Device['write']>) => d.write(...a),
        size: () => d.size(),
        truncate: (n: number) => d.truncate(n),
        close: () => d.close(),
        sync: async () => {
          f.syncs++;
          if (f.hold) await f.hold;
          if (f.fail) throw f.fail;
          await d.sync();
          f.syncsDone++;
        },
      };
    },
    rename: fileDevices.rename,
    remove: fileDevices.remove,
    mkdir: fileDevices.mkdir,
    syncDirectory: fileDevices.syncDirectory,
  };
  return f;
}

function segmentFiles(): string[] {
  return fs.readdirSync(path.join(dir, JOURNAL_DIRECTORY)).sort().map((n) => path.join(dir, JOURNAL_DIRECTORY, n));
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('journal record codec', () => {
  it('round-trips every op with raw byte paths (non-UTF-8, empty dest, two paths)', async () => {
    const crc = await Crc32c.load();
    const records: JournalRecord[] = [
      { tid: 1n, op: 'create', path: b('a') },
      { tid: 2n ** 53n + 7n, op: 'rename', path: Buffer.from([0xff, 0xfe, 0x2f, 0x80]), dest: Buffer.from([0xc3, 0x28]) },
      { tid: 2n ** 64n - 1n, op: 'write', path: b('x/'.repeat(2000) + 'y') },
    ];
    for (const r of records) {
      const enc = encodeJournalRecord(crc, r);
      const d = decodeJournalRecord(crc, enc, 0);
      expect(d.kind).toBe('record');
      if (d.kind !== 'record') continue;
      expect(d.sizeBytes).toBe(enc.length);
      expect(d.record.tid).toBe(r.tid);
      expect(d.record.op).toBe(r.op);
      expect(d.record.path.equals(r.path)).toBe(true);
      expect(d.record.dest?.equals(r.dest!) ?? r.dest === undefined).toBe(true);
    }
  });

  it('detects every single bit flip and every truncation of a record', async () => {
    const crc = await Crc32c.load();
    const enc = encodeJournalRecord(crc, { tid: 42n, op: 'link', path: b('dir/f'), dest: b('dir/g') });
    for (let bit = 0; bit < enc.length * 8; bit++) {
      const bad = Buffer.from(enc);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const d = decodeJournalRecord(crc, bad, 0);
      // a flipped length may also read as torn (more bytes expected than there are): never as a record
      expect(d.kind, `bit ${bit}`).not.toBe('record');
    }
    for (let n = 0; n < enc.length; n++) expect(decodeJournalRecord(crc, enc.subarray(0, n), 0).kind).toBe('torn');
  });

  it('refuses a length field out of bounds without reading past it', async () => {
    const crc = await Crc32c.load();
    const huge = Buffer.alloc(8);
    huge.writeUInt32LE(0xffffffff, 0);
    expect(decodeJournalRecord(crc, huge, 0)).toEqual({ kind: 'corrupt', reason: 'body length 4294967295 out of bounds' });
  });
});

describe('Journal', () => {
  it('appends, is durable, and reopens with every record and next_tid above them', async () => {
    const j = await Journal.open(dir, { devices: fileDevices });
    const tids = await Promise.all([j.append({ op: 'mkdir', path: b('d') }), j.append({ op: 'rename', path: b('d'), dest: b('e') })]);
    expect(tids).toEqual([1n, 2n]);
    expect(j.durableHead).toBe(2n);
    await j.close();
    expect(fs.statSync(path.join(dir, JOURNAL_DIRECTORY)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(segmentFiles()[0]!).mode & 0o777).toBe(0o600);
    const k = await Journal.open(dir, { devices: fileDevices });
    expect(k.nextTid).toBe(3n);
    expect(k.durableHead).toBe(2n);
    const rs = await k.readRange(0n, 100n);
    expect(rs.map((r) => [r.tid, r.op, r.path.toString(), r.dest?.toString()])).toEqual([[1n, 'mkdir', 'd', undefined], [2n, 'rename', 'd', 'e']]);
    expect((await k.readRange(1n, 2n)).map((r) => r.tid)).toEqual([2n]);
    await k.close();
  });

  it('never goes below the floor it is given (state next_tid), and never below a TID on disk', async () => {
    const j = await Journal.open(dir, { devices: fileDevices, nextTidFloor: 100n });
    expect(await j.append({ op: 'chmod', path: b('f') })).toBe(100n);
    await j.close();
    const k = await Journal.open(dir, { devices: fileDevices, nextTidFloor: 5n });
    expect(k.nextTid).toBe(101n);
    await k.close();
  });

  it('group commit: many concurrent appends share few syncs, and each resolves only after a sync', async () => {
    const devices = countingDevices();
    const j = await Journal.open(dir, { devices });
    const before = devices.syncs;
    const seen: number[] = [];
    const all = Array.from({ length: 200 }, (_, i) => j.append({ op: 'utimens', path: b(`f${i}`) }).then(() => seen.push(devices.syncsDone - before)));
    await Promise.all(all);
    // all 200 appended in one turn of the event loop: one window, one sync
    expect(devices.syncs - before).toBe(1);
    expect(seen.every((n) => n >= 1)).toBe(true);
    expect(j.stats().syncCount).toBe(1);
    // appends arriving while a sync is in flight wait for the next one, not a sync each
    const more: Promise<bigint>[] = [];
    const first = j.append({ op: 'unlink', path: b('a') });
    await new Promise((r) => setImmediate(r)); // the flusher has started its sync
    for (let i = 0; i < 50; i++) more.push(j.append({ op: 'unlink', path: b(`b${i}`) }));
    await Promise.all([first, ...more]);
    expect(devices.syncs - before).toBeLessThanOrEqual(3);
    expect(j.durableHead).toBe(251n);
    await j.close();
  });

  it('beforeWrite: the first write of a file in a window makes a record, later ones none; nothing waits; beginCover closes the window', async () => {
    let clock = 0;
    const j = await Journal.open(dir, { devices: fileDevices, now: () => clock });
    expect(j.beforeWrite(7n, b('f'))).toBeNull();
    expect(j.nextTid).toBe(2n);
    expect(j.beforeWrite(7n, b('f'))).toBeNull();
    expect(j.nextTid).toBe(2n);
    expect(j.beforeWrite(8n, b('g'))).toBeNull();
    expect(j.nextTid).toBe(3n);
    await j.sync();
    expect(j.beforeWrite(7n, b('f'))).toBeNull();
    expect(j.nextTid).toBe(3n);
    const head = j.beginCover();
    expect(head).toBe(2n);
    j.beforeWrite(7n, b('f'));
    expect(j.nextTid).toBe(4n);
    clock += 10_000; // the window also ends with time
    j.beforeWrite(7n, b('f'));
    expect(j.nextTid).toBe(5n);
    await j.close();
    const k = await Journal.open(dir, { devices: fileDevices });
    expect((await k.readRange(0n, 99n)).map((r) => `${r.tid}:${r.op}:${r.path.toString()}`)).toEqual(['1:write:f', '2:write:g', '3:write:f', '4:write:f']);
    await k.close();
  });

  it('coalescing: a chmod/chown/utimens of a path a record of the window names makes no record; a pass (beginCover), time or another path make one', async () => {
    let clock = 0;
    const j = await Journal.open(dir, { devices: fileDevices, now: () => clock });
    // a new file as cp -a makes it: create, write, chmod, chown, utimens: two records, three changes coalesced
    expect(j.record({ op: 'create', path: b('f') })).toBeNull();
    expect(j.beforeWrite(7n, b('f'))).toBeNull();
    for (const op of ['chmod', 'chown', 'utimens'] as const) expect(j.record({ op, path: b('f') })).toBeNull();
    expect(j.nextTid).toBe(3n);
    expect(j.stats().coalescedCount).toBe(3);
    // another path, even one sharing the bytes' prefix, and an op that is not metadata, make records
    j.record({ op: 'chmod', path: b('f2') });
    j.record({ op: 'chmod', path: b('f2') }); // coalesced into the chmod of the window
    j.record({ op: 'truncate', path: b('f') });
    expect(j.nextTid).toBe(5n);
    // a rename's dest is named by its record: a chmod of it right after is coalesced, of the source too
    j.record({ op: 'rename', path: b('f2'), dest: b('d/g') });
    j.record({ op: 'utimens', path: b('d/g') });
    expect(j.nextTid).toBe(6n);
    // a pass takes the head: the window ends, the next chmod of f has its own record (a TID above the cover)
    await j.sync();
    const head = j.beginCover();
    expect(head).toBe(5n);
    j.record({ op: 'chmod', path: b('f') });
    expect(j.nextTid).toBe(7n);
    j.record({ op: 'chown', path: b('f') });
    expect(j.nextTid).toBe(7n);
    clock += 10_000; // the window also ends with time
    j.record({ op: 'chown', path: b('f') });
    expect(j.nextTid).toBe(8n);
    expect(j.stats().coalescedCount).toBe(6);
    await j.close();
    const k = await Journal.open(dir, { devices: fileDevices });
    expect((await k.readRange(0n, 99n)).map((r) => `${r.tid}:${r.op}:${r.path.toString()}`))
      .toEqual(['1:create:f', '2:write:f', '3:chmod:f2', '4:truncate:f', '5:rename:f2', '6:chmod:f', '7:chown:f']);
    await k.close();
  });

  it('coalescing honours writeWindowMs: a long window coalesces across any time until a pass', async () => {
    let clock = 0;
    const j = await Journal.open(dir, { devices: fileDevices, now: () => clock, writeWindowMs: 3_600_000 });
    j.record({ op: 'mkdir', path: b('d') });
    clock += 60_000;
    j.record({ op: 'chmod', path: b('d') });
    expect(j.nextTid).toBe(2n);
    j.beginCover();
    j.record({ op: 'chmod', path: b('d') });
    expect(j.nextTid).toBe(3n);
    await j.close();
  });

  it('record: buffered records wait for nothing, share one sync per window, and durableHead moves only after the sync', async () => {
    const devices = countingDevices();
    const j = await Journal.open(dir, { devices, commitWindowMs: 50 });
    const before = devices.syncs;
    for (let i = 0; i < 100; i++) expect(j.record({ op: 'chmod', path: b(`f${i}`) })).toBeNull();
    expect(j.nextTid).toBe(101n);
    expect(j.durableHead).toBe(0n);
    expect(devices.syncs - before).toBe(0);
    // the flusher writes them on its own, in one window
    while (j.durableHead < 100n) await new Promise((r) => setTimeout(r, 5));
    expect(devices.syncs - before).toBe(1);
    // a sync that has not returned yet does not move the head
    let release!: () => void;
    devices.hold = new Promise<void>((r) => {
      release = r;
    });
    j.record({ op: 'utimens', path: b('x') });
    const synced = j.sync();
    while (devices.syncs - before < 2) await new Promise((r) => setImmediate(r));
    expect(j.durableHead).toBe(100n);
    // a sync asked for while the write is in flight resolves with it
    const synced2 = j.sync();
    devices.hold = null;
    release();
    await Promise.all([synced, synced2]);
    expect(j.durableHead).toBe(101n);
    expect(devices.syncs - before).toBe(2);
    await j.close();
    const k = await Journal.open(dir, { devices: fileDevices });
    expect((await k.readRange(0n, 999n)).length).toBe(101);
    await k.close();
  });

  it('a failed write or sync of buffered records fails every later record, beforeWrite, sync and close', async () => {
    const devices = countingDevices();
    const j = await Journal.open(dir, { devices, commitWindowMs: 1 });
    devices.fail = Object.assign(new Error('EIO: injected'), { code: 'EIO' });
    expect(j.record({ op: 'mkdir', path: b('d') })).toBeNull();
    await expect(j.sync()).rejects.toMatchObject({ code: 'EIO' });
    expect(j.durableHead).toBe(0n);
    expect(() => j.record({ op: 'mkdir', path: b('e') })).toThrow(/EIO/);
    await expect(j.beforeWrite(9n, b('w'))).rejects.toMatchObject({ code: 'EIO' });
    await expect(j.append({ op: 'mkdir', path: b('e') })).rejects.toMatchObject({ code: 'EIO' });
    await expect(j.close()).rejects.toMatchObject({ code: 'EIO' });
  });

  it('past JOURNAL_PENDING_SIZE_MAX buffered bytes a record waits for its sync (memory stays bounded)', async () => {
    const devices = countingDevices();
    const j = await Journal.open(dir, { devices, commitWindowMs: 60_000 });
    const long = b('p'.repeat(4000));
    let wait: Promise<void> | null = null;
    let n = 0;
    while (wait === null && n < 10 * Math.ceil(JOURNAL_PENDING_SIZE_MAX / 4000)) {
      wait = j.record({ op: 'create', path: long });
      n++;
    }
    expect(wait).not.toBeNull();
    expect(n).toBeGreaterThan(JOURNAL_PENDING_SIZE_MAX / 5000);
    // the long window is cut short: the waiting record is durable without waiting a minute
    await wait;
    expect(j.durableHead).toBe(BigInt(n));
    await j.close();
  });

  it('rotates segments by size, reads across them, and retention drops only whole segments below a TID', async () => {
    const j = await Journal.open(dir, { devices: fileDevices, segmentSizeMax: 200 });
    for (let i = 0; i < 40; i++) await j.append({ op: 'create', path: b(`file-${i}`) });
    const st = j.stats();
    expect(st.segmentCount).toBeGreaterThan(3);
    expect(segmentFiles().length).toBe(st.segmentCount);
    expect((await j.readRange(0n, 40n)).map((r) => r.tid)).toEqual(Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    const dropped = await j.dropBelow(20n);
    expect(dropped).toBeGreaterThan(0);
    expect(j.oldestTid).toBeLessThanOrEqual(20n);
    expect(j.oldestTid).toBeGreaterThan(1n);
    await expect(j.readRange(0n, 40n)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await j.readRange(19n, 40n)).map((r) => r.tid)).toEqual(Array.from({ length: 21 }, (_, i) => BigInt(i + 20)));
    await j.close();
    const k = await Journal.open(dir, { devices: fileDevices, segmentSizeMax: 200 });
    expect(k.nextTid).toBe(41n);
    expect(k.oldestTid).toBe(j.oldestTid);
    await k.close();
  });

  it('recovers a torn or corrupt tail: truncated at the last good record, later appends after it', async () => {
    const j = await Journal.open(dir, { devices: fileDevices });
    for (let i = 0; i < 5; i++) await j.append({ op: 'mknod', path: b(`n${i}`) });
    await j.close();
    const seg = segmentFiles()[0]!;
    const full = fs.readFileSync(seg);
    // flip a bit in the 4th record's body
    const crc = await Crc32c.load();
    const offsets: number[] = [];
    for (let o = JOURNAL_HEADER_SIZE; o < full.length;) {
      offsets.push(o);
      const d = decodeJournalRecord(crc, full, o);
      if (d.kind !== 'record') throw new Error('bad fixture');
      o += d.sizeBytes;
    }
    const bad = Buffer.from(full);
    bad[offsets[3]! + 12]! ^= 0x10;
    fs.writeFileSync(seg, bad);
    const k = await Journal.open(dir, { devices: fileDevices });
    expect(k.recovery).toMatchObject({ recordCount: 3, damaged: false, truncatedBytes: full.length - offsets[3]! });
    expect(fs.statSync(seg).size).toBe(offsets[3]);
    // the lost records' TIDs (4, 5) were never durable to a reader: nextTid follows the last good one
    expect(k.nextTid).toBe(4n);
    expect(await k.append({ op: 'chown', path: b('z') })).toBe(4n);
    await k.close();
    const m = await Journal.open(dir, { devices: fileDevices });
    expect((await m.readRange(0n, 9n)).map((r) => r.path.toString())).toEqual(['n0', 'n1', 'n2', 'z']);
    await m.close();
  });

  it('a record lost before the tail (a middle segment) marks the journal damaged and keeps next_tid above all', async () => {
    const j = await Journal.open(dir, { devices: fileDevices, segmentSizeMax: 100 });
    for (let i = 0; i < 12; i++) await j.append({ op: 'create', path: b(`f${i}`) });
    await j.close();
    const files = segmentFiles();
    expect(files.length).toBeGreaterThan(2);
    const mid = files[1]!;
    const bytes = fs.readFileSync(mid);
    bytes[JOURNAL_HEADER_SIZE + 9]! ^= 0xff;
    fs.writeFileSync(mid, bytes);
    const k = await Journal.open(dir, { devices: fileDevices, segmentSizeMax: 100 });
    expect(k.recovery.damaged).toBe(true);
    expect(k.nextTid).toBe(13n);
    expect(k.stats().segmentCount).toBe(1);
    await k.close();
  });

  it('after a cut of the last segment at every byte: the good prefix is kept and next_tid is above it', async () => {
    const j = await Journal.open(dir, { devices: fileDevices });
    for (let i = 0; i < 6; i++) await j.append({ op: i % 2 ? 'rename' : 'truncate', path: b(`p${i}`), ...(i % 2 ? { dest: b(`q${i}`) } : {}) });
    await j.close();
    const seg = segmentFiles()[0]!;
    const full = fs.readFileSync(seg);
    const crc = await Crc32c.load();
    const ends: number[] = [];
    for (let o = JOURNAL_HEADER_SIZE; o < full.length;) {
      const d = decodeJournalRecord(crc, full, o);
      if (d.kind !== 'record') throw new Error('bad fixture');
      o += d.sizeBytes;
      ends.push(o);
    }
    for (let cut = 0; cut <= full.length; cut++) {
      fs.rmSync(path.join(dir, JOURNAL_DIRECTORY), { recursive: true });
      fs.mkdirSync(path.join(dir, JOURNAL_DIRECTORY), { mode: 0o700 });
      fs.writeFileSync(seg, full.subarray(0, cut));
      const k = await Journal.open(dir, { devices: fileDevices });
      const whole = ends.filter((e) => e <= cut).length;
      expect(k.recovery.recordCount, `cut ${cut}`).toBe(whole);
      expect(k.recovery.damaged, `cut ${cut}`).toBe(false);
      expect(k.nextTid, `cut ${cut}`).toBe(BigInt(whole + 1));
      const rs = await k.readRange(0n, 100n);
      expect(rs.map((r) => r.tid)).toEqual(Array.from({ length: whole }, (_, i) => BigInt(i + 1)));
      // the next record lands right after the kept prefix and survives a reopen
      const tid = await k.append({ op: 'symlink', path: b('after') });
      await k.close();
      const m = await Journal.open(dir, { devices: fileDevices });
      expect(m.nextTid, `cut ${cut}`).toBe(tid + 1n);
      await m.close();
    }
  });

  it('power cuts of the crash device at every mutating call: every acknowledged TID survives, none is reused', async () => {
    for (let crashAt = 1; crashAt <= 40; crashAt++) {
      fs.rmSync(path.join(dir, JOURNAL_DIRECTORY), { recursive: true, force: true });
      const devices = new CrashDeviceFactory({ crashAt, rng: new SeededRandom(crashAt) });
      const acked: bigint[] = [];
      try {
        const j = await Journal.open(dir, { devices });
        for (let round = 0; round < 8; round++) {
          const batch = Array.from({ length: 3 }, (_, i) => j.append({ op: 'create', path: b(`r${round}-${i}`) }).then((t) => acked.push(t)));
          await Promise.all(batch);
        }
        await j.close();
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code, `crashAt ${crashAt}`).toBe('EIO');
      }
      devices.dispose();
      const k = await Journal.open(dir, { devices: fileDevices });
      const tids = (await k.readRange(0n, 1000n)).map((r) => r.tid);
      for (const t of acked) expect(tids, `crashAt ${crashAt}`).toContain(t);
      const top = tids.length > 0 ? tids[tids.length - 1]! : 0n;
      expect(k.nextTid, `crashAt ${crashAt}`).toBeGreaterThan(top);
      await k.close();
    }
  });

  it('refuses a symlink in place of the journal directory', async () => {
    fs.mkdirSync(path.join(dir, 'elsewhere'));
    fs.symlinkSync(path.join(dir, 'elsewhere'), path.join(dir, JOURNAL_DIRECTORY));
    await expect(Journal.open(dir, { devices: fileDevices })).rejects.toMatchObject({ code: 'INVALID' });
    expect(fs.readdirSync(path.join(dir, 'elsewhere'))).toEqual([]);
  });
});

describe('the journal of an unmounted master (readJournalOffline)', () => {
  /** A closed journal of `count` create records over segments of `segmentSizeMax` bytes; its record offsets. */
  async function written(count: number, segmentSizeMax: number): Promise<void> {
    const j = await Journal.open(dir, { devices: fileDevices, segmentSizeMax });
    for (let i = 0; i < count; i++) await j.append({ op: 'create', path: b(`file-${i}`) });
    await j.close();
  }
  /** Offsets of the records of segment bytes, from the frames' body lengths. */
  const offsetsOf = (buf: Buffer): number[] => {
    const out: number[] = [];
    for (let o = JOURNAL_HEADER_SIZE; o < buf.length; o += JOURNAL_FRAME_SIZE + buf.readUInt32LE(o)) out.push(o);
    return out;
  };

  it('reads any range across segments as the daemon\'s journal does, and drops whole segments below a TID', async () => {
    await written(60, 300);
    expect(segmentFiles().length).toBeGreaterThan(3);
    const v = (await readJournalOffline(dir, fileDevices, 60n))!;
    expect(v.durableHead).toBe(60n);
    for (const [after, upTo] of [[0n, 60n], [17n, 33n], [59n, 60n], [60n, 60n], [5n, 1000n]] as const) {
      const want = Array.from({ length: Number((upTo < 60n ? upTo : 60n) - after) }, (_, i) => `${after + BigInt(i) + 1n}:file-${Number(after) + i}`);
      expect((await v.readRange(after, upTo)).map((r) => `${r.tid}:${r.path.toString()}`)).toEqual(want);
    }
    expect(await v.dropSegmentsBefore(30n)).toBeGreaterThan(0);
    await expect(v.readRange(0n, 60n)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await v.readRange(29n, 60n)).map((r) => r.tid)).toEqual(Array.from({ length: 31 }, (_, i) => BigInt(i + 30)));
    expect(await readJournalOffline(dir, fileDevices, 59n)).toBeNull(); // not the head its seal names
  });

  it('checks a record\'s CRC32C when a range reads it: a bad record below the range does not matter, one in it is CORRUPT', async () => {
    await written(20, 1 << 20);
    const [seg] = segmentFiles();
    const buf = fs.readFileSync(seg!);
    const offsets = offsetsOf(buf);
    expect(offsets.length).toBe(20);
    buf[offsets[4]! + JOURNAL_FRAME_SIZE + 11]! ^= 0x01; // a byte of the path of TID 5
    fs.writeFileSync(seg!, buf);
    const v = (await readJournalOffline(dir, fileDevices, 20n))!;
    expect((await v.readRange(5n, 20n)).map((r) => r.tid)).toEqual(Array.from({ length: 15 }, (_, i) => BigInt(i + 6)));
    await expect(v.readRange(4n, 20n)).rejects.toMatchObject({ code: 'CORRUPT', message: /CRC32C mismatch/ });
  });

  it('is not trusted (null) when a frame cannot be: a torn tail, a body length out of bounds, a TID out of order', async () => {
    await written(10, 1 << 20);
    const [seg] = segmentFiles();
    const good = fs.readFileSync(seg!);
    const offsets = offsetsOf(good);
    const torn = good.subarray(0, good.length - 3);
    const badLength = Buffer.from(good);
    badLength.writeUInt32LE(3, offsets[6]!);
    const badOrder = Buffer.from(good);
    badOrder.writeBigUInt64LE(2n, offsets[6]! + JOURNAL_FRAME_SIZE); // TID 7 reads as 2
    for (const bytes of [torn, badLength, badOrder]) {
      fs.writeFileSync(seg!, bytes);
      expect(await readJournalOffline(dir, fileDevices, 10n)).toBeNull();
    }
    fs.writeFileSync(seg!, good);
    expect((await readJournalOffline(dir, fileDevices, 10n))!.durableHead).toBe(10n);
  });
});

describe('journal range reads through the offset index (issue 8)', () => {
  const OPS = ['create', 'write', 'rename', 'chmod', 'unlink', 'link'] as const;

  /** A random byte path of 1..60 bytes (any byte but '/' and NUL: names that are not UTF-8 too). */
  function randomPath(rng: SeededRandom): Buffer {
    const out = Buffer.alloc(1 + rng.int(60));
    for (let i = 0; i < out.length; i++) {
      const v = 1 + rng.int(255);
      out[i] = v === 0x2f ? 0x30 : v;
    }
    return out;
  }

  function randomChange(rng: SeededRandom): { op: (typeof OPS)[number]; path: Buffer; dest?: Buffer } {
    const op = OPS[rng.int(OPS.length)]!;
    return op === 'rename' || op === 'link' ? { op, path: randomPath(rng), dest: randomPath(rng) } : { op, path: randomPath(rng) };
  }

  const text = (r: JournalRecord): string => `${r.tid}:${r.op}:${r.path.toString('hex')}:${r.dest?.toString('hex') ?? '-'}`;

  it('answers as a full decode for random ranges over rotation, retention, batches, reopens and torn tails', async () => {
    for (const seed of [1, 2, 3, 5, 8, 13, 21, 34]) {
      fs.rmSync(path.join(dir, JOURNAL_DIRECTORY), { recursive: true, force: true });
      const rng = new SeededRandom(seed);
      const options = { devices: fileDevices, segmentSizeMax: 300 + rng.int(900), indexStrideSize: [1, 40, 100, 257][rng.int(4)]!, commitWindowMs: 1 };
      let j = await Journal.open(dir, options);
      // the model: every durable record, in TID order (what a decode of every segment from its header gives)
      let model: JournalRecord[] = [];
      let reads = 0;
      for (let step = 0; step < 120; step++) {
        const action = rng.int(20);
        if (action < 6) {
          // concurrent appends: several records in one flusher batch
          const changes = Array.from({ length: 1 + rng.int(6) }, () => randomChange(rng));
          const tids = await Promise.all(changes.map((c) => j.append(c)));
          changes.forEach((c, i) => model.push({ ...c, tid: tids[i]! }));
        } else if (action < 8) {
          // buffered records made durable by one sync
          const changes = Array.from({ length: 1 + rng.int(20) }, () => randomChange(rng));
          const first = j.nextTid;
          for (const c of changes) j.record(c);
          await j.sync();
          changes.forEach((c, i) => model.push({ ...c, tid: first + BigInt(i) }));
        } else if (action === 8) {
          const head = j.durableHead;
          const dropped = await j.dropSegmentsBefore(head - BigInt(rng.int(Number(head) + 1)));
          if (dropped > 0) model = model.filter((r) => r.tid >= j.oldestTid);
        } else if (action === 9) {
          await j.close();
          j = await Journal.open(dir, options);
        } else if (action === 10) {
          // a crash: the last segment ends in a torn record (a cut of the last one, or half of a next one)
          await j.close();
          const last = segmentFiles().at(-1)!;
          const bytes = fs.readFileSync(last);
          const lastRecord = model.at(-1);
          if (rng.int(2) === 0 && lastRecord !== undefined && bytes.length > JOURNAL_HEADER_SIZE) {
            const size = encodeJournalRecord(await Crc32c.load(), lastRecord).length;
            fs.truncateSync(last, bytes.length - 1 - rng.int(size - 1));
            model.pop();
          } else {
            const extra = encodeJournalRecord(await Crc32c.load(), { ...randomChange(rng), tid: j.nextTid });
            fs.appendFileSync(last, extra.subarray(0, 1 + rng.int(extra.length - 1)));
          }
          j = await Journal.open(dir, options);
          expect(j.recovery.damaged, `seed ${seed} step ${step}`).toBe(false);
        } else {
          const head = j.durableHead;
          const oldest = j.oldestTid;
          const low = oldest > 1n ? oldest - 1n : 0n;
          const after = low + BigInt(rng.int(Number(head - low) + 2));
          const upTo = after + BigInt(rng.int(Number(head - after) + 4));
          const top = upTo < head ? upTo : head;
          const want = model.filter((r) => r.tid > after && r.tid <= top).map(text);
          expect((await j.readRange(after, upTo)).map(text), `seed ${seed} step ${step} (${after}, ${upTo}]`).toEqual(want);
          reads++;
        }
      }
      // everything, and below the oldest segment: refused as before
      expect((await j.readRange(j.oldestTid - 1n, j.durableHead)).map(text)).toEqual(model.map(text));
      if (j.oldestTid > 2n) await expect(j.readRange(0n, j.durableHead)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(reads, `seed ${seed}`).toBeGreaterThan(20);
      await j.close();
    }
  });

  it('a claim near the head reads the new records and at most a stride more, also after a reopen', async () => {
    const stride = 4096;
    const j = await Journal.open(dir, { devices: fileDevices, indexStrideSize: stride, commitWindowMs: 1 });
    for (let k = 0; k < 20; k++) {
      for (let i = 0; i < 1000; i++) j.record({ op: 'write', path: b(`dir-${k}/file-${i}`) });
      await j.sync();
    }
    const segmentSize = j.stats().sizeBytes;
    expect(segmentSize).toBeGreaterThan(400_000);
    const readBytes = async (k: Journal, after: bigint): Promise<{ bytes: number; count: number }> => {
      const before = k.stats().rangeReadBytes;
      const count = (await k.readRange(after, k.durableHead)).length;
      return { bytes: k.stats().rangeReadBytes - before, count };
    };
    // learned at append: the first read already starts near its claim
    const near = await readBytes(j, j.durableHead - 10n);
    expect(near.count).toBe(10);
    expect(near.bytes).toBeLessThan(stride + 10 * 64);
    expect(await readBytes(j, 0n)).toMatchObject({ count: 20_000, bytes: segmentSize - JOURNAL_HEADER_SIZE });
    await j.close();
    // reopened: the index is empty, the first read walks the segment, later ones start near their claim
    const k = await Journal.open(dir, { devices: fileDevices, indexStrideSize: stride, commitWindowMs: 1 });
    expect(await readBytes(k, k.durableHead - 3n)).toMatchObject({ count: 3, bytes: segmentSize - JOURNAL_HEADER_SIZE });
    expect((await readBytes(k, k.durableHead - 3n)).bytes).toBeLessThan(stride + 3 * 64);
    // records appended after the walk are learned too
    for (let i = 0; i < 500; i++) k.record({ op: 'chmod', path: b(`late-${i}`) });
    await k.sync();
    const late = await readBytes(k, k.durableHead - 5n);
    expect(late.count).toBe(5);
    expect(late.bytes).toBeLessThan(stride + 5 * 64);
    // a range in the middle reads about its own bytes, not the segment's
    const middle = await readBytes(k, 10_000n);
    expect(middle.count).toBe(10_500);
    const mid = await (async () => {
      const before = k.stats().rangeReadBytes;
      const rs = await k.readRange(5000n, 5100n);
      return { bytes: k.stats().rangeReadBytes - before, tids: rs.map((r) => r.tid) };
    })();
    expect(mid.tids).toEqual(Array.from({ length: 100 }, (_, i) => 5001n + BigInt(i)));
    expect(mid.bytes).toBeLessThan(2 * stride + 100 * 64);
    await k.close();
  });
});
