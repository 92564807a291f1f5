import type { ElectionEvent } from "../election/events.js";

export type HookName = "onAcquire" | "onRelease";

/** What one transition asks of the hooks: which hook, and the environment it runs with. */
export interface HookInvocation {
  hook: HookName;
  route: string;
  env: Record<string, string>;
}

/**
 * Maps an election event to a hook invocation, or undefined for events no hook follows.
 * `acquired` runs onAcquire; `released` and `lost` run onRelease. The previous holder of a
 * released or lost route is this node.
 */
export function hookInvocation(event: ElectionEvent, destinations: ReadonlyMap<string, string>, instanceId: string): HookInvocation | undefined {
  const common = { ROUTELEADER_ROUTE: event.route, ROUTELEADER_EVENT: event.type, ROUTELEADER_DESTINATION: destinations.get(event.route) ?? "" };
  switch (event.type) {
    case "acquired":
      return {
        hook: "onAcquire",
        route: event.route,
        env: { ...common, ROUTELEADER_ROLE: "leader", ROUTELEADER_REASON: "acquired", ROUTELEADER_PREVIOUS_HOLDER: event.previousHolder ?? "" },
      };
    case "released":
      return {
        hook: "onRelease",
        route: event.route,
        env: { ...common, ROUTELEADER_ROLE: "follower", ROUTELEADER_REASON: event.reason, ROUTELEADER_PREVIOUS_HOLDER: instanceId },
      };
    case "lost":
      return {
        hook: "onRelease",
        route: event.route,
        env: {
          ...common,
          ROUTELEADER_ROLE: "follower",
          ROUTELEADER_REASON: event.reason,
          ROUTELEADER_PREVIOUS_HOLDER: instanceId,
          ROUTELEADER_NEW_HOLDER: event.newHolder ?? "",
        },
      };
    default:
      return undefined;
  }
}
