/**
 * The repository is self-contained (issue 6 §4): a fresh clone anywhere, on a fresh machine, installs with `npm ci`
 * and tests against the fixtures it carries.
 * - package-lock.json locks every package that npm ci will ask for: each dependency and optional dependency of
 *   every locked package (optional packages of every platform included, which npm 11 once dropped) resolves to a
 *   locked entry, and the root entry lists package.json's own dependencies;
 * - no source, test or script names a path of the shared folder or of this machine's work tree: fixtures come
 *   from test/fixtures via FIXTURE_DIR (test/helpers/fixtures.ts), which lies inside the repository;
 * - the committed fixtures are complete: MD5SUMS matches src/, and no fixture file is dropped by .gitignore.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURE_DIR, FIXTURE_SRC_DIR, md5, readMd5Sums } from './helpers/fixtures.js';
import { REPO_DIR } from './helpers/mount.js';

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** Where node (and npm) find `name` from the package installed at lock key `from`: the nearest node_modules up. */
function resolveInLock(packages: Record<string, LockEntry>, from: string, name: string): string | null {
  let dir = from;
  for (;;) {
    const key = dir === '' ? `node_modules/${name}` : `${dir}/node_modules/${name}`;
    if (packages[key]) return key;
    if (dir === '') return null;
    const at = dir.lastIndexOf('/node_modules/');
    dir = at < 0 ? '' : dir.slice(0, at);
  }
}

/** Every file below `dir` (relative to REPO_DIR) whose name ends with one of `exts`. */
function sourceFiles(dir: string, exts: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'fixtures') walk(p);
      } else if (exts.some((x) => e.name.endsWith(x))) {
        out.push(path.relative(REPO_DIR, p));
      }
    }
  };
  walk(path.join(REPO_DIR, dir));
  return out;
}

describe('package-lock.json is complete for npm ci', () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as LockEntry;
  const lock = JSON.parse(readFileSync(path.join(REPO_DIR, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

  it('every dependency and optional dependency of every locked package is locked', () => {
    const missing: string[] = [];
    for (const [key, entry] of Object.entries(lock.packages)) {
      const wanted = { ...entry.dependencies, ...entry.optionalDependencies, ...(key === '' ? entry.devDependencies : {}) };
      for (const name of Object.keys(wanted)) {
        if (!resolveInLock(lock.packages, key, name)) missing.push(`${name} (wanted by ${key || 'the root'})`);
      }
    }
    expect(missing).toEqual([]);
    expect(Object.keys(lock.packages).length).toBeGreaterThan(100);
  });

  it("the lock's root entry has package.json's dependencies", () => {
    const root = lock.packages[''];
    expect(root?.dependencies).toEqual(pkg.dependencies);
    expect(root?.devDependencies).toEqual(pkg.devDependencies);
  });
});

describe('the tests use only what the repository carries', () => {
  it('no file of src/, test/ or scripts/ names the shared folder or the work tree', () => {
    // built from pieces so that this file does not match itself
    const banned = [new RegExp(['', 'work', ''].join('\\/')), new RegExp(['shared', 'fixtures'].join('\\/'))];
    const hits: string[] = [];
    for (const dir of ['src', 'test', 'scripts']) {
      for (const rel of sourceFiles(dir, ['.ts', '.mjs', '.js', '.sh'])) {
        readFileSync(path.join(REPO_DIR, rel), 'utf8').split('\n').forEach((line, i) => {
          if (banned.some((re) => re.test(line))) hits.push(`${rel}:${i + 1}: ${line.trim()}`);
        });
      }
    }
    expect(hits).toEqual([]);
  });

  it('FIXTURE_DIR is test/fixtures/ddumbfs-1.1 of this checkout and MD5SUMS matches its src/', async () => {
    expect(FIXTURE_DIR).toBe(path.join(REPO_DIR, 'test', 'fixtures', 'ddumbfs-1.1'));
    expect(statSync(path.join(FIXTURE_DIR, 'README.md')).isFile()).toBe(true);
    const sums = await readMd5Sums();
    expect(sums.size).toBe(7);
    for (const [rel, want] of sums) expect(md5(readFileSync(path.join(FIXTURE_SRC_DIR, rel))), rel).toBe(want);
  });

  const inGit = spawnSync('git', ['-C', REPO_DIR, 'rev-parse', '--is-inside-work-tree'], { encoding: 'utf8' }).stdout.trim() === 'true';
  it.skipIf(!inGit)('no fixture file is ignored by .gitignore (a fresh clone gets every one)', () => {
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else files.push(path.relative(REPO_DIR, p));
      }
    };
    walk(FIXTURE_DIR);
    expect(files.length).toBeGreaterThan(200);
    expect(files.filter((f) => f.endsWith('ddumbfs.log')).length).toBeGreaterThan(0);
    // exit 1 = none of the paths is ignored; the ignored ones are printed
    const r = spawnSync('git', ['-C', REPO_DIR, 'check-ignore', '--no-index', '--stdin'], { input: files.join('\n'), encoding: 'utf8' });
    expect(r.stdout.trim().split('\n').filter(Boolean)).toEqual([]);
    expect(r.status).toBe(1);
  });
});
