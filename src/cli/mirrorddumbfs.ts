/**
 * mirrorddumbfs COMMAND — replicate a ddumbfs volume (mirroring spec §4.16; issue 7). For now only `dump`, which
 * decodes a DDMS stream on stdin for humans; the replication commands come next.
 *
 * Output: dump lines on stdout; a fault of the stream as one line on stderr. Exit status (style.md, new commands):
 * 0 ok, 1 error or difference found, 2 usage, 130 interrupted.
 */
import { dumpLines } from '../mirror/dump.js';
import { makeProgram, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';

const NAME = 'mirrorddumbfs';

const HELP = `Only dump exists so far. Coming (issue 7): init-slave, copy, read, write, verify, status,
promote and serve, which replicate a volume to a slave over a pipe or ssh.

Exit status:
  0    success
  1    error (a corrupt or truncated stream, I/O error) or difference found
  2    usage error
  130  interrupted

Examples:
  mirrorddumbfs dump < pass.ddms
  mirrorddumbfs dump --full < pass.ddms | less`;

const DUMP_HELP = `Each line: SEQ TYPE @OFFSET+SIZE [flags=...] field=value ...
Paths, names and text are quoted; space, \\, " and every byte that is not printable ASCII are
shown as \\xHH, so no value contains a space.
The last line is "# N records, B bytes, ends with TERM|ERROR". A stream that fails a check
(magic, signature, length bound, CRC32C, seq, running digest, truncation) prints the records
before the fault, then the fault naming its seq on stderr, and exits 1.

Exit status:
  0    the stream decodes completely
  1    the stream is corrupt, truncated or unsupported
  2    usage error (for example standard input is a terminal)`;

/** Run mirrorddumbfs with `argv` (arguments after the command name). @returns the exit code */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Replicate a ddumbfs volume to replicas by content, and inspect mirror streams.', HELP);
  let action: (() => Promise<number>) | null = null;
  program
    .command('dump')
    .description('decode a DDMS stream on standard input, one line per record')
    .option('--full', 'print every hash and path of a list (default: the first 4)')
    .addHelpText('after', `\n${DUMP_HELP}`)
    .action((opts: { full?: boolean }) => {
      action = () => dump(opts.full === true);
    });
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT.USAGE;
  }
  return runCommand(NAME, program, argv, async () => (action === null ? EXIT.USAGE : action()));
}

async function dump(full: boolean): Promise<number> {
  if (process.stdin.isTTY) throw new UsageError('dump reads a stream on standard input (mirrorddumbfs dump < pass.ddms)');
  for await (const line of dumpLines(process.stdin, { full })) process.stdout.write(`${line}\n`);
  return EXIT.OK;
}
