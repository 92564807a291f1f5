import { isIPv4 } from "node:net";
import { z } from "zod";
import { parseCidr } from "./cidr.js";
import { parseDuration } from "./duration.js";

/**
 * The configuration schema. YAML keys are camelCase; durations are strings with a unit
 * ("3s", "500ms"). Every object is strict: an unknown key is an error, never ignored.
 * Each field's `.describe()` text is the configuration reference (docs/configuration.md is
 * generated from it by scripts/gen-config-doc.ts).
 */

/** A duration string converted to milliseconds, bounded. */
export function duration(minMs: number, maxMs: number) {
  return z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (typeof ms !== "number") {
      ctx.addIssue({ code: "custom", message: ms.error });
      return z.NEVER;
    }
    if (ms < minMs || ms > maxMs) {
      ctx.addIssue({ code: "custom", message: `"${text}" is out of range [${minMs} ms, ${maxMs} ms]` });
      return z.NEVER;
    }
    return ms;
  });
}

const cidr = z.string().transform((text, ctx) => {
  const parsed = parseCidr(text);
  if ("error" in parsed) {
    ctx.addIssue({ code: "custom", message: `invalid CIDR: ${parsed.error}` });
    return z.NEVER;
  }
  return parsed.text;
});

/** Names that become Consul KV path segments and service tags: keep them boring. */
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const name = (what: string) =>
  z.string().regex(NAME, `${what} must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit`);

// ---------------------------------------------------------------- health checks

const checkTiming = {
  every: duration(100, 3_600_000).prefault("1s").describe("How often the check runs."),
  timeout: duration(50, 600_000).prefault("900ms").describe("A run slower than this fails."),
  rise: z.number().int().min(1).max(100).default(2).describe("Consecutive passes before the check counts as passing."),
  fall: z.number().int().min(1).max(100).default(3).describe("Consecutive failures before the check counts as failing."),
};

/** One host, or a list of which any one answering passes the check (no single target to depend on). */
const hostOrAnyOf = (what: string) =>
  z
    .union([z.string().min(1), z.array(z.string().min(1)).min(1, "list at least one host")])
    .describe(`${what} A list (\`[1.1.1.1, 8.8.8.8, 9.9.9.9]\`) is tried in parallel: the check passes when any one of them answers within the timeout.`);

const pingCheck = z.strictObject({
  type: z.literal("ping"),
  host: hostOrAnyOf("Address or name to send ICMP echo requests to."),
  ...checkTiming,
});

const tcpCheck = z.strictObject({
  type: z.literal("tcp"),
  host: hostOrAnyOf("Host to connect to."),
  port: z.number().int().min(1).max(65535).describe("TCP port."),
  send: z.string().optional().describe("Text written after the connection opens."),
  expect: z.string().optional().describe("Text the reply must contain."),
  tls: z.boolean().default(false).describe("Wrap the connection in TLS."),
  ...checkTiming,
});

const httpCheck = z.strictObject({
  type: z.literal("http"),
  url: z.url({ protocol: /^https?$/ }).describe("http:// or https:// URL to GET."),
  statusMin: z.number().int().min(100).max(599).default(200).describe("Lowest passing HTTP status."),
  statusMax: z.number().int().min(100).max(599).default(399).describe("Highest passing HTTP status."),
  bodyMatch: z.string().optional().describe("Regular expression the response body must match."),
  headers: z.record(z.string(), z.string()).default({}).describe("Request headers."),
  ...checkTiming,
});

const commandCheck = z.strictObject({
  type: z.literal("command"),
  command: z.array(z.string().min(1)).min(1).describe("Program and arguments (no shell); exit code 0 passes."),
  ...checkTiming,
});

const natCheck = z.strictObject({
  type: z.literal("nat"),
  ipv6: z.boolean().default(false).describe("Also require net.ipv6.conf.all.forwarding = 1."),
  requireMasquerade: z.boolean().default(true).describe("Require an iptables/nftables MASQUERADE rule."),
  ...checkTiming,
});

export const checkSchema = z.discriminatedUnion("type", [pingCheck, tcpCheck, httpCheck, commandCheck, natCheck]);

// ---------------------------------------------------------------- route tables

/** How a route's table is found. Always limited to the instance's own VPC. */
export type TableSelector =
  | { id: string }
  | { tags: Record<string, string> }
  | { subnet: string }
  | { main: true }
  | { and: TableSelector[] }
  | { or: TableSelector[] }
  | { not: TableSelector };

