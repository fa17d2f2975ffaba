import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryDevice, MemoryDeviceFactory } from './memory_device.js';

describe('MemoryDeviceFactory', () => {
  it('open without create fails like open(2) with ENOENT', async () => {
    const f = new MemoryDeviceFactory();
    await expect(f.open('/x', {})).rejects.toMatchObject({ code: 'ENOENT' });
    const d = await f.open('/x', { create: true });
    expect(await d.size()).toBe(0);
    expect(f.exists('/x')).toBe(true);
    expect(f.openCount).toBe(1);
    await d.close();
    expect(f.openCount).toBe(0);
  });

  it('writes past EOF grow the file with zeros; reads are short at EOF', async () => {
    const f = new MemoryDeviceFactory();
    const d = await f.open('/a', { create: true });
    await d.write(Buffer.from('abc'), 10);
    expect(await d.size()).toBe(13);
    const out = Buffer.alloc(20, 0xee);
    expect(await d.read(out, 2, 20, 0)).toBe(13);
    expect(out.subarray(2, 15)).toEqual(Buffer.concat([Buffer.alloc(10), Buffer.from('abc')]));
    expect(out[15]).toBe(0xee);
    expect(await d.read(out, 0, 5, 13)).toBe(0);
    expect(await d.read(out, 0, 5, 100)).toBe(0);
    await d.write(Buffer.alloc(0), 1000);
    expect(await d.size()).toBe(13);
  });

  it('truncate shrinks and grows; regrown bytes are zero', async () => {
    const f = new MemoryDeviceFactory();
    const d = await f.open('/a', { create: true });
    await d.write(Buffer.alloc(100, 7), 0);
    await d.truncate(10);
    expect(await d.size()).toBe(10);
    await d.truncate(50);
    expect(f.readFile('/a')).toEqual(Buffer.concat([Buffer.alloc(10, 7), Buffer.alloc(40)]));
  });

  it('truncate option empties an existing file; two handles share content', async () => {
    const f = new MemoryDeviceFactory();
    f.writeFile('/a', Buffer.from('hello'));
    const d1 = await f.open('/a', {});
    const d2 = await f.open('/a', { truncate: true });
    expect(await d1.size()).toBe(0);
    await d2.write(Buffer.from('xy'), 0);
    const b = Buffer.alloc(2);
    await d1.read(b, 0, 2, 0);
    expect(b.toString()).toBe('xy');
  });

  it('read-only and closed handles reject with EBADF', async () => {
    const f = new MemoryDeviceFactory();
    f.writeFile('/a', Buffer.from('hello'));
    const r = await f.open('/a', { readOnly: true });
    await expect(r.write(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(r.truncate(0)).rejects.toMatchObject({ code: 'EBADF' });
    expect(f.readFile('/a').toString()).toBe('hello');
    await r.close();
    await expect(r.read(Buffer.alloc(1), 0, 1, 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(r.close()).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('crash() drops unsynced writes and keeps synced ones', async () => {
    const f = new MemoryDeviceFactory();
    const a = await f.open('/a', { create: true });
    const b = await f.open('/b', { create: true });
    await a.write(Buffer.from('durable'), 0);
    await a.sync();
    await a.write(Buffer.from('LOST'), 0);
    await a.write(Buffer.from('more'), 100);
    await b.write(Buffer.from('never synced'), 0);
    expect(f.syncCount).toBe(1);
    expect(f.writeCount).toBe(4);
    f.crash();
    expect(f.readFile('/a').toString()).toBe('durable');
    expect(f.readFile('/b').length).toBe(0);
    expect(f.exists('/b')).toBe(true);
  });

  it('rename and unlink', async () => {
    const f = new MemoryDeviceFactory();
    f.writeFile('/a', Buffer.from('1'));
    await f.rename('/a', '/b');
    expect(f.exists('/a')).toBe(false);
    expect(f.readFile('/b').toString()).toBe('1');
    f.unlink('/b');
    expect(() => f.readFile('/b')).toThrow(/ENOENT/);
    expect(() => f.unlink('/b')).toThrow(/ENOENT/);
  });

  it('directory operations: mkdir, rename of a directory with its files, remove of files and empty directories', async () => {
    const f = new MemoryDeviceFactory();
    await f.mkdir('/v/d', 0o700);
    await expect(f.mkdir('/v/d', 0o700)).rejects.toMatchObject({ code: 'EEXIST' });
    await (await f.open('/v/d/x', { create: true })).close();
    await expect(f.open('/v/d/x', { create: true, exclusive: true })).rejects.toMatchObject({ code: 'EEXIST' });
    await f.rename('/v/d', '/v/e');
    expect(f.exists('/v/d/x')).toBe(false);
    expect(f.exists('/v/e/x')).toBe(true);
    await expect(f.remove('/v/e')).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    await f.remove('/v/e/x');
    await f.remove('/v/e');
    expect(f.exists('/v/e')).toBe(false);
    await expect(f.remove('/v/e')).rejects.toMatchObject({ code: 'ENOENT' });
    await f.syncDirectory('/v');
    expect(f.syncDirectoryCount).toBe(1);
  });

  it('a Buffer path and the string of its UTF-8 bytes name the same file; other bytes stay distinct', async () => {
    const f = new MemoryDeviceFactory();
    f.writeFile(Buffer.from('/r/\u00e9', 'utf8'), Buffer.from('utf8 name'));
    f.writeFile(Buffer.from([0x2f, 0x72, 0x2f, 0xe9]), Buffer.from('latin1 byte'));
    expect(f.readFile('/r/\u00e9').toString()).toBe('utf8 name');
    expect(f.readFile(Buffer.from([0x2f, 0x72, 0x2f, 0xe9])).toString()).toBe('latin1 byte');
    await f.rename(Buffer.from([0x2f, 0x72, 0x2f, 0xe9]), '/r/plain');
    expect(f.readFile('/r/plain').toString()).toBe('latin1 byte');
  });

  it('hooks can fail or tear writes (fault-injection seam)', async () => {
    class FailThird extends MemoryDeviceFactory {
      n = 0;
      override beforeWrite(_d: MemoryDevice, buf: Buffer): Buffer {
        this.n++;
        if (this.n === 3) throw new Error('injected');
        if (this.n === 4) return buf.subarray(0, 1); // torn write
        return buf;
      }
    }
    const f = new FailThird();
    const d = await f.open('/a', { create: true });
    await d.write(Buffer.from('a'), 0);
    await d.write(Buffer.from('b'), 1);
    await expect(d.write(Buffer.from('c'), 2)).rejects.toThrow('injected');
    await d.write(Buffer.from('de'), 2);
    expect(f.readFile('/a').toString()).toBe('abd');
  });

  it('behaves like a flat byte array model under random writes/truncates (fast-check)', async () => {
    type Op = { kind: 'write'; pos: number; data: Uint8Array } | { kind: 'truncate'; size: number } | { kind: 'read'; pos: number; len: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('write' as const), pos: fc.nat(5000), data: fc.uint8Array({ minLength: 0, maxLength: 300 }) }),
      fc.record({ kind: fc.constant('truncate' as const), size: fc.nat(6000) }),
      fc.record({ kind: fc.constant('read' as const), pos: fc.nat(6000), len: fc.nat(400) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const f = new MemoryDeviceFactory();
        const d = await f.open('/m', { create: true });
        let model = Buffer.alloc(0);
        for (const o of ops) {
          if (o.kind === 'write') {
            await d.write(Buffer.from(o.data), o.pos);
            if (o.data.length > 0) {
              const end = o.pos + o.data.length;
              if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)]);
              Buffer.from(o.data).copy(model, o.pos);
            }
          } else if (o.kind === 'truncate') {
            await d.truncate(o.size);
            model = o.size <= model.length ? Buffer.from(model.subarray(0, o.size)) : Buffer.concat([model, Buffer.alloc(o.size - model.length)]);
          } else {
            const out = Buffer.alloc(o.len);
            const n = await d.read(out, 0, o.len, o.pos);
            const want = model.subarray(Math.min(o.pos, model.length), Math.min(o.pos + o.len, model.length));
            expect(n).toBe(want.length);
            expect(out.subarray(0, n)).toEqual(want);
          }
          expect(await d.size()).toBe(model.length);
        }
        expect(f.readFile('/m')).toEqual(model);
      }),
      { numRuns: 100 },
    );
  });
});
