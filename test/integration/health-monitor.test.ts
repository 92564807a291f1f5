import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSchema, type CheckConfig } from "../../agent/config/schema.js";
import { ConsulApi, ConsulConnection, type CheckStatus } from "../../agent/consul/index.js";
import { HealthMonitor, checkConsulId, checkTtlMs } from "../../agent/health/monitor.js";
import type { CheckRunner } from "../../agent/health/run.js";
import { startConsulDev, type StartedConsul } from "../support/consul.js";
import { waitUntil } from "../support/process.js";

const log = pino({ level: "silent" });
/** The lapse and refresh cases here want a TTL of seconds, not the agent's 30 s floor. */
const TTL_FLOOR_MS = 3000;
const check = (raw: Record<string, unknown>): CheckConfig => checkSchema.parse(raw);

interface AgentCheck {
  CheckID: string;
  Status: string;
  Output: string;
}

/** Counts TTL-check updates on their way to the real agent. */
class CountingConsulApi extends ConsulApi {
  readonly updates = new Map<string, number>();
  override async updateTtlCheck(checkId: string, status: CheckStatus, output: string, timeoutMs?: number): Promise<void> {
    this.updates.set(checkId, (this.updates.get(checkId) ?? 0) + 1);
    await super.updateTtlCheck(checkId, status, output, timeoutMs);
  }
}

