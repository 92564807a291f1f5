import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModifyInstanceAttributeCommand } from "@aws-sdk/client-ec2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startSimCluster, type AgentStatus, type SimCluster, type SimNode } from "../support/cluster.js";
import { consulHttp } from "../support/consul.js";
import { EC2_ERRORS, type ProxyCall } from "../support/fault-proxy.js";
import { interleavedWriters, reportedHoldsDisagree } from "../support/faults/invariants.js";
import { InvariantRecorder } from "../support/faults/recorder.js";
import { startHttpRelay, type StartedHttpRelay } from "../support/http-relay.js";
import { waitUntil } from "../support/process.js";

/**
 * Issue #14: liveness, black-box. Each test injects one fault that a user of the agent can
 * meet in production (a lost Consul answer, an EC2 refusal, an EC2 read outage, a dead peer)
 * and asserts what the user sees within a stated bound: where the route table in moto points,
 * who holds the key in Consul (read over HTTP from a Consul server), and what the agents' own
 * /status says. Faults come from an HTTP relay between n1 and its Consul client agent (single
 * Consul answers lost or reset) and from the EC2 fault proxy (per node, per route, for a time).
 *
 * One cluster for the file: 3 real Consul servers, a client agent per node, moto, a metadata
 * mock per node. Each scenario has a route of its own, and each route a check of its own
 * (a file in the node's state dir), so a test decides which node may hold its route without
 * disturbing the others. Scenario 4 kills a node and its Consul agent, so it runs last.
 */

const CLUSTER = "liveness";
const LOCK_DELAY_MS = 3000;
const STANDBY_DELAY_MS = 15_000;
const SOURCE_DEST_REFRESH_MS = 2000;

/** route → [table, destination, check]; every route but r4 has no AZ preference. */
const ROUTES = {
  r1: ["t-b", "10.1.0.0/16", "c1"],
  r2: ["t-b", "10.2.0.0/16", "c2"],
  r3: ["t-b", "10.3.0.0/16", "c3"],
  r4: ["t-a", "0.0.0.0/0", "c4"],
  r5: ["t-b", "10.5.0.0/16", "nat"],
  r6: ["t-b", "10.6.0.0/16", "c6"],
  r7: ["t-b", "10.7.0.0/16", "c7"],
} as const;
type Route = keyof typeof ROUTES;

const fileCheck = (route: string) => ({ type: "command", command: ["test", "-e", `{dir}/ok-${route}`], every: "200ms", timeout: "500ms", rise: 1, fall: 2 });

let sim: SimCluster;
let relay: StartedHttpRelay;
let fakeProc: string;
let n1: SimNode;
let n2: SimNode;
let n3: SimNode;

const keyPath = (route: Route) => `/v1/kv/routeleader/${CLUSTER}/routes/${route}`;
const isKeyRequest = (route: Route, method: string, param: "acquire" | "release") => (req: { method: string; path: string }) => {
  const url = new URL(req.path, "http://relay");
  return req.method === method && url.pathname === keyPath(route) && url.searchParams.has(param);
};

/** The `{dir}/ok-<route>` file that route's check tests for. */
function setOk(node: SimNode, route: Route, ok: boolean): void {
  if (ok) writeFileSync(node.file(`ok-${route}`), "ok");
  else rmSync(node.file(`ok-${route}`), { force: true });
}

async function holder(route: Route): Promise<string | undefined> {
  return (await sim.holders()).get(route)?.instanceId;
}

async function target(route: Route): Promise<string | undefined> {
  const [table, destination] = ROUTES[route];
  return sim.routeTarget(table, destination);
}

const nameOf = (instanceId: string | undefined) => sim.nodeByInstance(instanceId)?.name ?? instanceId ?? "nobody";

async function routeStatus(node: SimNode, route: Route): Promise<AgentStatus["routes"][number] | undefined> {
  return (await node.status()).routes.find((r) => r.route === route);
}

/** Polls until `probe` returns a value; fails naming `what` and the bound. */
function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 100): Promise<T> {
  return waitUntil(what, probe, { timeoutMs: Math.max(0, timeoutMs), intervalMs });
}

