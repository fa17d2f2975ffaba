/**
 * The name of a new file is as durable as its content once the file is fsynced (POSIX: fsync of a file does not
 * commit its directory entry, so the volume syncs the directory for it, once; volume.ts `syncNewEntry`).
 *
 * Through the crash device (src/io/crash_device.ts: an entry made through the device factory is undone at a power
 * cut unless its directory was synced): a file created, closed, opened again without `create` (as the daemon opens
 * a file it created earlier in the session), written and fsynced survives a power cut. Entries made by the UFS tree
 * (the daemon's create, mknod, mkdir) use node:fs, which the crash device takes as durable at once, so for them the
 * test records the directory syncs that reach the device factory: one at the first fsync of a file made in this
 * session, none later, and one for a directory fsync (FUSE fsyncdir).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CrashDeviceFactory, SeededRandom } from '../src/io/crash_device.js';
import type { Device, DeviceFactory, DeviceOpenOptions } from '../src/io/device.js';
import { pathText } from '../src/util/path_text.js';
import { Volume } from '../src/volume/volume.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';

const CALLER = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
const S_IFREG = 0o100000;

/** The crash device, with every directory sync recorded (as text) before it is passed on. */
class RecordingDevices implements DeviceFactory {
  readonly crash = new CrashDeviceFactory();
  readonly directorySyncs: string[] = [];
  open(p: string | Buffer, options: DeviceOpenOptions): Promise<Device> {
    return this.crash.open(p, options);
  }
  rename(from: string | Buffer, to: string | Buffer): Promise<void> {
    return this.crash.rename(from, to);
  }
  remove(p: string | Buffer): Promise<void> {
    return this.crash.remove(p);
  }
  mkdir(p: string | Buffer, mode: number): Promise<void> {
    return this.crash.mkdir(p, mode);
  }
  syncDirectory(p: string | Buffer): Promise<void> {
    this.directorySyncs.push(path.resolve(pathText(p)));
    return this.crash.syncDirectory(p);
  }
}

const volumes: TempVolume[] = [];
afterEach(async () => {
  for (const tv of volumes.splice(0)) await tv.cleanup();
});

async function openCrashVolume(): Promise<{ tv: TempVolume; volume: Volume; devices: RecordingDevices; root: string }> {
  const tv = await makeTempVolume({ blockSize: '4k', size: '2M' });
  volumes.push(tv);
  const devices = new RecordingDevices();
  const volume = await Volume.open(tv.parent, { devices });
  return { tv, volume, devices, root: path.join(tv.parent, 'ddfsroot') };
}

function content(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 13 + 5) & 0xff;
  return b;
}

describe('the name of a file made in this session is durable once the file is fsynced', () => {
  it('created, closed, reopened without create, written, fsynced: the file survives a power cut', async () => {
    const { tv, volume, devices, root } = await openCrashVolume();
    const p = path.join(root, 'new');
    const data = content(10_000);
    const created = await volume.openFile(p, { create: true });
    await created.close(); // never fsynced: the create entry is still pending in the crash device
    const f = await volume.openFile(p);
    await f.write(0, data);
    await f.fsync();
    // every entry operation not committed by a directory sync is undone; unsynced data is dropped
    devices.crash.crash(new SeededRandom(1), () => 'none', 'none');
    await f.close().catch(() => undefined);
    await volume.close().catch(() => undefined);
    devices.crash.dispose();
    expect(fs.existsSync(p), 'the fsynced file is still there after the power cut').toBe(true);
    const after = await Volume.open(tv.parent, { readOnly: true });
    try {
      const g = await after.openFile(p, { readOnly: true });
      expect(g.size).toBe(data.length);
      expect((await g.read(0, data.length)).equals(data)).toBe(true);
      await g.close();
    } finally {
      await after.close();
    }
  });

  it('a file made by the tree (create, mknod of a regular file) has its directory synced at its first fsync only', async () => {
    const { volume, devices, root } = await openCrashVolume();
    await volume.tree.mkdir(Buffer.from('d'), 0o755, CALLER);
    const made: Array<[string, () => Promise<unknown>]> = [
      ['d/created', () => volume.tree.createFile(Buffer.from('d/created'), 0o644, CALLER, true)],
      ['d/made-by-mknod', () => volume.tree.mknod(Buffer.from('d/made-by-mknod'), S_IFREG | 0o644, 0, CALLER)],
    ];
    for (const [name, make] of made) {
      devices.directorySyncs.length = 0;
      await make();
      const p = Buffer.from(name);
      const f = await volume.openTreeFile(p); // the daemon opens after the tree made the file
      await f.write(0, content(100));
      await f.fsync();
      expect(devices.directorySyncs, `${name}: first fsync`).toEqual([path.join(root, 'd')]);
      await f.write(100, content(100));
      await f.fsync();
      await f.close();
      const g = await volume.openTreeFile(p);
      await g.write(0, content(50));
      await g.fsync();
      await g.close();
      expect(devices.directorySyncs, `${name}: later fsyncs`).toEqual([path.join(root, 'd')]);
    }
    await volume.close();
    devices.crash.dispose();
  });

  it('a file renamed after it was made has the directory of its new name synced; an old file none', async () => {
    const { volume, devices, root } = await openCrashVolume();
    await volume.tree.mkdir(Buffer.from('e'), 0o755, CALLER);
    await volume.tree.createFile(Buffer.from('old'), 0o644, CALLER, true);
    await volume.syncNewTreeEntry(Buffer.from('old')); // as an fsync would: 'old' is no new entry any more
    await volume.tree.createFile(Buffer.from('moved'), 0o644, CALLER, true);
    await volume.tree.rename(Buffer.from('moved'), Buffer.from('e/moved'));
    devices.directorySyncs.length = 0;
    for (const name of ['old', 'e/moved']) {
      const f = await volume.openTreeFile(Buffer.from(name));
      await f.write(0, content(10));
      await f.fsync();
      await f.close();
    }
    expect(devices.directorySyncs).toEqual([path.join(root, 'e')]);
    await volume.close();
    devices.crash.dispose();
  });

  it('a directory fsync (FUSE fsyncdir) syncs that UFS directory and settles the new entries in it', async () => {
    const { volume, devices, root } = await openCrashVolume();
    await volume.tree.mkdir(Buffer.from('d'), 0o755, CALLER);
    await volume.tree.createFile(Buffer.from('d/f'), 0o644, CALLER, true);
    await volume.tree.createFile(Buffer.from('d/gone'), 0o644, CALLER, true);
    await volume.tree.unlink(Buffer.from('d/gone'));
    devices.directorySyncs.length = 0;
    await volume.syncTreeDirectory(Buffer.from('d'));
    await volume.syncTreeDirectory(Buffer.from('.'));
    expect(devices.directorySyncs).toEqual([path.join(root, 'd'), root]);
    const f = await volume.openTreeFile(Buffer.from('d/f'));
    await f.fsync();
    await f.close();
    expect(devices.directorySyncs, 'd/f needs no sync of its own after the directory fsync').toEqual([path.join(root, 'd'), root]);
    await volume.close();
    devices.crash.dispose();
  });
});