describe("HealthMonitor publishing to a real Consul dev agent", () => {
  let consul: StartedConsul;
  let conn: ConsulConnection;
  let api: CountingConsulApi;
  let dir: string;
  let server: net.Server;
  let port: number;
  const monitors: HealthMonitor[] = [];

  /** The agent's own view of a check (what the UI shows on this node), read over raw HTTP. */
  async function agentCheck(id: string): Promise<AgentCheck | undefined> {
    return (await consul.get<Record<string, AgentCheck>>("/v1/agent/checks"))[id];
  }

  function waitForCheck(id: string, predicate: (c: AgentCheck) => boolean, what: string): Promise<AgentCheck> {
    return waitUntil(
      `check ${id}: ${what}`,
      async () => {
        const c = await agentCheck(id);
        return c && predicate(c) ? c : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
  }

  async function register(serviceId: string, checks: Record<string, CheckConfig>): Promise<void> {
    await api.registerService({
      id: serviceId,
      name: "routeleader",
      tags: [],
      meta: {},
      checks: Object.entries(checks).map(([name, c]) => ({ id: checkConsulId(serviceId, name), name, ttlMs: checkTtlMs(c, TTL_FLOOR_MS), status: "critical" })),
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rl-h-mon-"));
    server = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as net.AddressInfo).port;
    consul = await startConsulDev("rl-health");
    conn = new ConsulConnection({ address: consul.httpAddr });
    api = new CountingConsulApi(conn);
  });

  afterAll(async () => {
    await Promise.allSettled(monitors.map((m) => m.stop()));
    conn?.close();
    await consul?.stop();
    await new Promise((resolve) => server?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  describe("two checks on one service", () => {
    const serviceId = "rl-node-a";
    const flag = () => join(dir, "gate-ok");
    const events: string[] = [];
    const passed: string[] = [];
    let checks: Record<string, CheckConfig>;
    let monitor: HealthMonitor;

    beforeAll(async () => {
      checks = {
        gate: check({ type: "command", command: ["test", "-e", flag()], every: "100ms", timeout: "500ms", rise: 2, fall: 2 }),
        egress: check({ type: "tcp", host: "127.0.0.1", port, every: "100ms", timeout: "500ms", rise: 1, fall: 1 }),
      };
      await register(serviceId, checks);
      monitor = new HealthMonitor({
        checkTtlFloorMs: TTL_FLOOR_MS,
        checks,
        consul: api,
        serviceId,
        log,
        beforeFail: async (name) => {
          events.push(`beforeFail:${name}:start`);
          // While routes are being released Consul must still say passing, even after a
          // refresh has carried the new (failing) counters to it.
          const during = await waitForCheck(checkConsulId(serviceId, name), (c) => c.Output.includes("failing"), "refreshed with failing counters");
          events.push(`consul during beforeFail: ${during.Status}`);
          events.push(`allPassing during beforeFail: ${monitor.allPassing([name])}`);
          events.push(`beforeFail:${name}:end`);
        },
        onPass: (name) => passed.push(name),
      });
      monitors.push(monitor);
      monitor.start();
    });
    afterAll(() => monitor.stop());

    it("a booting check stays critical until it has passed `rise` times; the other passes on its own", async () => {
      const gateId = checkConsulId(serviceId, "gate");
      expect(gateId).toBe("rl-node-a:check:gate");
      const gate = await waitForCheck(gateId, (c) => c.Output.includes("exit 1"), "ran and failed");
      expect(gate.Status).toBe("critical");
      expect(gate.Output).toMatch(/^gate: failing, [12]\/2 failed — command test -e \S+gate-ok: exit 1, [\d.]+ ms$/);
      const egress = await waitForCheck(checkConsulId(serviceId, "egress"), (c) => c.Status === "passing", "passing");
      expect(egress.Output).toMatch(new RegExp(`^egress: 1/1 ok — tcp 127\\.0\\.0\\.1:${port}: connected, [\\d.]+ ms$`));
      expect(monitor.allPassing(["gate"])).toBe(false);
      expect(monitor.allPassing(["gate", "egress"])).toBe(false);
      expect(monitor.allPassing([])).toBe(true);
      expect(monitor.state("gate")).toMatchObject({ name: "gate", passing: false, consecutiveOk: 0, consulStatus: "critical" });
      expect(events).toEqual([]);
    });

    it("turns passing after rise passes: Consul shows passing by the time whenPassing resolves", async () => {
      writeFileSync(flag(), "");
      await monitor.whenPassing(["gate", "egress"]);
      const gate = await agentCheck(checkConsulId(serviceId, "gate"));
      expect(gate?.Status).toBe("passing");
      expect(gate?.Output).toMatch(/^gate: 2\/2 ok — command test -e \S+gate-ok: exit 0, [\d.]+ ms$/);
      expect(monitor.state("gate")).toMatchObject({ passing: true, consulStatus: "passing" });
      expect(monitor.state("gate")!.consecutiveOk).toBeGreaterThanOrEqual(2);
      expect(passed).toContain("gate");
      expect(monitor.states().map((s) => s.name).sort()).toEqual(["egress", "gate"]);
    });

    it("on fall: beforeFail runs (Consul still passing), then Consul turns critical; the other check is untouched", async () => {
      const gateId = checkConsulId(serviceId, "gate");
      const sawCritical = waitForCheck(gateId, (c) => c.Status === "critical", "critical").then((c) => {
        events.push("consul critical");
        return c;
      });
      unlinkSync(flag());
      const critical = await sawCritical;
      expect(events).toEqual([
        "beforeFail:gate:start",
        "consul during beforeFail: passing",
        "allPassing during beforeFail: false",
        "beforeFail:gate:end",
        "consul critical",
      ]);
      expect(critical.Output).toMatch(/^gate: failing, 2\/2 failed — command test -e \S+: exit 1, [\d.]+ ms$/);
      expect((await agentCheck(checkConsulId(serviceId, "egress")))?.Status).toBe("passing");
      expect(monitor.allPassing(["egress"])).toBe(true);
      expect(monitor.state("gate")).toMatchObject({ passing: false, consulStatus: "critical", consecutiveOk: 0 });
    });

    it("the catalog (what peers and sessions see) agrees with the agent", async () => {
      const catalog = await waitUntil(
        "catalog to show gate critical and egress passing",
        async () => {
          const checks = await consul.get<{ CheckID: string; Status: string; Output: string }[]>("/v1/health/checks/routeleader");
          const byId = new Map(checks.map((c) => [c.CheckID, c]));
          return byId.get(checkConsulId(serviceId, "gate"))?.Status === "critical" && byId.get(checkConsulId(serviceId, "egress"))?.Status === "passing" ? byId : undefined;
        },
        { timeoutMs: 15_000 },
      );
      expect(catalog.get(checkConsulId(serviceId, "gate"))?.Output).toContain("gate: failing");
    });
  });

  it("a beforeFail that never finishes is bounded: the check still turns critical", async () => {
    const serviceId = "rl-node-b";
    const flag = join(dir, "b-ok");
    writeFileSync(flag, "");
    const checks = { probe: check({ type: "command", command: ["test", "-e", flag], every: "100ms", timeout: "500ms", rise: 1, fall: 1 }) };
    await register(serviceId, checks);
    let called = 0;
    const monitor = new HealthMonitor({
      checkTtlFloorMs: TTL_FLOOR_MS,
      checks,
      consul: api,
      serviceId,
      log,
      beforeFailTimeoutMs: 300,
      beforeFail: () => {
        called++;
        return new Promise<void>(() => undefined);
      },
    });
    monitors.push(monitor);
    monitor.start();
    await monitor.whenPassing(["probe"]);
    unlinkSync(flag);
    await waitForCheck(checkConsulId(serviceId, "probe"), (c) => c.Status === "critical", "critical despite a stuck beforeFail");
    expect(called).toBe(1);
    await monitor.stop();
  });

  it("re-publishes every TTL/3, so the TTL never lapses while a run hangs; stop() aborts the run", async () => {
    const serviceId = "rl-node-c";
    const checks = { slow: check({ type: "tcp", host: "127.0.0.1", port, every: "100ms", timeout: "500ms", rise: 1, fall: 1 }) };
    const ttl = checkTtlMs(checks.slow, TTL_FLOOR_MS);
    expect(ttl).toBe(3000);
    await register(serviceId, checks);
    const checkId = checkConsulId(serviceId, "slow");
    // Control: this Consul logs a lapsed TTL in words we can recognise.
    await api.registerService({ id: "rl-lapse-control", name: "lapse-control", tags: [], meta: {}, checks: [{ id: "lapse-control", name: "c", ttlMs: 1000, status: "passing" }] });
    await consul.process.waitForLine(/missed TTL.*lapse-control/, 15_000);

    let runs = 0;
    let lastSignal: AbortSignal | undefined;
    const runner: CheckRunner = (_check, signal) => {
      runs++;
      lastSignal = signal;
      if (runs === 1) return Promise.resolve({ ok: true, output: "first run ok", latencyMs: 1 });
      return new Promise((resolve) => signal?.addEventListener("abort", () => resolve({ ok: false, output: "stopped", latencyMs: 0 })));
    };
    const monitor = new HealthMonitor({ checkTtlFloorMs: TTL_FLOOR_MS, checks, consul: api, serviceId, log, runner, beforeFail: async () => undefined });
    monitors.push(monitor);
    monitor.start();
    await monitor.whenPassing(["slow"]);
    // One update from the run, then only refreshes: enough of them to span more than one TTL.
    await waitUntil("refreshes spanning more than one TTL", async () => ((api.updates.get(checkId) ?? 0) >= 5 ? true : undefined), { timeoutMs: 4 * ttl });
    expect(runs).toBe(2);
    expect(consul.process.output(200)).not.toMatch(new RegExp(`missed TTL.*${checkId}`));
    expect((await agentCheck(checkId))?.Status).toBe("passing");
    await monitor.stop();
    expect(lastSignal?.aborted).toBe(true);
    await monitor.stop();
  });

  it("whenPassing: an empty list resolves, an aborted signal resolves, an unknown name is refused", async () => {
    const monitor = new HealthMonitor({
      checkTtlFloorMs: TTL_FLOOR_MS,
      checks: { never: check({ type: "command", command: ["false"] }) },
      consul: api,
      serviceId: "unused",
      log,
      beforeFail: async () => undefined,
    });
    await monitor.whenPassing([]);
    const controller = new AbortController();
    const waiting = monitor.whenPassing(["never"], controller.signal);
    controller.abort();
    await waiting;
    await expect(monitor.whenPassing(["never", "typo"])).rejects.toThrow(/unknown check\(s\) typo \(defined: never\)/);
    expect(monitor.state("typo")).toBeUndefined();
    await monitor.stop();
  });
});
