import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // Integration files start servers of their own; two cores run two files at once.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
