/**
 * Issue 10's "Done when", as a sysadmin would do it after the README's install step:
 *
 *   sh scripts/install.sh PREFIX=…                     (a temporary PREFIX and SBINDIR; PATH gets PREFIX/bin)
 *   mkddumbfs -s 1G -B 4k PARENT
 *   echo 'PARENT MNT fuse.ddumbfs defaults,_netdev 0 0' >> fstab;  mount MNT       (mount -T FSTAB MNT)
 *   rsync -aHAX /usr/share/doc/ MNT/doc/              (a copy of it, with user.* xattrs, ACLs and a hard link added)
 *   diff -r, getfattr -d -R -m -, getfacl -R           (the source and the mount compare equal)
 *   statddumbfs --json MNT                             (every documented field, consistent with the tree copied)
 *   umount MNT
 *
 * mount(8) runs in a private mount namespace (helpers/mount_namespace.ts) where the installed mount.fuse.ddumbfs is
 * bind-mounted over /sbin/mount.fuse (mount(8) tries /sbin/mount.fuse.ddumbfs, then /sbin/mount.fuse with the same
 * argv, and runs helpers without PATH): nothing is installed or mounted outside the test's temp dir and namespace.
 * Needs dist/, root, /dev/fuse, rsync, attr and acl (scripts/setup.sh installs them). One long test: its limit is
 * only a hang detector, sized for a machine many times slower than an idle one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR, waitFor } from './helpers/mount.js';
import { daemonsOf, openMountNamespace, type MountNamespace } from './helpers/mount_namespace.js';
import { run } from './helpers/run.js';
import { validateJson, type JsonSchema } from './helpers/json_schema.js';
import { EXIT_TIMEOUT_MS } from './helpers/timeouts.js';

const DOC = '/usr/share/doc';
/** The copy, the compare and the checks read ~150 MB through FUSE: minutes on an idle machine at worst. */
const LONG_COMMAND_MS = 30 * 60_000;
const WALKTHROUGH_TIMEOUT_MS = 90 * 60_000;

let work: string;
let prefix: string;
let sbin: string;
let parent: string;
let mnt: string;
let src: string;
let env: NodeJS.ProcessEnv;
let ns: MountNamespace | null = null;

/** Run a command line with sh, PATH starting with the installed PREFIX/bin, outside the namespace. */
async function shell(line: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('sh', ['-c', line], { encoding: 'utf8', env, timeoutMs: LONG_COMMAND_MS });
}

/** Run a command line with sh inside the namespace, with the same PATH. */
async function shellIn(line: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return ns!.run('sh', ['-c', line], { env, timeoutMs: LONG_COMMAND_MS });
}

const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/**
 * Records of `getfattr -d` / `getfacl` output ("# file: NAME" then lines, records separated by blank lines) keyed
 * by NAME, so two trees compare whatever order their directories list entries in.
 */
function recordsByFile(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const record of text.split(/\n\s*\n/)) {
    const lines = record.split('\n').filter((l) => l !== '');
    if (lines.length === 0) continue;
    const head = /^# file: (.*)$/.exec(lines[0]!);
    expect(head, record).not.toBeNull();
    m.set(head![1]!, lines.slice(1).join('\n'));
  }
  return m;
}

/** Regular files (each path, as statddumbfs counts them) and the sum of their sizes under `dir`. */
function regularFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      const sub = regularFiles(full);
      files += sub.files;
      bytes += sub.bytes;
    } else if (e.isFile()) {
      files += 1;
      bytes += fs.lstatSync(full).size;
    }
  }
  return { files, bytes };
}

/** The first `count` regular files under `dir` in sorted path order (stable across runs). */
function someFiles(dir: string, count: number): string[] {
  const out: string[] = [];
  const visit = (d: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      if (out.length >= count) return;
      const full = path.join(d, name);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) visit(full);
      else if (st.isFile()) out.push(full);
    }
  };
  visit(dir);
  return out;
}

/** The JSON fields of statddumbfs(8) and their types. */
const STAT_FIELDS: Record<string, string[]> = {
  parent: ['string'], mounted: ['boolean'], mount_point: ['string', 'null'], needs_fsck: ['boolean'],
  block_size: ['number'], block_count: ['number'], blocks_used: ['number'], blocks_free: ['number'], files: ['number'],
  logical_bytes: ['number'], stored_bytes: ['number'], dedup_ratio: ['number', 'null'], corrupted_files: ['number'],
  hash: ['string'], blocks_reclaimable: ['number', 'null'], last_checkpoint: ['string', 'null'], last_fsck: ['object', 'null'],
};
const STAT_SCHEMA = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'contrib', 'schema', 'statddumbfs.schema.json'), 'utf8')) as JsonSchema;

