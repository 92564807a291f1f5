import type { LabResult, LabRun } from "./lab.js";
import { CONVERGE_LIMIT_MS } from "./trial.js";

/** Figures of a lab run: percentiles per scenario and system, the markdown page and the SVG chart. */

export interface Figures {
  trials: number;
  /** Fault → route converged. Trials that never converged count at CONVERGE_LIMIT_MS (censored), never dropped. */
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
  /** Fault → the new holder's own claim (lock acquired / VRRP MASTER): the election part. */
  election_p50_ms: number | null;
  election_p95_ms: number | null;
  /** New holder's claim → route observed in the table: the write part. */
  write_p50_ms: number | null;
  write_p95_ms: number | null;
  /** Failover trials where the route never reached a live, healthy host within censored_at_ms. */
  never_converged: number;
  censored_at_ms: number;
  /** 1-minute load average at each trial's fault. */
  load_average: { min: number; max: number } | null;
  split_brain_writes: number;
  route_changes_max: number;
  violations: number;
  /** With several runs (bench:failover --runs): each run's own figures, and the spread of their p95. */
  runs?: RunFigures[];
  p95_spread_ms?: number | null;
}

export interface RunFigures {
  run: number;
  trials: number;
  p50_ms: number | null;
  p95_ms: number | null;
  load_average: { min: number; max: number } | null;
}

export type FigureTable = Record<string, Record<string, Figures>>;

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Converged times of trials, never-converged ones counted at CONVERGE_LIMIT_MS; sorted. */
function convergedTimes(trials: LabRun["trials"]): { ms: number[]; never: number } {
  const never = trials.filter((t) => t.neverConverged || (t.ms === undefined && t.violations.some((v) => v.startsWith("route did not move"))));
  return { ms: [...trials.flatMap((t) => (t.ms === undefined ? [] : [t.ms])), ...never.map(() => CONVERGE_LIMIT_MS)].sort((a, b) => a - b), never: never.length };
}

function loadRange(trials: LabRun["trials"]): { min: number; max: number } | null {
  const loads = trials.flatMap((t) => (t.loadAverage === undefined ? [] : [t.loadAverage]));
  return loads.length ? { min: Math.min(...loads), max: Math.max(...loads) } : null;
}

/** Per scenario and system, every run of the cell pooled; with several runs, each run's figures too. */
export function figures(result: LabResult): FigureTable {
  const cells = new Map<string, LabRun[]>();
  for (const run of result.runs) {
    const key = `${run.scenario}\u0000${run.system}`;
    cells.set(key, [...(cells.get(key) ?? []), run]);
  }
  const out: FigureTable = {};
  for (const runs of cells.values()) {
    const { scenario, system } = runs[0]!;
    const trials = runs.flatMap((r) => r.trials);
    const { ms, never } = convergedTimes(trials);
    const election = trials.flatMap((t) => (t.electionMs === undefined ? [] : [t.electionMs])).sort((a, b) => a - b);
    const write = trials.flatMap((t) => (t.electionMs === undefined || t.ms === undefined ? [] : [t.ms - t.electionMs])).sort((a, b) => a - b);
    const perRun: RunFigures[] = runs.length > 1 ? runs.map((r, i) => {
      const own = convergedTimes(r.trials).ms;
      return { run: r.run ?? i + 1, trials: r.trials.length, p50_ms: percentile(own, 50), p95_ms: percentile(own, 95), load_average: loadRange(r.trials) };
    }) : [];
    const p95s = perRun.flatMap((r) => (r.p95_ms === null ? [] : [r.p95_ms]));
    (out[scenario] ??= {})[system] = {
      trials: trials.length,
      p50_ms: percentile(ms, 50),
      p95_ms: percentile(ms, 95),
      p99_ms: percentile(ms, 99),
      max_ms: ms.length ? ms[ms.length - 1]! : null,
      election_p50_ms: percentile(election, 50),
      election_p95_ms: percentile(election, 95),
      write_p50_ms: percentile(write, 50),
      write_p95_ms: percentile(write, 95),
      never_converged: never,
      censored_at_ms: CONVERGE_LIMIT_MS,
      load_average: loadRange(trials),
      split_brain_writes: trials.reduce((n, t) => n + t.splitBrainWrites, 0),
      route_changes_max: Math.max(0, ...trials.map((t) => t.routeChanges)),
      violations: trials.reduce((n, t) => n + t.violations.length, 0) + runs.filter((r) => r.error).length,
      ...(perRun.length ? { runs: perRun, p95_spread_ms: p95s.length ? Math.max(...p95s) - Math.min(...p95s) : null } : {}),
    };
  }
  return out;
}

const SYSTEM_ORDER = ["routeleader-default", "routeleader-fast", "routeleader-eip", "keepalived", "keepalived-tuned", "consul-lock", "consul-lock-tuned"];
const COLORS: Record<string, string> = {
  "routeleader-default": "#1f77b4",
  "routeleader-fast": "#17becf",
  "routeleader-eip": "#2ca02c",
  keepalived: "#d62728",
  "keepalived-tuned": "#9467bd",
  "consul-lock": "#7f7f7f",
  "consul-lock-tuned": "#ff7f0e",
};
const OURS = ["routeleader-default", "routeleader-fast"];
const BASELINES = ["keepalived", "keepalived-tuned", "consul-lock", "consul-lock-tuned"];

const sec = (ms: number | null) => (ms === null ? "–" : (ms / 1000).toFixed(2));
const ordered = (systems: string[]) => SYSTEM_ORDER.filter((s) => systems.includes(s));

