/**
 * ddfsmirror/state (mirroring spec §4.2): round trip, atomic replace (no temp left behind), a symlink planted at
 * `state` or at `ddfsmirror` is refused and its target untouched, a damaged file is CORRUPT naming it, a master
 * gets its uuids once, a slave is not a source.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { masterState, readMirrorState, slaveStateFor, writeMirrorState } from './state.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-state-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('mirror state file', () => {
  it('a master gets its uuids on first use and keeps them; a slave state round-trips; no temp file is left', () => {
    const p = tmp();
    expect(readMirrorState(p)).toBeNull();
    const m = masterState(p);
    expect(m.role).toBe('master');
    expect(m.sharedUuid).toMatch(/^[0-9a-f]{32}$/);
    expect(masterState(p)).toEqual(m);
    const s = tmp();
    const st = { ...slaveStateFor(m), pass: { passId: 'ab'.repeat(16), keyCurHex: '612f62', recordsApplied: 7, startedAt: 'now' } };
    writeMirrorState(s, st);
    expect(readMirrorState(s)).toEqual(st);
    expect(fs.readdirSync(path.join(s, 'ddfsmirror'))).toEqual(['state']);
    expect(() => masterState(s)).toThrow(/is a slave of [0-9a-f]{32}: not a source/);
  });

  it('a symlink at state or at ddfsmirror is refused, and its target is neither read nor written', () => {
    const p = tmp();
    const outside = path.join(tmp(), 'victim');
    fs.writeFileSync(outside, 'keep');
    fs.mkdirSync(path.join(p, 'ddfsmirror'));
    fs.symlinkSync(outside, path.join(p, 'ddfsmirror', 'state'));
    expect(() => readMirrorState(p)).toThrow(/is a symbolic link: refused/);
    const q = tmp();
    const elsewhere = tmp();
    fs.symlinkSync(elsewhere, path.join(q, 'ddfsmirror'));
    expect(() => readMirrorState(q)).toThrow(/not a directory \(a symlink\?\): refused/);
    expect(() => writeMirrorState(q, slaveStateFor(masterState(tmp())))).toThrow(/not a directory/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(fs.readFileSync(outside, 'utf8')).toBe('keep');
  });

  it('the lineage fields of promote/rebind round-trip; a slave of a promoted master takes its lineage id; a bad one is CORRUPT', () => {
    const p = tmp();
    const m = { ...masterState(tmp()), lineage: 2, lineageId: 'cd'.repeat(16), previousLineages: [{ lineage: 1, lineageId: 'ef'.repeat(16), uniqueUuid: '01'.repeat(16), role: 'slave' as const, endedBy: 'promote' as const, endedAt: 't' }], lastPromote: { time: 't', fromLineage: 1, fromLineageId: 'ef'.repeat(16), claim: null, rolledBack: false } };
    writeMirrorState(p, m);
    expect(readMirrorState(p)).toEqual(m);
    expect(slaveStateFor(m)).toMatchObject({ role: 'slave', lineage: 2, lineageId: 'cd'.repeat(16) });
    expect(slaveStateFor(masterState(tmp())).lineageId).toBeUndefined(); // the initial lineage: no id (= shared uuid)
    writeMirrorState(p, { ...m, lineageId: 'nothex' });
    expect(() => readMirrorState(p)).toThrow(`${path.join(p, 'ddfsmirror', 'state')}: bad mirror state: lineageId`);
  });

  it('a damaged state file is CORRUPT with one line naming it', () => {
    const p = tmp();
    fs.mkdirSync(path.join(p, 'ddfsmirror'));
    const f = path.join(p, 'ddfsmirror', 'state');
    fs.writeFileSync(f, '{"version":1');
    expect(() => readMirrorState(p)).toThrow(`${f}: not a mirror state file (bad JSON)`);
    fs.writeFileSync(f, JSON.stringify({ version: 1, sharedUuid: 'zz', uniqueUuid: 'a'.repeat(32), role: 'slave', lineage: 1, generation: 1, claim: null, pass: null }));
    expect(() => readMirrorState(p)).toThrow(`${f}: bad mirror state: sharedUuid`);
  });
});
