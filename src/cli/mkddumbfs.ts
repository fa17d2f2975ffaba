/**
 * mkddumbfs [options] parent-directory — create a volume (spec §12).
 *
 * `-f/--force` keeps upstream's meaning: initialise a block device without asking. Erasing a volume the parent
 * already holds needs `--overwrite` (upstream erased it silently, spec §17.8), so a script that passes -f for its
 * block device does not erase a volume by accident.
 */
import * as readline from 'node:readline/promises';
import { parseHashName, renderConfig, type HashName } from '../format/config.js';
import { NODE_OVERFLOW_MAX, NODE_OVERFLOW_MIN, BLOCK_SIZE_MAX, BLOCK_SIZE_MIN } from '../limits.js';
import { parseSize } from '../util/size.js';
import { createVolume } from '../volume/create.js';
import { makeProgram, optionParser, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';

const HELP = `A PARENT that already holds a volume (ddfs.cfg, ddfsroot, the block or index file) is
refused unless --overwrite is given; -f only skips the question about a block device.

Exit status:
  0    volume created
  1    error (the parent already holds a volume, is mounted or missing; I/O error),
       or usage error (bad or missing option)
  2    the user declined to initialise a block device

Examples:
  mkddumbfs -s 100G -B 64k /l0/ddumbfs
  mkddumbfs --overwrite -s 100G -B 64k /l0/ddumbfs     erase the volume and make a new one`;

function parseBlockSize(s: string): number {
  const n = parseSize(s);
  if (n < BLOCK_SIZE_MIN || n > BLOCK_SIZE_MAX || (n & (n - 1)) !== 0) {
    throw new Error(`must be a power of two from ${BLOCK_SIZE_MIN} to ${BLOCK_SIZE_MAX / 1024 / 1024}M`);
  }
  return n;
}

function parseOverflow(s: string): number {
  // ddfs.cfg keeps two decimals and every later reader sizes the table from them: more digits would size the
  // node array for one factor and probe it with another.
  if (!/^\d+(\.\d{1,2})?$/.test(s.trim())) throw new Error('must have at most two decimals, e.g. 1.3');
  const v = Number(s);
  if (!Number.isFinite(v) || v < NODE_OVERFLOW_MIN || v > NODE_OVERFLOW_MAX) {
    throw new Error(`must be a number from ${NODE_OVERFLOW_MIN} to ${NODE_OVERFLOW_MAX}`);
  }
  return v;
}

function parseHash(s: string): HashName {
  const h = parseHashName(s);
  if (!h) throw new Error('must be one of SHA1, TIGER, TIGER128, TIGER160');
  return h;
}

async function askYesNo(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/** Run mkddumbfs with `argv` (arguments after the command name). */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram('mkddumbfs', 'Create a ddumbfs volume in PARENT (an existing directory).', HELP)
    .argument('<parent>', 'parent directory of the volume')
    .option('-s, --size <SIZE>', 'block file size (k, M, G, T suffixes = powers of 1024); required for a regular file', optionParser('size', parseSize))
    .option('-B, --block-size <SIZE>', 'block size, a power of two from 512 to 2M', optionParser('block size', parseBlockSize), 128 * 1024)
    .option('-H, --hash <HASH>', 'SHA1, TIGER, TIGER128 or TIGER160', optionParser('hash', parseHash), 'TIGER' as HashName)
    .option('-o, --overflow <F>', 'index over-allocation factor, 1.1 to 10.0', optionParser('overflow', parseOverflow), 1.3)
    .option('-i, --index <PATH>', 'index file: relative to PARENT, absolute, or a block device (default ddfsidx)', '')
    .option('-b, --block <PATH>', 'block file: relative to PARENT, absolute, or a block device (default ddfsblocks)', '')
    .option('-a, --asap', 'reuse freed blocks as soon as possible after a reclaim', false)
    .option('-f, --force', 'initialise a block device without asking', false)
    .option('--overwrite', 'erase the volume PARENT already holds (every file in it is lost)', false);
  return runCommand('mkddumbfs', program, argv, async () => {
    const [parent] = program.args as [string];
    const o = program.opts<{
      size?: number; blockSize: number; hash: HashName; overflow: number; index: string; block: string; asap: boolean;
      force: boolean; overwrite: boolean;
    }>();
    if (o.size === undefined && !(o.block || '').startsWith('/dev/')) throw new UsageError('the block file size -s is required');
    let declined: string | null = null;
    const cfg = await createVolume(parent, {
      partitionSize: o.size ?? 0,
      blockSize: o.blockSize,
      hashName: o.hash,
      nodeOverflow: o.overflow,
      reuseAsap: o.asap,
      blockFilename: o.block,
      indexFilename: o.index,
      overwrite: o.overwrite,
      onWarning: (message) => process.stderr.write(`mkddumbfs: warning: ${message}\n`),
      confirmDevice: async (dev) => {
        if (o.force) return true;
        const yes = await askYesNo(`Do you really want to initialize this block device: ${dev} (y/N)? `);
        if (!yes) declined = dev;
        return yes;
      },
    }).catch((err) => {
      if (declined !== null) return null;
      throw err;
    });
    if (!cfg) {
      // without a terminal the question cannot be asked: say why nothing was done
      process.stderr.write(`mkddumbfs: ${declined}: not initialised (answer y, or give -f to initialise without asking)\n`);
      return EXIT.DECLINED;
    }
    process.stdout.write(`ddumbfs initialized in ${parent}\n${renderConfig(cfg)}`);
    return EXIT.OK;
  });
}
