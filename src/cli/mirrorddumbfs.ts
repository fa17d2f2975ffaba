/**
 * mirrorddumbfs COMMAND — replicate a ddumbfs volume (mirroring spec §4.16; issue 7). For now `dump`, which
 * decodes a DDMS stream on stdin for humans, and `verify`, which compares two local volumes by content (§4.11);
 * the replication commands come next.
 *
 * Output: dump lines on stdout; a fault of the stream as one line on stderr. Exit status (style.md, new commands):
 * 0 ok, 1 error or difference found, 2 usage, 130 interrupted.
 */
import * as fsp from 'node:fs/promises';
import { DdfsError } from '../errors.js';
import { VolumeDigests, type EntryKind, type TreeAccess, type TreeEntryMeta } from '../mirror/digest.js';
import { dumpLines } from '../mirror/dump.js';
import { renderVerifyLine, verifyLineJson, verifyTrees, type VerifyLine } from '../mirror/verify.js';
import { makeProgram, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';

const NAME = 'mirrorddumbfs';

const HELP = `dump and verify exist so far. Coming (issue 7): init-slave, copy, read, write, status,
promote and serve, which replicate a volume to a slave over a pipe or ssh.

Exit status:
  0    success
  1    error (a corrupt or truncated stream, I/O error) or difference found
  2    usage error
  130  interrupted

Examples:
  mirrorddumbfs dump < pass.ddms
  mirrorddumbfs dump --full < pass.ddms | less
  mirrorddumbfs verify /l0/ddumbfs /mnt/usb/replica --deep`;

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

const VERIFY_HELP = `Compares volume A (the reference) with volume B by content: Merkle digests of the UFS trees
computed from node lists and metadata, descending only into directories whose digests differ.
Reads no claim, state or journal. Opens both volumes read-only and changes nothing.
One line per difference, in canonical order (names sorted bytewise), then each volume's findings:
  MISSING P                 P is in A, not in B
  EXTRA P                   P is in B, not in A
  DIFF P WHAT               WHAT: type, size, hashes@I (first differing block I), mode, uid, gid,
                            mtime, link (hard-link group), target (symlink), rdev (device)
  CORRUPT P block I on A|B  block I is lost (address 1), or (--deep) does not hash to its node
  DANGLING P HASH on A|B    a node names a block the volume does not have (beyond the block file,
                            or a hash its index does not hold at that address)
P is the path from the root with a leading /, quoted; space, \\, " and bytes that are not
printable ASCII as \\xHH. Directory mtimes are never compared; extended attributes and
atimes are not compared yet.
A mounted volume is read from its UFS tree as it is on disk: the result is only exact when
nothing writes to it during the verify, and its index file is not checked (DANGLING then means
beyond the block file only).

Exit status:
  0    no difference and no finding
  1    at least one line printed, or an error (a volume cannot be read)
  2    usage error, or the volumes differ in block size or hash algorithm`;

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
  program
    .command('verify')
    .description('compare two volumes by content: MISSING, EXTRA, DIFF, CORRUPT and DANGLING lines')
    .argument('<A>', 'the reference volume (parent directory)')
    .argument('<B>', 'the volume compared with it (parent directory)')
    .option('--deep', 're-read and re-hash every referenced block on both sides')
    .option('--json', 'print one JSON document instead of lines')
    .option('--no-mtime', 'do not compare mtimes')
    .addHelpText('after', `\n${VERIFY_HELP}`)
    .action((a: string, b: string, opts: { deep?: boolean; json?: boolean; mtime: boolean }) => {
      action = () => verify(a, b, { deep: opts.deep === true, json: opts.json === true, mtime: opts.mtime });
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

/** The metadata calls of digests, on the real file system (node:fs stays in cli/ and io/: style.md). */
export const nodeTreeAccess: TreeAccess = {
  async lstat(p: Buffer): Promise<TreeEntryMeta> {
    const st = await fsp.lstat(p, { bigint: true });
    const kind: EntryKind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink'
      : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'socket';
    return {
      kind,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
      ino: st.ino,
      nlink: Number(st.nlink),
      rdev: Number(st.rdev),
      dev: Number(st.dev),
    };
  },
  async readlink(p: Buffer): Promise<Buffer> {
    return fsp.readlink(p, { encoding: 'buffer' });
  },
};

/** `[user@]host:PATH` as rsync reads it: a colon before the first slash. */
function isRemote(endpoint: string): boolean {
  return /^[^/]*:/.test(endpoint);
}

async function verify(a: string, b: string, options: { deep: boolean; json: boolean; mtime: boolean }): Promise<number> {
  for (const e of [a, b]) {
    if (isRemote(e)) throw new UsageError(`${e}: remote volumes are not supported by verify yet (a local path with a colon: ./${e})`);
  }
  const open = (p: string): Promise<VolumeDigests> => VolumeDigests.open(p, { access: nodeTreeAccess, deep: options.deep, mtime: options.mtime });
  const ta = await open(a);
  let tb: VolumeDigests;
  try {
    tb = await open(b);
  } catch (err) {
    await ta.close();
    throw err;
  }
  try {
    for (const t of [ta, tb]) {
      if (t.mountPoint !== null) {
        process.stderr.write(`${NAME}: ${t.label} is mounted on ${t.mountPoint}: read as it is on disk; exact only if nothing writes during the verify\n`);
      }
    }
    const lines: VerifyLine[] = [];
    let count = 0;
    for await (const l of verifyTrees(ta, tb)) {
      count++;
      if (options.json) lines.push(l);
      else process.stdout.write(`${renderVerifyLine(l)}\n`);
    }
    if (options.json) {
      const doc = { a: ta.parentDir, b: tb.parentDir, deep: options.deep, mtime: options.mtime, count, lines: lines.map(verifyLineJson) };
      process.stdout.write(`${JSON.stringify(doc)}\n`);
    }
    return count === 0 ? EXIT.OK : EXIT.ERROR;
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'USAGE') throw new UsageError(err.message);
    throw err;
  } finally {
    await Promise.all([ta.close(), tb.close()]);
  }
}
