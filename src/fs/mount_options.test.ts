import { describe, expect, it } from 'vitest';
import { DdfsError } from '../errors.js';
import { FUSE_DEFAULT_OPTIONS, escapeOptionValue, libfuseOptions, parseMountOptions, splitOptionList, writerCount } from './mount_options.js';

describe('parseMountOptions', () => {
  it('takes out ddumbfs keys and keeps the rest for libfuse, in order', () => {
    const o = parseMountOptions(['parent=/l0/ddumbfs,pool=3,nodio', 'reclaim=90,check,allow_root,attr_timeout=0', 'noexec']);
    expect(o).toMatchObject({ parent: '/l0/ddumbfs', pool: 3, directIo: false, reclaimPercent: 90, check: true, fuseDefault: true });
    expect(o.fuseOptions).toEqual(['allow_root', 'attr_timeout=0', 'noexec']);
  });

  it('defaults (spec §8.1)', () => {
    const o = parseMountOptions([]);
    expect(o).toMatchObject({ parent: null, pool: -100, lockIndex: true, directIo: null, reclaimPercent: 95, check: false, readOnly: false });
  });

  it('attr_cache is on by default; noattr_cache turns it off, the last one wins; neither goes to libfuse', () => {
    expect(parseMountOptions([])).toMatchObject({ attrCache: true });
    expect(parseMountOptions(['noattr_cache'])).toMatchObject({ attrCache: false, fuseOptions: [] });
    expect(parseMountOptions(['noattr_cache,attr_cache'])).toMatchObject({ attrCache: true, fuseOptions: [] });
  });

  it('ro is the read-only mode (mount.ts flags the mount ro itself), rw undoes it; neither goes to libfuse as given', () => {
    expect(parseMountOptions(['parent=p,ro'])).toMatchObject({ readOnly: true, fuseOptions: [] });
    expect(parseMountOptions(['ro', 'rw'])).toMatchObject({ readOnly: false, fuseOptions: [] });
    expect(parseMountOptions(['rw,ro,allow_root'])).toMatchObject({ readOnly: true, fuseOptions: ['allow_root'] });
  });

  it('mount(8) and fstab(5) options are accepted and dropped, never given to libfuse (issue 10 mount helper)', () => {
    // what mount(8) and mount.fuse pass for an fstab line "P M fuse.ddumbfs defaults,_netdev,noauto,nofail,pool=3 0 0"
    const o = parseMountOptions(['rw,pool=3,nofail,dev,suid']);
    expect(o).toMatchObject({ pool: 3, readOnly: false, fuseOptions: ['dev', 'suid'] });
    const all = parseMountOptions(['defaults,_netdev,noauto,auto,user,nouser,users,owner,group,nofail,x-systemd.automount,x-systemd.device-timeout=10,X-mount.mkdir,comment=systemd.automount,allow_root']);
    expect(all.fuseOptions).toEqual(['allow_root']);
    expect(all).toMatchObject({ parent: null, readOnly: false, pool: -100 });
  });

  it('later options win; nofuse_default, nolock_index, dio', () => {
    const o = parseMountOptions(['parent=a,parent=b,lock_index,nolock_index,dio,nofuse_default']);
    expect(o).toMatchObject({ parent: 'b', lockIndex: false, directIo: true, fuseDefault: false });
  });

  it('rejects bad values with USAGE', () => {
    for (const bad of ['pool=x', 'reclaim=101', 'reclaim=', 'parent=', 'pool']) {
      expect(() => parseMountOptions([bad])).toThrow(DdfsError);
      try {
        parseMountOptions([bad]);
      } catch (err) {
        expect((err as DdfsError).code).toBe('USAGE');
      }
    }
  });

  it('backslash escapes a comma (libfuse rule) and escapeOptionValue round-trips', () => {
    expect(splitOptionList('a\\,b,c,,d')).toEqual(['a\\,b', 'c', 'd']);
    const dir = '/srv/odd,name\\x';
    expect(parseMountOptions([`parent=${escapeOptionValue(dir)},noexec`])).toMatchObject({ parent: dir, fuseOptions: ['noexec'] });
  });

  it('writerCount: N<0 is -N% of the CPUs, at least 1', () => {
    expect(writerCount(-100, 8)).toBe(8);
    expect(writerCount(-50, 3)).toBe(1);
    expect(writerCount(-10, 2)).toBe(1);
    expect(writerCount(0, 8)).toBe(0);
    expect(writerCount(5, 8)).toBe(5);
  });

  it('libfuse options: the kernel caches names and missing names, not attributes; none on a mirror slave; the user wins', () => {
    const served = { mirrorSlave: false, servedReadOnly: false, parentDir: '/v' };
    const last = (list: string[], key: string): string | undefined => list.filter((o) => o.startsWith(`${key}=`)).at(-1);
    const plain = libfuseOptions(parseMountOptions(['parent=/v']), served);
    expect(plain.slice(0, FUSE_DEFAULT_OPTIONS.length)).toEqual([...FUSE_DEFAULT_OPTIONS]);
    for (const key of ['entry_timeout', 'negative_timeout']) expect(last(plain, key)).toBe(`${key}=1`);
    expect(last(plain, 'attr_timeout')).toBe('attr_timeout=0');
    expect(plain.slice(-2)).toEqual(['subtype=ddumbfs', 'fsname=/v']);
    const slave = libfuseOptions(parseMountOptions(['parent=/v']), { ...served, mirrorSlave: true, servedReadOnly: true });
    for (const key of ['attr_timeout', 'entry_timeout', 'negative_timeout']) expect(last(slave, key)).toBe(`${key}=0`);
    expect(slave).toContain('ro');
    const user = libfuseOptions(parseMountOptions(['parent=/v,entry_timeout=0']), served);
    expect(last(user, 'entry_timeout')).toBe('entry_timeout=0');
    expect(libfuseOptions(parseMountOptions(['parent=/v,nofuse_default']), served)).toEqual(['subtype=ddumbfs', 'fsname=/v']);
  });
});
