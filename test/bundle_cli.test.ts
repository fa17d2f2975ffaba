/**
 * The bundled commands (scripts/build-bundle.mjs, issue 9): one file per command in dist/bundle, which the bin/ shims
 * run. The bundles are built here into a temporary tree that holds bin/, package.json, node_modules (a link to this
 * checkout's) and dist/bundle but no dist/cli, so a shim can only run its bundle. Needs dist/ (the bundles are made
 * from the tsc output: run `npx tsc -p tsconfig.json` first).
 *
 * - every command of package.json answers `--version` from its bundle (the line, exit 0, nothing on stderr), without
 *   loading koffi or hash-wasm, which stay outside the bundles;
 * - a volume is made, filled with a file of more blocks than HASH_WORKER_MIN_BLOCKS, re-hashed by fsckddumbfs -C on
 *   the bundled hash worker (one thread per CPU), checked by -c and read back equal, then given a slave whose
 *   status (and the master's) the split mirrorddumbfs bundle reports, all through the bundled shims;
 * - the bundled census worker answers the same census as treeCensus;
 * - a shim whose bundle is older than its dist/cli entry (a tsc run after the bundling) runs dist/cli.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { treeCensus, type CensusReply } from '../src/io/journal_dir.js';
import { HASH_WORKER_MIN_BLOCKS } from '../src/store/hash_pool.js';
import { moduleTracer } from './helpers/module_trace.js';
import { REPO_DIR } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { COMMAND_TIMEOUT_MS } from './helpers/timeouts.js';

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> };
const commands = Object.keys(pkg.bin).sort();
const work = fs.mkdtempSync(path.join(tmpdir(), 'bundle-cli-'));
const tree = path.join(work, 'tree');
const bin = (name: string): string => path.join(tree, 'bin', name);

/** Run a command of the bundled tree: exit status, stdout, stderr. */
async function cmd(name: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('node', [bin(name), ...args], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS, env: { ...process.env, DDUMBFS_NO_BUNDLE: '' } });
}

