/**
 * cpddumbfs [-h] [-v] [-l] [-c] [-f] [-p] SOURCE TARGET — copy a file into or out of an offline volume (spec §11).
 *
 * Exactly one of SOURCE and TARGET must be inside a volume (walk-up of spec §2): upload if TARGET is, download if
 * SOURCE is. `-` is stdin (upload source) or stdout (download target). A directory target gets the source's base
 * name. All messages go to stderr (stdout may carry the downloaded data).
 *
 * Progress (issue 10; progress_view.ts): bytes, rate and ETA on a spinner when stderr is a terminal, plain lines with
 * `-p` (not an upstream option: upstream's cpddumbfs has no -p), nothing otherwise. Ctrl-C stops at the next chunk
 * (1 MiB) boundary: an upload leaves the UFS file holding the bytes copied so far (size in its header, every node
 * stored and indexed, so the volume stays consistent), a download leaves the first bytes in the target; the command
 * says how much was copied of how much and exits 130.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { DdfsError, messageOf } from '../errors.js';
import { UfsDownload, type DownloadBlockRecord } from '../copy/download.js';
import { fileReader, fileWriter, streamReader, streamWriter, type ByteReader, type ByteWriter } from '../copy/stream_io.js';
import { openVolumeForUpload, uploadFile, type UploadBlockRecord } from '../copy/upload.js';
import { ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { openMasterJournal, type MasterJournal } from '../mirror/master_journal.js';
import { logger } from '../util/log.js';
import { Volume, findParent } from '../volume/volume.js';
import { makeProgram, rawArgument, runCommand, UsageError } from './common.js';
import { joinPathBytes, pathBytes, pathText } from '../util/path_text.js';
import { EXIT } from './exit_codes.js';
import { abortableRead, catchSigint, type SigintGuard } from './interrupt.js';
import { ProgressView } from './progress_view.js';
import { byteText } from '../util/progress.js';

const NAME = 'cpddumbfs';

const HELP = `One and only one of SOURCE and TARGET must be inside a ddumbfs volume (its parent directory,
or anything below it). Use - for stdin (upload) or stdout (download).
Upload needs an unmounted volume without .autofsck or .rebuildfsck; download works on a mounted one
(results are not consistent if the file is being written at the same time).
Uploaded UFS files are created with mode 0600, downloaded files too (as the original cpddumbfs).

Block lines (stderr): upload -v: "BLOCK ADDRESS HASH..." (first 8 hash bytes in hex);
download: "BLOCK ADDRESS HASH STATUS", printed with -v, or for a block whose STATUS is not ok:
  corrupted   lost block (address 1), or partial/missing node with -f: zeros written
  bad         address 0 (zero block) with a foreign hash: zeros written        (-c)
  err         the block's content does not match its hash: written as read    (-c)
  corrected   another block with the right content was found and written       (-c)
  unreadable  the block cannot be read (-f): zeros where unreadable
With -c the last line is OK or ERR.

Progress: bytes copied, rate and ETA on a spinner when stderr is a terminal;
with -p, plain lines instead (no terminal codes), one every 5 s; else nothing.
Ctrl-C stops at the next 1 MiB boundary and says what was copied: an upload
leaves TARGET holding the bytes copied so far (the volume stays consistent),
a download leaves the first bytes in TARGET.

Exit status:
  0    success (download: the file's integrity is intact)
  1    error: volume mounted or needing a check, missing file, bad header, I/O error,
       or (download) a lost, bad, unreadable or mismatching block; or usage error
  130  interrupted (Ctrl-C): the copy is incomplete

Examples:
  cpddumbfs -c /l0/ddumbfs/ddfsroot/data /tmp
  cpddumbfs /tmp/data /l0/ddumbfs/ddfsroot`;

interface Options {
  verbose?: boolean;
  /** -l: accepted and ignored (upstream mlocks the index; ours is always in memory). */
  lock_index?: boolean;
  check?: boolean;
  force?: boolean;
  progress?: boolean;
}

/** What a copy needs besides the options: where progress goes, and the Ctrl-C signal. */
interface CopyContext {
  view: ProgressView;
  sigint: SigintGuard;
}

/** `%6d %6d %016x` of a block line: block number, address, first 8 hash bytes as hex. */
function blockLinePrefix(index: number, address: number, hash: Buffer): string {
  return `${String(index).padStart(6)} ${String(address).padStart(6)} ${hash.subarray(0, 8).toString('hex').padStart(16, '0')}`;
}

/** An upload -v line, as upstream prints it: `%6lld %6lld %016llx...`. */
export function formatUploadLine(r: UploadBlockRecord): string {
  return `${blockLinePrefix(r.index, r.address, r.hash)}...`;
}

