/** mirrorddumbfs stream (spec §4.10): a local stream picks up changes of an offline master between passes and stops on SIGTERM. */
import { spawn } from 'node:child_process';
import { afterAll, expect, it } from 'vitest';
import * as path from 'node:path';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { waitFor } from './helpers/mount.js';
import { withVolume, writeUfsFile } from './helpers/ufs_tree.js';
import { run } from './helpers/run.js';
import { seededBlocks } from './helpers/bytes.js';
import { readStreamState } from '../src/mirror/stream_state.js';

const BIN = path.join(path.resolve(__dirname, '..'), 'bin/mirrorddumbfs');
const volumes: TempVolume[] = [];
afterAll(async () => { for (const v of volumes) await v.cleanup(); });

async function volume(): Promise<string> {
  const v = await makeTempVolume({ blockSize: 4096, size: '16M' });
  volumes.push(v);
  return v.parent;
}

it('streams passes until SIGTERM, then exits 0 with state stopped', async () => {
  const master = await volume();
  const slave = await volume();
  await withVolume(master, async (v) => writeUfsFile(v, 'a', seededBlocks('a', 2, 4096)));
  expect((await run('node', [BIN, 'init-slave', slave, '--from', master], { timeoutMs: 180_000 })).code).toBe(0);
  const child = spawn('node', [BIN, 'stream', '-i', '0.2', '--backoff', '0.2', master, slave], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  try {
    await waitFor(() => (readStreamState(slave)?.passCount ?? 0) >= 1, 120_000);
    const verify1 = await run('node', [BIN, 'verify', master, slave], { timeoutMs: 180_000 });
    expect(verify1.code).toBe(0);
    const before = readStreamState(slave)!.passCount;
    expect(readStreamState(slave)!.pid).toBe(child.pid);
    expect(before).toBeGreaterThanOrEqual(1);
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  expect(readStreamState(slave)!.connection).toBe('stopped');
  const st = await run('node', [BIN, 'status', slave, '--json'], { timeoutMs: 60_000 });
  expect(JSON.parse(st.stdout.toString()).stream.connection).toBe('stopped');
}, 300_000);
