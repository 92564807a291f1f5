/**
 * CloudWatch embedded metric format (EMF): one JSON object per line whose `_aws` member tells
 * CloudWatch Logs which root members are metrics and which are dimensions. Any log event that
 * reaches CloudWatch Logs in this shape becomes metrics; nothing else has to understand it.
 * Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 */

export type EmfUnit = "Count" | "Milliseconds" | "Seconds" | "None";

export interface EmfMetric {
  name: string;
  unit: EmfUnit;
  value: number;
}

export interface EmfRecord {
  namespace: string;
  /** Milliseconds since the epoch: the time CloudWatch files the values under. */
  timestamp: number;
  /** Dimension values (strings), e.g. { Cluster: "prod-nat", Route: "nat-a" }. */
  dimensions: Readonly<Record<string, string>>;
  /** Which dimension combinations to publish under; default: all of `dimensions` as one set. */
  dimensionSets?: readonly (readonly string[])[];
  metrics: readonly EmfMetric[];
  /** Extra root members for Logs Insights (instance id, table, …); never metrics. */
  properties?: Readonly<Record<string, unknown>>;
}

/** The JSON document of one EMF record; throws on what CloudWatch would reject. */
export function emfDocument(r: EmfRecord): Record<string, unknown> {
  if (!r.namespace || r.namespace.length > 255 || r.namespace.startsWith("AWS/")) throw new Error(`EMF namespace must be 1-255 characters and not start with AWS/: ${r.namespace}`);
  if (!r.metrics.length || r.metrics.length > 100) throw new Error("an EMF record carries 1 to 100 metrics");
  const sets = r.dimensionSets ?? [Object.keys(r.dimensions)];
  for (const set of sets) {
    if (set.length > 30) throw new Error("an EMF dimension set has at most 30 dimensions");
    for (const d of set) if (typeof r.dimensions[d] !== "string" || !r.dimensions[d]) throw new Error(`EMF dimension ${d} has no value`);
  }
  const doc: Record<string, unknown> = { ...(r.properties ?? {}) };
  for (const [k, v] of Object.entries(r.dimensions)) doc[k] = v;
  for (const m of r.metrics) {
    if (!m.name || m.name.length > 255) throw new Error(`EMF metric name must be 1-255 characters: ${m.name}`);
    if (!Number.isFinite(m.value)) throw new Error(`EMF metric ${m.name} is not a finite number`);
    if (m.name in r.dimensions || m.name === "_aws") throw new Error(`EMF metric ${m.name} clashes with a dimension`);
    doc[m.name] = m.value;
  }
  doc._aws = {
    Timestamp: Math.round(r.timestamp),
    CloudWatchMetrics: [
      {
        Namespace: r.namespace,
        Dimensions: sets.map((s) => [...s]),
        Metrics: r.metrics.map((m) => ({ Name: m.name, Unit: m.unit })),
      },
    ],
  };
  return doc;
}

/** One EMF line (no newline). */
export function emfLine(r: EmfRecord): string {
  return JSON.stringify(emfDocument(r));
}
