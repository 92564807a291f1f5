import { ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimCluster, type AgentEvent, type SimCluster, type SimNode } from "../support/cluster.js";
import { runNodeCli } from "../support/sim-cli.js";
import { waitUntil } from "../support/process.js";

/**
 * The operator verbs against running agents: `status` (and its DRIFT exit code), `drain`,
 * `undrain` and `handover`, each run as its own CLI process with a node's config, on real
 * Consul (3 servers, a client agent per node), moto and the metadata mock.
 */

const ROUTES = [
  { name: "r1", table: { tags: { Name: "private-a" } }, destination: "0.0.0.0/0", checks: ["alive"], preferredAz: "none" },
  { name: "r2", table: { tags: { Name: "private-a" } }, destination: "10.200.0.0/16", checks: ["alive"], preferredAz: "none" },
];
const ROUTE_NAMES = ROUTES.map((r) => r.name);
const DEST: Record<string, string> = { r1: "0.0.0.0/0", r2: "10.200.0.0/16" };
/** The agents' default lockDelay. */
const LOCK_DELAY_MS = 3000;

let sim: SimCluster;


const at = (e: AgentEvent) => Date.parse(e.time);
const holderOf = async (route: string) => sim.nodeByInstance((await sim.holders()).get(route)?.instanceId) as SimNode;
const marks = () => new Map(sim.nodes.map((n) => [n.name, n.events.length]));

