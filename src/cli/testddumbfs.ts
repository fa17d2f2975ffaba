/**
 * testddumbfs: write, compare and time reproducible pseudo-random files (spec §14).
 *
 *   testddumbfs [options] TARGET
 *
 * Operations (-o): F create the file TARGET, C compare the file TARGET with what F would write (same -B -S -s -m -f),
 * 1/2/R speed tests in the directory TARGET (first write, second write of identical files, read back).
 * This file only parses options and prints; the work is in src/testgen/.
 *
 * Exit status (exit_codes.ts): 0 ok, 1 error, difference found or usage error (as upstream).
 */
import { Command, CommanderError } from 'commander';
import { DdfsError, messageOf } from '../errors.js';
import { parseSize } from '../util/size.js';
import { compareGeneratedFile, writeGeneratedFile, type GenerateOptions } from '../testgen/genfile.js';
import { averageOf, runSpeedTest, type FileTiming, type SpeedPhase } from '../testgen/speed.js';
import { EXIT } from './exit_codes.js';
import { versionLine } from './version.js';

const PROGRAM = 'testddumbfs';

/** Exit codes of this command, from the shared table (repeated in --help and testddumbfs(8)). */
export const EXIT_OK = EXIT.OK;
export const EXIT_ERROR = EXIT.ERROR;
export const EXIT_USAGE = EXIT.USAGE;

/** Where the command prints; the defaults are the process streams, tests pass collectors. */
export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
}

const processOutput: CliOutput = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

const HELP_AFTER = `
Operations (-o), either file operations on the file TARGET:
  F   create TARGET (no truncation) with the generated content, then fsync
  C   compare TARGET with the generated content; on the first different or
      missing block print "difference in block starting at: OFFSET", exit 1
      (-B -S -s -m -f must be those used with F)
or speed tests in the directory TARGET (always run in the order 1, 2, R):
  1   first write of files dataNNNNNN-0.bin, file i with seed SEED+i
  2   second write: dataNNNNNN-1.bin with identical content (dedup speed)
  R   read the dataNNNNNN-0.bin files back

Sizes take a k, M, G or T suffix (powers of 1024). MASK is decimal, 0x hex or
0 octal; OR-ing it into every word makes the data compressible.

Exit status: 0 ok, 1 error, difference found or usage error.
`;

interface ParsedOptions {
  operation: string;
  blockSize: string;
  fileSize: string;
  count: string;
  seed: string;
  mask: string;
  fast?: boolean;
  verbose?: boolean;
}

function usageError(message: string): DdfsError {
  return new DdfsError('USAGE', message);
}

/** A decimal integer (optionally signed), e.g. the seed; upstream used atoi. */
function parseInteger(text: string, what: string): bigint {
  if (!/^[+-]?\d+$/.test(text.trim())) throw usageError(`invalid ${what} '${text}' (expected an integer)`);
  return BigInt(text.trim());
}

/**
 * Parse like C strtoll with base 0: optional sign, then `0x`/`0X` hex, a leading `0` octal, else decimal.
 * The result is taken modulo 2^64 (so `-1` sets every bit). Anything after the number is an error.
 */
export function parseMask(text: string): bigint {
  const match = /^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/.exec(text.trim());
  if (match === null) throw usageError(`invalid mask '${text}' (expected decimal, 0x hex or 0 octal)`);
  const [, sign, digits] = match as unknown as [string, string, string];
  let value: bigint;
  if (/^0[xX]/.test(digits)) value = BigInt(digits.toLowerCase());
  else if (digits.length > 1 && digits.startsWith('0')) value = BigInt(`0o${digits.slice(1)}`);
  else value = BigInt(digits);
  if (value >= 1n << 64n) throw usageError(`mask does not fit in 64 bits: '${text}'`);
  return BigInt.asUintN(64, sign === '-' ? -value : value);
}

type Plan =
  | { kind: 'file'; operations: ReadonlyArray<'F' | 'C'> }
  | { kind: 'speed'; phases: ReadonlyArray<SpeedPhase> };

