import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RwLock } from './rwlock.js';

/** A promise with its resolve function. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

describe('RwLock', () => {
  it('readers overlap', async () => {
    const lock = new RwLock();
    const gate = deferred();
    let active = 0;
    let maxActive = 0;
    const reader = () => lock.read(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await gate.promise;
      active--;
    });
    const all = Promise.all([reader(), reader(), reader()]);
    await ticks(5);
    expect(active).toBe(3);
    gate.resolve();
    await all;
    expect(maxActive).toBe(3);
  });

  it('a writer is exclusive: it waits for readers and other writers, and they wait for it', async () => {
    const lock = new RwLock();
    const log: string[] = [];
    const g1 = deferred();
    const g2 = deferred();
    const r1 = lock.read(async () => { log.push('r1+'); await g1.promise; log.push('r1-'); });
    const w1 = lock.write(async () => { log.push('w1+'); await g2.promise; log.push('w1-'); });
    const w2 = lock.write(async () => { log.push('w2+'); log.push('w2-'); });
    await ticks(5);
    expect(log).toEqual(['r1+']);
    g1.resolve();
    await ticks(10);
    expect(log).toEqual(['r1+', 'r1-', 'w1+']);
    g2.resolve();
    await Promise.all([r1, w1, w2]);
    expect(log).toEqual(['r1+', 'r1-', 'w1+', 'w1-', 'w2+', 'w2-']);
  });

  it('FIFO: a waiting writer blocks later readers (no writer starvation)', async () => {
    const lock = new RwLock();
    const log: string[] = [];
    const g = deferred();
    const r1 = lock.read(async () => { log.push('r1+'); await g.promise; log.push('r1-'); });
    const w = lock.write(async () => { log.push('w'); });
    const r2 = lock.read(async () => { log.push('r2'); });
    await ticks(5);
    expect(log).toEqual(['r1+']); // r2 did not jump the queue although only readers hold the lock
    g.resolve();
    await Promise.all([r1, w, r2]);
    expect(log).toEqual(['r1+', 'r1-', 'w', 'r2']);
  });

  it('returns the value of fn and releases the lock when fn throws', async () => {
    const lock = new RwLock();
    await expect(lock.write(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await expect(lock.read(async () => { throw new Error('bang'); })).rejects.toThrow('bang');
    expect(await lock.write(async () => 42)).toBe(42);
    expect(await lock.read(async () => 'x')).toBe('x');
  });

  it('random mixes: never a writer with anyone else, grants in arrival order (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.boolean(), fc.nat(6), fc.nat(3)), { minLength: 1, maxLength: 30 }), async (reqs) => {
        const lock = new RwLock();
        let readers = 0;
        let writers = 0;
        const starts: number[] = [];
        const violations: string[] = [];
        const run = async (i: number, write: boolean, hold: number): Promise<void> => {
          const fn = async (): Promise<void> => {
            starts.push(i);
            if (write) writers++;
            else readers++;
            if (writers > 1 || (writers === 1 && readers > 0)) violations.push(`request ${i}`);
            await ticks(hold);
            if (write) writers--;
            else readers--;
          };
          await (write ? lock.write(fn) : lock.read(fn));
        };
        // requests arrive in order, some separated by a few ticks
        const all: Promise<void>[] = [];
        for (const [i, [write, hold, gap]] of reqs.entries()) {
          all.push(run(i, write, hold));
          await ticks(gap);
        }
        await Promise.all(all);
        expect(violations).toEqual([]);
        expect(starts).toEqual(reqs.map((_, i) => i));
        expect(readers + writers).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});
