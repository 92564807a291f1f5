import { describe, expect, it } from "vitest";
import { runInHub } from "../support/faults/run.js";
import type { SteadyResult, SteadySpec } from "../support/faults/steady-run.js";

/**
 * False failovers (issue #16 goal 2), short: the steady-run of `npm run bench:false-failovers`
 * for the default profile, 45 s with mild network delay and loss on every host (20 ± 10 ms, 1 %)
 * and two CPU-starvation bursts on the holder (10 % of a core with a busy loop, 10 s each).
 * What it asserts is safety, not a rate: no stray write, whatever the peers decide under
 * starvation; and that the conditions really applied (packets delayed and dropped on every host,
 * the holder's cgroup throttled). The false-failover rate is the benchmark's to measure (30 min:
 * docs/benchmarks/false-failovers.json); one 45 s run once saw a burst stretch the holder's
 * heartbeat silence to 864 ms against the default 800 ms window, so a rate of 0 is not asserted here.
 */

const SPEC: SteadySpec = {
  system: "routeleader-default",
  minutes: 0.75,
  netem: { delayMs: 20, jitterMs: 10, lossPercent: 1 },
  starve: { cpuPercent: 10, burstMs: 10_000, everyMs: 20_000, spinner: true },
};

describe("false failovers: a steady cluster under jitter, loss and CPU starvation", () => {
  it(
    "default profile: 45 s with 2 starvation bursts on the holder under delay and loss: the conditions apply and no route write comes from a non-holder",
    async () => {
      const lines: string[] = [];
      let r: SteadyResult;
      try {
        r = await runInHub<SteadyResult>([SPEC.system], "false-failovers-hub.ts", SPEC, { timeoutMs: 150_000, onLine: (l) => lines.push(l) });
      } catch (err) {
        throw new Error(`${(err as Error).message}\n${lines.slice(-40).join("\n")}`);
      }
      const where = JSON.stringify({ failovers: r.failovers, nearMisses: r.nearMisses, bursts: r.burstList, netem: r.netem, load: r.loadAverage });
      process.stderr.write(`false-failovers smoke: ${where}\n`);
      expect(r.bursts, where).toBe(2);
      for (const b of r.burstList) expect(b.throttledPeriods, where).toBeGreaterThan(0);
      for (const [host, n] of Object.entries(r.netem)) {
        expect(n.sent, `${host}: ${where}`).toBeGreaterThan(100);
        expect(n.dropped, `${host}: ${where}`).toBeGreaterThan(0);
      }
      expect(r.consulSamples, where).toBeGreaterThan(20);
      process.stderr.write(`false-failovers smoke: ${r.falseFailovers} false failover(s) in 45 s\n`);
      expect(r.strayWrites, where).toBe(0);
    },
    180_000,
  );
});
