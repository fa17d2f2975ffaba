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
 * Run `fn(writeRandom, tree)` on the unmounted volume `parent` opened through the product's own writer (dist/), then
 * close it. `writeRandom(rel, size, create = true)` writes `size` random bytes from offset 0 of ddfsroot/`rel` (created
 * 0644 when `create`, else an existing file rewritten in place), 1 MiB at a time. `tree.mkdir(rel)` and
 * `tree.rename(from, to)` change the tree. With `{ journal: true }` (a mirror master: init-slave first) the volume is
 * opened as its daemon opens it: every change is journaled first and the close writes the seal of a clean unmount,
 * so the next pass may be incremental.
 */
export async function withOfflineVolume(parent, fn, options = {}) {
  const { Volume } = await import(path.join(here, 'dist/volume/volume.js'));
  const { UfsFile } = await import(path.join(here, 'dist/ufs/ufs_file.js'));
  const v = await Volume.open(parent);
  let mj = null;
  if (options.journal) {
    const { openMasterJournal } = await import(path.join(here, 'dist/mirror/master_journal.js'));
    const { logger } = await import(path.join(here, 'dist/util/log.js'));
    mj = await openMasterJournal(parent, { crashed: false, rootDir: v.rootDir, logger });
    if (mj === null) throw new Error(`${parent}: not a mirror master (init-slave a slave from it first)`);
    v.tree.sink = mj.sink;
  }
  const caller = { uid: process.getuid(), gid: process.getgid() };
  let fileKey = 0n;
  const buf = Buffer.alloc(MIB);
  const writeRandom = async (rel, size, create = true) => {
    // journaled, a file is created through the tree (its create record), as the daemon's create op does
    if (create && mj !== null) await v.tree.createFile(Buffer.from(rel), 0o644, caller, true);
    await mj?.sink.beforeWrite(++fileKey, Buffer.from(rel));
    const f = await UfsFile.open(v.store, Buffer.from(path.join(parent, 'ddfsroot', rel)), create && mj === null ? { create: true, mode: 0o644 } : {});
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
  const tree = {
    mkdir: (rel) => v.tree.mkdir(Buffer.from(rel), 0o755, caller),
    rename: (from, to) => v.tree.rename(Buffer.from(from), Buffer.from(to)),
  };
  try {
    return await fn(writeRandom, tree);
  } finally {
    if (mj !== null) {
      v.tree.sink = null;
      await mj.close(true);
    }
    await v.close();
  }
}
