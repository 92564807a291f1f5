const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses "500ms", "3s", "1.5s", "2m", "1h" (or a sequence such as "1m30s") into milliseconds.
 * Bare numbers are refused on purpose: Consul reads a bare LockDelay below 1000 as seconds and
 * above as nanoseconds, and we do not want that ambiguity in our own config.
 */
export function parseDuration(text: string): number | { error: string } {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(trimmed)) {
    return { error: `"${text}" is not a duration (use a number with a unit: 500ms, 3s, 2m, 1h)` };
  }
  let total = 0;
  for (const match of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
  }
  return Math.round(total);
}

/** Formats milliseconds the way Consul's API takes durations ("3s", "250ms"). */
export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
