/**
 * cpddumbfs [-h] [-v] [-l] [-c] [-f] SOURCE TARGET — copy a file into or out of an offline volume (spec §11).
 *
 * Exactly one of SOURCE and TARGET must be inside a volume (walk-up of spec §2): upload if TARGET is, download if
 * SOURCE is. `-` is stdin (upload source) or stdout (download target). A directory target gets the source's base
 * name. All messages go to stderr (stdout may carry the downloaded data).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
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

Exit status:
  0    success (download: the file's integrity is intact)
  1    error: volume mounted or needing a check, missing file, bad header, I/O error,
       or (download) a lost, bad, unreadable or mismatching block; or usage error

Examples:
  cpddumbfs -c /l0/ddumbfs/ddfsroot/data /tmp
  cpddumbfs /tmp/data /l0/ddumbfs/ddfsroot`;

interface Options {
  verbose?: boolean;
  /** -l: accepted and ignored (upstream mlocks the index; ours is always in memory). */
  lock_index?: boolean;
  check?: boolean;
  force?: boolean;
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

function stderrLine(s: string): void {
  process.stderr.write(`${s}\n`);
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

async function upload(parent: string, source: string, target: string, o: Options): Promise<number> {
  let ufsPath = ufsPathOf(parent, target);
  if (isDirectory(ufsPath)) {
    if (source === '-') throw new UsageError(`${target}: a directory; the target must name a file when the source is stdin`);
    ufsPath = ufsPathOf(parent, path.join(ufsPath, path.basename(source)));
  }
  let read: ByteReader;
  let fh: fsp.FileHandle | null = null;
  if (source === '-') {
    read = streamReader(process.stdin);
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
      await uploadFile(volume, read, ufsPath, {
        onBlock: o.verbose ? (r) => stderrLine(formatUploadLine(r)) : undefined,
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
    await fh?.close();
  }
  return EXIT.OK;
}

async function download(parent: string, source: string | Buffer, target: string | Buffer, o: Options): Promise<number> {
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
          },
        );
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
    .option('-f, --force', 'download: go on past a bad header, partial node or unreadable block');
  return runCommand(NAME, program, argv, async () => {
    const [source, target] = program.args as [string, string];
    const o = program.opts<Options>();
    const srcParent = source === '-' ? null : findParent(source);
    const dstParent = target === '-' ? null : findParent(target);
    if (srcParent && dstParent) {
      throw new UsageError(`only one of the source or target can be inside a ddumbfs volume (${srcParent}, ${dstParent})`);
    }
    if (dstParent) {
      if (o.check) stderrLine(`${NAME}: -c only applies to a download, ignored`);
      return upload(dstParent, source, target, o);
    }
    if (!srcParent) throw new UsageError(`neither ${source} nor ${target} is inside a ddumbfs volume`);
    try {
      const code = await download(srcParent, rawArgument(source), target === '-' ? target : rawArgument(target), o);
      if (o.check) stderrLine(code === EXIT.OK ? 'OK' : 'ERR');
      return code;
    } catch (err) {
      if (!o.check || err instanceof UsageError) throw err;
      stderrLine(`${NAME}: ${messageOf(err)}`);
      stderrLine('ERR');
      return EXIT.ERROR;
    }
  });
}
