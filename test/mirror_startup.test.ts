/**
 * mirrorddumbfs's fixed cost (issue 8 item 3): a subcommand loads only what it needs. The command runs as a child
 * (compiled dist/: run `npx tsc -p tsconfig.json` first) under a module-resolution hook that lists every module it
 * resolves, with stderr a pipe (not a terminal), as in a script, a cron job or the far side of ssh.
 *
 * - `--help` and `--version` load no mirroring module, nor koffi, hash-wasm or ora.
 * - `status` of a master and of a slave loads neither the pass code (copy, pass_master, pass_slave, undo, digest), nor
 *   the volume (volume/volume.js, the store), nor hash-wasm or ora; it still prints the role. A master whose journal
 *   holds records: status counts them without hash-wasm (lengths, ops, TID order); `status --crc` loads it to check
 *   each record's CRC32C, and counts the same.
 * - a local `verify` loads the digests, not the pass code nor the remote-verify channel; ora only for a terminal.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { moduleTracer } from './helpers/module_trace.js';
import { run } from './helpers/run.js';
import { COMMAND_TIMEOUT_MS } from './helpers/timeouts.js';
import { fileDevices } from '../src/io/device.js';
import { Journal } from '../src/mirror/journal.js';
import { mirrorDirectory } from '../src/mirror/state.js';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin/mirrorddumbfs');
const work = mkdtempSync(path.join(tmpdir(), 'mirror-startup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Run mirrorddumbfs under the module-resolution hook: its exit status, stdout and the URLs it resolved. */
const mirrorModules = moduleTracer(work, BIN);

/** The URLs of `urls` that match `re` (expected empty: the names show in the failure). */
const loaded = (urls: string[], re: RegExp): string[] => urls.filter((u) => re.test(u));

const THIRD_PARTY_HEAVY = /\/node_modules\/(ora|koffi|hash-wasm)\//;
const PASS_CODE = /\/dist\/mirror\/(copy|pass_master|pass_slave|pass_volume|undo|digest|digest_cache|verify_remote|channel)\.js$|\/dist\/volume\/volume\.js$|\/dist\/store\//;

async function makeVolume(name: string): Promise<string> {
  const dir = path.join(work, name);
  mkdirSync(dir);
  const r = await run('node', [path.join(ROOT, 'bin/mkddumbfs'), '-s', '16M', '-B', '4k', dir], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

describe('mirrorddumbfs loads only what the subcommand needs', () => {
  it('--help and --version: commander and the command, no mirroring module, no koffi, hash-wasm or ora', async () => {
    for (const args of [['--version'], ['--help'], ['status', '--help']]) {
      const r = await mirrorModules(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.urls.some((u) => u.endsWith('/dist/cli/mirrorddumbfs.js'))).toBe(true); // the hook does see our modules
      expect(loaded(r.urls, /\/dist\/mirror\//)).toEqual([]);
      expect(loaded(r.urls, THIRD_PARTY_HEAVY)).toEqual([]);
    }
  }, 4 * COMMAND_TIMEOUT_MS);

  it('status of a master and of its slave: no pass code, no volume, no hash-wasm or ora; verify: no pass code', async () => {
    const master = await makeVolume('master');
    const slave = await makeVolume('slave');
    const init = await run('node', [BIN, 'init-slave', slave, '--from', master], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
    expect(init.code, init.stderr).toBe(0);
    for (const [vol, role] of [[master, 'master'], [slave, 'slave']] as const) {
      const r = await mirrorModules('status', vol);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`role: ${role}`);
      expect(r.urls.some((u) => u.endsWith('/dist/mirror/status.js'))).toBe(true);
      expect(loaded(r.urls, PASS_CODE)).toEqual([]);
      expect(loaded(r.urls, /\/node_modules\/(ora|hash-wasm)\//)).toEqual([]);
    }
    // records in the master's journal (as its daemon writes them): status counts them without hash-wasm
    const j = await Journal.open(mirrorDirectory(master), { devices: fileDevices });
    for (const n of ['a', 'b', 'c']) await j.append({ op: 'create', path: Buffer.from(n, 'latin1') });
    await j.close();
    const plain = await mirrorModules('status', '--json', master);
    expect(plain.status).toBe(0);
    expect(JSON.parse(plain.stdout).journal).toMatchObject({ durableHead: '3', recordCount: 3, tailBytes: 0 });
    expect(loaded(plain.urls, /\/node_modules\/(ora|hash-wasm)\//)).toEqual([]);
    const crc = await mirrorModules('status', '--json', '--crc', master);
    expect(crc.status).toBe(0);
    expect(JSON.parse(crc.stdout).journal).toEqual(JSON.parse(plain.stdout).journal);
    expect(loaded(crc.urls, /\/node_modules\/hash-wasm\//)).not.toEqual([]);
    const v = await mirrorModules('verify', master, slave);
    expect(v.status).toBe(0);
    expect(v.urls.some((u) => u.endsWith('/dist/mirror/digest.js'))).toBe(true);
    // two local sides: the second is walked by `serve verify` in a child process, over the record channel
    expect(loaded(v.urls, /\/dist\/mirror\/(copy|pass_master|pass_slave|undo)\.js$/)).toEqual([]);
    expect(loaded(v.urls, /\/dist\/mirror\/verify_remote\.js$/)).not.toEqual([]);
    expect(loaded(v.urls, /\/node_modules\/ora\//)).toEqual([]);
  }, 8 * COMMAND_TIMEOUT_MS);
});
