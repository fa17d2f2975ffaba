/**
 * alterddumbfs's alterations of the index node array (spec §13.2: -s -S -r -d -p -a -c), each breaking one of the
 * table invariants of spec §5.5 in a way fsckddumbfs must find and repair:
 *
 * | option | alteration                                    | what a check sees                                   |
 * |--------|-----------------------------------------------|-----------------------------------------------------|
 * | -s     | swap two consecutive non-empty nodes          | hash order mismatch / node before its ideal slot     |
 * | -S     | swap two random non-empty nodes               | nodes far from their ideal slots                     |
 * | -r     | zero a non-empty node                         | file blocks missing from the index                   |
 * | -d     | copy a non-empty node into a random empty one | duplicate address, node out of place                 |
 * | -p     | copy a non-empty node over its successor      | hash equal to the previous hash                      |
 * | -a     | exchange the addresses of two non-empty nodes | files' blocks "found another block for hash"         |
 * | -c     | random bytes over part of a node's hash       | empty node with a hash, or a misplaced/unknown hash  |
 *
 * Nodes are chosen with the caller's seeded PRNG, so `-n SEED` replays the same damage on the same volume.
 */
import type { SeededRandom } from '../io/crash_device.js';
import type { NodeIndex } from '../store/node_index.js';

export type NodeAlterationKind = 'swap-consecutive' | 'swap-random' | 'zero' | 'duplicate-empty' | 'duplicate-in-place' | 'exchange-addresses' | 'random-bytes';

/** The order of one `-i` round: every node alteration once. */
export const NODE_ALTERATION_KINDS: readonly NodeAlterationKind[] = [
  'swap-consecutive', 'swap-random', 'zero', 'duplicate-empty', 'duplicate-in-place', 'exchange-addresses', 'random-bytes',
];

/** Random picks tried before falling back to a full scan (sparse tables). */
const RANDOM_TRIES_MAX = 64;

function describeNode(idx: NodeIndex, i: number): string {
  return `node ${i} (addr=${idx.address(i)})`;
}

/** A random node satisfying `want`, or -1 when there is none. */
function randomNode(idx: NodeIndex, rng: SeededRandom, want: (i: number) => boolean): number {
  for (let t = 0; t < RANDOM_TRIES_MAX; t++) {
    const i = rng.int(idx.nodeCount);
    if (want(i)) return i;
  }
  const all: number[] = [];
  for (let i = 0; i < idx.nodeCount; i++) if (want(i)) all.push(i);
  return all.length === 0 ? -1 : rng.pick(all);
}

/** Whether nodes i and j hold the same address and hash. */
function sameNode(idx: NodeIndex, i: number, j: number): boolean {
  return idx.address(i) === idx.address(j) && idx.compareHash(i, idx.hashView(j)) === 0;
}

/** Swap nodes i and j (address and hash). */
function swapNodes(idx: NodeIndex, i: number, j: number): void {
  const ai = idx.address(i);
  const hi = idx.hash(i);
  idx.writeNode(i, idx.address(j), idx.hash(j));
  idx.writeNode(j, ai, hi);
}

/**
 * Apply one alteration of `kind` to the in-memory table (the caller writes it back).
 * @returns the line to print, or a line saying why nothing could be done (e.g. no pair of consecutive nodes)
 */
export function alterNodes(idx: NodeIndex, kind: NodeAlterationKind, rng: SeededRandom): string {
  const nonEmpty = (i: number): boolean => i >= 0 && i < idx.nodeCount && idx.address(i) !== 0;
  switch (kind) {
    case 'swap-consecutive': {
      const start = rng.int(idx.nodeCount);
      for (let k = 0; k < idx.nodeCount; k++) {
        const i = (start + k) % idx.nodeCount;
        if (nonEmpty(i) && nonEmpty(i + 1) && !sameNode(idx, i, i + 1)) {
          const line = `swap consecutive nodes ${describeNode(idx, i)} and ${describeNode(idx, i + 1)}`;
          swapNodes(idx, i, i + 1);
          return line;
        }
      }
      return 'swap consecutive nodes: no two different consecutive non-empty nodes, nothing done';
    }
    case 'swap-random': {
      const i = randomNode(idx, rng, nonEmpty);
      const j = i < 0 ? -1 : randomNode(idx, rng, (x) => nonEmpty(x) && !sameNode(idx, x, i));
      if (i < 0 || j < 0) return 'swap random nodes: fewer than two different non-empty nodes, nothing done';
      const line = `swap random nodes ${describeNode(idx, i)} and ${describeNode(idx, j)}`;
      swapNodes(idx, i, j);
      return line;
    }
    case 'zero': {
      const i = randomNode(idx, rng, nonEmpty);
      if (i < 0) return 'zero node: the index is empty, nothing done';
      const line = `zero ${describeNode(idx, i)}`;
      idx.clearNode(i);
      return line;
    }
    case 'duplicate-empty': {
      const i = randomNode(idx, rng, nonEmpty);
      const j = randomNode(idx, rng, (x) => !nonEmpty(x));
      if (i < 0 || j < 0) return 'duplicate node: no non-empty or no empty node, nothing done';
      idx.writeNode(j, idx.address(i), idx.hash(i));
      return `duplicate ${describeNode(idx, i)} into empty node ${j}`;
    }
    case 'duplicate-in-place': {
      const i = randomNode(idx, rng, (x) => nonEmpty(x) && x + 1 < idx.nodeCount && !sameNode(idx, x, x + 1));
      if (i < 0) return 'duplicate node in place: the index is empty, nothing done';
      const line = `duplicate ${describeNode(idx, i)} in place over ${describeNode(idx, i + 1)}`;
      idx.writeNode(i + 1, idx.address(i), idx.hash(i));
      return line;
    }
    case 'exchange-addresses': {
      const i = randomNode(idx, rng, nonEmpty);
      const j = randomNode(idx, rng, (x) => nonEmpty(x) && x !== i && idx.address(x) !== idx.address(i));
      if (i < 0 || j < 0) return 'exchange addresses: fewer than two non-empty nodes, nothing done';
      const line = `exchange addresses of ${describeNode(idx, i)} and ${describeNode(idx, j)}`;
      const ai = idx.address(i);
      idx.writeAddress(i, idx.address(j));
      idx.writeAddress(j, ai);
      return line;
    }
    case 'random-bytes': {
      const i = rng.int(idx.nodeCount);
      const h = idx.hash(i);
      const offset = rng.int(h.length);
      const length = 1 + rng.int(h.length - offset);
      for (let k = offset; k < offset + length; k++) h[k] = h[k]! ^ (1 + rng.int(255)); // every byte changes
      const line = `random bytes in ${describeNode(idx, i)}: ${length} hash bytes from offset ${offset}`;
      idx.writeNode(i, idx.address(i), h);
      return line;
    }
  }
}