/** statddumbfs --json output: one line, every documented field with its type, and numbers that agree. */
function validStats(stdout: string): Record<string, unknown> {
  expect(stdout.endsWith('\n') && stdout.indexOf('\n') === stdout.length - 1, stdout).toBe(true);
  const s = JSON.parse(stdout) as Record<string, unknown>;
  expect(Object.keys(s).sort()).toEqual(Object.keys(STAT_FIELDS).sort());
  for (const [k, types] of Object.entries(STAT_FIELDS)) expect(types, `${k}: ${JSON.stringify(s[k])}`).toContain(s[k] === null ? 'null' : typeof s[k]);
  expect(validateJson(STAT_SCHEMA, s)).toEqual([]);
  const n = (k: string): number => s[k] as number;
  expect(n('block_size')).toBe(4096);
  expect(n('blocks_used') + n('blocks_free')).toBe(n('block_count'));
  expect(n('stored_bytes')).toBe(n('blocks_used') * n('block_size'));
  expect(n('logical_bytes')).toBeGreaterThanOrEqual(n('stored_bytes'));
  expect(s.dedup_ratio as number).toBeCloseTo(n('logical_bytes') / n('stored_bytes'), 9);
  expect(s.hash).toBe('TIGER');
  expect(s.parent).toBe(parent);
  expect(n('corrupted_files')).toBe(0);
  return s;
}

