/**
 * The special files of `/.ddumbfs/` (spec §8.9): opening one read-only rewrites its underlying UFS file with fresh
 * content, then reads pass through raw. The handle is opened with direct_io, so the kernel neither caches the old
 * content nor trusts the old size, and no attr_timeout sleep is needed (upstream sleeps ≈1.1 s instead).
 */
import * as fsp from 'node:fs/promises';
import type { Logger } from '../util/log.js';
import type { Volume } from '../volume/volume.js';
import type { SpecialFileName } from './byte_path.js';

/**
 * Regenerate the content of special file `name` at UFS path `ufsPath` (relative to the daemon's cwd).
 * `stats`: the counters; `stats0`: the counters, then reset; `reclaim`: run the online reclaim and write its
 * report; `test` (the destructive 8 GiB benchmark of upstream) is not run: the file is left as it is.
 * @throws what the volume throws (e.g. DdfsError NOT_SUPPORTED for reclaim), Node errors of the write
 */
export async function regenerateSpecialFile(volume: Volume, name: SpecialFileName, ufsPath: Buffer, logger: Logger): Promise<void> {
  let text: string;
  switch (name) {
    case 'stats':
      text = volume.statsText(false);
      break;
    case 'stats0':
      text = volume.statsText(true);
      break;
    case 'reclaim':
      text = await volume.reclaimText();
      break;
    case 'test':
      logger.warn('/.ddumbfs/test: the write benchmark is not implemented; use testddumbfs');
      return;
  }
  await fsp.writeFile(ufsPath, text);
}
