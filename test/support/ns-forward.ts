import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nsWrap } from "./netns.js";
import { ManagedProcess, waitUntil } from "./process.js";

/**
 * Makes services of the root namespace (moto, a metadata mock, all on 127.0.0.1) reachable at
 * the same 127.0.0.1:port inside network namespaces, as an instance reaches its AWS endpoints:
 * in each namespace a small Node process listens on 127.0.0.1:port and relays every connection
 * through a Unix socket (the file system is shared) to the root namespace's 127.0.0.1:port.
 * Nothing is added to the root namespace's network.
 */
const IN_NAMESPACE = `
const net = require("node:net");
const [dir, ...ports] = process.argv.slice(1);
for (const port of ports) {
  net.createServer((c) => {
    const u = net.connect(dir + "/" + port + ".sock");
    c.pipe(u).pipe(c);
    c.on("error", () => u.destroy());
    u.on("error", () => c.destroy());
  }).listen(Number(port), "127.0.0.1", () => console.log("listening " + port));
}`;

export class NamespaceForwarder {
  private readonly dir = mkdtempSync(join(tmpdir(), "rl-fwd-"));
  private readonly servers = new Map<number, net.Server>();
  private readonly relays: ManagedProcess[] = [];

  /** The root-namespace end for a port (one Unix socket per port, shared by every namespace). */
  private async rootEnd(port: number): Promise<void> {
    if (this.servers.has(port)) return;
    const server = net.createServer((c) => {
      const t = net.connect(port, "127.0.0.1");
      c.pipe(t).pipe(c);
      c.on("error", () => t.destroy());
      t.on("error", () => c.destroy());
    });
    this.servers.set(port, server);
    await new Promise<void>((resolve) => server.listen(join(this.dir, `${port}.sock`), resolve));
  }

  /** Starts a relay inside `ns` for these ports; resolves once it listens on every one. */
  async into(ns: string, ports: number[]): Promise<void> {
    for (const port of ports) await this.rootEnd(port);
    const [cmd, ...args] = [...nsWrap(ns), process.execPath, "-e", IN_NAMESPACE, this.dir, ...ports.map(String)];
    const proc = new ManagedProcess(cmd!, args, { name: `forwarder in ${ns}` });
    this.relays.push(proc);
    await waitUntil(`forwarder in ${ns}`, async () => {
      if (proc.hasExited) throw new Error(proc.output(10));
      return proc.output(20).split("\n").filter((l) => l.startsWith("listening")).length === ports.length ? true : undefined;
    }, { timeoutMs: 20_000, intervalMs: 100 });
  }

  async stop(): Promise<void> {
    await Promise.all(this.relays.map((p) => p.stop()));
    await Promise.all([...this.servers.values()].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