/** Every route held and every table pointing at its holder; returns the holders. */
async function converged() {
  return waitUntil(
    "route tables point at the Consul holders",
    async () => {
      const holders = await sim.holders();
      for (const r of ROUTE_NAMES) {
        const holder = holders.get(r)?.instanceId;
        if (!holder || (await sim.routeTarget("private-a", DEST[r] as string)) !== holder) return undefined;
      }
      return holders;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
}

/**
 * Resolves once the holder of `route` is past its re-assert window: a new holder re-asserts
 * until lockDelay + 250 ms after acquiring (on a 200 ms tick). The agent's own log (its
 * debug lines come every check interval) tells when its clock is past that, with a margin;
 * from then on, with reconcile at 1 h, nothing rewrites the table.
 */
async function reassertWindowOver(holder: SimNode, route: string): Promise<void> {
  const acquired = [...holder.events].reverse().find((e) => e.event === "acquired" && e.route === route);
  if (!acquired) throw new Error(`${holder.name} never acquired ${route}`);
  await holder.waitForEvent((e) => at(e) >= at(acquired) + LOCK_DELAY_MS + 1000, 30_000, holder.events.indexOf(acquired));
}

beforeAll(async () => {
  sim = await startSimCluster({
    cluster: "operator",
    nodes: [
      { name: "n1", az: "us-east-1a", http: true },
      { name: "n2", az: "us-east-1a", http: true },
      { name: "n3", az: "us-east-1b", http: true },
    ],
    tables: [{ name: "private-a", az: "us-east-1a" }],
    routes: ROUTES,
    checks: { alive: { type: "command", command: ["test", "-e", "{dir}/healthy"], every: "200ms", timeout: "500ms", rise: 1, fall: 2 } },
    // No periodic repair during the test: a hand-edited route stays drifted until someone acts.
    extra: { reconcileInterval: "1h" },
  });
  for (const n of sim.nodes) n.setHealthy(true);
  await Promise.all(sim.nodes.map((n) => sim.startAgent(n.name)));
  await Promise.all(sim.nodes.map((n) => n.waitForEvent((e) => e.msg === "agent running", 60_000)));
  await converged();
}, 240_000);

afterAll(async () => {
  await sim?.stop();
}, 120_000);

describe("operator verbs", () => {
  it("status --json shows every route with its holder and no drift (exit 0)", async () => {
    const holders = await converged();
    const res = await runNodeCli(sim.node("n3"), ["status", "--json"]);
    expect(res.code, res.stderr).toBe(0);
    const status = JSON.parse(res.stdout) as { cluster: string; drift: boolean; routes: { route: string; holder: string | null; target: string | null; drift: boolean; destination: string }[] };
    expect(status.cluster).toBe("operator");
    expect(status.drift).toBe(false);
    expect(status.routes.map((r) => r.route).sort()).toEqual(ROUTE_NAMES);
    for (const row of status.routes) {
      expect(row.holder).toBe(holders.get(row.route)?.instanceId);
      expect(row.target).toBe(row.holder);
      expect(row.destination).toBe(DEST[row.route]);
      expect(row.drift).toBe(false);
    }
  });

  it("a hand-edited route shows as DRIFT and status exits 7", async () => {
    await converged();
    const holder = await holderOf("r1");
    await reassertWindowOver(holder, "r1");
    const other = sim.nodes.find((n) => n !== holder) as SimNode;
    await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get("private-a"), DestinationCidrBlock: "0.0.0.0/0", InstanceId: other.instanceId }));

    const res = await runNodeCli(sim.node("n1"), ["status"]);
    expect(res.code, res.stderr).toBe(7);
    const r1Line = res.stdout.split("\n").find((l) => l.startsWith("r1 "));
    expect(r1Line).toContain("DRIFT");
    expect(r1Line).toContain(`table points at ${other.instanceId}, holder is ${holder.instanceId}`);
    expect(res.stdout.split("\n").find((l) => l.startsWith("r2 "))).not.toContain("DRIFT");
    expect(res.stderr).toMatch(/drift/);
    // The edit is still there: status only read, and nothing repaired it in between.
    expect(await sim.routeTarget("private-a", "0.0.0.0/0")).toBe(other.instanceId);
    expect((await sim.holders()).get("r1")?.instanceId).toBe(holder.instanceId);

    await sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: sim.tableIds.get("private-a"), DestinationCidrBlock: "0.0.0.0/0", InstanceId: holder.instanceId }));
  });

  it("drain releases every route of the node (reason drain) and peers take them; undrain lets it contend again", async () => {
    await converged();
    const drained = await holderOf("r1");
    const before = await sim.holders();
    const itsRoutes = ROUTE_NAMES.filter((r) => before.get(r)?.instanceId === drained.instanceId);
    const mark = drained.events.length;

    const res = await runNodeCli(drained, ["drain"]);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ draining: true, holds: [] });
    const released = await Promise.all(itsRoutes.map((r) => drained.waitForEvent((e) => e.event === "released" && e.route === r, 20_000, mark)));
    expect(released.map((e) => e.reason)).toEqual(itsRoutes.map(() => "drain"));
    const after = await sim.waitForHolders(ROUTE_NAMES, (_r, i) => !!i && i !== drained.instanceId, 30_000);
    for (const r of ROUTE_NAMES) expect(after.get(r)?.instanceId).not.toBe(drained.instanceId);
    await converged();

    // Undrained, and then the only healthy node: it must take every route.
    const undrainMark = drained.events.length;
    const undrain = await runNodeCli(drained, ["undrain"]);
    expect(undrain.code, undrain.stderr).toBe(0);
    expect(JSON.parse(undrain.stdout)).toMatchObject({ draining: false });
    const peers = sim.nodes.filter((n) => n !== drained);
    const peerMarks = marks();
    for (const p of peers) p.setHealthy(false);
    await Promise.all(ROUTE_NAMES.map((r) => drained.waitForEvent((e) => e.event === "acquired" && e.route === r, 30_000, undrainMark)));
    const holders = await sim.holders();
    for (const r of ROUTE_NAMES) expect(holders.get(r)?.instanceId).toBe(drained.instanceId);
    await converged();

    for (const p of peers) p.setHealthy(true);
    await Promise.all(peers.map((p) => p.waitForEvent((e) => e.msg === "session created", 30_000, peerMarks.get(p.name))));
  });

  it("handover r1 --to INSTANCE moves r1 to that instance, and the CLI prints the move", async () => {
    await converged();
    const from = await holderOf("r1");
    const to = sim.nodes.find((n) => n !== from) as SimNode;
    const res = await runNodeCli(sim.node("n3"), ["handover", "r1", "--to", to.instanceId]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout.trim()).toMatch(new RegExp(`^r1: ${from.instanceId} → ${to.instanceId} in \\d+ ms$`));
    expect((await sim.holders()).get("r1")?.instanceId).toBe(to.instanceId);
    const released = from.events.find((e) => e.event === "released" && e.route === "r1" && e.reason === "handover");
    expect(released).toBeDefined();
    await waitUntil("r1's table follows the handover", async () => ((await sim.routeTarget("private-a", "0.0.0.0/0")) === to.instanceId ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
  });
});
