import type { Logger } from "../observe/log.js";
import type { ElectionEvent, ElectionListener } from "./events.js";
import type { Outcome } from "./results.js";

/** A Consul answer that never came: the loop goes on, and the log says what it will do about it. */
export function logUncertainOutcome(log: Logger, route: string, outcome: Outcome): void {
  if (outcome.kind === "release" && outcome.result === "unknown") log.warn({ route, err: outcome.detail }, `${route}: release not confirmed; retrying until Consul answers`);
  if (outcome.kind === "acquire" && outcome.result === "unknown") log.warn({ route, err: outcome.detail }, `${route}: acquire outcome unknown; the next read of the key decides`);
}

/** Logs an election event and tells every listener (a listener that throws is logged, not fatal). */
export function emitEvent(log: Logger, listeners: readonly ElectionListener[], event: ElectionEvent): void {
  logEvent(log, event);
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (err) {
      log.error({ err: (err as Error).message, event: event.type }, "election listener failed");
    }
  }
}

/** One log line per election transition, with the route, the reason and the time it took. */
export function logEvent(log: Logger, event: ElectionEvent): void {
  switch (event.type) {
    case "acquired":
      log.info({ route: event.route, event: "acquired", lockIndex: event.lockIndex, waitedMs: event.waitedMs, previousHolder: event.previousHolder ?? null }, `acquired ${event.route}`);
      break;
    case "released":
      log.info({ route: event.route, event: "released", reason: event.reason, heldMs: event.heldMs }, `released ${event.route} (${event.reason})`);
      break;
    case "lost":
      log.warn({ route: event.route, event: "lost", reason: event.reason, newHolder: event.newHolder }, `lost ${event.route} (${event.reason}); writes stopped`);
      break;
    case "leaderChanged":
      log.info({ route: event.route, event: "leaderChanged", holder: event.holder?.instanceId ?? null, az: event.holder?.az }, `${event.route} holder: ${event.holder?.instanceId ?? "none"}`);
      break;
    case "routeWritten":
      log.info({ route: event.route, event: "routeWritten", action: event.action, tables: event.tables, ms: event.ms }, `${event.route}: ${event.action}`);
      break;
    case "writeRefused":
      log.warn({ route: event.route, event: "writeRefused", reason: event.reason }, `${event.route}: write refused (${event.reason})`);
      break;
    case "writeFailed":
      log.warn({ route: event.route, event: "writeFailed", fatal: event.fatal, reason: event.reason, retryInMs: event.retryInMs }, `${event.route}: route write failed (${event.reason}); retry in ${event.retryInMs} ms`);
      break;
    case "blocked":
      log.error({ route: event.route, event: "blocked", reason: event.reason, forMs: event.forMs }, `${event.route}: giving the route up for ${Math.round(event.forMs / 1000)} s (${event.reason})`);
      break;
  }
}
