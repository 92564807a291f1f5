import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeRouteTablesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { EXIT } from "../../agent/exit-codes.js";
import { startAemm, type StartedAemm } from "../support/aemm.js";
import { runCli, spawnCli } from "../support/agent-cli.js";
import { startConsul, type StartedConsul } from "../support/consul.js";
import { createSubnet, createTable, createVpc, identityOf, runInstance } from "../support/ec2-world.js";
import { EMULATOR_AWS, startMoto, type StartedMoto } from "../support/moto.js";
import type { ManagedProcess } from "../support/process.js";

/**
 * README's exit-code table, row 5, against a real Consul server that has no leader (it expects
 * 3 servers and is alone; its requests hang until it gives up): `run` and `status` exit 5.
 */

let moto: StartedMoto;
let admin: EC2Client;
let aemm: StartedAemm;
let consul: StartedConsul;
let tableId: string;
let dir: string;
let file: string;
const agents: ManagedProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "rl-no-leader-"));
  moto = await startMoto();
  admin = new EC2Client({ ...EMULATOR_AWS, endpoint: moto.endpoint, maxAttempts: 1 });
  const { vpcId } = await createVpc(admin, "10.0.0.0/16");
  const subnet = await createSubnet(admin, vpcId, "10.0.1.0/24");
  tableId = await createTable(admin, vpcId, { tags: { Name: "private-nl" }, subnets: [subnet] });
  const identity = identityOf(await runInstance(admin, subnet));
  [aemm, consul] = await Promise.all([startAemm(identity), startConsul({ mode: "server", node: "lonely", bootstrapExpect: 3 })]);
  file = join(dir, "routeleader.yaml");
  writeFileSync(
    file,
    stringify({
      cluster: "noleader",
      region: EMULATOR_AWS.region,
      consul: { address: consul.httpAddr },
      imds: { endpoint: aemm.endpoint },
      aws: { endpoint: moto.endpoint },
      sourceDestCheck: "ignore",
      discovery: { enabled: false },
      lifecycle: { watch: false },
      http: { listen: "" },
      routes: [{ name: "default-v4", table: { tags: { Name: "private-nl" } }, destination: "0.0.0.0/0" }],
    }),
  );
}, 120_000);

afterEach(async () => {
  await Promise.all(agents.splice(0).map((p) => p.stop(15_000)));
});

afterAll(async () => {
  await consul?.stop();
  await aemm?.stop();
  admin?.destroy();
  await moto?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

async function defaultRoute(): Promise<string | undefined> {
  const res = await admin.send(new DescribeRouteTablesCommand({ RouteTableIds: [tableId] }));
  const route = res.RouteTables?.[0]?.Routes?.find((r) => r.DestinationCidrBlock === "0.0.0.0/0");
  return route?.InstanceId ?? route?.GatewayId;
}

describe("a Consul cluster without a leader", () => {
  it("truth: `run` exits 5 naming Consul, having written no route", async () => {
    expect(await consul.get<string>("/v1/status/leader")).toBe("");
    const agent = spawnCli(["run", "--config", file, "--log-level", "debug"], { name: "routeleader no-leader" });
    agents.push(agent);
    const line = await agent.waitForLine(/connected to the local Consul agent/, 60_000);
    expect(JSON.parse(line)).toMatchObject({ leader: null });
    const exit = await agent.waitForExit(90_000);
    expect(exit.code, agent.output(20)).toBe(EXIT.consul);
    expect(agent.output(20)).toMatch(/^routeleader: Consul (did not answer \(unreachable, or its cluster has no leader\)|.*has no cluster leader|agent unreachable)/m);
    expect(await defaultRoute()).toBeUndefined();
  }, 120_000);

  it("truth: `status` exits 5, naming Consul", async () => {
    const result = await runCli(["status", "--config", file], { env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: aemm.endpoint } });
    expect(result.code, result.output).toBe(EXIT.consul);
    expect(result.output).toMatch(/routeleader: Consul unreachable at http:\/\/127\.0\.0\.1:\d+: .*(no answer within|No cluster leader)/);
  }, 60_000);
});
