/**
 * mirrorddumbfs COMMAND — replicate a ddumbfs volume (mirroring spec §4.16; issue 7): init-slave, copy, read, write,
 * serve and status (mounted volumes through their daemon's control socket, mirror/copy.ts), `dump`, which decodes a
 * DDMS stream on stdin for humans, and `verify`, which compares two volumes by content (§4.11), local or through
 * `serve verify` over the remote shell (mirror/verify_remote.ts).
 *
 * Output: dump lines on stdout; a fault of the stream as one line on stderr. Exit status (style.md, new commands):
 * 0 ok, 1 error or difference found, 2 usage, 130 interrupted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DdfsError } from '../errors.js';
// Every module a subcommand needs is loaded by it (`await import` at the point of use, issue 8): `status`, `--help`
// and `--version` do not pay for the pass code, hash-wasm, koffi or ora (test/mirror_startup.test.ts).
import type { CopyOptions, MasterIdentity } from '../mirror/copy.js';
import type { PassSummary } from '../mirror/pass_master.js';
import type { EntryKind, TreeAccess, TreeEntryMeta, DigestTree } from '../mirror/digest.js';
import type { VerifyLine, VerifyProgress } from '../mirror/verify.js';
import type { StreamDigests } from '../mirror/verify_remote.js';
import { makeProgram, optionParser, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';
import { ProgressView } from './progress_view.js';
import { MIRROR_HEARTBEAT_INTERVAL_S, MIRROR_REMOTE_EXIT_WAIT_MS, MIRROR_STREAM_BACKOFF_MAX_S, MIRROR_STREAM_BACKOFF_START_S, MIRROR_STREAM_INTERVAL_S, MIRROR_STREAM_LINK_TIMEOUT_S, MIRROR_STREAM_MAX_INTERVAL_S, MIRROR_VERIFY_PROGRESS_INTERVAL_MS } from '../limits.js';
import type { PassLink, StreamOptions } from './mirror_stream.js';
import type { Xattr } from '../mirror/record_body.js';

const NAME = 'mirrorddumbfs';

const HELP = `A replica (slave) is an empty volume of the same block size and hash, bound to its master by
init-slave; copy runs one pass by content (only the blocks the replica lacks cross), read/write carry
a self-contained pass through a file. Endpoints are a parent directory or [user@]host:PATH (ssh runs
"mirrorddumbfs serve" there; -e chooses the remote shell as rsync does). An unmounted volume is
opened under the volume lock (PARENT/ddfs.lock); a mounted one is read or applied through its
daemon's control socket (PARENT/ddfsmirror/control); a mounted slave is served read-only. Refused:
a volume locked by another tool, one mounted -o ro, init-slave of a mounted volume.
promote makes a slave the master of a new lineage; rebind makes a volume of an older lineage (the
old master once back) a slave of the new master; a pass between volumes of different lineages is
refused on both sides before any change. A renamed or moved entry the replica still holds is moved
there (RENAME), not resent; what a pass replaces on the replica is kept in ddfsmirror/undo/ until
its COMMIT, so a cut pass can be rolled back. stream repeats copy passes whenever the master's
journal head moves past the replica's claim (looked at every -i SECONDS), declares a silent link
dead after --timeout, retries a failed pass after a back-off, limits the bytes sent with -b KBPS;
its state and lag are in ddfsmirror/stream (status --json).

Exit status:
  0    success
  1    error (a corrupt or truncated stream, I/O error) or difference found
  2    usage error
  130  interrupted

Examples:
  mirrorddumbfs init-slave /l1/replica --from /l0/ddumbfs
  mirrorddumbfs copy /l0/ddumbfs /mnt/usb/replica
  mirrorddumbfs copy -e 'ssh -p 2222' /l0/ddumbfs backup2:/l1/replica
  mirrorddumbfs read /l0/ddumbfs > pass.ddms; mirrorddumbfs write /l1/replica < pass.ddms
  mirrorddumbfs status /l1/replica --json
  mirrorddumbfs replicas /l0/ddumbfs; mirrorddumbfs forget /l0/ddumbfs /mnt/usb/replica
  mirrorddumbfs copy /l1/replica /l2/replica   (cascading: a slave serves its committed claim)
  mirrorddumbfs promote /l1/replica            (the master /l0/ddumbfs is lost)
  mirrorddumbfs rebind /l0/ddumbfs --from /l1/replica; mirrorddumbfs copy /l1/replica /l0/ddumbfs
  mirrorddumbfs dump < pass.ddms
  mirrorddumbfs dump --full < pass.ddms | less
  mirrorddumbfs verify /l0/ddumbfs /mnt/usb/replica --deep
  mirrorddumbfs verify -e 'ssh -p 2222' /l0/ddumbfs backup2:/l1/replica --deep`;

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

const COPY_HELP = `Each side keeps its files' content digests in PARENT/ddfsmirror/digest-cache, keyed by the UFS
file's device, inode, size, mtime and ctime, so the next pass skips the node lists of unchanged files
(a damaged cache is ignored and may be deleted; verify never uses it). A slave that was not cleanly
closed (.autofsck) re-reads and hashes a block before telling the master it holds it.`;

const VERIFY_HELP = `Compares volume A (the reference) with volume B by content: Merkle digests of the UFS trees
computed from node lists and metadata, descending only into directories whose digests differ.
Reads no claim, state, digest cache or journal. Opens both volumes read-only and changes nothing.
A or B (or both) may be [user@]host:PATH: ssh (-e CMD) runs "mirrorddumbfs serve --restrict PATH
verify PATH" there, which answers digests, listings and node lists over the stream (with --deep it
re-hashes its own blocks); lines, JSON and exit status are those of a local verify.
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
-p: progress lines (entries compared, differences, rate; no ETA: only differing subtrees are
descended) and the summary "N entries compared, D differences, T s" on stderr; a terminal gets a
spinner and the summary; otherwise stderr stays empty.
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
    .argument('<A>', 'the reference volume: parent directory or [user@]host:PATH')
    .argument('<B>', 'the volume compared with it: parent directory or [user@]host:PATH')
    .option('--deep', 're-read and re-hash every referenced block on both sides (a remote side re-hashes its own)')
    .option('--json', 'print one JSON document instead of lines')
    .option('--no-mtime', 'do not compare mtimes')
    .option('-p, --progress', 'plain progress lines and the summary on standard error')
    // as remoteOptions below (declared with the pass commands)
    .option('-e, --rsh <CMD>', 'the remote shell for host:PATH endpoints (split on spaces, as rsync does)', 'ssh')
    .option('--mirror-path <PATH>', 'the mirrorddumbfs command on the remote host (as rsync\'s --rsync-path)', 'mirrorddumbfs')
    .addHelpText('after', `\n${VERIFY_HELP}`)
    .action((a: string, b: string, opts: { deep?: boolean; json?: boolean; mtime: boolean } & PassFlags) => {
      action = () => verifyCommand(a, b, { deep: opts.deep === true, json: opts.json === true, mtime: opts.mtime }, opts);
    });
  const passOptions = (c: ReturnType<typeof program.command>): typeof c => c
    .option('-p, --progress', 'plain progress lines on standard error')
    .option('--allow-mass-delete', 'let a pass delete more than 25% of the slave\'s entries')
    .option('--checkpoint-records <N>', 'records between two CHECKPOINTs (default 2000): what a cut pass resends at most',
      optionParser('record count', (t) => {
        const n = Number(t);
        if (!Number.isInteger(n) || n < 1) throw new Error('a positive integer');
        return n;
      }));
  const remoteOptions = (c: ReturnType<typeof program.command>): typeof c => c
    .option('-e, --rsh <CMD>', 'the remote shell for host:PATH endpoints (split on spaces, as rsync does)', 'ssh')
    .option('--mirror-path <PATH>', 'the mirrorddumbfs command on the remote host (as rsync\'s --rsync-path)', 'mirrorddumbfs');
  remoteOptions(program
    .command('init-slave')
    .description('bind the empty volume SLAVE to the lineage of MASTER (same block size and hash)')
    .argument('<SLAVE>', 'the replica (parent directory), empty')
    .requiredOption('--from <MASTER>', 'the master volume (parent directory)'))
    .action((slave: string, opts: { from: string } & PassFlags) => {
      action = () => initSlaveCommand(slave, opts.from, opts);
    });
  remoteOptions(passOptions(program
    .command('copy')
    .description('one pass by content from SRC (master) to DST (slave): only the blocks DST lacks are sent')
    .argument('<SRC>', 'master: parent directory or [user@]host:PATH')
    .argument('<DST>', 'slave: parent directory or [user@]host:PATH')
    .option('--content', 'a content pass (the whole tree by digest) even when the master\'s journal allows an incremental one: finds and repairs a change the journal missed')
    .addHelpText('after', `\n${COPY_HELP}`)))
    .action((src: string, dst: string, opts: PassFlags) => {
      action = () => copyCommand(src, dst, opts);
    });
  passOptions(program
    .command('read')
    .description('write a self-contained pass of MASTER (every block it references, once) to standard output')
    .argument('<MASTER>', 'the master volume (parent directory)'))
    .action((master: string, opts: PassFlags) => {
      action = () => readCommand(master, opts);
    });
  passOptions(program
    .command('write')
    .description('apply a pass read from standard input to SLAVE')
    .argument('<SLAVE>', 'the slave volume (parent directory)'))
    .action((slave: string, opts: PassFlags) => {
      action = () => writeCommand(slave, opts);
    });
  program
    .command('serve')
    .description('the far side of an ssh endpoint: run one side of a pass on standard input/output')
    .requiredOption('--restrict <ROOT>', 'refuse any volume outside ROOT')
    .option('--allow-mass-delete', 'let a pass delete more than 25% of the slave\'s entries')
    .option('--content', 'role master: a content pass whatever the journal allows (copy --content)')
    .argument('<ROLE>', 'master, slave, verify (answer a verify session about VOLUME), or identity (print the master\'s identity as JSON, for init-slave --from host:PATH)')
    .argument('<VOLUME>', 'the volume (parent directory)')
    .action((role: string, vol: string, opts: ServeFlags) => {
      action = () => serveCommand(role, vol, opts);
    });
  program
    .command('promote')
    .description('make the slave VOLUME the master of a new lineage (new unique uuid, lineage id, epoch; generation + 1)')
    .argument('<VOLUME>', 'the slave (parent directory), unmounted')
    .option('--rollback', 'first roll a half-applied pass back to the last claim (instead of refusing)')
    .action((vol: string, opts: { rollback?: boolean }) => {
      action = () => promoteCommand(vol, opts.rollback === true);
    });
  remoteOptions(program
    .command('rebind')
    .description('make VOLUME (the old master once back, or a slave of an older lineage) a slave of the lineage of MASTER')
    .argument('<VOLUME>', 'the volume to rebind (parent directory), unmounted; its tree is kept, its next copy is a full content pass')
    .requiredOption('--from <MASTER>', 'the new master (parent directory or [user@]host:PATH)')
    .option('--rollback', 'first roll a half-applied pass back (instead of refusing)'))
    .action((vol: string, opts: { from: string; rollback?: boolean } & PassFlags) => {
      action = () => rebindCommand(vol, opts.from, opts);
    });
  remoteOptions(passOptions(program
    .command('stream')
    .description('repeat copy passes from SRC to DST: a pass every -i seconds, reconnecting with back-off after a failure; stops on SIGTERM/SIGINT')
    .argument('<SRC>', 'master: parent directory or [user@]host:PATH')
    .argument('<DST>', 'slave: parent directory or [user@]host:PATH')
    .option('-i, --interval <SECONDS>', `longest wait between looks at the master's journal head, also looked at whenever its journal changes (a pass when it moved past the claim); without a readable head, seconds between passes (default ${MIRROR_STREAM_INTERVAL_S})`, optionParser('interval', Number), MIRROR_STREAM_INTERVAL_S)
    .option('--max-interval <SECONDS>', `longest wait between passes while the head did not move (default ${MIRROR_STREAM_MAX_INTERVAL_S})`, optionParser('max-interval', Number), MIRROR_STREAM_MAX_INTERVAL_S)
    .option('--timeout <SECONDS>', `declare the link dead after this long without a byte from the peer (heartbeats every ${MIRROR_HEARTBEAT_INTERVAL_S} s; 0: never; default ${MIRROR_STREAM_LINK_TIMEOUT_S})`, optionParser('timeout', Number), MIRROR_STREAM_LINK_TIMEOUT_S)
    .option('-b, --bwlimit <KBPS>', 'limit the master-to-slave bytes on the wire to KBPS KiB per second', optionParser('bwlimit', Number))
    .option('--backoff <SECONDS>', `first reconnect delay, doubled per failure up to ${MIRROR_STREAM_BACKOFF_MAX_S} s (default ${MIRROR_STREAM_BACKOFF_START_S})`, optionParser('backoff', Number), MIRROR_STREAM_BACKOFF_START_S)
    .option('--content-interval <SECONDS>', 'a content pass (as copy --content) every SECONDS, counted from the start: repairs what the journal missed (default 0: never)', optionParser('content-interval', Number))))
    .action((src: string, dst: string, opts: PassFlags & StreamOptions & { bwlimit?: number }) => {
      opts.bandwidthKiBps = opts.bwlimit;
      action = () => streamCommand(src, dst, opts);
    });
  program
    .command('status')
    .description('role, uuids, lineage, claim, pass in progress, apply areas, last verify and last promote of a volume; a master\'s journal (next_tid, durable_head, segments, bytes) and seal')
    .argument('<VOLUME>', 'parent directory')
    .option('--json', 'one JSON document (shape: man mirrorddumbfs, STATUS)')
    .option('--crc', "also check the CRC32C of every record of a master's journal (by default: lengths, ops and TID order)")
    .action((vol: string, opts: { json?: boolean; crc?: boolean }) => {
      action = () => statusCommand(vol, opts.json === true, opts.crc === true);
    });
  program
    .command('replicas')
    .description('the replicas MASTER knows (ddfsmirror/slaves/): claim, generation, lag, last pass, and whether retention marked one for a content pass')
    .argument('<MASTER>', 'the master (or a relay slave) volume, parent directory')
    .option('--json', 'one JSON document: {volume, head, replicas, damaged}')
    .action((vol: string, opts: { json?: boolean }) => {
      action = () => replicasCommand(vol, opts.json === true);
    });
  program
    .command('forget')
    .description('remove the record of a replica from MASTER: its claim no longer holds the journal back (the next copy of another replica drops what only it needed)')
    .argument('<MASTER>', 'the master (or relay) volume, parent directory')
    .argument('<REPLICA>', 'the replica\'s unique uuid, or its label (the destination as given to copy) when only one has it')
    .action((vol: string, which: string) => {
      action = () => forgetCommand(vol, which);
    });
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT.MIRROR_USAGE;
  }
  return runCommand(NAME, program, argv, async () => (action === null ? EXIT.MIRROR_USAGE : action()), EXIT.MIRROR_USAGE);
}

async function dump(full: boolean): Promise<number> {
  const { dumpLines } = await import('../mirror/dump.js');
  if (process.stdin.isTTY) throw new UsageError('dump reads a stream on standard input (mirrorddumbfs dump < pass.ddms)');
  for await (const line of dumpLines(process.stdin, { full })) process.stdout.write(`${line}\n`);
  return EXIT.OK;
}

/** The extended attributes a mirror ships and digests (reserved ones left out), as a TreeEntryMeta field. */
function xattrsOf(p: Buffer, x: XattrModules): { xattrs?: Xattr[] } {
  const xattrs = x.xattr.readAllXattrs(p, (name) => !x.layout.isReservedXattr(name));
  return xattrs.length > 0 ? { xattrs } : {};
}

