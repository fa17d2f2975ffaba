/**
 * scripts/install.sh (issue 10 "install like any filesystem"): an install into a temporary PREFIX and SBINDIR puts
 * every command of package.json on PREFIX/bin (a wrapper naming the node found at install time), the man pages where
 * man(1) finds them (PREFIX/share/man/man5, man8) and the mount helper in SBINDIR; the installed commands run from
 * a minimal environment (mount(8) and systemd give helpers no PATH); an install over an install replaces it; the
 * uninstall leaves nothing. A DESTDIR install stages the same tree under DESTDIR, naming PREFIX. Needs dist/.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR } from './helpers/mount.js';
import { run } from './helpers/run.js';

const INSTALL = path.join(REPO_DIR, 'scripts', 'install.sh');
const pkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
const commands = Object.keys(pkg.bin).sort();
const manPages = fs.readdirSync(path.join(REPO_DIR, 'man')).sort();

let work: string;

/** Every path under `dir`, relative, sorted (directories too). */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

async function install(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('sh', [INSTALL, ...args], { encoding: 'utf8', cwd: os.tmpdir() });
}

describe('scripts/install.sh', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-install-'));
  });
  afterAll(async () => {
    await fsp.rm(work, { recursive: true, force: true });
  });

  it('installs commands, man pages and the mount helper into PREFIX and SBINDIR; uninstall leaves nothing', async () => {
    const root = path.join(work, 'plain');
    const prefix = path.join(root, 'prefix');
    const sbin = path.join(root, 'sbin');
    const vars = [`PREFIX=${prefix}`, `SBINDIR=${sbin}`];
    const r = await install(vars);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`ddumbfs-ts ${pkg.version} installed`);

    expect(fs.readdirSync(path.join(prefix, 'bin')).sort()).toEqual(commands);
    const node = fs.realpathSync(process.execPath);
    for (const name of commands) {
      const wrapper = path.join(prefix, 'bin', name);
      expect(fs.statSync(wrapper).mode & 0o777, name).toBe(0o755);
      const text = fs.readFileSync(wrapper, 'utf8');
      expect(text.startsWith('#!/bin/sh\n'), name).toBe(true);
      expect(text, name).toContain(`'${path.join(prefix, 'lib', 'ddumbfs-ts', 'bin', name)}' "$@"`);
      // the node named is an absolute path to the node found at install time
      const named = /exec '([^']+)'/.exec(text)?.[1] ?? '';
      expect(path.isAbsolute(named), name).toBe(true);
      expect(fs.realpathSync(named), name).toBe(node);
      // runs from an empty environment, as mount(8) and systemd run it
      const v = await run(wrapper, ['--version'], { encoding: 'utf8', env: {}, cwd: '/' });
      expect(v.stderr, name).toBe('');
      expect(v.code, name).toBe(0);
      expect(v.stdout, name).toBe(`${name} (ddumbfs-ts) ${pkg.version}, ddumbfs 1.1 compatible\n`);
    }
    expect(fs.readdirSync(path.join(prefix, 'share', 'man', 'man8')).sort()).toEqual(manPages.filter((p) => p.endsWith('.8')));
    expect(fs.readdirSync(path.join(prefix, 'share', 'man', 'man5')).sort()).toEqual(manPages.filter((p) => p.endsWith('.5')));
    expect(fs.readFileSync(path.join(prefix, 'share', 'man', 'man8', 'ddumbfs.8')).equals(fs.readFileSync(path.join(REPO_DIR, 'man', 'ddumbfs.8')))).toBe(true);
    // man(1) finds `man ddumbfs` there (section 8 before 5)
    const m = await run('man', ['-M', path.join(prefix, 'share', 'man'), '-w', 'ddumbfs'], { encoding: 'utf8' });
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout.trim()).toBe(path.join(prefix, 'share', 'man', 'man8', 'ddumbfs.8'));

    const helper = path.join(sbin, 'mount.fuse.ddumbfs');
    expect(fs.statSync(helper).mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(helper, 'utf8')).toContain(`ddumbfs='${path.join(prefix, 'bin', 'ddumbfs')}'`);
    // no dev tool is carried: only the run-time dependencies
    const modules = fs.readdirSync(path.join(prefix, 'lib', 'ddumbfs-ts', 'node_modules'));
    expect(modules).toContain('fuse-native');
    expect(modules).toContain('commander');
    expect(modules).not.toContain('vitest');
    expect(modules).not.toContain('typescript');

    // an install over an install replaces it
    const again = await install(vars);
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readdirSync(path.join(prefix, 'bin')).sort()).toEqual(commands);

    const u = await install(['--uninstall', ...vars]);
    expect(u.stderr).toBe('');
    expect(u.code).toBe(0);
    expect(tree(root)).toEqual([]);
    // a second uninstall finds nothing to remove and says so
    const u2 = await install(['--uninstall', ...vars]);
    expect(u2.code).toBe(1);
    expect(u2.stderr).toContain('no install found');
  });

  it('DESTDIR stages the tree naming PREFIX; uninstall with the same DESTDIR removes it; a directory it did not create stays', async () => {
    const dest = path.join(work, 'stage');
    await fsp.mkdir(path.join(dest, 'usr', 'share', 'man', 'man8'), { recursive: true });
    await fsp.writeFile(path.join(dest, 'usr', 'share', 'man', 'man8', 'other.8'), 'not ours\n');
    const vars = [`DESTDIR=${dest}`, 'PREFIX=/usr', 'SBINDIR=/sbin'];
    const r = await install(vars);
    expect(r.code, r.stderr).toBe(0);
    for (const name of commands) {
      const text = fs.readFileSync(path.join(dest, 'usr', 'bin', name), 'utf8');
      expect(text, name).toContain(`'/usr/lib/ddumbfs-ts/bin/${name}' "$@"`);
      expect(text, name).not.toContain(dest);
    }
    expect(fs.readFileSync(path.join(dest, 'sbin', 'mount.fuse.ddumbfs'), 'utf8')).toContain("ddumbfs='/usr/bin/ddumbfs'");
    expect(fs.existsSync(path.join(dest, 'usr', 'share', 'man', 'man8', 'mkddumbfs.8'))).toBe(true);
    expect(fs.existsSync(path.join(dest, 'usr', 'share', 'man', 'man5', 'ddumbfs.5'))).toBe(true);
    // the staged program runs in place through its shim
    const v = await run(process.execPath, [path.join(dest, 'usr', 'lib', 'ddumbfs-ts', 'bin', 'mkddumbfs'), '--version'], { encoding: 'utf8' });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toBe(`mkddumbfs (ddumbfs-ts) ${pkg.version}, ddumbfs 1.1 compatible\n`);

    const u = await install(['--uninstall', ...vars]);
    expect(u.code, u.stderr).toBe(0);
    expect(tree(dest)).toEqual(['usr', path.join('usr', 'share'), path.join('usr', 'share', 'man'), path.join('usr', 'share', 'man', 'man8'), path.join('usr', 'share', 'man', 'man8', 'other.8')]);
  });

  it('refuses a relative PREFIX and an unknown argument', async () => {
    const r = await install(['PREFIX=relative/dir', `SBINDIR=${path.join(work, 'x')}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('must be absolute');
    const u = await install(['--frobnicate']);
    expect(u.code).toBe(1);
    expect(u.stderr).toContain("unknown argument '--frobnicate'");
    expect(tree(path.join(work, 'x'))).toEqual([]);
  });
});
