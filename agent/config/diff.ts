import { describeValue, type Config } from "./load.js";

/**
 * What a reload changes, and whether the running agent may apply it (pure). A reload is
 * all or nothing: one setting that cannot change while the agent runs refuses the whole file.
 *
 * - `live`: applied at once (routes, checks, policy, hooks, reconcileInterval, logLevel, …).
 * - `nextSession`: bound to a Consul session when it is created (lockDelay, sessionTtl,
 *   nodeChecks): sessions created after the reload use the new value; a session already
 *   alive keeps its own until it ends (it is invalidated, or the agent restarts).
 * - `restart`: refused; the agent keeps its running configuration.
 */
export type ChangeKind = "live" | "nextSession" | "restart";

export interface ConfigChange {
  /** Config path: `cluster`, `election.lockDelay`, `routes[nat-b]`, `checks.egress`. */
  readonly path: string;
  readonly kind: ChangeKind;
  /** One line: what changed and when it takes effect, or why it cannot change now. */
  readonly message: string;
}

export interface ConfigDiff {
  readonly changes: readonly ConfigChange[];
  /** The `restart` changes: non-empty means the reload is refused. */
  readonly refused: readonly ConfigChange[];
  readonly routes: { readonly added: string[]; readonly removed: string[]; readonly changed: string[]; readonly checksChanged: string[] };
  readonly checks: { readonly added: string[]; readonly removed: string[]; readonly changed: string[] };
}

/** Why a setting needs a restart, where the reason is not obvious. */
const RESTART_REASONS: Record<string, string> = {
  cluster: "it names every Consul key and session of this node",
  region: "the AWS clients are made for one region at start",
  consul: "the connection to the local Consul agent is made once at start",
  imds: "identity is read once at start",
  aws: "the sessions alive were created with a lock-delay chosen for the running write timeout (lockDelay ≥ writeTimeout + margin)",
  "election.livenessTtl": "the liveness check every session is bound to is registered with it",
  discovery: "peer discovery is started once with it",
  peers: "the heartbeat socket and timers are set up once at start",
  lifecycle: "the termination watch is started once with it",
  http: "the HTTP endpoint is bound once at start",
  observe: "the metric writers are set up once at start",
};

/**
 * Longest matching prefix wins; a setting not listed needs a restart (a new setting is
 * refused until the code that reads it is made reloadable and listed here).
 */
const KINDS: [string, ChangeKind][] = [
  ["election.profile", "live"],
  ["election.watchWait", "live"],
  ["election.fenceMargin", "live"],
  ["election.lockDelay", "nextSession"],
  ["election.sessionTtl", "nextSession"],
  ["election.nodeChecks", "nextSession"],
  ["reconcileInterval", "live"],
  ["sourceDestCheck", "live"],
  ["policy", "live"],
  ["hooks", "live"],
  ["logLevel", "live"],
  ["checks", "live"],
  ["routes", "live"],
];

export function kindOf(path: string): ChangeKind {
  let best: [string, ChangeKind] | undefined;
  for (const entry of KINDS) {
    const [prefix] = entry;
    if ((path === prefix || path.startsWith(`${prefix}.`)) && (!best || prefix.length > best[0].length)) best = entry;
  }
  return best?.[1] ?? "restart";
}

function reasonOf(path: string): string {
  const key = Object.keys(RESTART_REASONS)
    .filter((p) => path === p || path.startsWith(`${p}.`))
    .sort((a, b) => b.length - a.length)[0];
  return key ? ` (${RESTART_REASONS[key]})` : "";
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const isPlainObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);

/** Leaf paths whose values differ (objects recursed into; lists and scalars compared whole). */
function differingPaths(a: unknown, b: unknown, path: string, out: string[]): void {
  if (same(a, b)) return;
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) differingPaths(a[key], b[key], path ? `${path}.${key}` : key, out);
    return;
  }
  out.push(path);
}

function valueAt(config: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((v, k) => (isPlainObject(v) ? v[k] : undefined), config);
}

function show(value: unknown): string {
  return value === undefined ? "unset" : describeValue(value);
}

export function diffConfig(running: Config, next: Config): ConfigDiff {
  const changes: ConfigChange[] = [];
  const { routes: oldRoutes, checks: oldChecks, source: _a, ...oldRest } = running;
  const { routes: newRoutes, checks: newChecks, source: _b, ...newRest } = next;

  const paths: string[] = [];
  differingPaths(oldRest, newRest, "", paths);
  for (const path of paths) {
    const kind = kindOf(path);
    const from = show(valueAt(oldRest, path));
    const to = show(valueAt(newRest, path));
    const message =
      kind === "restart"
        ? `cannot change while the agent runs (${from} → ${to})${reasonOf(path)}: restart the agent to apply it`
        : kind === "nextSession"
          ? `${from} → ${to}: applies to Consul sessions created from now on; a session alive keeps its value until it ends`
          : `${from} → ${to}: applied now`;
    changes.push({ path, kind, message });
  }

  const checks = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
  for (const name of Object.keys(newChecks)) {
    if (!(name in oldChecks)) checks.added.push(name);
    else if (!same(oldChecks[name], newChecks[name])) checks.changed.push(name);
  }
  for (const name of Object.keys(oldChecks)) if (!(name in newChecks)) checks.removed.push(name);
  for (const name of checks.added) changes.push({ path: `checks.${name}`, kind: "live", message: "added: registered in Consul, not passing until it rises" });
  for (const name of checks.changed) changes.push({ path: `checks.${name}`, kind: "live", message: "changed: re-registered in Consul and re-run with the new definition; its verdict (passing or not) is kept, so a holder keeps its routes" });
  for (const name of checks.removed) changes.push({ path: `checks.${name}`, kind: "live", message: "removed: deregistered once no session of this node is bound to it" });

  const routes = { added: [] as string[], removed: [] as string[], changed: [] as string[], checksChanged: [] as string[] };
  const oldByName = new Map(oldRoutes.map((r) => [r.name, r]));
  const newByName = new Map(newRoutes.map((r) => [r.name, r]));
  for (const route of newRoutes) {
    const before = oldByName.get(route.name);
    if (!before) {
      routes.added.push(route.name);
      changes.push({ path: `routes[${route.name}]`, kind: "live", message: "added: joins the election" });
      continue;
    }
    if (same(before, route)) continue;
    routes.changed.push(route.name);
    const fields = Object.keys({ ...before, ...route }).filter((k) => !same((before as Record<string, unknown>)[k], (route as Record<string, unknown>)[k]));
    const checksChanged = !same([...before.checks].sort(), [...route.checks].sort());
    if (checksChanged) routes.checksChanged.push(route.name);
    const notes = [
      ...(fields.includes("table") ? ["tables re-resolved at the next reconcile; a table that stops matching is left as it is"] : []),
      ...(fields.includes("destination") ? [`the old destination ${before.destination} is left in the tables as it is`] : []),
      ...(checksChanged ? ["its check set changed: a holder releases it (no lock-delay) and contends again under a session of the new set"] : []),
    ];
    changes.push({ path: `routes[${route.name}]`, kind: "live", message: `changed (${fields.join(", ")})${notes.length ? `: ${notes.join("; ")}` : ""}` });
  }
  for (const route of oldRoutes) {
    if (newByName.has(route.name)) continue;
    routes.removed.push(route.name);
    changes.push({ path: `routes[${route.name}]`, kind: "live", message: `removed: released first if held (the route stays in its tables${route.onRelease === "delete" ? ", except that onRelease: delete deletes it" : ""}), then dropped` });
  }
  return { changes, refused: changes.filter((c) => c.kind === "restart"), routes, checks };
}
