/**
 * Deterministic test data, so a failure can be replayed: generators whose byte streams earlier tests already
 * depend on (each keeps its exact formula).
 */

import { createHash } from 'node:crypto';

/** `size` bytes from the LCG x := x·1103515245 + 12345 (top byte of each step), started at `seed`: every block distinct. */
export function lcgBytes(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** `length` bytes from the LCG x := x·1664525 + 1013904223, started at seed·2654435761: unique per seed. */
export function noiseBytes(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/**
 * `count` blocks of `blockSize` bytes that depend only on `seed` (SHA-256 of "seed:k" for each 32-byte piece k), so
 * two calls with one seed give one block content (a dedup hit) and different seeds give distinct blocks.
 */
export function seededBlocks(seed: string, count: number, blockSize: number): Buffer {
  const out = Buffer.alloc(count * blockSize);
  for (let k = 0; k * 32 < out.length; k++) createHash('sha256').update(`${seed}:${k}`).digest().copy(out, k * 32);
  return out;
}
