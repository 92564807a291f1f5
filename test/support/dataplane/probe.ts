import type { ManagedProcess } from "../process.js";

/** The arrivals of a udp-probe's echoes, and the longest silence among them. */
export class UdpProbe {
  readonly arrivals: number[] = [];

  constructor(readonly proc: ManagedProcess) {
    proc.onLine((line) => {
      if (!line.startsWith('{"echo"')) return;
      this.arrivals.push((JSON.parse(line) as { t: number }).t);
    });
  }

  /** The longest gap between consecutive echoes arriving from `from` to `to` (ms). */
  longestGap(from: number, to: number): { ms: number; start: number; end: number } {
    const inWindow = this.arrivals.filter((t) => t >= from && t <= to);
    let best = { ms: 0, start: from, end: from };
    let prev = from;
    for (const t of [...inWindow, to]) {
      if (t - prev > best.ms) best = { ms: t - prev, start: prev, end: t };
      prev = t;
    }
    return best;
  }

  received(from: number, to: number): number {
    return this.arrivals.filter((t) => t >= from && t <= to).length;
  }
}

export interface StreamStatus {
  sent: number;
  echoed: number;
  lastEchoAt: number;
  error?: string;
}

/** The tcp-streams client's latest status line. */
export class TcpStreams {
  latest: { t: number; conns: StreamStatus[] } | undefined;

  constructor(readonly proc: ManagedProcess) {
    proc.onLine((line) => {
      if (!line.startsWith('{"status"')) return;
      this.latest = JSON.parse(line) as { t: number; conns: StreamStatus[] };
    });
  }
}
