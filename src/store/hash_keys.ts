/**
 * Tables keyed by block hashes (their raw bytes), for the per-block bookkeeping of a mirror pass: which hashes the
 * pass queried or sent (pass_master.ts), which it pinned (pass_slave.ts). A Map or Set keyed by the hash as a latin1
 * string makes a string per block (its allocation, its string hash, its collection later): on a 2 GiB copy of 4 KiB
 * blocks that was about a fifth of the JS thread's time (issue 7). Here a key is compared as bytes in place.
 *
 * HashKeyTable: open addressing with linear probing over flat typed arrays (keys `keySize` bytes each, a 32-bit tag
 * per slot, a one-byte value), grown to twice its capacity at half load; no removal (a pass only adds). The probe
 * start mixes the key's first 8 bytes with a random seed of the table, so keys chosen to collide in one table do not
 * collide in another.
 *
 * Invariants: `size` is the number of distinct keys set; a key is found by get/has exactly when it was set; each key is
 * stored as a copy (the caller's buffer may be reused at once).
 */
import { randomBytes } from 'node:crypto';
import { assert } from '../util/assert.js';
import { copyBytes } from '../util/bytes.js';

/** Slots of a new table (a power of two). */
const CAPACITY_MIN = 1024;

/** A table of hash keys (`keySize` bytes) to values 0..255. */
export class HashKeyTable {
  private capacity: number;
  private mask: number;
  /** Slot k holds its key at keys[k * keySize], valid when tags[k] !== 0. */
  private keys: Buffer;
  private tags: Int32Array;
  private values: Uint8Array;
  private readonly seed: number;
  /** Number of distinct keys. */
  size = 0;

  /**
   * @param keySize bytes of each key (at least 8: a block hash of the volume's hash, spec §6)
   */
  constructor(readonly keySize: number) {
    assert(Number.isInteger(keySize) && keySize >= 8, 'a hash key has at least 8 bytes');
    this.capacity = CAPACITY_MIN;
    this.mask = CAPACITY_MIN - 1;
    this.keys = Buffer.allocUnsafe(CAPACITY_MIN * keySize);
    this.tags = new Int32Array(CAPACITY_MIN);
    this.values = new Uint8Array(CAPACITY_MIN);
    this.seed = randomBytes(4).readInt32LE(0) | 1;
  }

  /** The tag of the key at `key[offset]`: never 0 (0 marks an empty slot). */
  private tagOf(key: Buffer, offset: number): number {
    const lo = key.readInt32LE(offset);
    const hi = key.readInt32LE(offset + 4);
    let h = Math.imul(lo ^ this.seed, 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ hi, 0x85ebca77);
    h ^= h >>> 13;
    return h === 0 ? 1 : h;
  }

  /** The slot holding the key, or the empty slot where it would go. */
  private slotOf(key: Buffer, offset: number, tag: number): number {
    const ks = this.keySize;
    let k = tag & this.mask;
    for (;;) {
      const t = this.tags[k]!;
      if (t === 0) return k;
      if (t === tag) {
        const at = k * ks;
        let same = true;
        for (let b = 0; b < ks; b++) {
          if (this.keys[at + b] !== key[offset + b]) {
            same = false;
            break;
          }
        }
        if (same) return k;
      }
      k = (k + 1) & this.mask;
    }
  }

  /** The value set for the key at `key[offset]` (keySize bytes), or undefined. */
  get(key: Buffer, offset = 0): number | undefined {
    const tag = this.tagOf(key, offset);
    const k = this.slotOf(key, offset, tag);
    return this.tags[k] === 0 ? undefined : this.values[k];
  }

  /** Whether the key at `key[offset]` was set. */
  has(key: Buffer, offset = 0): boolean {
    const tag = this.tagOf(key, offset);
    return this.tags[this.slotOf(key, offset, tag)] !== 0;
  }

  /** Set the key at `key[offset]` to `value` (0..255), adding a copy of the key when new. */
  set(key: Buffer, value: number, offset = 0): void {
    assert(key.length - offset >= this.keySize, 'hash key shorter than the table\'s key size');
    const tag = this.tagOf(key, offset);
    let k = this.slotOf(key, offset, tag);
    if (this.tags[k] === 0) {
      if (2 * (this.size + 1) > this.capacity) {
        this.grow();
        k = this.slotOf(key, offset, tag);
      }
      this.tags[k] = tag;
      copyBytes(key, offset, this.keys, k * this.keySize, this.keySize);
      this.size++;
    }
    this.values[k] = value;
  }

  /**
   * Make room for `count` keys in all, so that adding up to that many never grows the table (each growth moves
   * every key). Sizing a table late, once the caller knows how many keys will come, keeps a small use small: a
   * table of a million slots is 2^20 times (keySize + 5) bytes, and keys set at random in it touch a new page each.
   */
  reserve(count: number): void {
    while (this.capacity < 2 * count) this.grow();
  }

  /** Forget every key (the arrays are kept). */
  clear(): void {
    this.tags.fill(0);
    this.size = 0;
  }

  /** Each key (a view of the table, valid until the next set) with its value, in no particular order. */
  *entries(): IterableIterator<[Buffer, number]> {
    const ks = this.keySize;
    for (let k = 0; k < this.capacity; k++) if (this.tags[k] !== 0) yield [this.keys.subarray(k * ks, (k + 1) * ks), this.values[k]!];
  }

  private grow(): void {
    const { keys, tags, values, capacity, keySize: ks } = this;
    this.capacity = capacity * 2;
    this.mask = this.capacity - 1;
    this.keys = Buffer.allocUnsafe(this.capacity * ks);
    this.tags = new Int32Array(this.capacity);
    this.values = new Uint8Array(this.capacity);
    for (let k = 0; k < capacity; k++) {
      const tag = tags[k]!;
      if (tag === 0) continue;
      let s = tag & this.mask;
      while (this.tags[s] !== 0) s = (s + 1) & this.mask;
      this.tags[s] = tag;
      copyBytes(keys, k * ks, this.keys, s * ks, ks);
      this.values[s] = values[k]!;
    }
  }
}

/**
 * A set of hash keys that also reads as a ReadonlySet of latin1 strings (the form the reclaim pin hook and its
 * callers take, pass_volume.ts pin): `add`/`hasKey` take raw bytes without making a string.
 */
export class HashKeySet implements ReadonlySet<string> {
  private readonly table: HashKeyTable;

  constructor(keySize: number) {
    this.table = new HashKeyTable(keySize);
  }

  get size(): number {
    return this.table.size;
  }

  /** Add a copy of the key at `key[offset]`. */
  add(key: Buffer, offset = 0): void {
    this.table.set(key, 1, offset);
  }

  /** Whether the key at `key[offset]` is in the set. */
  hasKey(key: Buffer, offset = 0): boolean {
    return this.table.has(key, offset);
  }

  /** Whether `key`, a latin1 string of a hash's bytes, is in the set. */
  has(key: string): boolean {
    const b = Buffer.from(key, 'latin1');
    return b.length === this.table.keySize && this.table.has(b);
  }

  *values(): IterableIterator<string> {
    for (const [k] of this.table.entries()) yield k.toString('latin1');
  }

  keys(): IterableIterator<string> {
    return this.values();
  }

  *entries(): IterableIterator<[string, string]> {
    for (const v of this.values()) yield [v, v];
  }

  forEach(fn: (value: string, key: string, set: ReadonlySet<string>) => void, thisArg?: unknown): void {
    for (const v of this.values()) fn.call(thisArg, v, v, this);
  }

  [Symbol.iterator](): IterableIterator<string> {
    return this.values();
  }
}
