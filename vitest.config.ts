import { defineConfig } from 'vitest/config';
import { TEST_TIMEOUT_MS } from './test/helpers/timeouts.js';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Hang detectors only (test/helpers/timeouts.ts): the suite must pass on a machine ten times slower.
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: TEST_TIMEOUT_MS,
    // FUSE integration suites mount real filesystems: run files one at a time so two daemons never race for CPU.
    fileParallelism: false,
    reporters: ['default'],
  },
});
