/**
 * Size units as the ddumbfs tools write them (spec §12 mkddumbfs -s/-B, §14 testddumbfs -B/-S): a decimal integer
 * with an optional suffix k/K, m/M, g/G, t/T meaning 1024, 1024^2, 1024^3, 1024^4. Plain digits are bytes.
 *
 * Parsing is strict (upstream's strtol silently ignored junk, so "12x" became 12 bytes): the whole text must match.
 * For convenience a `b`/`B` byte marker is accepted alone ("512b") or after a unit ("64kB", "64KiB"); all these
 * suffixes still mean powers of 1024.
 */
import { DdfsError } from '../errors.js';

const UNIT_SIZES: Record<string, number> = {
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/** Units in the order formatSize tries them, largest first. */
const UNITS_DESCENDING: ReadonlyArray<[string, number]> = [
  ['T', 1024 ** 4],
  ['G', 1024 ** 3],
  ['M', 1024 ** 2],
  ['K', 1024],
];

const SIZE_PATTERN = /^(\d+)\s*(?:([kmgt])(?:i?b)?|b)?$/i;

/**
 * Parse a size such as `64k`, `100G`, `4096`.
 *
 * @returns the size in bytes, a non-negative safe integer.
 * @throws DdfsError USAGE when the text is not a size or the value exceeds Number.MAX_SAFE_INTEGER.
 */
export function parseSize(text: string): number {
  const match = SIZE_PATTERN.exec(text.trim());
  if (match === null) {
    throw new DdfsError('USAGE', `invalid size '${text}' (expected digits with an optional k, M, G or T suffix)`, {
      text,
    });
  }
  const digits = match[1]!;
  const unit = match[2];
  const unitSize = unit === undefined ? 1 : UNIT_SIZES[unit.toLowerCase()]!;
  const size = Number(digits) * unitSize;
  if (!Number.isSafeInteger(size)) {
    throw new DdfsError('USAGE', `size too large: '${text}'`, { text });
  }
  return size;
}

/**
 * Render a byte count as short text: the largest unit that divides it exactly (`65536` → `64K`, `107374182400` →
 * `100G`, `1000` → `1000`), else the largest unit not above it with up to two decimals (`1500000` → `1.43M`).
 * Exact renderings parse back with parseSize; rounded ones are for display only.
 *
 * @throws DdfsError INVALID for a negative or non-integer count.
 */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new DdfsError('INVALID', `not a byte count: ${bytes}`, { bytes });
  }
  for (const [suffix, unitSize] of UNITS_DESCENDING) {
    if (bytes >= unitSize && bytes % unitSize === 0) return `${bytes / unitSize}${suffix}`;
  }
  for (const [suffix, unitSize] of UNITS_DESCENDING) {
    if (bytes >= unitSize) return `${trimDecimals((bytes / unitSize).toFixed(2))}${suffix}`;
  }
  return String(bytes);
}

/** `1.50` → `1.5`, `2.00` → `2`. */
function trimDecimals(text: string): string {
  return text.replace(/\.?0+$/, '');
}