/** A download line: `%6lld %6lld %016llx %s` (no trailing space for an unchecked block). */
export function formatDownloadLine(r: DownloadBlockRecord): string {
  const prefix = blockLinePrefix(r.index, r.address, r.hash);
  return r.status ? `${prefix} ${r.status}` : prefix;
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EIO: 'Input/output error',
};

/** A Node system error as `path: text` (like perror), anything else unchanged. */
function describe(err: unknown, p: string | Buffer): Error {
  if (err instanceof DdfsError || !(err instanceof Error)) return err as Error;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && ERRNO_TEXT[code]) return new DdfsError('IO', `${pathText(p)}: ${ERRNO_TEXT[code]}`, { path: p }, err);
  return err;
}

function isDirectory(p: string | Buffer): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The progress view of the running copy: block and message lines go through it so the spinner is not torn. */
let activeView: ProgressView | null = null;

function stderrLine(s: string): void {
  if (activeView) activeView.write(`${s}\n`);
  else process.stderr.write(`${s}\n`);
}

/** The size of a regular file (a source whose total is known), else 0 (a pipe, a terminal: no ETA). */
async function regularSize(fh: fsp.FileHandle | null): Promise<number> {
  try {
    const st = fh ? await fh.stat() : fs.fstatSync(0);
    return st.isFile() ? st.size : 0;
  } catch {
    return 0;
  }
}

/** Whether `p` names a FIFO (following symlinks, as open does); false when it cannot be stat'ed (open says why). */
function isFifo(p: string): boolean {
  try {
    return fs.statSync(p).isFIFO();
  } catch {
    return false;
  }
}

/** Open a FIFO for reading (waits for a writer, as open(2) does) as a pipe socket, which owns the descriptor. */
async function openFifo(p: string): Promise<net.Socket> {
  const fd = await new Promise<number>((resolve, reject) => fs.open(p, 'r', (err, d) => (err ? reject(err) : resolve(d))));
  return new net.Socket({ fd, readable: true, writable: false });
}

/** `X of Y bytes (x of y)` of an interrupted copy; `X bytes (x)` when the total is unknown. */
function copiedText(done: number, total: number): string {
  return total > 0
    ? `${done} of ${total} bytes (${byteText(done)} of ${byteText(total)})`
    : `${done} bytes (${byteText(done)})`;
}

/**
 * The UFS path for a path inside a volume: the parent itself means its ddfsroot; anything else must be below
 * ddfsroot and outside the special directory.
 */
function ufsPathOf(parent: string, p: string): string {
  const root = path.join(parent, ROOT_DIRECTORY);
  const abs = path.resolve(p);
  if (abs === parent) return root;
  const rel = path.relative(root, abs);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new DdfsError('INVALID', `${p}: not inside ${root}`, { path: p });
  }
  if (rel === SPECIAL_DIRECTORY || rel.startsWith(`${SPECIAL_DIRECTORY}${path.sep}`)) {
    throw new DdfsError('ACCESS', `${p}: inside the special directory ${path.join(root, SPECIAL_DIRECTORY)}`, { path: p });
  }
  return abs;
}

/**
 * The UFS path (bytes) of a download source, which may be a byte path (`rawArgument`): as `ufsPathOf`, computed on
 * the bytes (a byte string holds one char per byte, so path.posix works on it without decoding names).
 */
function ufsBytePathOf(parent: string, p: string | Buffer): Buffer {
  const bytes = (q: string | Buffer): string => pathBytes(q).toString('latin1');
  const root = path.posix.join(bytes(parent), ROOT_DIRECTORY);
  const abs = path.posix.resolve(bytes(process.cwd()), bytes(p));
  if (abs === bytes(parent)) return Buffer.from(root, 'latin1');
  const rel = path.posix.relative(root, abs);
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) {
    throw new DdfsError('INVALID', `${pathText(p)}: not inside ${pathText(Buffer.from(root, 'latin1'))}`, { path: p });
  }
  if (rel === SPECIAL_DIRECTORY || rel.startsWith(`${SPECIAL_DIRECTORY}/`)) {
    throw new DdfsError('ACCESS', `${pathText(p)}: inside the special directory ${path.join(parent, ROOT_DIRECTORY, SPECIAL_DIRECTORY)}`, { path: p });
  }
  return Buffer.from(abs, 'latin1');
}

/** The last component of a byte path. */
function baseNameBytes(p: Buffer): Buffer {
  return Buffer.from(path.posix.basename(p.toString('latin1')), 'latin1');
}

