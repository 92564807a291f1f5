import { readFileSync, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import Consul from "consul";
import { EXIT, ExitError } from "../exit-codes.js";
import { processLogger, type Logger } from "../observe/log.js";

/** Where and how to reach the local Consul agent. */
export interface ConsulSettings {
  address: string;
  token?: string;
  /** Where `token` came from; absent when built by hand (tests). */
  tokenSource?: TokenSource;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  tlsServerName?: string;
}

export interface ConsulConfigSection {
  address: string;
  tokenFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  tlsServerName?: string;
}

function readSecretFile(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new ExitError(`cannot read ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`, EXIT.config);
  }
}

/** Where the ACL token came from (logged at start; the token itself never is). */
export type TokenSource = "CONSUL_HTTP_TOKEN_FILE" | "consul.tokenFile" | "CONSUL_HTTP_TOKEN" | "none";

/**
 * Reads the ACL token file, refusing one that group or others may read (or write): the token
 * decides who may redirect the VPC's traffic, so it must be the agent user's alone (0600 or
 * 0400). Exit code 3, like any other unusable setting.
 */
export function readTokenFile(file: string, setting: string): string {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch (err) {
    throw new ExitError(`cannot read Consul token file (${setting}) ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`, EXIT.config);
  }
  if ((mode & 0o077) !== 0) {
    const who = [mode & 0o070 ? "group" : "", mode & 0o007 ? "others" : ""].filter(Boolean).join(" and ");
    throw new ExitError(
      `Consul token file ${file} (${setting}) is mode ${mode.toString(8).padStart(4, "0")}: ${who} may access it; the token must be readable by the agent's user only (chmod 600 ${file})`,
      EXIT.config,
    );
  }
  const token = readSecretFile(file, `Consul token file (${setting})`);
  if (!token) throw new ExitError(`Consul token file ${file} (${setting}) is empty`, EXIT.config);
  return token;
}

/**
 * Resolves settings from the config section and the usual Consul environment variables
 * (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
 * CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL).
 * The environment wins over the config file, as it does for the consul CLI, with one
 * exception: a token file (CONSUL_HTTP_TOKEN_FILE, else consul.tokenFile) wins over a token
 * in the environment (CONSUL_HTTP_TOKEN), which any process of the same user can read from
 * /proc. The source of the token is logged (to `log`, default the CLI's logger), the token never.
 */
export function resolveConsulSettings(section: ConsulConfigSection, env: NodeJS.ProcessEnv = process.env, log: Logger | undefined = processLogger()): ConsulSettings {
  let address = env.CONSUL_HTTP_ADDR ?? section.address;
  if (!/^https?:\/\//.test(address)) address = `${env.CONSUL_HTTP_SSL === "true" ? "https" : "http"}://${address}`;
  const settings: ConsulSettings = { address: address.replace(/\/+$/, ""), tokenSource: "none" };
  const fileSetting = env.CONSUL_HTTP_TOKEN_FILE ? "CONSUL_HTTP_TOKEN_FILE" : section.tokenFile ? "consul.tokenFile" : undefined;
  const tokenFile = env.CONSUL_HTTP_TOKEN_FILE || section.tokenFile;
  if (fileSetting && tokenFile) {
    settings.token = readTokenFile(tokenFile, fileSetting);
    settings.tokenSource = fileSetting;
  } else if (env.CONSUL_HTTP_TOKEN) {
    settings.token = env.CONSUL_HTTP_TOKEN;
    settings.tokenSource = "CONSUL_HTTP_TOKEN";
  }
  const ignored = settings.tokenSource !== "CONSUL_HTTP_TOKEN" && settings.tokenSource !== "none" && env.CONSUL_HTTP_TOKEN ? ["CONSUL_HTTP_TOKEN"] : [];
  log?.info(
    { step: "consul", tokenSource: settings.tokenSource, ...(tokenFile && fileSetting ? { tokenFile } : {}), ...(ignored.length ? { ignored } : {}) },
    settings.tokenSource === "none" ? "no Consul ACL token configured" : `Consul ACL token from ${settings.tokenSource}${ignored.length ? " (CONSUL_HTTP_TOKEN is set and ignored: the token file wins)" : ""}`,
  );
  const pick = (envName: string, value: string | undefined) => env[envName] ?? value;
  const caFile = pick("CONSUL_CACERT", section.caFile);
  const certFile = pick("CONSUL_CLIENT_CERT", section.certFile);
  const keyFile = pick("CONSUL_CLIENT_KEY", section.keyFile);
  const tlsServerName = pick("CONSUL_TLS_SERVER_NAME", section.tlsServerName);
  if (caFile) settings.caFile = caFile;
  if (certFile) settings.certFile = certFile;
  if (keyFile) settings.keyFile = keyFile;
  if (tlsServerName) settings.tlsServerName = tlsServerName;
  return settings;
}

/**
 * One keep-alive HTTP(S) agent and token shared by the raw client (sessions, KV locks,
 * blocking reads) and the `consul` npm client (agent, health and status endpoints).
 */
export class ConsulConnection {
  readonly url: URL;
  readonly token: string | undefined;
  readonly agent: http.Agent | https.Agent;
  /** The npm client, for the endpoints it models fully. */
  readonly client: Consul;

  constructor(readonly settings: ConsulSettings) {
    try {
      this.url = new URL(settings.address);
    } catch {
      throw new ExitError(`consul.address "${settings.address}" is not a URL`, EXIT.config);
    }
    this.token = settings.token;
    const secure = this.url.protocol === "https:";
    this.agent = secure
      ? new https.Agent({
          keepAlive: true,
          ...(settings.caFile ? { ca: readSecretFile(settings.caFile, "Consul CA file") } : {}),
          ...(settings.certFile ? { cert: readSecretFile(settings.certFile, "Consul client certificate") } : {}),
          ...(settings.keyFile ? { key: readSecretFile(settings.keyFile, "Consul client key") } : {}),
          ...(settings.tlsServerName ? { servername: settings.tlsServerName } : {}),
        })
      : new http.Agent({ keepAlive: true });
    this.client = new Consul({
      host: this.url.hostname,
      port: Number(this.url.port || (secure ? 443 : 80)),
      secure,
      agent: this.agent,
      defaults: this.token ? { token: this.token } : {},
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
