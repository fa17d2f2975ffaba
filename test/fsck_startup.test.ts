/**
 * fsckddumbfs's fixed cost (issue 9): what a mode does not need is not loaded. The command runs as a child (compiled
 * dist/: run `npx tsc -p tsconfig.json` first) under a module-resolution hook that lists every module it resolves,
 * with stderr a pipe (not a terminal), as in a script or a cron job.
 *
 * - `ora` (the terminal spinner, about a third of the command's startup) is loaded only for a terminal.
 * - -c and -n on a small volume start no hash worker (hash_worker.js is never resolved).
 * - -c loads no mirroring module and not hash-wasm (the mirror records' CRC32C, ~0.1 s to load); -n on a volume that
 *   is not a mirror slave does not load mirror/undo.js (which pulls in the mirror pass code).
 * - `--version` does not load koffi (io/ffi.ts requires it at the first native call; -c's first read-ahead advice is
 *   one, so -c does load it, which shows the tracer sees require()d modules too).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { copyFixtureVolume } from './helpers/crash.js';
import { moduleTracer } from './helpers/module_trace.js';
import { COMMAND_TIMEOUT_MS } from './helpers/timeouts.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/fsckddumbfs');
const work = mkdtempSync(path.join(tmpdir(), 'fsck-startup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Run fsckddumbfs under the module-resolution hook: its exit status, stdout and the URLs it resolved. */
const fsckModules = moduleTracer(work, BIN);

describe('fsckddumbfs loads only what the mode needs', () => {
  it('--version: no koffi, hash-wasm, ora nor mirroring module', async () => {
    const r = await fsckModules('--version');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^fsckddumbfs \(ddumbfs-ts\) /);
    expect(r.urls.some((u) => u.endsWith('/dist/cli/fsckddumbfs.js'))).toBe(true);
    expect(r.urls.filter((u) => /\/node_modules\/(koffi|hash-wasm|ora)\/|\/dist\/mirror\//.test(u))).toEqual([]);
  }, 2 * COMMAND_TIMEOUT_MS);

  it('-c and -n without a terminal: no ora, no hash worker; the check still reports', async () => {
    const vol = await copyFixtureVolume('index-i', path.join(work, 'index-i'));
    const c = await fsckModules('-c', vol);
    expect(c.stdout).toContain('== Summary');
    expect(c.urls.some((u) => u.includes('/dist/fsck/check.js'))).toBe(true); // the hook does see our modules
    expect(c.urls.filter((u) => /\/ora\//.test(u))).toEqual([]);
    expect(c.urls.filter((u) => u.endsWith('/hash_worker.js'))).toEqual([]);
    expect(c.urls.filter((u) => /\/dist\/mirror\/|\/hash-wasm\//.test(u))).toEqual([]);
    expect(c.urls.some((u) => /\/node_modules\/koffi\//.test(u))).toBe(true); // require()d modules are seen too
    const n = await fsckModules('-n', vol);
    expect(n.urls.some((u) => u.endsWith('/dist/mirror/state.js'))).toBe(true);
    expect(n.urls.filter((u) => /\/dist\/mirror\/(undo|pass_master)\.js$|\/hash-wasm\//.test(u))).toEqual([]);
    expect(n.status).toBe(0);
    expect(n.urls.filter((u) => /\/ora\//.test(u))).toEqual([]);
    expect(n.urls.filter((u) => u.endsWith('/hash_worker.js'))).toEqual([]);
  }, 4 * COMMAND_TIMEOUT_MS);
});
