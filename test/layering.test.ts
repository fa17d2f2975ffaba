/**
 * The layer graph of src/ (style.md "Dependency direction"), read from the imports of every src/**\/*.ts file:
 *
 *   cli -> fs | fsck | copy | alter | mirror -> volume -> store | ufs -> format | io -> util -> limits | errors
 *
 * - A module imports only modules of lower layers (any lower layer, not only the next); siblings of one layer
 *   (fs, fsck, copy, alter, mirror; store and ufs; format and io; limits and errors) never import each other. Type-only
 *   imports count too: they are a dependency on another layer's API.
 * - util sits just above limits and errors (the log needs its size limits, assert throws DdfsError): the three are the
 *   base of style.md's `limits | errors | util`, with util on top.
 * - format/ has no node: imports (pure codecs).
 * - Each third-party library lives in one module: fuse-native only in fs/fuse_binding.ts, koffi only in
 *   io/ffi.ts, commander and ora only in cli/. A library not listed here fails the test until it is given a home.
 * - node:fs and node:fs/promises (volume data and directories) only in io/ and cli/, plus NODE_FS_ALLOWED below: the
 *   files that still need it today, each with why. The list can only shrink: an entry whose file no longer imports
 *   node:fs fails the test, so it must be removed. `import type` from node:fs (a FileHandle type) does no I/O and is
 *   not counted.
 *
 * Outside the graph:
 * - testgen/ (testddumbfs's generator and verifier of ordinary files, spec §14) is a library of the cli only: only
 *   cli/ may import it, and it imports only the base (limits, errors, util). It writes and reads ordinary files on a
 *   mount, as a user would, never volume data, so its node:fs imports are allowed.
 * - Tests (*.test.ts beside the modules) and test/helpers/ set volumes up from any layer: they are not checked.
 */
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(__dirname, '../src');

/** Layer rank of each module (a first-level folder of src/, or a top-level file without .ts). */
const LAYER: Record<string, number> = {
  cli: 6,
  fs: 5, fsck: 5, copy: 5, alter: 5, mirror: 5,
  volume: 4,
  store: 3, ufs: 3,
  format: 2, io: 2,
  util: 1,
  limits: 0, errors: 0,
};

/** Modules outside the graph, and what they may import / who may import them. */
const TESTGEN = 'testgen';
const TESTGEN_MAY_IMPORT = new Set(['limits', 'errors', 'util']);

/**
 * Imports against the graph that exist today, each with why; the list can only shrink (a stale entry fails).
 * Key: `<file relative to src>` -> imported module.
 */
const LAYER_EXCEPTIONS: Record<string, { module: string; why: string }> = {
  'ufs/ufs_file.ts': {
    module: 'store',
    why: 'UfsFile stores and reads blocks through the BlockStore (a type-only import): it is the volume\'s open-file ' +
      'object and belongs above store; it moves when the volume owns the UFS tree (issue 6 §1, the "ns" task).',
  },
};

/** Files outside io/ and cli/ that still import node:fs today, and why. Shrink it; never grow it without a reason. */
const NODE_FS_ALLOWED: Record<string, string> = {
  'alter/alter.ts': 'resolves a file argument, deletes the index/block file (-I/-B delete) directly',
  'copy/upload.ts': 'checks the markers (.autofsck, .rebuildfsck) with existsSync before an upload',
  'fs/mount.ts': 'daemon start-up and shutdown: markers, the special directory, /proc/self/mounts, the mount point',
  'fs/ops.ts': 'metadata reads of ddfsroot (getattr, readdir, readlink, access, statfs, the header peek) and raw files of /.ddumbfs; every change of the tree goes through volume/tree.ts',
  'fs/special_files.ts': 'regenerates /.ddumbfs/stats, reclaim and test in the special directory, and sets their modes and owner at mount (fchmod/fchown of a no-follow descriptor)',
  'fsck/check.ts': 'looks for the .autofsck marker',
  'fsck/context.ts': 'stats ddfsroot when opening a volume for fsck',
  'fsck/fix_files.ts': 'writes corrupted.txt (opened by io/no_follow.ts) and tests its directory',
  'store/hash_pool.ts': 'finds the compiled hash worker script next to it',
  'fsck/pack.ts': 'stats the block file before cutting it',
  'fsck/rebuild.ts': 'removes the .rebuildfsck marker',
  'fsck/repair.ts': 'looks for the .autofsck marker',
  'fsck/run.ts': 'removes the .autofsck marker, looks for .rebuildfsck',
  'util/log.ts': 'appends to ddumbfs.log and rolls it over',
  'volume/create.ts': 'mkddumbfs: creates the parent layout (directories, special files, ddfs.cfg)',
  'volume/volume.ts': 'finds the parent (stat of ddfs.cfg and ddfsroot), reads ddfs.cfg, and names a file with lost blocks by its /proc/self/fd link',
};

/** Third-party libraries and the only files (or folders, ending in '/') that may import each. */
const LIBRARY_HOME: Record<string, string[]> = {
  'fuse-native': ['fs/fuse_binding.ts'],
  koffi: ['io/ffi.ts'],
  commander: ['cli/'],
  ora: ['cli/'],
  'hash-wasm': ['mirror/crc32c.ts'],
};

