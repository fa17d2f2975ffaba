/**
 * The tests are type-checked too: vitest strips types without checking them, so a test could call an API that no
 * longer exists (or import a module that does not: the import is dropped when unused) and still pass. This runs
 * tsc over src/ and test/ with tsconfig.test.json (noEmit) and fails with its messages.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_DIR } from './helpers/mount.js';
import { run } from './helpers/run.js';
import { TEST_TIMEOUT_MS } from './helpers/timeouts.js';

describe('typecheck', () => {
  it('tsc -p tsconfig.test.json reports no error in src/ or test/', async () => {
    const tsc = join(REPO_DIR, 'node_modules', '.bin', 'tsc');
    const r = await run(tsc, ['-p', join(REPO_DIR, 'tsconfig.test.json')], { cwd: REPO_DIR, encoding: 'utf8', timeoutMs: TEST_TIMEOUT_MS });
    const errors = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors).toEqual([]);
    expect(r.code).toBe(0);
  }, TEST_TIMEOUT_MS);
});
