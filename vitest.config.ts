import { defineConfig } from 'vitest/config';

// unit: fast, no privileges, runs anywhere. host: real processes, namespaces, daemons (root).
// The test box suite (test/testbox) is not run by vitest: it runs inside a Xen dom0 with node:test.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 } },
      { test: { name: 'host', include: ['test/host/**/*.test.ts'], testTimeout: 120_000, hookTimeout: 120_000, fileParallelism: false } },
    ],
  },
});
