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
});
