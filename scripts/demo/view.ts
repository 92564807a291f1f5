import type { SimCluster } from "../../test/support/cluster.js";
import { formatColumns } from "../../agent/commands/status.js";

/**
 * The demo's live view: who holds each route (Consul, consistent read), where the route
 * table really points (moto), and each node's check and agent state. On a terminal it
 * redraws a table in place; otherwise it prints one plain line per change.
 */

export interface ViewRoute {
  name: string;
  table: string;
  destination: string;
}

interface RouteRow {
  route: string;
  table: string;
  holder: string;
  az: string;
  target: string;
  state: string;
}

interface NodeRow {
  node: string;
  instance: string;
  az: string;
  check: string;
  agent: string;
  leads: string;
}

const stamp = () => new Date().toISOString().slice(11, 23);

export class LiveView {
  private readonly story: string[] = [];
  private routeRows: RouteRow[] = [];
  private nodeRows: NodeRow[] = [];
  private lastFrame = "";
  private readonly lastPlain = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly sim: SimCluster,
    private readonly routes: ViewRoute[],
    private readonly header: string,
    private readonly tty: boolean,
  ) {}

  /** A line of the story: kept under the table on a terminal, printed at once otherwise. */
  say(line: string): void {
    const stamped = `${stamp()}  ${line}`;
    this.story.push(stamped);
    if (this.tty) this.draw();
    else process.stdout.write(`${stamped}\n`);
  }

  start(intervalMs = 250): void {
    this.timer = setInterval(() => void this.poll(), intervalMs);
    void this.poll();
  }

  /** Stops refreshing; on a terminal the last frame stays on screen. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Brings the view up to date now (after a step of the story, before saying what happened). */
  async refresh(): Promise<void> {
    await this.polling;
    await this.poll();
  }

  private poll(): Promise<void> {
    if (!this.timer) return Promise.resolve();
    this.polling ??= this.read().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async read(): Promise<void> {
    try {
      const holders = await this.sim.holders();
      const routeRows: RouteRow[] = [];
      for (const r of this.routes) {
        const holder = this.sim.nodeByInstance(holders.get(r.name)?.instanceId);
        const target = await this.sim.routeTarget(r.table, r.destination);
        const targetNode = this.sim.nodeByInstance(target);
        const state = !holder ? "no holder" : target === holder.instanceId ? "ok" : "converging";
        routeRows.push({
          route: r.name,
          table: `${r.table} ${r.destination}`,
          holder: holder ? `${holder.name} ${holder.instanceId}` : "-",
          az: holder?.spec.az ?? "-",
          target: targetNode ? `${targetNode.name} ${target}` : (target ?? "-"),
          state,
        });
      }
      this.routeRows = routeRows;
      this.nodeRows = this.sim.nodes.map((n) => {
        const lastCheck = [...n.events].reverse().find((e) => /^health check (passing|failing)/.test(e.msg));
        const running = !!n.process && !n.process.hasExited;
        return {
          node: n.name,
          instance: n.instanceId,
          az: n.spec.az,
          check: !running ? "-" : lastCheck ? (lastCheck.msg.startsWith("health check passing") ? "passing" : "FAILING") : "starting",
          agent: running ? "running" : "stopped",
          leads: this.routeRows.filter((r) => r.holder.startsWith(`${n.name} `)).map((r) => r.route).join(",") || "-",
        };
      });
      if (this.tty) this.draw();
      else this.printChanges();
    } catch {
      // Consul or moto briefly unavailable (e.g. while stopping): keep the last view.
    }
  }

  private printChanges(): void {
    for (const r of this.routeRows) {
      const line = `${r.route}: holder ${r.holder} (${r.az}), table ${r.table} → ${r.target} [${r.state}]`;
      if (this.lastPlain.get(r.route) === line) continue;
      this.lastPlain.set(r.route, line);
      process.stdout.write(`${stamp()}  view  ${line}\n`);
    }
  }

  private draw(): void {
    const routes = formatColumns(["ROUTE", "TABLE", "HOLDER", "AZ", "TABLE TARGET", "STATE"], this.routeRows.map((r) => [r.route, r.table, r.holder, r.az, r.target, r.state]));
    const nodes = formatColumns(["NODE", "INSTANCE", "AZ", "CHECK", "AGENT", "LEADS"], this.nodeRows.map((n) => [n.node, n.instance, n.az, n.check, n.agent, n.leads]));
    const frame = [this.header, "", ...routes, "", ...nodes, "", ...this.story.slice(-12)].join("\n");
    if (frame === this.lastFrame) return;
    this.lastFrame = frame;
    process.stdout.write(`\x1b[H\x1b[2J${frame}\n`);
  }
}
