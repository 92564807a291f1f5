import { chromium, type Browser, type BrowserServer, type Page } from "playwright-core";

/** Debian's chromium package; playwright-core drives it, no browser download. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * A headless Chromium. Playwright gives each launch a new, empty user-data dir and removes
 * it on close. `close()` is idempotent and, should Playwright fail to end the browser,
 * kills it by its pid.
 */
export class StartedBrowser {
  private closing: Promise<void> | undefined;

  constructor(
    private readonly server: BrowserServer,
    readonly browser: Browser,
  ) {}

  get pid(): number | undefined {
    return this.server.process().pid;
  }

  /** A new page in its own context (no shared cookies or storage), with a default timeout for waits. */
  async newPage(options: { timeoutMs?: number; viewport?: { width: number; height: number } } = {}): Promise<Page> {
    const context = await this.browser.newContext({ viewport: options.viewport ?? { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(options.timeoutMs ?? 30_000);
    return page;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const child = this.server.process();
      await this.browser.close().catch(() => undefined);
      await this.server.close().catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Launches /usr/bin/chromium headless through playwright-core. */
export async function launchBrowser(): Promise<StartedBrowser> {
  const server = await chromium.launchServer({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS, host: "127.0.0.1" });
  try {
    return new StartedBrowser(server, await chromium.connect(server.wsEndpoint()));
  } catch (err) {
    await server.close();
    throw err;
  }
}
