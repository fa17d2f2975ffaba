/**
 * check step 1 on an index holding one address twice: the later node is reported against the first one, whose
 * position the check finds although a clean -c keeps no map from addresses to nodes (check.ts nodeMap), with and
 * without -C, and with the crash flag (the recent-block check names nodes too).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readVolumeConfig } from '../volume/volume.js';
import { Logger } from '../util/log.js';
import { createVolume } from '../volume/create.js';
import { Volume } from '../volume/volume.js';
import { checkVolume } from './check.js';

const work = mkdtempSync(path.join(tmpdir(), 'fsck-dup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const quiet = (): Logger => new Logger(() => undefined);

describe('check: a duplicate address in the index', () => {
  it('names the first node holding it, in every check mode', async () => {
    const dir = path.join(work, 'v');
    mkdirSync(dir);
    await createVolume(dir, { partitionSize: 4 * 1024 * 1024, blockSize: 4096, hashName: 'TIGER', nodeOverflow: 1.3, reuseAsap: false });
    const vol = await Volume.open(dir);
    const f = await vol.openFile(vol.ufsPath('a'), { create: true });
    await f.write(0, randomBytes(20 * 4096));
    await f.close();
    await vol.close();
    const cfg = await readVolumeConfig(dir);
    const idxPath = path.join(dir, cfg.indexFilename);
    const bytes = readFileSync(idxPath);
    const used: number[] = [];
    for (let i = 0; i < cfg.nodeCount; i++) if (bytes.readUIntLE(cfg.nodeOffset + i * cfg.nodeSize, cfg.addrSize) !== 0) used.push(i);
    expect(used.length).toBe(20);
    // the last used node takes the address of the first one
    const [first, last] = [used[0]!, used[used.length - 1]!];
    const a = bytes.readUIntLE(cfg.nodeOffset + first * cfg.nodeSize, cfg.addrSize);
    bytes.writeUIntLE(a, cfg.nodeOffset + last * cfg.nodeSize, cfg.addrSize);
    writeFileSync(idxPath, bytes);
    for (const opts of [{ hashBlocks: false, crashed: false }, { hashBlocks: true, crashed: false }, { hashBlocks: false, crashed: true }]) {
      const r = await checkVolume(dir, { logger: quiet(), hashThreads: 0, ...opts });
      const dup = r.findings.filter((x) => x.kind === 'INDEX_DUPLICATE_ADDRESS');
      expect(dup.map((x) => x.message), JSON.stringify(opts)).toEqual([`node ${last} (addr=${a}) address already used by node ${first}`]);
      expect(r.summary.indexBlocksDup).toBe(1);
    }
  });
});
