/**
 * A ddfs.cfg whose geometry lies (issue 6 §3, "Inconsistent geometry in ddfs.cfg is accepted and repairs then
 * destroy files"): the fuzz cases that damaged files on main — `block_size` changed to another power of two, or
 * `block_count` changed to 2, every other key unchanged — and a few other single-key edits and real-size
 * mismatches. Every tool must refuse with a one-line error naming the key, and no file of the parent may change
 * (path, size, content hash, mtime), whatever the mode: fsckddumbfs -c -C -n -N -r -R, a mount with `.autofsck`
 * present (the startup repair), cpddumbfs in both directions, alterddumbfs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { openVolumeForUpload, uploadFile } from '../src/copy/upload.js';
import { SeededRandom } from '../src/io/crash_device.js';
import { REPO_DIR, makeVolume, sh } from './helpers/mount.js';
import { snapshotTree } from './helpers/snapshot.js';

const bin = (name: string): string => path.join(REPO_DIR, 'bin', name);

let work: string;
let template: string;
let counter = 0;
const FILE_COUNT = 24;

async function freshVolume(): Promise<string> {
  const dir = path.join(work, `vol${counter++}`);
  const r = await sh('cp', ['-a', template, dir]);
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

async function editCfg(parent: string, key: string, value: string | number): Promise<void> {
  const f = path.join(parent, 'ddfs.cfg');
  const text = await fsp.readFile(f, 'utf8');
  const re = new RegExp(`^${key}:.*$`, 'm');
  expect(text).toMatch(re);
  await fsp.writeFile(f, text.replace(re, `${key}: ${value}`));
}

async function cfgValue(parent: string, key: string): Promise<number> {
  const text = await fsp.readFile(path.join(parent, 'ddfs.cfg'), 'utf8');
  const m = new RegExp(`^${key}: *(\\S+)$`, 'm').exec(text);
  return Number(m![1]);
}

interface Run {
  what: string;
  code: number;
  stderr: string;
}

/** Every offline tool that writes (or could write) to the volume, each on the damaged parent. */
async function runOfflineTools(parent: string): Promise<Run[]> {
  const runs: Run[] = [];
  const add = async (what: string, cmd: string, args: string[]): Promise<void> => {
    const r = await sh(process.execPath, [bin(cmd), ...args], { timeoutMs: 60_000 });
    runs.push({ what, code: r.code, stderr: r.stderr });
  };
  for (const mode of ['-c', '-C', '-n', '-N', '-r', '-R']) await add(`fsckddumbfs ${mode}`, 'fsckddumbfs', [mode, parent]);
  await add('cpddumbfs download', 'cpddumbfs', [path.join(parent, 'ddfsroot', 'f0.bin'), path.join(work, `out${counter++}.bin`)]);
  await add('cpddumbfs upload', 'cpddumbfs', [path.join(work, 'src.bin'), path.join(parent, 'ddfsroot', 'new.bin')]);
  await add('alterddumbfs -i 1', 'alterddumbfs', ['-n', '1', '-i', '1', parent]);
  return runs;
}

/** A mount; with `.autofsck` present (after a crash) the startup repair would run before serving. */
async function mount(parent: string, what: string): Promise<Run> {
  const mnt = path.join(work, `mnt${counter++}`);
  await fsp.mkdir(mnt);
  const r = await sh(process.execPath, [bin('ddumbfs'), mnt, '-o', `parent=${parent}`, '-f'], { timeoutMs: 60_000 });
  return { what, code: r.code, stderr: r.stderr };
}

function expectRefused(runs: Run[], key: string): void {
  for (const r of runs) {
    expect(r.code, `${r.what}: ${r.stderr}`).toBe(1);
    expect(r.stderr, r.what).not.toMatch(/\n\s+at /);
    const lines = r.stderr.trim().split('\n').filter((l) => l.includes(`'${key}'`));
    expect(lines.length, `${r.what} names '${key}': ${r.stderr}`).toBeGreaterThanOrEqual(1);
  }
}

