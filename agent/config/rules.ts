import { isIP } from "node:net";
import { parseListenAddress } from "../observe/listen-address.js";
import { failoverBoundMs } from "./fallback.js";
import type { RawConfig } from "./schema.js";

/**
 * Rules a per-field schema cannot state: between fields, or about what a value will do at run
 * time. An error is a value that would fail or misbehave once the agent runs (a regular
 * expression that does not compile, a status range upside down, an address nothing can
 * connect to); a warning is a legal value with a known risk (an HTTP endpoint off loopback).
 * `routeleader validate` prints both; the agent refuses to start on an error and logs the
 * warnings. Reject, never adjust.
 */

export interface RuleFinding {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

export interface RuleFindings {
  errors: RuleFinding[];
  warnings: RuleFinding[];
}

/** The values the rules need after profile defaults are resolved. */
export type ResolvedForRules = RawConfig & { aws: { writeTimeout: number }; election: { lockDelay: number; fenceMargin: number }; peers: { interval: number; misses: number } };

/** A DNS name as resolvers take it: dot-separated labels of letters, digits and '-'. */
const HOSTNAME = /^(?=.{1,253}\.?$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;
const AZ = /^[a-z]{2}(-[a-z]+)+-\d[a-z]$/;

/** Why `host` is not something to ping or connect to, or undefined when it is. */
export function hostProblem(host: string): string | undefined {
  if (isIP(host)) return undefined;
  if (isIP(host.replace(/^\[|\]$/g, "")) === 6) return `"${host}": write an IPv6 address without brackets`;
  if (/^\d+(\.\d+){3}$/.test(host)) return `"${host}" is not an IPv4 address (each part is 0-255)`;
  if (!HOSTNAME.test(host)) return `"${host}" is neither an IP address nor a host name`;
  return undefined;
}

/** Why `text` is not an http(s) endpoint URL, or undefined. `bare` allows host:port (Consul's form). */
export function endpointProblem(text: string, options: { bare?: boolean } = {}): string | undefined {
  const withScheme = options.bare && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? `http://${text}` : text;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return `"${text}" is not a URL${options.bare ? " or host:port" : ""}`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `"${text}": only http:// and https:// are supported`;
  if (!url.hostname) return `"${text}" names no host`;
  if (url.search || url.hash) return `"${text}": no query or fragment allowed`;
  return undefined;
}

/**
 * A duration in the largest unit that states it exactly ("3s", "1h", "1500ms"), so that a
 * message quotes a value the way it is usually written in the config.
 */
function durationText(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || (isIP(h) === 4 && h.startsWith("127."));
}

export function checkRules(cfg: ResolvedForRules): RuleFindings {
  const errors: RuleFinding[] = [];
  const warnings: RuleFinding[] = [];
  const error = (path: PropertyKey[], message: string) => errors.push({ path, message });
  const warn = (path: PropertyKey[], message: string) => warnings.push({ path, message });

  // ------------------------------------------------------------ election timing
  const { lockDelay, fenceMargin, sessionTtl, livenessTtl, nodeChecks } = cfg.election;
  const { writeTimeout } = cfg.aws;
  if (lockDelay < writeTimeout + fenceMargin) {
    error(
      ["election", "lockDelay"],
      `lockDelay (${durationText(lockDelay)}) must be ≥ aws.writeTimeout (${durationText(writeTimeout)}) + election.fenceMargin (${durationText(fenceMargin)}), or a new holder could start while the old holder's last write is in flight`,
    );
  }
  if (livenessTtl >= sessionTtl) {
    error(["election", "livenessTtl"], `livenessTtl (${durationText(livenessTtl)}) must be shorter than sessionTtl (${durationText(sessionTtl)})`);
  }
  // The lease deadline is (last liveness pass + livenessTtl − fenceMargin), and the liveness
  // check passes every livenessTtl/3: a margin of 2/3 of the TTL or more puts the deadline
  // before the next pass, and a holder would refuse every write.
  if (fenceMargin * 3 >= livenessTtl * 2) {
    error(
      ["election", "fenceMargin"],
      `fenceMargin (${durationText(fenceMargin)}) must be below 2/3 of livenessTtl (${durationText(livenessTtl)}): the lease deadline would pass before the next liveness pass (every livenessTtl/3) and the holder could never write`,
    );
  }
  if (!nodeChecks.includes("serfHealth")) {
    warn(
      ["election", "nodeChecks"],
      `without serfHealth a node that dies or is cut off keeps its sessions until its liveness TTL (${durationText(livenessTtl)}) lapses on a server that can still see it; a partitioned node's routes may not move`,
    );
  }
  if (cfg.policy.holdDown === 0) {
    warn(["policy", "holdDown"], "0: a node that flaps between healthy and failing can pull a route back to its AZ on every recovery");
  }
  if (cfg.peers.address !== undefined && !isIP(cfg.peers.address)) error(["peers", "address"], `"${cfg.peers.address}" is not an IP address`);
  const silence = cfg.peers.interval * cfg.peers.misses;
  if (cfg.peers.enabled && silence >= livenessTtl) {
    warn(["peers", "interval"], `peers.interval × peers.misses (${durationText(silence)}) is not shorter than election.livenessTtl (${durationText(livenessTtl)}): the heartbeats find a dead holder no sooner than Consul does`);
  }

  // ------------------------------------------------------------ checks
  const used = new Set(cfg.routes.flatMap((r) => r.checks));
  for (const [name, check] of Object.entries(cfg.checks)) {
    const at = (...rest: PropertyKey[]) => ["checks", name, ...rest];
    if (check.type === "ping" || check.type === "tcp") {
      if (Array.isArray(check.host)) {
        check.host.forEach((host, i) => {
          const p = hostProblem(host);
          if (p) error(at("host", i), p);
          else if (check.host.indexOf(host) < i) error(at("host", i), `"${host}" is listed twice`);
        });
      } else {
        const p = hostProblem(check.host);
        if (p) error(at("host"), p);
      }
    }
    if (check.type === "http") {
      if (check.statusMin > check.statusMax) error(at("statusMin"), `statusMin (${check.statusMin}) is above statusMax (${check.statusMax}): no response could pass`);
      if (check.bodyMatch !== undefined) {
        try {
          new RegExp(check.bodyMatch);
        } catch (err) {
          error(at("bodyMatch"), `not a valid regular expression: ${(err as Error).message}`);
        }
      }
    }
    if (!used.has(name)) warn(at(), `check "${name}" is used by no route: it runs and reports, but decides nothing`);
  }
  cfg.routes.forEach((route, i) => {
    if (route.checks.length === 0) {
      warn(["routes", i, "checks"], `route "${route.name}" names no check: any running node may hold it, whether or not it can forward traffic`);
    }
    if (route.fallbackAfter !== undefined && !route.fallback) warn(["routes", i, "fallbackAfter"], `route "${route.name}" names no fallback: fallbackAfter is unused`);
    const bound = failoverBoundMs(cfg);
    if (route.fallback && route.fallbackAfter !== undefined && route.fallbackAfter < bound) {
      error(
        ["routes", i, "fallbackAfter"],
        `fallbackAfter (${durationText(route.fallbackAfter)}) is shorter than the failover bound (${durationText(bound)} = max(election.livenessTtl, election.sessionTtl) + election.lockDelay + aws.writeTimeout): the route would leave for its fallback while a healthy node may still be taking it over`,
      );
    }
    const az = route.preferredAz;
    if (az !== "auto" && az !== "none") {
      if (!AZ.test(az)) error(["routes", i, "preferredAz"], `"${az}" is neither auto, none nor an availability zone name (like eu-west-1a)`);
      else if (cfg.region && !az.startsWith(cfg.region)) error(["routes", i, "preferredAz"], `${az} is not in region ${cfg.region}`);
    }
  });

  // Same table and destination twice: two locks for one route-table entry.
  const seen = new Map<string, number>();
  cfg.routes.forEach((r, i) => {
    const key = `${JSON.stringify(r.table)} ${r.destination}`;
    const prior = seen.get(key);
    if (prior !== undefined) error(["routes", i], `same table and destination ${r.destination} as routes[${prior}] ("${cfg.routes[prior]?.name}")`);
    seen.set(key, i);
  });

  // ------------------------------------------------------------ endpoints
  const consul = cfg.consul;
  const consulProblem = endpointProblem(consul.address, { bare: true });
  if (consulProblem) error(["consul", "address"], consulProblem);
  else {
    const url = new URL(/^[a-z]+:\/\//i.test(consul.address) ? consul.address : `http://${consul.address}`);
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
      warn(["consul", "address"], `plain http to ${url.hostname}: the ACL token and every lock travel unencrypted; use the local agent (127.0.0.1) or https`);
    }
    if (url.protocol === "http:" && (consul.caFile || consul.certFile || consul.keyFile)) {
      warn(["consul", consul.caFile ? "caFile" : consul.certFile ? "certFile" : "keyFile"], `ignored: consul.address is http, so no TLS is used (CONSUL_HTTP_SSL=true or an https:// address turns it on)`);
    }
  }
  if ((consul.certFile === undefined) !== (consul.keyFile === undefined)) {
    error(["consul", consul.certFile ? "keyFile" : "certFile"], "consul.certFile and consul.keyFile go together: a client certificate needs its key");
  }
  for (const [section, key] of [["imds", "endpoint"], ["aws", "endpoint"]] as const) {
    const value = (cfg[section] as { endpoint?: string }).endpoint;
    if (value === undefined) continue;
    const p = endpointProblem(value);
    if (p) error([section, key], p);
  }
  try {
    const listen = parseListenAddress(cfg.http.listen);
    if (listen && !listen.loopback) {
      warn(["http", "listen"], `${cfg.http.listen} is reachable from other hosts: whoever reaches it reads /status (which node holds which route) and /metrics`);
    }
  } catch (err) {
    error(["http", "listen"], (err as Error).message.replace(/^http\.listen /, ""));
  }

  // ------------------------------------------------------------ lifecycle
  if (cfg.lifecycle.autoScalingGroup !== undefined && cfg.lifecycle.hookName === undefined) {
    warn(["lifecycle", "autoScalingGroup"], "set without lifecycle.hookName: no lifecycle action is completed, so the group name is unused");
  }
  if (cfg.lifecycle.hookName !== undefined && !cfg.lifecycle.watch) {
    warn(["lifecycle", "hookName"], "lifecycle.watch is false: the agent never sees a termination, so it never completes this hook (the instance waits for the hook's timeout)");
  }
  return { errors, warnings };
}
