import { readFileSync } from "node:fs";
import { request } from "node:http";
import { resolve } from "node:path";
import { parseDocument } from "yaml";
import { ConfigError, loadConfig } from "../config/index.js";
import { EXIT, ExitError } from "../exit-codes.js";
import { parseListenAddress } from "../observe/listen-address.js";
import type { ReloadOutcome } from "../reload.js";

const DEFAULT_LISTEN = "127.0.0.1:9731";

/**
 * Where the running agent listens: the file's `http.listen`. A file that does not validate
 * (the case a reload must refuse, visibly, in the agent) is read leniently for that one key.
 */
export function agentListen(file: string): string {
  try {
    return loadConfig(file).http.listen;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    try {
      const listen = parseDocument(readFileSync(file, "utf8")).getIn(["http", "listen"]);
      return typeof listen === "string" ? listen : DEFAULT_LISTEN;
    } catch {
      return DEFAULT_LISTEN;
    }
  }
}

/**
 * `routeleader reload`: POST /reload to the agent's loopback endpoint. The agent re-reads the
 * file it was started with, validates it (as `validate` does), and applies or refuses it; the
 * answer says which, with every change or every problem.
 */
export async function requestReload(file: string): Promise<ReloadOutcome & { note?: string }> {
  let address;
  try {
    address = parseListenAddress(agentListen(file));
  } catch (err) {
    throw new ExitError(`cannot find the agent: ${(err as Error).message}`, EXIT.usage);
  }
  if (!address) throw new ExitError("cannot reload through the agent's HTTP endpoint: it is disabled (http.listen is ''); send SIGHUP instead (systemctl reload routeleader)", EXIT.usage);
  const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
  const answer = await new Promise<ReloadOutcome>((done, fail) => {
    const req = request({ host: address.host, port: address.port, path: "/reload", method: "POST", timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8").trim();
        if (res.statusCode !== 200 && res.statusCode !== 422) return fail(new ExitError(`reload failed at the agent at ${where}: HTTP ${res.statusCode}: ${body}`, EXIT.failure));
        try {
          done(JSON.parse(body) as ReloadOutcome);
        } catch {
          fail(new ExitError(`the agent at ${where} answered something else than a reload outcome: ${body.slice(0, 200)}`, EXIT.failure));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 60 s")));
    req.on("error", (err) => fail(new ExitError(`cannot reach the agent at ${where} to reload: ${(err as NodeJS.ErrnoException).code ?? err.message} (is routeleader running?)`, EXIT.failure)));
    req.end();
  });
  const differs = resolve(answer.source) !== resolve(file);
  return differs ? { ...answer, note: `the agent re-read the file it runs with, ${answer.source}, not ${file}` } : answer;
}

/** The answer in a few lines for a terminal. */
export function renderReload(answer: ReloadOutcome & { note?: string }): string {
  const lines: string[] = [];
  if (answer.outcome === "refused") lines.push(`${answer.source}: reload refused; the agent keeps running on the configuration it had`);
  else if (answer.outcome === "unchanged") lines.push(`${answer.source}: reloaded, nothing changed`);
  else lines.push(`${answer.source}: reloaded, ${answer.changes.length} change${answer.changes.length === 1 ? "" : "s"}:`);
  if (answer.outcome !== "refused") for (const c of answer.changes) lines.push(`  ${c.path}: ${c.message}`);
  for (const p of answer.pending ?? []) lines.push(`  pending: ${p}`);
  for (const w of answer.warnings ?? []) lines.push(`  warning: ${w}`);
  if (answer.note) lines.push(`note: ${answer.note}`);
  return lines.join("\n");
}
