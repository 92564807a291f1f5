import { ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import type { SimCluster, SimNode } from "../../test/support/cluster.js";
import { EC2_ERRORS } from "../../test/support/fault-proxy.js";
import type { InjectedRelayFault, RelayFault, StartedHttpRelay } from "../../test/support/http-relay.js";
import { waitUntil } from "../../test/support/process.js";

/**
 * The soak's fault classes added by issue #14: lost Consul answers, an EC2 read outage, IAM
 * denial on one node, a Consul restart during a release, power-off of a preferred-AZ peer.
 * Each returns what it did and how often the fault really hit (a relay request, an EC2 call
 * the proxy refused, a key Consul freed): a class that never fires proves nothing.
 */

export interface SoakRoute {
  name: string;
  table: string;
  tableAz: string;
  destination: string;
}

export interface SoakFaultContext {
  sim: SimCluster;
  /** Node name → the relay between that node's agent and its Consul client agent. */
  relays: ReadonlyMap<string, StartedHttpRelay>;
  routes: readonly SoakRoute[];
  random: () => number;
  igw: () => Promise<string>;
  /** Ends a node's agent the way the soak accounts for it (expected exit). */
  killAgent: (node: SimNode) => Promise<void>;
  /** Starts a node's agent again and waits for it to be ready. */
  restartAgent: (node: SimNode) => Promise<void>;
}

export interface FaultOutcome {
  detail: string;
  /** How many times the fault really hit. */
  fired: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const between = (ctx: SoakFaultContext, min: number, max: number) => min + Math.floor(ctx.random() * (max - min));

function keyRequest(sim: SimCluster, op: "acquire" | "release") {
  const prefix = `/v1/kv/routeleader/${sim.cluster}/routes/`;
  return (req: { method: string; path: string }) => {
    const url = new URL(req.path, "http://relay");
    return req.method === "PUT" && url.pathname.startsWith(prefix) && url.searchParams.has(op);
  };
}

async function routesHeldBy(ctx: SoakFaultContext, node: SimNode): Promise<SoakRoute[]> {
  const holders = await ctx.sim.holders();
  return ctx.routes.filter((r) => holders.get(r.name)?.instanceId === node.instanceId);
}

/**
 * Single Consul answers lost: the target's check fails, so it releases its routes and its
 * peers acquire them; one release of the target (reset before Consul sees it, or answered
 * and the answer dropped) or one acquire of each peer (answer dropped or withheld) goes wrong.
 */
export async function lostConsulAnswer(ctx: SoakFaultContext, target: SimNode): Promise<FaultOutcome> {
  const variants: { fault: RelayFault; op: "acquire" | "release" }[] = [
    { fault: "reset", op: "release" },
    { fault: "dropAnswer", op: "release" },
    { fault: "dropAnswer", op: "acquire" },
    { fault: "withholdAnswer", op: "acquire" },
  ];
  const { fault, op } = variants[Math.floor(ctx.random() * variants.length)]!;
  const on = op === "release" ? [target] : ctx.sim.nodes.filter((n) => n !== target);
  const injected: InjectedRelayFault[] = on.map((n) => ctx.relays.get(n.name)!.inject(fault, keyRequest(ctx.sim, op)));
  const failMs = between(ctx, 3000, 7000);
  target.setHealthy(false);
  await Promise.any(injected.map((f) => f.waitForHit(15_000))).catch(() => undefined);
  await sleep(failMs);
  target.setHealthy(true);
  for (const f of injected) f.cancel();
  const fired = injected.reduce((sum, f) => sum + f.hits.length, 0);
  return { detail: `${target.name} check fails ${failMs} ms; ${fault} on one ?${op}= of ${on.map((n) => n.name).join(", ")}`, fired };
}

/** EC2 reads (DescribeRouteTables, DescribeInstances) refused for every node for 8–16 s: routes must stay where they are. */
export async function ec2ReadOutage(ctx: SoakFaultContext): Promise<FaultOutcome> {
  const ms = between(ctx, 8000, 16_000);
  const error = ctx.random() < 0.5 ? EC2_ERRORS.throttled : EC2_ERRORS.internal;
  const since = Date.now();
  ctx.sim.proxy!.failDuring(ms, { action: ["DescribeRouteTables", "DescribeInstances"], error });
  await sleep(ms);
  ctx.sim.proxy!.clearFaults();
  const fired = ctx.sim.proxy!.calls().filter((c) => c.time >= since && c.injected && c.action.startsWith("Describe")).length;
  return { detail: `EC2 reads answer ${error.code} for ${ms} ms`, fired };
}

/**
 * IAM denial on one node: its route writes answer UnauthorizedOperation for 20–35 s, and one of
 * its routes is pointed at the internet gateway so that it must write: it gives that route up
 * after bounded attempts and a peer takes it.
 */
export async function iamDenial(ctx: SoakFaultContext, target: SimNode): Promise<FaultOutcome> {
  const ms = between(ctx, 20_000, 35_000);
  const since = Date.now();
  ctx.sim.proxy!.failDuring(ms, { action: ["ReplaceRoute", "CreateRoute"], caller: target.name, error: EC2_ERRORS.unauthorized });
  const held = await routesHeldBy(ctx, target);
  const route = held.length ? held[Math.floor(ctx.random() * held.length)]! : ctx.routes[Math.floor(ctx.random() * ctx.routes.length)]!;
  await ctx.sim.ec2.send(new ReplaceRouteCommand({ RouteTableId: ctx.sim.tableIds.get(route.table), DestinationCidrBlock: route.destination, GatewayId: await ctx.igw() }));
  await sleep(ms);
  ctx.sim.proxy!.clearFaults();
  const fired = ctx.sim.proxy!.calls({ caller: target.name }).filter((c) => c.time >= since && c.injected && c.status === 403).length;
  return { detail: `${target.name}'s route writes refused (UnauthorizedOperation) for ${ms} ms; ${route.name} (${held.includes(route) ? "its own" : "not its"}) pointed at the internet gateway`, fired };
}

/**
 * The target's check fails, so it releases its routes; one of its ?release= requests is held
 * 1.5 s by the relay, and while it is in flight the target's Consul client agent crashes
 * (SIGKILL, data kept) and comes back 1–4 s later.
 */
export async function consulRestartDuringRelease(ctx: SoakFaultContext, target: SimNode): Promise<FaultOutcome> {
  const held = ctx.relays.get(target.name)!.inject("delay", keyRequest(ctx.sim, "release"), { delayMs: 1500 });
  target.setHealthy(false);
  const hit = await held.waitForHit(15_000).catch(() => undefined);
  held.cancel();
  let downMs = 0;
  if (hit) {
    await target.consul.process.kill();
    downMs = between(ctx, 1000, 4000);
    await sleep(downMs);
    await target.consul.restart();
  }
  await sleep(between(ctx, 2000, 5000));
  target.setHealthy(true);
  return { detail: hit ? `${target.name}'s Consul agent crashed during its release, back after ${downMs} ms` : `${target.name} sent no release within 15 s (Consul agent not restarted)`, fired: hit ? 1 : 0 };
}

/**
 * Power-off of a node holding a route in its own (preferred) AZ: its agent and its Consul
 * client agent die together (SIGKILL); once Consul has freed its keys, both come back.
 */
export async function powerOff(ctx: SoakFaultContext): Promise<FaultOutcome> {
  const holders = await ctx.sim.holders();
  const preferred = ctx.sim.nodes.filter((n) => n.process && !n.process.hasExited && ctx.routes.some((r) => r.tableAz === n.spec.az && holders.get(r.name)?.instanceId === n.instanceId));
  const pool = preferred.length ? preferred : ctx.sim.nodes;
  const target = pool[Math.floor(ctx.random() * pool.length)]!;
  const sessions = new Set(ctx.routes.map((r) => holders.get(r.name)).filter((h) => h?.instanceId === target.instanceId).map((h) => h!.session));
  const killedAt = Date.now();
  await Promise.all([ctx.killAgent(target), target.consul.process.kill()]);
  const freedMs = await waitUntil(
    `Consul frees ${target.name}'s keys after its power-off`,
    async () => {
      const now = await ctx.sim.holders();
      return [...now.values()].some((h) => h.session !== undefined && sessions.has(h.session)) ? undefined : Date.now() - killedAt;
    },
    { timeoutMs: 90_000, intervalMs: 250 },
  ).catch(() => undefined);
  await sleep(between(ctx, 2000, 5000));
  await target.consul.restart();
  await ctx.restartAgent(target);
  const what = preferred.includes(target) ? "holding routes in its own AZ" : "no node held a route in its own AZ";
  return { detail: `${target.name} (${target.spec.az}, ${what}) powered off; Consul freed its ${sessions.size ? "keys" : "(no) keys"} ${freedMs ?? "not within 90 s"}${freedMs === undefined ? "" : " ms"} later`, fired: sessions.size && freedMs !== undefined ? 1 : 0 };
}
