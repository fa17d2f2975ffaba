import { constants as fsc } from 'node:fs';
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { DdfsError, errnoOf } from '../errors.js';
import { Logger } from '../util/log.js';
import type { FuseContext } from './fuse_binding.js';
import { guardOps, type FsOps } from './op_guard.js';
import { readOnlyOps, WRITE_OPS } from './read_only.js';

const E = constants.errno;
const ctx: FuseContext = { uid: 1, gid: 2, pid: 3, umask: 0 };

/** An op table that records every call and answers 'ok'. */
function recordingTable(): { ops: FsOps; calls: string[] } {
  const calls: string[] = [];
  const ops = new Proxy({} as FsOps, {
    get: (_t, k) => async () => {
      calls.push(String(k));
      return k === 'open' ? { fh: 5 } : 'ok';
    },
  });
  return { ops, calls };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('readOnlyOps', () => {
  it('every write op answers EROFS without reaching the op table', async () => {
    const { ops, calls } = recordingTable();
    const ro = readOnlyOps(ops) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    for (const op of WRITE_OPS) {
      const err = await rejection(ro[op]!('/some/file', 0o644, ctx));
      expect(err, op).toBeInstanceOf(DdfsError);
      expect((err as DdfsError).code, op).toBe('READ_ONLY');
      expect(errnoOf(err), op).toBe(E.EROFS);
      expect((err as DdfsError).message, op).toContain('/some/file');
    }
    // an op the table does not declare as a reader (one added later) is refused too
    const table = ro as Record<string, unknown>;
    (ops as unknown as Record<string, unknown>).fallocate = async () => 'ok';
    expect(errnoOf(await rejection((table.fallocate as (p: string) => Promise<unknown>)('/f')))).toBe(E.EROFS);
    expect(errnoOf(await rejection(ro.access('/f', 2, ctx)))).toBe(E.EROFS);
    expect(errnoOf(await rejection(ro.access('/f', 7, ctx)))).toBe(E.EROFS);
    expect(calls).toEqual([]);
    await ro.access('/f', 4, ctx);
    expect(calls).toEqual(['access']);
  });

  it('open answers EROFS for writing, O_TRUNC and special files; read-only opens and reads pass', async () => {
    const { ops, calls } = recordingTable();
    const ro = readOnlyOps(ops);
    for (const flags of [fsc.O_WRONLY, fsc.O_RDWR, fsc.O_RDONLY | fsc.O_TRUNC, fsc.O_WRONLY | fsc.O_APPEND]) {
      expect(errnoOf(await rejection(ro.open('/a', flags, ctx))), `flags ${flags}`).toBe(E.EROFS);
    }
    for (const special of ['/.ddumbfs/stats', '/.ddumbfs/stats0', '/.ddumbfs/reclaim', '/.ddumbfs/test']) {
      expect(errnoOf(await rejection(ro.open(special, fsc.O_RDONLY, ctx))), special).toBe(E.EROFS);
    }
    expect(calls).toEqual([]);
    expect(await ro.open('/a', fsc.O_RDONLY, ctx)).toEqual({ fh: 5 });
    expect(await ro.open('/.ddumbfs/ddumbfs.log', fsc.O_RDONLY, ctx)).toEqual({ fh: 5 });
    await ro.getattr('/a', ctx);
    await ro.readdir('/', ctx);
    await ro.read('/a', 5, 10, 0, ctx);
    await ro.statfs('/', ctx);
    await ro.readlink('/l', ctx);
    await ro.release('/a', 5, ctx);
    await ro.flush('/a', 5, ctx);
    await ro.fsync('/a', false, 5, ctx);
    expect(calls).toEqual(['open', 'open', 'getattr', 'readdir', 'read', 'statfs', 'readlink', 'release', 'flush', 'fsync']);
  });

  it('through the FUSE guard the answer is -EROFS', async () => {
    const { ops } = recordingTable();
    const fuse = guardOps(readOnlyOps(ops), { logger: new Logger(() => undefined), timeoutMs: 0, onFatal: () => undefined });
    const res = await new Promise<number>((resolve) => fuse.mkdir!('/d', 0o755, (r: number) => resolve(r), ctx));
    expect(res).toBe(-E.EROFS);
    const opened = await new Promise<number[]>((resolve) => fuse.open!('/f', fsc.O_RDWR, (r: number, fh?: number) => resolve([r, fh ?? 0]), ctx));
    expect(opened[0]).toBe(-E.EROFS);
  });
});
