import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // FUSE integration suites mount real filesystems: run files one at a time so two daemons never race for CPU.
    fileParallelism: false,
    reporters: ['default'],
  },
});
