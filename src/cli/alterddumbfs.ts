/**
 * alterddumbfs [options] parent-directory — damage an offline volume on purpose, to test fsckddumbfs (spec §13.2).
 * The work is in src/alter/alter.ts; this file parses options and prints one line per alteration on stdout.
 */
import { Option } from 'commander';
import { DdfsError } from '../errors.js';
import { alterVolume, FILE_OPERATIONS, requestIsEmpty, type AlterRequest, type FileOperation } from '../alter/alter.js';
import type { NodeAlterationKind } from '../alter/index_nodes.js';
import { findParent } from '../volume/volume.js';
import { makeProgram, optionParser, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';
import { bumpMasterGeneration } from '../mirror/state.js';

const NAME = 'alterddumbfs';

const HELP = `For tests only: every option damages the volume. The volume must not be mounted.
.autofsck is always created, so the next mount or fsckddumbfs -n treats the volume as crashed.
Alterations run in this order: -u, -f, -s -S -r -d -p -a -c, -i, -k, -I, -B.

Exit status:
  0    the volume was altered
  1    error (volume mounted or unreadable, I/O error) or usage error

Examples:
  alterddumbfs -n 42 -i 5 /l0/ddumbfs        five rounds of every index alteration
  alterddumbfs -n 42 -f /l0/ddumbfs          the funny files
  alterddumbfs -I truncate /l0/ddumbfs       then: fsckddumbfs -r /l0/ddumbfs`;

function parseCount(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error('must be a non-negative integer');
  return n;
}

function parseSeed(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new Error('must be an integer from 0 to 4294967295');
  return n;
}

function parseFileOperation(s: string): FileOperation {
  if (!(FILE_OPERATIONS as readonly string[]).includes(s)) throw new Error(`must be one of ${FILE_OPERATIONS.join(', ')}`);
  return s as FileOperation;
}

interface Opts {
  swap?: number;
  swapRandom?: number;
  zero?: number;
  duplicate?: number;
  duplicateInPlace?: number;
  exchange?: number;
  corrupt?: number;
  all?: number;
  unexpectedShutdown?: boolean;
  funnyFiles?: boolean;
  index?: FileOperation;
  block?: FileOperation;
  shake: string[];
  seed?: number;
  lockIndex?: boolean;
  verbose?: boolean;
}

/** Run alterddumbfs with `argv` (arguments after the command name). @returns the exit code */
export async function main(argv: string[]): Promise<number> {
  const count = (what: string) => optionParser(what, parseCount);
  const program = makeProgram(NAME, 'Damage the offline ddumbfs volume in PARENT (or any path inside it) to test fsckddumbfs.', HELP)
    .argument('<parent>', 'parent directory of the volume')
    .option('-s, --swap <N>', 'swap N times two consecutive non-empty index nodes', count('count'))
    .option('-S, --swap-random <N>', 'swap N times two random non-empty index nodes', count('count'))
    .option('-r, --zero <N>', 'zero N random non-empty index nodes', count('count'))
    .option('-d, --duplicate <N>', 'copy N random non-empty nodes into random empty nodes', count('count'))
    .option('-p, --duplicate-in-place <N>', 'copy N random non-empty nodes over their successor', count('count'))
    .option('-a, --exchange <N>', 'exchange the addresses of two random non-empty nodes, N times', count('count'))
    .option('-c, --corrupt <N>', 'write random bytes into the hash of N random nodes', count('count'))
    .option('-i, --all <N>', 'N rounds of all the node alterations above', count('count'))
    .option('-u, --unexpected-shutdown', 'simulate a crash: checkpoint, then a recoverable and an unrecoverable block and file')
    .option('-f, --funny-files', 'create the ff_* files (bad headers, wrong sizes, lost and recoverable blocks...)')
    .addOption(new Option('-I, --index <OP>', `alter the index file: ${FILE_OPERATIONS.join(', ')}`).argParser(optionParser('index operation', parseFileOperation)))
    .addOption(new Option('-B, --block <OP>', `alter the block file: ${FILE_OPERATIONS.join(', ')}`).argParser(optionParser('block operation', parseFileOperation)))
    .option('-k, --shake <FILE>', 'replace the block addresses of FILE (a UFS path, or relative to ddfsroot) by random ones; repeatable',
      (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('-n, --seed <SEED>', 'seed of the random choices (default: from the clock, printed)', optionParser('seed', parseSeed))
    .option('-l, --lock-index', 'accepted for compatibility (the index is held in memory anyway)')
    .option('-v, --verbose', 'also print the seed and the volume');
  return runCommand(NAME, program, argv, async () => {
    const [target] = program.args as [string];
    const o = program.opts<Opts>();
    const nodes: Partial<Record<NodeAlterationKind, number>> = {
      'swap-consecutive': o.swap ?? 0,
      'swap-random': o.swapRandom ?? 0,
      zero: o.zero ?? 0,
      'duplicate-empty': o.duplicate ?? 0,
      'duplicate-in-place': o.duplicateInPlace ?? 0,
      'exchange-addresses': o.exchange ?? 0,
      'random-bytes': o.corrupt ?? 0,
    };
    const request: AlterRequest = {
      nodes, rounds: o.all ?? 0, crash: o.unexpectedShutdown === true, funny: o.funnyFiles === true,
      indexFile: o.index, blockFile: o.block, shakeFiles: o.shake,
    };
    if (requestIsEmpty(request)) throw new UsageError('nothing to do: give at least one alteration (see --help)');
    const parent = findParent(target);
    if (!parent) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume (no ddfs.cfg and ddfsroot found)`);
    const seed = o.seed ?? (Date.now() % 0x100000000);
    if (o.verbose || o.seed === undefined) process.stdout.write(`seed ${seed} (replay with -n ${seed})\n`);
    if (o.verbose) process.stdout.write(`volume ${parent}\n`);
    await alterVolume(parent, request, {
      seed,
      // alterations are not journaled: a mirror master's generation goes up (its slaves take a content pass)
      beforeChange: (p) => void bumpMasterGeneration(p),
      displayParent: target.replace(/\/+$/, '') || target,
      out: (line) => process.stdout.write(`${line}\n`),
    });
    if (o.verbose) process.stdout.write(`created ${parent}/.autofsck\n`);
    return EXIT.OK;
  });
}
