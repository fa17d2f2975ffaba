/**
 * ddumbfs MNT -o parent=DIR[,options] | ddumbfs PARENT MNT [-o options] — mount a volume (the FUSE daemon, spec
 * §8.1); also what mount(8) runs for type fuse.ddumbfs (bin/mount.fuse.ddumbfs, Debian's mount.fuse).
 *
 * Without -f/-d the command behaves like a mount helper: it starts the daemon detached (itself with -f), waits
 * until the file system is served, prints the daemon's startup lines and exits 0 — or prints why the daemon
 * stopped and exits with its code. Also accepted: `ddumbfs PARENT MNT` and fstab's `ddumbfs -oparent=P MNT -o opts`.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseMountOptions } from '../fs/mount_options.js';
import { runDaemon } from '../fs/mount.js';
import { repairVolume } from '../fsck/repair.js';
import { CORRUPTED_LIST_FILE, SPECIAL_DIRECTORY } from '../format/layout.js';
import { serveMirrorControl } from '../mirror/control.js';
import { daemonPassVolume } from '../mirror/pass_volume.js';
import { openMasterJournal, type MasterJournal } from '../mirror/master_journal.js';
import { bumpMasterGeneration, readMirrorState } from '../mirror/state.js';
import { undoAreaHashes } from '../mirror/undo.js';
import { logger } from '../util/log.js';
import { messageOf } from '../errors.js';
import { sendNotify } from '../io/sd_notify.js';
import { SyslogSink } from '../io/syslog.js';
import { findParent, readVolumeConfig } from '../volume/volume.js';
import { nodeTreeAccess } from './mirrorddumbfs.js';
import { writeFsckRecord } from './fsck_record_file.js';
import { makeProgram, runCommand, UsageError } from './common.js';
import { EXIT } from './exit_codes.js';

/** Environment of a detached daemon: the fd on which it reports "mounted" to the command that started it. */
const READY_FD_ENV = 'DDUMBFS_READY_FD';

const HELP = `Options for -o (comma separated, -o may be repeated):
  parent=DIR          the volume's parent directory (required; any path inside it works)
  pool=N              writer pool: 0 disabled, N>0 threads, N<0 -N% of the CPUs (default -100)
  lock_index          lock the index in memory (default; a failure shows as lock_index 0)
  nolock_index        do not lock the index
  dio / nodio         accepted as upstream, shown as direct_io in the stats (default 1 for a
                      block device); the block file is never opened O_DIRECT
  reclaim=N           auto-reclaim when N% of the blocks are used (default 95)
  check               check the volume before mounting even after a clean unmount
  ro                  read-only: nothing written to the volume (no .autofsck, log, checkpoint
                      or reclaim), every write answers EROFS; works on a read-only parent
  rw                  read-write (default)
  fuse_default        prepend use_ino,readdir_ino,default_permissions,allow_other,big_writes,
                      max_read=131072,max_write=131072,max_readahead=1048576,negative_timeout=1,
                      entry_timeout=1,attr_timeout=0 (default; a mirror slave keeps 0 timeouts)
  nofuse_default      do not
  syslog / nosyslog   send the log lines to syslog too (default: facility daemon, ident
                      ddumbfs, via /dev/log or $DDUMBFS_SYSLOG_SOCKET; skipped when nothing
                      listens), or only to .ddumbfs/ddumbfs.log
  attr_cache          the daemon answers a repeated stat of an unchanged file without a
                      round trip to its ops (default; never on a mirror slave)
  noattr_cache        every stat of a file goes to the ops
  other options       passed to libfuse as given (e.g. allow_root, noexec, entry_timeout=0)
  defaults, _netdev, noauto, auto, user, nouser, users, owner, group, nofail, x-*, X-*, comment=
                      mount(8)/fstab options: accepted and ignored

mount -t fuse.ddumbfs PARENT MNT [-o options], an fstab line "PARENT MNT fuse.ddumbfs defaults 0 0"
and umount MNT work through /sbin/mount.fuse.ddumbfs (scripts/install.sh) or Debian's mount.fuse.

The daemon holds the volume lock (PARENT/ddfs.lock) for the whole mount: fsckddumbfs
repairs, cpddumbfs uploads, alterddumbfs and mkddumbfs refuse the volume meanwhile.
It serves mirrorddumbfs passes of the mounted volume on PARENT/ddfsmirror/control (mode 0600,
removed at unmount; not with -o ro). A mirror slave (ddfsmirror/state says role slave) is
served read-only: every write answers EROFS; only its mirror passes change it. A mirror master
(role master) journals every change before it happens in PARENT/ddfsmirror/journal/ and writes
PARENT/ddfsmirror/seal at a clean unmount; a mount without a valid seal bumps its generation.

Exit status:
  0    mounted (without -f), or unmounted cleanly (with -f)
  1    error (bad volume, mount refused or failed, volume locked, unclean stop)
       or usage error

Example:
  ddumbfs /ddumbfs -o parent=/l0/ddumbfs
  fusermount -u /ddumbfs`;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Start this command again, detached, in the foreground mode, and wait until it serves the file system or stops.
 * @returns 0 once mounted, else the daemon's exit code
 */
