import type { Clock } from "../clock.js";

/**
 * The loop's single wait: it ends at the timeout, at `notify()` (a watch answer, an action's
 * outcome, a health change, an operator request), or when the signal aborts. A notify that
 * comes while no one waits is kept, so no wake-up is lost between two waits.
 */
export class Wakeup {
  private pending = false;
  private wake: (() => void) | undefined;

  constructor(private readonly clock: Clock) {}

  notify(): void {
    this.pending = true;
    this.wake?.();
  }

  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return;
    }
    const inner = new AbortController();
    const onAbort = () => inner.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.wake = () => inner.abort();
    try {
      await this.clock.sleep(ms, inner.signal);
    } catch {
      // woken early
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.wake = undefined;
      this.pending = false;
    }
  }
}

/** Conditions someone awaits, checked after every cycle. */
export class Waiters {
  private readonly checks = new Set<() => void>();

  /** Resolves true when `test` holds after a cycle, false at the timeout or on abort. */
  until(test: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (test()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), timeoutMs);
      const check = () => test() && done(true);
      const done = (value: boolean) => {
        clearTimeout(timer);
        this.checks.delete(check);
        signal?.removeEventListener("abort", onAbort);
        resolve(value);
      };
      const onAbort = () => done(false);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.checks.add(check);
    });
  }

  check(): void {
    for (const check of [...this.checks]) check();
  }
}
