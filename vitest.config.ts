import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Integration suites start real Consul, moto and metadata-mock processes: give them time,
    // and run at most two files at once on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    fileParallelism: true,
    pool: "forks",
  },
});
