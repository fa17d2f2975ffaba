/**
 * Building UFS trees in tests, offline and in process: regular files through the volume's own writer (UfsFile on the
 * BlockStore, so blocks, index and node lists are what the daemon would leave), everything else (directories,
 * symlinks, hard links, FIFOs, modes, owners, times) straight in ddfsroot, as the UFS allows (spec §7).
 * Paths are byte paths relative to ddfsroot (a string is taken as UTF-8).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeAddress, encodeAddress } from '../../src/format/node.js';
import { UfsNodeFile } from '../../src/ufs/ufs_reader.js';
import { UfsFile } from '../../src/ufs/ufs_file.js';
import { fileDevices } from '../../src/io/device.js';
import { Volume } from '../../src/volume/volume.js';
import { VolumeDigests } from '../../src/mirror/digest.js';
import { nodeTreeAccess } from '../../src/cli/mirrorddumbfs.js';
import { verifyTrees, renderVerifyLine } from '../../src/mirror/verify.js';
import { runOk } from './run.js';
import { readTree } from './ufs_model.js';

export type RelPath = string | Buffer;

/** The absolute byte path of `rel` inside the volume `parent`'s ddfsroot. */
export function ufsAbs(parent: string, rel: RelPath): Buffer {
  return Buffer.concat([Buffer.from(path.join(parent, 'ddfsroot'), 'utf8'), Buffer.from('/'), typeof rel === 'string' ? Buffer.from(rel, 'utf8') : rel]);
}

/** Write `data` at `offset` of the regular file `rel` (created when missing) through the volume's writer. */
export async function writeUfsFile(volume: Volume, rel: RelPath, data: Buffer, offset = 0): Promise<void> {
  const f = await UfsFile.open(volume.store, ufsAbs(volume.parentDir, rel), { create: true, mode: 0o644 });
  try {
    if (data.length > 0) await f.write(offset, data);
  } finally {
    await f.close();
  }
}

/** Set the size of file `rel` (truncate or extend with a hole) through the volume's writer. */
export async function truncateUfsFile(volume: Volume, rel: RelPath, sizeBytes: number): Promise<void> {
  const f = await UfsFile.open(volume.store, ufsAbs(volume.parentDir, rel), {});
  try {
    await f.truncate(sizeBytes);
  } finally {
    await f.close();
  }
}

/** Open the volume, run `fn`, sync and close it. */
export async function withVolume<T>(parent: string, fn: (v: Volume) => Promise<T>): Promise<T> {
  const v = await Volume.open(parent);
  try {
    return await fn(v);
  } finally {
    await v.close();
  }
}

/** The (address, hash) of node `index` of file `rel`, read with the UFS reader. */
/**
 * The regular files of an unmounted volume, read through its own reader (readTree): latin1 relative path → bytes,
 * without the special directory `.ddumbfs`.
 */
export async function volumeFiles(parent: string): Promise<Map<string, Buffer>> {
  const t = await withVolume(parent, (v) => readTree(v));
  return new Map([...t].filter(([k]) => !k.startsWith('.ddumbfs')));
}

export async function readUfsNode(parent: string, nodeSize: number, addrSize: number, rel: RelPath, index: number): Promise<{ address: number; hash: Buffer }> {
  const f = await UfsNodeFile.open(fileDevices, ufsAbs(parent, rel), nodeSize, { strict: true });
  try {
    const n = await f.readNodes(index, 1);
    return { address: decodeAddress(n, 0, addrSize), hash: Buffer.from(n.subarray(addrSize)) };
  } finally {
    await f.close();
  }
}

/** Rewrite node `index` of file `rel` with `address` and `hash` (a deliberate damage; the header is kept). */
export async function writeUfsNode(parent: string, nodeSize: number, addrSize: number, rel: RelPath, index: number, address: number, hash: Buffer): Promise<void> {
  const f = await UfsNodeFile.open(fileDevices, ufsAbs(parent, rel), nodeSize, { write: true, strict: true });
  try {
    const n = Buffer.alloc(nodeSize);
    encodeAddress(n, 0, addrSize, address);
    hash.copy(n, addrSize);
    await f.writeNodes(index, n);
  } finally {
    await f.close();
  }
}

export function mkdirUfs(parent: string, rel: RelPath, mode = 0o755): void {
  fs.mkdirSync(ufsAbs(parent, rel), { mode });
}

export function symlinkUfs(parent: string, target: RelPath, rel: RelPath): void {
  fs.symlinkSync(typeof target === 'string' ? Buffer.from(target) : target, ufsAbs(parent, rel));
}

export function linkUfs(parent: string, existing: RelPath, rel: RelPath): void {
  fs.linkSync(ufsAbs(parent, existing), ufsAbs(parent, rel));
}

/**
 * A FIFO through mkfifo(1) (node:fs has no mknod); a command's arguments are strings: UTF-8 paths only.
 * Asynchronous like every child process of the tests (helpers/run.ts): starting a process from a big, loaded worker
 * is not instant.
 * @throws Error when mkfifo fails
 */
export async function fifoUfs(parent: string, rel: string): Promise<void> {
  await runOk('mkfifo', [ufsAbs(parent, rel).toString('utf8')]);
}

/**
 * verify `a` against `b` in process: the report's text lines and the two trees' counters.
 */
export async function verifyInProcess(a: string, b: string, options: { deep?: boolean; mtime?: boolean } = {}): Promise<{ lines: string[]; ta: VolumeDigests; tb: VolumeDigests }> {
  const ta = await VolumeDigests.open(a, { access: nodeTreeAccess, ...options });
  const tb = await VolumeDigests.open(b, { access: nodeTreeAccess, ...options });
  try {
    const lines: string[] = [];
    for await (const l of verifyTrees(ta, tb)) lines.push(renderVerifyLine(l));
    return { lines, ta, tb };
  } finally {
    await ta.close();
    await tb.close();
  }
}
