import { constants } from 'node:os';
import { describe, expect, it, vi } from 'vitest';
import { DdfsError } from '../errors.js';
import { AssertionError } from '../util/assert.js';
import { Logger } from '../util/log.js';
import type { FuseContext } from './fuse_binding.js';
import { OpStats, guardOps, type FsOps } from './op_guard.js';

const E = constants.errno;
const ctx: FuseContext = { uid: 1, gid: 2, pid: 3, umask: 0 };

function quietLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = new Logger((l) => lines.push(String(l)));
  logger.debug = true;
  return { logger, lines };
}

/** An op table where every op rejects with ENOSYS unless overridden. */
function table(over: Partial<FsOps>): FsOps {
  const nosys = async (): Promise<never> => {
    throw Object.assign(new Error('nosys'), { code: 'ENOSYS', errno: -E.ENOSYS });
  };
  return new Proxy(over as FsOps, { get: (t, k) => (t as unknown as Record<string | symbol, unknown>)[k] ?? nosys });
}

function answers(): { cb: (...a: unknown[]) => void; got: unknown[][]; wait: () => Promise<void> } {
  const got: unknown[][] = [];
  let resolve: () => void = () => undefined;
  const first = new Promise<void>((r) => {
    resolve = r;
  });
  return {
    got,
    cb: (...a: unknown[]) => {
      got.push(a);
      resolve();
    },
    wait: () => first,
  };
}

describe('guardOps', () => {
  it('answers a result once, and the errno of what was thrown', async () => {
    const { logger } = quietLogger();
    const fuse = guardOps(
      table({
        getattr: async () => ({ mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, ino: 7 }),
        mkdir: async () => {
          throw new DdfsError('NO_SPACE', 'full');
        },
        rmdir: () => {
          throw Object.assign(new Error('x'), { code: 'ENOTEMPTY', errno: -E.ENOTEMPTY });
        },
        unlink: async () => {
          throw new TypeError('bug');
        },
      }),
      { logger, timeoutMs: 0, onFatal: () => undefined },
    );
    const a = answers();
    fuse.getattr('/f', a.cb as never, ctx);
    await a.wait();
    expect(a.got).toEqual([[0, { mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, ino: 7 }]]);
    const b = answers();
    fuse.mkdir('/d', 0o755, b.cb as never, ctx);
    await b.wait();
    expect(b.got).toEqual([[-E.ENOSPC]]);
    const c = answers();
    fuse.rmdir('/d', c.cb as never, ctx); // a synchronous throw
    await c.wait();
    expect(c.got).toEqual([[-E.ENOTEMPTY]]);
    const d = answers();
    fuse.unlink('/d', d.cb as never, ctx);
    await d.wait();
    expect(d.got).toEqual([[-E.EIO]]);
  });

  it('write hands the op a private copy; read copies the result into the FUSE buffer', async () => {
    const { logger } = quietLogger();
    let seen: Buffer | null = null;
    const fuse = guardOps(
      table({
        write: async (_p, _fh, data) => {
          seen = data;
          return data.length;
        },
        read: async (_p, _fh, length) => Buffer.alloc(Math.min(length, 3), 9),
      }),
      { logger, timeoutMs: 0, onFatal: () => undefined },
    );
    const fuseBuf = Buffer.from('abcdef');
    const w = answers();
    fuse.write('/f', 1, fuseBuf, 4, 0, w.cb as never, ctx);
    fuseBuf.fill(0); // FUSE reuses its buffer
    await w.wait();
    expect(w.got).toEqual([[4]]);
    expect(seen!.toString()).toBe('abcd');
    const out = Buffer.alloc(8);
    const r = answers();
    fuse.read('/f', 1, out, 8, 0, r.cb as never, ctx);
    await r.wait();
    expect(r.got).toEqual([[3]]);
    expect([...out.subarray(0, 4)]).toEqual([9, 9, 9, 0]);
  });

  it('a timeout answers EIO once; a late open is released', async () => {
    vi.useFakeTimers();
    try {
      const { logger } = quietLogger();
      let finish: (v: { fh: number }) => void = () => undefined;
      const released: number[] = [];
      const fuse = guardOps(
        table({
          open: () => new Promise((r) => (finish = r)),
          release: async (_p, fh) => {
            released.push(fh);
          },
        }),
        { logger, timeoutMs: 1000, onFatal: () => undefined },
      );
      const a = answers();
      fuse.open('/f', 0, a.cb as never, ctx);
      await vi.advanceTimersByTimeAsync(1001);
      expect(a.got).toEqual([[-E.EIO]]);
      finish({ fh: 42 });
      await vi.advanceTimersByTimeAsync(10);
      expect(a.got).toEqual([[-E.EIO]]);
      expect(released).toEqual([42]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('an assertion failure answers EIO and calls onFatal', async () => {
    const { logger } = quietLogger();
    const onFatal = vi.fn();
    const fuse = guardOps(table({ chmod: async () => { throw new AssertionError('broken'); } }), { logger, timeoutMs: 0, onFatal });
    const a = answers();
    fuse.chmod('/f', 0o600, a.cb as never, ctx);
    await a.wait();
    expect(a.got).toEqual([[-E.EIO]]);
    expect(onFatal).toHaveBeenCalledOnce();
  });

  it('opStats counts every answered op, errors included, with a latency histogram line', async () => {
    const { logger } = quietLogger();
    const opStats = new OpStats();
    const fuse = guardOps(
      table({ getattr: async () => ({ mode: 0o100644, uid: 0, gid: 0, size: 1, nlink: 1, ino: 7 }) }),
      { logger, timeoutMs: 0, onFatal: () => undefined, opStats },
    );
    for (let i = 0; i < 3; i++) {
      const a = answers();
      fuse.getattr('/f', a.cb as never, ctx);
      await a.wait();
    }
    const b = answers();
    fuse.unlink('/f', b.cb as never, ctx); // ENOSYS from the table
    await b.wait();
    expect(opStats.count('getattr')).toBe(3);
    expect(opStats.count('unlink')).toBe(1);
    expect(opStats.count('mkdir')).toBe(0);
    const lines = opStats.report();
    expect(lines).toHaveLength(2);
    const line = lines.find((l) => l.startsWith('getattr')) ?? '';
    expect(line).toMatch(/^getattr +3 ops +mean +[\d.]+ us /);
    const inBuckets = [...line.matchAll(/[<>]=?\d+us:(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(inBuckets).toBe(3);
  });

  it('ops waiting for their answer share one timeout timer, which goes once none waits', async () => {
    vi.useFakeTimers();
    try {
      const { logger } = quietLogger();
      const finishers: Array<() => void> = [];
      const fuse = guardOps(table({ flush: () => new Promise<void>((r) => finishers.push(r)) }), { logger, timeoutMs: 60_000, onFatal: () => undefined });
      const got: unknown[][] = [];
      for (let i = 0; i < 50; i++) fuse.flush('/f', i + 1, ((...a: unknown[]) => got.push(a)) as never, ctx);
      await vi.advanceTimersByTimeAsync(1);
      expect(finishers).toHaveLength(50);
      expect(vi.getTimerCount()).toBe(1);
      for (const f of finishers) f();
      await vi.advanceTimersByTimeAsync(60_000);
      expect(got).toHaveLength(50);
      expect(got.every((a) => a[0] === 0)).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
