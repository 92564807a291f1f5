import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { resolveConsulSettings } from "../../agent/consul/index.js";
import { EXIT, ExitError } from "../../agent/exit-codes.js";
import { captureLogger } from "../support/log-capture.js";

/**
 * README (Threat model): the token comes from a file, mode 0600, preferred over the
 * environment, and is never logged. The end-to-end run against an ACL-enforcing Consul is in
 * test/integration/security.test.ts; these pin the resolution rules themselves.
 */

const dir = mkdtempSync(join(tmpdir(), "rl-token-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FILE_TOKEN = "11111111-aaaa-4bbb-8ccc-000000000001";
const ENV_TOKEN = "22222222-aaaa-4bbb-8ccc-000000000002";

function tokenFile(name: string, mode: number, token = FILE_TOKEN): string {
  const file = join(dir, name);
  writeFileSync(file, `${token}\n`);
  chmodSync(file, mode);
  return file;
}

function refusal(run: () => unknown): ExitError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(ExitError);
    return err as ExitError;
  }
  throw new Error("expected a refusal");
}

describe("Consul ACL token resolution", () => {
  it("truth: consul.tokenFile wins over CONSUL_HTTP_TOKEN; the log names the source and the ignored variable, never a token", () => {
    const { logger, lines } = captureLogger("debug");
    const file = tokenFile("config-token", 0o600);
    const settings = resolveConsulSettings({ address: "127.0.0.1:8500", tokenFile: file }, { CONSUL_HTTP_TOKEN: ENV_TOKEN }, logger);
    expect(settings.token).toBe(FILE_TOKEN);
    expect(settings.tokenSource).toBe("consul.tokenFile");
    const line = lines.find((l) => l.tokenSource);
    expect(line).toMatchObject({ tokenSource: "consul.tokenFile", tokenFile: file, ignored: ["CONSUL_HTTP_TOKEN"] });
    expect(line?.msg).toMatch(/Consul ACL token from consul\.tokenFile \(CONSUL_HTTP_TOKEN is set and ignored: the token file wins\)/);
    const text = JSON.stringify(lines);
    expect(text).not.toContain(FILE_TOKEN);
    expect(text).not.toContain(ENV_TOKEN);
  });

  it("truth: CONSUL_HTTP_TOKEN_FILE wins over CONSUL_HTTP_TOKEN and over consul.tokenFile", () => {
    const { logger, lines } = captureLogger("debug");
    const envFile = tokenFile("env-token", 0o400, "33333333-aaaa-4bbb-8ccc-000000000003");
    const settings = resolveConsulSettings({ address: "127.0.0.1:8500", tokenFile: tokenFile("config-token-2", 0o600) }, { CONSUL_HTTP_TOKEN: ENV_TOKEN, CONSUL_HTTP_TOKEN_FILE: envFile }, logger);
    expect(settings).toMatchObject({ token: "33333333-aaaa-4bbb-8ccc-000000000003", tokenSource: "CONSUL_HTTP_TOKEN_FILE" });
    expect(lines.find((l) => l.tokenSource)).toMatchObject({ tokenSource: "CONSUL_HTTP_TOKEN_FILE", tokenFile: envFile });
  });

  it("CONSUL_HTTP_TOKEN alone is used, and said to be", () => {
    const { logger, lines } = captureLogger("debug");
    expect(resolveConsulSettings({ address: "127.0.0.1:8500" }, { CONSUL_HTTP_TOKEN: ENV_TOKEN }, logger)).toMatchObject({ token: ENV_TOKEN, tokenSource: "CONSUL_HTTP_TOKEN" });
    expect(lines.find((l) => l.tokenSource)?.msg).toBe("Consul ACL token from CONSUL_HTTP_TOKEN");
    expect(JSON.stringify(lines)).not.toContain(ENV_TOKEN);
    expect(resolveConsulSettings({ address: "127.0.0.1:8500" }, {}, logger)).toMatchObject({ tokenSource: "none" });
  });

  it.each([
    [0o644, "group and others"],
    [0o640, "group"],
    [0o604, "others"],
    [0o620, "group"],
  ])("truth: a token file of mode %o is refused (exit 3, %s may access it), even with CONSUL_HTTP_TOKEN set", (mode, who) => {
    const file = tokenFile(`mode-${mode.toString(8)}`, mode);
    const err = refusal(() => resolveConsulSettings({ address: "127.0.0.1:8500", tokenFile: file }, { CONSUL_HTTP_TOKEN: ENV_TOKEN }, undefined));
    expect(err.exitCode).toBe(EXIT.config);
    expect(err.message).toBe(`Consul token file ${file} (consul.tokenFile) is mode 0${mode.toString(8)}: ${who} may access it; the token must be readable by the agent's user only (chmod 600 ${file})`);
    expect(err.message).not.toContain(FILE_TOKEN);
  });

  it("a missing or empty token file is refused with exit 3", () => {
    expect(refusal(() => resolveConsulSettings({ address: "x:1" }, { CONSUL_HTTP_TOKEN_FILE: join(dir, "absent") }, undefined)).message).toMatch(/^cannot read Consul token file \(CONSUL_HTTP_TOKEN_FILE\) .*absent \(ENOENT\)$/);
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n", { mode: 0o600 });
    const err = refusal(() => resolveConsulSettings({ address: "x:1", tokenFile: empty }, {}, undefined));
    expect([err.exitCode, err.message]).toEqual([EXIT.config, `Consul token file ${empty} (consul.tokenFile) is empty`]);
  });
});
