import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Integration suites start real Consul clusters, moto, metadata mocks and agent processes
    // whose timing rules (3 s liveness TTL, 200 ms checks) must not starve for CPU on a 2-core
    // machine: run one file at a time.
    testTimeout: 120_000,
    hookTimeout: 240_000,
    fileParallelism: false,
    pool: "forks",
  },
});
