/**
 * fsckddumbfs [options] parent-directory — check, repair, rebuild and pack a volume (spec §10).
 *
 * Output: the volume's paths and a check's report (upstream's plain lines and summary table) on stdout; log lines
 * `HH:MM:SS LVL message` on stderr, and for the modes that write (-n -N -r -R -k) also in
 * `ddfsroot/.ddumbfs/ddumbfs.log`. A read-only check does not write the log file (it may run on a mounted volume).
 *
 * Exit status keeps ddumbfs's codes (style.md): 0 OK, 2 WARNING, 1 ERROR. Usage errors also exit 1, as upstream's
 * fsckddumbfs does, because 2 already means WARNING here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommanderError, Option } from 'commander';
import type { Ora } from 'ora';
import { DdfsError, messageOf } from '../errors.js';
import { FSCK_EXIT } from '../fsck/findings.js';
import type { ProgressEvent } from '../fsck/context.js';
import { volumePaths } from '../fsck/context.js';
import { runFsck, type FsckMode } from '../fsck/run.js';
import { Logger, clockText } from '../util/log.js';
import { LOG_FILE, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { concatText } from '../util/path_text.js';
import { findParent, readVolumeConfig } from '../volume/volume.js';
import { openLogFileNoFollow, refuseSpecialSymlinks } from '../volume/special_paths.js';
import { makeProgram } from './common.js';

const NAME = 'fsckddumbfs';

const HELP = `Modes (exactly one):
  -c  check, read-only (allowed on a mounted volume, then not accurate)
  -C  check, and re-hash every block referenced by the index
  -n  repair, re-hashing only suspect blocks (recommended)
  -N  repair, trusting file nodes missing from the index (no re-hash)
  -r  rebuild the index from the blocks referenced by files
  -R  rebuild the index from every block of the block file

Exit status (as ddumbfs 1.1):
  0    OK: no error (check); the repair or rebuild completed, also when files
       stay corrupted (listed in ddfsroot/.ddumbfs/corrupted.txt)
  2    WARNING: only lost blocks, in files already corrupted (check)
  1    ERROR: the volume has errors (check), the operation failed, or a usage error

Examples:
  fsckddumbfs -c /l0/ddumbfs
  fsckddumbfs -n -v /l0/ddumbfs
  fsckddumbfs -f -r /l0/ddumbfs`;

interface Opts {
  check?: boolean;
  checkBlock?: boolean;
  repair?: boolean;
  repairRelaxed?: boolean;
  normal?: boolean;
  normalRelaxed?: boolean;
  rebuild?: boolean;
  rebuildBlock?: boolean;
  pack?: boolean;
  force?: boolean;
  progress?: boolean;
  verbose?: boolean;
  lockIndex?: boolean;
  lock_index?: boolean;
  debug?: boolean;
}

type OraFactory = typeof import('ora').default;

/**
 * Spinner on a TTY, plain throttled lines with -p otherwise, nothing else. `ora` is imported only for a TTY (main):
 * loading it costs about a third of the command's startup, which a check run by a script would pay for nothing.
 */
class ProgressView {
  private spinner: Ora | null = null;
  private lastLine = 0;
  private lastPhase = '';

  constructor(private readonly ora: OraFactory | null, private readonly plain: boolean) {}

  update(e: ProgressEvent): void {
    const pct = e.total > 0 ? ` (${Math.floor((100 * e.done) / e.total)}%)` : '';
    const text = `${e.phase}: ${e.done}${e.total > 0 ? `/${e.total}` : ''}${pct}`;
    if (this.ora) {
      this.spinner ??= this.ora({ stream: process.stderr, discardStdin: false }).start();
      this.spinner.text = text;
      return;
    }
    if (!this.plain) return;
    const now = performance.now();
    if (e.phase === this.lastPhase && now - this.lastLine < 1000 && e.done !== e.total) return;
    this.lastLine = now;
    this.lastPhase = e.phase;
    process.stderr.write(`${clockText(new Date())} INF progress ${text}\n`);
  }

  /** Write a line to stderr or stdout without tearing the spinner. */
  write(line: string | Buffer, stream: NodeJS.WriteStream = process.stderr): void {
    if (this.spinner) {
      this.spinner.clear();
      stream.write(line);
      this.spinner.render();
    } else {
      stream.write(line);
    }
  }

  stop(): void {
    this.spinner?.stop();
    this.spinner = null;
  }
}

function modeOf(o: Opts): FsckMode[] {
  const modes: FsckMode[] = [];
  if (o.check) modes.push('check');
  if (o.checkBlock) modes.push('check-blocks');
  if (o.repair || o.normal) modes.push('repair');
  if (o.repairRelaxed || o.normalRelaxed) modes.push('repair-relaxed');
  if (o.rebuild) modes.push('rebuild');
  if (o.rebuildBlock) modes.push('rebuild-blocks');
  return modes;
}

