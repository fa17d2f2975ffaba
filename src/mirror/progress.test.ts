/**
 * The progress line's rate and ETA (progress.ts): the byte rate, the ETA from the used-block basis, and its edges
 * (no block yet, all done, more done than the basis when blocks are shared).
 */
import { describe, expect, it } from 'vitest';
import { renderRateAndEta } from './progress.js';

describe('renderRateAndEta', () => {
  it('the byte rate, and the remaining used blocks at the block rate so far', () => {
    // 10 of 40 blocks in 2 s: 30 left at 5 blocks/s = 6 s; 8192 bytes in 2 s = 4096 B/s
    expect(renderRateAndEta({ blocksDone: 10, blocksUsed: 40, bytes: 8192, elapsedMs: 2000 })).toBe('4096 B/s, ETA 6s (10 of 40 used blocks)');
    // rounds the ETA up: 1 left at 3 blocks/s
    expect(renderRateAndEta({ blocksDone: 3, blocksUsed: 4, bytes: 0, elapsedMs: 1000 })).toBe('0 B/s, ETA 1s (3 of 4 used blocks)');
  });

  it('no block yet: no estimate; the basis reached or passed: 0s', () => {
    expect(renderRateAndEta({ blocksDone: 0, blocksUsed: 40, bytes: 100, elapsedMs: 500 })).toBe('200 B/s, ETA ? (0 of 40 used blocks)');
    expect(renderRateAndEta({ blocksDone: 40, blocksUsed: 40, bytes: 100, elapsedMs: 1000 })).toBe('100 B/s, ETA 0s (40 of 40 used blocks)');
    expect(renderRateAndEta({ blocksDone: 5, blocksUsed: 0, bytes: 0, elapsedMs: 0 })).toBe('0 B/s, ETA 0s (5 of 0 used blocks)');
  });
});
