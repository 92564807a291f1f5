import type { Config, RouteConfig } from "../config/index.js";
import { fallbackAfterMs } from "../config/fallback.js";
import type { ElectionPolicy } from "../election/deps.js";
import { fallbackMayTake, fallbackShouldYield, type FallbackView } from "../election/fallback.js";
import type { Logger } from "../observe/log.js";

/** What the fallback policy reads: who Consul shows healthy for a route (undefined: not known yet). */
export interface CandidateHealth {
  healthyFor(routeName: string): string[] | undefined;
  /** Called after every new judgement of peers' health. */
  onChange?(listener: () => void): void;
}

/**
 * The fallback writer's election policy: contend for a route's key only once it has been free
 * for fallbackAfter with no healthy candidate anywhere, and hand it back (release, no
 * lock-delay) as soon as Consul shows one. Logs each change of verdict once.
 */
export class FallbackPolicy implements ElectionPolicy {
  private readonly verdicts = new Map<string, string>();

  constructor(
    private config: Config,
    private readonly health: CandidateHealth,
    private readonly log: Logger,
  ) {}

  reconfigure(config: Config): void {
    this.config = config;
  }

  private view(route: RouteConfig, now: number, freeSince?: number): FallbackView {
    const healthy = this.health.healthyFor(route.name);
    return { now, fallbackAfterMs: fallbackAfterMs(route, this.config), healthKnown: healthy !== undefined, healthyCandidates: healthy ?? [], ...(freeSince !== undefined ? { freeSince } : {}) };
  }

  mayContend(route: RouteConfig, ctx: { now: number; freeSince?: number }): boolean {
    const verdict = fallbackMayTake(this.view(route, ctx.now, ctx.freeSince));
    if (verdict.take) this.note(route.name, "take", `taking the route for its fallback (${verdict.reason})`);
    return verdict.take;
  }

  /** A free key becomes the fallback's to take when fallbackAfter ends: the election wakes then. */
  nextChangeAt(route: RouteConfig, ctx: { now: number; freeSince?: number }): number | undefined {
    if (ctx.freeSince === undefined) return undefined;
    const at = ctx.freeSince + fallbackAfterMs(route, this.config);
    return at > ctx.now ? at : undefined;
  }

  handOver(route: RouteConfig, now: number): "failback" | undefined {
    const verdict = fallbackShouldYield(this.view(route, now));
    this.note(route.name, verdict.yield ? "yield" : "keep", verdict.yield ? `handing the route back from its fallback (${verdict.reason})` : undefined);
    return verdict.yield ? "failback" : undefined;
  }

  private note(route: string, kind: string, line: string | undefined): void {
    if (this.verdicts.get(route) === kind) return;
    this.verdicts.set(route, kind);
    if (line) this.log.info({ route, role: "fallback", reason: line }, `${route}: ${line}`);
  }
}
