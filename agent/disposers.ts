import type { Logger } from "./observe/log.js";

/**
 * Cleanup as a stack, registered as resources are made (like Go's `defer`): whatever step
 * fails, everything made before it is undone, in reverse order, each step on its own.
 */
export class DisposerStack {
  private readonly stack: { what: string; dispose: () => unknown }[] = [];

  constructor(private readonly log: Logger) {}

  defer(what: string, dispose: () => unknown): void {
    this.stack.push({ what, dispose });
  }

  async disposeAll(): Promise<void> {
    for (let next = this.stack.pop(); next; next = this.stack.pop()) {
      try {
        await next.dispose();
      } catch (err) {
        this.log.warn({ step: "cleanup", what: next.what, err: (err as Error).message }, `cleanup failed: ${next.what}`);
      }
    }
  }
}