async function upload(parent: string, source: string, target: string, o: Options, ctx: CopyContext): Promise<number> {
  let ufsPath = ufsPathOf(parent, target);
  if (isDirectory(ufsPath)) {
    if (source === '-') throw new UsageError(`${target}: a directory; the target must name a file when the source is stdin`);
    ufsPath = ufsPathOf(parent, path.join(ufsPath, path.basename(source)));
  }
  let read: ByteReader;
  let fh: fsp.FileHandle | null = null;
  let fifo: net.Socket | null = null;
  if (source === '-') {
    read = streamReader(process.stdin);
  } else if (isFifo(source)) {
    // a FIFO is read as a pipe (non-blocking, like stdin), not by blocking reads in the thread pool: one of those
    // still waiting when Ctrl-C stops the copy would keep the process from exiting
    try {
      fifo = await openFifo(source);
    } catch (err) {
      throw describe(err, source);
    }
    read = streamReader(fifo);
  } else {
    try {
      fh = await fsp.open(source, 'r');
      if ((await fh.stat()).isDirectory()) throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
    } catch (err) {
      await fh?.close();
      throw describe(err, source);
    }
    read = fileReader(fh);
  }
  // a source that sends nothing more (a pipe, a terminal, a FIFO) must not hold Ctrl-C back
  read = abortableRead(read, ctx.sigint.signal);
  const total = await regularSize(fh);
  let result: { size: number; interrupted: boolean };
  try {
    // a mirror master journals the upload (write-ahead, spec §4.3): the journal is opened under the volume lock with
    // the daemon's protocol (seal removed durably first, rewritten at a clean close), so no generation bump
    let mj: MasterJournal | null = null;
    const volume = await openVolumeForUpload(parent, {
      beforeChange: async (p) => {
        mj = await openMasterJournal(p, { crashed: false, rootDir: path.join(p, ROOT_DIRECTORY), logger });
      },
    });
    let clean = false;
    try {
      if (o.verbose) stderrLine(`upload ${source} ${target}`);
      const journal = mj as MasterJournal | null;
      if (journal !== null) {
        const rel = pathBytes(path.relative(path.join(parent, ROOT_DIRECTORY), ufsPath));
        await journal.sink.beforeChange({ op: fs.existsSync(ufsPath) ? 'truncate' : 'create', path: rel });
      }
      ctx.view.update({ phase: 'upload', done: 0, total, unit: 'bytes' });
      // Ctrl-C while the volume was being opened: the target is not created nor truncated
      result = ctx.sigint.signal.aborted ? { size: -1, interrupted: true } : await uploadFile(volume, read, ufsPath, {
        onBlock: o.verbose ? (r) => stderrLine(formatUploadLine(r)) : undefined,
        onProgress: (bytes) => ctx.view.update({ phase: 'upload', done: bytes, total, unit: 'bytes' }),
        signal: ctx.sigint.signal,
      }).catch((err: unknown) => {
        throw describe(err, ufsPath);
      });
      clean = true;
    } finally {
      try {
        await (mj as MasterJournal | null)?.close(clean);
      } finally {
        await volume.close();
      }
    }
  } finally {
    fifo?.destroy();
    await fh?.close();
  }
  ctx.view.stop();
  if (result.interrupted && result.size < 0) {
    stderrLine(`${NAME}: interrupted: nothing copied, ${ufsPath} left as it was`);
    return EXIT.INTERRUPTED;
  }
  if (result.interrupted) {
    stderrLine(`${NAME}: interrupted: copied ${copiedText(result.size, total)} into ${ufsPath}; it holds the bytes copied so far and the volume is consistent`);
    return EXIT.INTERRUPTED;
  }
  return EXIT.OK;
}