export const tableSelectorSchema: z.ZodType<TableSelector> = z.lazy(() =>
  z.union([
    z.strictObject({ id: z.string().regex(/^rtb-[0-9a-f]+$/, "a route table id looks like rtb-0123abcd") }),
    z.strictObject({ tags: z.record(z.string(), z.string()).refine((t) => Object.keys(t).length > 0, "tags must name at least one tag") }),
    z.strictObject({ subnet: z.string().regex(/^subnet-[0-9a-f]+$/, "a subnet id looks like subnet-0123abcd") }),
    z.strictObject({ main: z.literal(true) }),
    z.strictObject({ and: z.array(tableSelectorSchema).min(1) }),
    z.strictObject({ or: z.array(tableSelectorSchema).min(1) }),
    z.strictObject({ not: tableSelectorSchema }),
  ]),
);

const routeSchema = z.strictObject({
  name: name("route name").describe("Stable name: the Consul key routeleader/<cluster>/routes/<name>."),
  table: tableSelectorSchema.describe("Which route table(s): {id}, {tags}, {subnet}, {main: true}, {and|or: [...]}, {not: ...}."),
  destination: cidr.describe("Destination CIDR, IPv4 (0.0.0.0/0) or IPv6 (::/0)."),
  target: z.enum(["instance", "eni"]).default("instance").describe("Point the route at this instance's id or its primary ENI."),
  checks: z.array(z.string()).default([]).describe("Names of checks (under `checks`) that must pass for this node to hold the route."),
  onRelease: z.enum(["keep", "delete"]).default("keep").describe("What happens to the route when the holder releases it: keep it (NAT) or delete it (anycast)."),
  preferredAz: z.string().default("auto").describe("'auto' (AZ of the table's associated subnets), 'none', or an AZ name."),
  eip: z
    .string()
    .regex(/^eipalloc-[0-9a-f]{8,17}$/, "not an Elastic IP allocation id (eipalloc-…)")
    .optional()
    .describe("Elastic IP allocation id the holder associates with its primary ENI when it takes the route (a stable egress IP); fenced like route writes. One EIP per route."),
  sameAz: z
    .strictObject({
      subnet: z.string().regex(/^subnet-[0-9a-f]+$/, "a subnet id looks like subnet-0123abcd").describe("The subnet of the NAT pair (one AZ)."),
      privateIp: z.string().refine((v) => isIPv4(v), "not an IPv4 address").describe("A free private IPv4 address of that subnet, reserved for the route."),
    })
    .optional()
    .describe(
      "Connection-preserving failover in one AZ: a holder in `subnet` assigns `privateIp` to its primary ENI as a secondary address (AssignPrivateIpAddresses with AllowReassignment, fenced like route writes) and associates the route's `eip` with that address. The NATs SNAT to it and conntrackd syncs their connection state. A holder in another subnet writes the route and takes the EIP onto its primary address: the public IP is kept, open connections are not.",
    ),
  fallback: z
    .union([
      z.strictObject({ natGateway: z.string().regex(/^nat-[0-9a-f]{8,17}$/, "not a NAT gateway id (nat-…)") }),
      z.strictObject({ networkInterface: z.string().regex(/^eni-[0-9a-f]{8,17}$/, "not a network interface id (eni-…)") }),
    ])
    .optional()
    .describe("Where the route points when no healthy node has held it for fallbackAfter: {natGateway: nat-…} or {networkInterface: eni-…}. Written by one agent at a time under the route's Consul lock; a healthy node takes the route back."),
  fallbackAfter: duration(1_000, 3_600_000)
    .optional()
    .describe("How long the route may be without a healthy holder before it points at its fallback (default: the failover bound + 5s; never shorter than the failover bound: max(election.livenessTtl, election.sessionTtl) + lockDelay + aws.writeTimeout)."),
});

// ---------------------------------------------------------------- the whole file

