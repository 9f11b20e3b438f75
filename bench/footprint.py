"""What a message costs the engine when the CPU comes back from idle: per message kind,
the Python functions it runs (calls and distinct functions), its time warm, and its time
right after an idle gap, as the daemon meets every datagram of a quiet router.

The lab's latency figures (bench/latency.py) are set by how cold the daemon is when a
datagram arrives, not by its work warm: on this machine's VM a no-op call right after
2 ms of idle takes several microseconds.  Cold time then grows with the code a message
touches, roughly with its distinct functions, which is what this prints beside it.
The messages are the latency run's (bench/sipmsg.py round_message, the same order: OPTIONS; a
REGISTER, its refresh and its un-REGISTER; INVITE with SDP, ACK, BYE; each request's
200 coming back), through the engine alone (no queue, no kernel):

    python3 bench/footprint.py [--rounds 300] [--gap-ms 2] [--quick]

A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alg.core.config import Config           # noqa: E402
from alg.core.engine import Engine, IN, OUT   # noqa: E402
from bench import sipmsg                      # noqa: E402

PHONE_IP = "10.0.0.2"
SERVER = ("203.0.113.10", 5060)
WAN_IP = "203.0.113.1"
RAISED = ("limit_host_bindings", "limit_host_registrations", "limit_host_calls", "limit_bindings",
          "limit_registrations", "limit_calls")
# the latency run's steps: (step, its request's label, its 200's label or None)
STEPS = (("options", "OPTIONS", "200 OPTIONS (in)"),
         ("register", "REGISTER new", "200 REGISTER (in)"),
         ("refresh", "REGISTER refresh", "200 refresh (in)"),
         ("invite", "INVITE + SDP", "200 + SDP (in)"),
         ("ack", "ACK", None),
         ("bye", "BYE", "200 BYE (in)"),
         ("unregister", "REGISTER expires 0", "200 expires 0 (in)"))


class Profile:
    """Python calls, distinct functions (file:name) and C calls of what runs inside it."""

    def __init__(self):
        self.calls = collections.Counter()
        self.c_calls = 0

    def _hook(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code.co_filename != __file__:                # not the bench's own lambda
                self.calls[(os.path.basename(code.co_filename), code.co_name)] += 1
        elif event == "c_call":
            self.c_calls += 1

    def __enter__(self):
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def one_round(e: Engine, r: int, now: float, on_message) -> None:
    """Every message of round r through the engine; on_message(label, run) runs each one.
    Timers run first, as the daemon's loop runs them between datagrams."""
    e.expire(now)
    tag = None
    for step, label, answer_label in STEPS:
        port, msg = sipmsg.round_message(step, r, PHONE_IP, SERVER, tag)
        src = (PHONE_IP, port)
        res = on_message(label, lambda: e.handle(OUT, src, SERVER, msg, now))
        if answer_label is None:
            continue
        b = e.lookup_lan(src)
        sent = res.payload if res.payload is not None else msg
        ok = sipmsg.answer(sent, SERVER)
        if step == "invite":
            to = sipmsg.parse(ok)[1].get(b"to", b"")
            tag = to.split(b";tag=", 1)[1].split(b";")[0].decode() if b";tag=" in to else None
        dst = (WAN_IP, b.wan[1] if b is not None else src[1])
        on_message(answer_label, lambda: e.handle(IN, SERVER, dst, ok, now))


def measure(rounds: int, gap: float) -> dict:
    """label -> {calls, distinct, c_calls, status, modules, warm, cold}: the profile of one round, the
    times of every other (their medians are printed)."""
    # one phone holds every round's state: the per-host caps raised as the latency run's --config does
    cfg = Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], **{k: 65535 for k in RAISED})
    out = {label: {"warm": [], "cold": []} for _s, *labels in STEPS for label in labels if label}
    clock = time.perf_counter

    def profiled(label, run):
        with Profile() as p:
            res = run()
        o = out[label]
        o["calls"], o["distinct"], o["c_calls"] = sum(p.calls.values()), len(p.calls), p.c_calls
        o["status"] = res.status
        o["modules"] = collections.Counter(f for f, _n in p.calls)
        return res

    def timed(which):
        def run_one(label, run):
            if which == "cold":
                time.sleep(gap)
            t0 = clock()
            res = run()
            out[label][which].append(clock() - t0)
            return res
        return run_one

    e = Engine(cfg)
    one_round(e, 0, 0.0, lambda label, run: run())          # first sight of every code path
    one_round(e, 1, 1.0, profiled)
    for r in range(2, 2 + rounds):                          # warm and cold in alternate blocks of 10 rounds
        one_round(e, r, float(r), timed("warm" if (r // 10) % 2 else "cold"))
    floor = []
    for _ in range(max(rounds // 2, 5)):
        time.sleep(gap)
        t0 = clock()
        _nothing()
        floor.append(clock() - t0)
    out["_floor"] = _median(floor)
    return out


def _nothing():
    return None


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300,
                    help="rounds of the latency run's messages (half warm, half cold)")
    ap.add_argument("--gap-ms", type=float, default=2.0, help="idle before each cold message (ms), as latency.py's")
    ap.add_argument("--quick", action="store_true", help="20 rounds: a smoke run, not a measurement")
    args = ap.parse_args(argv)
    rounds = 20 if args.quick else args.rounds
    res = measure(rounds, args.gap_ms / 1000.0)
    floor = res.pop("_floor")
    print("engine footprint per message (%s %s), %d rounds, cold = after %.1f ms idle; medians"
          % (sys.implementation.name, ".".join(str(x) for x in sys.version_info[:3]), rounds, args.gap_ms))
    print("%-22s %9s %9s %8s %10s %10s %11s  %s" % ("message", "py calls", "distinct", "C calls", "warm", "cold",
                                                    "idle cost", "engine said"))
    for label, o in res.items():
        warm, cold = _median(o["warm"]) * 1e6, _median(o["cold"]) * 1e6
        print("%-22s %9d %9d %8d %7.1f µs %7.1f µs %8.1f µs  %s" % (
            label, o["calls"], o["distinct"], o["c_calls"], warm, cold, (cold - warm) / max(o["distinct"], 1),
            o["status"]))
    print("idle cost: (cold - warm) per distinct function")
    print("a no-op call after the same idle: %.1f µs" % (floor * 1e6))
    worst = max(res, key=lambda k: res[k]["distinct"])
    print("%s: distinct functions by file: %s" % (worst, ", ".join(
        "%s %d" % kv for kv in res[worst]["modules"].most_common())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