beforeAll(() => {
  if (!fs.existsSync(path.join(REPO_DIR, 'dist', 'cli', 'ddumbfs.js'))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-walkthrough-'));
  prefix = path.join(work, 'prefix');
  sbin = path.join(work, 'sbin');
  parent = path.join(work, 'l0', 'ddumbfs');
  mnt = path.join(work, 'backup');
  src = path.join(work, 'src', 'doc');
  fs.mkdirSync(parent, { recursive: true });
  fs.mkdirSync(mnt);
  fs.mkdirSync(path.dirname(src));
  env = { ...process.env, PATH: `${path.join(prefix, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` };
});

afterAll(async () => {
  if (ns) await ns.close([mnt]);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('the sysadmin walkthrough of issue 10 (install, fstab mount, rsync -aHAX, statddumbfs --json, umount)', () => {
  it(`install, mkddumbfs, mount MNT from fstab, rsync -aHAX of ${DOC} with xattrs and ACLs, statddumbfs --json, umount`, { timeout: WALKTHROUGH_TIMEOUT_MS }, async () => {
    // the README's install step, into a temporary PREFIX and SBINDIR
    const install = await run('sh', [path.join(REPO_DIR, 'scripts', 'install.sh'), `PREFIX=${prefix}`, `SBINDIR=${sbin}`], { encoding: 'utf8', cwd: os.tmpdir() });
    expect(install.code, install.stderr).toBe(0);
    const which = await shell('for c in mkddumbfs statddumbfs ddumbfs; do command -v "$c"; done');
    expect(which.stdout.split('\n').filter(Boolean)).toEqual(['mkddumbfs', 'statddumbfs', 'ddumbfs'].map((c) => path.join(prefix, 'bin', c)));

    const made = await shell(`mkddumbfs -s 1G -B 4k ${q(parent)}`);
    expect(made.code, made.stderr).toBe(0);

    // the source: a copy of /usr/share/doc with user.* xattrs, ACLs (access and default) and a hard link added
    const cp = await shell(`cp -a ${q(DOC)} ${q(src)}`);
    expect(cp.code, cp.stderr).toBe(0);
    const marked = someFiles(src, 4);
    expect(marked).toHaveLength(4);
    const [withXattrs, withAcl, withBoth, linked] = marked as [string, string, string, string];
    const dirWithAcl = path.dirname(withAcl);
    const attrs = [
      `setfattr -n user.backup.note -v ${q('kept by rsync -X')} ${q(withXattrs)}`,
      `setfattr -n user.binary -v 0x00ff10fe ${q(withXattrs)}`,
      `setfattr -n user.empty ${q(withXattrs)}`,
      `setfacl -m u:65534:r--,g:65534:rw- ${q(withAcl)}`,
      `setfacl -m u:65534:rwx -d -m u:65534:r-x ${q(dirWithAcl)}`,
      `setfattr -n user.both -v yes ${q(withBoth)} && setfacl -m u:65534:rw- ${q(withBoth)}`,
      `ln ${q(linked)} ${q(`${linked}.hardlink`)}`,
    ];
    for (const line of attrs) {
      const r = await shell(line);
      expect(r.code, `${line}: ${r.stderr}`).toBe(0);
    }
    const expected = regularFiles(src);

    // fstab and mount(8), in the namespace, through the installed helper
    ns = await openMountNamespace();
    const bind = await ns.run('mount', ['--bind', path.join(sbin, 'mount.fuse.ddumbfs'), '/sbin/mount.fuse']);
    expect(bind.code, bind.stderr).toBe(0);
    const fstab = path.join(work, 'fstab');
    fs.writeFileSync(fstab, `# the README's line\n${parent} ${mnt} fuse.ddumbfs defaults,_netdev 0 0\n`);
    const mounted = await ns.run('mount', ['-T', fstab, mnt]);
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(ns.mountAt(mnt)?.type).toBe('fuse.ddumbfs');

    const target = path.join(mnt, 'doc');
    const rsync = await shellIn(`rsync -aHAX ${q(`${src}/`)} ${q(`${target}/`)}`);
    expect(rsync.stderr).toBe('');
    expect(rsync.code).toBe(0);

    // contents (symlinks compared as links: /usr/share/doc has dangling ones)
    const diff = await shellIn(`diff -r --no-dereference ${q(src)} ${q(target)}`);
    expect(diff.stdout + diff.stderr).toBe('');
    expect(diff.code).toBe(0);
    // every extended attribute (user.* and the ACLs' system.posix_acl_*), file by file
    const xattrsOf = async (dir: string): Promise<Map<string, string>> => {
      const r = await shellIn(`cd ${q(dir)} && getfattr -h -d -R -m - .`);
      expect(r.code, r.stderr).toBe(0);
      return recordsByFile(r.stdout);
    };
    const srcXattrs = await xattrsOf(src);
    const rel = (p: string): string => path.relative(src, p); // as getfattr and getfacl name them under "."
    expect(srcXattrs.get(rel(withXattrs))).toContain('user.backup.note="kept by rsync -X"');
    expect(srcXattrs.get(rel(withXattrs))).toContain('user.binary=0sAP8Q/g==');
    expect(srcXattrs.get(rel(withAcl))).toContain('system.posix_acl_access=');
    expect(srcXattrs.get(rel(dirWithAcl))).toContain('system.posix_acl_default=');
    expect(await xattrsOf(target)).toEqual(srcXattrs);
    // ACLs as getfacl shows them
    const aclsOf = async (dir: string): Promise<Map<string, string>> => {
      const r = await shellIn(`cd ${q(dir)} && getfacl -n -R .`);
      expect(r.code, r.stderr).toBe(0);
      return recordsByFile(r.stdout);
    };
    const srcAcls = await aclsOf(src);
    expect(srcAcls.get(rel(withAcl))).toContain('user:65534:r--');
    expect(srcAcls.get(rel(dirWithAcl))).toContain("default:user:65534:r-x");
    expect(await aclsOf(target)).toEqual(srcAcls);
    // the hard link is one inode with two names
    const links = await shellIn(`stat -c '%i %h' ${q(path.join(target, path.relative(src, linked)))} ${q(path.join(target, `${path.relative(src, linked)}.hardlink`))}`);
    const [a, b] = links.stdout.trim().split('\n');
    expect(a).toBe(b);
    expect(a!.split(' ')[1]).toBe('2');

    // statddumbfs --json on the mount, then on the parent once unmounted
    const live = await shellIn(`statddumbfs --json ${q(mnt)}`);
    expect(live.code, live.stderr).toBe(0);
    const s = validStats(live.stdout);
    expect(s.mounted).toBe(true);
    expect(s.mount_point).toBe(mnt);
    expect(s.files).toBe(expected.files);
    expect(s.logical_bytes).toBe(expected.bytes);

    const umount = await ns.run('umount', [mnt]);
    expect(umount.stderr).toBe('');
    expect(umount.code).toBe(0);
    expect(ns.mountAt(mnt)).toBeNull();
    expect(await waitFor(() => daemonsOf(mnt).length === 0, EXIT_TIMEOUT_MS)).toBe(true);

    const offline = await shell(`statddumbfs --json ${q(parent)}`);
    expect(offline.code, offline.stderr).toBe(0);
    const o = validStats(offline.stdout);
    expect(o.mounted).toBe(false);
    expect(o.mount_point).toBeNull();
    expect(o.needs_fsck).toBe(false);
    for (const k of ['files', 'logical_bytes', 'blocks_used', 'blocks_free', 'block_count']) expect(o[k], k).toEqual(s[k]);
    const check = await shell(`fsckddumbfs -c ${q(parent)}`);
    expect(check.code, check.stdout + check.stderr).toBe(0);

    const uninstall = await run('sh', [path.join(REPO_DIR, 'scripts', 'install.sh'), '--uninstall', `PREFIX=${prefix}`, `SBINDIR=${sbin}`], { encoding: 'utf8', cwd: os.tmpdir() });
    expect(uninstall.code, uninstall.stderr).toBe(0);
  });
});
