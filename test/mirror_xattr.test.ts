/**
 * The mirror ships extended attributes and POSIX ACLs (issue 10 "Data a backup must keep", mirroring spec §4.11):
 * the master reads them from its UFS objects into each record's meta, the slave makes its objects hold exactly
 * them, and entry digests cover them, so verify reports `DIFF p xattr` and the next pass sends an entry whose only
 * change is an attribute. Reserved names (user.ddumbfs.*) are neither shipped nor digested.
 * Both sides in process (copyLocal), as test/mirror_pass.test.ts; the last case through a mounted master (its
 * journal names the path a setxattr changed).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { getXattr, listXattrs, removeXattr, setXattr } from '../src/io/xattr.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { runOk } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, symlinkUfs, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const BS = 4096;
const volumes: TempVolume[] = [];
const b = (s: string): Buffer => Buffer.from(s, 'latin1');

async function pair(): Promise<{ master: string; slave: string }> {
  const master = await makeTempVolume({ blockSize: BS, size: '8M' });
  const slave = await makeTempVolume({ blockSize: BS, size: '8M' });
  volumes.push(master, slave);
  await initSlave(slave.parent, master.parent);
  return { master: master.parent, slave: slave.parent };
}

const copy = (m: string, s: string) => copyLocal(m, s, { access: nodeTreeAccess });

/** The attribute names and values of UFS object `rel` of `parent`, sorted: `name=value` (hex). */
function attrs(parent: string, rel: string): string[] {
  const p = ufsAbs(parent, rel);
  return listXattrs(p).map((n) => `${n.toString('latin1')}=${getXattr(p, n).toString('hex')}`).sort();
}

afterAll(async () => {
  await unmountAll();
  for (const v of volumes) await v.cleanup();
});

describe('mirror of extended attributes', () => {
  it('a copy carries user.*, trusted.* and ACLs of files, directories and symlinks; verify is empty', async () => {
    const { master, slave } = await pair();
    mkdirUfs(master, 'd');
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'd/f', seededBlocks('f', 2, BS));
      await writeUfsFile(v, 'plain', seededBlocks('p', 1, BS));
    });
    symlinkUfs(master, 'd/f', 'l');
    setXattr(ufsAbs(master, 'd/f'), b('user.color'), b('blue'));
    setXattr(ufsAbs(master, 'd/f'), Buffer.concat([b('user.'), Buffer.from([0xff, 0x80])]), Buffer.alloc(3000, 7));
    setXattr(ufsAbs(master, 'd'), b('user.dir'), Buffer.alloc(0));
    setXattr(ufsAbs(master, 'l'), b('trusted.link'), b('on-the-link'));
    setXattr(ufsAbs(master, 'd/f'), b('user.ddumbfs.private'), b('not shipped'));
    await runOk('setfacl', ['-m', 'u:nobody:rw', ufsAbs(master, 'd/f').toString()]);
    await runOk('setfacl', ['-d', '-m', 'g:nogroup:rx', ufsAbs(master, 'd').toString()]);

    await copy(master, slave);
    const masterF = attrs(master, 'd/f').filter((a) => !a.startsWith('user.ddumbfs.'));
    expect(masterF.some((a) => a.startsWith('system.posix_acl_access='))).toBe(true);
    expect(attrs(slave, 'd/f')).toEqual(masterF);
    expect(attrs(slave, 'd')).toEqual(attrs(master, 'd'));
    expect(attrs(slave, 'l')).toEqual(['trusted.link=' + b('on-the-link').toString('hex')]);
    expect(attrs(slave, 'plain')).toEqual([]);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('an attribute-only change: verify reports DIFF xattr, the next pass sends it, removals arrive too', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'f', seededBlocks('g', 1, BS));
      await writeUfsFile(v, 'g', seededBlocks('h', 1, BS));
    });
    setXattr(ufsAbs(master, 'g'), b('user.gone'), b('1'));
    await copy(master, slave);
    expect(attrs(slave, 'g')).toEqual(['user.gone=31']);

    setXattr(ufsAbs(master, 'f'), b('user.new'), b('v2'));
    removeXattr(ufsAbs(master, 'g'), b('user.gone'));
    expect((await verifyInProcess(master, slave)).lines).toEqual(['DIFF "/f" xattr', 'DIFF "/g" xattr']);
    // a reserved name changes nothing of a digest
    setXattr(ufsAbs(master, 'f'), b('user.ddumbfs.x'), b('1'));
    const { master: sum } = await copy(master, slave);
    expect(sum.blocksSent).toBe(0);
    expect(attrs(slave, 'f')).toEqual(['user.new=' + b('v2').toString('hex')]);
    expect(attrs(slave, 'g')).toEqual([]);
    expect((await verifyInProcess(master, slave)).lines).toEqual([]);
  });

  it('through a mounted master: setfattr and setfacl on the mount are journaled and the next pass ships them', async () => {
    const { master, slave } = await pair();
    await withVolume(master, async (v) => {
      await writeUfsFile(v, 'f', seededBlocks('m', 1, BS));
    });
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-xattr-'));
    const m = await mountVolume(master, mnt);
    try {
      await copy(master, slave);
      await runOk('setfattr', ['-n', 'user.via', '-v', 'mount', path.join(mnt, 'f')]);
      await runOk('setfacl', ['-m', 'u:nobody:r', path.join(mnt, 'f')]);
      const { master: sum } = await copy(master, slave);
      expect(sum.blocksSent).toBe(0);
      expect(attrs(slave, 'f')).toEqual(attrs(master, 'f'));
      expect(attrs(slave, 'f').some((a) => a.startsWith('user.via='))).toBe(true);
      expect(attrs(slave, 'f').some((a) => a.startsWith('system.posix_acl_access='))).toBe(true);
      expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    } finally {
      await m.unmount();
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  }, 120_000);
});
