import type { Clock } from "../clock.js";
import { SessionNotFoundError, type ConsulApi, type SessionSpec } from "../consul/index.js";
import type { Logger } from "../observe/log.js";

export interface SessionKeeperDeps {
  api: ConsulApi;
  spec: SessionSpec;
  clock: Clock;
  log: Logger;
  /** Called with the new session id, or undefined when the session is gone. */
  onChange: (session: string | undefined, previous: string | undefined) => void;
  /** Consul refused a session because this node's serfHealth is critical (gossip has it failed). */
  onNodeFailed?: (reason: string) => void;
}

/** Creation is retried with back-off between these bounds while a bound check is not ready. */
const CREATE_RETRY_MIN_MS = 200;
const CREATE_RETRY_MAX_MS = 2000;
/** A failed renew is retried this often until the session is known gone. */
const RENEW_RETRY_MS = 1000;

/**
 * Keeps one Consul session alive for one set of checks: creates it (which Consul refuses
 * while a bound check is critical or not yet synced: that is what keeps an unhealthy or
 * booting node from contending), renews it every TTL/3, and recreates it after it is
 * invalidated. Reports every change through `onChange`.
 */
export class SessionKeeper {
  private session: string | undefined;
  private renewedAt = 0;
  /** Why the last creation failed, until one succeeds. */
  private createError: string | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly deps: SessionKeeperDeps) {}

  get current(): string | undefined {
    return this.session;
  }

  /**
   * Why this keeper has no session, when it has none: Consul's answer to the last create
   * (e.g. "Check 'serfHealth' is in critical state" for seconds after a partition heals), or
   * that one is being created. Until then the routes of its check set cannot be taken.
   */
  get noSessionReason(): string | undefined {
    if (this.session) return undefined;
    return this.createError ? `no Consul session: ${this.createError}` : "no Consul session yet: being created";
  }

  /** Monotonic time of the last successful create or renew. */
  get lastRenewAt(): number {
    return this.renewedAt;
  }

  get name(): string {
    return this.deps.spec.name;
  }

  /** The TTL this keeper's sessions are created with (the lease is computed from it, not from a reloaded config). */
  get ttlMs(): number {
    return this.deps.spec.ttlMs;
  }

  /** The service checks its sessions are bound to. */
  get serviceChecks(): readonly string[] {
    return this.deps.spec.serviceChecks;
  }

  /** Asks the loop to retry creation at once (a check just turned passing). */
  nudge(): void {
    this.wake?.();
  }

  /** Marks the session gone (the watch or an acquire saw it invalidated). */
  invalidate(session: string): void {
    if (this.session !== session) return;
    this.deps.log.warn({ step: "session", session, name: this.name }, "session invalidated by Consul (found by an acquire)");
    this.createError = undefined;
    this.set(undefined);
    this.nudge();
  }

  private set(session: string | undefined): void {
    const previous = this.session;
    if (previous === session) return;
    this.session = session;
    this.deps.onChange(session, previous);
  }

  private async pause(ms: number, signal: AbortSignal): Promise<void> {
    const inner = new AbortController();
    const onAbort = () => inner.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.wake = () => inner.abort();
    try {
      await this.deps.clock.sleep(ms, inner.signal);
    } catch {
      // woken early or aborted
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.wake = undefined;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    const { api, spec, clock, log } = this.deps;
    let createDelay = CREATE_RETRY_MIN_MS;
    while (!signal.aborted) {
      if (!this.session) {
        try {
          const started = clock.now();
          const id = await api.createSession(spec, 3000);
          // The lease runs from when the request was sent: Consul may have started the TTL then.
          this.renewedAt = started;
          createDelay = CREATE_RETRY_MIN_MS;
          this.createError = undefined;
          log.info({ step: "session", session: id, name: spec.name, checks: spec.serviceChecks, nodeChecks: spec.nodeChecks, lockDelayMs: spec.lockDelayMs, ms: Math.round(clock.now() - started) }, "session created");
          this.set(id);
        } catch (err) {
          const message = (err as Error).message;
          if (message !== this.createError) log.info({ step: "session", name: spec.name, reason: message }, "session not created yet; retrying");
          if (/serfHealth/.test(message)) this.deps.onNodeFailed?.(message);
          this.createError = message;
          await this.pause(createDelay, signal);
          createDelay = Math.min(CREATE_RETRY_MAX_MS, createDelay * 2);
          continue;
        }
      }
      await this.pause(spec.ttlMs / 3, signal);
      if (signal.aborted || !this.session) continue;
      await this.renew(signal);
    }
  }

  private async renew(signal: AbortSignal): Promise<void> {
    const { api, clock, log } = this.deps;
    const session = this.session as string;
    while (!signal.aborted && this.session === session) {
      try {
        const started = clock.now();
        await api.renewSession(session, 2000);
        // Measured from the request, not the answer: the TTL restarted no earlier than that.
        this.renewedAt = started;
        return;
      } catch (err) {
        if (err instanceof SessionNotFoundError) {
          log.warn({ step: "session", session, name: this.name }, "session invalidated by Consul");
          this.createError = undefined;
          this.set(undefined);
          return;
        }
        log.warn({ step: "session", session, err: (err as Error).message }, "session renew failed; retrying");
        await this.pause(RENEW_RETRY_MS, signal);
      }
    }
  }

  /** Destroys the session (imposes lock-delay on keys it still holds: release them first). */
  async destroy(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.set(undefined);
    await this.deps.api.destroySession(session, 2000).catch((err: Error) => {
      this.deps.log.warn({ step: "session", session, err: err.message }, "session destroy failed; Consul will expire it");
    });
  }
}
