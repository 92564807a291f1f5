import pino from "pino";
import { describe, expect, it } from "vitest";
import type { Clock } from "../../agent/clock.js";
import { checkSchema, type CheckConfig } from "../../agent/config/schema.js";
import type { CheckStatus, ConsulApi } from "../../agent/consul/index.js";
import { HealthMonitor, checkTtlMs } from "../../agent/health/monitor.js";
import type { CheckRunner } from "../../agent/health/run.js";

const log = pino({ level: "silent" });

/** Lets every pending promise callback and I/O callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Time moves only when the test says so; timers fire in order of their due time. */
class FakeClock implements Clock {
  private t = 0;
  private timers: { at: number; resolve: () => void }[] = [];
  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(signal?.reason);
      };
      const timer = {
        at: this.t + ms,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      this.timers.push(timer);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.resolve();
    }
    this.t = end;
    await settle();
  }
}

interface Published {
  at: number;
  status: CheckStatus;
  output: string;
}

function fakeConsul(clock: FakeClock): { api: ConsulApi; published: Published[] } {
  const published: Published[] = [];
  const api = {
    updateTtlCheck: async (_id: string, status: CheckStatus, output: string) => {
      published.push({ at: clock.now(), status, output });
    },
  } as unknown as ConsulApi;
  return { api, published };
}

/** A runner that answers from a script (then repeats the last answer) and records run times. */
function scriptedRunner(clock: FakeClock, script: boolean[]): CheckRunner & { runs: number[] } {
  const runs: number[] = [];
  const runner = (async () => {
    const ok = script[Math.min(runs.length, script.length - 1)]!;
    runs.push(clock.now());
    return { ok, output: ok ? "probe ok" : "probe refused", latencyMs: 1 };
  }) as unknown as CheckRunner & { runs: number[] };
  runner.runs = runs;
  return runner;
}

const probe = (raw: Record<string, unknown> = {}): CheckConfig => checkSchema.parse({ type: "tcp", host: "127.0.0.1", port: 9, ...raw });

describe("HealthMonitor scheduling and ordering (fake clock)", () => {
  it("runs every `every` from start to start; publishes on a change of status and every TTL/3, not at every run", async () => {
    const clock = new FakeClock();
    const { api, published } = fakeConsul(clock);
    const check = probe({ every: "1s", timeout: "500ms", rise: 1, fall: 1 });
    // Floored: the TTL only guards against a stopped agent, which liveness catches first.
    expect(checkTtlMs(check)).toBe(30_000);
    expect(checkTtlMs(probe({ every: "10s", timeout: "5s" }))).toBe(45_000);
    const runner = scriptedRunner(clock, [true]);
    const monitor = new HealthMonitor({ checks: { p: check }, consul: api, serviceId: "s", log, clock, runner, beforeFail: async () => undefined });
    monitor.start();
    await clock.advance(30_000);
    expect(runner.runs).toEqual(Array.from({ length: 31 }, (_, i) => i * 1000));
    // The first run's pass (rise 1), then only the refreshes, every 10 s.
    expect(published.map((p) => p.at)).toEqual([0, 10_000, 20_000, 30_000]);
    expect(published.at(-1)).toMatchObject({ status: "passing", output: "p: 1/1 ok — probe ok" });
    await monitor.stop();
    await clock.advance(5000);
    expect(runner.runs.length).toBe(31);
  });

  it("never contends before rise: passing, onPass and whenPassing come only after the rise-th pass", async () => {
    const clock = new FakeClock();
    const { api, published } = fakeConsul(clock);
    const passed: number[] = [];
    const monitor = new HealthMonitor({
      checks: { p: probe({ rise: 3, fall: 2 }) },
      consul: api,
      serviceId: "s",
      log,
      clock,
      runner: scriptedRunner(clock, [true, false, true, true, true]),
      beforeFail: async () => undefined,
      onPass: () => passed.push(clock.now()),
    });
    let resolvedAt: number | undefined;
    void monitor.whenPassing(["p"]).then(() => (resolvedAt = clock.now()));
    monitor.start();
    await clock.advance(3000);
    expect(monitor.allPassing(["p"])).toBe(false);
    expect(resolvedAt).toBeUndefined();
    await clock.advance(1000);
    expect(monitor.allPassing(["p"])).toBe(true);
    expect(resolvedAt).toBe(4000);
    expect(passed).toEqual([4000]);
    expect(published.filter((p) => p.at <= 3000).every((p) => p.status === "critical")).toBe(true);
    expect(published.find((p) => p.at === 4000)).toMatchObject({ status: "passing", output: "p: 3/3 ok — probe ok" });
    await monitor.stop();
  });

  it("on fall: passing drops at once, Consul stays passing until beforeFail resolves, then critical", async () => {
    const clock = new FakeClock();
    const { api, published } = fakeConsul(clock);
    let release: () => void = () => undefined;
    const calls: string[] = [];
    const monitor = new HealthMonitor({
      checks: { p: probe({ every: "1s", timeout: "500ms", rise: 1, fall: 2 }) },
      consul: api,
      serviceId: "s",
      log,
      clock,
      runner: scriptedRunner(clock, [true, false, false]),
      beforeFail: (name) => {
        calls.push(name);
        return new Promise<void>((resolve) => (release = resolve));
      },
      beforeFailTimeoutMs: 20_000,
    });
    monitor.start();
    await clock.advance(2000);
    expect(calls).toEqual(["p"]);
    expect(monitor.allPassing(["p"])).toBe(false);
    expect(monitor.state("p")).toMatchObject({ passing: false, consulStatus: "passing", consecutiveFail: 2 });
    // Past the TTL/3 refresh at 10 s: it carries the failing output, still as passing.
    await clock.advance(9000);
    expect(published.map((p) => p.status)).not.toContain("critical");
    expect(published.at(-1)).toMatchObject({ status: "passing", output: "p: failing, 2/2 failed — probe refused" });
    release();
    await settle();
    expect(published.at(-1)).toMatchObject({ status: "critical", output: "p: failing, 2/2 failed — probe refused" });
    expect(monitor.state("p")?.consulStatus).toBe("critical");
    await monitor.stop();
  });

  it("a beforeFail that hangs is cut off at beforeFailTimeoutMs", async () => {
    const clock = new FakeClock();
    const { api, published } = fakeConsul(clock);
    const monitor = new HealthMonitor({
      checks: { p: probe({ every: "1s", rise: 1, fall: 1 }) },
      consul: api,
      serviceId: "s",
      log,
      clock,
      runner: scriptedRunner(clock, [true, false]),
      beforeFailTimeoutMs: 2500,
      beforeFail: () => new Promise<void>(() => undefined),
    });
    monitor.start();
    await clock.advance(3499);
    expect(published.map((p) => p.status)).not.toContain("critical");
    await clock.advance(1);
    expect(published.at(-1)).toMatchObject({ at: 3500, status: "critical" });
    await monitor.stop();
  });
});

