/**
 * A file whose name is not UTF-8 (`bad\xff\xfename`, created directly in ddfsroot through a Buffer path, with a
 * valid node list of stored blocks) is a file like any other for the offline tools (issue 6 §2):
 * - `fsckddumbfs -c` sees it (it is counted, no ENOENT) and calls the volume OK;
 * - `-n` does not abort and keeps its blocks (the file reads back byte for byte, a later -c is OK);
 * - `-r` and `-R` keep it readable;
 * - cpddumbfs downloads it (the raw name given on the command line) byte for byte.
 * Before the seam, the tools decoded names as UTF-8 (U+FFFD), so the name no longer reached the file.
 *
 * Commands run from dist/ (`npx tsc -p tsconfig.json` first). Raw name bytes reach argv through printf in sh
 * (child_process would encode a JS string as UTF-8).
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UfsFile } from '../src/ufs/ufs_file.js';
import { Volume } from '../src/volume/volume.js';
import { run } from './helpers/run.js';
import { makeTempVolume, type TempVolume } from './helpers/temp_volume.js';
import { lcgBytes } from './helpers/bytes.js';

const ROOT = path.resolve(__dirname, '..');
const BAD_NAME = Buffer.from('bad\xff\xfename', 'latin1');
/** The name as sh printf octal escapes. */
const BAD_NAME_PRINTF = 'bad\\377\\376name';

beforeAll(() => {
  for (const cli of ['fsckddumbfs', 'cpddumbfs']) {
    if (!existsSync(path.join(ROOT, `dist/cli/${cli}.js`))) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  }
});

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const BAD_CONTENT = lcgBytes(5 * 4096 + 123, 7);
const GOOD_CONTENT = lcgBytes(3 * 4096, 8);

let tv: TempVolume | null = null;
afterEach(async () => {
  await tv?.cleanup();
  tv = null;
});

/** A volume holding `good` and the non-UTF-8 file (its blocks referenced by no other file). */
async function volumeWithBadName(): Promise<{ parent: string; badPath: Buffer }> {
  tv = await makeTempVolume({ blockSize: 4096, size: '4M' });
  const vol = await Volume.open(tv.parent);
  try {
    for (const [name, data] of [['good', GOOD_CONTENT], ['victim', BAD_CONTENT]] as const) {
      const f = await vol.openFile(path.join(vol.rootDir, name), { create: true, mode: 0o644 });
      await f.write(0, data);
      await f.close();
    }
  } finally {
    await vol.close();
  }
  const badPath = Buffer.concat([Buffer.from(path.join(tv.parent, 'ddfsroot') + '/'), BAD_NAME]);
  renameSync(path.join(tv.parent, 'ddfsroot', 'victim'), badPath);
  return { parent: tv.parent, badPath };
}

/**
 * Run a command in sh (so raw bytes can be spelled with printf); stdout and stderr as bytes. Asynchronous
 * (helpers/run.ts): a blocked worker fails vitest's RPC.
 */
async function sh(script: string): Promise<{ status: number; stdout: Buffer; stderr: Buffer }> {
  const r = await run('sh', ['-c', script], { cwd: ROOT, timeoutMs: 120_000 });
  return { status: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function fsck(mode: string, parent: string): Promise<{ status: number; out: string }> {
  const r = await sh(`exec node bin/fsckddumbfs ${mode} '${parent}'`);
  return { status: r.status, out: `${r.stdout.toString('latin1')}\n${r.stderr.toString('latin1')}` };
}

/** Content of the file at byte path `p`, read through the volume. */
async function readThroughVolume(parent: string, p: Buffer): Promise<Buffer> {
  const vol = await Volume.open(parent, { readOnly: true });
  try {
    const f = await UfsFile.open(vol.store, p, { readOnly: true });
    try {
      return await f.read(0, f.size);
    } finally {
      await f.close();
    }
  } finally {
    await vol.close();
  }
}

describe('a file whose name is not UTF-8', () => {
  it('fsckddumbfs -c sees it (2 files, no ENOENT) and calls the volume OK', async () => {
    const { parent } = await volumeWithBadName();
    const r = await fsck('-c', parent);
    expect(r.out).not.toMatch(/ENOENT|no such file/i);
    expect(r.out).toMatch(/== Read 2 files/);
    expect(r.out).not.toMatch(/in index & not in files\s*:\s*[1-9]/);
    expect(r.status, r.out).toBe(0);
  });

  for (const mode of ['-n', '-N', '-r', '-R']) {
    it(`fsckddumbfs ${mode} does not abort and keeps the file readable, byte for byte`, async () => {
      const { parent, badPath } = await volumeWithBadName();
      const r = await fsck(mode, parent);
      expect(r.status, r.out).toBe(0);
      expect(md5(await readThroughVolume(parent, badPath))).toBe(md5(BAD_CONTENT));
      expect(md5(await readThroughVolume(parent, Buffer.from(path.join(parent, 'ddfsroot', 'good'))))).toBe(md5(GOOD_CONTENT));
      const after = await fsck('-c', parent);
      expect(after.status, after.out).toBe(0);
      expect(after.out).toMatch(/== Read 2 files/);
    });
  }

  it('a repair of it names its raw bytes in corrupted.txt, the log and the check output (never U+FFFD)', async () => {
    const { parent, badPath } = await volumeWithBadName();
    appendFileSync(badPath, Buffer.from([1, 2, 3])); // a partial trailing node: fixed and listed by a repair
    const check = await sh(`exec node bin/fsckddumbfs -c '${parent}'`);
    expect(check.stdout.includes(Buffer.concat([Buffer.from('incomplete node in file: '), badPath]))).toBe(true);
    expect((await fsck('-n', parent)).status).toBe(0);
    const list = readFileSync(path.join(parent, 'ddfsroot/.ddumbfs/corrupted.txt'));
    expect(list.equals(Buffer.concat([Buffer.from('F  l '), badPath, Buffer.from('\n')])), list.toString('latin1')).toBe(true);
    const log = readFileSync(path.join(parent, 'ddfsroot/.ddumbfs/ddumbfs.log'));
    expect(log.includes(badPath)).toBe(true);
    expect(log.includes(Buffer.from('\ufffd'))).toBe(false);
    expect(md5(await readThroughVolume(parent, badPath))).toBe(md5(BAD_CONTENT));
  });

  it('cpddumbfs downloads it byte for byte (raw name on the command line)', async () => {
    const { parent } = await volumeWithBadName();
    const r = await sh(`exec node bin/cpddumbfs -c "$(printf '${parent}/ddfsroot/${BAD_NAME_PRINTF}')" -`);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(md5(r.stdout)).toBe(md5(BAD_CONTENT));
  });

  it('cpddumbfs downloads it into a directory under the same raw name', async () => {
    const { parent } = await volumeWithBadName();
    const out = mkdtempSync(path.join(tmpdir(), 'non-utf8-out-'));
    try {
      const r = await sh(`exec node bin/cpddumbfs "$(printf '${parent}/ddfsroot/${BAD_NAME_PRINTF}')" '${out}'`);
      expect(r.status, r.stderr.toString()).toBe(0);
      expect(md5(readFileSync(Buffer.concat([Buffer.from(`${out}/`), BAD_NAME])))).toBe(md5(BAD_CONTENT));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
