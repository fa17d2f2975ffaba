/**
 * testddumbfs speed tests (spec §14 operations `1`, `2`, `R`) in a target directory.
 *
 * - `1` first write: files `data%06d-0.bin`, i = 0..count-1, each generated with seed i+SEED;
 * - `2` second write: files `data%06d-1.bin` with the same content (on ddumbfs every block is already known, so
 *   this measures the deduplication path);
 * - `R` read: reads the `-0` files back.
 * Phases run in this order whatever the order of the letters. `count` 0 means "first phase forever".
 *
 * This module measures and reports through a callback; it prints nothing (the CLI does).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DdfsError } from '../errors.js';
import { readGeneratedFile, writeGeneratedFile, type GenerateOptions } from './genfile.js';

export type SpeedPhase = 'first write' | 'second write' | 'read';

export interface SpeedTestOptions extends GenerateOptions {
  /** Files per phase; 0 = run the first selected phase forever. */
  count: number;
  phases: ReadonlyArray<SpeedPhase>;
}

export interface FileTiming {
  phase: SpeedPhase;
  /** 0-based file number. */
  index: number;
  path: string;
  /** Bytes transferred. */
  size: number;
  seconds: number;
  /** MiB per second (2^20 bytes, as upstream's "Mo/s"). */
  mibPerSecond: number;
  /** This process's CPU time (user + system, all threads) as a percentage of the elapsed time. */
  cpuPercent: number;
}

export interface SpeedReporter {
  phaseStart?(phase: SpeedPhase): void;
  fileDone?(timing: FileTiming): void;
  phaseDone?(phase: SpeedPhase, timings: ReadonlyArray<FileTiming>): void;
}

/** Canonical order of the phases. */
export const SPEED_PHASES: ReadonlyArray<SpeedPhase> = ['first write', 'second write', 'read'];

/** `data000012-0.bin`: file `index` of write pass `pass` (0 first write, 1 second write). */
export function speedFileName(index: number, pass: 0 | 1): string {
  return `data${String(index).padStart(6, '0')}-${pass}.bin`;
}

/** Mean of the per-file figures of one phase (seconds, MiB/s, CPU %); zeros for an empty list. */
export function averageOf(timings: ReadonlyArray<FileTiming>): { seconds: number; mibPerSecond: number; cpuPercent: number } {
  const n = timings.length;
  if (n === 0) return { seconds: 0, mibPerSecond: 0, cpuPercent: 0 };
  const sum = (f: (t: FileTiming) => number): number => timings.reduce((acc, t) => acc + f(t), 0);
  return {
    seconds: sum((t) => t.seconds) / n,
    mibPerSecond: sum((t) => t.mibPerSecond) / n,
    cpuPercent: sum((t) => t.cpuPercent) / n,
  };
}

async function timed(
  phase: SpeedPhase,
  index: number,
  path: string,
  run: () => Promise<number>,
): Promise<FileTiming> {
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const size = await run();
  const elapsedNs = Number(process.hrtime.bigint() - start);
  const cpu = process.cpuUsage(cpuStart);
  const seconds = elapsedNs / 1e9;
  const safeSeconds = Math.max(seconds, 1e-9);
  return {
    phase,
    index,
    path,
    size,
    seconds,
    mibPerSecond: size / 1048576 / safeSeconds,
    cpuPercent: ((cpu.user + cpu.system) / 1e6 / safeSeconds) * 100,
  };
}

/**
 * Run the selected phases in `directory`.
 *
 * @returns the timings of each phase that ran.
 * @throws DdfsError NOT_FOUND if `directory` is not a directory, IO on a short read; Node system errors of the I/O.
 */
export async function runSpeedTest(
  directory: string,
  options: SpeedTestOptions,
  reporter: SpeedReporter = {},
): Promise<Map<SpeedPhase, FileTiming[]>> {
  const info = await stat(directory).catch(() => null);
  if (info === null || !info.isDirectory()) {
    throw new DdfsError('NOT_FOUND', `target directory not found: ${directory}`, { path: directory });
  }
  const results = new Map<SpeedPhase, FileTiming[]>();
  for (const phase of SPEED_PHASES) {
    if (!options.phases.includes(phase)) continue;
    const timings: FileTiming[] = [];
    results.set(phase, timings);
    reporter.phaseStart?.(phase);
    for (let index = 0; options.count === 0 || index < options.count; index++) {
      const generate: GenerateOptions = { ...options, seed: options.seed + BigInt(index) };
      let timing: FileTiming;
      if (phase === 'read') {
        const path = join(directory, speedFileName(index, 0));
        timing = await timed(phase, index, path, () => readGeneratedFile(path, generate));
      } else {
        const path = join(directory, speedFileName(index, phase === 'first write' ? 0 : 1));
        timing = await timed(phase, index, path, () => writeGeneratedFile(path, generate));
      }
      timings.push(timing);
      reporter.fileDone?.(timing);
    }
    reporter.phaseDone?.(phase, timings);
  }
  return results;
}
