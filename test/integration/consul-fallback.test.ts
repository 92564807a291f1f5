import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startConsulDev, type StartedConsul } from "../support/consul.js";

describe("Consul fixture without a container engine", () => {
  let consul: StartedConsul | undefined;
  const saved = { containers: process.env.ROUTELEADER_CONSUL_CONTAINERS, host: process.env.DOCKER_HOST };
  afterEach(async () => {
    await consul?.stop();
    process.env.ROUTELEADER_CONSUL_CONTAINERS = saved.containers;
    process.env.DOCKER_HOST = saved.host;
    if (saved.containers === undefined) delete process.env.ROUTELEADER_CONSUL_CONTAINERS;
    if (saved.host === undefined) delete process.env.DOCKER_HOST;
  });

  it("asked for containers but finding no engine, starts the local binary and works", async () => {
    process.env.ROUTELEADER_CONSUL_CONTAINERS = "1";
    process.env.DOCKER_HOST = `unix://${join(mkdtempSync(join(tmpdir(), "rl-nodocker-")), "docker.sock")}`;
    consul = await startConsulDev("fallback");
    expect(consul.process.name).toBe("consul fallback");
    expect(consul.process.child.spawnfile).toMatch(/consul$/);
    expect(await consul.get<string>("/v1/status/leader")).not.toBe("");
  });
});
