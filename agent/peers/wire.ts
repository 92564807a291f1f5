/** One heartbeat datagram: who sends it, for which cluster, and which peers it finds silent. */
export interface Heartbeat {
  readonly cluster: string;
  readonly from: string;
  readonly seq: number;
  readonly silent: readonly string[];
}

const VERSION = 1;

export function encodeHeartbeat(hb: Heartbeat): Buffer {
  return Buffer.from(JSON.stringify({ v: VERSION, c: hb.cluster, f: hb.from, n: hb.seq, s: hb.silent }));
}

/** Undefined for anything that is not a heartbeat of this version (a datagram from anyone may arrive). */
export function decodeHeartbeat(data: Buffer): Heartbeat | undefined {
  if (data.length > 8192) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(data.toString("utf8"));
  } catch {
    return undefined;
  }
  if (!raw || typeof raw !== "object") return undefined;
  const r = raw as Record<string, unknown>;
  if (r.v !== VERSION || typeof r.c !== "string" || typeof r.f !== "string" || typeof r.n !== "number" || !Array.isArray(r.s)) return undefined;
  if (!r.s.every((x) => typeof x === "string")) return undefined;
  return { cluster: r.c, from: r.f, seq: r.n, silent: r.s as string[] };
}

/** "10.0.1.5:9732" or "[fd00::5]:9732" → host and port; undefined when malformed. */
export function parsePeerAddress(text: string | undefined): { host: string; port: number } | undefined {
  const m = text?.match(/^\[?([^\]]+?)\]?:(\d{1,5})$/);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65_536 ? { host: m[1] as string, port } : undefined;
}

export function formatPeerAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
