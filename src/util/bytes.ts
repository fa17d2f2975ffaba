/**
 * Byte comparisons for the hot loops over nodes and blocks (a mirror pass, the verify walk, the block store): a hash
 * of 16..24 bytes almost always differs from another in its first byte, and Buffer#compare or #equals with offsets
 * costs a native call (a few hundred ns), several times a JS loop that stops at the first byte; so does a
 * Buffer#copy of so few bytes.
 */

/**
 * Whether `n` bytes of `x` from `xo` equal `n` bytes of `y` from `yo`. Bytes past the end of either buffer read as
 * undefined and never match a byte: a caller keeps both ranges inside their buffers.
 */
export function bytesEqual(x: Uint8Array, xo: number, y: Uint8Array, yo: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (x[xo + k] !== y[yo + k]) return false;
  return true;
}

/** Copy `n` bytes of `from` at `fromAt` to `to` at `toAt` (a JS loop, for the same reason; ranges inside both). */
export function copyBytes(from: Uint8Array, fromAt: number, to: Uint8Array, toAt: number, n: number): void {
  for (let k = 0; k < n; k++) to[toAt + k] = from[fromAt + k]!;
}
