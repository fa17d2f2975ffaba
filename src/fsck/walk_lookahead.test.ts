/**
 * fsck's file walk with look-ahead (context.ts walkUfsFiles): every regular file is prefetched before the caller
 * visits it, the caller sees the files in the walker's order, and a walk error reaches `onError` only when the caller
 * has seen every file before it (the reports keep their order although the walk ran ahead).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileDevices, type DeviceFactory } from '../io/device.js';
import { FSCK_WALK_LOOKAHEAD_FILES } from '../limits.js';
import { openWalkedUfsFile, walkUfsFiles, type FsckVolume } from './context.js';

const DIRS = 12;
const FILES_PER_DIR = 10;
let tmp = '';
afterEach(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = '';
});

function makeTree(): string {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fsck-walk-'));
  const root = path.join(tmp, 'ddfsroot');
  for (let d = 0; d < DIRS; d++) {
    fs.mkdirSync(path.join(root, `d${String(d).padStart(2, '0')}`), { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) fs.writeFileSync(path.join(root, `d${String(d).padStart(2, '0')}`, `f${f}`), 'x');
  }
  fs.symlinkSync('d00/f0', path.join(root, 'link'));
  return root;
}

describe('walkUfsFiles look-ahead', () => {
  it('prefetches each file before the caller gets it, in walk order, symlinks neither prefetched nor yielded', async () => {
    expect(DIRS * FILES_PER_DIR).toBeGreaterThan(FSCK_WALK_LOOKAHEAD_FILES);
    const root = makeTree();
    const prefetched: string[] = [];
    const devices: DeviceFactory = { ...fileDevices, prefetch: (p) => void prefetched.push(p.toString()) };
    const seen: string[] = [];
    for await (const p of walkUfsFiles({ rootDir: root, devices } as FsckVolume, () => 'skip')) {
      expect(prefetched).toContain(p.toString());
      seen.push(p.toString());
    }
    const want: string[] = [];
    for (let d = 0; d < DIRS; d++) for (let f = 0; f < FILES_PER_DIR; f++) want.push(path.join(root, `d${String(d).padStart(2, '0')}`, `f${f}`));
    expect(seen).toEqual(want);
    expect(prefetched).toEqual(want);
  });

  it('hands a walk error to onError after the files before it and before the files after it', async () => {
    const root = makeTree();
    const gone = path.join(root, 'd07');
    let seen = 0;
    const events: string[] = [];
    // the directory vanishes once the walk has started (it is listed in the root but cannot be read)
    const devices: DeviceFactory = { ...fileDevices, prefetch: () => fs.rmSync(gone, { recursive: true, force: true }) };
    const onError = (p: Buffer): 'skip' => {
      events.push(`error ${p.toString()} after ${seen}`);
      return 'skip';
    };
    for await (const p of walkUfsFiles({ rootDir: root, devices } as FsckVolume, onError)) {
      seen++;
      expect(p.toString().startsWith(gone + '/')).toBe(false);
    }
    expect(events).toEqual([`error ${gone} after ${7 * FILES_PER_DIR}`]);
    expect(seen).toBe((DIRS - 1) * FILES_PER_DIR);
  });

  it("the file system's prefetch is only a hint: a missing file, a symlink or a directory throw nothing", () => {
    const root = makeTree();
    for (const p of ['missing', 'link', 'd00']) expect(() => fileDevices.prefetch!(Buffer.from(path.join(root, p)), 4096)).not.toThrow();
    fileDevices.prefetch!(path.join(root, 'd00', 'f0'), 4096);
    expect(fs.readFileSync(path.join(root, 'd00', 'f0'), 'latin1')).toBe('x');
  });

  it('an onError that throws aborts the walk there', async () => {
    const root = makeTree();
    const gone = path.join(root, 'd03');
    const devices: DeviceFactory = { ...fileDevices, prefetch: () => fs.rmSync(gone, { recursive: true, force: true }) };
    let seen = 0;
    const walk = async (): Promise<void> => {
      for await (const _p of walkUfsFiles({ rootDir: root, devices } as FsckVolume, () => { throw new Error('abort'); })) seen++;
    };
    await expect(walk()).rejects.toThrow('abort');
    expect(seen).toBe(3 * FILES_PER_DIR);
  });

  it('on the real file system each file is read through the descriptor its prefetch opened, and the ones not taken are closed', async () => {
    const root = makeTree();
    const fds = (): number => fs.readdirSync('/proc/self/fd').length;
    const v = { rootDir: root, devices: fileDevices, cfg: { nodeSize: 27 } } as unknown as FsckVolume;
    const before = fds();
    let n = 0;
    for await (const p of walkUfsFiles(v, () => 'skip')) {
      // while the walk runs ahead, it holds the files it prefetched open
      if (n === 0) expect(fds()).toBeGreaterThanOrEqual(before + FSCK_WALK_LOOKAHEAD_FILES);
      n++;
      if (n % 2 === 0) continue; // not taken: closed by the walk
      const f = await openWalkedUfsFile(v, p);
      expect(f.length).toBe(1);
      await f.close();
    }
    expect(n).toBe(DIRS * FILES_PER_DIR);
    expect(fds()).toBe(before);
    // a walk left early closes every file it opened ahead
    for await (const p of walkUfsFiles(v, () => 'skip')) {
      expect(p.length).toBeGreaterThan(0);
      break;
    }
    expect(fds()).toBe(before);
  });
});

