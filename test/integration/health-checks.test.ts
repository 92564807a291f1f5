import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSchema, type CheckConfig } from "../../agent/config/schema.js";
import { createCheckRunner } from "../../agent/health/run.js";
import { waitUntil } from "../support/process.js";

const run = createCheckRunner();
const check = (raw: Record<string, unknown>): CheckConfig => checkSchema.parse(raw);

/** Starts a server on 127.0.0.1:0 and returns its port; every socket is tracked so close() is prompt. */
async function listen(server: net.Server): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on: bound once by the OS, then released. */
async function closedPort(): Promise<number> {
  const s = await listen(net.createServer());
  await s.close();
  return s.port;
}

/** Alive means present in /proc and not a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe("tcp check against real local servers", () => {
  let echo: { port: number; close: () => Promise<void> };
  let silent: { port: number; close: () => Promise<void> };
  let wrong: { port: number; close: () => Promise<void> };

  beforeAll(async () => {
    echo = await listen(net.createServer((s) => s.on("data", (d) => d.toString().includes("PING") && s.write("PONG OK\n"))));
    silent = await listen(net.createServer(() => undefined));
    wrong = await listen(net.createServer((s) => s.on("data", () => s.end("ERR busy\n"))));
    cleanups.push(echo.close, silent.close, wrong.close);
  });

  it("passes on connect, and with send/expect when the reply contains the text", async () => {
    const connected = await run(check({ type: "tcp", host: "127.0.0.1", port: echo.port }));
    expect(connected.ok).toBe(true);
    expect(connected.output).toMatch(new RegExp(`^tcp 127\\.0\\.0\\.1:${echo.port}: connected, [\\d.]+ ms$`));
    const r = await run(check({ type: "tcp", host: "127.0.0.1", port: echo.port, send: "PING\n", expect: "OK" }));
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(new RegExp(`^tcp 127\\.0\\.0\\.1:${echo.port}: connected, expect 'OK' matched, [\\d.]+ ms$`));
  });

  it("with send and no expect, passes once the text is written", async () => {
    const r = await run(check({ type: "tcp", host: "127.0.0.1", port: silent.port, send: "hello\n" }));
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(/: connected, sent, [\d.]+ ms$/);
  });

  it("fails with 'connection refused' when the server is stopped", async () => {
    const r = await run(check({ type: "tcp", host: "127.0.0.1", port: await closedPort() }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("connection refused");
  });

  it("fails at the timeout when the server accepts but never answers", async () => {
    const r = await run(check({ type: "tcp", host: "127.0.0.1", port: silent.port, send: "PING\n", expect: "OK", timeout: "200ms" }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("connected, expect 'OK' not seen (got '') within 200 ms");
  });

  it("fails when the server answers something else and closes", async () => {
    const r = await run(check({ type: "tcp", host: "127.0.0.1", port: wrong.port, send: "PING\n", expect: "OK" }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("closed before 'OK' (got 'ERR busy')");
  });
});

describe("tcp check over TLS", () => {
  let dir: string;
  let server: { port: number; close: () => Promise<void> };
  let cert: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rl-h-tls-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")], { stdio: "ignore" });
    cert = readFileSync(join(dir, "cert.pem"));
    server = await listen(tls.createServer({ key: readFileSync(join(dir, "key.pem")), cert }, (s) => s.on("data", () => s.write("OK\n"))));
    cleanups.push(server.close);
  });

  it("passes when the certificate verifies, and fails when it does not", async () => {
    const trusting = createCheckRunner({ tcp: { tlsOptions: { ca: cert } } });
    const cfg = check({ type: "tcp", host: "127.0.0.1", port: server.port, tls: true, send: "hi", expect: "OK" });
    const good = await trusting(cfg);
    expect(good.ok).toBe(true);
    expect(good.output).toContain(`tls 127.0.0.1:${server.port}: TLS handshake ok, expect 'OK' matched`);
    const untrusted = await run(cfg);
    expect(untrusted.ok).toBe(false);
    expect(untrusted.output).toContain("SELF_SIGNED");
  });
});

describe("http check against a real local server", () => {
  let server: { port: number; close: () => Promise<void> };
  let base: string;

  beforeAll(async () => {
    const handler: http.RequestListener = (req, res) => {
      if (req.url === "/ok") return void res.end("status: healthy");
      if (req.url === "/degraded") return void res.end("status: degraded");
      if (req.url === "/error") return void res.writeHead(503).end("down");
      if (req.url === "/auth") return void res.writeHead(req.headers["x-probe"] === "secret" ? 204 : 401).end();
      // "/hang": accept the request, never answer.
    };
    server = await listen(http.createServer(handler));
    cleanups.push(server.close);
    base = `http://127.0.0.1:${server.port}`;
  });

  it("passes on a status in range with a matching body", async () => {
    const r = await run(check({ type: "http", url: `${base}/ok`, bodyMatch: "health(y|ier)" }));
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(new RegExp(`^http GET ${base}/ok: 200, body matched /health\\(y\\|ier\\)/, [\\d.]+ ms$`));
  });

  it("fails on a body that does not match, quoting it", async () => {
    const r = await run(check({ type: "http", url: `${base}/degraded`, bodyMatch: "healthy" }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("200, body 'status: degraded' does not match /healthy/");
  });

  it("fails on a status outside the range", async () => {
    const r = await run(check({ type: "http", url: `${base}/error` }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("status 503 outside 200-399");
  });

  it("sends the configured headers", async () => {
    expect((await run(check({ type: "http", url: `${base}/auth` }))).ok).toBe(false);
    expect((await run(check({ type: "http", url: `${base}/auth`, headers: { "X-Probe": "secret" } }))).ok).toBe(true);
  });

  it("fails at the timeout when the server never answers", async () => {
    const r = await run(check({ type: "http", url: `${base}/hang`, timeout: "200ms" }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("no complete answer within 200 ms");
  });

  it("fails with 'connection refused' when the server is stopped", async () => {
    const r = await run(check({ type: "http", url: `http://127.0.0.1:${await closedPort()}/ok` }));
    expect(r.ok).toBe(false);
    expect(r.output).toContain("connection refused");
  });
});

describe("ping check (system ping)", () => {
  const ns = `rl-h-${randomBytes(3).toString("hex")}`;

  beforeAll(() => {
    execFileSync("ip", ["netns", "add", ns]);
    cleanups.push(() => {
      execFileSync("ip", ["netns", "delete", ns]);
    });
    execFileSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
  });

  it("passes to 127.0.0.1 and reports the round-trip time", async () => {
    const r = await run(check({ type: "ping", host: "127.0.0.1" }));
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(/^ping 127\.0\.0\.1: reply in [\d.]+ ms$/);
    expect(r.latencyMs).toBeGreaterThan(0);
  });

  it("inside a namespace with only lo: loopback passes, an address with no route fails", async () => {
    const inNamespace = createCheckRunner({ pingCommand: ["ip", "netns", "exec", ns, "ping"] });
    expect((await inNamespace(check({ type: "ping", host: "127.0.0.1" }))).ok).toBe(true);
    const r = await inNamespace(check({ type: "ping", host: "198.51.100.7" }));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/^ping 198\.51\.100\.7: no reply \(.*[Nn]etwork is unreachable\)$/);
  });
});

describe("command check", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "rl-h-cmd-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  });

  it("passes on exit 0", async () => {
    const r = await run(check({ type: "command", command: ["sh", "-c", "echo forwarding fine"] }));
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(/^command sh -c echo forwarding fine: exit 0, [\d.]+ ms: 'forwarding fine'$/);
  });

  it("fails on a non-zero exit, quoting what it printed", async () => {
    const r = await run(check({ type: "command", command: ["sh", "-c", "echo 'no conntrack' >&2; exit 3"] }));
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/: exit 3, [\d.]+ ms: 'no conntrack'$/);
  });

  it("fails when the program does not exist", async () => {
    const r = await run(check({ type: "command", command: ["/nonexistent/probe"] }));
    expect(r.ok).toBe(false);
    expect(r.output).toBe("command /nonexistent/probe: cannot start: ENOENT");
  });

  it("kills the whole process group of a command that outlives its timeout", async () => {
    const shPid = join(dir, "sh.pid");
    const childPid = join(dir, "child.pid");
    const marker = join(dir, "not-killed");
    // The background child would write the marker if it survived; the shell waits on it.
    const script = `echo $$ > ${shPid}; (sleep 30; touch ${marker}) & echo $! > ${childPid}; wait`;
    const r = await run(check({ type: "command", command: ["sh", "-c", script], timeout: "300ms" }));
    expect(r.ok).toBe(false);
    expect(r.output).toBe(`command sh -c ${script}: killed after the 300 ms timeout`);
    const pids = [shPid, childPid].map((f) => Number(readFileSync(f, "utf8")));
    await waitUntil("the command and its child to be gone", async () => (pids.some(isAlive) ? undefined : true), { timeoutMs: 5000 });
    expect(existsSync(marker)).toBe(false);
  });
});