/** io/xattr.js (koffi) and format/layout.js, loaded by the first lstat: commands that never list a tree skip them. */
interface XattrModules { xattr: typeof import('../io/xattr.js'); layout: typeof import('../format/layout.js') }
let xattrModules: XattrModules | null = null;

/** The metadata calls of digests, on the real file system (node:fs stays in cli/ and io/: style.md). */
export const nodeTreeAccess: TreeAccess = {
  async lstat(p: Buffer): Promise<TreeEntryMeta> {
    // synchronous: a pass lstats every entry of the UFS tree (never a FUSE mount), and a thread-pool round trip
    // per entry cost more than the call itself (idle time in the profile of a 1 % pass)
    xattrModules ??= { xattr: await import('../io/xattr.js'), layout: await import('../format/layout.js') };
    const st = fs.lstatSync(p, { bigint: true });
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
      ctimeNs: st.ctimeNs,
      sizeOnDiskBytes: Number(st.size),
      ...xattrsOf(p, xattrModules),
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

interface PassFlags {
  progress?: boolean;
  allowMassDelete?: boolean;
  rsh?: string;
  mirrorPath?: string;
  checkpointRecords?: number;
  /** copy --content: the master side runs a content pass whatever its journal allows. */
  content?: boolean;
}

/** The spinner of copy and verify on a terminal (progress_view.ts, the progress view every command shares). */
let view: ProgressView | null = null;

function stopSpinner(): void {
  view?.stop();
}

/** Write a line on stderr without tearing the spinner. */
function stderrLine(line: string): void {
  if (view) view.write(line);
  else process.stderr.write(line);
}

async function passCopyOptions(opts: PassFlags, spin = false): Promise<CopyOptions> {
  return {
    access: nodeTreeAccess,
    allowMassDelete: opts.allowMassDelete === true,
    checkpointRecordCount: opts.checkpointRecords,
    contentPass: opts.content === true,
    progress: await progressSink(opts, spin),
    report: (l) => stderrLine(`${NAME}: ${l}\n`),
  };
}

/** The exit code of a finished master side: 1 when a corrupt master block kept a file back. */
async function summaryExit(s: PassSummary, to: NodeJS.WriteStream): Promise<number> {
  const { renderSummary } = await import('../mirror/pass_master.js');
  stopSpinner();
  to.write(`${NAME}: ${renderSummary(s)}\n`);
  return s.corrupt.length > 0 ? EXIT.ERROR : EXIT.OK;
}

async function initSlaveCommand(slave: string, master: string, opts: PassFlags): Promise<number> {
  const { bindSlave, initSlave } = await import('../mirror/copy.js');
  if (isRemote(slave)) throw new UsageError(`${slave}: init-slave binds a local slave: run it on the slave's host (--from may be host:PATH)`);
  let r: { sharedUuid: string; uniqueUuid: string };
  if (isRemote(master)) {
    r = await bindSlave(slave, await remoteIdentity(master, opts), master);
  } else {
    r = await initSlave(slave, master);
  }
  process.stdout.write(`${slave}: slave of ${r.sharedUuid} (unique uuid ${r.uniqueUuid})\n`);
  return EXIT.OK;
}

/** The identity of the remote master `master` ([user@]host:PATH), through `serve identity`. */
async function remoteIdentity(master: string, opts: PassFlags): Promise<MasterIdentity> {
  const { child, done } = spawnRemote(master, 'identity', opts);
  child.stdin!.end();
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  const code = await done;
  if (code !== 0) throw new DdfsError('IO', `${master}: the remote side exited with status ${code}`);
  let id: MasterIdentity;
  try {
    id = JSON.parse(Buffer.concat(chunks).toString('utf8')) as MasterIdentity;
  } catch {
    throw new DdfsError('CORRUPT', `${master}: the remote side did not answer with the master's identity`);
  }
  if (id.lineageId !== undefined && !/^[0-9a-f]{32}$/.test(String(id.lineageId))) throw new DdfsError('CORRUPT', `${master}: the remote side answered a bad lineage id`);
  if (id.masterUuid !== undefined && !/^[0-9a-f]{32}$/.test(String(id.masterUuid))) throw new DdfsError('CORRUPT', `${master}: the remote side answered a bad master uuid`);
  return id;
}

async function promoteCommand(vol: string, rollback: boolean): Promise<number> {
  const { promote } = await import('../mirror/promote.js');
  if (isRemote(vol)) throw new UsageError(`${vol}: promote a local volume: run it on the slave's host`);
  const r = await promote(vol, { rollback });
  if (r.rollback !== null) process.stderr.write(`${NAME}: ${rollbackLine(r.rollback)}\n`);
  process.stdout.write(`${vol}: master of lineage ${r.state.lineage} (${r.state.lineageId}), generation ${r.state.generation}, unique uuid ${r.state.uniqueUuid}\n`);
  return EXIT.OK;
}

async function rebindCommand(vol: string, master: string, opts: { rollback?: boolean } & PassFlags): Promise<number> {
  const [{ masterIdentity }, { rebind }] = await Promise.all([import('../mirror/copy.js'), import('../mirror/promote.js')]);
  if (isRemote(vol)) throw new UsageError(`${vol}: rebind a local volume: run it on its host (--from may be host:PATH)`);
  const id = isRemote(master) ? await remoteIdentity(master, opts) : await masterIdentity(master);
  const r = await rebind(vol, id, master, { rollback: opts.rollback === true });
  if (r.rollback !== null) process.stderr.write(`${NAME}: ${rollbackLine(r.rollback)}\n`);
  process.stdout.write(`${vol}: slave of lineage ${r.state.lineage} (${r.state.lineageId ?? r.state.sharedUuid}) of ${master}, unique uuid ${r.state.uniqueUuid}: the next copy is a full content pass\n`);
  return EXIT.OK;
}

function rollbackLine(r: { discardedPassId: string | null; recordsKept: number; stagingRemoved: boolean; exact: boolean; actionsReversed: number }): string {
  if (r.discardedPassId === null) return 'rollback: a staging area of an unfinished pass was removed';
  const tree = r.exact ? `the tree is back at the last claim (${r.actionsReversed} changes undone)` : `the tree keeps the ${r.recordsKept} records applied before its last checkpoint`;
  return `rollback: pass ${r.discardedPassId} discarded${r.stagingRemoved ? ' with its staging area' : ''}; ${tree}`;
}

/** Quote `s` for a POSIX remote shell. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Start `serve ROLE PATH` on the host of `endpoint` through the remote shell. */
function spawnRemote(endpoint: string, role: 'master' | 'slave' | 'identity' | 'verify', opts: PassFlags): { child: ChildProcess; done: Promise<number> } {
  const colon = endpoint.indexOf(':');
  const host = endpoint.slice(0, colon);
  const remotePath = endpoint.slice(colon + 1);
  if (host === '' || remotePath === '') throw new UsageError(`${endpoint}: expected [user@]host:PATH`);
  const rsh = (opts.rsh ?? 'ssh').split(/\s+/).filter((w) => w !== '');
  const remote = [opts.mirrorPath ?? 'mirrorddumbfs', 'serve', '--restrict', remotePath, ...(opts.allowMassDelete ? ['--allow-mass-delete'] : []), ...(role === 'master' && opts.content ? ['--content'] : []), role, remotePath]
    .map(shellQuote).join(' ');
  const child = spawn(rsh[0]!, [...rsh.slice(1), host, remote], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.on('error', () => undefined); // EPIPE when the far side ended first: its exit status tells why
  const done = new Promise<number>((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`${NAME}: cannot run ${rsh[0]}: ${err.message}\n`);
      resolve(255);
    });
    child.on('exit', (code) => resolve(code ?? 255));
  });
  return { child, done };
}

