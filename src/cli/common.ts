/**
 * What every command shares: a commander program that reports usage errors as one line, and a runner that turns any
 * thrown error into a one-line message and an exit code from exit_codes.ts (never a stack trace).
 */
import * as fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DdfsError, messageOf } from '../errors.js';
import { EXIT, EXIT_HELP } from './exit_codes.js';
import { versionLine } from './version.js';

/** Thrown by option parsers for bad values; reported as a usage error. */
export class UsageError extends Error {}

/**
 * A commander program for `name` that never calls process.exit itself; `--version` (and `versionFlags`, e.g.
 * '-V, --version') prints {@link versionLine} and exits 0.
 */
export function makeProgram(name: string, description: string, extraHelp = EXIT_HELP, versionFlags = '--version'): Command {
  const program = new Command(name);
  program
    .description(description)
    .version(versionLine(name), versionFlags, 'print the version and exit')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(s.startsWith(`${name}:`) ? s : `${name}: ${s.replace(/^error: /, '')}`),
    })
    .helpOption('-h, --help', 'show this help')
    .addHelpText('after', `\n${extraHelp}`)
    .showHelpAfterError(false);
  return program;
}

/**
 * Parse `argv` with `program` and run `action`; map errors to exit codes.
 * A usage error is a commander error, a {@link UsageError} or a DdfsError with code USAGE.
 * @param usageExit the command's code for a usage error: EXIT.USAGE (1, as ddumbfs 1.1) unless the command has its
 *   own (mirrorddumbfs: EXIT.MIRROR_USAGE)
 * @returns the exit code (help and version give 0, usage errors `usageExit`, operating errors 1)
 */
export async function runCommand(
  name: string, program: Command, argv: string[], action: () => Promise<number>, usageExit: number = EXIT.USAGE,
): Promise<number> {
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      return usageExit;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      return usageExit;
    }
    throw err;
  }
  try {
    return await action();
  } catch (err) {
    if (err instanceof UsageError || (err instanceof DdfsError && err.code === 'USAGE')) {
      process.stderr.write(`${name}: ${messageOf(err)}\n`);
      return usageExit;
    }
    process.stderr.write(`${name}: ${messageOf(err)}\n`);
    if (process.env.DDUMBFS_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return EXIT.ERROR;
  }
}

/** An option parser that throws UsageError with the option's name. */
export function optionParser<T>(what: string, parse: (s: string) => T): (s: string) => T {
  return (s: string) => {
    try {
      return parse(s);
    } catch (err) {
      const m = messageOf(err);
      throw new UsageError(m.includes(`'${s}'`) ? m : `invalid ${what} '${s}': ${m}`);
    }
  };
}

// A reader that goes away (`mkddumbfs --help | head`) ends output quietly instead of crashing on EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

/**
 * The raw bytes of a command-line argument. Node decodes argv as UTF-8 and replaces invalid bytes by U+FFFD, so a
 * path naming a file whose name is not UTF-8 no longer reaches it; the kernel keeps the bytes in
 * /proc/self/cmdline. For an argument holding U+FFFD, the cmdline entry (searched from the end, where the
 * command's own arguments are) that decodes to exactly this string and is not valid UTF-8 is returned as a Buffer.
 * @returns `arg` itself when it was valid UTF-8 or no such entry is found (no /proc: the lossy string)
 */
export function rawArgument(arg: string): string | Buffer {
  if (!arg.includes('\uFFFD')) return arg;
  let cmdline: Buffer;
  try {
    cmdline = fs.readFileSync('/proc/self/cmdline');
  } catch {
    return arg;
  }
  const entries: Buffer[] = [];
  let start = 0;
  for (let k = 0; k < cmdline.length; k++) {
    if (cmdline[k] === 0) {
      entries.push(cmdline.subarray(start, k));
      start = k + 1;
    }
  }
  for (let k = entries.length - 1; k >= 0; k--) {
    const e = entries[k]!;
    const s = e.toString('utf8');
    if (s === arg && !Buffer.from(s, 'utf8').equals(e)) return Buffer.from(e);
  }
  return arg;
}
