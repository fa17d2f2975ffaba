/**
 * The opened volume a pass runs against (issue 7 item 0): the same runMaster/runSlave code serves an unmounted
 * volume, opened here by mirrorddumbfs under the volume lock, and a mounted one, inside its daemon against the
 * daemon's own Volume (its block store, index and UFS tree), reached through the control socket (control.ts).
 *
 * Invariants:
 * - Never two writers of one index: an unmounted volume is opened only after takeVolumeLock succeeded (the lock the
 *   daemon and fsck's repair take), also by a master that only reads (it must not run beside a repairing fsck);
 *   the lock is released when the handle closes, whatever happened. A read-only master side may take the lock
 *   shared instead (several passes of one unmounted master at once, never beside a writer: volume/lock.ts); what
 *   such a pass writes under ddfsmirror/ is then either its own (one replica's record, under a replica lock) or done
 *   `alone` (journal retention).
 * - A daemon's handle never closes the daemon's volume: `close` only ends the pass's use of it.
 * - Pins (spec §4.8): a slave pass registers its pinned hashes with the Volume's reference providers, so the
 *   daemon's reclaim keeps them until the pass ends.
 */
import * as path from 'node:path';
import type { DdfsConfig } from '../format/config.js';
import type { BlockStore } from '../store/block_store.js';
import { AUTOFSCK_MARKER, ROOT_DIRECTORY } from '../format/layout.js';
import { lstatOrNull } from '../io/mirror_fs.js';
import { pathBytes } from '../util/path_text.js';
import { takeSharedVolumeLock, takeVolumeLock } from '../volume/lock.js';
import { Volume } from '../volume/volume.js';
import { logger as defaultLogger } from '../util/log.js';
import { fileDevices } from '../io/device.js';
import { readJournalOffline, type JournalView } from './journal.js';
import { dropSeal, readSeal, startSealCheck, type MirrorSeal, type SealCheck } from './master_journal.js';
import { mirrorDirectory, readMirrorState } from './state.js';

/** What a pass needs of an opened volume. */
export interface PassVolume {
  /** The volume as the user named it (for messages). */
  readonly label: string;
  /** The resolved parent directory. */
  readonly parentDir: string;
  readonly config: DdfsConfig;
  readonly store: BlockStore;
  /** Whether this is a mounted volume's daemon serving the pass. */
  readonly mounted: boolean;
  /**
   * Whether the volume was not cleanly closed when the pass opened it (`.autofsck` in its parent): what its index
   * names may not be what its block file holds, so a slave re-reads a block before answering "have" (spec §4.8).
   */
  readonly uncleanAtOpen: boolean;
  /** Write back what the daemon holds in memory (write-behind buffers, held node lists) so the UFS files on disk are current. */
  flush(): Promise<void>;
  /** Monotonic count of changes (tree changes and block-store writes): equal twice means nothing was written between. */
  changeCount(): number;
  /** Keep every block whose hash is in `hashes` (latin1 keys of the raw bytes) from reclaim until the returned function is called. */
  pin(hashes: ReadonlySet<string>): () => void;
  /** End the pass's use of the volume (the unmounted one is closed and its lock released). */
  close(): Promise<void>;
  /**
   * Run `fn` only when no other pass can be using the volume (VolumeLock.alone): absent = at once (an exclusive lock,
   * or the daemon, which serializes its own passes' writes).
   * @returns fn's result, or null when it was skipped (another reader holds the volume)
   */
  alone?<T>(fn: () => Promise<T>): Promise<T | null>;
  /**
   * A master's journal for an incremental pass (§4.6), null when it has none, or why the one it has is not trusted
   * (text; the pass is then a content pass). The daemon's open journal when mounted; the sealed segments read without
   * writing when unmounted. Absent: no journal (a content pass).
   */
  openJournal?(): Promise<JournalView | string | null>;
  /**
   * Whether the journal openJournal returned is proven to hold every change of the tree up to its head (spec §4.3):
   * an unmounted master's seal census, started by openJournal and run beside the pass. Resolves null when proven,
   * else why not (one line; when the census found a change the seal is dropped, so later passes are content passes
   * at once; the replica of this pass gets one anyway, its pass left pending). Never rejects. An
   * incremental pass awaits it before COMMIT and does not commit otherwise. Absent: nothing to prove (no journal, or
   * a daemon's live one).
   */
  journalProof?(): Promise<string | null>;
  /** The pass does not need journalProof (a content pass): stop the census now (close() does it too). */
  releaseJournalProof?(): Promise<void>;
  /**
   * Tests only (a slave killed by its test hooks): drop the unmounted volume as a killed process would, closing its
   * devices without writing back what is in memory and releasing the lock; a later close() does nothing.
   */
  crash?(): Promise<void>;
}

function handleOf(volume: Volume, label: string, mounted: boolean, flush: () => Promise<void>, close: () => Promise<void>, uncleanAtOpen = false): PassVolume {
  return {
    label,
    parentDir: volume.parentDir,
    config: volume.config,
    store: volume.store,
    mounted,
    uncleanAtOpen,
    flush,
    changeCount: () => volume.changeCount,
    pin: (hashes) => volume.addReferenceProvider({ hashes: () => [...hashes].map((k) => Buffer.from(k, 'latin1')) }),
    close,
  };
}

/**
 * Whether the unmounted master at `parent` has a journal a pass may trust (spec §4.3): only the journal of a clean
 * unmount, a seal of this generation naming its last TID; anything else gets a content pass (the next mount bumps the
 * generation anyway, master_journal.ts). The seal's census is not taken here (startSealCheck).
 * @returns the seal, null when the volume has no journal (not a master, or never sealed one), or why it is not trusted
 * @throws DdfsError of the state file (INVALID for a symlink in the way)
 */
