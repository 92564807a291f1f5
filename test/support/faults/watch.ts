import { afterEach, beforeEach, expect } from "vitest";
import type { SimCluster } from "../cluster.js";
import { InvariantRecorder, type InvariantBounds, type RecordedRoute } from "./recorder.js";

/**
 * For a suite that injects faults into a SimCluster: records what a user sees during every
 * test (beforeEach → afterEach, every `intervalMs`) and fails the test whose record breaks a
 * liveness invariant of issue #14 (held ⇒ served, /status = Consul within 2 s, one writer).
 * The cluster's nodes need `http: true` for their /status to be compared.
 */
export function watchInvariants(sim: () => SimCluster | undefined, routes: Record<string, RecordedRoute>, bounds: InvariantBounds, intervalMs = 250): void {
  let recorder: InvariantRecorder | undefined;
  beforeEach(() => {
    const cluster = sim();
    recorder = cluster ? new InvariantRecorder(cluster, routes, intervalMs).start() : undefined;
  });
  afterEach(async () => {
    if (!recorder) return;
    const r = recorder;
    recorder = undefined;
    await r.stop();
    expect(r.consulSamples.length, "the invariant recorder took samples during the test").toBeGreaterThan(0);
    expect(r.violations(bounds), "liveness invariants (issue #14) over the test").toEqual([]);
  });
}
