/** What one run of a check found. `output` is a sentence a person can read in the Consul UI. */
export interface CheckResult {
  ok: boolean;
  output: string;
  latencyMs: number;
}

/** "0.05 ms", "3 ms", "1.2 s": short and precise enough for an operator. */
export function formatLatency(ms: number): string {
  if (ms < 10) return `${Number(ms.toFixed(2))} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** Keeps quoted peer text short and on one line. */
export function quote(text: string, max = 60): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return `'${flat.length > max ? `${flat.slice(0, max)}…` : flat}'`;
}

export function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "ECONNREFUSED") return "connection refused";
  if (e?.code === "ENETUNREACH") return "network unreachable";
  if (e?.code === "EHOSTUNREACH") return "host unreachable";
  if (e?.code === "ENOTFOUND") return "name not found";
  if (e?.code === "ECONNRESET") return "connection reset";
  return e?.code ?? e?.message ?? String(err);
}
