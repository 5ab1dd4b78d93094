import { defineConfig } from 'vitest/config';

// The runtime checks, apart from `npm test`: they need the application that
// scripts/ci-runtimes.sh installs (the packed library, Bun, Deno, esbuild, Miniflare).
export default defineConfig({
  test: {
    include: ['test/runtimes/*.spec.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
