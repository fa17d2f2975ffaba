// What the benchmark scripts share (bench.mjs, bench-mirror.mjs, bench-fsck.mjs): the repository's commands, a child
// run that fails loudly, and dropping the page cache.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const MIB = 1024 ** 2;
/** The repository root. */
export const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
/** The path of one of the repository's commands (bin/). */
export const bin = (n) => path.join(here, 'bin', n);

/** Run `cmd args` to its end; throws with its stderr when it exits non-zero. @returns its stdout and stderr as text */
export function runChild(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MIB, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** sync, then drop the page, dentry and inode caches. @returns false when that is not allowed (not root) */
export function dropCaches() {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}