/**
 * Run `serve ROLE PATH` of this same command in a child process on this host, its stdin/stdout the pipes of the
 * session (the far side of a local endpoint that works on the other core: a verify of two local volumes).
 * @returns the child and its exit code (255 when it could not start)
 */
function spawnLocalServe(parentDir: string, role: 'verify'): { child: ChildProcess; done: Promise<number> } {
  const script = process.argv[1];
  if (!script) throw new DdfsError('IO', 'cannot find the mirrorddumbfs script to start the second side');
  const target = path.resolve(parentDir);
  const child = spawn(process.execPath, [...process.execArgv, script, 'serve', '--restrict', target, role, target], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.on('error', () => undefined); // EPIPE when it ended first: its exit status tells why
  const done = new Promise<number>((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`${NAME}: cannot run ${process.execPath}: ${err.message}\n`);
      resolve(255);
    });
    child.on('exit', (code) => resolve(code ?? 255));
  });
  return { child, done };
}

async function copyCommand(src: string, dst: string, opts: PassFlags): Promise<number> {
  try {
    return await copyPass(src, dst, opts);
  } finally {
    stopSpinner();
  }
}

/** One pass; `link` (stream): the pipes go through its meters (watchdog, -b) and it learns the TID covered. */
async function copyPass(src: string, dst: string, opts: PassFlags, link?: PassLink): Promise<number> {
  const { copyLocal, masterOverStreams, renderSlaveSummary, slaveOverStreams } = await import('../mirror/copy.js');
  const options = await passCopyOptions(opts, true);
  if (isRemote(src) && isRemote(dst)) throw new UsageError('copy between two remote endpoints is not supported: run it on one of the hosts');
  if (!isRemote(src) && !isRemote(dst)) {
    if (link) options.pipes = () => link.local();
    const r = await copyLocal(src, dst, options);
    if (link) link.tidEnd = r.master.tidEnd;
    return summaryExit(r.master, process.stdout);
  }
  if (isRemote(dst)) {
    const { child, done } = spawnRemote(dst, 'slave', opts);
    const io = link ? link.remote(child, true) : { out: child.stdin!, input: child.stdout! };
    try {
      const s = await masterOverStreams(src, io.out, io.input, { ...options, peerLabel: dst });
      io.input.resume(); // the slave's last records (its TERM) are not read: drain them so it can exit
      const code = await done;
      if (code !== 0) throw new DdfsError('IO', `${dst}: the remote side exited with status ${code}`);
      if (link) link.tidEnd = s.tidEnd;
      return summaryExit(s, process.stdout);
    } catch (err) {
      child.stdin!.destroy();
      const code = await Promise.race([done, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
      if (code === -1 && child.pid !== undefined) child.kill('SIGTERM');
      throw link ? link.explain(err, dst, code) : err;
    }
  }
  const { child, done } = spawnRemote(src, 'master', opts);
  const io = link ? link.remote(child, false) : { out: child.stdin!, input: child.stdout! };
  try {
    const s = await slaveOverStreams(dst, io.input, io.out, options);
    io.input.resume();
    const code = await done;
    process.stdout.write(`${NAME}: ${renderSlaveSummary(s)}\n`);
    return code === 0 ? EXIT.OK : EXIT.ERROR;
  } catch (err) {
    child.stdin!.destroy();
    const code = await Promise.race([done, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
    if (code === -1 && child.pid !== undefined) child.kill('SIGTERM');
    throw link ? link.explain(err, src, code) : err;
  }
}

/**
 * `stream SRC DST` (spec §4.10): copy passes in a loop (cli/mirror_stream.ts: waiting on the master's head, the link
 * watchdog, -b, lag). The state goes to DST/ddfsmirror/stream (or SRC's when DST is remote) for `status --json`.
 * @returns 0 after SIGTERM, 130 after SIGINT
 */
async function streamCommand(src: string, dst: string, opts: PassFlags & StreamOptions): Promise<number> {
  const { runStream } = await import('./mirror_stream.js');
  for (const [flag, v] of [['-i', opts.interval], ['--backoff', opts.backoff], ['--max-interval', opts.maxInterval], ['--timeout', opts.timeout], ['--content-interval', opts.contentInterval ?? 0]] as const) {
    if (!(v >= 0) || (flag === '--backoff' && !(v > 0))) throw new UsageError(`stream: ${flag} takes a positive number of seconds`);
  }
  if (opts.bandwidthKiBps !== undefined && !(opts.bandwidthKiBps > 0)) throw new UsageError('stream: -b takes a positive number of KiB per second');
  if (isRemote(src) && isRemote(dst)) throw new UsageError('stream between two remote endpoints is not supported: run it on one of the hosts');
  const ends = { localMaster: isRemote(src) ? null : src, localSlave: isRemote(dst) ? null : dst, stateAt: isRemote(dst) ? src : dst };
  try {
    return await runStream(ends, opts, (link, content) => copyPass(src, dst, { ...opts, content }, link), (l) => stderrLine(`${NAME}: ${l}\n`));
  } finally {
    stopSpinner();
  }
}

async function readCommand(master: string, opts: PassFlags): Promise<number> {
  const { masterOverStreams } = await import('../mirror/copy.js');
  if (process.stdout.isTTY) throw new UsageError('read writes a binary stream: redirect standard output (mirrorddumbfs read VOL > pass.ddms)');
  const s = await masterOverStreams(master, process.stdout, null, await passCopyOptions(opts));
  return summaryExit(s, process.stderr);
}

async function writeCommand(slave: string, opts: PassFlags): Promise<number> {
  const { renderSlaveSummary, slaveOverStreams } = await import('../mirror/copy.js');
  if (process.stdin.isTTY) throw new UsageError('write reads a stream on standard input (mirrorddumbfs write VOL < pass.ddms)');
  const s = await slaveOverStreams(slave, process.stdin, null, await passCopyOptions(opts));
  process.stderr.write(`${NAME}: ${renderSlaveSummary(s)}\n`);
  return EXIT.OK;
}

/** The options of `serve`. */
interface ServeFlags {
  restrict: string;
  allowMassDelete?: boolean;
  content?: boolean;
}

async function serveCommand(role: string, vol: string, opts: ServeFlags): Promise<number> {
  try {
    return await serveRole(role, vol, opts);
  } finally {
    process.stdin.destroy(); // a side that failed stops reading: let the process exit even if the peer keeps its end open
  }
}

async function serveRole(role: string, vol: string, opts: ServeFlags): Promise<number> {
  const root = path.resolve(opts.restrict);
  const target = path.resolve(vol);
  if (target !== root && !target.startsWith(`${root}/`)) throw new UsageError(`${vol}: outside the restricted root ${opts.restrict}: refused`);
  const options: CopyOptions = { access: nodeTreeAccess, allowMassDelete: opts.allowMassDelete === true, contentPass: opts.content === true, report: (l) => process.stderr.write(`${NAME}: ${l}\n`) };
  // each role loads its own modules: serve verify does not load the pass code
  const copy = (): Promise<typeof import('../mirror/copy.js')> => import('../mirror/copy.js');
  if (role === 'slave') {
    await (await copy()).slaveOverStreams(target, process.stdin, process.stdout, options);
    return EXIT.OK;
  }
  if (role === 'master') {
    const s = await (await copy()).masterOverStreams(target, process.stdout, process.stdin, options);
    return s.corrupt.length > 0 ? EXIT.ERROR : EXIT.OK;
  }
  if (role === 'identity') {
    process.stdout.write(`${JSON.stringify(await (await copy()).masterIdentity(target))}\n`);
    return EXIT.OK;
  }
  if (role === 'verify') {
    const [{ serveVerify }, { RecordReader, RecordWriter }] = await Promise.all([import('../mirror/verify_remote.js'), import('../mirror/channel.js')]);
    const code = await serveVerify(target, await RecordReader.create(process.stdin), await RecordWriter.create(process.stdout, false), {
      access: nodeTreeAccess,
      note: (l) => process.stderr.write(`${NAME}: ${l}\n`),
    });
    return code === 0 ? EXIT.OK : EXIT.ERROR;
  }
  throw new UsageError(`serve: role must be master, slave, verify or identity, not ${role}`);
}

async function statusCommand(vol: string, json: boolean, checkCrc: boolean): Promise<number> {
  const { mirrorStatus, renderStatusLines } = await import('../mirror/status.js');
  if (isRemote(vol)) throw new UsageError(`${vol}: status of a remote volume is not supported yet`);
  const st = await mirrorStatus(vol, { checkCrc });
  if (json) process.stdout.write(`${JSON.stringify(st)}\n`);
  else process.stdout.write(`${renderStatusLines(st, vol).join('\n')}\n`);
  return EXIT.OK;
}

async function replicasCommand(vol: string, json: boolean): Promise<number> {
  const [{ listReplicas, renderReplicaLine }, { mirrorStatus }] = await Promise.all([import('../mirror/replicas.js'), import('../mirror/status.js')]);
  if (isRemote(vol)) throw new UsageError(`${vol}: replicas of a remote volume is not supported: run it on the master's host`);
  const { replicas, damaged } = listReplicas(vol);
  const st = await mirrorStatus(vol);
  const head = st.head ?? null;
  if (json) {
    process.stdout.write(`${JSON.stringify({ volume: st.volume, head, replicas, damaged })}\n`);
    return EXIT.OK;
  }
  if (replicas.length === 0) process.stdout.write(`${vol}: no replica recorded (a replica is recorded at the end of each copy to it)\n`);
  for (const r of replicas) process.stdout.write(`${renderReplicaLine(r, head === null ? null : BigInt(head))}\n`);
  for (const d of damaged) process.stderr.write(`${NAME}: warning: ddfsmirror/slaves/${d.name}: not a replica record (${d.reason}): it pins nothing\n`);
  return EXIT.OK;
}

async function forgetCommand(vol: string, which: string): Promise<number> {
  const { forgetReplica } = await import('../mirror/replicas.js');
  if (isRemote(vol)) throw new UsageError(`${vol}: forget on a remote volume is not supported: run it on the master's host`);
  const r = forgetReplica(vol, which);
  process.stdout.write(`${vol}: forgot replica ${r.label} (${r.uuid}), claim ${r.claimKind}@${r.claimTid}: it no longer holds the journal back (once retention drops what it needed, its next copy is a content pass)\n`);
  return EXIT.OK;
}

/** One side of a verify: a local volume, or a verify session with `serve verify` on a host, over the remote shell. */
interface VerifySide {
  tree: DigestTree;
  /** What --json names it: the resolved parent directory, or the endpoint as given. */
  name: string;
  /** Close the tree (and wait for the remote side to end). @returns the remote side's exit status, 0 for a local one */
  finish(): Promise<number>;
  /** The error to report for `err` (a broken stream of a remote side that failed becomes its exit status). */
  explain(err: unknown): Promise<unknown>;
  /** A local volume that is not mounted: where verify records its result (status shows it); null otherwise. */
  recordAt: string | null;
}


/**
 * Open one side of a verify: a local volume read in this process, or the far side of `host:PATH` over ssh; with
 * `ownProcess`, a local volume read by `serve verify` in a child process (the second of two local sides: the two
 * walks then run on two cores, spec §4.11, and the child's messages are its own, as a remote side's).
 */
async function openVerifySide(endpoint: string, options: { deep: boolean; mtime: boolean }, flags: PassFlags, ownProcess = false): Promise<VerifySide> {
  if (!isRemote(endpoint) && !ownProcess) {
    const { VolumeDigests } = await import('../mirror/digest.js');
    const t = await VolumeDigests.open(endpoint, { access: nodeTreeAccess, deep: options.deep, mtime: options.mtime });
    if (t.mountPoint !== null) {
      stderrLine(`${NAME}: ${t.label} is mounted on ${t.mountPoint}: read as it is on disk; exact only if nothing writes during the verify\n`);
    }
    return { tree: t, name: t.parentDir, finish: async () => { await t.close(); return 0; }, explain: async (err) => err, recordAt: t.mountPoint === null ? t.parentDir : null };
  }
  const [{ StreamDigests }, { RecordReader, RecordWriter }] = await Promise.all([import('../mirror/verify_remote.js'), import('../mirror/channel.js')]);
  const name = isRemote(endpoint) ? endpoint : path.resolve(endpoint); // a local side's label, as VolumeDigests's
  const { child, done } = isRemote(endpoint) ? spawnRemote(endpoint, 'verify', flags) : spawnLocalServe(endpoint, 'verify');
  const ended = async (): Promise<number> => {
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([done, new Promise<number>((r) => { timer = setTimeout(() => r(-1), MIRROR_REMOTE_EXIT_WAIT_MS); })]);
    clearTimeout(timer); // a pending timer would keep the process alive after the verify
    if (code === -1 && child.pid !== undefined) child.kill('SIGTERM');
    return code;
  };
  const explain = async (err: unknown): Promise<unknown> => {
    if (err instanceof DdfsError && err.data.remote === true) return err; // the far side said why
    child.stdin!.destroy();
    const code = await ended();
    return code !== 0 ? new DdfsError('IO', `${endpoint}: the remote side exited with status ${code}`) : err;
  };
  let tree: StreamDigests;
  try {
    tree = await StreamDigests.open(name, await RecordReader.create(child.stdout!), await RecordWriter.create(child.stdin!, true), options);
  } catch (err) {
    const e = await explain(err);
    child.stdout!.resume();
    await ended();
    throw e;
  }
  return {
    tree,
    name,
    finish: async () => {
      await tree.close();
      child.stdout!.resume();
      return ended();
    },
    explain,
    // a local side read by its own process records its result as one read here would (unmounted only)
    recordAt: isRemote(endpoint) || (await import('../volume/volume.js')).mountPointOf(endpoint) !== null ? null : path.resolve(endpoint),
  };
}

/** Where progress lines go: plain lines with -p, the spinner on a terminal (when `spin`), else nowhere. */
async function progressSink(opts: PassFlags, spin: boolean): Promise<((line: string) => void) | undefined> {
  if (opts.progress) return (l) => process.stderr.write(`${NAME}: progress ${l}\n`);
  if (!spin || ProgressView.modeFor({ plain: false }) !== 'tty') return undefined;
  const ora = (await import('ora')).default; // a terminal only: ora is a third of the startup of a script's pass
  return (l) => {
    view ??= ProgressView.withOra({ plain: false }, ora);
    view.showText(l);
  };
}

async function verifyCommand(a: string, b: string, options: { deep: boolean; json: boolean; mtime: boolean }, flags: PassFlags): Promise<number> {
  try {
    return await verify(a, b, options, flags);
  } finally {
    stopSpinner();
  }
}


async function verify(a: string, b: string, options: { deep: boolean; json: boolean; mtime: boolean }, flags: PassFlags): Promise<number> {
  const [{ recordVerify }, { renderPath: renderPathBytes, renderVerifyLine, verifyLineJson, verifyTrees }] = await Promise.all([import('../mirror/verify_record.js'), import('../mirror/verify.js')]);
  const t0 = Date.now();
  // two local volumes: b is walked by a child process while this one walks a (a verify is two full walks); the
  // child is started first, so that its start and its open overlap the open of a here
  const ownProcess = !isRemote(a) && !isRemote(b);
  const opening = ownProcess ? openVerifySide(b, options, flags, true) : null;
  opening?.catch(() => undefined); // awaited below in every case; a rejection before that is not unhandled
  let sa: VerifySide;
  try {
    sa = await openVerifySide(a, options, flags);
    // a walks while b's process starts (b's walk starts in it once it is open)
    if (opening !== null) sa.tree.prefetch?.();
  } catch (err) {
    if (opening !== null) await opening.then((s) => s.finish(), () => undefined);
    throw err;
  }
  let sb: VerifySide;
  try {
    sb = await (opening ?? openVerifySide(b, options, flags));
  } catch (err) {
    await sa.finish();
    throw err;
  }
  const show = await progressSink(flags, true);
  let lastProgress = 0;
  const progress: VerifyProgress = {
    entriesCompared: 0,
    differences: 0,
    onEntry: show === undefined ? undefined : (p) => {
      const now = Date.now();
      if (now - lastProgress < MIRROR_VERIFY_PROGRESS_INTERVAL_MS) return;
      lastProgress = now;
      const rate = progress.entriesCompared / Math.max((now - t0) / 1000, 0.001);
      show(`entries ${progress.entriesCompared}, differences ${progress.differences}, ${rate.toFixed(0)} entries/s, at ${renderPathBytes(p)}`);
    },
  };
  let codes: number[] = [];
  try {
    const lines: VerifyLine[] = [];
    for await (const l of verifyTrees(sa.tree, sb.tree, progress)) {
      if (options.json) lines.push(l);
      else stdoutLine(`${renderVerifyLine(l)}\n`);
    }
    if (options.json) {
      const doc = { a: sa.name, b: sb.name, deep: options.deep, mtime: options.mtime, count: progress.differences, lines: lines.map(verifyLineJson) };
      process.stdout.write(`${JSON.stringify(doc)}\n`);
    }
  } catch (err) {
    if (err instanceof DdfsError && err.code === 'USAGE') throw new UsageError(err.message);
    let e = err;
    for (const s of [sa, sb]) e = await s.explain(e);
    throw e;
  } finally {
    codes = await Promise.all([sa.finish(), sb.finish()]);
  }
  const bad = codes.findIndex((c) => c !== 0);
  if (bad >= 0) throw new DdfsError('IO', `${[a, b][bad]}: the remote side exited with status ${codes[bad]}`);
  // the result goes to ddfsmirror/verify of each local unmounted side that has one (status shows it); nothing else is written
  const time = new Date().toISOString();
  for (const [s, peer] of [[sa, sb], [sb, sa]] as const) {
    if (s.recordAt === null) continue;
    try {
      recordVerify(s.recordAt, { time, differences: progress.differences, deep: options.deep, mtime: options.mtime, peer: peer.name });
    } catch (err) {
      // a read-only parent: the verify's result stands, only the record of it is lost
      process.stderr.write(`${NAME}: warning: ${s.recordAt}: cannot record the verify result: ${(err as Error).message}\n`);
    }
  }
  if (show !== undefined) {
    stopSpinner();
    process.stderr.write(`${NAME}: ${progress.entriesCompared} entries compared, ${progress.differences} differences, ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  return progress.differences === 0 ? EXIT.OK : EXIT.ERROR;
}

/** Write a line on stdout without tearing the spinner (it lives on stderr, which may be the same terminal). */
function stdoutLine(line: string): void {
  if (view) view.write(line, process.stdout);
  else process.stdout.write(line);
}
