import { describe, expect, it } from "vitest";
import { diffConfig, kindOf, parseConfig, type ChangeKind } from "../../agent/config/index.js";

/** Reload (issue #21): what changed between the running and the new configuration, and what may change live. */

const BASE = `cluster: prod
checks:
  alive: { type: command, command: ["/bin/true"], every: 1s }
  egress: { type: ping, host: 1.1.1.1 }
routes:
  - name: nat-a
    table: { tags: { Name: private-a } }
    destination: 0.0.0.0/0
    checks: [alive]
  - name: nat-b
    table: { tags: { Name: private-b } }
    destination: 0.0.0.0/0
    checks: [alive]
`;

const cfg = (text: string) => parseConfig(text, "routeleader.yaml");
const diff = (next: string, running = BASE) => diffConfig(cfg(running), cfg(next));

describe("live: config diff (pure)", () => {
  it("live: an identical file (even from another path) changes nothing", () => {
    const d = diffConfig(cfg(BASE), parseConfig(BASE, "/elsewhere.yaml"));
    expect(d.changes).toEqual([]);
    expect(d.refused).toEqual([]);
  });

  it.each<[string, string, string, ChangeKind]>([
    ["consul address", "consul: { address: 'http://10.0.0.1:8500' }\n", "consul.address", "restart"],
    ["consul service name", "consul: { serviceName: other }\n", "consul.serviceName", "restart"],
    ["region", "region: eu-west-1\n", "region", "restart"],
    ["imds endpoint", "imds: { endpoint: 'http://127.0.0.1:1338' }\n", "imds.endpoint", "restart"],
    ["aws endpoint", "aws: { endpoint: 'http://127.0.0.1:5000' }\n", "aws.endpoint", "restart"],
    ["write timeout", "aws: { writeTimeout: 500ms }\n", "aws.writeTimeout", "restart"],
    ["peer heartbeat interval", "peers: { interval: 300ms }\n", "peers.interval", "restart"],
    ["http listen", "http: { listen: '127.0.0.1:9999' }\n", "http.listen", "restart"],
    ["discovery interval", "discovery: { interval: 1m }\n", "discovery.interval", "restart"],
    ["lifecycle hook", "lifecycle: { hookName: h }\n", "lifecycle.hookName", "restart"],
    ["liveness TTL", "election: { livenessTtl: 5s }\n", "election.livenessTtl", "restart"],
    ["lock-delay", "election: { lockDelay: 5s }\n", "election.lockDelay", "nextSession"],
    ["session TTL", "election: { sessionTtl: 20s }\n", "election.sessionTtl", "nextSession"],
    ["node checks", "election: { nodeChecks: [] }\n", "election.nodeChecks", "nextSession"],
    ["watch wait", "election: { watchWait: 2s }\n", "election.watchWait", "live"],
    ["reconcile interval", "reconcileInterval: 5s\n", "reconcileInterval", "live"],
    ["policy", "policy: { failbackAfter: 1m }\n", "policy.failbackAfter", "live"],
    ["hooks", "hooks: { onAcquire: [/bin/true] }\n", "hooks.onAcquire", "live"],
    ["source/dest check", "sourceDestCheck: verify\n", "sourceDestCheck", "live"],
    ["log level", "logLevel: debug\n", "logLevel", "live"],
  ])("live: %s", (_what, extra, path, kind) => {
    const d = diff(`${BASE}${extra}`);
    expect(d.changes.map((c) => [c.path, c.kind])).toEqual([[path, kind]]);
    expect(d.refused.length > 0).toBe(kind === "restart");
    if (kind === "restart") expect(d.refused[0]?.message).toMatch(/cannot change while the agent runs \(.+ → .+\).*restart the agent/);
  });

  it("live: a refused change names the old and the new value", () => {
    const d = diff(BASE.replace("cluster: prod", "cluster: staging"));
    expect(d.changes.map((c) => [c.path, c.kind])).toEqual([["cluster", "restart"]]);
    expect(d.refused[0]?.message).toMatch(/^cannot change while the agent runs \("prod" → "staging"\) \(it names every Consul key/);
  });

  it("live: the fast profile is refused because it changes the write timeout and the peer heartbeats; lockDelay alone waits for the next session", () => {
    const d = diff(`${BASE}election: { profile: fast }\n`);
    expect(d.changes.map((c) => [c.path, c.kind]).sort()).toEqual([
      ["aws.writeTimeout", "restart"],
      ["election.fenceMargin", "live"],
      ["election.lockDelay", "nextSession"],
      ["election.profile", "live"],
      ["peers.interval", "restart"],
      ["peers.misses", "restart"],
    ]);
  });

  it("live: routes added, removed, changed; a changed check set is told apart", () => {
    const next = `cluster: prod
checks:
  alive: { type: command, command: ["/bin/true"], every: 1s }
  egress: { type: ping, host: 1.1.1.1 }
routes:
  - name: nat-a
    table: { tags: { Name: private-a } }
    destination: 0.0.0.0/0
    checks: [alive, egress]
  - name: nat-c
    table: { tags: { Name: private-c } }
    destination: 0.0.0.0/0
    checks: [alive]
`;
    const d = diff(next);
    expect(d.routes).toEqual({ added: ["nat-c"], removed: ["nat-b"], changed: ["nat-a"], checksChanged: ["nat-a"] });
    expect(d.refused).toEqual([]);
    expect(d.changes.find((c) => c.path === "routes[nat-a]")?.message).toMatch(/releases it \(no lock-delay\) and contends again/);
    expect(d.changes.find((c) => c.path === "routes[nat-b]")?.message).toMatch(/released first if held \(the route stays in its tables\)/);
  });

  it("live: reordering routes or a route's checks is no change; a selector change is one", () => {
    const reordered = BASE.replace(/  - name: nat-a[\s\S]*?checks: \[alive\]\n/, "").concat("  - name: nat-a\n    table: { tags: { Name: private-a } }\n    destination: 0.0.0.0/0\n    checks: [alive]\n");
    expect(diff(reordered).changes).toEqual([]);
    const moved = diff(BASE.replace("Name: private-b", "Name: private-z"));
    expect(moved.routes.changed).toEqual(["nat-b"]);
    expect(moved.routes.checksChanged).toEqual([]);
    expect(moved.changes[0]?.message).toMatch(/^changed \(table\): tables re-resolved at the next reconcile/);
  });

  it("live: checks added, removed and changed", () => {
    const d = diff(BASE.replace("every: 1s", "every: 2s").replace("  egress: { type: ping, host: 1.1.1.1 }\n", "  web: { type: tcp, host: 127.0.0.1, port: 80 }\n"));
    expect(d.checks).toEqual({ added: ["web"], removed: ["egress"], changed: ["alive"] });
    expect(d.refused).toEqual([]);
  });

  it.each<[string, ChangeKind]>([
    ["consul.tokenFile", "restart"],
    ["election.fenceMargin", "live"],
    ["election.profile", "live"],
    ["checks.x.every", "live"],
    ["electionx", "restart"],
    ["observe.cloudwatch.emf", "restart"],
    ["somethingNew", "restart"],
  ])("live: kindOf(%s) is %s", (path, kind) => {
    expect(kindOf(path)).toBe(kind);
  });
});
