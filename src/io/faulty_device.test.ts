import { describe, expect, it } from 'vitest';
import { MemoryDeviceFactory } from './memory_device.js';
import { FaultyDeviceFactory, defaultFileKind } from './faulty_device.js';

describe('defaultFileKind', () => {
  it('classifies the files of a volume by name', () => {
    expect(defaultFileKind('/v/ddfsblocks')).toBe('block');
    expect(defaultFileKind('/v/ddfsidx')).toBe('index');
    expect(defaultFileKind('/v/ddfsusedblocks.0')).toBe('checkpoint');
    expect(defaultFileKind('/v/ddfsroot/a/b')).toBe('ufs');
    expect(defaultFileKind('/v/ddfs.cfg')).toBe('other');
  });
});

describe('FaultyDeviceFactory', () => {
  it('fails exactly the Nth matching call with the chosen errno and applies nothing', async () => {
    const mem = new MemoryDeviceFactory();
    const f = new FaultyDeviceFactory({ base: mem, failAt: 2, errno: 'ENOSPC', ops: ['write'] });
    const d = await f.open('/v/ddfsroot/x', { create: true });
    await d.write(Buffer.from('a'), 0);
    await d.sync(); // not counted
    await expect(d.write(Buffer.from('b'), 1)).rejects.toMatchObject({ code: 'ENOSPC', errno: -28, syscall: 'write' });
    expect(mem.readFile('/v/ddfsroot/x').toString()).toBe('a');
    await d.write(Buffer.from('c'), 1); // transient: the next one works
    expect(mem.readFile('/v/ddfsroot/x').toString()).toBe('ac');
    expect(f.faults).toEqual([{ count: 2, op: 'write', kind: 'ufs', path: '/v/ddfsroot/x' }]);
    await d.close();
  });

  it('filters by file kind and can be sticky', async () => {
    const mem = new MemoryDeviceFactory();
    const f = new FaultyDeviceFactory({ base: mem, failAt: 1, kinds: ['index'], sticky: true });
    const blocks = await f.open('/v/ddfsblocks', { create: true });
    const index = await f.open('/v/ddfsidx', { create: true });
    await blocks.write(Buffer.alloc(4), 0);
    await blocks.sync();
    await expect(index.sync()).rejects.toMatchObject({ code: 'EIO', syscall: 'fsync' });
    await expect(index.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'EIO' });
    await expect(index.truncate(0)).rejects.toMatchObject({ code: 'EIO', syscall: 'ftruncate' });
    expect(f.faults.map((x) => x.op)).toEqual(['sync', 'write', 'truncate']);
    f.failAt = 0;
    await index.write(Buffer.alloc(1), 0);
    expect(f.seen.get('write:block')).toBe(1);
    expect(f.seen.get('write:index')).toBe(2);
    await blocks.close();
    await index.close();
  });

  it('fails the Nth directory operation too, and applies nothing then', async () => {
    const mem = new MemoryDeviceFactory();
    mem.writeFile('/v/ddfsusedblocks.tmp', Buffer.from('new'));
    const f = new FaultyDeviceFactory({ base: mem, failAt: 2, ops: ['rename', 'remove', 'mkdir', 'syncDirectory'] });
    await f.mkdir('/v/ddfsroot/d', 0o700);
    await expect(f.rename('/v/ddfsusedblocks.tmp', '/v/ddfsusedblocks')).rejects.toMatchObject({ code: 'EIO', syscall: 'rename' });
    expect(mem.exists('/v/ddfsusedblocks')).toBe(false);
    await f.syncDirectory('/v');
    await f.remove('/v/ddfsroot/d');
    expect(f.faults).toEqual([{ count: 2, op: 'rename', kind: 'checkpoint', path: '/v/ddfsusedblocks.tmp' }]);
    expect(f.count).toBe(4);
    expect(mem.exists('/v/ddfsroot/d')).toBe(false);
  });
});
