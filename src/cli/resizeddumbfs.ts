/**
 * resizeddumbfs [-v] [-p] PARENT NEWSIZE — resize an offline volume in place (beyond upstream; spec §13.1 as one
 * command that an interruption at any step leaves with the old or the new volume intact: cli/resize.ts).
 */
import { DdfsError } from '../errors.js';
import { Logger, clockText } from '../util/log.js';
import { parseSize } from '../util/size.js';
import { findParent } from '../volume/volume.js';
import { makeProgram, optionParser, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';
import { ProgressView } from './progress_view.js';
import { RESIZE_KILL_POINTS, ResizeRefused, resizeVolume, type ResizeKillPoint } from './resize.js';

const NAME = 'resizeddumbfs';

const HELP = `NEWSIZE is the new block-file size as mkddumbfs -s takes it (k, M, G, T = powers of 1024).
Block size, hash, overflow and reuse_asap are kept; addr_size follows the new block count.
Steps: start (intent file), pack (fsckddumbfs -n -k when shrinking), create (mkddumbfs in
the staging directory .NAME.resize-new beside PARENT), migrate, link (the block file), exchange
(atomic swap of the two directories), cleanup. Re-run the same command after an interruption:
before the exchange it rolls back and resizes again, after it it completes.

Exit status:
  0    resized (or already that size, or an interrupted resize completed)
  1    error (mounted or in use, block device or external block/index file, bad files,
       I/O error) or usage error
  2    refused: NEWSIZE holds fewer blocks than are in use (nothing changed)
  130  interrupted

Example:
  resizeddumbfs -p /l0/ddumbfs 200G`;

interface Options { verbose?: boolean; progress?: boolean }

/** Run resizeddumbfs with `argv` (arguments after the command name). */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Grow or shrink an offline ddumbfs volume, safely against interruption.', HELP)
    .argument('<parent>', 'the volume parent directory')
    .argument('<newsize>', 'the new block-file size (mkddumbfs -s)', optionParser('size', parseSize))
    .option('-v, --verbose', 'log every file migrated')
    .option('-p, --progress', 'plain progress lines on stderr, also on a terminal (a terminal gets a spinner without it)');
  return runCommand(NAME, program, argv, async () => {
    const o = program.opts<Options>();
    const [target] = program.args as [string];
    const newSize = program.processedArgs[1] as number;
    const killAt = process.env.DDUMBFS_RESIZE_KILL_AT;
    if (killAt !== undefined && !(RESIZE_KILL_POINTS as readonly string[]).includes(killAt)) {
      throw new UsageError(`DDUMBFS_RESIZE_KILL_AT=${killAt}: not a kill point (${RESIZE_KILL_POINTS.join(', ')})`);
    }
    const parent = findParent(target);
    if (!parent) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume`, { path: target });
    const view = await ProgressView.create({ plain: o.progress === true, plainLine: (t) => `${clockText(new Date())} INF progress ${t}\n` });
    const logger = new Logger((line) => view.write(line));
    try {
      const r = await resizeVolume(parent, newSize, {
        logger, verbose: o.verbose, progress: (e) => view.update(e), killAt: killAt as ResizeKillPoint | undefined,
      });
      if (r.recovered !== 'none') process.stdout.write(`interrupted resize ${r.recovered}\n`);
      if (r.resized && r.oldBlockCount > 0) {
        process.stdout.write(`resized ${parent}: ${r.oldBlockCount} -> ${r.newBlockCount} blocks, addr_size ${r.oldAddrSize} -> ${r.newAddrSize}\n`);
      } else if (!r.resized) {
        process.stdout.write(`${parent}: already ${r.newBlockCount} blocks: nothing to do\n`);
      } else {
        process.stdout.write(`resized ${parent}: ${r.newBlockCount} blocks, addr_size ${r.newAddrSize}\n`);
      }
      return EXIT.OK;
    } catch (err) {
      if (err instanceof ResizeRefused) {
        process.stderr.write(`${NAME}: ${err.message}\n`);
        return EXIT.RESIZE_TOO_SMALL;
      }
      throw err;
    } finally {
      view.stop();
    }
  });
}