export function markdownTable(table: FigureTable): string {
  const systems = ordered([...new Set(Object.values(table).flatMap((r) => Object.keys(r)))]);
  const lines = [
    `| scenario | ${systems.join(" | ")} |`,
    `|---|${systems.map(() => "---").join("|")}|`,
    ...Object.entries(table).map(([scenario, row]) => {
      const cells = systems.map((s) => {
        const f = row[s];
        if (!f) return "";
        const timing = f.p50_ms === null ? "stays" : `${sec(f.p50_ms)} / ${sec(f.p95_ms)} / ${sec(f.p99_ms)} / ${sec(f.max_ms)}`;
        return `${timing} (n=${f.trials}${f.runs ? `, ${f.runs.length} runs, p95 ${f.runs.map((r) => sec(r.p95_ms)).join(" / ")}` : ""}${f.never_converged ? `, **${f.never_converged} never converged** (counted at ${f.censored_at_ms / 1000} s)` : ""}${f.split_brain_writes ? `, **${f.split_brain_writes} split-brain**` : ""}${f.violations ? `, ${f.violations} violations` : ""})`;
      });
      return `| ${scenario} | ${cells.join(" | ")} |`;
    }),
  ];
  return lines.join("\n");
}

export function ratioTable(table: FigureTable): string {
  const lines = ["| scenario | ours | vs | p50 ratio | p95 ratio |", "|---|---|---|---|---|"];
  for (const [scenario, row] of Object.entries(table)) {
    for (const ours of OURS) {
      for (const base of BASELINES) {
        const a = row[ours];
        const b = row[base];
        if (!a || !b || a.p50_ms === null || b.p50_ms === null || !b.p50_ms || !b.p95_ms) continue;
        lines.push(`| ${scenario} | ${ours} | ${base} | ${(a.p50_ms / b.p50_ms).toFixed(2)} | ${((a.p95_ms ?? 0) / b.p95_ms).toFixed(2)} |`);
      }
    }
  }
  return lines.join("\n");
}

export function splitBrainTable(table: FigureTable): string {
  const systems = ordered([...new Set(Object.values(table).flatMap((r) => Object.keys(r)))]);
  const lines = [`| scenario | ${systems.join(" | ")} |`, `|---|${systems.map(() => "---").join("|")}|`];
  for (const [scenario, row] of Object.entries(table)) lines.push(`| ${scenario} | ${systems.map((s) => (row[s] ? String(row[s]!.split_brain_writes) : "")).join(" | ")} |`);
  return lines.join("\n");
}

/** Per scenario, per system: every trial as a dot on a fault → converged time axis, the p50–p95 box and max whisker. */
export function svgChart(result: LabResult, table: FigureTable): string {
  const scenarios = Object.keys(table).filter((s) => Object.values(table[s]!).some((f) => f.max_ms !== null));
  const rows = scenarios.flatMap((sc) => ordered(Object.keys(table[sc]!)).map((sys) => ({ sc, sys })));
  const maxMs = Math.max(1000, ...rows.map((r) => table[r.sc]![r.sys]!.max_ms ?? 0));
  const axisMax = Math.ceil(maxMs / 2000) * 2000;
  const left = 330;
  const width = 1100;
  const plotW = width - left - 30;
  const rowH = 22;
  const top = 50;
  const groupGap = 14;
  const x = (ms: number) => left + (ms / axisMax) * plotW;
  const parts: string[] = [];
  let y = top;
  let lastSc = "";
  for (const { sc, sys } of rows) {
    if (sc !== lastSc) {
      y += groupGap;
      parts.push(`<text x="10" y="${y + 4}" font-weight="bold">${sc}</text>`);
      y += rowH - 6;
      lastSc = sc;
    }
    const f = table[sc]![sys]!;
    const samples = result.runs.filter((r) => r.scenario === sc && r.system === sys).flatMap((r) => r.trials.flatMap((t) => (t.ms === undefined ? [] : [t.ms])));
    const color = COLORS[sys] ?? "#000";
    parts.push(`<text x="24" y="${y + 4}">${sys} (p50 ${sec(f.p50_ms)} s, p95 ${sec(f.p95_ms)} s)</text>`);
    if (f.p50_ms !== null && f.p95_ms !== null && f.max_ms !== null) {
      parts.push(`<line x1="${x(f.p50_ms)}" x2="${x(f.max_ms)}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="1.5"/>`);
      parts.push(`<rect x="${x(f.p50_ms)}" y="${y - 6}" width="${Math.max(2, x(f.p95_ms) - x(f.p50_ms))}" height="12" fill="${color}" fill-opacity="0.35" stroke="${color}"/>`);
    }
    for (const ms of samples) parts.push(`<circle cx="${x(ms).toFixed(1)}" cy="${y}" r="2.5" fill="${color}"/>`);
    y += rowH;
  }
  const height = y + 40;
  const ticks: string[] = [];
  const step = axisMax <= 10_000 ? 1000 : axisMax <= 30_000 ? 2000 : 5000;
  for (let t = 0; t <= axisMax; t += step) {
    ticks.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${top}" y2="${y}" stroke="#ddd"/>`);
    ticks.push(`<text x="${x(t)}" y="${y + 16}" text-anchor="middle">${t / 1000} s</text>`);
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">Failover timeline: fault → route table points at a live, healthy host (each dot one trial; box p50–p95; line to max)</text>`,
    `<text x="10" y="40" fill="#555">${result.startedAt} – ${result.finishedAt}, 3 hosts in network namespaces, moto behind the fault proxy, 3 Consul servers</text>`,
    ...ticks,
    ...parts,
    `</svg>`,
  ].join("\n");
}