describe('a cfg that lies about the geometry is refused by every tool, and nothing is modified', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(os.tmpdir(), 'ddfs-cfg-'));
    template = path.join(work, 'template');
    await fsp.mkdir(template);
    await makeVolume(template, { blockSize: '4k', size: '8M' });
    const rng = new SeededRandom(6);
    const volume = await openVolumeForUpload(template);
    try {
      for (let i = 0; i < FILE_COUNT; i++) {
        const data = Buffer.alloc(1 + rng.int(40_000));
        for (let k = 0; k < data.length; k++) data[k] = rng.int(256);
        let pos = 0;
        await uploadFile(volume, async (buf, off, len) => {
          const n = Math.min(len, data.length - pos);
          data.copy(buf, off, pos, pos + n);
          pos += n;
          return n;
        }, path.join(template, 'ddfsroot', `f${i}.bin`));
      }
    } finally {
      await volume.close();
    }
    await fsp.writeFile(path.join(work, 'src.bin'), Buffer.alloc(10000, 7));
  });

  afterAll(async () => {
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  const fuzz: Array<{ name: string; key: string; damage: (p: string) => Promise<void> }> = [
    ...[512, 2048, 8192, 2 * 1024 * 1024].map((bs) => ({
      name: `block_size ${bs}`, key: 'block_count', damage: (p: string) => editCfg(p, 'block_size', bs),
    })),
    { name: 'block_count 2', key: 'block_count', damage: (p: string) => editCfg(p, 'block_count', 2) },
    // the cfg is consistent in itself, but does not describe the real files
    { name: 'index file longer than index_size', key: 'index_size', damage: (p: string) => fsp.truncate(path.join(p, 'ddfsidx'), 4 * 1024 * 1024) },
    { name: 'block file longer than block_count blocks', key: 'block_count', damage: (p: string) => fsp.truncate(path.join(p, 'ddfsblocks'), 9 * 1024 * 1024) },
  ];
  for (const c of fuzz) {
    it(`${c.name}: every tool refuses naming '${c.key}', every file unchanged`, async () => {
      const parent = await freshVolume();
      await c.damage(parent);
      let before = await snapshotTree(parent);
      expectRefused([...await runOfflineTools(parent), await mount(parent, 'ddumbfs')], c.key);
      expect(await snapshotTree(parent)).toEqual(before);
      await fsp.writeFile(path.join(parent, '.autofsck'), '');
      before = await snapshotTree(parent);
      expectRefused([await mount(parent, 'ddumbfs (with .autofsck: startup repair)')], c.key);
      expect(await snapshotTree(parent)).toEqual(before);
    }, 600_000);
  }

  const singleKey: Array<{ name: string; key: string; damage: (p: string) => Promise<void> }> = [
    { name: 'partition_size doubled', key: 'block_count', damage: async (p) => editCfg(p, 'partition_size', 2 * (await cfgValue(p, 'partition_size'))) },
    { name: 'addr_size 3', key: 'addr_size', damage: (p) => editCfg(p, 'addr_size', 3) },
    { name: 'node_size + 1', key: 'node_size', damage: async (p) => editCfg(p, 'node_size', 1 + (await cfgValue(p, 'node_size'))) },
    { name: 'node_count - 1', key: 'node_count', damage: async (p) => editCfg(p, 'node_count', (await cfgValue(p, 'node_count')) - 1) },
    { name: 'node_block_count + 1', key: 'node_block_count', damage: async (p) => editCfg(p, 'node_block_count', 1 + (await cfgValue(p, 'node_block_count'))) },
    { name: 'node_overflow 2.00', key: 'node_block_count', damage: (p) => editCfg(p, 'node_overflow', '2.00') },
    { name: 'freeblock_offset 4096', key: 'node_offset', damage: (p) => editCfg(p, 'freeblock_offset', 4096) },
    { name: 'freeblock_size + 8', key: 'freeblock_size', damage: async (p) => editCfg(p, 'freeblock_size', 8 + (await cfgValue(p, 'freeblock_size'))) },
    { name: 'node_offset + 65536', key: 'node_offset', damage: async (p) => editCfg(p, 'node_offset', 65536 + (await cfgValue(p, 'node_offset'))) },
    { name: 'index_size + 4096', key: 'index_size', damage: async (p) => editCfg(p, 'index_size', 4096 + (await cfgValue(p, 'index_size'))) },
    { name: 'index_block_count + 1', key: 'index_block_count', damage: async (p) => editCfg(p, 'index_block_count', 1 + (await cfgValue(p, 'index_block_count'))) },
    { name: 'index_block_size 2048', key: 'index_block_size', damage: (p) => editCfg(p, 'index_block_size', 2048) },
  ];
  for (const c of singleKey) {
    it(`${c.name}: fsckddumbfs -n and -r refuse naming '${c.key}', every file unchanged`, async () => {
      const parent = await freshVolume();
      await c.damage(parent);
      const before = await snapshotTree(parent);
      const runs: Run[] = [];
      for (const mode of ['-n', '-r']) {
        const r = await sh(process.execPath, [bin('fsckddumbfs'), mode, parent], { timeoutMs: 60_000 });
        runs.push({ what: `fsckddumbfs ${mode}`, code: r.code, stderr: r.stderr });
      }
      expectRefused(runs, c.key);
      expect(await snapshotTree(parent)).toEqual(before);
    }, 300_000);
  }

  it('the untouched template passes fsckddumbfs -c (the edits above are what is refused)', async () => {
    const parent = await freshVolume();
    const r = await sh(process.execPath, [bin('fsckddumbfs'), '-c', parent]);
    expect(r.code, r.stderr).toBe(0);
  });
});
