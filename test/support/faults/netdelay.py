"""Delay and loss for one network namespace, where the kernel has no netem qdisc.

Packets sent out of eth0 are queued by iptables (NFQUEUE); this program, run inside the same
namespace, takes them from the queue over raw nfnetlink (no library) and gives each its verdict
after a delay drawn uniformly from [delay - jitter, delay + jitter] ms (netem's `delay D J`
without a distribution table), or drops it with probability loss %. Verdicts are given out of
order, so jitter reorders packets as netem does. SIGTERM/SIGINT ends it; counters (packets,
dropped) are printed as one line on stdout every 5 s and at the end.

    netdelay.py <queue-num> <delay-ms> <jitter-ms> <loss-percent> [<seed>]
"""

import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def expect_ack(sock, what):
    data = sock.recv(65536)
    length, kind = struct.unpack_from("=IH", data, 0)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", data, 16)
        if error != 0:
            sys.exit(f"netdelay: {what} refused: {os.strerror(-error)}")


def packet_ids(data):
    """Packet ids of every NFQNL_MSG_PACKET in one datagram."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = offset + 20
            while a + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    out.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (alen + 3) & ~3
        offset += (length + 3) & ~3
    return out


def main():
    if len(sys.argv) < 5:
        sys.exit("usage: netdelay.py <queue-num> <delay-ms> <jitter-ms> <loss-percent> [<seed>]")
    queue = int(sys.argv[1])
    delay, jitter, loss = float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000, float(sys.argv[4]) / 100
    rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else None)

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    sock.send(message(NFQNL_MSG_CONFIG, queue, [attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0))], NLM_F_REQUEST | NLM_F_ACK, 1))
    expect_ack(sock, f"binding queue {queue}")
    sock.send(message(NFQNL_MSG_CONFIG, queue, [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))], NLM_F_REQUEST | NLM_F_ACK, 2))
    expect_ack(sock, "copy mode meta")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    pending = []
    packets = dropped = 0
    reported = time.monotonic()
    print(f"netdelay ready: queue {queue}, delay {delay * 1000:g} ms ± {jitter * 1000:g} ms, loss {loss * 100:g} %", flush=True)

    def verdict(pid, v):
        sock.send(message(NFQNL_MSG_VERDICT, queue, [attr(NFQA_VERDICT_HDR, struct.pack("!II", v, pid))]))

    while not stop:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, pid = heapq.heappop(pending)
            verdict(pid, NF_ACCEPT)
        timeout = max(0.0, pending[0][0] - now) if pending else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if ready:
            now = time.monotonic()
            for pid in packet_ids(sock.recv(1 << 20)):
                packets += 1
                if rng.random() < loss:
                    dropped += 1
                    verdict(pid, NF_DROP)
                else:
                    heapq.heappush(pending, (now + max(0.0, rng.uniform(delay - jitter, delay + jitter)), pid))
        if now - reported >= 5:
            reported = now
            print(f"packets {packets} dropped {dropped}", flush=True)
    for _, pid in pending:
        verdict(pid, NF_ACCEPT)
    print(f"packets {packets} dropped {dropped}", flush=True)


if __name__ == "__main__":
    main()
