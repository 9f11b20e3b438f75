"""Packets per second through each NFQUEUE backend (netlink, binding), in network namespaces.

A sender namespace blasts small UDP datagrams over a veth into a receiver
namespace, where an iptables NFQUEUE rule hands them to a PacketQueue whose
callback accepts each (mode accept) or re-sends it with a new payload and
fresh checksums (mode rewrite, what the ALG does to SIP).  Measured: verdicts
per second at saturation, and how many datagrams the kernel let past unqueued
because the consumer fell behind (fail-open; the binding cannot set it, so its
overflow is dropped instead).  A benchmark, not a test: needs root and iptables.

    sudo python3 bench/queue_bench.py [--seconds 3] [--size 600] [--rate PPS]

Flat out (the default) shows the ceiling; with --rate below it, both backends
see the same load and "CPU us/pkt" compares their cost fairly (flat out, the
kernel's fail-open deliveries are partly charged to the netlink consumer).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TAG = os.environ.get("QUEUE_BENCH_TAG") or str(os.getpid())      # the inner run inherits the outer names
SRC, DST = "qb-%s-src" % TAG, "qb-%s-dst" % TAG
SRC_IP, DST_IP, PORT, QUEUE = "10.99.0.1", "10.99.0.2", 9999, 3

BLAST = ("import socket,time;s=socket.socket(2,2);s.setsockopt(1,7,1<<22);p=b'x'*%d;t=time.monotonic()\n"
         "end=t+%f;gap=%f\n"
         "while t<end:\n for _ in range(50):\n  try: s.sendto(p,(%r,%d))\n  except OSError: pass\n"
         " t=t+gap if gap else time.monotonic();time.sleep(max(0,t-time.monotonic()))")
COUNT = ("import socket,sys;s=socket.socket(2,2);s.setsockopt(1,8,1<<24);s.bind((%r,%d));s.settimeout(2)\n"
         "print('ready',file=sys.stderr,flush=True);n=0\n"
         "while True:\n try: s.recv(4096); n+=1\n except OSError: break\nprint(n)")


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def build() -> None:
    sh("ip", "netns", "add", SRC)
    sh("ip", "netns", "add", DST)
    sh("ip", "link", "add", "qbs", "netns", SRC, "type", "veth", "peer", "name", "qbd", "netns", DST)
    for ns, dev, ip in ((SRC, "qbs", SRC_IP), (DST, "qbd", DST_IP)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", DST, "iptables", "-A", "INPUT", "-p", "udp", "--dport", str(PORT),
       "-j", "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass")


def teardown() -> None:
    for ns in (SRC, DST):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def inner(backend: str, mode: str, seconds: float, size: int, rate: int) -> dict:
    """Runs in the receiver namespace: the consumer loop, with sender and counter as child processes."""
    from alg.kernel.queue import PacketQueue
    from alg.packet import parse_udp, with_payload
    handled = [0]

    def accept(pkt, verdict, meta):
        handled[0] += 1
        verdict(None, True)

    def rewrite(pkt, verdict, meta):
        handled[0] += 1
        d = parse_udp(pkt)
        verdict(with_payload(pkt, d.payload[::-1] + b"!"), True)

    q = PacketQueue(QUEUE, accept if mode == "accept" else rewrite, backend=backend)
    counter = subprocess.Popen([sys.executable, "-c", COUNT % (DST_IP, PORT)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    counter.stderr.readline()
    sender = subprocess.Popen(["ip", "netns", "exec", SRC, sys.executable, "-c",
                               BLAST % (size, seconds, 50.0 / rate if rate else 0.0, DST_IP, PORT)])
    try:
        t0 = time.monotonic()
        cpu0 = time.process_time()
        end = t0 + seconds + 0.5
        while time.monotonic() < end:
            if select.select([q], [], [], 0.2)[0]:
                q.poll()
        elapsed = time.monotonic() - t0
        sender.wait(30)
        while select.select([q], [], [], 0.3)[0]:          # drain what is still queued
            q.poll()
        cpu = time.process_time() - cpu0
        counters = dict(q.counters)
    finally:
        q.close()
        if sender.poll() is None:
            sender.kill()
    delivered = int(counter.communicate(timeout=30)[0])
    return {"backend": q.backend, "mode": mode, "verdicts": handled[0], "per_s": round(handled[0] / elapsed),
            "cpu_us": round(cpu / max(1, handled[0]) * 1e6, 1),
            "delivered": delivered, "passed_unqueued": max(0, delivered - handled[0]), "counters": counters}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=600, help="UDP payload bytes (a SIP message is 400-1500)")
    ap.add_argument("--rate", type=int, default=0, help="datagrams per second to offer (default: flat out)")
    ap.add_argument("--quick", action="store_true", help="0.3 s per run: a smoke run, not a measurement")
    ap.add_argument("--inner", nargs=2, metavar=("BACKEND", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner[0], args.inner[1], args.seconds, args.size, args.rate)))
        return 0
    if args.quick:
        args.seconds = 0.3
    if os.geteuid() != 0:
        print("queue_bench: needs root (network namespaces, iptables, NFQUEUE)", file=sys.stderr)
        return 2
    from alg.kernel.queue import binding_available
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still tear the namespaces down
    backends = ["netlink"] + (["binding"] if binding_available() else [])
    try:
        build()
        print("%-8s %-8s %10s %10s %12s %10s %s" % ("backend", "mode", "verdicts/s", "verdicts", "CPU us/pkt",
                                                    "unqueued", "counters"))
        for mode in ("accept", "rewrite"):
            for b in backends:
                r = subprocess.run(["ip", "netns", "exec", DST, sys.executable, os.path.abspath(__file__),
                                    "--inner", b, mode, "--seconds", str(args.seconds), "--size", str(args.size),
                                    "--rate", str(args.rate)],
                                   stdout=subprocess.PIPE, check=True, cwd=ROOT,
                                   env=dict(os.environ, QUEUE_BENCH_TAG=TAG))
                res = json.loads(r.stdout)
                print("%-8s %-8s %10d %10d %12.1f %10d %s" % (res["backend"], mode, res["per_s"], res["verdicts"],
                                                              res["cpu_us"], res["passed_unqueued"],
                                                              res["counters"] or ""))
        if "binding" not in backends:
            print("(NetfilterQueue binding not installed: netlink only)")
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
