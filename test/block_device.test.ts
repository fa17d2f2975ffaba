/**
 * Issue 10, "Block devices": a volume whose block file and index are block devices (`mkddumbfs -b /dev/X -i /dev/Y`),
 * end to end on two loop devices this file attaches to sparse images in its temp dir (`losetup -f --show`) and
 * detaches in teardown (`losetup -d`):
 * - mkddumbfs takes the block file size from the device (no -s), writes no ddfsblocks/ddfsidx in the parent, and
 *   refuses a second mkddumbfs on the initialised devices without --overwrite, naming the device;
 * - a mount serves writes and reads, also after a remount, and `-o ro` serves them read-only;
 * - cpddumbfs uploads and downloads; mirrorddumbfs copies the device volume to a replica of regular files;
 * - fsckddumbfs -c, -C, -n, -r and -R pass on the clean volume; a data block overwritten on the device is found by
 *   -C (ERROR, exit 1), and -r marks exactly the file that used it as corrupted (corrupted.txt, cpddumbfs -c).
 * Needs root with /dev/loop-control and losetup; skipped (the title says why) where there are none. The daemon runs
 * in a child process (helpers/mount.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_DIR, mountVolume, sh, unmountAll } from './helpers/mount.js';
import { noiseBytes } from './helpers/bytes.js';

const LOSETUP = '/usr/sbin/losetup';
const skipReason = process.getuid?.() !== 0 ? 'not root'
  : !fs.existsSync('/dev/loop-control') ? '/dev/loop-control is absent'
  : !fs.existsSync(LOSETUP) ? `${LOSETUP} is absent` : null;

const BLOCK_DEVICE_BYTES = 64 * 1024 * 1024;
const INDEX_DEVICE_BYTES = 4 * 1024 * 1024;
const BLOCK_SIZE = 4096;

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);
const tool = (name: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  sh(process.execPath, [bin(name), ...args]);

let work: string;
let parent: string;
let mnt: string;
const devices: string[] = [];
let blockDevice: string;
let indexDevice: string;

/** The files the volume holds (relative to ddfsroot) and their contents. */
const files = new Map<string, Buffer>([
  ['big.bin', noiseBytes(1, 3 * 1024 * 1024 + 123)],
  ['dir/copy-of-big.bin', noiseBytes(1, 3 * 1024 * 1024 + 123)],
  ['dir/small.txt', Buffer.from('a small file on a block device\n')],
  ['zeros.bin', Buffer.alloc(200 * 1024)],
]);

/** Attach a new sparse image of `bytes` to a free loop device. @returns the device path */
async function attachLoop(name: string, bytes: number): Promise<string> {
  const image = path.join(work, name);
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, bytes);
  const r = await sh(LOSETUP, ['-f', '--show', image]);
  expect(r.code, r.stderr).toBe(0);
  const dev = r.stdout.trim();
  devices.push(dev);
  return dev;
}

/** Every file of `files` as the mount serves it equals what was written. */
function expectServed(root: string): void {
  for (const [rel, data] of files) expect(fs.readFileSync(path.join(root, rel)).equals(data), rel).toBe(true);
}

/** cpddumbfs each file of `files` out of the (unmounted) volume in `volumeParent`: equal to what was written. */
async function expectDownloads(volumeParent: string): Promise<void> {
  for (const [rel, data] of files) {
    const out = path.join(work, `out-${rel.replace(/\//g, '_')}`);
    const r = await tool('cpddumbfs', ['-c', path.join(volumeParent, 'ddfsroot', rel), out]);
    expect(r.code, `${rel}: ${r.stderr}`).toBe(0);
    expect(fs.readFileSync(out).equals(data), rel).toBe(true);
    fs.rmSync(out);
  }
}

