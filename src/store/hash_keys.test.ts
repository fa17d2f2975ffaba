import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HashKeySet, HashKeyTable } from './hash_keys.js';

describe('HashKeyTable', () => {
  it('finds exactly the keys set, with their last value, across growth', () => {
    const t = new HashKeyTable(24);
    const keys = Array.from({ length: 20000 }, () => randomBytes(24));
    keys.forEach((k, i) => t.set(k, i % 3));
    keys.slice(0, 100).forEach((k) => t.set(k, 7)); // set again: a new value, not a new key
    expect(t.size).toBe(20000);
    keys.forEach((k, i) => expect(t.get(k)).toBe(i < 100 ? 7 : i % 3));
    for (let i = 0; i < 1000; i++) {
      const other = randomBytes(24);
      expect(t.has(other)).toBe(false);
      expect(t.get(other)).toBeUndefined();
    }
  });

  it('keeps its keys and values when reserved for more, before and after keys were set', () => {
    const t = new HashKeyTable(20);
    t.reserve(0);
    const keys = Array.from({ length: 3000 }, () => randomBytes(20));
    keys.slice(0, 1500).forEach((k, i) => t.set(k, i % 5));
    t.reserve(50000);
    t.reserve(10); // never shrinks
    keys.slice(1500).forEach((k, i) => t.set(k, (1500 + i) % 5));
    expect(t.size).toBe(3000);
    keys.forEach((k, i) => expect(t.get(k)).toBe(i % 5));
    expect(t.has(randomBytes(20))).toBe(false);
    expect([...t.entries()].length).toBe(3000);
  });

  it('tells apart keys that share their first 8 bytes (the probe start) and differ only in the last byte', () => {
    const t = new HashKeyTable(20);
    const base = randomBytes(20);
    const keys = Array.from({ length: 200 }, (_, i) => {
      const k = Buffer.from(base);
      k[19] = i;
      k[18] = i >> 8;
      return k;
    });
    keys.forEach((k, i) => {
      if (i % 2 === 0) t.set(k, 1);
    });
    keys.forEach((k, i) => expect(t.has(k), `key ${i}`).toBe(i % 2 === 0));
    expect(t.size).toBe(100);
  });

  it('keys are read at an offset and kept as copies; clear forgets them all', () => {
    const t = new HashKeyTable(16);
    const nodes = randomBytes(3 * 22); // three nodes of a 6-byte address and a 16-byte hash
    for (let j = 0; j < 3; j++) t.set(nodes, j, j * 22 + 6);
    const first = Buffer.from(nodes.subarray(6, 22));
    nodes.fill(0); // the caller's buffer reused
    expect(t.get(first)).toBe(0);
    expect(t.has(nodes, 6)).toBe(false);
    expect([...t.entries()].map(([k, v]) => [k.length, v]).sort()).toEqual([[16, 0], [16, 1], [16, 2]]);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.has(first)).toBe(false);
    t.set(first, 4);
    expect(t.get(first)).toBe(4);
  });

  it('refuses keys shorter than 8 bytes', () => {
    expect(() => new HashKeyTable(4)).toThrow();
  });
});

describe('HashKeySet', () => {
  it('reads as a ReadonlySet of latin1 strings of the keys added', () => {
    const s = new HashKeySet(24);
    const keys = Array.from({ length: 50 }, () => randomBytes(24));
    for (const k of keys) s.add(k);
    s.add(keys[0]!);
    expect(s.size).toBe(50);
    expect(s.hasKey(keys[3]!)).toBe(true);
    expect(s.has(keys[3]!.toString('latin1'))).toBe(true);
    expect(s.has(randomBytes(24).toString('latin1'))).toBe(false);
    expect(s.has('short')).toBe(false);
    expect(new Set(s)).toEqual(new Set(keys.map((k) => k.toString('latin1'))));
    expect([...s].map((k) => Buffer.from(k, 'latin1').length)).toEqual(keys.map(() => 24));
  });
});
