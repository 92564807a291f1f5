import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import Consul from "consul";
import { EXIT, ExitError } from "../exit-codes.js";

/** Where and how to reach the local Consul agent. */
export interface ConsulSettings {
  address: string;
  token?: string;
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

/**
 * Resolves settings from the config section and the usual Consul environment variables
 * (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
 * CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL).
 * The environment wins, as it does for the consul CLI.
 */
export function resolveConsulSettings(section: ConsulConfigSection, env: NodeJS.ProcessEnv = process.env): ConsulSettings {
  let address = env.CONSUL_HTTP_ADDR ?? section.address;
  if (!/^https?:\/\//.test(address)) address = `${env.CONSUL_HTTP_SSL === "true" ? "https" : "http"}://${address}`;
  const tokenFile = env.CONSUL_HTTP_TOKEN_FILE ?? section.tokenFile;
  const token = env.CONSUL_HTTP_TOKEN || (tokenFile ? readSecretFile(tokenFile, "Consul token file") : undefined);
  const pick = (envName: string, value: string | undefined) => env[envName] ?? value;
  const settings: ConsulSettings = { address: address.replace(/\/+$/, "") };
  if (token) settings.token = token;
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
