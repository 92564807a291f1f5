import type { CheckResult } from "./result.js";

/** A ping or tcp check narrowed to one of its hosts. */
export type OneHost<C extends { host: string | readonly string[] }> = Omit<C, "host"> & { host: string };

/**
 * Runs a check whose `host` may be a list: every host at once, passing on the first that
 * answers (the others are stopped), failing only when all failed, with each one's reason.
 * A single host runs as itself, output unchanged.
 */
export async function runAnyHost<C extends { host: string | readonly string[] }>(
  check: C,
  runOne: (one: OneHost<C>, signal?: AbortSignal) => Promise<CheckResult>,
  signal?: AbortSignal,
): Promise<CheckResult> {
  if (typeof check.host === "string") return runOne(check as OneHost<C>, signal);
  const hosts = check.host;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const results: (CheckResult | undefined)[] = hosts.map(() => undefined);
    const winner = await new Promise<CheckResult | undefined>((resolve) => {
      let pending = hosts.length;
      hosts.forEach((host, i) => {
        runOne({ ...check, host } as OneHost<C>, stop.signal).then(
          (r) => {
            results[i] = r;
            if (r.ok) resolve(r);
            if (--pending === 0) resolve(undefined);
          },
          (err: Error) => {
            results[i] = { ok: false, output: `${host}: ${err.message}`, latencyMs: 0 };
            if (--pending === 0) resolve(undefined);
          },
        );
      });
    });
    if (winner) return { ...winner, output: `any of ${hosts.length}: ${winner.output}` };
    const latencyMs = Math.max(...results.map((r) => r?.latencyMs ?? 0));
    return { ok: false, output: `none of ${hosts.length} answered: ${results.map((r) => r?.output).join("; ")}`, latencyMs };
  } finally {
    stop.abort();
    signal?.removeEventListener("abort", onAbort);
  }
}
