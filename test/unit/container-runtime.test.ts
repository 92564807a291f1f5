import { createServer } from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chooseConsulBackend, dockerEngineAvailable } from "../support/container-runtime.js";

describe("Consul fixture backend selection", () => {
  it("falls back to the binary when no engine answers on the socket", async () => {
    const env = { DOCKER_HOST: `unix://${join(mkdtempSync(join(tmpdir(), "rl-docker-")), "docker.sock")}`, ROUTELEADER_CONSUL_CONTAINERS: "1" };
    const started = Date.now();
    expect(await dockerEngineAvailable(env)).toBe(false);
    expect(await chooseConsulBackend(env)).toBe("binary");
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("chooses containers only when an engine answers /_ping and they are asked for", async () => {
    const fakeEngine = createServer((req, res) => res.writeHead(req.url === "/_ping" ? 200 : 404).end("OK"));
    await new Promise<void>((r) => fakeEngine.listen(0, "127.0.0.1", r));
    const port = (fakeEngine.address() as { port: number }).port;
    try {
      expect(await chooseConsulBackend({ DOCKER_HOST: `tcp://127.0.0.1:${port}`, ROUTELEADER_CONSUL_CONTAINERS: "1" })).toBe("container");
      expect(await chooseConsulBackend({ DOCKER_HOST: `tcp://127.0.0.1:${port}` })).toBe("binary");
    } finally {
      fakeEngine.close();
    }
  });
});