beforeAll(async () => {
  fs.mkdirSync(tree);
  await fsp.cp(path.join(REPO_DIR, 'bin'), path.join(tree, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(REPO_DIR, 'package.json'), path.join(tree, 'package.json'));
  fs.symlinkSync(path.join(REPO_DIR, 'node_modules'), path.join(tree, 'node_modules'));
  const b = await run('node', [path.join(REPO_DIR, 'scripts', 'build-bundle.mjs'), '--outdir', path.join(tree, 'dist', 'bundle')], { encoding: 'utf8', timeoutMs: COMMAND_TIMEOUT_MS });
  expect(b.code, b.stderr).toBe(0);
  expect(fs.existsSync(path.join(tree, 'dist', 'cli'))).toBe(false);
}, COMMAND_TIMEOUT_MS);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('the bundled commands (dist/bundle) through the bin/ shims', () => {
  it('every command answers --version from its bundle, without koffi or hash-wasm', async () => {
    expect(commands.length).toBeGreaterThanOrEqual(11);
    for (const name of commands) {
      const traced = moduleTracer(work, bin(name), { bundle: true });
      const r = await traced('--version');
      expect(r.status, name).toBe(0);
      expect(r.stdout, name).toBe(`${name} (ddumbfs-ts) ${pkg.version}, ddumbfs 1.1 compatible\n`);
      expect(r.urls, name).toContain(`file://${path.join(tree, 'dist', 'bundle', `${name}.js`)}`);
      expect(r.urls.filter((u) => /\/dist\/(?!bundle\/)|\/node_modules\/(koffi|hash-wasm|commander)\//.test(u)), name).toEqual([]);
      const plain = await cmd(name, ['--version']);
      expect(plain.stderr, name).toBe('');
    }
  }, commands.length * 2 * COMMAND_TIMEOUT_MS);

  it('mkddumbfs, cpddumbfs in and out, fsckddumbfs -C on the bundled hash worker and -c', async () => {
    const parent = path.join(work, 'vol');
    fs.mkdirSync(parent);
    const mk = await cmd('mkddumbfs', ['-s', '64M', '-B', '4k', parent]);
    expect(mk.code, mk.stderr).toBe(0);
    const src = path.join(work, 'src.bin');
    const data = randomBytes((HASH_WORKER_MIN_BLOCKS + 300) * 4096 + 123);
    fs.writeFileSync(src, data);
    const up = await cmd('cpddumbfs', [src, path.join(parent, 'ddfsroot', 'f')]);
    expect(up.code, up.stderr).toBe(0);

    const rehash = await cmd('fsckddumbfs', ['-C', parent]);
    expect(rehash.code, rehash.stdout + rehash.stderr).toBe(0);
    // one thread per CPU only when the worker script is found beside the bundle (else 1: hashed inline)
    expect(rehash.stdout + rehash.stderr).toContain(`started ${availableParallelism()} hashing thread(s)`);

    const check = await cmd('fsckddumbfs', ['-c', parent]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('== Summary');

    const out = path.join(work, 'out.bin');
    const down = await cmd('cpddumbfs', [path.join(parent, 'ddfsroot', 'f'), out]);
    expect(down.code, down.stderr).toBe(0);
    expect(fs.readFileSync(out).equals(data)).toBe(true);

    // mirrorddumbfs is split (its lazily imported chunks beside it): init-slave and status load several of them
    const slave = path.join(work, 'slave');
    fs.mkdirSync(slave);
    const mkSlave = await cmd('mkddumbfs', ['-s', '64M', '-B', '4k', slave]);
    expect(mkSlave.code, mkSlave.stderr).toBe(0);
    const init = await cmd('mirrorddumbfs', ['init-slave', slave, '--from', parent]);
    expect(init.code, init.stdout + init.stderr).toBe(0);
    for (const [vol, role] of [[parent, 'master'], [slave, 'slave']] as const) {
      const st = await cmd('mirrorddumbfs', ['status', vol]);
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toContain(`role: ${role}`);
    }
  }, 10 * COMMAND_TIMEOUT_MS);

  it('the bundled census worker answers the census treeCensus takes', async () => {
    const root = path.join(work, 'census');
    fs.mkdirSync(path.join(root, 'd', 'e'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a'), 'a');
    fs.writeFileSync(path.join(root, 'd', 'b'), 'b');
    fs.writeFileSync(path.join(root, 'skipped'), 's');
    const rootBytes = Buffer.from(root, 'latin1');
    const want = treeCensus(rootBytes, 8, new Set(['skipped']));
    const ask = (stopFlag: Int32Array): Promise<CensusReply[]> => new Promise<CensusReply[]>((resolve, reject) => {
      const messages: CensusReply[] = [];
      const w = new Worker(path.join(tree, 'dist', 'bundle', 'census_worker.js'), {
        workerData: { root: new Uint8Array(rootBytes), depthMax: 8, skipTopNames: ['skipped'], stopFlag },
      });
      // first { loaded: true } (its native calls are bound: the next census thread may start), then the census
      w.on('message', (m: CensusReply) => {
        messages.push(m);
        if (!('loaded' in m)) resolve(messages);
      });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`census worker exited ${code} before answering`)));
    });
    const messages = await ask(new Int32Array(new SharedArrayBuffer(4)));
    const reply = messages[1];
    expect(messages[0]).toEqual({ loaded: true });
    expect(reply).toEqual({ entryCount: want.entryCount, ctimeMaxNs: want.ctimeMaxNs.toString() });
    expect(want.entryCount).toBeGreaterThanOrEqual(4);
    // its stop flag set: it answers that it stopped, and ends by itself
    const stopFlag = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(stopFlag, 0, 1);
    const stopped = await ask(stopFlag);
    expect(stopped[1]).toMatchObject({ error: expect.stringMatching(/stopped/) });
  }, COMMAND_TIMEOUT_MS);

  it('a bundle older than its dist/cli entry is not run: the shim runs dist/cli', async () => {
    const stale = path.join(work, 'stale');
    fs.mkdirSync(path.join(stale, 'dist', 'cli'), { recursive: true });
    fs.mkdirSync(path.join(stale, 'dist', 'bundle'), { recursive: true });
    fs.mkdirSync(path.join(stale, 'bin'));
    fs.copyFileSync(path.join(REPO_DIR, 'bin', 'statddumbfs'), path.join(stale, 'bin', 'statddumbfs'));
    fs.writeFileSync(path.join(stale, 'package.json'), '{ "type": "module" }\n');
    /** A stand-in command that prints which file ran. */
    const mainPrinting = (text: string): string => `export async function main() { process.stdout.write(${JSON.stringify(text)}); return 0; }\n`;
    fs.writeFileSync(path.join(stale, 'dist', 'bundle', 'statddumbfs.js'), mainPrinting('bundle\n'));
    fs.writeFileSync(path.join(stale, 'dist', 'cli', 'statddumbfs.js'), mainPrinting('cli\n'));
    const at = (rel: string, s: number): void => fs.utimesSync(path.join(stale, rel), s, s);
    const shim = path.join(stale, 'bin', 'statddumbfs');
    const env = { ...process.env, DDUMBFS_NO_BUNDLE: '' };
    at('dist/cli/statddumbfs.js', 1000);
    at('dist/bundle/statddumbfs.js', 2000);
    expect((await run('node', [shim], { encoding: 'utf8', env })).stdout).toBe('bundle\n');
    at('dist/cli/statddumbfs.js', 3000); // tsc ran after the bundling
    expect((await run('node', [shim], { encoding: 'utf8', env })).stdout).toBe('cli\n');
    at('dist/cli/statddumbfs.js', 1000);
    expect((await run('node', [shim], { encoding: 'utf8', env: { ...process.env, DDUMBFS_NO_BUNDLE: '1' } })).stdout).toBe('cli\n');
  }, COMMAND_TIMEOUT_MS);
});