interface ImportRecord {
  /** Importing file, relative to src/. */
  file: string;
  specifier: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** The source without comments (string contents kept; good enough for import lines). */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

/** Every static import/export-from, dynamic import() and require() of a file. */
export function importsOf(file: string, text: string): ImportRecord[] {
  const src = stripComments(text);
  const out: ImportRecord[] = [];
  const statics = /(?:^|\n)\s*(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"]([^'"]+)['"]/g;
  for (const m of src.matchAll(statics)) out.push({ file, specifier: m[4]!, typeOnly: m[2] !== undefined });
  for (const m of src.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) out.push({ file, specifier: m[1]!, typeOnly: false });
  for (const m of src.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ file, specifier: m[1]!, typeOnly: false });
  for (const m of src.matchAll(/\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push({ file, specifier: m[1]!, typeOnly: false });
  return out;
}

/** The module of a path relative to src/: its first folder, or a top-level file's name without .ts. */
function moduleOf(rel: string): string {
  const parts = rel.split('/');
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.(js|ts)$/, '');
}

const records: ImportRecord[] = sourceFiles(SRC).flatMap((p) => {
  const rel = path.relative(SRC, p).split(path.sep).join('/');
  return importsOf(rel, readFileSync(p, 'utf8'));
});
const relative = records.filter((r) => r.specifier.startsWith('.'));
const targetModule = (r: ImportRecord): string =>
  moduleOf(path.posix.normalize(path.posix.join(path.posix.dirname(r.file), r.specifier)));

describe('import parsing', () => {
  it('finds static, multi-line, type-only, dynamic and require imports and ignores comments', () => {
    const text = [
      "import * as fs from 'node:fs';",
      'import {',
      '  a,',
      "  b } from '../store/block_store.js';",
      "import type { X } from './x.js';",
      "export { y } from '../format/layout.js';",
      "// import { no } from 'commented-out';",
      "/* import { no2 } from 'block-comment'; */",
      "const m = await import('../dist/x.js');",
      "const c = require('fuse-native');",
    ].join('\n');
    expect(importsOf('f.ts', text).map((r) => `${r.specifier}${r.typeOnly ? ' (type)' : ''}`).sort()).toEqual([
      '../dist/x.js', '../format/layout.js', '../store/block_store.js', './x.js (type)', 'fuse-native', 'node:fs',
    ]);
  });

  it('reads a plausible number of imports from src/', () => {
    expect(sourceFiles(SRC).length).toBeGreaterThan(50);
    expect(relative.length).toBeGreaterThan(200);
  });
});

describe('layering', () => {
  it('every module of src/ has a layer (or is testgen)', () => {
    const unknown = [...new Set(sourceFiles(SRC).map((p) => moduleOf(path.relative(SRC, p).split(path.sep).join('/'))))]
      .filter((m) => LAYER[m] === undefined && m !== TESTGEN);
    expect(unknown).toEqual([]);
  });

  it('imports only go downward; siblings never import each other', () => {
    const bad: string[] = [];
    const excepted = new Set<string>();
    for (const r of relative) {
      const from = moduleOf(r.file);
      const to = targetModule(r);
      if (from === to || from === TESTGEN || to === TESTGEN) continue;
      if (LAYER[from]! > LAYER[to]!) continue;
      const ex = LAYER_EXCEPTIONS[r.file];
      if (ex && ex.module === to) {
        excepted.add(r.file);
        continue;
      }
      bad.push(`${r.file} imports ${r.specifier} (${from} may not import ${to})`);
    }
    expect(bad).toEqual([]);
    // the exception list can only shrink
    expect(Object.keys(LAYER_EXCEPTIONS).filter((f) => !excepted.has(f))).toEqual([]);
  });

  it('testgen is imported only by cli and imports only limits, errors and util', () => {
    const bad: string[] = [];
    for (const r of relative) {
      const from = moduleOf(r.file);
      const to = targetModule(r);
      if (to === TESTGEN && from !== TESTGEN && from !== 'cli') bad.push(`${r.file} imports ${r.specifier}`);
      if (from === TESTGEN && to !== TESTGEN && !TESTGEN_MAY_IMPORT.has(to)) bad.push(`${r.file} imports ${r.specifier}`);
    }
    expect(bad).toEqual([]);
  });

  it('format/ has no node: imports', () => {
    expect(records.filter((r) => moduleOf(r.file) === 'format' && r.specifier.startsWith('node:')).map((r) => `${r.file}: ${r.specifier}`)).toEqual([]);
  });

  it('each third-party library is imported in its one home only', () => {
    const bad: string[] = [];
    for (const r of records) {
      if (r.specifier.startsWith('.') || r.specifier.startsWith('node:')) continue;
      const name = r.specifier.startsWith('@') ? r.specifier.split('/').slice(0, 2).join('/') : r.specifier.split('/')[0]!;
      const homes = LIBRARY_HOME[name];
      if (!homes) {
        bad.push(`${r.file}: ${r.specifier} is a library without a home in LIBRARY_HOME`);
        continue;
      }
      if (!homes.some((h) => (h.endsWith('/') ? r.file.startsWith(h) : r.file === h))) bad.push(`${r.file} imports ${name}`);
    }
    expect(bad).toEqual([]);
  });

  it('node:fs is imported only in io/ and cli/ (and testgen/), plus the commented allow-list, which can only shrink', () => {
    const users = new Set(
      records
        .filter((r) => (r.specifier === 'node:fs' || r.specifier === 'node:fs/promises' || r.specifier === 'fs' || r.specifier === 'fs/promises') && !r.typeOnly)
        .map((r) => r.file),
    );
    const outside = [...users].filter((f) => !['io', 'cli', TESTGEN].includes(moduleOf(f))).sort();
    expect(outside.filter((f) => NODE_FS_ALLOWED[f] === undefined)).toEqual([]);
    expect(Object.keys(NODE_FS_ALLOWED).filter((f) => !users.has(f)).sort()).toEqual([]);
  });
});