async function runDetached(argv: string[]): Promise<number> {
  const script = process.argv[1];
  if (!script) throw new Error('cannot find the ddumbfs script to start the daemon');
  // The daemon's stderr goes to an unlinked temp file: read back for the user, never a pipe that could break.
  const errPath = path.join(os.tmpdir(), `ddumbfs-${process.pid}-${Date.now()}.err`);
  const errFd = fs.openSync(errPath, 'w+', 0o600);
  fs.unlinkSync(errPath);
  try {
    const child = spawn(process.execPath, [...process.execArgv, script, ...argv, '-f'], {
      detached: true,
      stdio: ['ignore', 'ignore', errFd, 'pipe'],
      env: { ...process.env, [READY_FD_ENV]: '3' },
    });
    const ready = child.stdio[3] as NodeJS.ReadableStream | null;
    const outcome = await new Promise<{ mounted: boolean; code: number }>((resolve) => {
      let text = '';
      ready?.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('ready')) resolve({ mounted: true, code: EXIT.OK });
      });
      ready?.on('error', () => undefined);
      child.on('error', (err) => {
        process.stderr.write(`ddumbfs: cannot start the daemon: ${err.message}\n`);
        resolve({ mounted: false, code: EXIT.ERROR });
      });
      child.on('exit', (code, signal) => resolve({ mounted: false, code: code ?? (signal ? EXIT.ERROR : EXIT.OK) }));
    });
    const size = fs.fstatSync(errFd).size;
    if (size > 0) {
      const buf = Buffer.alloc(size);
      fs.readSync(errFd, buf, 0, size, 0);
      process.stderr.write(buf);
    }
    if (outcome.mounted) {
      (ready as unknown as { destroy?: () => void } | null)?.destroy?.();
      child.unref();
      return EXIT.OK;
    }
    return outcome.code === EXIT.OK ? EXIT.ERROR : outcome.code;
  } finally {
    fs.closeSync(errFd);
  }
}

/**
 * Tell a service manager that started this daemon with $NOTIFY_SOCKET (systemd Type=notify) about `state`
 * ("READY=1", "STOPPING=1"); a failure is logged, never fatal (sd_notify(3)).
 */
function notifyServiceManager(state: string): void {
  const socketName = process.env.NOTIFY_SOCKET;
  if (!socketName) return;
  try {
    sendNotify(socketName, state);
  } catch (err) {
    logger.warn(`NOTIFY_SOCKET=${socketName}: cannot notify the service manager: ${messageOf(err)}`);
  }
}

/** Tell systemd (sd_notify) and the command that started this detached daemon that the file system is served. */
function reportReady(parent: string, mountPoint: string): void {
  notifyServiceManager(`READY=1\nMAINPID=${process.pid}\nSTATUS=serving ${parent} on ${mountPoint}`);
  const fdText = process.env[READY_FD_ENV];
  if (!fdText) return;
  delete process.env[READY_FD_ENV];
  const fd = Number(fdText);
  try {
    fs.writeSync(fd, 'ready\n');
    fs.closeSync(fd);
  } catch {
    // the starter went away: nothing to tell
  }
  // stderr is a file nobody reads any more; the log file keeps the messages
  logger.quiet = true;
}

