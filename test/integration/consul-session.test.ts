import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulApi, ConsulConnection } from "../../agent/consul/index.js";
import { consulHttp, startConsulDev, type StartedConsul } from "../support/consul.js";
import { waitUntil } from "../support/process.js";

/** The agent syncs new checks to the catalog asynchronously (hashicorp/consul#231). */
function waitForCatalogCheck(agent: StartedConsul, checkId: string, status: string) {
  return waitUntil(
    `check ${checkId} ${status} in the catalog`,
    async () => {
      const checks = await agent.get<{ CheckID: string; Status: string }[]>(`/v1/health/node/${agent.node}`);
      return checks.some((c) => c.CheckID === checkId && c.Status === status) ? true : undefined;
    },
    { timeoutMs: 10_000 },
  );
}

interface RawKv {
  Key: string;
  Session?: string;
  LockIndex: number;
}

/** Blocks on the key until `predicate` holds, using Consul's own blocking query (no sleeps). */
async function waitForKey(agent: StartedConsul, key: string, predicate: (e: RawKv | undefined) => boolean, timeoutMs: number): Promise<RawKv | undefined> {
  const deadline = Date.now() + timeoutMs;
  let index = 0;
  while (Date.now() < deadline) {
    const res = await consulHttp("GET", `${agent.httpAddr}/v1/kv/${key}?index=${index}&wait=2s`).catch(() => ({ json: undefined, status: 404 }));
    const entry = (res.json as RawKv[] | undefined)?.[0];
    if (predicate(entry)) return entry;
    const raw = await fetch(`${agent.httpAddr}/v1/kv/${key}`);
    index = Number(raw.headers.get("x-consul-index") ?? 0);
  }
  throw new Error(`key ${key} did not reach the expected state within ${timeoutMs} ms`);
}

describe("Consul sessions bound to a TTL service check (real Consul dev agent)", () => {
  let consul: StartedConsul;
  let api: ConsulApi;
  let conn: ConsulConnection;

  beforeAll(async () => {
    consul = await startConsulDev("foundation");
    conn = new ConsulConnection({ address: consul.httpAddr });
    api = new ConsulApi(conn);
  });
  afterAll(async () => {
    conn?.close();
    await consul?.stop();
  });

  it("acquires a key with a session on a passing check, and failing the check empties Session", async () => {
    await api.registerService({
      id: "rl-test",
      name: "routeleader",
      tags: [],
      meta: {},
      checks: [{ id: "rl-test:liveness", name: "liveness", ttlMs: 30_000, status: "passing" }],
    });
    await waitForCatalogCheck(consul, "rl-test:liveness", "passing");
    const session = await api.createSession({
      name: "foundation",
      ttlMs: 10_000,
      lockDelayMs: 0,
      behavior: "release",
      nodeChecks: [],
      serviceChecks: ["rl-test:liveness"],
    });
    // What Consul stored, read over raw HTTP: the npm client would have dropped ServiceChecks.
    const info = (await consul.get<{ ServiceChecks: { ID: string }[]; NodeChecks: string[]; Behavior: string }[]>(`/v1/session/info/${session}`))[0]!;
    expect(info.ServiceChecks.map((c) => c.ID)).toEqual(["rl-test:liveness"]);
    expect(info.NodeChecks ?? []).toEqual([]);
    expect(info.Behavior).toBe("release");

    expect(await api.acquire("routeleader/test/routes/r1", session, JSON.stringify({ holder: "me" }))).toBe(true);
    const held = (await consul.get<RawKv[]>("/v1/kv/routeleader/test/routes/r1"))[0]!;
    expect(held.Session).toBe(session);
    expect(held.LockIndex).toBe(1);

    await consulHttp("PUT", `${consul.httpAddr}/v1/agent/check/fail/rl-test:liveness`);
    const after = await waitForKey(consul, "routeleader/test/routes/r1", (e) => e !== undefined && !e.Session, 20_000);
    expect(after?.Session).toBeUndefined();
    expect(after?.LockIndex).toBe(1);
    // The session is gone too: Consul invalidated it with the check.
    expect(await consul.get<unknown[] | null>(`/v1/session/info/${session}`)).toEqual([]);
  });

  it("refuses to create a session while a bound check is critical", async () => {
    await api.registerService({
      id: "rl-crit",
      name: "routeleader",
      tags: [],
      meta: {},
      checks: [{ id: "rl-crit:liveness", name: "liveness", ttlMs: 30_000, status: "critical" }],
    });
    await waitForCatalogCheck(consul, "rl-crit:liveness", "critical");
    await expect(
      api.createSession({ name: "crit", ttlMs: 10_000, lockDelayMs: 0, behavior: "release", nodeChecks: [], serviceChecks: ["rl-crit:liveness"] }),
    ).rejects.toMatchObject({ name: "SessionCheckNotReadyError" });
  });
});
