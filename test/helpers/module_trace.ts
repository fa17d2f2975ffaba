/**
 * Which modules a command loads: the command runs as a child (`node --import REGISTER BIN ...`) under a
 * module-resolution hook that writes `RESOLVED <url>` to stderr for every module it resolves, and at exit also every
 * module loaded with require() (io/ffi.ts requires koffi at its first native call, which the ES module hook does not
 * see), as its file URL. stderr is a pipe (not a
 * terminal), as in a script, a cron job or the far side of ssh. Used by the startup tests of fsckddumbfs and
 * mirrorddumbfs, which assert what a command does NOT load.
 *
 * The command runs from dist/cli (DDUMBFS_NO_BUNDLE=1), not from its bundle (scripts/build-bundle.mjs), whose one
 * file hides which modules are evaluated: the dynamic imports asserted here are the same boundaries inside a bundle,
 * where a module lazily imported is evaluated only when the import runs. `{ bundle: true }` lets the shim choose (the
 * bundle test: which file ran, and what outside the bundle was loaded).
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from './run.js';
import { COMMAND_TIMEOUT_MS } from './timeouts.js';

export interface TracedRun {
  /** Exit status (-1 when killed). */
  status: number;
  /** Every module URL resolved, in order. */
  urls: string[];
  stdout: string;
}

/**
 * Write the hook into `work` (a temp directory the caller removes) and return a runner of `bin` under it.
 * @param work directory for hook.mjs and register.mjs
 * @param bin the command to run (a bin/ shim of this repository)
 * @param options bundle: run what the shim chooses (its bundle when fresh) instead of dist/cli
 */
export function moduleTracer(work: string, bin: string, options: { bundle?: boolean } = {}): (...args: string[]) => Promise<TracedRun> {
  const hook = path.join(work, 'hook.mjs');
  writeFileSync(hook, `export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  process.stderr.write('RESOLVED ' + r.url + '\\n');
  return r;
}
`);
  const register = path.join(work, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
register(${JSON.stringify(pathToFileURL(hook).href)});
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => {
  for (const file of Object.keys(cache)) process.stderr.write('RESOLVED ' + pathToFileURL(file).href + '\\n');
});
`);
  return async (...args) => {
    const r = await run('node', ['--import', register, bin, ...args], {
      encoding: 'utf8',
      timeoutMs: COMMAND_TIMEOUT_MS,
      env: { ...process.env, DDUMBFS_NO_BUNDLE: options.bundle === true ? '' : '1' },
    });
    const urls = r.stderr.split('\n').filter((l) => l.startsWith('RESOLVED ')).map((l) => l.slice('RESOLVED '.length));
    return { status: r.code ?? -1, urls, stdout: r.stdout };
  };
}
