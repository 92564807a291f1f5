/**
 * Runs `sample` every `intervalMs`, one at a time (the next starts `intervalMs` after the last
 * one ended, so a slow answer under load never piles samples up); a failed sample is skipped.
 * `stop()` waits for the sample in flight.
 */
export class SampleLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly sample: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    const loop = () => {
      this.running = this.sample()
        .catch(() => undefined)
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(loop, this.intervalMs);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