async function download(parent: string, source: string | Buffer, target: string | Buffer, o: Options, ctx: CopyContext): Promise<number> {
  if (o.verbose) stderrLine(`download ${pathText(source)} ${pathText(target)}`);
  const ufsPath = ufsBytePathOf(parent, source);
  if (isDirectory(ufsPath)) throw new DdfsError('INVALID', `${pathText(source)}: Is a directory`, { path: source });
  const volume = await Volume.open(parent, { readOnly: true });
  try {
    let dl: UfsDownload;
    try {
      dl = await UfsDownload.open(volume, ufsPath, { force: o.force });
    } catch (err) {
      throw describe(err, source);
    }
    try {
      for (const w of dl.warnings) stderrLine(`${NAME}: ${w}`);
      let write: ByteWriter;
      let out: fsp.FileHandle | null = null;
      let outPath = target;
      if (target === '-') {
        write = streamWriter(process.stdout);
      } else {
        // a directory target gets the source's raw base name
        if (isDirectory(target)) outPath = joinPathBytes(pathBytes(target), baseNameBytes(ufsPath));
        try {
          out = await fsp.open(outPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
        } catch (err) {
          throw describe(err, outPath);
        }
        write = fileWriter(out);
      }
      try {
        const total = dl.size ?? 0;
        ctx.view.update({ phase: 'download', done: 0, total, unit: 'bytes' });
        const result = await dl.copyTo(
          async (data) => {
            try {
              await write(data);
            } catch (err) {
              throw describe(err, outPath);
            }
          },
          {
            check: o.check,
            force: o.force,
            onBlock: (r) => {
              if (o.verbose || (r.status !== '' && r.status !== 'ok')) stderrLine(formatDownloadLine(r));
            },
            onProgress: (bytes) => ctx.view.update({ phase: 'download', done: bytes, total, unit: 'bytes' }),
            signal: ctx.sigint.signal,
          },
        );
        ctx.view.stop();
        if (result.interrupted) {
          stderrLine(`${NAME}: interrupted: wrote ${copiedText(result.writtenSize, total)} to ${target === '-' ? 'standard output' : pathText(outPath)}; the copy is incomplete`);
          return EXIT.INTERRUPTED;
        }
        if (o.verbose) {
          stderrLine(`        size: ${result.size ?? 'NA'}`);
          stderrLine(`written size: ${result.writtenSize}`);
        }
        return result.intact ? EXIT.OK : EXIT.ERROR;
      } finally {
        await out?.close();
      }
    } finally {
      await dl.close();
    }
  } finally {
    await volume.close();
  }
}

/** Run cpddumbfs with `argv` (arguments after the command name). */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Copy a file into or out of an offline ddumbfs volume.', HELP)
    .argument('<source>', 'file to copy, or - for stdin (upload)')
    .argument('<target>', 'file or directory to copy to, or - for stdout (download)')
    .option('-v, --verbose', 'print the block number, address and hash of every block, and sizes')
    .option('-l, --lock_index', 'accepted for compatibility: the index is always held in memory')
    .option('-c, --check', 'download: re-hash every block and report its integrity in the exit code')
    .option('-f, --force', 'download: go on past a bad header, partial node or unreadable block')
    .option('-p, --progress', 'plain progress lines on stderr (also on a terminal, instead of the spinner)');
  return runCommand(NAME, program, argv, async () => {
    const [source, target] = program.args as [string, string];
    const o = program.opts<Options>();
    const srcParent = source === '-' ? null : findParent(source);
    const dstParent = target === '-' ? null : findParent(target);
    if (srcParent && dstParent) {
      throw new UsageError(`only one of the source or target can be inside a ddumbfs volume (${srcParent}, ${dstParent})`);
    }
    if (!dstParent && !srcParent) throw new UsageError(`neither ${source} nor ${target} is inside a ddumbfs volume`);
    const view = await ProgressView.create({ plain: o.progress === true, plainLine: (t) => `${NAME}: progress ${t}\n` });
    activeView = view;
    const sigint = catchSigint({
      onSecond: () => {
        view.stop();
        process.stderr.write(`${NAME}: interrupted again: stopped at once, the copy is incomplete${dstParent ? ' (run fsckddumbfs -c on the volume)' : ''}\n`);
      },
    });
    let code: number;
    try {
      code = await copy(srcParent, dstParent, source, target, o, { view, sigint });
    } finally {
      view.stop();
      activeView = null;
      sigint.dispose();
    }
    // stdin may still be waiting for input (a terminal or a pipe that sent nothing more), which would keep the
    // process alive: the copy is closed and its message written
    if (code === EXIT.INTERRUPTED && source === '-') process.stdin.destroy();
    return code;
  });
}

/** The upload or the download, and -c's last line. */
async function copy(srcParent: string | null, dstParent: string | null, source: string, target: string, o: Options, ctx: CopyContext): Promise<number> {
  if (dstParent) {
    if (o.check) stderrLine(`${NAME}: -c only applies to a download, ignored`);
    return upload(dstParent, source, target, o, ctx);
  }
  try {
    const code = await download(srcParent!, rawArgument(source), target === '-' ? target : rawArgument(target), o, ctx);
    if (o.check && code !== EXIT.INTERRUPTED) stderrLine(code === EXIT.OK ? 'OK' : 'ERR');
    return code;
  } catch (err) {
    if (!o.check || err instanceof UsageError) throw err;
    stderrLine(`${NAME}: ${messageOf(err)}`);
    stderrLine('ERR');
    return EXIT.ERROR;
  }
}
