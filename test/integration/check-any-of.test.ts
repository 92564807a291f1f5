import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSchema, type CheckConfig } from "../../agent/config/schema.js";
import { createCheckRunner } from "../../agent/health/run.js";

/**
 * A check target set that does not depend on one address (issue #15, item 8): `host` may be a
 * list, and the check passes when any one of them answers. Real servers on loopback addresses
 * and the system ping in a network namespace.
 */

const run = createCheckRunner();
const check = (raw: Record<string, unknown>): CheckConfig => checkSchema.parse(raw);

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A TCP server on host:0; `answer` false accepts and never replies. */
async function serve(host: string, answer: boolean): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    if (answer) s.end("pong\n");
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  cleanups.push(close);
  return { port, close };
}

describe("ship: any-of check targets (tcp) against real servers", () => {
  it("ship: passes when only the third of three hosts answers, and says which one did", async () => {
    const server = await serve("127.0.0.3", true);
    const r = await run(check({ type: "tcp", host: ["127.0.0.1", "127.0.0.2", "127.0.0.3"], port: server.port, expect: "pong", timeout: "2s" }));
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toMatch(new RegExp(`^any of 3: tcp 127\\.0\\.0\\.3:${server.port}: connected, expect 'pong' matched, [\\d.]+ ms$`));
  });

  it("ship: fails when none answers, naming every target and why", async () => {
    const server = await serve("127.0.0.3", true);
    await server.close();
    const r = await run(check({ type: "tcp", host: ["127.0.0.2", "127.0.0.3"], port: server.port, timeout: "2s" }));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/^none of 2 answered: tcp 127\.0\.0\.2:\d+: connection refused, [\d.]+ ms; tcp 127\.0\.0\.3:\d+: connection refused, [\d.]+ ms$/);
  });

  it("ship: a target that hangs does not hold the check up once another answered", async () => {
    const silent = await serve("127.0.0.4", false);
    const port = silent.port;
    // The answering server on the same port, another loopback address.
    const answering = net.createServer((s) => s.end("pong\n"));
    await new Promise<void>((resolve, reject) => {
      answering.once("error", reject);
      answering.listen(port, "127.0.0.5", resolve);
    });
    cleanups.push(() => new Promise<void>((resolve) => answering.close(() => resolve())));
    const started = performance.now();
    const r = await run(check({ type: "tcp", host: ["127.0.0.4", "127.0.0.5"], port, expect: "pong", timeout: "5s" }));
    const ms = performance.now() - started;
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain(`tcp 127.0.0.5:${port}`);
    // The hanging target would only give up at the 5 s timeout.
    expect(ms).toBeLessThan(4000);
  });
});

describe("ship: any-of check targets (ping) in a network namespace", () => {
  const ns = `rl-any-${randomBytes(3).toString("hex")}`;
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", ns]);
    cleanups.push(() => {
      execFileSync("ip", ["netns", "delete", ns]);
    });
    execFileSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
  });

  it("ship: two unreachable public addresses and loopback: passes on loopback alone", async () => {
    const inNs = createCheckRunner({ pingCommand: ["ip", "netns", "exec", ns, "ping"] });
    const r = await inNs(check({ type: "ping", host: ["198.51.100.7", "203.0.113.9", "127.0.0.1"], timeout: "2s" }));
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toMatch(/^any of 3: ping 127\.0\.0\.1: reply in [\d.]+ ms$/);
  });

  it("ship: none reachable: fails with each target's reason", async () => {
    const inNs = createCheckRunner({ pingCommand: ["ip", "netns", "exec", ns, "ping"] });
    const r = await inNs(check({ type: "ping", host: ["198.51.100.7", "203.0.113.9"], timeout: "1s" }));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/^none of 2 answered: ping 198\.51\.100\.7: no reply \(.*unreachable\); ping 203\.0\.113\.9: no reply \(.*unreachable\)$/);
  });
});
