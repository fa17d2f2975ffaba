/**
 * walkUfsTree: raw byte names, bytewise order (pre-order), skipped special directories, symlinks not followed,
 * the depth bound, and every error reaching onError (a vanished entry, a directory replaced by a file during the
 * walk, an unreadable directory, a mount point), a throwing onError aborting the walk.
 *
 * The unreadable directory (tests run as root, which reads any directory) and the mount point (a tmpfs in a private
 * mount namespace, gone with the child) are walked by a child process running the compiled walker in dist/: run
 * `npx tsc -p tsconfig.json` first.
 */
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runOk } from '../../test/helpers/run.js';
import { DdfsError } from '../errors.js';
import { walkUfsTree, type UfsTreeEntry, type UfsWalkOptions } from './walk.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const DIST_WALK = path.resolve(__dirname, '../../dist/ufs/walk.js');

let root: string;
beforeEach(async () => {
  root = await fsp.mkdtemp(path.join(tmpdir(), 'walk-'));
});
afterEach(async () => {
  await fsp.chmod(root, 0o755).catch(() => undefined);
  await fsp.rm(root, { recursive: true, force: true });
});

/** Create `rel` (bytes) below root: a directory when it ends with '/', else a file. */
async function make(rel: string): Promise<void> {
  const full = Buffer.concat([B(`${root}/`), B(rel.replace(/\/$/, ''))]);
  if (rel.endsWith('/')) await fsp.mkdir(full, { recursive: true });
  else await fsp.writeFile(full, 'x');
}

interface Collected {
  entries: UfsTreeEntry[];
  errors: Array<{ path: Buffer; err: Error }>;
}

async function collect(options: Partial<UfsWalkOptions> = {}, start?: Buffer, onEntry?: (e: UfsTreeEntry) => Promise<void>): Promise<Collected> {
  const out: Collected = { entries: [], errors: [] };
  const onError = options.onError ?? ((p: Buffer, err: Error): 'skip' => {
    out.errors.push({ path: p, err });
    return 'skip';
  });
  for await (const e of walkUfsTree(root, { ...options, onError }, start)) {
    out.entries.push(e);
    await onEntry?.(e);
  }
  return out;
}

const lines = (c: Collected): string[] => c.entries.map((e) => `${e.kind} ${e.depth} ${e.path.toString('latin1')}`);