/** Validate the -o letters: all file operations (F, C, in the given order) or all speed tests (1, 2, R). */
export function parseOperations(text: string): Plan {
  if (text.length === 0) throw usageError('no operation given (-o)');
  const letters = [...text];
  for (const letter of letters) {
    if ('B' === letter || 'S' === letter || 'M' === letter) {
      throw usageError(`operation '${letter}' of upstream testddumbfs is not supported`);
    }
    if (!'FC12R'.includes(letter)) throw usageError(`unknown operation '${letter}' (use F, C, 1, 2 or R)`);
  }
  const fileOps = letters.filter((l) => l === 'F' || l === 'C') as Array<'F' | 'C'>;
  if (fileOps.length === letters.length) return { kind: 'file', operations: fileOps };
  if (fileOps.length > 0) throw usageError(`cannot mix file operations (F, C) with speed tests (1, 2, R): '${text}'`);
  const phases: SpeedPhase[] = [];
  if (letters.includes('1')) phases.push('first write');
  if (letters.includes('2')) phases.push('second write');
  if (letters.includes('R')) phases.push('read');
  return { kind: 'speed', phases };
}

function buildProgram(output: CliOutput): Command {
  return new Command(PROGRAM)
    .description('write, compare and time reproducible pseudo-random files (ddumbfs test tool)')
    .usage('[options] TARGET')
    .argument('<target>', 'file (operations F, C) or directory (operations 1, 2, R)')
    .option('-o, --operation <ops>', 'operations to run: F, C, or any of 1 2 R', '12R')
    .option('-B, --block-size <size>', 'generator block size, a multiple of 8', '128K')
    .option('-S, --file-size <size>', 'file size, rounded up to whole blocks', '1024M')
    .option('-c, --count <n>', 'number of files per speed test, 0 = forever', '4')
    .option('-s, --seed <n>', 'random seed (speed tests: file i uses SEED+i)', '0')
    .option('-m, --mask <mask>', 'OR-ed into every 64-bit word', '0')
    .option('-f, --fast', 'fast mode: after the first block only 3 words change per block')
    .option('-v, --verbose', 'print parameters and per-file details')
    .helpOption('-h, --help', 'show this help and exit')
    .version(versionLine(PROGRAM), '--version', 'print the version and exit')
    .addHelpText('after', HELP_AFTER)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => output.out(text),
      writeErr: (text) => output.err(text),
      // Errors are printed once, in our format, by main().
      outputError: () => undefined,
    });
}

function pad(value: number, width: number, decimals: number): string {
  return value.toFixed(decimals).padStart(width);
}

/** One speed-test line: `     1      1.23 s    812.00 MB/s     95.00 %` (MB = 2^20 bytes, as upstream). */
function timingLine(label: string, seconds: number, mibPerSecond: number, cpuPercent: number): string {
  return `${label}    ${pad(seconds, 6, 2)} s    ${pad(mibPerSecond, 6, 2)} MB/s    ${pad(cpuPercent, 6, 2)} %\n`;
}

async function runFileOperations(
  target: string,
  operations: ReadonlyArray<'F' | 'C'>,
  options: GenerateOptions,
  verbose: boolean,
  output: CliOutput,
): Promise<number> {
  for (const operation of operations) {
    const start = process.hrtime.bigint();
    if (operation === 'F') {
      const size = await writeGeneratedFile(target, options);
      if (verbose) output.err(`wrote ${size} bytes to ${target}${rate(size, start)}\n`);
    } else {
      const result = await compareGeneratedFile(target, options);
      if (!result.equal) {
        output.out(`difference in block starting at: ${result.offset}\n`);
        return EXIT_ERROR;
      }
      if (verbose) output.err(`compared ${result.size} bytes of ${target}: identical${rate(result.size, start)}\n`);
    }
  }
  return EXIT_OK;
}

function rate(size: number, start: bigint): string {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return ` in ${seconds.toFixed(2)} s (${(size / 1048576 / Math.max(seconds, 1e-9)).toFixed(2)} MB/s)`;
}

