import dgram from "node:dgram";
import net from "node:net";

/**
 * The applications of the data-plane simulator, run inside namespaces:
 *   server <addr>                       UDP echo on 7 and TCP echo on 9 (the "internet" host)
 *   udp-probe <addr> <pps>              one datagram every 1000/pps ms; prints every echo's arrival
 *   tcp-streams <addr> <n> <everyMs>    n long-lived TCP echo connections, each sending a counter line
 *                                       every everyMs and checking the echo byte for byte
 *   relay <addr> <port> <socket>        TCP on addr:port piped to a unix socket (the way from a
 *                                       namespace to the EC2 endpoint, which listens elsewhere)
 * Output is one JSON object a line on stdout. SIGTERM ends a client after a final status line.
 */

const [mode, addr = "", a = "", b = ""] = process.argv.slice(2);
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === "server") {
  const udp = dgram.createSocket("udp4");
  udp.on("message", (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
  udp.bind(7, addr);
  const tcp = net.createServer((s) => {
    s.on("error", () => s.destroy());
    s.pipe(s);
  });
  tcp.listen(9, addr, () => out({ ready: true }));
} else if (mode === "udp-probe") {
  const everyMs = 1000 / Number(a || 100);
  const sock = dgram.createSocket("udp4");
  let seq = 0;
  sock.on("message", (msg) => out({ echo: Number(msg.toString()), t: Date.now() }));
  sock.bind(0, () => {
    out({ ready: true, port: sock.address().port });
    const timer = setInterval(() => sock.send(String(seq++), 7, addr), everyMs);
    process.once("SIGTERM", () => {
      clearInterval(timer);
      out({ done: true, sent: seq });
      sock.close();
    });
  });
} else if (mode === "tcp-streams") {
  const n = Number(a || 10);
  const everyMs = Number(b || 100);
  interface Conn {
    sent: number;
    echoed: number;
    error?: string;
    expected: string;
    lastEchoAt: number;
  }
  const conns: Conn[] = [];
  let sending = true;
  const status = (final: boolean) =>
    out({ status: true, final, t: Date.now(), conns: conns.map((c) => ({ sent: c.sent, echoed: c.echoed, lastEchoAt: c.lastEchoAt, ...(c.error ? { error: c.error } : {}) })) });
  let opened = 0;
  for (let i = 0; i < n; i++) {
    const c: Conn = { sent: 0, echoed: 0, expected: "", lastEchoAt: 0 };
    conns.push(c);
    const s = net.connect({ host: addr, port: 9 });
    s.setNoDelay(true);
    s.on("connect", () => {
      if (++opened === n) out({ ready: true });
      let k = 0;
      const timer = setInterval(() => {
        if (!sending || c.error) return clearInterval(timer);
        const line = `conn ${i} line ${k++}\n`;
        c.expected += line;
        c.sent += line.length;
        s.write(line);
      }, everyMs);
    });
    s.on("data", (d: Buffer) => {
      const text = d.toString();
      if (!c.expected.startsWith(text)) {
        c.error ??= `echo out of order at byte ${c.echoed}`;
        return;
      }
      c.expected = c.expected.slice(text.length);
      c.echoed += text.length;
      c.lastEchoAt = Date.now();
    });
    s.on("error", (err: NodeJS.ErrnoException) => {
      c.error ??= err.code ?? err.message;
    });
    s.on("close", () => {
      c.error ??= "closed";
    });
  }
  const timer = setInterval(() => status(false), 250);
  process.once("SIGTERM", () => {
    sending = false;
    clearInterval(timer);
    status(true);
    process.exit(0);
  });
} else if (mode === "relay") {
  const server = net.createServer((c) => {
    const up = net.connect(b);
    c.on("error", () => up.destroy());
    up.on("error", () => c.destroy());
    c.pipe(up).pipe(c);
  });
  server.listen(Number(a), addr, () => out({ ready: true }));
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
