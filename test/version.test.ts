/**
 * `--version` on every command (issue 10): each bin/ shim prints one line with its own name and the version kept in
 * package.json, and exits 0; ddumbfs also answers -V. Needs dist/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_DIR, sh } from './helpers/mount.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
const shims = fs.readdirSync(path.join(REPO_DIR, 'bin')).filter((n) => !n.includes('.')).sort();

describe('--version', () => {
  it('package.json names every bin/ shim', () => {
    expect(shims.length).toBeGreaterThanOrEqual(7);
    expect(Object.keys(pkg.bin).sort()).toEqual(shims);
  });

  it.each(shims)('%s --version prints its name and the package version, exit 0', async (name) => {
    const r = await sh(path.join(REPO_DIR, 'bin', name), ['--version']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${name} (ddumbfs-ts) ${pkg.version}, ddumbfs 1.1 compatible\n`);
  });

  it('ddumbfs -V is the same line', async () => {
    const r = await sh(path.join(REPO_DIR, 'bin', 'ddumbfs'), ['-V']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`ddumbfs (ddumbfs-ts) ${pkg.version}, ddumbfs 1.1 compatible\n`);
  });
});