/** Makes `node` the only node whose check for `route` passes and waits until it holds the route and the table points at it. */
async function makeHolder(route: Route, node: SimNode, timeoutMs = 30_000): Promise<void> {
  for (const n of [n1, n2, n3]) if (n !== node) setOk(n, route, false);
  setOk(node, route, true);
  await waitFor(`${node.name} holds ${route} and the table points at it`, async () => ((await holder(route)) === node.instanceId && (await target(route)) === node.instanceId ? true : undefined), timeoutMs);
}

/** EC2 route writes (that reached the proxy) for one route. */
function writesOf(route: Route, filter: (c: ProxyCall) => boolean = () => true): ProxyCall[] {
  const [table, destination] = ROUTES[route];
  const tableId = sim.tableIds.get(table);
  return sim.proxy!.calls({ mutating: true }).filter((c) => (c.action === "ReplaceRoute" || c.action === "CreateRoute") && c.params.RouteTableId === tableId && c.params.DestinationCidrBlock === destination && filter(c));
}

/** Time of the first successful route write to `who` for `route` at or after `since`. */
function firstWrite(route: Route, who: SimNode, since: number): number | undefined {
  return writesOf(route, (c) => c.caller === who.name && c.status === 200 && !c.injected && c.time >= since && c.params.InstanceId === who.instanceId)[0]?.time;
}

