import { describe, expect, it } from "vitest";
import type { LabResult } from "../support/faults/lab.js";
import { figures } from "../support/faults/report.js";
import type { TrialResult } from "../support/faults/trial.js";

const trial = (t: Partial<TrialResult>): TrialResult => ({ splitBrainWrites: 0, routeChanges: 1, violations: [], timeline: [], ...t });

describe("failover report figures (issue #16: an honest benchmark)", () => {
  it("a trial that never converged is counted and censored at the stated limit, never dropped from the percentiles", () => {
    const trials = [
      ...Array.from({ length: 9 }, (_, i) => trial({ ms: 1000 + i * 100, electionMs: 800 + i * 100, loadAverage: 2 + i })),
      trial({ neverConverged: true, violations: ["route did not move to a live, healthy host within 90 s (points at i-1)"], loadAverage: 12 }),
    ];
    const result: LabResult = { runs: [{ scenario: "host-power-off", system: "keepalived-tuned", trials }], startedAt: "", finishedAt: "" };
    const f = figures(result)["host-power-off"]!["keepalived-tuned"]!;
    expect(f.trials).toBe(10);
    expect(f.never_converged).toBe(1);
    expect(f.censored_at_ms).toBe(90_000);
    expect(f.max_ms).toBe(90_000);
    expect(f.p99_ms).toBe(90_000);
    expect(f.p50_ms).toBe(1400);
    // election (fault → MASTER/lock) and write (→ route observed) apart: every converged trial took 200 ms to write.
    expect(f.election_p50_ms).toBe(1200);
    expect(f.write_p50_ms).toBe(200);
    expect(f.write_p95_ms).toBe(200);
    expect(f.load_average).toEqual({ min: 2, max: 12 });
  });

  it("several runs of a cell are pooled for the percentiles, and each run's p50/p95 and the spread of its p95 are kept", () => {
    const run = (n: number, base: number) => ({ scenario: "host-power-off", system: "routeleader-default" as const, run: n, trials: Array.from({ length: 10 }, (_, i) => trial({ ms: base + i * 10, loadAverage: n })) });
    const result: LabResult = { runs: [run(1, 2000), run(2, 2100), run(3, 2500)], startedAt: "", finishedAt: "" };
    const f = figures(result)["host-power-off"]!["routeleader-default"]!;
    expect(f.trials).toBe(30);
    expect(f.p50_ms).toBe(2140);
    expect(f.max_ms).toBe(2590);
    expect(f.runs).toEqual([
      { run: 1, trials: 10, p50_ms: 2040, p95_ms: 2090, load_average: { min: 1, max: 1 } },
      { run: 2, trials: 10, p50_ms: 2140, p95_ms: 2190, load_average: { min: 2, max: 2 } },
      { run: 3, trials: 10, p50_ms: 2540, p95_ms: 2590, load_average: { min: 3, max: 3 } },
    ]);
    expect(f.p95_spread_ms).toBe(500);
  });
});