function sealedJournal(parent: string, unclean: boolean): { seal: MirrorSeal } | string | null {
  const state = readMirrorState(parent);
  if (state === null || state.role !== 'master' || state.durableHead === undefined) return null;
  if (unclean) return 'the last mount did not end cleanly (.autofsck)';
  const seal = readSeal(parent);
  if (seal === null) return 'the journal has no seal of a clean unmount';
  if (seal.generation !== state.generation) return `the generation is ${state.generation} since the journal's seal (${seal.generation}): an offline writer`;
  return { seal };
}

/**
 * Open the unmounted volume at `parentDir` for a pass, under the volume lock taken for `tool` (shared with other
 * readers with `shared` and `readOnly`, takeSharedVolumeLock, its `underGate` run while nobody else can start).
 * A master side (`readOnly`) whose journal has a seal starts the seal's census at once, unless `sealCensus` is false
 * (a content pass asked for: its journal proves nothing it needs, and journalProof then says no census ran).
 * @throws DdfsError LOCKED (another tool or a daemon holds it: the message names it, with `data.tool`), NOT_FOUND,
 *   BAD_CONFIG, BAD_MAGIC, TOO_SHORT, SYMLINK (Volume.open); nothing is written when it refuses
 */
export async function openPassVolume(parentDir: string, options: { tool: string; readOnly: boolean; shared?: { underGate?: () => void }; sealCensus?: boolean }): Promise<PassVolume> {
  const parent = path.resolve(parentDir);
  const lock = options.shared !== undefined && options.readOnly ? await takeSharedVolumeLock(parent, options.tool, options.shared.underGate) : await takeVolumeLock(parent, options.tool);
  // under the lock: no daemon runs, so a marker left now is one of a daemon that stopped without a clean unmount
  const unclean = lstatOrNull(pathBytes(path.join(parent, AUTOFSCK_MARKER))) !== null;
  // a master side's journal, decided once under the lock: the seal census starts at once, so that it runs beside
  // the opening of both volumes and the pass (openJournal, journalProof)
  const decideSeal = (): { seal: MirrorSeal } | string | null => {
    try {
      return sealedJournal(parent, unclean);
    } catch (err) {
      // as runMaster words a journal that cannot be opened: a content pass
      return `the journal cannot be read (${err instanceof Error ? err.message : String(err)})`;
    }
  };
  let sealed = options.readOnly ? decideSeal() : null;
  /** The seal census of the journal openJournal returns, running beside the pass (journalProof). */
  let sealCheck: SealCheck | null = null;
  const startCheck = (): void => {
    if (options.sealCensus === false) return;
    if (sealCheck === null && sealed !== null && typeof sealed !== 'string') sealCheck = startSealCheck(sealed.seal, path.join(parent, ROOT_DIRECTORY));
  };
  const stopSealCheck = async (): Promise<void> => {
    const c = sealCheck;
    sealCheck = null;
    await c?.stop();
  };
  startCheck();
  let volume: Volume;
  try {
    volume = await Volume.open(parent, { readOnly: options.readOnly, lock, logger: defaultLogger });
  } catch (err) {
    await stopSealCheck();
    await lock.release();
    throw err;
  }
  let closed: Promise<void> | null = null;
  const handle = handleOf(volume, parentDir, false, async () => undefined, () => (closed ??= stopSealCheck().then(() => volume.close(), async (err: unknown) => {
    await volume.close();
    throw err;
  })), unclean);
  handle.alone = (fn) => lock.alone(fn);
  handle.openJournal = async () => {
    if (!options.readOnly) sealed = decideSeal();
    if (sealed === null || typeof sealed === 'string') return sealed;
    // a tree changed behind the journal while unmounted (ddumbfs 1.1's tools, a hand edit) must not be trusted: the
    // census of the whole tree runs beside the pass (a worker thread, started at the open), and an incremental pass
    // commits only once it matched (journalProof)
    startCheck();
    const journal = await readJournalOffline(mirrorDirectory(parent), fileDevices, BigInt(sealed.seal.lastTid));
    if (journal === null) {
      await stopSealCheck();
      return 'the journal is not the one its seal names';
    }
    return journal;
  };
  handle.journalProof = async () => {
    const check = sealCheck;
    if (check === null) return 'no census of the seal ran for this pass';
    const v = await check.verdict;
    if (v === null) return null;
    // a proven change is for good (until the next mount bumps the generation): no later pass starts incremental only
    // to fail here again. A census that did not complete proves nothing either way: the seal stays
    if (v.changed) {
      try {
        dropSeal(parent);
      } catch {
        // the seal stays: the next pass takes the census again and fails the same way (never a wrong claim)
      }
    }
    return v.reason;
  };
  handle.releaseJournalProof = stopSealCheck;
  handle.crash = () => (closed ??= (async () => {
    await volume.store.blockDevice.close().catch(() => undefined);
    await volume.store.index.device.close().catch(() => undefined);
    await lock.release();
  })());
  return handle;
}

/**
 * The handle of the daemon's open volume, for a pass served through its control socket.
 * @param flush writes the daemon's write-behind buffers and held node lists back (ops.flushAll, Volume.writeHeldNodes)
 * @param journal the daemon's open master journal (master_journal.ts), or null when it has none
 */
export function daemonPassVolume(volume: Volume, flush: () => Promise<void>, journal: () => JournalView | null = () => null): PassVolume {
  const handle = handleOf(volume, volume.parentDir, true, flush, async () => undefined);
  handle.openJournal = async () => {
    // the daemon's records are buffered (group commit): make those of every change so far durable, so the pass
    // covers them
    const j = journal();
    await j?.sync?.();
    return j;
  };
  return handle;
}
