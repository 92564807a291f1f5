/** One sample of the Prometheus text exposition format, as a scraper reads it. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses exposition text into samples; comment and blank lines are skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1] as string, l[2] as string]));
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

/** True when the sample is `name` and its labels include every one of `labels`. */
export function matches(sample: Sample, name: string, labels: Record<string, string> = {}): boolean {
  return sample.name === name && Object.entries(labels).every(([k, want]) => sample.labels[k] === want);
}

/** The first sample of `name` whose labels include `labels`, as a scraper's query would find it. */
export function firstValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => matches(s, name, labels))?.value;
}
