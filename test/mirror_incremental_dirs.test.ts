/**
 * Directories in an incremental pass (mirroring spec §4.6 step 4), through a mounted master (its journal names what
 * changed):
 * - a directory whose only records are metadata changes (chmod, chown, utimens, xattr: what cp -a does to each
 *   directory after filling it) is visited like a directory on the way (its DIR, and no DIRLIST: its entries did not
 *   change), not digested and queried entry by entry (a directory of 18k entries cost a stream pass 8-12 s);
 * - the DIR record of a directory on the way carries its extended attributes (the slave makes a directory's
 *   attributes exactly those of its DIR: without them it removed them).
 * Both sides of each copy in process (copyLocal); the master's daemon serves its side.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeTreeAccess } from '../src/cli/mirrorddumbfs.js';
import { copyLocal, initSlave } from '../src/mirror/copy.js';
import { getXattr, listXattrs } from '../src/io/xattr.js';
import { mountVolume, unmountAll } from './helpers/mount.js';
import { runOk } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { mkdirUfs, ufsAbs, verifyInProcess, withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { seededBlocks } from './helpers/bytes.js';

const BS = 4096;
const ENTRIES = 200;
const volumes: TempVolume[] = [];
const mounts: string[] = [];

afterAll(async () => {
  await unmountAll();
  for (const v of volumes) await v.cleanup();
  for (const m of mounts) fs.rmSync(m, { recursive: true, force: true });
});

/** A master holding big/ (ENTRIES one-block files) and small/f, a slave bound to it, the master mounted. */
async function mountedPair(): Promise<{ master: string; slave: string; mnt: string; unmount: () => Promise<void> }> {
  const master = await makeTempVolume({ blockSize: BS, size: '16M' });
  const slave = await makeTempVolume({ blockSize: BS, size: '16M' });
  volumes.push(master, slave);
  mkdirUfs(master.parent, 'big');
  mkdirUfs(master.parent, 'small');
  await withVolume(master.parent, async (v) => {
    for (let k = 0; k < ENTRIES; k++) await writeUfsFile(v, `big/f${String(k).padStart(3, '0')}`, seededBlocks(`b${k}`, 1, BS));
    await writeUfsFile(v, 'small/f', seededBlocks('s', 1, BS));
  });
  await initSlave(slave.parent, master.parent);
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mirror-dirs-'));
  mounts.push(mnt);
  const m = await mountVolume(master.parent, mnt);
  // a journal record before the first copy: its claim then has a TID, so the next pass can be incremental
  fs.writeFileSync(path.join(mnt, 'small', 'seed'), seededBlocks('seed', 1, BS));
  return { master: master.parent, slave: slave.parent, mnt, unmount: () => m.unmount() };
}

const copy = async (m: string, s: string) => (await copyLocal(m, s, { access: nodeTreeAccess })).master;

/** The attribute names and values of UFS object `rel` of `parent`, sorted: `name=value` (hex). */
function attrs(parent: string, rel: string): string[] {
  const p = ufsAbs(parent, rel);
  return listXattrs(p).map((n) => `${n.toString('latin1')}=${getXattr(p, n).toString('hex')}`).sort();
}

const modeOf = (parent: string, rel: string): number => fs.lstatSync(ufsAbs(parent, rel)).mode & 0o7777;

describe('directories in an incremental pass', () => {
  it('a directory only chmod/utimens/setfattr-ed is visited as a directory on the way: none of its entries is visited or listed, its meta arrives', async () => {
    const { master, slave, mnt, unmount } = await mountedPair();
    try {
      await copy(master, slave); // the first pass after the mount (no seal): a content pass
      fs.chmodSync(path.join(mnt, 'big'), 0o750);
      fs.utimesSync(path.join(mnt, 'big'), new Date(1_000_000_000_000), new Date(1_000_000_000_000));
      await runOk('setfattr', ['-n', 'user.dir', '-v', 'on-big', path.join(mnt, 'big')]);
      fs.chmodSync(mnt, 0o711); // the root too
      const s = await copy(master, slave);
      expect(s.contentReason).toBeNull();
      expect(s.passKind).toBe('incremental');
      expect(s.filesVisited).toBe(0); // was ENTRIES: the whole directory digested and queried
      expect(s.directoriesNamed).toBe(2); // the root and big/: no entry of either changed, neither is listed
      expect(s.filesSent).toBe(0);
      expect(modeOf(slave, 'big')).toBe(0o750);
      expect(modeOf(slave, '')).toBe(0o711);
      expect(attrs(slave, 'big')).toEqual(attrs(master, 'big'));
      expect(attrs(slave, 'big').some((a) => a.startsWith('user.dir='))).toBe(true);
      expect((await verifyInProcess(master, slave)).lines).toEqual([]);

      // a meta change and a new entry in the same range: only the new entry is visited and sent
      fs.chmodSync(path.join(mnt, 'big'), 0o755);
      fs.writeFileSync(path.join(mnt, 'big', 'new'), seededBlocks('n', 1, BS));
      fs.rmSync(path.join(mnt, 'big', 'f007'));
      const t = await copy(master, slave);
      expect(t.passKind).toBe('incremental');
      expect(t.filesVisited).toBe(1);
      expect(t.filesSent).toBe(1);
      expect(modeOf(slave, 'big')).toBe(0o755);
      expect(fs.existsSync(ufsAbs(slave, 'big/f007'))).toBe(false);
      expect(t.divergenceAlarms).toBe(0);
      expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    } finally {
      await unmount();
    }
  }, 180_000);

  it('a change inside a directory with extended attributes keeps them on the replica (its DIR on the way carries them)', async () => {
    const { master, slave, mnt, unmount } = await mountedPair();
    try {
      await runOk('setfattr', ['-n', 'user.keep', '-v', 'me', path.join(mnt, 'small')]);
      await copy(master, slave);
      expect(attrs(slave, 'small').some((a) => a.startsWith('user.keep='))).toBe(true);
      fs.writeFileSync(path.join(mnt, 'small', 'g'), seededBlocks('g', 1, BS)); // small/ is only on the way
      const s = await copy(master, slave);
      expect(s.passKind).toBe('incremental');
      expect(s.filesSent).toBe(1);
      expect(attrs(slave, 'small')).toEqual(attrs(master, 'small'));
      expect((await verifyInProcess(master, slave)).lines).toEqual([]);
    } finally {
      await unmount();
    }
  }, 180_000);
});
