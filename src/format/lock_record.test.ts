import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseLockRecord, renderLockRecord, type LockRecord } from './lock_record.js';

const sample: LockRecord = {
  tool: 'fsckddumbfs', pid: 4242, startTicks: '1234567', bootId: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', time: '2026-12-02T01:30:00.000Z',
};

describe('lock record', () => {
  it('renders one line in the documented field order', () => {
    expect(renderLockRecord(sample)).toBe(
      'ddumbfs-lock 1 tool=fsckddumbfs pid=4242 start=1234567 boot=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 time=2026-12-02T01:30:00.000Z\n',
    );
  });

  it('round trip', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9_-]{1,32}$/),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.uuid(),
        (tool, pid, start, boot) => {
          const r: LockRecord = { tool, pid, startTicks: start.toString(), bootId: boot, time: '2026-01-01T00:00:00.000Z' };
          expect(parseLockRecord(renderLockRecord(r))).toEqual(r);
        },
      ),
    );
  });

  it('rejects anything that is not exactly one record line', () => {
    const good = renderLockRecord(sample);
    for (const bad of ['', '\n', good.trimEnd(), good + good, good.replace('pid=4242', 'pid=0'), good.replace('pid=4242', 'pid=-1'),
      good.replace('ddumbfs-lock 1', 'ddumbfs-lock 2'), good.replace('tool=fsckddumbfs', 'tool=Fsck'), `x${good}`, good.replace(' start', '  start')]) {
      expect(parseLockRecord(bad), JSON.stringify(bad)).toBeNull();
    }
  });

  it('refuses to render a bad tool name or pid', () => {
    expect(() => renderLockRecord({ ...sample, tool: 'a b' })).toThrow(/tool/);
    expect(() => renderLockRecord({ ...sample, pid: 0 })).toThrow(/pid/);
  });
});
