/**
 * The shared progress renderer (progress.ts): byte and duration texts, the ETA's basis and its edges, and the phase
 * line with and without a total.
 */
import { describe, expect, it } from 'vitest';
import { byteText, durationText, etaSeconds, etaText, renderPhase } from './progress.js';

describe('byteText and durationText', () => {
  it('bytes below 1 KiB as B, then three significant digits in binary units', () => {
    expect(byteText(0)).toBe('0 B');
    expect(byteText(1023)).toBe('1023 B');
    expect(byteText(1536)).toBe('1.50 KiB');
    expect(byteText(15 * 1024 * 1024 + 512 * 1024)).toBe('15.5 MiB');
    expect(byteText(512 * 1024 * 1024)).toBe('512 MiB');
    expect(byteText(1024 ** 3)).toBe('1.00 GiB');
    expect(byteText(3 * 1024 ** 4)).toBe('3.00 TiB');
  });

  it('durations rounded up: seconds, then minutes and seconds, then hours and minutes', () => {
    expect(durationText(0)).toBe('0s');
    expect(durationText(6.1)).toBe('7s');
    expect(durationText(59.5)).toBe('1m00s');
    expect(durationText(245)).toBe('4m05s');
    expect(durationText(3600)).toBe('1h00m');
    expect(durationText(7201)).toBe('2h01m');
  });
});

describe('etaSeconds', () => {
  it('the remaining units at the rate so far', () => {
    // 10 of 40 in 2 s: 30 left at 5 a second
    expect(etaSeconds(10, 40, 2000)).toBe(6);
    expect(etaText(10, 40, 2000)).toBe('ETA 6s');
  });

  it('no estimate before the first unit or without a total; 0 once the total is reached', () => {
    expect(etaSeconds(0, 40, 500)).toBeNull();
    expect(etaSeconds(7, 0, 500)).toBeNull();
    expect(etaText(0, 40, 500)).toBe('ETA ?');
    expect(etaSeconds(40, 40, 500)).toBe(0);
    expect(etaSeconds(41, 40, 500)).toBe(0);
  });
});

describe('renderPhase', () => {
  it('units with a total: count, percentage, rate and ETA', () => {
    expect(renderPhase({ phase: 'check block hash', done: 1200, total: 16000, unit: 'blocks', elapsedMs: 500 }))
      .toBe('check block hash: 1200/16000 blocks (7%), 2400 blocks/s, ETA 7s');
  });

  it('bytes: sizes in binary units and a byte rate', () => {
    expect(renderPhase({ phase: 'copy', done: 512 * 1024 ** 2, total: 1024 ** 3, unit: 'bytes', elapsedMs: 32_000 }))
      .toBe('copy: 512 MiB of 1.00 GiB (50%), 16.0 MiB/s, ETA 32s');
  });

  it('no total: no percentage and no ETA', () => {
    expect(renderPhase({ phase: 'read files', done: 3072, total: 0, unit: 'files', elapsedMs: 2000 })).toBe('read files: 3072 files, 1536 files/s');
    expect(renderPhase({ phase: 'copy', done: 2048, total: 0, unit: 'bytes', elapsedMs: 1000 })).toBe('copy: 2.00 KiB, 2.00 KiB/s');
  });

  it('rate and ETA from what was done since doneAtStart', () => {
    // first seen at 1000 blocks: 1000 more in 500 ms = 2000/s, 2000 left = 1 s
    expect(renderPhase({ phase: 'read and hash blocks', done: 2000, total: 4000, unit: 'blocks', elapsedMs: 500, doneAtStart: 1000 }))
      .toBe('read and hash blocks: 2000/4000 blocks (50%), 2000 blocks/s, ETA 1s');
    expect(renderPhase({ phase: 'read and hash blocks', done: 1000, total: 4000, unit: 'blocks', elapsedMs: 0, doneAtStart: 1000 }))
      .toBe('read and hash blocks: 1000/4000 blocks (25%), ETA ?');
  });

  it('nothing done yet: no rate', () => {
    expect(renderPhase({ phase: 'fix files', done: 0, total: 12, unit: 'files', elapsedMs: 0 })).toBe('fix files: 0/12 files (0%), ETA ?');
    expect(renderPhase({ phase: 'upload', done: 0, total: 0, unit: 'bytes', elapsedMs: 0 })).toBe('upload: 0 B');
  });
});
