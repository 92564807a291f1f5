import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../agent/exit-codes.js";

const dir = mkdtempSync(join(tmpdir(), "rl-cli-"));
function cli(args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", "agent/cli.ts", ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("routeleader CLI exit codes", () => {
  it("validate: a valid config exits 0 and says so", () => {
    const r = cli(["validate", "--config", file("ok.yaml", "cluster: c\nroutes:\n  - name: r\n    table: {main: true}\n    destination: ::/0\n")]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/valid \(cluster c, 1 route, 0 checks\)/);
  });

  it.each([
    ["malformed YAML", "cluster: c\nroutes: [\n", /malformed YAML/],
    ["unknown key", "cluster: c\nbogus: 1\nroutes:\n  - name: r\n    table: {main: true}\n    destination: ::/0\n", /:2: \(top level\): unknown key "bogus"/],
    ["missing field", "cluster: c\nroutes:\n  - name: r\n    table: {main: true}\n", /routes\[0\]\.destination: required field is missing/],
    ["invalid CIDR", "cluster: c\nroutes:\n  - name: r\n    table: {main: true}\n    destination: 300.0.0.0/8\n", /routes\[0\]\.destination: invalid CIDR/],
  ])("validate: %s exits 3 (config), naming the path and the problem", (name, yaml, pattern) => {
    const path = file(`${name.replace(/ /g, "-")}.yaml`, yaml);
    const r = cli(["validate", "--config", path]);
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toContain(path);
    expect(r.stderr).toMatch(pattern);
  });

  it("a missing config file exits 3 naming the file", () => {
    const r = cli(["validate", "--config", join(dir, "nope.yaml")]);
    expect(r.code).toBe(EXIT.config);
    expect(r.stderr).toMatch(/nope\.yaml.*cannot read config file \(ENOENT\)/s);
  });

  it("usage errors exit 2", () => {
    expect(cli(["validate"]).code).toBe(EXIT.usage);
    expect(cli(["frobnicate"]).code).toBe(EXIT.usage);
  });
});
