/**
 * migrateddumbfs [-v] [-p] [-f] SRC DST — copy the index and the tree of the offline volume SRC into the empty
 * volume DST of another size, made by mkddumbfs with the same block size and hash (spec §13.1; volume/migrate.ts).
 * The block file is not moved: the command reminds the user to do it, as upstream does.
 */
import { DdfsError } from '../errors.js';
import { resolveVolumePath } from '../store/block_store.js';
import { Logger, clockText } from '../util/log.js';
import { migrateVolume } from '../volume/migrate.js';
import { findParent, readVolumeConfig } from '../volume/volume.js';
import { makeProgram, runCommand } from './common.js';
import { EXIT } from './exit_codes.js';
import { ProgressView } from './progress_view.js';

const NAME = 'migrateddumbfs';

const HELP = `SRC and DST are volume parent directories (or paths inside them); both must be offline.
DST must be empty (fresh from mkddumbfs) with the same block size and hash as SRC, and hold
every block SRC uses below its block_count (shrinking: fsckddumbfs -n -k SRC first).
Directories, modes, owners, times, xattrs, symlinks, hard links and special files are kept.
Afterwards move SRC's block file over DST's (resizeddumbfs does all of this in one safe step).

Exit status:
  0    migrated; also when some files were bad (invalid header, partial node, size
       mismatch): they are reported on stderr, counted ("bad files: N") and not migrated,
       and the status stays 0 as in ddumbfs 1.1
  1    error (volume mounted or in use, geometry mismatch, DST not empty or too small, I/O
       error) or usage error
  130  interrupted

Example:
  fsckddumbfs -n -k /l0/old && mkddumbfs -s 50G -B 64k /l0/new && migrateddumbfs -p /l0/old /l0/new`;

interface Options { verbose?: boolean; progress?: boolean; force?: boolean }

/** Run migrateddumbfs with `argv` (arguments after the command name). */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Migrate an offline ddumbfs volume into an empty volume of another size.', HELP)
    .argument('<src>', 'the source volume parent directory')
    .argument('<dst>', 'the destination volume parent directory (empty, same block size and hash)')
    .option('-v, --verbose', 'log every file migrated')
    .option('-p, --progress', 'plain progress lines on stderr, also on a terminal (a terminal gets a spinner without it)')
    .option('-f, --force', 'migrate a source that was not cleanly unmounted (.autofsck) without a repair first');
  return runCommand(NAME, program, argv, async () => {
    const o = program.opts<Options>();
    const [srcArg, dstArg] = program.args as [string, string];
    const src = findParent(srcArg);
    if (!src) throw new DdfsError('NOT_FOUND', `${srcArg}: not inside a ddumbfs volume`, { path: srcArg });
    const dst = findParent(dstArg);
    if (!dst) throw new DdfsError('NOT_FOUND', `${dstArg}: not inside a ddumbfs volume`, { path: dstArg });
    const view = await ProgressView.create({ plain: o.progress === true, plainLine: (t) => `${clockText(new Date())} INF progress ${t}\n` });
    const logger = new Logger((line) => view.write(line));
    let r;
    try {
      r = await migrateVolume(src, dst, { logger, verbose: o.verbose, force: o.force, progress: (e) => view.update(e) });
    } finally {
      view.stop();
    }
    const srcBlocks = resolveVolumePath(src, (await readVolumeConfig(src)).blockFilename);
    const dstBlocks = resolveVolumePath(dst, (await readVolumeConfig(dst)).blockFilename);
    process.stdout.write(`migrated ${r.nodes} index nodes, ${r.files} files, ${r.directories} directories, ${r.symlinks} symlinks, ` +
      `${r.specials} special files, ${r.hardLinks} hard links in ${r.seconds.toFixed(1)}s; bad files: ${r.badFiles}\n`);
    process.stdout.write(`don't forget to handle the blockfile manually: move ${srcBlocks} to ${dstBlocks}\n`);
    // as ddumbfs 1.1: bad files are reported and counted, and the exit status stays 0 (its nftw callback never fails)
    if (r.badFiles > 0) process.stderr.write(`${NAME}: warning: ${r.badFiles} bad files were not migrated (listed above)\n`);
    return EXIT.OK;
  });
}
