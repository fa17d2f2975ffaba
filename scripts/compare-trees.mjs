#!/usr/bin/env node
// Compare two directory trees file by file: type, mode, owner, mtime (ns), size, content (SHA-1),
// symlink targets and hard-link groups. Used by the main job (scripts/main-job.sh) and the integration tests.
// Usage: compare-trees.mjs SRC DST  — prints a summary, one line per difference, exits 1 when any.
import * as fs from 'node:fs/promises';
import { createHash } from 'node:crypto';
import * as path from 'node:path';

async function sha1(p) {
  const h = createHash('sha1');
  const fh = await fs.open(p, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/**
 * Walk both trees and return { files, dirs, symlinks, others, bytes, hardLinkGroups, differences: string[] }.
 * Directory mtimes are not compared (creating entries changes them during the copy itself).
 */
export async function compareTrees(src, dst, { checkOwner = true, checkAtime = false } = {}) {
  const r = { files: 0, dirs: 0, symlinks: 0, others: 0, bytes: 0, hardLinkGroups: 0, differences: [] };
  const srcLinks = new Map();
  const dstLinks = new Map();
  async function walk(rel) {
    const a = path.join(src, rel);
    const b = path.join(dst, rel);
    const sa = await fs.lstat(a, { bigint: true });
    let sb;
    try {
      sb = await fs.lstat(b, { bigint: true });
    } catch {
      r.differences.push(`missing: ${rel}`);
      return;
    }
    const type = (s) => (s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'other');
    if (type(sa) !== type(sb)) {
      r.differences.push(`type ${type(sa)} != ${type(sb)}: ${rel}`);
      return;
    }
    if (sa.mode !== sb.mode) r.differences.push(`mode ${sa.mode.toString(8)} != ${sb.mode.toString(8)}: ${rel}`);
    if (checkOwner && (sa.uid !== sb.uid || sa.gid !== sb.gid)) r.differences.push(`owner ${sa.uid}:${sa.gid} != ${sb.uid}:${sb.gid}: ${rel}`);
    if (!sa.isDirectory() && sa.mtimeNs !== sb.mtimeNs) r.differences.push(`mtime ${sa.mtimeNs} != ${sb.mtimeNs}: ${rel}`);
    if (checkAtime && !sa.isDirectory() && sa.atimeNs !== sb.atimeNs) r.differences.push(`atime: ${rel}`);
    if (sa.isDirectory()) {
      r.dirs++;
      const na = (await fs.readdir(a)).sort();
      const nb = (await fs.readdir(b)).sort();
      for (const n of nb) if (!na.includes(n)) r.differences.push(`extra: ${path.join(rel, n)}`);
      for (const n of na) await walk(path.join(rel, n));
    } else if (sa.isSymbolicLink()) {
      r.symlinks++;
      const ta = await fs.readlink(a);
      const tb = await fs.readlink(b);
      if (ta !== tb) r.differences.push(`symlink ${ta} != ${tb}: ${rel}`);
    } else if (sa.isFile()) {
      r.files++;
      r.bytes += Number(sa.size);
      if (sa.size !== sb.size) r.differences.push(`size ${sa.size} != ${sb.size}: ${rel}`);
      else if ((await sha1(a)) !== (await sha1(b))) r.differences.push(`content: ${rel}`);
      if (sa.nlink > 1n) {
        const ka = String(sa.ino);
        if (!srcLinks.has(ka)) srcLinks.set(ka, []);
        srcLinks.get(ka).push(rel);
        dstLinks.set(rel, String(sb.ino));
      }
    } else {
      r.others++;
      if (sa.rdev !== sb.rdev) r.differences.push(`rdev: ${rel}`);
    }
  }
  await walk('.');
  for (const group of srcLinks.values()) {
    if (group.length < 2) continue;
    r.hardLinkGroups++;
    const inos = new Set(group.map((g) => dstLinks.get(g)));
    if (inos.size !== 1) r.differences.push(`hard links broken: ${group.join(' ')}`);
  }
  return r;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [src, dst] = process.argv.slice(2);
  if (!src || !dst) {
    console.error('usage: compare-trees.mjs SRC DST');
    process.exit(2);
  }
  const r = await compareTrees(src, dst);
  for (const d of r.differences.slice(0, 50)) console.log(`  DIFF ${d}`);
  console.log(`compared ${r.files} files (${(r.bytes / 1e6).toFixed(1)} MB), ${r.dirs} directories, ${r.symlinks} symlinks, ` +
    `${r.others} special files, ${r.hardLinkGroups} hard-link groups: ${r.differences.length} differences`);
  process.exit(r.differences.length === 0 ? 0 : 1);
}