describe('walkUfsTree', () => {
  it('yields raw name bytes (not UTF-8), sorted bytewise per directory, directories before their contents', async () => {
    for (const p of ['b', 'B', 'a/', 'a/z', 'a/c/', 'a/c/d', 'bad\xff\xfename', '\xc3\xa9t\xc3\xa9', 'a-', '~']) await make(p);
    const c = await collect();
    expect(c.errors).toEqual([]);
    expect(lines(c)).toEqual([
      'file 1 B',
      'directory 1 a',
      'directory 2 a/c',
      'file 3 a/c/d',
      'file 2 a/z',
      'file 1 a-',
      'file 1 b',
      'file 1 bad\xff\xfename',
      'file 1 ~',
      'file 1 \xc3\xa9t\xc3\xa9',
    ]);
    const bad = c.entries.find((e) => e.path.includes(0xff))!;
    expect(bad.path.equals(B('bad\xff\xfename'))).toBe(true);
    // the path reaches the file itself (not a U+FFFD look-alike)
    expect((await fsp.readFile(Buffer.concat([B(`${root}/`), bad.path]))).toString()).toBe('x');
  });

  it('skips <root>/.ddumbfs and <root>/ddfsmirror, only directly below the root, unless skipSpecial is false', async () => {
    for (const p of ['.ddumbfs/', '.ddumbfs/stats', 'ddfsmirror/', 'ddfsmirror/j', 'd/', 'd/.ddumbfs/', 'd/ddfsmirror']) await make(p);
    expect(lines(await collect())).toEqual(['directory 1 d', 'directory 2 d/.ddumbfs', 'file 2 d/ddfsmirror']);
    expect(lines(await collect({ skipSpecial: false }))).toEqual([
      'directory 1 .ddumbfs', 'file 2 .ddumbfs/stats', 'directory 1 d', 'directory 2 d/.ddumbfs', 'file 2 d/ddfsmirror',
      'directory 1 ddfsmirror', 'file 2 ddfsmirror/j',
    ]);
  });

  it('never follows symlinks and reports other kinds', async () => {
    await make('target/');
    await make('target/inside');
    await fsp.symlink(path.join(root, 'target'), path.join(root, 'link'));
    await runOk('mkfifo', [path.join(root, 'fifo')]);
    expect(lines(await collect())).toEqual(['other 1 fifo', 'symlink 1 link', 'directory 1 target', 'file 2 target/inside']);
  });

  it('walks a subtree from `start`, with paths and depths still relative to the root', async () => {
    for (const p of ['x', 's/', 's/t/', 's/t/u', 's/v']) await make(p);
    expect(lines(await collect({}, B('s/')))).toEqual(['directory 2 s/t', 'file 3 s/t/u', 'file 2 s/v']);
    const c = await collect({}, B('x'));
    expect(c.entries).toEqual([]);
    expect(c.errors.map((e) => (e.err as DdfsError).code)).toEqual(['INVALID']);
  });

  it('bounds the depth: a non-empty directory whose entries would lie deeper is reported and not entered', async () => {
    for (const p of ['a/b/c/d/', 'a/b/c/d/e', 'a/b/f/', 'a/g']) await make(p);
    const c = await collect({ depthMax: 3 });
    expect(lines(c)).toEqual(['directory 1 a', 'directory 2 a/b', 'directory 3 a/b/c', 'directory 3 a/b/f', 'file 2 a/g']);
    // a/b/c holds d (depth 4): reported; a/b/f is empty, so nothing lies too deep
    expect(c.errors.map((e) => [e.path.toString(), (e.err as DdfsError).code])).toEqual([['a/b/c', 'INVALID']]);
  });

  it('reports a directory replaced by a file during the walk (ENOTDIR), and goes on after skip', async () => {
    for (const p of ['d/', 'd/f', 'e']) await make(p);
    const c = await collect({}, undefined, async (e) => {
      if (e.path.toString() === 'd') {
        await fsp.rm(path.join(root, 'd'), { recursive: true });
        await fsp.writeFile(path.join(root, 'd'), 'now a file');
      }
    });
    expect(lines(c)).toEqual(['directory 1 d', 'file 1 e']);
    expect(c.errors.map((e) => [e.path.toString(), (e.err as NodeJS.ErrnoException).code])).toEqual([['d', 'ENOTDIR']]);
  });

  it('reports an entry that vanished between the listing and its lstat (ENOENT)', async () => {
    for (const p of ['a', 'b/', 'b/x', 'c']) await make(p);
    const c = await collect({}, undefined, async (e) => {
      if (e.path.toString() === 'a') await fsp.rm(path.join(root, 'b'), { recursive: true });
    });
    expect(lines(c)).toEqual(['file 1 a', 'file 1 c']);
    expect(c.errors.map((e) => [e.path.toString(), (e.err as NodeJS.ErrnoException).code])).toEqual([['b', 'ENOENT']]);
  });

  it('an onError that throws aborts the walk with that error', async () => {
    for (const p of ['a', 'b/', 'b/x', 'c']) await make(p);
    const seen: string[] = [];
    const walk = async (): Promise<void> => {
      for await (const e of walkUfsTree(root, { onError: (p, err) => { throw new DdfsError('IO', `walk of ${p.toString()}: ${err.message}`); } })) {
        seen.push(e.path.toString());
        if (e.path.toString() === 'a') await fsp.rm(path.join(root, 'b'), { recursive: true });
      }
    };
    await expect(walk()).rejects.toThrow(/walk of b: ENOENT/);
    expect(seen).toEqual(['a']);
  });

  it('reports a missing root to onError', async () => {
    const c: Array<[string, string | undefined]> = [];
    for await (const _ of walkUfsTree(path.join(root, 'nope'), { onError: (p, err) => { c.push([p.toString(), (err as NodeJS.ErrnoException).code]); return 'skip'; } })) {
      throw new Error('nothing to yield');
    }
    expect(c).toEqual([['', 'ENOENT']]);
  });
});

/**
 * Walk `root` in a child process (compiled walker) under `prefix` (e.g. setpriv, unshare); JSON of entries and errors.
 * Asynchronous (test/helpers/run.ts): a node started under load can hold a synchronous worker past vitest's RPC limit.
 * @throws Error when the child does not exit 0
 */