/** Run fsckddumbfs with `argv` (arguments after the command name). @returns the exit code */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram(NAME, 'Check, repair or rebuild the ddumbfs volume in PARENT (or any path inside it).', HELP)
    .argument('<parent>', 'parent directory of the volume')
    .option('-c, --check', 'check, read-only')
    .option('-C, --check-block', 'check and re-hash every indexed block')
    .option('-n, --repair', 'repair (re-hash suspect blocks only)')
    .option('-N, --repair-relaxed', 'repair, trusting file nodes missing from the index')
    .addOption(new Option('--normal', 'same as --repair (upstream name)').hideHelp())
    .addOption(new Option('--normal-relaxed', 'same as --repair-relaxed (upstream name)').hideHelp())
    .option('-r, --rebuild', 'rebuild the index from the blocks used by files')
    .option('-R, --rebuild-block', 'rebuild the index from every block of the block file')
    .option('-k, --pack', 'after a successful repair or rebuild, move every used block to the start of the block file')
    .option('-f, --force', 'rewrite a missing block-file magic (check modes: open anyway)')
    .option('-p, --progress', 'progress lines when stderr is not a terminal')
    .option('-v, --verbose', 'log every file-node update; print OK, WARNING or ERROR at the end')
    .option('-l, --lock-index', 'accepted for compatibility: the index is always held in memory')
    .addOption(new Option('--lock_index', 'same as --lock-index (upstream name)').hideHelp())
    .option('-d, --debug', 'debug log lines');
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version') return FSCK_EXIT.OK;
      return FSCK_EXIT.ERROR;
    }
    throw err;
  }
  const o = program.opts<Opts>();
  const modes = modeOf(o);
  if (modes.length !== 1) {
    process.stderr.write(`${NAME}: One of the options c, C, n, N, r, R must be selected, and only one !\n`);
    return FSCK_EXIT.ERROR;
  }
  const mode = modes[0]!;
  const [target] = program.args as [string];
  // a terminal of 0 columns (e.g. under script(1)) would make ora's line accounting run away
  const tty = process.stderr.isTTY === true && (process.stderr.columns ?? 0) > 0;
  const view = new ProgressView(tty ? (await import('ora')).default : null, o.progress === true);
  const logger = new Logger((line) => view.write(line));
  logger.debug = o.debug === true;
  try {
    const parent = findParent(target);
    if (!parent) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume (no ddfs.cfg and ddfsroot found)`);
    const cfg = await readVolumeConfig(parent);
    const paths = volumePaths(parent, cfg);
    process.stdout.write(`root directory: ${paths.root}\nblockfile: ${paths.block}\nindexfile: ${paths.index}\n`);
    const writes = mode !== 'check' && mode !== 'check-blocks';
    const special = path.join(parent, ROOT_DIRECTORY, SPECIAL_DIRECTORY);
    refuseSpecialSymlinks(parent); // before the log is attached: it lives in the special directory
    if (o.lockIndex || o.lock_index) logger.dbg('lock index: the index is held in memory by design');
    if (o.pack && !writes) logger.warn('-k has no effect with a check');
    // a mirror slave's undo areas name blocks outside ddfsroot that a rollback puts back (mirroring spec §4.8): a repair
    // keeps them; a rebuild or a pack cannot (the new index and the moved blocks know only ddfsroot), so it waits
    // the mirror modules are imported only when needed: mirror/state by the modes that write, mirror/undo (which
    // pulls in the mirror pass code) on a slave only; a check, often run by scripts on every volume, loads neither
    const mirror = writes ? await import('../mirror/state.js') : null;
    const undo = mirror?.readMirrorState(parent)?.role === 'slave' ? await import('../mirror/undo.js') : null;
    const liveUndo = undo ? undo.liveUndoAreas(parent) : [];
    if (liveUndo.length > 0 && (mode === 'rebuild' || mode === 'rebuild-blocks' || o.pack)) {
      throw new DdfsError('BUSY', `${parent}: a mirror pass is half-applied (${liveUndo.length} undo areas in ddfsmirror/undo): finish it by copying again from the master (or roll it back with mirrorddumbfs promote --rollback) before -r, -R or -k`);
    }
    const r = await runFsck(parent, {
      mode, pack: o.pack && writes, force: o.force, verbose: o.verbose, logger,
      // the log file is written only once the volume is ours (locked): a refusal leaves the volume untouched
      onLocked: () => {
        if (fs.existsSync(special)) logger.attachFile(path.join(special, LOG_FILE), openLogFileNoFollow);
        // a repair, rebuild or pack is not journaled: a mirror master's generation goes up before it changes anything
        const generation = mirror?.bumpMasterGeneration(parent) ?? null;
        if (generation !== null) logger.info(`mirror master: generation ${generation} (the repair is not journaled; slaves take a content pass)`);
      },
      extraReferences: undo && liveUndo.length > 0 ? () => undo.undoAreaHashes(parent, cfg) : undefined,
      out: (line) => view.write(concatText(line, '\n'), process.stdout),
      progress: (e) => view.update(e),
    });
    view.stop();
    if (o.verbose) process.stdout.write(`${r.exitCode === FSCK_EXIT.OK ? 'OK' : r.exitCode === FSCK_EXIT.WARNING ? 'WARNING' : 'ERROR'}\n`);
    return r.exitCode;
  } catch (err) {
    view.stop();
    let msg = messageOf(err);
    if (err instanceof DdfsError && (err.code === 'BAD_MAGIC' || err.code === 'TOO_SHORT') && /index/.test(msg)) {
      msg += ' (rebuild it with -r or -R)';
    } else if (err instanceof DdfsError && err.code === 'BAD_MAGIC') {
      msg += ' (use -f to rewrite it)';
    }
    logger.error(msg);
    if (process.env.DDUMBFS_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    if (o.verbose) process.stdout.write('ERROR\n');
    return FSCK_EXIT.ERROR;
  }
}
