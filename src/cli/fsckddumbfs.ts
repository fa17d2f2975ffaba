/**
 * fsckddumbfs [options] parent-directory — check, repair, rebuild and pack a volume (spec §10).
 *
 * Output: the volume's paths and a check's report (upstream's plain lines and summary table) on stdout; log lines
 * `HH:MM:SS LVL message` on stderr, and for the modes that write (-n -N -r -R -k) also in
 * `ddfsroot/.ddumbfs/ddumbfs.log`. A read-only check does not write the log file (it may run on a mounted volume).
 *
 * Exit status keeps ddumbfs's codes (style.md): 0 OK, 2 WARNING, 1 ERROR. Usage errors also exit 1, as upstream's
 * fsckddumbfs does, because 2 already means WARNING here. 130: interrupted by Ctrl-C (fsck/run.ts says where it
 * stopped and what is left; the volume is consistent).
 *
 * Progress (progress_view.ts): the phase, its units done of its total, rate and ETA on a spinner when stderr is a
 * terminal; `-p` (upstream's option) gives plain log-style lines `HH:MM:SS INF progress PHASE: …` instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommanderError, Option } from 'commander';
import { DdfsError, messageOf } from '../errors.js';
import { FSCK_EXIT } from '../fsck/findings.js';
import { volumePaths } from '../fsck/context.js';
import { runFsck, type FsckMode } from '../fsck/run.js';
import { Logger, clockText } from '../util/log.js';
import { LOG_FILE, ROOT_DIRECTORY, SPECIAL_DIRECTORY } from '../format/layout.js';
import { concatText } from '../util/path_text.js';
import { findParent, mountPointOf, readVolumeConfig } from '../volume/volume.js';
import { readVolumeLockHolder } from '../volume/lock.js';
import { openLogFileNoFollow, refuseSpecialSymlinks } from '../volume/special_paths.js';
import { makeProgram } from './common.js';
import { EXIT } from './exit_codes.js';
import { catchSigint } from './interrupt.js';
import { ProgressView } from './progress_view.js';
import { renderPhase } from '../util/progress.js';
import { statusOfReportLine, writeFsckRecord } from './fsck_record_file.js';
import { FSCK_MODE_OPTIONS } from '../format/fsck_record.js';

const NAME = 'fsckddumbfs';

const HELP = `Modes (exactly one):
  -c  check, read-only (allowed on a mounted volume, then not accurate)
  -C  check, and re-hash every block referenced by the index
  -n  repair, re-hashing only suspect blocks (recommended)
  -N  repair, trusting file nodes missing from the index (no re-hash)
  -r  rebuild the index from the blocks referenced by files
  -R  rebuild the index from every block of the block file

Progress: the phase, done/total, rate and ETA on a spinner when stderr is a
terminal; with -p, plain "HH:MM:SS INF progress ..." lines instead; else nothing.

Ctrl-C: a check stops at once. A repair or rebuild stops before it writes
(the volume is then as it was) or, once it is fixing files, finishes first;
-k's pack stops while copying blocks (nothing moved) or finishes. A second
Ctrl-C stops at once (then run the same fsckddumbfs again).

Exit status (as ddumbfs 1.1):
  0    OK: no error (check); the repair or rebuild completed, also when files
       stay corrupted (listed in ddfsroot/.ddumbfs/corrupted.txt)
  2    WARNING: only lost blocks, in files already corrupted (check)
  1    ERROR: the volume has errors (check), the operation failed, or a usage error
  130  interrupted (Ctrl-C): the line before says what was done and what is left

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

/**
 * Record a finished run in PARENT/ddfs.fsck for statddumbfs (cli/fsck_record_file.ts); `status` is the text of the
 * "Filesystem status" line when the run printed one. Best effort: a parent that cannot take it (read-only) only
 * costs a debug line.
 */
function recordRun(
  parent: string,
  run: { mode: FsckMode; pack: boolean; status: string | null; exitCode: number; repair?: { fixedFiles: number; corruptedFiles: number } },
  logger: Logger,
): void {
  const word = run.exitCode === FSCK_EXIT.OK ? 'OK' : run.exitCode === FSCK_EXIT.WARNING ? 'WARNING' : 'ERROR';
  try {
    writeFsckRecord(parent, {
      version: 1, tool: 'fsckddumbfs', time: new Date().toISOString(), mode: run.mode, option: FSCK_MODE_OPTIONS[run.mode]!, pack: run.pack,
      status: run.status ?? word, exit_code: run.exitCode,
      fixed_files: run.repair?.fixedFiles ?? null, corrupted_files: run.repair?.corruptedFiles ?? null,
    });
  } catch (err) {
    logger.dbg(`cannot record this run in ${parent}: ${messageOf(err)}`);
  }
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
    .option('-p, --progress', 'plain progress lines on stderr (also on a terminal, instead of the spinner)')
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
  const view = await ProgressView.create({ plain: o.progress === true, plainLine: (t) => `${clockText(new Date())} INF progress ${t}\n` });
  const logger = new Logger((line) => view.write(line));
  logger.debug = o.debug === true;
  const writes = mode !== 'check' && mode !== 'check-blocks';
  const sigint = catchSigint({
    onFirst: () => {
      if (writes) logger.warn('interrupt: stopping at the next safe point (a repair that is fixing files finishes first); Ctrl-C again to stop at once');
    },
    onSecond: () => {
      view.stop();
      logger.error(writes
        ? `interrupted again: stopped at once; the volume needs fsckddumbfs ${mode === 'rebuild' ? '-r' : mode === 'rebuild-blocks' ? '-R' : '-n'} again`
        : 'interrupted again: stopped at once, the check is incomplete');
    },
  });
  try {
    const parent = findParent(target);
    if (!parent) throw new DdfsError('NOT_FOUND', `${target}: not inside a ddumbfs volume (no ddfs.cfg and ddfsroot found)`);
    const cfg = await readVolumeConfig(parent);
    const paths = volumePaths(parent, cfg);
    process.stdout.write(`root directory: ${paths.root}\nblockfile: ${paths.block}\nindexfile: ${paths.index}\n`);
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
    let status: string | null = null;
    // a check is a reader: it leaves a record only when its result is accurate (nobody else has the volume), so a
    // check of a volume in use writes nothing at all
    const record = writes || (mountPointOf(parent) === null && (await readVolumeLockHolder(parent)) === null);
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
      out: (line) => {
        status = statusOfReportLine(line) ?? status;
        view.write(concatText(line, '\n'), process.stdout);
      },
      progress: (e) => view.update(e),
      signal: sigint.signal,
    });
    view.stop();
    if (record) recordRun(parent, { mode, pack: o.pack === true && writes, status, exitCode: r.exitCode, repair: r.repair }, logger);
    if (o.verbose) process.stdout.write(`${r.exitCode === FSCK_EXIT.OK ? 'OK' : r.exitCode === FSCK_EXIT.WARNING ? 'WARNING' : 'ERROR'}\n`);
    return r.exitCode;
  } catch (err) {
    view.stop();
    if (err instanceof DdfsError && err.code === 'INTERRUPTED') {
      // where it stopped: the phase's figures when it is the one the progress last showed
      const last = view.last;
      const phase = String(err.data.phase);
      const msg = last && last.phase === phase
        ? err.message.replace(`during ${phase}`, `during ${phase} (${renderPhase(last).slice(phase.length + 2)})`) : err.message;
      logger.warn(`${msg}${writes ? '' : ': the check is incomplete, no verdict'}`);
      return EXIT.INTERRUPTED;
    }
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
  } finally {
    sigint.dispose();
  }
}
