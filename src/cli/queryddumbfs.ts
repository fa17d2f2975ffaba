/**
 * queryddumbfs [-f] [-l] -n NODE | -b BLOCK | -H HASH PARENT — debug queries on an offline volume (spec §13.3).
 *
 * Prints what the index holds for a node, a block address or a hash, then every index node and every UFS file node
 * that references that address or hash, as `index: NODE addr=ADDRESS HASH` and `file: POS addr=ADDRESS HASH PATH`
 * (POS = node number in the file, HASH in hex, PATH relative to ddfsroot, raw bytes). Read-only.
 */
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
import { decodeAddress } from '../format/node.js';
import { fileDevices } from '../io/device.js';
import { UfsNodeFile } from '../ufs/ufs_reader.js';
import { walkUfsTree } from '../ufs/walk.js';
import { Volume, findParent, mountPointOf } from '../volume/volume.js';
import { ROOT_DIRECTORY } from '../format/layout.js';
import { makeProgram, optionParser, runCommand, UsageError } from './common.js';
import { EXIT, EXIT_HELP } from './exit_codes.js';

const NAME = 'queryddumbfs';

const HELP = `Exactly one of -n, -b, -H. Output lines (stdout):
  node NODE: addr=ADDRESS hash=HASH      (-n; "node NODE: empty" for an empty node)
  index: NODE addr=ADDRESS HASH          every index node holding the address or hash
  file: POS addr=ADDRESS HASH PATH       every UFS file node referencing it (POS = node number in the file)

${EXIT_HELP}`;

interface Options { node?: number; block?: number; hash?: string; force?: boolean; lock_index?: boolean }

const nonNegative = optionParser('a number >= 0', (s) => {
  if (!/^\d+$/.test(s)) throw new Error('not a number');
  return Number(s);
});

/** Write one stdout line; path bytes go out unchanged. */
function out(line: string | Buffer): void {
  process.stdout.write(line);
  process.stdout.write('\n');
}

/**
 * Run the query on the volume at `parent` (not mounted unless `force`).
 * @returns lines found (index + file references; the -n line counts)
 * @throws DdfsError INVALID for a node or hash out of range, BUSY when mounted without -f
 */
export async function query(parent: string, o: Options): Promise<number> {
  if (!o.force) {
    const mnt = mountPointOf(parent);
    if (mnt) throw new DdfsError('MOUNTED', `${parent}: mounted on ${mnt} (use -f to query anyway)`, { path: parent });
  }
  const vol = await Volume.open(parent, { readOnly: true });
  let found = 0;
  try {
    const idx = vol.store.index.nodes;
    const cfg = vol.config;
    let address = -1;
    let hash: Buffer | null = null;
    if (o.node !== undefined) {
      if (o.node >= idx.nodeCount) throw new DdfsError('INVALID', `node ${o.node} out of range (0..${idx.nodeCount - 1})`, {});
      if (idx.isEmpty(o.node)) {
        out(`node ${o.node}: empty`);
        return 0;
      }
      address = idx.address(o.node);
      hash = idx.hash(o.node);
      out(`node ${o.node}: addr=${address} hash=${hash.toString('hex')}`);
      found++;
    } else if (o.block !== undefined) {
      if (o.block >= cfg.blockCount) throw new DdfsError('INVALID', `block ${o.block} out of range (0..${cfg.blockCount - 1})`, {});
      address = o.block;
    } else {
      const h = o.hash!.toLowerCase();
      if (!/^[0-9a-f]*$/.test(h) || h.length !== 2 * idx.hashSize) {
        throw new UsageError(`-H: ${o.hash}: not ${idx.hashSize * 2} hex digits (${cfg.hashName})`);
      }
      hash = Buffer.from(h, 'hex');
    }
    const matches = (a: number, hv: Buffer): boolean => (hash ? hv.equals(hash) : a === address);
    for (let i = 0; i < idx.nodeCount; i++) {
      if (idx.isEmpty(i)) continue;
      const a = idx.address(i);
      const hv = idx.hashView(i);
      if (matches(a, hv)) {
        out(`index: ${i} addr=${a} ${hv.toString('hex')}`);
        found++;
      }
    }
    const root = path.join(parent, ROOT_DIRECTORY);
    const rootBytes = Buffer.from(root, 'latin1');
    for await (const e of walkUfsTree(rootBytes, { onError: () => 'skip' })) {
      if (e.kind !== 'file') continue;
      const full = Buffer.concat([rootBytes, Buffer.from('/'), e.path]);
      let f: UfsNodeFile;
      try {
        f = await UfsNodeFile.open(fileDevices, full, cfg.nodeSize);
      } catch {
        continue;
      }
      try {
        for await (const c of f.chunks()) {
          for (let k = 0; k < c.count; k++) {
            const off = k * cfg.nodeSize;
            const a = decodeAddress(c.nodes, off, cfg.addrSize);
            const hv = c.nodes.subarray(off + cfg.addrSize, off + cfg.nodeSize);
            if (matches(a, hv)) {
              out(Buffer.concat([Buffer.from(`file: ${c.first + k} addr=${a} ${hv.toString('hex')} `), e.path]));
              found++;
            }
          }
        }
      } finally {
        await f.close();
      }
    }
  } finally {
    await vol.close();
  }
  return found;
}

export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Show what the index and the files of an offline ddumbfs volume hold for a node, block or hash.', HELP)
    .argument('<parent>', 'the volume parent directory (or a path in it)')
    .option('-n, --node <node>', 'index node number', nonNegative)
    .option('-b, --block <block>', 'block address', nonNegative)
    .option('-H, --hash <hash>', 'block hash in hex')
    .option('-f, --force', 'query even when the volume is mounted (results may be inconsistent)')
    .option('-l, --lock_index', 'accepted for compatibility: the index is always held in memory');
  return runCommand(NAME, program, argv, async () => {
    const o = program.opts<Options>();
    const given = [o.node, o.block, o.hash].filter((x) => x !== undefined).length;
    if (given !== 1) throw new UsageError('give exactly one of -n NODE, -b BLOCK, -H HASH');
    const [target] = program.args as [string];
    const parent = findParent(target);
    if (!parent) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume`, { path: target });
    await query(parent, o);
    return EXIT.OK;
  });
}
