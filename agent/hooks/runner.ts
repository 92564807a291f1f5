import type { Clock } from "../clock.js";
import type { ElectionListener } from "../election/events.js";
import type { Logger } from "../observe/log.js";
import { hookInvocation, type HookInvocation } from "./environment.js";
import { spawnBounded, type BoundedChild } from "./spawn-bounded.js";
import { processMetrics } from "../observe/metrics.js";

export interface HookRunnerOptions {
  /** `config.hooks`: argv arrays (no shell) and the timeout in ms. */
  hooks: { onAcquire?: readonly string[]; onRelease?: readonly string[]; timeout: number };
  /** `config.routes`, for ROUTELEADER_DESTINATION. */
  routes: readonly { name: string; destination: string }[];
  /** This node's instance id: the previous holder of a route it releases or loses. */
  instanceId: string;
  logger: Logger;
  clock: Clock;
  /** The environment hooks inherit; default process.env. */
  baseEnv?: NodeJS.ProcessEnv;
}

export interface HookRunner {
  /** Subscribe this to the election. Returns at once: hooks run in the background. */
  readonly listener: ElectionListener;
  /** Hooks still running. */
  readonly running: number;
  /**
   * Waits for running hooks, at most `maxWaitMs` (default: the hook timeout), then kills
   * whatever is left. Call at shutdown, after the routes have been released.
   */
  drain(maxWaitMs?: number): Promise<void>;
}

/**
 * Runs `hooks.onAcquire` when this node acquires a route and `hooks.onRelease` when it
 * releases or loses one, like keepalived's notify scripts. A hook never delays a release and
 * never blocks the agent: the listener only starts the process. Each hook is killed (its
 * whole process group) at `hooks.timeout`; every outcome is logged as one line. Hooks of
 * successive transitions may overlap: a hook must not assume it is the only one running.
 */
export function createHookRunner(options: HookRunnerOptions): HookRunner {
  const { hooks, logger, clock } = options;
  const destinations = new Map(options.routes.map((r) => [r.name, r.destination]));
  const running = new Set<{ child: BoundedChild; done: Promise<void> }>();

  const start = (invocation: HookInvocation) => {
    const argv = hooks[invocation.hook];
    if (!argv?.length) return;
    const startedAt = clock.now();
    const child = spawnBounded(argv, { ...(options.baseEnv ?? process.env), ...invocation.env }, hooks.timeout);
    const entry = {
      child,
      done: child.done.then((result) => {
        running.delete(entry);
        const ok = result.exitCode === 0 && !result.killed && !result.spawnError;
        const fields = {
          hook: invocation.hook,
          route: invocation.route,
          event: invocation.env.ROUTELEADER_EVENT,
          pid: child.pid,
          exitCode: result.exitCode,
          signal: result.signal,
          killed: result.killed,
          ms: Math.round(clock.now() - startedAt),
          ...(result.spawnError ? { error: result.spawnError } : {}),
          ...(!ok && result.stderrTail ? { stderr: result.stderrTail } : {}),
        };
        const message = result.killed ? `hook killed after ${hooks.timeout} ms` : result.spawnError ? "hook could not start" : ok ? "hook finished" : "hook failed";
        if (ok) logger.info(fields, message);
        else {
          logger.warn(fields, message);
          processMetrics.recordError("hooks");
        }
      }),
    };
    running.add(entry);
  };

  return {
    listener: (event) => {
      const invocation = hookInvocation(event, destinations, options.instanceId);
      if (invocation) start(invocation);
    },
    get running() {
      return running.size;
    },
    async drain(maxWaitMs = hooks.timeout) {
      if (running.size === 0) return;
      const pending = [...running];
      const deadline = new AbortController();
      const waited = clock.sleep(maxWaitMs, deadline.signal).then(
        () => "timeout" as const,
        () => "done" as const,
      );
      const outcome = await Promise.race([Promise.all(pending.map((p) => p.done)).then(() => "done" as const), waited]);
      deadline.abort();
      if (outcome === "timeout") {
        for (const p of pending) p.child.kill();
        await Promise.all(pending.map((p) => p.done));
      }
    },
  };
}