async function runSpeed(
  target: string,
  phases: ReadonlyArray<SpeedPhase>,
  options: GenerateOptions & { count: number },
  verbose: boolean,
  output: CliOutput,
): Promise<number> {
  if (verbose) {
    output.err(
      `seed=${options.seed} mask=0x${options.mask.toString(16)} block_size=${options.blockSize} ` +
        `file_size=${options.fileSize} count=${options.count}${options.fast ? ' fast' : ''}\n`,
    );
  }
  const results = await runSpeedTest(target, { ...options, phases }, {
    phaseStart: (phase) => output.out(`== ${phase}\n`),
    fileDone: (t: FileTiming) => {
      output.out(timingLine(String(t.index + 1).padStart(6), t.seconds, t.mibPerSecond, t.cpuPercent));
      if (verbose) output.err(`${t.path}: ${t.size} bytes\n`);
    },
    phaseDone: (_phase, timings) => {
      const avg = averageOf(timings);
      output.out(timingLine('  avg:', avg.seconds, avg.mibPerSecond, avg.cpuPercent));
    },
  });
  // Summary: one row per file, then the averages; per phase "MB/s CPU%".
  output.out('== stats\n');
  output.out(`${'file'.padStart(6)}${phases.map((p) => `    ${p.padStart(13)}`).join('')}\n`);
  const rows = options.count;
  for (let i = 0; i <= rows; i++) {
    const label = i === rows ? '  avg:' : String(i + 1).padStart(6);
    const cells = phases.map((phase) => {
      const timings = results.get(phase) ?? [];
      const figures = i === rows ? averageOf(timings) : timings[i];
      return figures === undefined ? `    ${''.padStart(13)}` : `    ${pad(figures.mibPerSecond, 7, 2)} ${pad(figures.cpuPercent, 5, 1)}`;
    });
    output.out(`${label}${cells.join('')}\n`);
  }
  return EXIT_OK;
}

/**
 * Run testddumbfs with `argv` (the arguments after the program name).
 * @returns the exit status: 0 ok, 1 error, difference or usage error.
 */
export async function main(argv: string[], output: CliOutput = processOutput): Promise<number> {
  const program = buildProgram(output);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      output.err(`${PROGRAM}: ${err.message.replace(/^error: /, '')}\n`);
      return EXIT_USAGE;
    }
    output.err(`${PROGRAM}: ${messageOf(err)}\n`);
    return EXIT_ERROR;
  }

  const target = program.args[0]!;
  const raw = program.opts<ParsedOptions>();
  let plan: Plan;
  let options: GenerateOptions & { count: number };
  try {
    plan = parseOperations(raw.operation);
    const count = parseInteger(raw.count, 'count');
    if (count < 0n || count > BigInt(Number.MAX_SAFE_INTEGER)) throw usageError(`invalid count '${raw.count}'`);
    options = {
      blockSize: parseSize(raw.blockSize),
      fileSize: parseSize(raw.fileSize),
      count: Number(count),
      seed: BigInt.asUintN(64, parseInteger(raw.seed, 'seed')),
      mask: parseMask(raw.mask),
      fast: raw.fast === true,
    };
    if (options.blockSize === 0 || options.blockSize % 8 !== 0) {
      throw usageError(`block size must be a positive multiple of 8: '${raw.blockSize}'`);
    }
  } catch (err) {
    output.err(`${PROGRAM}: ${messageOf(err)}\n`);
    return EXIT_USAGE;
  }

  try {
    if (plan.kind === 'file') {
      return await runFileOperations(target, plan.operations, options, raw.verbose === true, output);
    }
    return await runSpeed(target, plan.phases, options, raw.verbose === true, output);
  } catch (err) {
    const usage = err instanceof DdfsError && err.code === 'USAGE';
    output.err(`${PROGRAM}: ${messageOf(err)}\n`);
    return usage ? EXIT_USAGE : EXIT_ERROR;
  }
}
