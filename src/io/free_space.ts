/**
 * What the filesystems under a volume can still take (issue 6 §3: a volume whose block file, index or UFS tree sits
 * on a filesystem smaller than the volume must refuse writes before that filesystem is full, not lose them).
 *
 * Only metadata calls (statfs, stat): no volume data is read or written here. A block device is not a file on a
 * filesystem: its space is the device itself, so it reports no filesystem.
 */
import * as fs from 'node:fs';

/** A filesystem holding a volume file: its identity (st_dev) and the bytes an unprivileged writer may still use. */
export interface FilesystemSpace {
  deviceId: number;
  freeBytes: number;
}

/**
 * The filesystem holding `p` (a file or directory), or null when `p` is a block device or does not exist (then
 * nothing can be said about its space).
 */
export function filesystemSpaceOf(p: string): FilesystemSpace | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return null;
  }
  if (st.isBlockDevice() || st.isCharacterDevice()) return null;
  const s = fs.statfsSync(p);
  return { deviceId: st.dev, freeBytes: s.bavail * s.bsize };
}

/**
 * Bytes of the regular file `p` that are holes today (size − allocated): a sparse index file needs that much space
 * again when its pages are written back. 0 for a block device or a missing file.
 */
export function unallocatedBytesOf(p: string): number {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return 0;
    return Math.max(0, st.size - st.blocks * 512);
  } catch {
    return 0;
  }
}

/** Size in bytes of the regular file `p`; null for a block device or a missing file. */
export function fileSizeOf(p: string): number | null {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}
