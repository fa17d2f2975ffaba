/**
 * `/.ddumbfs/stats` and its JSON twin `/.ddumbfs/stats.json` through a real mount (spec §8.9, issue 10):
 * - stats: every line is `name value` with a unique name (the hash counter is `hash_count`, `hash` names the hash
 *   function), every value but hash, command_args and ext_command_args is a bare number (no `mms` suffix), the
 *   counters are in 1.1's order, `align` follows `direct_io`, command_args / ext_command_args are 1.1's command
 *   lines (the daemon's own, then the one libfuse got: the -o list with subtype and fsname, and the mount point);
 * - stats.json validates against contrib/schema/stats.schema.json and states the same facts as stats.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COUNTER_NAMES, counterKey } from '../src/store/stats.js';
import { REPO_DIR, makeVolume, mountVolume, unmountAll, type MountedVolume } from './helpers/mount.js';
import { lcgBytes } from './helpers/bytes.js';
import { validateJson, type JsonSchema } from './helpers/json_schema.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

const BS = 4096;
const STRING_KEYS = new Set(['hash', 'command_args', 'ext_command_args']);
let work: string;
let parent: string;
let mnt: string;
let m: MountedVolume;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ddfs-stats-file-'));
  parent = join(work, 'vol');
  mnt = join(work, 'mnt');
  mkdirSync(parent);
  mkdirSync(mnt);
  await makeVolume(parent, { blockSize: BS, size: '16M' });
  m = await mountVolume(parent, mnt, ['reclaim=90']);
  // 8 distinct blocks, written twice: the second copy is all ghost writes
  const data = lcgBytes(8 * BS, 3);
  writeFileSync(join(mnt, 'a'), data);
  writeFileSync(join(mnt, 'b'), data);
}, TEST_TIMEOUT_MS);

afterAll(async () => {
  await unmountAll();
  rmSync(work, { recursive: true, force: true });
});

/** The lines of stats as [name, value] pairs, in order. */
function statsLines(): Array<[string, string]> {
  const text = readFileSync(join(mnt, '.ddumbfs', 'stats'), 'latin1');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n').map((line) => {
    const match = /^(\S+) +(\S.*)$/.exec(line);
    expect(match, line).not.toBeNull();
    return [match![1]!, match![2]!];
  });
}

describe('/.ddumbfs/stats', () => {
  it('unique names, bare numbers, 1.1 order, 1.1 values for align, lock_index, command_args', () => {
    const lines = statsLines();
    const names = lines.map(([k]) => k);
    expect(new Set(names).size).toBe(names.length);
    const values = new Map(lines);
    for (const [k, v] of lines) if (!STRING_KEYS.has(k)) expect(v, k).toMatch(/^\d+(\.\d\d)?$/);
    // the counters come first, in 1.1's order, each non-zero
    const counterOrder = COUNTER_NAMES.map(counterKey);
    const counters = names.slice(0, names.indexOf('block_allocated'));
    expect(counters).toEqual(counterOrder.filter((k) => counters.includes(k)));
    for (const k of counters) expect(Number(values.get(k)), k).toBeGreaterThan(0);
    expect(Number(values.get('hash_count'))).toBeGreaterThanOrEqual(16);
    expect(Number(values.get('ghost_write'))).toBeGreaterThanOrEqual(8);
    expect(values.has('calc_hash')).toBe(true);
    expect(names.slice(names.indexOf('block_allocated'))).toEqual([
      'block_allocated', 'block_free', 'overflow', 'direct_io', 'align', 'lock_index', 'hash', 'writer_pool', 'reclaim',
      'next_reclaim', 'command_args', 'ext_command_args',
    ]);
    expect(values.get('hash')).toBe('TIGER');
    expect(values.get('block_allocated')).toBe('10');
    expect(values.get('align')).toBe(values.get('direct_io'));
    expect(values.get('reclaim')).toBe('90');
    expect(values.get('lock_index')).toMatch(/^[01]$/);
    expect(values.get('command_args')).toBe(`ddumbfs ${mnt} -o parent=${parent},reclaim=90 -f`);
    const ext = values.get('ext_command_args')!;
    expect(ext).toMatch(/^ddumbfs -o\S+ \S+$/);
    expect(ext.endsWith(` ${mnt}`)).toBe(true);
    expect(ext).toContain('subtype=ddumbfs');
    expect(ext).toContain(`fsname=${parent}`);
  });
});

describe('/.ddumbfs/stats.json', () => {
  const schema = JSON.parse(readFileSync(join(REPO_DIR, 'contrib', 'schema', 'stats.schema.json'), 'utf8')) as JsonSchema;

  it('validates against its schema and states what stats states', () => {
    const doc = JSON.parse(readFileSync(join(mnt, '.ddumbfs', 'stats.json'), 'utf8'));
    expect(validateJson(schema, doc)).toEqual([]);
    const text = new Map(statsLines());
    expect(doc.volume.block_allocated).toBe(Number(text.get('block_allocated')));
    expect(doc.volume.block_free).toBe(Number(text.get('block_free')));
    expect(doc.volume.bytes_allocated).toBe(doc.volume.block_allocated * BS);
    expect(doc.volume.block_size).toBe(BS);
    expect(doc.volume.block_count).toBe(doc.volume.block_allocated + doc.volume.block_free);
    expect(doc.volume.hash).toBe(text.get('hash'));
    expect(doc.mount.direct_io).toBe(text.get('direct_io') === '1');
    expect(doc.mount.lock_index).toBe(text.get('lock_index') === '1');
    expect(doc.mount.reclaim).toBe(90);
    expect(doc.mount.command_args).toBe(text.get('command_args'));
    expect(doc.mount.ext_command_args).toBe(text.get('ext_command_args'));
    // counters that do not move between the two reads (no file is written in between)
    for (const k of ['hash_count', 'ghost_write', 'block_write', 'create']) expect(doc.counters[k], k).toBe(Number(text.get(k) ?? 0));
    expect(doc.counters.hash_count).toBeGreaterThan(0);
    expect(Date.parse(doc.time)).not.toBeNaN();
    // the daemon's last checkpoint, else the checkpoint file's time (the same checkpoint, seen by the kernel)
    const checkpoint = statSync(join(parent, 'ddfsusedblocks'), { throwIfNoEntry: false });
    expect(doc.volume.last_checkpoint === null).toBe(checkpoint === undefined);
    if (checkpoint) expect(Math.abs(Date.parse(doc.volume.last_checkpoint) - checkpoint.mtimeMs)).toBeLessThan(60_000);
    expect((statSync(join(parent, 'ddfsroot', '.ddumbfs', 'stats.json')).mode & 0o777).toString(8)).toBe('644');
  });

  it('the validator rejects a document that breaks the schema (a number as a string, a missing and an extra field)', () => {
    const doc = JSON.parse(readFileSync(join(mnt, '.ddumbfs', 'stats.json'), 'utf8'));
    doc.volume.block_free = String(doc.volume.block_free);
    delete doc.mount.align;
    doc.counters.bogus = 1;
    const errors = validateJson(schema, doc);
    expect(errors).toContain('$.volume.block_free: string, expected integer');
    expect(errors).toContain('$.mount: missing align');
    expect(errors).toContain('$.counters: unexpected bogus');
  });
});