export const configSchema = z
  .strictObject({
    cluster: name("cluster").describe("Cluster name; the Consul KV prefix is routeleader/<cluster>/."),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, "not an AWS region name").optional().describe("AWS region of the EC2 and Auto Scaling calls; default: AWS_REGION, else the instance's region from instance metadata."),
    consul: z
      .strictObject({
        address: z.string().default("http://127.0.0.1:8500").describe("Local Consul agent HTTP address; CONSUL_HTTP_ADDR overrides."),
        tokenFile: z.string().optional().describe("File holding the ACL token; CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE also work."),
        caFile: z.string().optional().describe("CA bundle for HTTPS to Consul; CONSUL_CACERT."),
        certFile: z.string().optional().describe("Client certificate; CONSUL_CLIENT_CERT."),
        keyFile: z.string().optional().describe("Client key; CONSUL_CLIENT_KEY."),
        tlsServerName: z.string().optional().describe("Server name to verify; CONSUL_TLS_SERVER_NAME."),
        serviceName: name("consul.serviceName").default("routeleader").describe("Service name registered in Consul."),
      })
      .prefault({}),
    imds: z
      .strictObject({
        endpoint: z.string().optional().describe("IMDS endpoint; this setting wins over AWS_EC2_METADATA_SERVICE_ENDPOINT, which is used when it is unset; default http://169.254.169.254."),
        timeout: duration(100, 30_000).prefault("1s").describe("Per-request timeout."),
      })
      .prefault({}),
    aws: z
      .strictObject({
        endpoint: z.string().optional().describe("EC2/Auto Scaling endpoint override (emulators); AWS_ENDPOINT_URL also works."),
        writeTimeout: duration(200, 30_000).optional().describe("Hard timeout of one route write, all attempts included (default 700ms; fast: 400ms)."),
        writeAttempts: z.number().int().min(1).max(3).default(2).describe("SDK attempts per route write (retries are the late writes to fear)."),
        sourceDestRefresh: duration(1_000, 3_600_000).prefault("60s").describe("How often the nat check re-reads this instance's source/dest check state (ec2:DescribeInstances)."),
        sourceDestMaxStale: duration(10_000, 86_400_000).prefault("10m").describe("How long the nat check keeps the last good source/dest check state while EC2 reads fail (throttled, 5xx, unreachable); past it the state is unknown and the check fails."),
      })
      .prefault({}),
    election: z
      .strictObject({
        profile: z.enum(["default", "fast"]).default("default").describe("'fast' lowers the lockDelay, writeTimeout, fenceMargin and peer heartbeat defaults (more false failovers on a noisy network)."),
        lockDelay: duration(0, 60_000).optional().describe("Consul session LockDelay (default 1200ms; fast: 650ms). Must be ≥ aws.writeTimeout + fenceMargin."),
        sessionTtl: duration(10_000, 3_600_000).prefault("10s").describe("Consul session TTL (Consul's minimum is 10s)."),
        livenessTtl: duration(1_000, 60_000).prefault("3s").describe("TTL of the node's liveness check, passed every livenessTtl/3."),
        nodeChecks: z.array(z.string()).default(["serfHealth"]).describe("Node checks bound to every session ([] to detach serfHealth)."),
        watchWait: duration(1_000, 300_000).prefault("5s").describe("Blocking-query wait on the routes prefix."),
        fenceMargin: duration(0, 10_000).optional().describe("Safety margin in the lease deadline and the lockDelay rule (default 500ms; fast: 250ms)."),
      })
      .prefault({}),
    peers: z
      .strictObject({
        enabled: z.boolean().default(true).describe("Heartbeat the other members directly (UDP on the private address); when a majority of all members agrees a holder is silent, one of them destroys its Consul session, so the lock-delay starts without waiting for gossip."),
        port: z.number().int().min(1).max(65_535).default(9732).describe("UDP port of the peer heartbeats (the security group must allow it between members)."),
        address: z.string().optional().describe("Address the heartbeats are bound to and advertised on (service meta 'peer'); default: the instance's private IP."),
        interval: duration(20, 10_000).optional().describe("Heartbeat interval (default 200ms; fast: 100ms)."),
        misses: z.number().int().min(2).max(50).optional().describe("Heartbeats missed in a row before a peer counts as silent (default 4; fast: 3)."),
      })
      .prefault({}),
    discovery: z
      .strictObject({
        enabled: z.boolean().default(true).describe("Discover peers through EC2 and join them in Consul (off when Consul's own retry_join does it)."),
        tags: z.record(z.string(), z.string()).optional().describe("EC2 tag filters for peers; default: this instance's aws:autoscaling:groupName."),
        interval: duration(1_000, 3_600_000).prefault("30s").describe("How often peers are discovered and joined."),
      })
      .prefault({}),
    checks: z.record(name("check name"), checkSchema).default({}).describe("Named health checks, referenced by routes."),
    routes: z.array(routeSchema).min(1, "at least one route is required").describe("Managed routes."),
    reconcileInterval: duration(1_000, 3_600_000).prefault("30s").describe("How often the holder re-reads its tables, re-resolves the table selectors (a table that starts matching is claimed, one that stops matching is left as it is) and repairs drift."),
    sourceDestCheck: z.enum(["fix", "verify", "ignore"]).default("fix").describe("'fix' disables source/dest check on start; 'verify' refuses to claim while it is on."),
    policy: z
      .strictObject({
        standbyDelay: duration(0, 3_600_000).prefault("10s").describe("How long a node outside the preferred AZ waits before contending when preferred nodes look healthy."),
        failbackAfter: duration(0, 3_600_000).prefault("30s").describe("A preferred-AZ node healthy this long gets the route back."),
        holdDown: duration(0, 3_600_000).prefault("60s").describe("Minimum time between two automatic failbacks of one route (the last one's time is kept in Consul); an operator handover, a drain or a failing check is never held down."),
      })
      .prefault({}),
    lifecycle: z
      .strictObject({
        watch: z.boolean().default(true).describe("Watch IMDS autoscaling/target-lifecycle-state and spot interruption notices; drain on termination."),
        pollInterval: duration(500, 60_000).prefault("5s").describe("How often instance metadata is polled for a termination."),
        hookName: z.string().optional().describe("Termination lifecycle hook to complete (CONTINUE) after draining."),
        autoScalingGroup: z.string().optional().describe("Group of that hook; default: this instance's aws:autoscaling:groupName tag."),
      })
      .prefault({}),
    hooks: z
      .strictObject({
        onAcquire: z.array(z.string().min(1)).optional().describe("Command run after this node acquires a route."),
        onRelease: z.array(z.string().min(1)).optional().describe("Command run after this node releases or loses a route."),
        timeout: duration(100, 600_000).prefault("10s").describe("A hook still running after this is killed."),
      })
      .prefault({}),
    http: z
      .strictObject({
        listen: z.string().default("127.0.0.1:9731").describe("host:port of /metrics, /status and /healthz ('' to disable)."),
      })
      .prefault({}),
    observe: z
      .strictObject({
        cloudwatch: z
          .strictObject({
            emf: z.boolean().default(false).describe("Write CloudWatch metrics in embedded metric format (EMF): one JSON line per event and a heartbeat every minute. Off by default; the Prometheus endpoint stays either way."),
            namespace: z
              .string()
              .min(1)
              .max(255)
              .refine((ns) => !ns.startsWith("AWS/"), "a custom namespace must not start with AWS/")
              .default("routeleader")
              .describe("CloudWatch namespace of the metrics (the stack's alarms read MetricsNamespace, default routeleader)."),
            output: z
              .string()
              .refine((o) => o === "stdout" || o.startsWith("/"), "'stdout' or an absolute file path")
              .default("stdout")
              .describe("'stdout': the EMF lines go to the agent's log stream (the journal) between its log lines; an absolute path: appended to that file instead (for a log shipper such as the CloudWatch agent tailing it)."),
          })
          .prefault({}),
        eventbridge: z
          .strictObject({
            enabled: z.boolean().default(false).describe("Send a 'routeleader route moved' event (source routeleader.agent) to EventBridge every time this agent takes a route, for itself or for the route's fallback. Off by default."),
            bus: z.string().min(1).default("default").describe("Event bus name or ARN of the route-moved events."),
          })
          .prefault({}),
      })
      .prefault({}),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).default("info").describe("pino log level."),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Map<string, number>();
    cfg.routes.forEach((route, i) => {
      const prior = seen.get(route.name);
      if (prior !== undefined) {
        ctx.addIssue({ code: "custom", path: ["routes", i, "name"], message: `duplicate route name "${route.name}" (also routes[${prior}])` });
      }
      seen.set(route.name, i);
      if (route.eip) {
        const other = cfg.routes.findIndex((r, k) => k < i && r.eip === route.eip);
        // Two routes held by different nodes would pull one address back and forth.
        if (other >= 0) ctx.addIssue({ code: "custom", path: ["routes", i, "eip"], message: `Elastic IP ${route.eip} is already named by routes[${other}] ("${cfg.routes[other]?.name}"): two routes may be held by different nodes and would move it back and forth` });
      }
      if (route.sameAz) {
        if (route.destination.includes(":")) ctx.addIssue({ code: "custom", path: ["routes", i, "sameAz"], message: `same-AZ mode SNATs IPv4 to a secondary private IP; ${route.destination} is an IPv6 route` });
        const other = cfg.routes.findIndex((r, k) => k < i && r.sameAz?.privateIp === route.sameAz?.privateIp);
        if (other >= 0) ctx.addIssue({ code: "custom", path: ["routes", i, "sameAz", "privateIp"], message: `private IP ${route.sameAz.privateIp} is already named by routes[${other}] ("${cfg.routes[other]?.name}"): two holders would take it from each other` });
      }
      route.checks.forEach((check, j) => {
        if (!(check in cfg.checks)) {
          const known = Object.keys(cfg.checks);
          ctx.addIssue({
            code: "custom",
            path: ["routes", i, "checks", j],
            message: `unknown check "${check}" (defined: ${known.length ? known.join(", ") : "none"})`,
          });
        }
      });
    });
  });

export type RawConfig = z.output<typeof configSchema>;
export type CheckConfig = z.output<typeof checkSchema>;
export type RouteConfig = RawConfig["routes"][number];
