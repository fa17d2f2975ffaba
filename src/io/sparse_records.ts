/**
 * Which fixed-size records of a host file hold data, found from the file's holes (lseek(2) SEEK_DATA / SEEK_HOLE,
 * which Node lacks: glibc's, through io/ffi.ts). A UFS node file is sparse where its nodes are holes (a
 * `truncate -s 1T` file), so the stored blocks of a file are counted from its allocated extents without reading a
 * node list full of holes.
 *
 * Paths are Buffers of raw bytes; the file is opened read-only with O_NOFOLLOW, and O_NOATIME where allowed (a
 * stat must not move the file's atime).
 */
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import { lastNativeErrno, nativeFunctions } from './ffi.js';

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

type LseekFn = (fd: number, offset: number, whence: number) => number;
const libc = nativeFunctions<{ lseek: LseekFn }>('libc.so.6', { lseek: 'int64_t lseek(int fd, int64_t offset, int whence)' });
const lseek = (): LseekFn => libc().lseek;

/** What recordsWithData found. */
export interface RecordCount {
  /** Whole records of the file after `start`. */
  total: number;
  /**
   * Records that hold data: exactly those with a non-zero byte when `exact`, else every record that overlaps an
   * allocated extent (an upper bound: a dense file's records are all counted).
   */
  withData: number;
  exact: boolean;
}

/**
 * Count the records of `recordSize` bytes from byte `start` of the file at `p` that hold data. A file without
 * holes counts all its records without reading them; a sparse one reads its allocated records (at most
 * `readSizeMax` bytes, else the upper bound of RecordCount.withData is returned) and counts the non-zero ones.
 * A host file system without SEEK_DATA counts every record as data.
 * @throws Node system errors (ENOENT, ELOOP for a symlink, EACCES...)
 */
export function recordsWithData(p: Buffer, start: number, recordSize: number, readSizeMax: number): RecordCount {
  let fd: number;
  try {
    fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NOATIME);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    fd = fs.openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW); // O_NOATIME needs the file's owner or CAP_FOWNER
  }
  try {
    const length = fs.fstatSync(fd).size;
    const total = length <= start ? 0 : Math.floor((length - start) / recordSize);
    if (total === 0) return { total, withData: 0, exact: true };
    const end = start + total * recordSize;
    // records [first, last) overlapping an allocated extent, extents in file order
    const runs: Array<[number, number]> = [];
    let at = start;
    while (at < end) {
      const data = lseek()(fd, at, SEEK_DATA);
      if (data < 0) {
        if (lastNativeErrno() === ENXIO) break; // only a hole up to the end
        return { total, withData: total, exact: false }; // no SEEK_DATA here: assume dense
      }
      if (data >= end) break;
      let hole = lseek()(fd, data, SEEK_HOLE);
      if (hole < 0) hole = end;
      const first = Math.floor((data - start) / recordSize);
      const last = Math.min(total, Math.ceil((Math.min(hole, end) - start) / recordSize));
      const prev = runs[runs.length - 1];
      if (prev && prev[1] >= first) prev[1] = Math.max(prev[1], last);
      else runs.push([first, last]);
      at = Math.max(hole, data + 1);
    }
    const candidates = runs.reduce((n, [a, b]) => n + (b - a), 0);
    if (candidates === total) return { total, withData: total, exact: false }; // dense: no hole to look into
    if (candidates * recordSize > readSizeMax) return { total, withData: candidates, exact: false };
    let withData = 0;
    for (const [a, b] of runs) {
      const buf = Buffer.alloc((b - a) * recordSize);
      const n = fs.readSync(fd, buf, 0, buf.length, start + a * recordSize);
      for (let r = 0; r * recordSize < n; r++) {
        const rec = buf.subarray(r * recordSize, Math.min(n, (r + 1) * recordSize));
        if (rec.some((byte) => byte !== 0)) withData++;
      }
    }
    return { total, withData, exact: true };
  } finally {
    fs.closeSync(fd);
  }
}
