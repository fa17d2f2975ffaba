/**
 * The version every command prints for `--version`: read once from package.json (the one place it is kept), which
 * sits two levels above this module both in src/cli/ and in the compiled dist/cli/ (also where install.sh copies it).
 */
import * as fs from 'node:fs';

/** The on-disk format and tool behaviour these commands follow (spec §1). */
export const UPSTREAM_VERSION = 'ddumbfs 1.1';

let cached: string | null = null;

/**
 * The package version from package.json ("0.1.0"); "unknown" when package.json cannot be read (never throws).
 */
export function packageVersion(): string {
  if (cached !== null) return cached;
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}

/** The `--version` line of command `name`: "mkddumbfs (ddumbfs-ts) 0.1.0, ddumbfs 1.1 compatible". */
export function versionLine(name: string): string {
  return `${name} (ddumbfs-ts) ${packageVersion()}, ${UPSTREAM_VERSION} compatible`;
}
