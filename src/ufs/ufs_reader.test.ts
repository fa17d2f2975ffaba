/**
 * The UFS reader (spec §7): strict and tolerant header modes, the size peek, chunked node reads, and byte paths
 * (a non-UTF-8 name opened through a Buffer reaches the file, on disk and in memory).
 */
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DdfsError } from '../errors.js';
import { encodeUfsHeader } from '../format/ufs_header.js';
import { fileDevices } from '../io/device.js';
import { MemoryDeviceFactory } from '../io/memory_device.js';
import { UfsNodeFile, peekUfsSize } from './ufs_reader.js';

const NODE_SIZE = 28;
let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(tmpdir(), 'ufs-reader-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const nodes = (count: number): Buffer => Buffer.from(Array.from({ length: count * NODE_SIZE }, (_, k) => (k * 7 + 3) & 0xff));

describe('UfsNodeFile', () => {
  it('reads header and node list of a byte path that is not UTF-8, in chunks', async () => {
    const p = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from('bad\xff\xfename', 'latin1')]);
    await fsp.writeFile(p, Buffer.concat([encodeUfsHeader(5000), nodes(5)]));
    const f = await UfsNodeFile.open(fileDevices, p, NODE_SIZE, { strict: true });
    try {
      expect([f.headerState, f.size, f.nodeCount, f.partialBytes, f.writable]).toEqual(['valid', 5000, 5, 0, false]);
      const seen: Buffer[] = [];
      for await (const c of f.chunks(2)) seen.push(Buffer.from(c.nodes.subarray(0, c.count * NODE_SIZE)));
      expect(seen.map((b) => b.length / NODE_SIZE)).toEqual([2, 2, 1]);
      expect(Buffer.concat(seen)).toEqual(nodes(5));
    } finally {
      await f.close();
    }
    expect(await peekUfsSize(fileDevices, p)).toBe(5000);
  });

  it('tolerant mode gives headerState bad (and the node area); strict mode throws BAD_HEADER', async () => {
    const p = path.join(dir, 'badmagic');
    await fsp.writeFile(p, Buffer.concat([Buffer.from('XXXXXXXX\0\0\0\0\0\0\0\x10', 'latin1'), nodes(2), Buffer.alloc(3)]));
    const f = await UfsNodeFile.open(fileDevices, p, NODE_SIZE, { write: true });
    try {
      expect([f.headerState, f.size, f.nodeCount, f.partialBytes, f.writable]).toEqual(['bad', 0, 2, 3, true]);
      expect(f.headerError?.code).toBe('BAD_HEADER');
      expect(await f.readNodes(0, 2)).toEqual(nodes(2));
    } finally {
      await f.close();
    }
    await expect(UfsNodeFile.open(fileDevices, p, NODE_SIZE, { strict: true })).rejects.toMatchObject({ code: 'BAD_HEADER' });
    await expect(peekUfsSize(fileDevices, p)).rejects.toBeInstanceOf(DdfsError);
  });

  it('a 0-byte file is empty (size 0) in both modes; a 1–15 byte file is a bad header', async () => {
    const empty = path.join(dir, 'empty');
    const short = path.join(dir, 'short');
    await fsp.writeFile(empty, '');
    await fsp.writeFile(short, encodeUfsHeader(9).subarray(0, 10));
    const f = await UfsNodeFile.open(fileDevices, empty, NODE_SIZE, { strict: true });
    expect([f.headerState, f.size, f.nodeCount]).toEqual(['empty', 0, 0]);
    await f.close();
    expect(await peekUfsSize(fileDevices, empty)).toBe(0);
    await expect(peekUfsSize(fileDevices, short)).rejects.toMatchObject({ code: 'BAD_HEADER' });
  });

  it('a short read of the node list (the file shrank) is DdfsError IO', async () => {
    const p = path.join(dir, 'shrinks');
    await fsp.writeFile(p, Buffer.concat([encodeUfsHeader(3 * 4096), nodes(3)]));
    const f = await UfsNodeFile.open(fileDevices, p, NODE_SIZE);
    try {
      await fsp.truncate(p, 16 + NODE_SIZE);
      await expect(f.readNodes(0, 3)).rejects.toMatchObject({ code: 'IO' });
    } finally {
      await f.close();
    }
  });

  it('memory devices accept byte paths under the same key as the equal string path', async () => {
    const mem = new MemoryDeviceFactory();
    mem.writeFile('/m/caf\u00e9', Buffer.concat([encodeUfsHeader(12), nodes(1)]));
    expect(await peekUfsSize(mem, Buffer.from('/m/caf\u00e9', 'utf8'))).toBe(12);
    await expect(peekUfsSize(mem, Buffer.from('/m/caf\xe9', 'latin1'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(mem.openCount).toBe(0);
  });
});

describe('UfsNodeFile preread', () => {
  it('a small file read whole at open gives the same header, nodes and errors as reading it piece by piece', async () => {
    const cases: Array<[string, Buffer]> = [
      ['valid', Buffer.concat([encodeUfsHeader(3 * 4096 - 10), nodes(3)])],
      ['partial node', Buffer.concat([encodeUfsHeader(4096), nodes(1), Buffer.alloc(5, 1)])],
      ['truncated header', Buffer.from('DDUMB')],
      ['bad magic', Buffer.concat([Buffer.from('XXXXXXXX'), Buffer.alloc(8), nodes(2)])],
      ['absurd size', Buffer.concat([Buffer.from('DDUMBFSF'), Buffer.alloc(8, 0xff), nodes(1)])],
      ['empty', Buffer.alloc(0)],
    ];
    for (const [name, bytes] of cases) {
      const p = path.join(dir, `preread-${name.replace(/ /g, '-')}`);
      await fsp.writeFile(p, bytes);
      const plain = await UfsNodeFile.open(fileDevices, p, NODE_SIZE);
      const pre = await UfsNodeFile.open(fileDevices, p, NODE_SIZE, { preread: true });
      try {
        for (const k of ['headerState', 'size', 'length', 'nodeCount', 'partialBytes'] as const) expect(pre[k], `${name} ${k}`).toBe(plain[k]);
        expect(pre.headerError?.message, name).toBe(plain.headerError?.message);
        const all = async (f: UfsNodeFile): Promise<Buffer> => {
          const parts: Buffer[] = [];
          for await (const c of f.chunks(2)) parts.push(Buffer.from(c.nodes.subarray(0, c.count * NODE_SIZE)));
          return Buffer.concat(parts);
        };
        expect((await all(pre)).equals(await all(plain)), name).toBe(true);
        await expect(pre.readNodes(pre.nodeCount, 1)).rejects.toThrow(/short read/);
      } finally {
        await plain.close();
        await pre.close();
      }
    }
  });

  it('reads the device again once the file is written through it', async () => {
    const p = path.join(dir, 'preread-write');
    await fsp.writeFile(p, Buffer.concat([encodeUfsHeader(2 * 4096), nodes(2)]));
    const f = await UfsNodeFile.open(fileDevices, p, NODE_SIZE, { preread: true, write: true });
    try {
      const changed = Buffer.alloc(NODE_SIZE, 0x42);
      await f.writeNodes(1, changed);
      expect((await f.readNodes(1, 1)).equals(changed)).toBe(true);
      await f.truncateToNodes(1);
      await expect(f.readNodes(1, 1)).rejects.toThrow(/short read/);
    } finally {
      await f.close();
    }
  });
});
