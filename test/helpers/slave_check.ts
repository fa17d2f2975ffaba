/**
 * Checks on a mirror slave for tests (mirroring spec §4.18):
 * - `referenceProblems`: invariant 6, "every hash in every slave UFS file is in the slave index, and the block at its
 *   address hashes to it". Reads the index FILE (what survives a kill), not a daemon's memory; zero blocks (address 0
 *   or the zero-block hash) are skipped, since they are never stored.
 * - `treeShape`: the namespace and content of a UFS tree by raw names (hex), without directory mtimes (a rollback puts
 *   entries back by rename, which touches their parents' mtimes, and verify does not compare them either): what
 *   "gives back exactly the tree of the last claim" compares.
 * The volume must be unmounted and no pass may run while they read it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeAddress } from '../../src/format/node.js';
import { fileDevices } from '../../src/io/device.js';
import { BlockStore } from '../../src/store/block_store.js';
import { UfsNodeFile } from '../../src/ufs/ufs_reader.js';
import { walkUfsTree } from '../../src/ufs/walk.js';
import { readVolumeConfig } from '../../src/volume/volume.js';

/** One way a UFS file breaks invariant 6. */
export interface ReferenceProblem {
  /** Path relative to ddfsroot, raw bytes as hex. */
  pathHex: string;
  blockIndex: number;
  what: 'address 1 (lost)' | 'hash not in the index' | 'index gives another address' | 'block does not hash to it' | 'unreadable node list';
}

function rootOf(parent: string): Buffer {
  return Buffer.from(path.join(parent, 'ddfsroot'), 'utf8');
}

/**
 * Every breach of invariant 6 in the volume at `parent` (empty: the invariant holds).
 * @throws what opening the volume's cfg, block file or index throws
 */
export async function referenceProblems(parent: string): Promise<ReferenceProblem[]> {
  const cfg = await readVolumeConfig(parent);
  const store = await BlockStore.open(parent, cfg, { readOnly: true });
  const { nodeSize, addrSize, hashSize, blockSize } = cfg;
  const problems: ReferenceProblem[] = [];
  const block = Buffer.alloc(blockSize);
  const hash = Buffer.alloc(hashSize);
  const root = rootOf(parent);
  try {
    for await (const e of walkUfsTree(root, { onError: () => 'skip' })) {
      if (e.kind !== 'file') continue;
      const pathHex = e.path.toString('hex');
      let f: UfsNodeFile;
      try {
        f = await UfsNodeFile.open(fileDevices, Buffer.concat([root, Buffer.from('/'), e.path]), nodeSize, { strict: true });
      } catch {
        problems.push({ pathHex, blockIndex: -1, what: 'unreadable node list' });
        continue;
      }
      try {
        for await (const chunk of f.chunks()) {
          for (let j = 0; j < chunk.count; j++) {
            const at = j * nodeSize;
            const address = decodeAddress(chunk.nodes, at, addrSize);
            const h = chunk.nodes.subarray(at + addrSize, at + addrSize + hashSize);
            if (address === 0 || store.isZeroHash(h)) continue;
            const blockIndex = chunk.first + j;
            if (address === 1) {
              problems.push({ pathHex, blockIndex, what: 'address 1 (lost)' });
              continue;
            }
            const r = store.index.nodes.lookup(h, 0);
            if (!r.found) problems.push({ pathHex, blockIndex, what: 'hash not in the index' });
            else if (r.address !== address) problems.push({ pathHex, blockIndex, what: 'index gives another address' });
            await store.readBlock(address, block, 0);
            store.hasher.hashInto(block, hash, 0);
            if (!hash.equals(h)) problems.push({ pathHex, blockIndex, what: 'block does not hash to it' });
          }
        }
      } finally {
        await f.close().catch(() => undefined);
      }
    }
  } finally {
    await store.blockDevice.close().catch(() => undefined);
    await store.index.device.close().catch(() => undefined);
  }
  return problems;
}

/**
 * The tree of the volume at `parent` by raw name (hex path → description): type, mode, owner and, by type, size plus
 * sha1 of the UFS file plus mtime (files), target (symlinks), rdev plus mtime (others); directories by mode and owner
 * only. Reserved root names are left out.
 */
export function treeShape(parent: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (abs: Buffer, rel: Buffer): void => {
    for (const name of fs.readdirSync(abs, { encoding: 'buffer' })) {
      if (rel.length === 0 && ['.ddumbfs', 'ddfsmirror'].includes(name.toString('latin1'))) continue;
      const childAbs = Buffer.concat([abs, Buffer.from('/'), name]);
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      const st = fs.lstatSync(childAbs, { bigint: true });
      const head = `${(st.mode & 0o7777n).toString(8)} ${st.uid}:${st.gid}`;
      const key = childRel.toString('hex');
      if (st.isDirectory()) {
        out[key] = `dir ${head}`;
        walk(childAbs, childRel);
      } else if (st.isSymbolicLink()) {
        out[key] = `link ${fs.readlinkSync(childAbs, { encoding: 'buffer' }).toString('hex')} ${st.mtimeNs}`;
      } else if (st.isFile()) {
        out[key] = `file ${head} ${st.size} ${createHash('sha1').update(fs.readFileSync(childAbs)).digest('hex')} ${st.mtimeNs} nlink ${st.nlink}`;
      } else {
        out[key] = `other ${st.mode.toString(8)} ${st.rdev} ${st.mtimeNs}`;
      }
    }
  };
  walk(rootOf(parent), Buffer.alloc(0));
  return out;
}
