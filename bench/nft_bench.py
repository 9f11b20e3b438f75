"""Cost of one kernel change: the in-process nf_tables writer against `nft -f -` per change.

In a network namespace of its own (root), the daemon's table is installed
and, round after round, the same changes are made each way, interleaved
(the order rotates between rounds so drift, and what one way leaves the
kernel to finish, hits every way alike):

- one element: add, refresh, delete of a `sip_wanports` element;
- one signalling binding (what one REGISTER changes): its `lan2wan`,
  `sip2lan` and `sip_wanports` elements, opened, refreshed, closed.

Ways: "writer" (alg/kernel/nf_tables.py; refresh in place where the kernel
updates timeouts), "writer-fallback" (refresh as delete + add in one batch,
as on 6.1/6.6), and "nft -f" (NftTable.apply(): what the daemon does today).
Wall-clock microseconds per change, median and p99.  A benchmark: it prints
numbers, it asserts nothing.  (An nft process that follows deletes pays
for them when it closes its socket: the kernel then waits for the deleted
elements' RCU-deferred destruction.  The writer's socket stays open.  A
short pause between ways lets the kernel's deferred work after an nft
process finish, which would otherwise land on the next way's first call;
the writer's first request after that idle time is timed on its own.)

    sudo python3 bench/nft_bench.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
INNER = "NFT_BENCH_INNER"

from bench.stats import pct    # noqa: E402


def run(rounds: int) -> None:
    from alg.core import actions as A
    from alg.core.bindings import Binding
    from alg.kernel.nf_tables import NfTables
    from alg.kernel.nftables import NftTable

    table = NftTable("wan0", "br0", "203.0.113.1", [5060], use_nft_queue=False)
    subprocess.run(["nft", "-f", "-"], input=table.ruleset().encode(), check=True)
    writer = NfTables("ip", "sipalg")
    fallback = NfTables("ip", "sipalg", timeout_update=False)

    def w_one(nft, op, port):
        b = nft.batch()
        if op == "add":
            b.add("sip_wanports", port, timeout=60)
        elif op == "refresh":
            b.refresh("sip_wanports", port, timeout=120)
        else:
            b.delete("sip_wanports", port)
        assert b.commit() == []

    def n_one(op, port):
        line = {"add": "add element ip sipalg sip_wanports { %d timeout 60s }\n",
                "refresh": "delete element ip sipalg sip_wanports { %d }\n"
                           "add element ip sipalg sip_wanports { %d timeout 120s }\n",
                "delete": "delete element ip sipalg sip_wanports { %d }\n"}[op]
        subprocess.run(["nft", "-f", "-"], input=(line.replace("%d", str(port))).encode(), check=True)

    def w_binding(nft, op, port):
        lan = ("10.0.%d.%d" % (port >> 8 & 0xFF, port & 0xFF or 1), 5060)
        b = nft.batch()
        if op == "add":
            b.add("lan2wan", lan, port, timeout=60).add("sip2lan", port, lan, timeout=60)
            b.add("sip_wanports", port, timeout=60)
        elif op == "refresh":
            b.refresh("lan2wan", lan, port, timeout=120).refresh("sip2lan", port, lan, timeout=120)
            b.refresh("sip_wanports", port, timeout=120)
        else:
            b.delete("lan2wan", lan).delete("sip2lan", port).delete("sip_wanports", port)
        assert b.commit() == []

    kinds = {"add": A.OPEN, "refresh": A.REFRESH, "delete": A.CLOSE}

    def n_binding(op, port):
        lan = ("10.0.%d.%d" % (port >> 8 & 0xFF, port & 0xFF or 1), 5060)
        b = Binding(lan, ("203.0.113.1", port), "sip", expires=time.monotonic() + (60 if op == "add" else 120))
        assert table.apply([A.Action(kinds[op], b)], time.monotonic()) == 0

    ways = [("writer", lambda f, op, p: f(writer, op, p), (w_one, w_binding)),
            ("writer-fallback", lambda f, op, p: f(fallback, op, p), (w_one, w_binding)),
            ("nft -f", lambda f, op, p: f(op, p), (n_one, n_binding))]
    times = {}
    idle = []
    for r in range(rounds):
        order = ways[r % 3:] + ways[:r % 3]
        for wi, (name, call, fns) in enumerate(order):
            time.sleep(0.02)                # what the previous way left the kernel to do is done first
            if name != "nft -f":            # a request after idle pays for waking up: timed on its own
                t0 = time.perf_counter()
                (writer if name == "writer" else fallback).table_exists()
                idle.append((time.perf_counter() - t0) * 1e6)
            for what, fn in zip(("element", "binding"), fns):
                port = 10000 + (r * 8 + wi * 2 + (what == "binding")) % 50000
                for op in ("add", "refresh", "delete"):
                    t0 = time.perf_counter()
                    call(fn, op, port)
                    times.setdefault((what, op, name), []).append((time.perf_counter() - t0) * 1e6)
    print("kernel %s, %d rounds, refresh in place: %s" % (platform.release(), rounds, writer.timeout_update))
    print("%-8s %-8s %-16s %12s %12s" % ("change", "op", "way", "median us", "p99 us"))
    for what in ("element", "binding"):
        for op in ("add", "refresh", "delete"):
            for name, _c, _f in ways:
                xs = times[(what, op, name)]
                print("%-8s %-8s %-16s %12.0f %12.0f" % (what, op, name, pct(xs, 50), pct(xs, 99)))
    print("first request after 20 ms idle (GETTABLE, writer socket): median %.0f us, p99 %.0f us"
          % (pct(idle, 50), pct(idle, 99)))
    writer.close()
    fallback.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="3 rounds: a smoke run, not a measurement")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    if os.environ.get(INNER):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        run(args.rounds)
        return 0
    if os.geteuid() != 0:
        print("nft_bench: needs root (a network namespace of its own, nftables)", file=sys.stderr)
        return 2
    return subprocess.run(["unshare", "--net", "--", sys.executable, os.path.abspath(__file__),
                           "--rounds", str(args.rounds)], env=dict(os.environ, **{INNER: "1"})).returncode


if __name__ == "__main__":
    sys.exit(main())
