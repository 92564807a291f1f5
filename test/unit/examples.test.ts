import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config/index.js";

const dir = fileURLToPath(new URL("../../examples/", import.meta.url));
const example = (name: string) => loadConfig(`${dir}${name}`);

describe("examples/ (validated by the real loader)", () => {
  it("has a test below for every example file", () => {
    expect(readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()).toEqual(["anycast-service.yaml", "nat-2az.yaml", "nat-3az-ipv6.yaml"]);
  });

  it("nat-2az: two default routes, each in its own tagged table, preferring its own AZ, guarded by ping and nat checks", () => {
    const config = example("nat-2az.yaml");
    expect(config.routes.map((r) => [r.destination, r.preferredAz])).toEqual([
      ["0.0.0.0/0", "eu-west-1a"],
      ["0.0.0.0/0", "eu-west-1b"],
    ]);
    expect(config.routes.every((r) => "tags" in r.table)).toBe(true);
    expect(new Set(config.routes.map((r) => JSON.stringify(r.table))).size).toBe(2);
    expect(Object.values(config.checks).map((c) => c.type).sort()).toEqual(["nat", "ping"]);
    for (const route of config.routes) expect([...route.checks].sort()).toEqual(["egress", "nat"]);
    expect(config.election.lockDelay).toBe(1200);
    expect(config.hooks.onAcquire?.[0]).toBe("logger");
  });

  it("nat-3az-ipv6: IPv4 and IPv6 default routes in three tables, IPv6 routes guarded by an IPv6-forwarding nat check", () => {
    const config = example("nat-3az-ipv6.yaml");
    const tables = (destination: string) => new Set(config.routes.filter((r) => r.destination === destination).map((r) => JSON.stringify(r.table)));
    expect(tables("0.0.0.0/0").size).toBe(3);
    expect(tables("::/0")).toEqual(tables("0.0.0.0/0"));
    const nat = config.checks.nat;
    expect(nat?.type === "nat" && nat.ipv6).toBe(true);
    for (const route of config.routes.filter((r) => r.destination === "::/0")) expect(route.checks).toContain("nat");
    expect(config.routes.every((r) => r.preferredAz === "auto")).toBe(true);
    expect([config.election.profile, config.election.lockDelay, config.aws.writeTimeout]).toEqual(["fast", 650, 400]);
  });

  it("anycast-service: a /32 service route on the ENI, deleted on release, guarded by a tcp check", () => {
    const config = example("anycast-service.yaml");
    expect(config.routes).toHaveLength(1);
    const [route] = config.routes;
    expect(route).toMatchObject({ destination: "10.255.0.10/32", target: "eni", onRelease: "delete", preferredAz: "none" });
    const check = config.checks[route!.checks[0]!];
    expect(check).toMatchObject({ type: "tcp", host: "127.0.0.1", port: 53 });
  });
});
