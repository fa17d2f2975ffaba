#!/usr/bin/env node
// Bundle each command of package.json "bin" into one ES module, dist/bundle/COMMAND.js, from the tsc output in dist/
// (run `npx tsc -p tsconfig.json` first). Why (issue 9): a command run from dist/cli loads ~55 modules of ours and
// commander's, and resolving, opening and compiling them one by one is most of its fixed start-up cost (fsckddumbfs
// -c of a small volume was 2.3x the C tool's time); one file is read and compiled once.
//
// What stays outside the bundles, found at run time in node_modules as before:
//   - the native addons and their loaders: koffi (io/ffi.ts requires it at the first native call), fuse-native and
//     node-gyp-build (fs/fuse_binding.ts requires them at the first mount);
//   - hash-wasm: mirror/crc32c.ts imports one of its files lazily, by path.
// Everything else (our modules, commander, ora and its dependencies) is inside; a module that the dist/ code imports
// lazily (`await import(...)`) is still evaluated only when that import runs, so the laziness of each mode holds.
// A whole bundle is still read and compiled, though: mirrorddumbfs, whose subcommands import their code lazily and
// whose single bundle (800 KiB) made `--version` slower than dist/cli, is split instead (SPLIT): its entry plus one
// chunk per lazily imported module and per group of shared modules, all beside it as dist/bundle/mirrorddumbfs-*.js.
//
// Files located from a module's own URL (`new URL('./x.js', import.meta.url)`) are located from the bundle's URL:
//   - the worker entries store/hash_worker.js and io/census_worker.js are bundled too, as dist/bundle/hash_worker.js
//     and dist/bundle/census_worker.js, beside the commands that start them;
//   - cli/version.ts reads ../../package.json, which is package.json from dist/bundle/ as from dist/cli/.
// After the build every such URL in the output is checked to name an existing file, so a new worker that is not
// listed here fails the build instead of the command.
//
// The bundles are written to a temporary directory and renamed into place, so a failed build leaves no half set.
// bin/ shims run a bundle only when it is newer than its dist/cli entry, so a later `tsc` alone (which rewrites every
// file of dist/) is never shadowed by a stale bundle.
//
// Usage: node scripts/build-bundle.mjs [--outdir DIR]   (default DIR: dist/bundle of this checkout)
// Exit status 0 built, 1 failed (esbuild's errors, a missing dist/ entry, or an unresolved module-relative URL).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let outdir = path.join(root, 'dist', 'bundle');
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--outdir' && i + 1 < args.length) outdir = path.resolve(args[++i]);
  else {
    console.error('usage: node scripts/build-bundle.mjs [--outdir DIR]');
    process.exit(1);
  }
}

/** Worker entries, by their path in dist/: started with `new Worker(new URL('./NAME.js', import.meta.url))`. */
const WORKERS = ['store/hash_worker.js', 'io/census_worker.js'];
/** Commands bundled with code splitting (their lazy imports stay separate files), by name. */
const SPLIT = new Set(['mirrorddumbfs']);
/** Packages left to node's own resolution at run time (native code, or a file imported by path). */
const EXTERNAL = ['koffi', 'fuse-native', 'node-gyp-build', 'hash-wasm', 'hash-wasm/*'];
/**
 * Bundled CommonJS code (commander) calls require() for node's own modules; an ES module has no require, so each
 * bundle defines one for its own URL (esbuild renames a bundled module's own top-level `require`, as in
 * fs/fuse_binding.ts, so they do not clash).
 */
const BANNER = "import { createRequire as __ddfsCreateRequire } from 'node:module';\nconst require = __ddfsCreateRequire(import.meta.url);";

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const commands = Object.keys(pkg.bin ?? {}).sort();
/** esbuild's entry of dist/REL, named by its base name. */
function entry(rel) {
  const file = path.join(root, 'dist', rel);
  if (!fs.existsSync(file)) {
    console.error(`build-bundle: ${path.relative(root, file)} is missing: run npx tsc -p tsconfig.json first`);
    process.exit(1);
  }
  return { in: file, out: path.basename(rel, '.js') };
}
const whole = [...commands.filter((c) => !SPLIT.has(c)).map((c) => entry(`cli/${c}.js`)), ...WORKERS.map(entry)];
const split = commands.filter((c) => SPLIT.has(c)).map((c) => entry(`cli/${c}.js`));

fs.mkdirSync(path.dirname(outdir), { recursive: true });
const tmp = fs.mkdtempSync(path.join(path.dirname(outdir), `.${path.basename(outdir)}-`));
fs.chmodSync(tmp, 0o755); // mkdtemp makes it 0700: the installed commands are run by every user
try {
  const common = {
    outdir: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: EXTERNAL,
    banner: { js: BANNER },
    // linked maps (composed with tsc's, so they name src/*.ts); node reads them only with --enable-source-maps
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  };
  // one build of independent whole bundles; one split build per SPLIT command, its chunks named after it and kept
  // in the same directory (so that a chunk's import.meta.url locates the same files as its entry's)
  const results = [await esbuild.build({ ...common, entryPoints: whole })];
  for (const e of split) results.push(await esbuild.build({ ...common, entryPoints: [e], splitting: true, chunkNames: `${e.out}-[name]-[hash]` }));
  if (results.some((r) => r.errors.length > 0)) throw new Error('esbuild reported errors');
  checkModuleUrls(tmp, outdir);
  fs.rmSync(outdir, { recursive: true, force: true });
  fs.renameSync(tmp, outdir);
  // renamed directories keep their files' times: stamp the bundles now, after every dist/ file tsc wrote
  const now = new Date();
  for (const f of fs.readdirSync(outdir)) fs.utimesSync(path.join(outdir, f), now, now);
  const sizes = [...whole, ...split].map((e) => `${e.out}.js ${(fs.statSync(path.join(outdir, `${e.out}.js`)).size / 1024).toFixed(0)} KiB`);
  const chunkCount = results.slice(1).reduce((n, r) => n + Object.keys(r.metafile.outputs).filter((f) => f.endsWith('.js')).length - 1, 0);
  console.log(`build-bundle: ${sizes.length} bundles (+${chunkCount} chunks of ${[...SPLIT].join(', ')}) in ${path.relative(process.cwd(), outdir) || '.'}: ${sizes.join(', ')}`);
} catch (err) {
  fs.rmSync(tmp, { recursive: true, force: true });
  console.error(`build-bundle: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

/**
 * Every `new URL("REL", import.meta.url)` in the bundles of `dir` must name an existing file once the bundles are in
 * `finalDir` (a worker entry beside them, or package.json two levels up).
 * @throws Error naming the bundle and the URL that resolves to nothing
 */
function checkModuleUrls(dir, finalDir) {
  const re = /new URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url\s*\)/g;
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    for (const m of text.matchAll(re)) {
      const rel = m[1];
      const inBundle = fs.existsSync(path.join(dir, rel));
      const outside = fs.existsSync(path.resolve(finalDir, rel));
      if (!inBundle && !outside) throw new Error(`${f}: new URL('${rel}', import.meta.url) names no file (a worker entry missing from WORKERS?)`);
    }
  }
}
