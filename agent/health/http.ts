import type { CheckConfig } from "../config/schema.js";
import { errorText, formatLatency, quote, type CheckResult } from "./result.js";

type HttpCheck = Extract<CheckConfig, { type: "http" }>;

/**
 * One GET. Passes when the status is within [statusMin, statusMax] and, with `bodyMatch`, the
 * body matches it. Redirects are not followed: a 3xx is judged by the status range.
 */
export async function runHttp(check: HttpCheck, signal?: AbortSignal): Promise<CheckResult> {
  const started = performance.now();
  const what = `http GET ${check.url}`;
  const elapsed = () => performance.now() - started;
  const timeout = AbortSignal.timeout(check.timeout);
  const abort = signal ? AbortSignal.any([timeout, signal]) : timeout;
  const fail = (detail: string): CheckResult => ({ ok: false, output: `${what}: ${detail}, ${formatLatency(elapsed())}`, latencyMs: elapsed() });
  try {
    const res = await fetch(check.url, { headers: check.headers, redirect: "manual", signal: abort });
    if (res.status < check.statusMin || res.status > check.statusMax) {
      await res.body?.cancel();
      return fail(`status ${res.status} outside ${check.statusMin}-${check.statusMax}`);
    }
    if (check.bodyMatch === undefined) {
      await res.body?.cancel();
      return { ok: true, output: `${what}: ${res.status}, ${formatLatency(elapsed())}`, latencyMs: elapsed() };
    }
    const body = await res.text();
    if (!new RegExp(check.bodyMatch).test(body)) return fail(`${res.status}, body ${quote(body)} does not match /${check.bodyMatch}/`);
    return { ok: true, output: `${what}: ${res.status}, body matched /${check.bodyMatch}/, ${formatLatency(elapsed())}`, latencyMs: elapsed() };
  } catch (err) {
    if (timeout.aborted) return fail(`no complete answer within ${check.timeout} ms`);
    if (signal?.aborted) return fail("stopped");
    return fail(errorText((err as { cause?: unknown }).cause ?? err));
  }
}
