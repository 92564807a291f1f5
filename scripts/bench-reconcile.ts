/**
 * EC2 calls per reconcile cycle: 20 routes in 5 tables on moto, through the fault proxy
 * (which counts every call). Goal: one DescribeRouteTables per cycle and zero writes when
 * nothing changed; a drift costs one write per drifted route and nothing more.
 *
 *   npx tsx scripts/bench-reconcile.ts      (writes docs/benchmarks/reconcile.json)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateRouteCommand, EC2Client, ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { createEc2Client } from "../agent/aws/index.js";
import { RouteController, type WriteGate } from "../agent/routes/index.js";
import { createSubnet, createTable, createVpc, identityOf, memoryLogger, runInstance, testConfig } from "../test/support/ec2-world.js";
import { startFaultProxy, type ProxyCall, type StartedFaultProxy } from "../test/support/fault-proxy.js";
import { EMULATOR_AWS, startMoto } from "../test/support/moto.js";

const TABLES = 5;
const DESTINATIONS = ["0.0.0.0/0", "::/0", "198.51.100.0/24", "2001:db8:100::/48"];
const STEADY_CYCLES = 30;
const DRIFTED = 3;
const open: WriteGate = async () => true;

interface CycleFigures {
  calls: number;
  describes: number;
  writes: number;
  ms: number;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

async function measure(proxy: StartedFaultProxy, caller: string, run: () => Promise<unknown>): Promise<CycleFigures> {
  proxy.clearLog();
  const started = performance.now();
  await run();
  const ms = performance.now() - started;
  const calls: ProxyCall[] = proxy.calls({ caller });
  return {
    calls: calls.length,
    describes: calls.filter((c) => c.action === "DescribeRouteTables").length,
    writes: calls.filter((c) => c.mutating).length,
    ms: Math.round(ms * 10) / 10,
  };
}

async function main(): Promise<void> {
  const moto = await startMoto();
  const proxy = await startFaultProxy({ upstream: moto.endpoint });
  const admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  const ec2 = createEc2Client({ region: EMULATOR_AWS.region, endpoint: proxy.endpointFor("holder"), credentials: EMULATOR_AWS.credentials });
  try {
    const { vpcId } = await createVpc(admin, "10.50.0.0/16", { ipv6: true });
    const subnet = await createSubnet(admin, vpcId, "10.50.1.0/24");
    const self = await runInstance(admin, subnet);
    const other = await runInstance(admin, subnet);
    const tables: string[] = [];
    for (let t = 0; t < TABLES; t++) tables.push(await createTable(admin, vpcId, { tags: { bench: `t${t}` } }));
    const routes = tables.flatMap((tableId, t) => DESTINATIONS.map((destination, d) => ({ name: `r${t}-${d}`, table: { id: tableId }, destination })));
    // Half the routes start out pointing at another instance, half are absent.
    for (const [i, route] of routes.entries()) {
      if (i % 2 === 1) continue;
      const dest = route.destination.includes(":") ? { DestinationIpv6CidrBlock: route.destination } : { DestinationCidrBlock: route.destination };
      await admin.send(new CreateRouteCommand({ RouteTableId: route.table.id, ...dest, InstanceId: other.InstanceId }));
    }
    const { log } = memoryLogger("warn");
    const controller = new RouteController({ ec2, config: testConfig(routes), identity: identityOf(self), log, dryRun: false });
    const names = routes.map((r) => r.name);

    const prepare = await measure(proxy, "holder", () => controller.prepare());
    const initialClaims = await measure(proxy, "holder", async () => {
      for (const name of names) await controller.claim(name, open);
    });
    const steady: CycleFigures[] = [];
    for (let i = 0; i < STEADY_CYCLES; i++) steady.push(await measure(proxy, "holder", () => controller.reconcile(names, open)));
    const claimEachUnchanged = await measure(proxy, "holder", async () => {
      for (const name of names) await controller.claim(name, open);
    });
    for (const route of routes.slice(0, DRIFTED)) {
      const dest = route.destination.includes(":") ? { DestinationIpv6CidrBlock: route.destination } : { DestinationCidrBlock: route.destination };
      await admin.send(new ReplaceRouteCommand({ RouteTableId: route.table.id, ...dest, InstanceId: other.InstanceId }));
    }
    const drift = await measure(proxy, "holder", () => controller.reconcile(names, open));
    const after = await measure(proxy, "holder", () => controller.reconcile(names, open));

    const ms = steady.map((c) => c.ms);
    const result = {
      benchmark: "reconcile",
      date: new Date().toISOString(),
      setup: { routes: routes.length, tables: TABLES, destinationsPerTable: DESTINATIONS, emulator: "moto via fault proxy", steadyCycles: STEADY_CYCLES },
      prepare,
      initialClaims: { ...initialClaims, note: "20 claims, one Describe each; 10 routes absent, 10 foreign" },
      steadyReconcile: {
        describesPerCycle: Math.max(...steady.map((c) => c.describes)),
        writesPerCycle: Math.max(...steady.map((c) => c.writes)),
        callsPerCycle: Math.max(...steady.map((c) => c.calls)),
        msP50: percentile(ms, 50),
        msP95: percentile(ms, 95),
        msMax: Math.max(...ms),
      },
      claimEachRouteUnchanged: { ...claimEachUnchanged, note: "for contrast: 20 separate claim() calls instead of one reconcile()" },
      driftCycle: { ...drift, drifted: DRIFTED },
      cycleAfterDrift: after,
    };

    console.log(`reconcile benchmark: ${routes.length} routes in ${TABLES} tables (moto through the fault proxy)`);
    console.log(`  prepare:                 ${prepare.calls} calls (${prepare.describes} DescribeRouteTables, ${prepare.writes} writes), ${prepare.ms} ms`);
    console.log(`  initial claims (20):     ${initialClaims.calls} calls (${initialClaims.describes} Describe, ${initialClaims.writes} writes), ${initialClaims.ms} ms`);
    console.log(`  steady reconcile cycle:  ${result.steadyReconcile.callsPerCycle} call(s) = ${result.steadyReconcile.describesPerCycle} Describe + ${result.steadyReconcile.writesPerCycle} writes; p50 ${result.steadyReconcile.msP50} ms, p95 ${result.steadyReconcile.msP95} ms over ${STEADY_CYCLES} cycles`);
    console.log(`  20 × claim() unchanged:  ${claimEachUnchanged.calls} calls (${claimEachUnchanged.describes} Describe, ${claimEachUnchanged.writes} writes), ${claimEachUnchanged.ms} ms`);
    console.log(`  cycle with ${DRIFTED} drifted:    ${drift.calls} calls (${drift.describes} Describe, ${drift.writes} writes), ${drift.ms} ms`);
    console.log(`  next cycle:              ${after.calls} call(s) (${after.describes} Describe, ${after.writes} writes), ${after.ms} ms`);

    const out = join(dirname(fileURLToPath(import.meta.url)), "..", "docs", "benchmarks", "reconcile.json");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`  written to ${out}`);
  } finally {
    ec2.destroy();
    admin.destroy();
    await proxy.stop();
    await moto.stop();
  }
}

await main();