/** Run ddumbfs with `argv` (arguments after the command name). */
export async function main(argv: string[]): Promise<number> {
  const program = makeProgram('ddumbfs', 'Mount the ddumbfs volume whose parent directory is DIR on MNT (FUSE daemon).', HELP, '-V, --version')
    .usage('MNT -o parent=DIR[,options] [-f] [-d]  |  PARENT MNT [-o options] [-f] [-d]')
    .argument('[args...]', 'MNT, or PARENT MNT')
    .option('-o <options>', 'mount options, comma separated (see below)', collect, [] as string[])
    .option('-f', 'stay in the foreground (do not detach)')
    .option('-d', 'debug logging (implies -f)');
  return runCommand('ddumbfs', program, argv, async () => {
    const o = program.opts<{ o: string[]; f?: boolean; d?: boolean }>();
    const positional = program.args;
    const mountOptions = parseMountOptions(o.o);
    let mountPoint: string;
    if (positional.length === 1) {
      mountPoint = positional[0]!;
    } else if (positional.length === 2) {
      // `ddumbfs PARENT MNT` (mount -t fuse.ddumbfs PARENT MNT)
      mountOptions.parent ??= positional[0]!;
      mountPoint = positional[1]!;
    } else {
      throw new UsageError(positional.length === 0 ? 'missing mount point MNT' : `too many arguments: ${positional.join(' ')}`);
    }
    if (mountOptions.parent === null) throw new UsageError('missing -o parent=DIR');
    if (o.d) logger.debug = true;
    if (!o.f && !o.d) return runDetached(argv);
    // the daemon's lines go to syslog / the journal too, facility daemon, ident ddumbfs[pid] (-o nosyslog: not)
    if (mountOptions.syslog) logger.attachSink(SyslogSink.open({ ident: 'ddumbfs' }));
    // a mirror slave is written only by its passes (issue 7 item 0): served read-only, passes through the socket
    const parentDir = findParent(mountOptions.parent);
    const role = parentDir === null ? null : readMirrorState(parentDir)?.role ?? null;
    // the open journal of a master, for its incremental passes (spec §4.6)
    let masterJournal: MasterJournal | null = null;
    const code = await runDaemon({
      ...mountOptions,
      servedReadOnlyReason: role === 'slave' ? 'a mirror slave (ddfsmirror/state): only its mirror passes write it, through the control socket' : null,
      // a master journals every change before it happens (issue 8): no journal, no sink, no cost for other volumes
      onVolumeReady: role !== 'master' ? undefined : async ({ volume, parentDir: parent, crashed }) => {
        const mj = await openMasterJournal(parent, { crashed, rootDir: volume.rootDir, logger, writeWindowMs: journalWindowFromEnv() });
        if (mj === null) return null;
        masterJournal = mj;
        volume.tree.sink = mj.sink;
        const st = mj.journal.stats();
        logger.info(`mirror master: journal next_tid ${st.nextTid}, durable_head ${st.durableHead}, ${st.segmentCount} segments`);
        return {
          close: async (clean: boolean) => {
            volume.tree.sink = null;
            masterJournal = null;
            await mj.close(clean);
            const end = mj.journal.stats();
            logger.info(`mirror master: journal closed at durable_head ${end.durableHead}: ${end.recordCount - st.recordCount} records in ${end.syncCount} fsyncs this mount, ${end.coalescedCount - st.coalescedCount} changes coalesced${clean ? ', sealed' : ''}`);
          },
        };
      },
      onServing: ({ volume, flush, servedReadOnly }) => {
        // a slave's reclaim keeps what its undo areas reference: a rollback puts those files back (spec §4.8)
        if (role === 'slave') volume.addReferenceProvider({ hashes: () => undoAreaHashes(volume.parentDir, volume.config) });
        return serveMirrorControl(daemonPassVolume(volume, flush, () => masterJournal?.journal ?? null), { access: nodeTreeAccess, logger, slaveAllowed: servedReadOnly });
      },
      mountPoint,
      commandArgs: ['ddumbfs', ...argv].join(' '),
      logger,
      onMounted: () => reportReady(mountOptions.parent!, mountPoint),
      startupRepair: async (parentDir, crashed, log) => {
        // the startup repair is not journaled: a mirror master's generation goes up first
        bumpMasterGeneration(parentDir);
        // a slave's undo areas name blocks a rollback puts back: the repair keeps them (spec §4.8)
        const cfg = role === 'slave' ? await readVolumeConfig(parentDir) : null;
        const report = await repairVolume(parentDir, { logger: log, crashed, extraReferences: cfg === null ? undefined : () => undoAreaHashes(parentDir, cfg) });
        if (report.corruptedFiles > 0) {
          log.warn(`${report.corruptedFiles} corrupted files listed in ${SPECIAL_DIRECTORY}/${CORRUPTED_LIST_FILE}`);
        }
        try {
          // statddumbfs's "last fsck": this repair is fsckddumbfs -n's
          writeFsckRecord(parentDir, {
            version: 1, tool: 'ddumbfs', time: new Date().toISOString(), mode: 'repair', option: '-n', pack: false, status: 'OK',
            exit_code: 0, fixed_files: report.fixedFiles, corrupted_files: report.corruptedFiles,
          });
        } catch (err) {
          log.dbg(`cannot record the startup repair in ${parentDir}: ${messageOf(err)}`);
        }
      },
    });
    notifyServiceManager(`STOPPING=1\nSTATUS=unmounted, exit ${code}`);
    // The volume is closed. A lazily unmounted file system still in use keeps libfuse's thread (and so this
    // process) alive: end it now; its remaining users get ENOTCONN, as with upstream.
    setImmediate(() => process.exit(code));
    return code;
  });
}

/**
 * DDUMBFS_JOURNAL_WINDOW_MS (man ddumbfs(8), ENVIRONMENT): the journal's data-write and coalescing window in ms
 * (default JOURNAL_WRITE_WINDOW_MS); tests make it long so that what is coalesced does not depend on the clock.
 * A value that is not a positive integer is ignored.
 */
function journalWindowFromEnv(): number | undefined {
  const text = process.env.DDUMBFS_JOURNAL_WINDOW_MS;
  if (text === undefined || !/^\d{1,9}$/.test(text) || Number(text) === 0) return undefined;
  return Number(text);
}
