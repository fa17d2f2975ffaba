// What the benchmark scripts share (bench.mjs, bench-mirror.mjs, bench-fsck.mjs): the repository's commands, a child
// run that fails loudly, and dropping the page cache.
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
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
/** Whether `mnt` is a mount point now (/proc/self/mounts). */
export function mounted(mnt) {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}
/** Unmount `mnt` when mounted (fusermount -u), waiting up to 10 s for the mount to go. */
export function unmount(mnt) {
  if (!mounted(mnt)) return;
  spawnSync('fusermount', ['-u', mnt]);
  for (let i = 0; i < 100 && mounted(mnt); i++) spawnSync('sleep', ['0.1']);
}

export function dropCaches() {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/**
 * Run `fn(writeRandom)` on the unmounted volume `parent` opened through the product's own writer (dist/), then close
 * it. `writeRandom(rel, size, create = true)` writes `size` random bytes from offset 0 of ddfsroot/`rel` (created 0644
 * when `create`, else an existing file rewritten in place), 1 MiB at a time.
 */
export async function withOfflineVolume(parent, fn) {
  const { Volume } = await import(path.join(here, 'dist/volume/volume.js'));
  const { UfsFile } = await import(path.join(here, 'dist/ufs/ufs_file.js'));
  const v = await Volume.open(parent);
  const buf = Buffer.alloc(MIB);
  const writeRandom = async (rel, size, create = true) => {
    const f = await UfsFile.open(v.store, Buffer.from(path.join(parent, 'ddfsroot', rel)), create ? { create: true, mode: 0o644 } : {});
    try {
      for (let at = 0; at < size; at += MIB) {
        const n = Math.min(MIB, size - at);
        randomFillSync(buf, 0, n);
        await f.write(at, buf.subarray(0, n));
      }
    } finally {
      await f.close();
    }
  };
  try {
    return await fn(writeRandom);
  } finally {
    await v.close();
  }
}
