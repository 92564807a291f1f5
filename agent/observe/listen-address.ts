import { isIP } from "node:net";

/** Where the local HTTP endpoint binds. */
export interface ListenAddress {
  host: string;
  port: number;
  loopback: boolean;
}

/** The endpoint's default: loopback only, so /status and /metrics are not exposed by accident. */
export const DEFAULT_LISTEN_HOST = "127.0.0.1";

function isLoopback(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

/**
 * Parses `http.listen`: "host:port", "[v6]:port", or ":port" (loopback). Returns undefined
 * for '' (disabled). Throws naming the value when it cannot be parsed.
 */
export function parseListenAddress(listen: string): ListenAddress | undefined {
  const text = listen.trim();
  if (text === "") return undefined;
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`http.listen "${listen}" is not host:port (for example 127.0.0.1:9731, [::1]:9731 or :9731)`);
  const host = match[1] ?? (match[2] || DEFAULT_LISTEN_HOST);
  return { host, port, loopback: isLoopback(host) };
}
