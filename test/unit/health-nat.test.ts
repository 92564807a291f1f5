import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkSchema, type CheckConfig } from "../../agent/config/schema.js";
import { runNat } from "../../agent/health/nat.js";
import type { ProcessResult, ProcessRunner } from "../../agent/health/process.js";

type NatCheck = Extract<CheckConfig, { type: "nat" }>;

const IPTABLES_WITH_MASQ = "-P POSTROUTING ACCEPT\n-A POSTROUTING -o eth0 -j MASQUERADE\n";
const IPTABLES_EMPTY = "-P POSTROUTING ACCEPT\n";
const NFT_WITH_MASQ = 'table ip nat {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat;\n\t\toifname "eth0" masquerade\n\t}\n}\n';

function ok(stdout: string): ProcessResult {
  return { code: 0, signal: null, stdout, stderr: "", timedOut: false, aborted: false, durationMs: 1 };
}
const missing: ProcessResult = { code: null, signal: null, stdout: "", stderr: "", timedOut: false, aborted: false, spawnError: "ENOENT", durationMs: 0 };

/** A command runner that answers from a table keyed by program name, and records calls. */
function fakeRunner(answers: Record<string, ProcessResult>): ProcessRunner & { calls: string[][] } {
  const calls: string[][] = [];
  const run = (async (argv: readonly string[]) => {
    calls.push([...argv]);
    return answers[argv[0]!] ?? missing;
  }) as unknown as ProcessRunner & { calls: string[][] };
  run.calls = calls;
  return run;
}

const dirs: string[] = [];
function procRoot(values: { ipv4?: string; ipv6?: string }): string {
  const root = mkdtempSync(join(tmpdir(), "rl-h-proc-"));
  dirs.push(root);
  if (values.ipv4 !== undefined) {
    mkdirSync(join(root, "sys/net/ipv4"), { recursive: true });
    writeFileSync(join(root, "sys/net/ipv4/ip_forward"), `${values.ipv4}\n`);
  }
  if (values.ipv6 !== undefined) {
    mkdirSync(join(root, "sys/net/ipv6/conf/all"), { recursive: true });
    writeFileSync(join(root, "sys/net/ipv6/conf/all/forwarding"), `${values.ipv6}\n`);
  }
  return root;
}

function natCheck(extra: Partial<Record<string, unknown>> = {}): NatCheck {
  return checkSchema.parse({ type: "nat", ...extra }) as NatCheck;
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("nat check with an injected /proc and command runner", () => {
  it("passes with forwarding on, an iptables MASQUERADE rule and source/dest check off", async () => {
    const run = fakeRunner({ iptables: ok(IPTABLES_WITH_MASQ) });
    const r = await runNat(natCheck(), { run, procRoot: procRoot({ ipv4: "1" }), sourceDestCheckOff: async () => true });
    expect(r.ok).toBe(true);
    expect(r.output).toMatch(/^nat: net\.ipv4\.ip_forward = 1, MASQUERADE in iptables nat POSTROUTING, source\/dest check off, [\d.]+ ms$/);
    expect(run.calls).toEqual([["iptables", "-t", "nat", "-S", "POSTROUTING"]]);
  });

  it("falls back to nftables when iptables has no MASQUERADE rule", async () => {
    const run = fakeRunner({ iptables: ok(IPTABLES_EMPTY), nft: ok(NFT_WITH_MASQ) });
    const r = await runNat(natCheck(), { run, procRoot: procRoot({ ipv4: "1" }) });
    expect(r.ok).toBe(true);
    expect(r.output).toContain("masquerade in nftables ruleset");
  });

  it("fails when IPv4 forwarding is off, naming the sysctl", async () => {
    const run = fakeRunner({ iptables: ok(IPTABLES_WITH_MASQ) });
    const r = await runNat(natCheck(), { run, procRoot: procRoot({ ipv4: "0" }) });
    expect(r.ok).toBe(false);
    expect(r.output).toContain("not forwarding: net.ipv4.ip_forward = 0");
    expect(run.calls).toEqual([]);
  });

  it("fails when the sysctl cannot be read", async () => {
    const r = await runNat(natCheck(), { run: fakeRunner({}), procRoot: procRoot({}) });
    expect(r.ok).toBe(false);
    expect(r.output).toContain("net.ipv4.ip_forward = unreadable (ENOENT)");
  });

  it("with ipv6, fails when IPv6 forwarding is off and passes when it is on", async () => {
    const run = fakeRunner({ iptables: ok(IPTABLES_WITH_MASQ) });
    const off = await runNat(natCheck({ ipv6: true }), { run, procRoot: procRoot({ ipv4: "1", ipv6: "0" }) });
    expect(off.ok).toBe(false);
    expect(off.output).toContain("not forwarding: net.ipv6.conf.all.forwarding = 0");
    const on = await runNat(natCheck({ ipv6: true }), { run, procRoot: procRoot({ ipv4: "1", ipv6: "1" }) });
    expect(on.ok).toBe(true);
    expect(on.output).toContain("net.ipv6.conf.all.forwarding = 1");
  });

  it("fails without a MASQUERADE rule in either tool, saying what each answered", async () => {
    const denied: ProcessResult = { ...ok(""), code: 4, stderr: "nft: Operation not permitted" };
    const r = await runNat(natCheck(), { run: fakeRunner({ iptables: ok(IPTABLES_EMPTY), nft: denied }), procRoot: procRoot({ ipv4: "1" }) });
    expect(r.ok).toBe(false);
    expect(r.output).toContain("no MASQUERADE rule (iptables: no masquerade rule; nft: exit 4 'nft: Operation not permitted')");
  });

  it("fails when neither iptables nor nft can be run", async () => {
    const r = await runNat(natCheck(), { run: fakeRunner({}), procRoot: procRoot({ ipv4: "1" }) });
    expect(r.ok).toBe(false);
    expect(r.output).toContain("iptables: not runnable, ENOENT; nft: not runnable, ENOENT");
  });

  it("skips the rule lookup when requireMasquerade is false", async () => {
    const run = fakeRunner({});
    const r = await runNat(natCheck({ requireMasquerade: false }), { run, procRoot: procRoot({ ipv4: "1" }) });
    expect(r.ok).toBe(true);
    expect(run.calls).toEqual([]);
  });

  it("fails when source/dest check is on, or its state cannot be read", async () => {
    const deps = { run: fakeRunner({ iptables: ok(IPTABLES_WITH_MASQ) }), procRoot: procRoot({ ipv4: "1" }) };
    const on = await runNat(natCheck(), { ...deps, sourceDestCheckOff: async () => false });
    expect(on.ok).toBe(false);
    expect(on.output).toContain("source/dest check is ON");
    const unknown = await runNat(natCheck(), {
      ...deps,
      sourceDestCheckOff: async () => {
        throw new Error("EC2 unreachable");
      },
    });
    expect(unknown.ok).toBe(false);
    expect(unknown.output).toContain("source/dest check state unknown");
  });
});
