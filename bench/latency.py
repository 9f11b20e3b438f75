"""One-way latency the router adds, per SIP message kind, for every router mode in one run.

Each mode (bench/routers.py: plain NAT, the kernel helper, a null daemon on each queue
backend, sipalg) gets a lab of its own, all built at once.  A generator on the phone sends
one message at a time on command, a stateless registrar/UAS on the WAN side answers
(bench/responder.py), and inside the router namespace an AF_PACKET socket on each of the
phone's LAN port (lan0) and wan0 takes the kernel's timestamp of every datagram
(bench/stamps.py: SO_TIMESTAMPNS, set when a frame is received from the wire and when it
is handed to the device); a datagram is recognised on both sides by Call-ID, CSeq and
method or status.
Latency = out-timestamp minus in-timestamp of the same datagram.

Messages go round-robin over the modes, one at a time, the order rotating with each
message, so drift and other jobs on the machine hit every mode alike.  One round is a
phone's life: an OPTIONS from its steady port 5060, then from a fresh port a REGISTER, a
refresh, an INVITE with SDP, its ACK, a BYE and an un-REGISTER (Expires 0); each request's
200 is measured coming in.  A benchmark: it prints numbers and asserts nothing.

    sudo python3 bench/latency.py [--rounds 300] [--quick] [--modes plain,helper,...]
                                  [--daemon-arg=--flag ...] [--config UCI]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import sipmsg                                                 # noqa: E402
from bench import responder                                              # noqa: E402
from bench.routers import (LABELS, MODES, add_daemon_options, available, check_modes,  # noqa: E402
                           daemon_note, describe_refusals, lab_router)
from tests.support.lab.netns import PHONES                               # noqa: E402
from bench.stamps import WHAT, Stamps                                    # noqa: E402
from bench.stats import pct, ratio, us                                   # noqa: E402

HERE = os.path.abspath(__file__)
SERVER_SIP = ("203.0.113.10", 5060)
STEPS = ("options", "register", "refresh", "invite", "ack", "bye", "unregister")
# (Call-ID prefix, CSeq number, method or status) -> the row it counts in, in the table's order
KINDS = [
    (("opt", 1, "OPTIONS"), "OPTIONS"),
    (("opt", 1, "200"), "200 OPTIONS (in)"),
    (("reg", 1, "REGISTER"), "REGISTER new"),
    (("reg", 1, "200"), "200 REGISTER (in)"),
    (("reg", 2, "REGISTER"), "REGISTER refresh"),
    (("reg", 2, "200"), "200 refresh (in)"),
    (("call", 1, "INVITE"), "INVITE + SDP"),
    (("call", 1, "200"), "200 + SDP (in)"),
    (("call", 1, "ACK"), "ACK"),
    (("call", 2, "BYE"), "BYE"),
    (("call", 2, "200"), "200 BYE (in)"),
    (("reg", 3, "REGISTER"), "REGISTER expires 0"),
    (("reg", 3, "200"), "200 expires 0 (in)"),
]
KIND_OF = dict(KINDS)


# -- in the phone's namespace: one message per command

def phone(ip: str) -> None:
    """Reads `STEP ROUND` lines; sends that message, waits for its 200; prints `ok` or `lost`."""
    steady = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    steady.bind((ip, 5060))
    cur = None
    tag = None
    for line in sys.stdin:
        step, r = line.split()
        r = int(r)
        port, msg = sipmsg.round_message(step, r, ip, SERVER_SIP, tag)
        if step == "register":
            cur = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            cur.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            cur.bind((ip, port))
        sock = steady if step == "options" else cur
        want = sipmsg.key(msg)
        sock.sendto(msg, SERVER_SIP)
        ok = step == "ack"
        deadline = time.monotonic() + 2.0
        while not ok and time.monotonic() < deadline:
            if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            data = sock.recv(65535)
            k = sipmsg.key(data)
            if k is not None and k[:2] == want[:2] and k[2] == b"200":
                ok = True
                if step == "invite":
                    to = sipmsg.parse(data)[1].get(b"to", b"")
                    tag = to.split(b";tag=", 1)[1].split(b";")[0].decode() if b";tag=" in to else None
        if step == "unregister":
            cur.close()
        print("ok" if ok else "lost", flush=True)


# -- the driver

class ModeLab:
    """One mode: its lab, router, responder, router-side stamps and phone generator."""

    def __init__(self, stack: contextlib.ExitStack, mode: str, i: int, args):
        self.mode = mode
        lab, self.router, self.logdir = lab_router(stack, "lat%d" % i, mode, args)
        self.lab = lab
        responder.start(lab, *SERVER_SIP)
        self.stamps = Stamps(lab, lab.rtr, lan="lan0", wan=lab.wan_if)
        self.phone = lab.popen(lab.ph1, sys.executable, HERE, "--phone", PHONES[0], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
        self.lost = 0

    def step(self, step: str, r: int) -> None:
        self.phone.stdin.write(("%s %d\n" % (step, r)).encode())
        self.phone.stdin.flush()
        if self.phone.stdout.readline().strip() != b"ok":
            self.lost += 1

    def latencies(self, warmup: int) -> dict:
        """{row: [seconds]} from the router's timestamps, rounds before warmup left out."""
        rows = {}
        for cid, cseq, what, t in self.stamps.result():
            prefix, _, r = cid.partition("-")
            n = cseq.split(" ", 1)[0]
            if not r.isdigit() or int(r) < warmup or not n.isdigit():
                continue
            row = KIND_OF.get((prefix, int(n), what))
            if row is None:
                continue
            inward = what.isdigit()
            t0, t1 = (t.get("wan_in"), t.get("lan_out")) if inward else (t.get("lan_in"), t.get("wan_out"))
            if t0 is not None and t1 is not None:
                rows.setdefault(row, []).append((t1 - t0) / 1e9)
        return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300, help="phone lives per mode (default 300)")
    ap.add_argument("--warmup", type=int, default=2, help="first rounds not counted")
    ap.add_argument("--gap-ms", type=float, default=2.0, help="idle time after each message (ms)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES))
    add_daemon_options(ap)
    ap.add_argument("--quick", action="store_true", help="5 rounds: a smoke run, not a measurement")
    ap.add_argument("--phone", metavar="IP", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phone:
        phone(args.phone)
        return 0
    if os.geteuid() != 0:
        print("latency: needs root (network namespaces, nftables, NFQUEUE)", file=sys.stderr)
        return 2
    if args.quick:
        args.rounds, args.warmup = 5, 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = check_modes(modes, args)
    if bad:
        print("latency: " + bad, file=sys.stderr)
        return 2
    skipped = [m for m in modes if not available(m)]
    modes = [m for m in modes if m not in skipped]
    with contextlib.ExitStack() as stack:
        labs = [ModeLab(stack, m, i, args) for i, m in enumerate(modes)]
        t0 = time.monotonic()
        n = 0
        for r in range(args.rounds + args.warmup):
            for step in STEPS:
                k = n % len(labs)
                for ml in labs[k:] + labs[:k]:
                    ml.step(step, r)
                    time.sleep(args.gap_ms / 1000.0)
                n += 1
        elapsed = time.monotonic() - t0
        results = {ml.mode: ml.latencies(args.warmup) for ml in labs}
        routers = [ml.router for ml in labs]
        lost = {ml.mode: ml.lost for ml in labs}
        sipalg = next((ml.router for ml in labs if ml.mode == "sipalg"), None)
        notes = describe_refusals(routers)
    report(modes, results, lost, args, elapsed, sipalg.backend if sipalg else None, skipped, notes)
    return 0


def report(modes, results, lost, args, elapsed, backend, skipped, notes) -> None:
    print("one-way latency added by the router, from %s on its lan0 and wan0" % WHAT)
    print("%d rounds of %d messages per mode (+%d warm-up), modes interleaved per message, %.0f s; "
          "sipalg queue backend: %s%s" % (args.rounds, len(STEPS), args.warmup, elapsed, backend or "-",
                                         daemon_note(args)))
    null = "null-" + backend if backend else None
    floor = pct(results.get(null, {}).get("OPTIONS", []), 50) if null in results else None
    head = "%-20s" % "message" + "".join("%20s" % LABELS[m] for m in modes)
    if "sipalg" in modes:
        head += "%10s%12s" % ("sipalg /", "sipalg /")
    print(head)
    sub = "%-20s" % "" + "".join("%10s%10s" % ("median", "p99") for _ in modes)
    if "sipalg" in modes:
        sub += "%10s%12s" % ("helper", "null OPT.")
    print(sub)
    for _, row in KINDS:
        line = "%-20s" % row
        for m in modes:
            xs = results[m].get(row, [])
            line += "%10s%10s" % (us(pct(xs, 50)), us(pct(xs, 99)))
        if "sipalg" in modes:
            s = pct(results["sipalg"].get(row, []), 50)
            h = pct(results.get("helper", {}).get(row, []), 50)
            line += "%10s%12s" % (ratio(s, h), ratio(s, floor))
        print(line)
    print("%-20s" % "samples / lost" + "".join("%20s" % ("%d / %d" % (sum(len(v) for v in results[m].values()),
                                                                     lost[m])) for m in modes))
    for m in skipped:
        print("%s: skipped (%s)" % (LABELS[m], "the NetfilterQueue binding is not installed"))
    for line in notes:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