async function fsck(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return tool('fsckddumbfs', [...args, parent]);
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-blockdev-'));
  parent = path.join(work, 'parent');
  mnt = path.join(work, 'mnt');
  fs.mkdirSync(parent);
  fs.mkdirSync(mnt);
  if (skipReason !== null) return;
  blockDevice = await attachLoop('blocks.img', BLOCK_DEVICE_BYTES);
  indexDevice = await attachLoop('index.img', INDEX_DEVICE_BYTES);
});

afterAll(async () => {
  await unmountAll();
  for (const dev of devices) await sh(LOSETUP, ['-d', dev]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skipReason !== null)(`a volume on block devices (loop devices)${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('mkddumbfs -f -b DEV -i DEV: sized from the device, nothing but ddfs.cfg and ddfsroot in the parent', async () => {
    const r = await tool('mkddumbfs', ['-f', '-b', blockDevice, '-i', indexDevice, '-B', String(BLOCK_SIZE), parent]);
    expect(r.code, r.stderr).toBe(0);
    const cfg = fs.readFileSync(path.join(parent, 'ddfs.cfg'), 'latin1');
    expect(cfg).toContain(`block_filename: ${blockDevice}\n`);
    expect(cfg).toContain(`index_filename: ${indexDevice}\n`);
    expect(cfg).toContain(`partition_size: ${BLOCK_DEVICE_BYTES}\n`);
    expect(cfg).toContain(`block_count: ${BLOCK_DEVICE_BYTES / BLOCK_SIZE}\n`);
    expect(fs.readdirSync(parent).sort()).toEqual(['ddfs.cfg', 'ddfsroot']);
    const head = Buffer.alloc(8);
    const fd = fs.openSync(blockDevice, 'r');
    try {
      fs.readSync(fd, head, 0, 8, 0);
    } finally {
      fs.closeSync(fd);
    }
    expect(head.toString('latin1')).toBe('DDUMBFSB');
    const check = await fsck(['-c']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('a second mkddumbfs on the initialised devices is refused without --overwrite, naming the device', async () => {
    const other = path.join(work, 'other-parent');
    fs.mkdirSync(other);
    const r = await tool('mkddumbfs', ['-f', '-b', blockDevice, '-i', indexDevice, '-B', String(BLOCK_SIZE), other]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(`mkddumbfs: ${other}: already holds a ddumbfs volume (${blockDevice} holds a ddumbfs block file): use --overwrite to erase it\n`);
    expect(fs.readdirSync(other)).toEqual([]);
    fs.rmdirSync(other);
  });

  it('a mount serves what was written, also after a remount; -o ro serves it read-only', async () => {
    let vol = await mountVolume(parent, mnt);
    for (const [rel, data] of files) {
      fs.mkdirSync(path.dirname(path.join(mnt, rel)), { recursive: true });
      fs.writeFileSync(path.join(mnt, rel), data);
    }
    expectServed(mnt);
    const stats = fs.readFileSync(path.join(mnt, '.ddumbfs', 'stats'), 'latin1');
    // the two copies of big.bin share their blocks; the zero file stores none
    const allocated = Number(/^block_allocated +(\d+)$/m.exec(stats)?.[1]);
    expect(allocated).toBeGreaterThanOrEqual(Math.ceil((3 * 1024 * 1024 + 123) / BLOCK_SIZE) + 1);
    expect(allocated).toBeLessThan(2 * Math.ceil((3 * 1024 * 1024) / BLOCK_SIZE));
    await vol.unmount();
    expect(await vol.exited).toBe(0);

    vol = await mountVolume(parent, mnt);
    expectServed(mnt);
    await vol.unmount();
    expect(await vol.exited).toBe(0);

    vol = await mountVolume(parent, mnt, ['ro']);
    expectServed(mnt);
    expect(() => fs.writeFileSync(path.join(mnt, 'new.txt'), 'x')).toThrow(/EROFS/);
    await vol.unmount();
    expect(await vol.exited).toBe(0);
    const check = await fsck(['-c']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('cpddumbfs uploads into and downloads out of the device volume', async () => {
    const upload = noiseBytes(2, 777_777);
    const src = path.join(work, 'upload.bin');
    fs.writeFileSync(src, upload);
    const up = await tool('cpddumbfs', [src, path.join(parent, 'ddfsroot', 'uploaded.bin')]);
    expect(up.code, up.stderr).toBe(0);
    files.set('uploaded.bin', upload);
    await expectDownloads(parent);
  });

  it('mirrorddumbfs copies the device volume to a replica of regular files, which verifies equal', async () => {
    const replica = path.join(work, 'replica');
    fs.mkdirSync(replica);
    const made = await tool('mkddumbfs', ['-s', '64M', '-B', String(BLOCK_SIZE), replica]);
    expect(made.code, made.stderr).toBe(0);
    const bound = await tool('mirrorddumbfs', ['init-slave', '--from', parent, replica]);
    expect(bound.code, bound.stderr).toBe(0);
    const copy = await tool('mirrorddumbfs', ['copy', parent, replica]);
    expect(copy.code, copy.stderr).toBe(0);
    expect(copy.stdout).toMatch(/^mirrorddumbfs: content pass, \d+ files visited, 5 files sent, /);
    const verify = await tool('mirrorddumbfs', ['verify', parent, replica]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    await expectDownloads(replica);
  });

  it('fsckddumbfs -c, -C, -n, -r and -R pass on the clean device volume and keep every file', async () => {
    for (const mode of ['-c', '-C', '-n', '-r', '-R', '-C']) {
      const r = await fsck(['-v', mode]);
      expect(r.code, `${mode}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout + r.stderr, mode).toMatch(/(Filesystem status +: OK|^OK$)/m);
    }
    await expectDownloads(parent);
  });

  it('a data block overwritten on the device: -C finds it (ERROR, exit 1), -r marks only the file using it corrupted', async () => {
    // a file of its own blocks, whose addresses upload -v prints ("BLOCK ADDRESS HASH")
    const victim = noiseBytes(3, 5 * BLOCK_SIZE);
    const src = path.join(work, 'victim.bin');
    fs.writeFileSync(src, victim);
    const up = await tool('cpddumbfs', ['-v', src, path.join(parent, 'ddfsroot', 'victim.bin')]);
    expect(up.code, up.stderr).toBe(0);
    const address = Number(/^\s*2\s+(\d+)\s+[0-9a-f]+/m.exec(up.stdout + up.stderr)?.[1]);
    expect(address, up.stdout + up.stderr).toBeGreaterThan(1);
    const fd = fs.openSync(blockDevice, 'r+');
    try {
      fs.writeSync(fd, noiseBytes(4, BLOCK_SIZE), 0, BLOCK_SIZE, address * BLOCK_SIZE);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }

    const check = await fsck(['-C']);
    expect(check.code, check.stdout + check.stderr).toBe(1);
    expect(check.stdout).toMatch(/^Block errors +: +1 ERR$/m);
    expect(check.stdout).toMatch(/^Filesystem status +: ERROR/m);

    const rebuild = await fsck(['-r']);
    expect(rebuild.code, rebuild.stdout + rebuild.stderr).toBe(0);
    const corrupted = fs.readFileSync(path.join(parent, 'ddfsroot', '.ddumbfs', 'corrupted.txt'), 'latin1');
    expect(corrupted.trim().split('\n').map((l) => path.basename(l.trim().split(/\s+/).pop()!))).toEqual(['victim.bin']);
    const down = await tool('cpddumbfs', ['-c', path.join(parent, 'ddfsroot', 'victim.bin'), path.join(work, 'victim.out')]);
    expect(down.code).not.toBe(0);
    expect(down.stderr).toMatch(/^\s*2\s+1\s+[0-9a-f]+\s+corrupted$/m);
    await expectDownloads(parent);
    const after = await fsck(['-C']);
    expect(after.code, after.stdout + after.stderr).toBe(2);
    expect(after.stdout).toMatch(/^Filesystem status +: WARNING \(files were already corrupted\)/m);
  });
});