beforeAll(async () => {
  // The nat check reads net.ipv4.ip_forward from /proc; the agents see a private copy that
  // says 1 (a mount namespace of their own; the host's setting is not touched).
  const procDir = mkdtempSync(join(tmpdir(), "rl-liveness-proc-"));
  fakeProc = join(procDir, "ip_forward");
  writeFileSync(fakeProc, "1\n");
  const wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind '${fakeProc}' /proc/sys/net/ipv4/ip_forward && exec "$@"`, "sh"];
  sim = await startSimCluster({
    cluster: CLUSTER,
    nodes: [
      { name: "n1", az: "us-east-1a", http: true, wrap },
      { name: "n2", az: "us-east-1b", http: true, wrap },
      { name: "n3", az: "us-east-1a", http: true, wrap },
    ],
    tables: [
      { name: "t-a", az: "us-east-1a" },
      { name: "t-b", az: "us-east-1b" },
    ],
    routes: Object.entries(ROUTES).map(([name, [table, destination, check]]) => ({
      name,
      table: { tags: { Name: table } },
      destination,
      checks: [check],
      preferredAz: name === "r4" ? "auto" : "none",
    })),
    checks: {
      c1: fileCheck("r1"),
      c2: fileCheck("r2"),
      c3: fileCheck("r3"),
      c4: fileCheck("r4"),
      c6: fileCheck("r6"),
      c7: fileCheck("r7"),
      nat: { type: "nat", requireMasquerade: false, every: "1s", timeout: "900ms", rise: 1, fall: 3 },
    },
    extra: {
      policy: { standbyDelay: `${STANDBY_DELAY_MS}ms`, failbackAfter: "4s", holdDown: "10s" },
    },
    faultProxy: true,
  });
  [n1, n2, n3] = [sim.node("n1"), sim.node("n2"), sim.node("n3")];
  // n1 reaches its Consul client agent through a relay that can lose single answers.
  relay = await startHttpRelay({ upstream: n1.consul.httpAddr });
  n1.patchConfig({ consul: { address: relay.endpoint } });
  // Merged into each node's aws section (the cluster's `extra` would replace the proxy endpoint).
  for (const n of sim.nodes) n.patchConfig({ aws: { sourceDestRefresh: `${SOURCE_DEST_REFRESH_MS}ms` } });
  // The nat check needs source/dest check off; the simulated instances start with it on.
  for (const n of sim.nodes) await sim.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: n.instanceId, SourceDestCheck: { Value: false } }));
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await Promise.all(sim.nodes.map((n) => n.waitForEvent((e) => e.msg === "agent running", 60_000)));
  // Only r5 (the nat check) has a holder until a test says otherwise.
  await waitFor("r5 held and written", async () => {
    const h = await holder("r5");
    return h && (await target("r5")) === h ? true : undefined;
  }, 60_000);
}, 240_000);

afterEach(async () => {
  sim?.proxy?.clearFaults();
  relay?.clearFaults();
  for (const n of sim?.nodes ?? []) {
    if (n.process && !n.process.hasExited) await n.control("undrain").catch(() => undefined);
  }
});

afterAll(async () => {
  await sim?.stop();
  await relay?.stop();
  if (fakeProc) rmSync(join(fakeProc, ".."), { recursive: true, force: true });
}, 120_000);

describe("liveness (issue #14): a node never holds a route it does not serve", () => {
  it("liveness: 1. lost acquire answer — the node adopts its own key (route written to it) or releases it within one watch round (10 s), whether the answer times out or the connection drops", async () => {
    const BOUND_MS = 10_000;
    const lostAcquire = async (fault: "withholdAnswer" | "dropAnswer") => {
      for (const n of [n1, n2, n3]) setOk(n, "r1", false);
      await waitFor("r1 free", async () => ((await holder("r1")) === undefined ? true : undefined), 15_000);
      // The first ?acquire= of r1 by n1 reaches Consul and succeeds; its answer never comes
      // back (withheld until n1's own request timeout) or the connection drops after it.
      const lost = relay.inject(fault, isKeyRequest("r1", "PUT", "acquire"));
      setOk(n1, "r1", true);
      const hit = await lost.waitForHit(20_000);
      // The acquire took effect: Consul gave the key to n1 (the fault is real, not a refused request).
      await waitFor("Consul's r1 key taken by n1's lost acquire", async () => {
        const raw = (await consulHttp("GET", `${sim.consul.servers[0]!.httpAddr}${keyPath("r1")}?consistent`)).json as { Value?: string; LockIndex: number }[];
        const value = raw[0]?.Value ? (JSON.parse(Buffer.from(raw[0].Value, "base64").toString()) as { instanceId?: string }) : undefined;
        return value?.instanceId === n1.instanceId && (raw[0]?.LockIndex ?? 0) > 0 ? true : undefined;
      }, 3000);
      // A peer that could take the route if n1 gives it up.
      setOk(n2, "r1", true);

      // Within one watch round: the route points at a holder that serves it, and that holder's
      // /status says so. Either n1 (adopted its own key) or n2 (n1 released it).
      const served = await waitFor(
        `${fault}: r1 served within ${BOUND_MS} ms of the lost acquire answer (Consul holder = table target = a node whose /status holds r1)`,
        async () => {
          const h = await holder("r1");
          const node = sim.nodeByInstance(h);
          if (!node || (await target("r1")) !== h) return undefined;
          const s = await routeStatus(node, "r1");
          return s?.phase === "holding" && s.holder === h ? node : undefined;
        },
        BOUND_MS - (Date.now() - hit.time),
      ).catch(async (err: Error) => {
        const s = await routeStatus(n1, "r1").catch(() => undefined);
        throw new Error(`${err.message}; after ${Date.now() - hit.time} ms: Consul holder ${nameOf(await holder("r1"))}, table → ${nameOf(await target("r1"))}, n1 /status r1 = ${JSON.stringify(s)}`);
      });
      // n1's own account agrees with Consul.
      const s1 = await routeStatus(n1, "r1");
      const consulHolder = await holder("r1");
      expect(s1?.phase === "holding", `n1 /status r1 ${JSON.stringify(s1)} vs Consul holder ${nameOf(consulHolder)}`).toBe(consulHolder === n1.instanceId);
      console.log(`lost acquire answer (${fault}): r1 served by ${served.name} ${Date.now() - hit.time} ms after the acquire reached Consul`);
    };
    await lostAcquire("withholdAnswer");
    await lostAcquire("dropAnswer");
    for (const n of [n1, n2, n3]) setOk(n, "r1", false);
  });

  it("liveness: 2. fatal route write — after bounded attempts the holder releases, is blocked for a back-off (visible in /status), and a peer takes and writes the route (30 s)", async () => {
    const BOUND_MS = 30_000;
    setOk(n1, "r2", false);
    setOk(n2, "r2", false);
    setOk(n3, "r2", false);
    await waitFor("r2 free", async () => ((await holder("r2")) === undefined ? true : undefined), 10_000);
    const [table, destination] = ROUTES.r2;
    const tableId = sim.tableIds.get(table);
    // EC2 refuses n1's writes of this route for good (an IAM change); nobody else's.
    sim.proxy!.failDuring(Number.POSITIVE_INFINITY, {
      action: ["ReplaceRoute", "CreateRoute"],
      caller: "n1",
      match: (p) => p.RouteTableId === tableId && p.DestinationCidrBlock === destination,
      error: EC2_ERRORS.unauthorized,
    });
    setOk(n1, "r2", true);
    await waitFor("n1 holds r2", async () => ((await holder("r2")) === n1.instanceId ? true : undefined), 20_000);
    const firstRefusal = await waitFor("n1's write of r2 refused by EC2", async () => writesOf("r2", (c) => c.caller === "n1" && c.status === 403)[0], 10_000);
    setOk(n2, "r2", true);

    await waitFor(
      `a peer holds r2 and the table points at it within ${BOUND_MS} ms of the first refused write`,
      async () => ((await holder("r2")) === n2.instanceId && (await target("r2")) === n2.instanceId ? true : undefined),
      BOUND_MS - (Date.now() - firstRefusal.time),
    ).catch(async (err: Error) => {
      const refused = writesOf("r2", (c) => c.caller === "n1" && c.status === 403).length;
      throw new Error(`${err.message}; after ${Date.now() - firstRefusal.time} ms: Consul holder ${nameOf(await holder("r2"))}, table → ${nameOf(await target("r2"))}, ${refused} refused writes by n1, n1 /status r2 = ${JSON.stringify(await routeStatus(n1, "r2").catch(() => undefined))}`);
    });
    const tookOver = Date.now();
    const refused = writesOf("r2", (c) => c.caller === "n1" && c.status === 403 && c.time <= tookOver);
    expect(refused.length, "refused writes before n1 gave the route up").toBeLessThanOrEqual(10);

    // The reason, and for how long n1 stays away from r2, are in n1's /status.
    const s = await routeStatus(n1, "r2");
    expect(s?.phase).not.toBe("holding");
    expect(s?.blocked, `n1 /status r2 = ${JSON.stringify(s)}`).toMatchObject({ reason: expect.stringMatching(/UnauthorizedOperation/) });
    // For how long: `until` (a time) or `forMs` (what is left of the back-off).
    const blocked = s!.blocked!;
    const leftMs = blocked.forMs ?? (typeof blocked.until === "number" ? blocked.until : Date.parse(String(blocked.until))) - Date.now();
    expect(leftMs, `n1 is blocked from r2 for a back-off still running: ${JSON.stringify(blocked)}`).toBeGreaterThan(0);
    console.log(`fatal write: ${refused.length} refused write(s) by n1; n2 serves r2 ${tookOver - firstRefusal.time} ms after the first; n1 blocked: ${JSON.stringify(s!.blocked)}`);
    setOk(n1, "r2", false);
    setOk(n2, "r2", false);
  });

  it("liveness: 3. failed release during drain — Consul stops showing the node as holder within 10 s, and its /status never disagrees with Consul for more than 2 s", async () => {
    const BOUND_MS = 10_000;
    await makeHolder("r3", n1);
    setOk(n2, "r3", true);
    // n1's first ?release= of r3 never reaches Consul: its connection is reset.
    const reset = relay.inject("reset", isKeyRequest("r3", "PUT", "release"));
    const recorder = new InvariantRecorder(sim, { r3: { table: ROUTES.r3[0], destination: ROUTES.r3[1] } }, 200).start();
    try {
      const asked = Date.now();
      const answer = await n1.control<{ draining: boolean; holds: string[] }>("drain");
      const answeredAt = Date.now();
      await reset.waitForHit(5000);

      await waitFor(
        `Consul no longer shows n1 holding r3 within ${BOUND_MS} ms of the drain`,
        async () => ((await holder("r3")) !== n1.instanceId ? true : undefined),
        BOUND_MS - (Date.now() - asked),
      ).catch(async (err: Error) => {
        throw new Error(`${err.message}; drain answered ${JSON.stringify(answer)} in ${answeredAt - asked} ms; Consul holder ${nameOf(await holder("r3"))}; n1 /status r3 = ${JSON.stringify(await routeStatus(n1, "r3").catch(() => undefined))}; ?release= requests for r3 by n1: ${relay.requests(asked).filter((r) => isKeyRequest("r3", "PUT", "release")(r)).length}`);
      });
      // A peer takes it (lock-delay if n1's session had to go) and the table follows.
      await waitFor("n2 holds r3 and the table points at it", async () => ((await holder("r3")) === n2.instanceId && (await target("r3")) === n2.instanceId ? true : undefined), LOCK_DELAY_MS + 5000);
      await recorder.sample();
      // The drain answer is Consul's truth too: an answer saying "holds nothing" must become true within 2 s.
      if (!answer.holds.includes("r3")) {
        const freed = recorder.consulSamples.find((c) => c.t >= asked && c.holders.r3 !== n1.instanceId);
        expect(freed && freed.t - answeredAt, `drain answered holds ${JSON.stringify(answer.holds)} at +${answeredAt - asked} ms; Consul stopped showing n1 at +${freed ? freed.t - asked : "never"} ms`).toBeLessThanOrEqual(2000);
      }
      const s = await routeStatus(n1, "r3");
      expect(s?.phase).not.toBe("holding");
    } finally {
      await recorder.stop();
    }
    expect(reportedHoldsDisagree(recorder.consulSamples, recorder.reports, 2000)).toEqual([]);
    setOk(n1, "r3", false);
    setOk(n2, "r3", false);
  });

  it("liveness: 5. control-plane outage — EC2 DescribeInstances throttled then failing for every node, longer than the source/dest refresh: the holder keeps the route and no nat check goes critical", async () => {
    const held = await waitFor("r5 held and written", async () => {
      const h = (await sim.holders()).get("r5");
      return h?.instanceId && (await target("r5")) === h.instanceId ? h : undefined;
    }, 30_000);
    const natChecks = async () => {
      const checks = (await consulHttp("GET", `${sim.consul.servers[0]!.httpAddr}/v1/health/checks/routeleader`)).json as { CheckID: string; Node: string; Status: string; Output: string }[];
      return checks.filter((c) => c.CheckID.endsWith(":check:nat"));
    };
    await waitFor("every node's nat check passing", async () => {
      const c = await natChecks();
      return c.length === sim.nodes.length && c.every((x) => x.Status === "passing") ? true : undefined;
    }, 20_000);
    const marks = new Map(sim.nodes.map((n) => [n.name, n.events.length]));
    const started = Date.now();
    // 12 s of RequestLimitExceeded, then 12 s of 500s, for every caller.
    const throttled = sim.proxy!.failDuring(12_000, { action: "DescribeInstances", error: EC2_ERRORS.throttled });
    // The outage is seen: every node's agent re-reads the state (its cache is shorter than the outage) and is refused.
    await waitFor(
      `every node re-reads DescribeInstances during the outage (aws.sourceDestRefresh ${SOURCE_DEST_REFRESH_MS} ms) and is refused`,
      async () => (sim.nodes.every((n) => sim.proxy!.calls({ caller: n.name, action: "DescribeInstances" }).some((c) => c.time >= started && c.injected)) ? true : undefined),
      2 * SOURCE_DEST_REFRESH_MS + 5000,
    );
    const failing = { closesAt: 0 };
    const violations: string[] = [];
    const end = started + 24_000 + 5000;
    while (Date.now() < end) {
      if (!failing.closesAt && Date.now() >= (throttled.closesAt as number)) {
        const w = sim.proxy!.failDuring(12_000, { action: "DescribeInstances", error: EC2_ERRORS.internal });
        failing.closesAt = w.closesAt as number;
      }
      const [h, t, checks] = await Promise.all([sim.holders(), target("r5"), natChecks()]);
      const at = `+${Date.now() - started} ms`;
      if (h.get("r5")?.session !== held.session) violations.push(`${at}: r5 holder ${nameOf(h.get("r5")?.instanceId)} (was ${nameOf(held.instanceId)})`);
      if (t !== held.instanceId) violations.push(`${at}: table → ${nameOf(t)}`);
      for (const c of checks.filter((x) => x.Status !== "passing")) violations.push(`${at}: ${c.Node} nat check ${c.Status}: ${c.Output}`);
      if (violations.length) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const released = sim.nodes.flatMap((n) => n.events.slice(marks.get(n.name)).filter((e) => (e.event === "released" || e.event === "lost") && e.route === "r5").map((e) => `${n.name} ${e.event} r5 (${String(e.reason)})`));
    const refused = sim.proxy!.calls({ action: "DescribeInstances" }).filter((c) => c.time >= started && c.injected).length;
    console.log(`EC2 read outage: ${refused} refused DescribeInstances over ${Date.now() - started} ms; ${violations.length ? violations[0] : "route and checks steady"}`);
    expect(violations).toEqual([]);
    expect(released).toEqual([]);
  });

  it("liveness: 6. failed failover write — the new holder's route write lands within 5 s after 5 s of EC2 500s, and after 10 s of throttling (not at the next 30 s reconcile)", async () => {
    // The write retry is jittered 0.75–1.5 s: generous, and far from the next reconcile (30 s).
    const AFTER_FAULT_MS = 5000;
    const [table, destination] = ROUTES.r6;
    const tableId = sim.tableIds.get(table);
    const thisRoute = (p: Readonly<Record<string, string>>) => p.RouteTableId === tableId && p.DestinationCidrBlock === destination;
    const since = Date.now();

    const failover = async (from: SimNode, to: SimNode, ms: number, error: (typeof EC2_ERRORS)[keyof typeof EC2_ERRORS]) => {
      const window = sim.proxy!.failDuring(ms, { action: ["ReplaceRoute", "CreateRoute"], caller: to.name, match: thisRoute, error, from: "firstMatch" });
      const asked = Date.now();
      await from.control("drain");
      await waitFor(`${to.name} holds r6`, async () => ((await holder("r6")) === to.instanceId ? true : undefined), 10_000);
      await waitFor(`${to.name}'s first write of r6 hits the fault`, async () => window.opensAt, 10_000);
      const closesAt = window.closesAt as number;
      // Waits well past the bound (to the next reconcile and beyond), so a failure says how late the write was.
      const written = await waitFor(`r6 written to ${to.name}`, async () => firstWrite("r6", to, asked), closesAt + 35_000 - Date.now(), 100).catch(() => undefined);
      const late = written === undefined ? "never (35 s)" : `${written - closesAt} ms`;
      console.log(`failed failover write (${error.code}, ${ms} ms): r6 written to ${to.name} ${late} after the fault ended`);
      expect(written, `r6 written to ${to.name} after ${ms} ms of ${error.code}: ${late} after the fault ended`).toBeDefined();
      expect((written as number) - closesAt, `route written ${late} after the fault ended (bound ${AFTER_FAULT_MS} ms)`).toBeLessThanOrEqual(AFTER_FAULT_MS);
      expect(await target("r6")).toBe(to.instanceId);
      await from.control("undrain");
    };

    await makeHolder("r6", n1);
    setOk(n2, "r6", true);
    await failover(n1, n2, 5000, EC2_ERRORS.internal);
    await failover(n2, n1, 10_000, EC2_ERRORS.throttled);
    // One writer at a time all along (a former holder never wrote after the takeover).
    expect(interleavedWriters(sim.proxy!.calls({ mutating: true }).filter((c) => c.time >= since), LOCK_DELAY_MS)).toEqual([]);
    setOk(n1, "r6", false);
    setOk(n2, "r6", false);
  });

  it("liveness: 7. holder cut off from Consul — its /status marks the route unconfirmed (at once when Consul refuses, within a watch round when it is silent) and never claims it while a peer holds it", async () => {
    const WATCH_WAIT_MS = 5000;
    const MARK_BOUND_MS = (WATCH_WAIT_MS * 17) / 16 + 1000 + 2000;
    await makeHolder("r7", n1);
    setOk(n2, "r7", true);
    const recorder = new InvariantRecorder(sim, { r7: { table: ROUTES.r7[0], destination: ROUTES.r7[1] } }, 200).start();
    try {
      // n1's Consul agent stops answering it: every new request is reset, open ones (the blocking watch) dropped.
      relay.inject("reset", () => true, { times: Number.POSITIVE_INFINITY });
      relay.dropConnections();
      const cutAt = Date.now();
      const marked = await waitFor(
        `n1's /status marks r7 unconfirmed (or not held) within ${MARK_BOUND_MS} ms of losing Consul`,
        async () => {
          const s = await routeStatus(n1, "r7");
          return s && (s.unconfirmed || s.phase !== "holding") ? s : undefined;
        },
        MARK_BOUND_MS,
      );
      console.log(`cut off from Consul: n1 /status r7 after ${Date.now() - cutAt} ms: ${JSON.stringify(marked)}`);
      // Its session goes with its liveness check; a peer takes the route.
      await waitFor("n2 holds r7 in Consul", async () => ((await holder("r7")) === n2.instanceId ? true : undefined), 30_000);
      await recorder.sample();
      expect((await routeStatus(n1, "r7"))?.unconfirmed ?? "", "n1 still cut off").toMatch(/may have lost the key/);
    } finally {
      relay.clearFaults();
      await recorder.stop();
    }
    expect(reportedHoldsDisagree(recorder.consulSamples, recorder.reports, 2000)).toEqual([]);
    // Consul back: n1 learns it lost r7 and says so plainly.
    await waitFor("n1's /status no longer holds r7", async () => {
      const s = await routeStatus(n1, "r7");
      return s && s.phase !== "holding" && !s.unconfirmed ? true : undefined;
    }, 15_000);
    setOk(n1, "r7", false);
    setOk(n2, "r7", false);
  });

  // Last: it kills n3 and its Consul agent.
  it("liveness: 4. dead peer — the standby in the other AZ takes the route within lock-delay + 3 s of Consul freeing it (not standbyDelay later) and does not fail back to the dead node (20 s)", async () => {
    const ACQUIRE_BOUND_MS = LOCK_DELAY_MS + 3000;
    const WATCH_MS = 20_000;
    setOk(n1, "r4", false);
    setOk(n2, "r4", false);
    await makeHolder("r4", n3);
    setOk(n2, "r4", true);
    // The standby's check passes, and it stays back (two peer-health polls) while n3 is alive.
    await waitFor("n2's check c4 passing in Consul", async () => {
      const checks = (await consulHttp("GET", `${sim.consul.servers[0]!.httpAddr}/v1/health/checks/routeleader`)).json as { CheckID: string; Node: string; Status: string }[];
      return checks.some((c) => c.Node === "n2" && c.CheckID.endsWith(":check:c4") && c.Status === "passing") ? true : undefined;
    }, 10_000);
    const standbyUntil = Date.now() + 2500;
    while (Date.now() < standbyUntil) {
      expect(await holder("r4"), "n3 keeps r4 while it is alive").toBe(n3.instanceId);
      await new Promise((r) => setTimeout(r, 250));
    }
    const mark = n2.events.length;
    const session = (await sim.holders()).get("r4")?.session;

    // Power-off: the agent and its Consul client agent die together.
    const killedAt = Date.now();
    await Promise.all([n3.process!.kill(), n3.consul.kill()]);
    const freedAt = await waitFor("Consul frees r4 (n3's session invalidated)", async () => ((await sim.holders()).get("r4")?.session !== session ? Date.now() : undefined), 30_000, 50);
    const acquiredAt = await waitFor(`n2 holds r4 (standbyDelay ${STANDBY_DELAY_MS} ms)`, async () => ((await holder("r4")) === n2.instanceId ? Date.now() : undefined), STANDBY_DELAY_MS + 10_000, 50);
    console.log(`dead peer: Consul freed r4 ${freedAt - killedAt} ms after the kill; n2 acquired it ${acquiredAt - freedAt} ms later (lock-delay ${LOCK_DELAY_MS} ms, standbyDelay ${STANDBY_DELAY_MS} ms)`);
    expect(acquiredAt - freedAt, "from Consul freeing r4 to n2 holding it").toBeLessThanOrEqual(ACQUIRE_BOUND_MS);
    await waitFor("the table points at n2", async () => ((await target("r4")) === n2.instanceId ? true : undefined), 5000);

    // No failback towards the dead node: the key stays with n2, the route with it.
    const until = Date.now() + WATCH_MS;
    const seen: string[] = [];
    while (Date.now() < until) {
      const [h, t] = [await holder("r4"), await target("r4")];
      if (h !== n2.instanceId || t !== n2.instanceId) seen.push(`+${Date.now() - acquiredAt} ms: holder ${nameOf(h)}, table → ${nameOf(t)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const failbacks = n2.events.slice(mark).filter((e) => e.event === "released" && e.route === "r4");
    expect(failbacks.map((e) => `released r4 (${String(e.reason)}) at +${Date.parse(e.time) - acquiredAt} ms`)).toEqual([]);
    expect(seen).toEqual([]);
  });
});