describe("live: a reload changes checks in the running monitor (fake clock)", () => {
  it("live: replaceCheck re-registers with the status the check has and keeps its verdict: a holder's check never falls", async () => {
    const clock = new FakeClock();
    const { api, published } = fakeConsul(clock);
    const falls: string[] = [];
    const runner = scriptedRunner(clock, [true]);
    const monitor = new HealthMonitor({ checks: { p: probe({ every: "200ms", rise: 1, fall: 2 }) }, consul: api, serviceId: "s", log, clock, runner, beforeFail: async (n) => void falls.push(n) });
    monitor.start();
    await clock.advance(1000);
    expect(monitor.allPassing(["p"])).toBe(true);
    const registered: CheckStatus[] = [];
    const runsBefore = runner.runs.length;
    await monitor.replaceCheck("p", probe({ every: "1s", timeout: "900ms", rise: 3, fall: 2 }), async (status) => {
      // Between the old schedule's end and the new one's start, the check still counts as passing.
      expect(monitor.allPassing(["p"])).toBe(true);
      registered.push(status);
    });
    expect(registered).toEqual(["passing"]);
    expect(monitor.allPassing(["p"])).toBe(true);
    await clock.advance(3000);
    // The new schedule: every second, not every 200 ms; still passing (rise 3 does not apply to a passing check).
    expect(runner.runs.slice(runsBefore)).toEqual([1000, 2000, 3000, 4000]);
    expect(monitor.allPassing(["p"])).toBe(true);
    expect(published.every((x) => x.status === "passing")).toBe(true);
    expect(falls).toEqual([]);
    await monitor.stop();
  });

  it("live: a refused re-registration leaves the old definition running", async () => {
    const clock = new FakeClock();
    const { api } = fakeConsul(clock);
    const runner = scriptedRunner(clock, [true]);
    const monitor = new HealthMonitor({ checks: { p: probe({ every: "500ms", rise: 1 }) }, consul: api, serviceId: "s", log, clock, runner, beforeFail: async () => undefined });
    monitor.start();
    await clock.advance(1000);
    await expect(monitor.replaceCheck("p", probe({ every: "5s" }), async () => Promise.reject(new Error("refused")))).rejects.toThrow("refused");
    const mark = runner.runs.length;
    await clock.advance(1000);
    expect(runner.runs.length - mark).toBeGreaterThanOrEqual(2);
    expect(monitor.allPassing(["p"])).toBe(true);
    await monitor.stop();
  });

  it("live: setCheck adds a check that passes only after rise; removeCheck stops it", async () => {
    const clock = new FakeClock();
    const { api } = fakeConsul(clock);
    const runner = scriptedRunner(clock, [true]);
    const monitor = new HealthMonitor({ checks: {}, consul: api, serviceId: "s", log, clock, runner, beforeFail: async () => undefined });
    monitor.start();
    monitor.setCheck("n", probe({ every: "1s", rise: 2 }));
    await clock.advance(500);
    expect(monitor.allPassing(["n"])).toBe(false);
    await clock.advance(1000);
    expect(monitor.allPassing(["n"])).toBe(true);
    await monitor.removeCheck("n");
    const mark = runner.runs.length;
    await clock.advance(5000);
    expect(runner.runs.length).toBe(mark);
    expect(monitor.states().map((c) => c.name)).toEqual([]);
    await monitor.stop();
  });
});