async function walkInChild(prefix: string[], setup = ''): Promise<{ entries: string[]; errors: Array<[string, string]> }> {
  // The child may run as an unprivileged user, and the checkout may sit in a directory only root can enter (a
  // mktemp -d clone): it runs a world-readable copy of dist/, from that copy's directory.
  const distCopy = await fsp.mkdtemp(path.join(tmpdir(), 'walk-dist-'));
  await fsp.cp(path.dirname(path.dirname(DIST_WALK)), distCopy, { recursive: true });
  await chmodTreeReadable(distCopy);
  const script = `
    import { walkUfsTree } from ${JSON.stringify(path.join(distCopy, 'ufs', 'walk.js'))};
    const entries = [], errors = [];
    for await (const e of walkUfsTree(${JSON.stringify(root)}, { onError: (p, err) => { errors.push([p.toString('latin1'), err.code]); return 'skip'; } })) {
      entries.push(e.kind + ' ' + e.path.toString('latin1'));
    }
    process.stdout.write(JSON.stringify({ entries, errors }));`;
  const cmd = `${setup}exec node --input-type=module -e "$WALK_SCRIPT"`;
  try {
    const out = await runOk(prefix[0]!, [...prefix.slice(1), 'sh', '-c', cmd], { cwd: distCopy, env: { ...process.env, WALK_SCRIPT: script } });
    return JSON.parse(out.toString('utf8')) as { entries: string[]; errors: Array<[string, string]> };
  } finally {
    await fsp.rm(distCopy, { recursive: true, force: true });
  }
}

/** Directories 0755 and files 0644 below (and including) `dir`. */
async function chmodTreeReadable(dir: string): Promise<void> {
  await fsp.chmod(dir, 0o755);
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chmodTreeReadable(p);
    else await fsp.chmod(p, 0o644);
  }
}

describe.skipIf(!existsSync(DIST_WALK))('walkUfsTree in a child (compiled walker)', () => {
  it.skipIf(process.getuid?.() !== 0)('reports an unreadable directory (EACCES) and walks its siblings', async () => {
    for (const p of ['a/', 'a/secret', 'b']) await make(p);
    await fsp.chmod(root, 0o755);
    await fsp.chmod(path.join(root, 'b'), 0o644);
    await fsp.chmod(path.join(root, 'a'), 0o000);
    const r = await walkInChild(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    expect(r.entries).toEqual(['directory a', 'file b']);
    expect(r.errors).toEqual([['a', 'EACCES']]);
  });

  it.skipIf(process.getuid?.() !== 0)('does not cross a mount point: reported as CROSS_DEVICE, not yielded nor entered', async () => {
    for (const p of ['m/', 'n/', 'n/f']) await make(p);
    // the tmpfs lives in the child's own mount namespace: nothing to unmount afterwards
    const r = await walkInChild(['unshare', '-m'], `mount -t tmpfs none '${root}/m' && echo x > '${root}/m/inside' && `);
    expect(r.entries).toEqual(['directory n', 'file n/f']);
    expect(r.errors).toEqual([['m', 'CROSS_DEVICE']]);
  });
});

describe('walkUfsTree with synchronous calls (fsck)', () => {
  it('yields the same entries in the same order as the asynchronous walk, small and large directories alike', async () => {
    const top = await fsp.mkdtemp(path.join(tmpdir(), 'walk-sync-'));
    try {
      // one directory past READDIR_WHOLE_SIZE_MAX of st_size (listed in batches), small ones (one readdirSync each)
      const big = path.join(top, 'big');
      await fsp.mkdir(big);
      for (let k = 0; k < 3000; k++) await fsp.writeFile(path.join(big, `file-with-a-rather-long-name-${String(k).padStart(5, '0')}`), '');
      expect((await fsp.stat(big)).size).toBeGreaterThan(64 * 1024);
      for (const d of ['a', 'a/b', 'c']) await fsp.mkdir(path.join(top, d));
      for (const f of ['a/x', 'a/b/y', 'c/z', 'top']) await fsp.writeFile(path.join(top, f), 'x');
      await fsp.symlink('a/x', path.join(top, 'link'));
      await fsp.writeFile(path.join(top, Buffer.from('n\xffame', 'latin1').toString('latin1')), '');
      const walk = async (syncCalls: boolean): Promise<string[]> => {
        const out: string[] = [];
        for await (const e of walkUfsTree(top, { onError: () => 'skip', syncCalls })) out.push(`${e.kind} ${e.depth} ${e.path.toString('hex')}`);
        return out;
      };
      const want = await walk(false);
      expect(want.length).toBe(3000 + 3 + 4 + 2 + 1);
      expect(await walk(true)).toEqual(want);
    } finally {
      await fsp.rm(top, { recursive: true, force: true });
    }
  });

  it('reports a directory it cannot list with the asynchronous error', async () => {
    const errs = async (syncCalls: boolean): Promise<string[]> => {
      const out: string[] = [];
      for await (const e of walkUfsTree(path.join(tmpdir(), 'walk-sync-missing-dir'), { onError: (p, err) => { out.push(`${p.toString()} ${err.message}`); return 'skip'; }, syncCalls })) out.push(e.path.toString());
      return out;
    };
    expect(await errs(true)).toEqual(await errs(false));
  });
});
