"""The sustained call set-up rate each router mode keeps with p99 set-up delay under 100 ms.

Plain NAT, the kernel helper and sipalg (bench/routers.py) each get a lab of their own.
At each rate, in turn for every mode (the order rotating), a sipp UAC on the phone calls
a sipp UAS on the WAN side at `-r RATE` for a few seconds (bench/scenarios/uac_setup.xml:
INVITE with SDP on a port of the call's own, ACK, BYE; no hold by default).  Set-up delay is
INVITE sent to 200 OK received, from kernel timestamps on the phone's own interface
(bench/stamps.py; sipp's -trace_rtt counts whole milliseconds).  A rate passes when every
call completed, p99 < 100 ms, sipp really offered the rate (>= 95%), and, for sipalg, every
SIP datagram reached the daemon (none passed by the kernel's fail-open unseen: the nft
queue rules' counters against the daemon's `queued`).  A mode stops at its first failing
rate (the result says which test failed).  plain NAT's figure is the lab's own ceiling:
sipp UAC and UAS on this machine.
A benchmark: it prints numbers and asserts nothing.

    sudo python3 bench/callrate.py [--rates 50,100,...] [--seconds 5] [--hold-ms 0] [--quick]
                                   [--daemon-arg=--flag ...] [--config UCI]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.routers import (LABELS, add_daemon_options, daemon_note, describe_refusals,  # noqa: E402
                           lab_router, queued_by_kernel, check_modes)
from bench.stamps import WHAT, Stamps                                              # noqa: E402
from bench.stats import pct                                                        # noqa: E402
from tests.support.lab.netns import PHONES, SERVER                                 # noqa: E402
from tests.support.lab.peers import Sipp                                           # noqa: E402

MODES = ("plain", "helper", "sipalg")
UAC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "uac_setup.xml")
RATES = "10,25,50,100,200,300,400,600,800,1000,1500,2000,3000,4000"
LIMIT = 0.100                       # p99 set-up delay, seconds


class RateLab:
    def __init__(self, stack: contextlib.ExitStack, mode: str, i: int, args):
        self.mode = mode
        self.lab, self.router, self.logdir = lab_router(stack, "cr%d" % i, mode, args)
        self.best = None
        self.done = False

    def run(self, rate: int, seconds: float, hold_ms: int) -> dict:
        lab, calls = self.lab, max(1, int(rate * seconds))
        d = tempfile.mkdtemp(prefix="r%d-" % rate, dir=self.logdir)
        before = self._seen()
        cpu0 = self.router.cpu_seconds()
        uas = Sipp(lab, lab.wan, "uas.xml", SERVER, d, rtp=20000, calls=calls, duration_ms=0, name="uas").start()
        stamps = Stamps(lab, lab.ph1, ph="eth0")
        time.sleep(0.3)
        t0 = time.monotonic()
        uac = Sipp(lab, lab.ph1, UAC, PHONES[0], d, remote="%s:5060" % SERVER, calls=calls, duration_ms=hold_ms,
                   name="uac", extra=["-r", str(rate), "-l", str(max(50, rate)),
                                      "-timeout", "%ds" % (seconds + 15)]).start()
        try:
            rc = uac.wait(seconds + 25)
        finally:
            for p in (uac, uas):
                if p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()
        elapsed = time.monotonic() - t0
        cpu = self.router.cpu_seconds()
        sent, answered = {}, {}
        for cid, cseq, what, t in stamps.result():
            if cseq == "1 INVITE" and what == "INVITE" and "ph_out" in t:
                sent[cid] = t["ph_out"]
            elif cseq == "1 INVITE" and what == "200" and "ph_in" in t:
                answered[cid] = t["ph_in"]
        delays = [(answered[c] - sent[c]) / 1e9 for c in sent if c in answered]
        span = (max(sent.values()) - min(sent.values())) / 1e9 if len(sent) > 1 else 0.0
        achieved = (len(sent) - 1) / span if span else 0.0
        unseen = None
        if before is not None:
            after = self._seen(fresh=True)
            unseen = max(0, (after[0] - before[0]) - (after[1] - before[1]))
        res = {"rate": rate, "calls": calls, "answered": len(delays), "rc": rc, "achieved": achieved,
               "p50": pct(delays, 50), "p99": pct(delays, 99), "unseen": unseen,
               "cpu": (cpu - cpu0) / elapsed if cpu is not None and cpu0 is not None else None}
        why = [w for w, bad in (("p99", res["p99"] is None or res["p99"] >= LIMIT),
                                ("unanswered", len(delays) < calls), ("offered", achieved < 0.95 * rate),
                                ("unseen", bool(unseen)), ("sipp exit %s" % rc, rc != 0)) if bad]
        res["result"] = "FAIL: " + ", ".join(why) if why else "pass"
        return res

    def _seen(self, fresh: bool = False):
        """(packets the kernel queued, packets the daemon saw): sipalg only."""
        if self.router.alg is None:
            return None
        st = self.router.alg.status() if fresh else self.router.status()
        c = st.get("counters", {})
        return queued_by_kernel(self.lab), c.get("queued", 0) + c.get("not_udp", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=RATES, help="calls per second to try, in order (default %s)" % RATES)
    ap.add_argument("--seconds", type=float, default=5.0, help="how long each rate runs (default 5)")
    ap.add_argument("--hold-ms", type=int, default=0, help="ACK to BYE (default 0)")
    ap.add_argument("--modes", default=",".join(MODES))
    add_daemon_options(ap)
    ap.add_argument("--quick", action="store_true", help="two low rates for 1 s: a smoke run, not a measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("callrate: needs root (network namespaces, nftables, NFQUEUE)", file=sys.stderr)
        return 2
    if args.quick:
        args.rates, args.seconds = "20,50", 1.0
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        print("callrate: --rates %r: give calls per second, comma-separated" % args.rates, file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    bad = check_modes(modes, args, MODES)
    if bad:
        print("callrate: " + bad, file=sys.stderr)
        return 2
    print("call set-up: INVITE sent -> 200 OK received at the calling phone, from %s on its eth0; "
          "sipp UAC -> sipp UAS, %g s per rate, hold %d ms%s" % (WHAT, args.seconds, args.hold_ms,
                                                                 daemon_note(args)))
    print("%6s  %-14s %7s %7s %10s %9s %9s %11s %7s  %s" % ("rate", "mode", "calls", "done", "offered/s", "p50",
                                                           "p99", "daemon CPU", "unseen", "result"))
    with contextlib.ExitStack() as stack:
        labs = [RateLab(stack, m, i, args) for i, m in enumerate(modes)]
        for n, rate in enumerate(rates):
            k = n % len(labs)
            for rl in labs[k:] + labs[:k]:
                if rl.done:
                    continue
                r = rl.run(rate, args.seconds, args.hold_ms)
                if r["result"] == "pass":
                    rl.best = rate
                else:
                    rl.done = True
                print("%6d  %-14s %7d %7d %10.0f %9s %9s %11s %7s  %s" % (
                    rate, LABELS[rl.mode], r["calls"], r["answered"], r["achieved"], ms(r["p50"]), ms(r["p99"]),
                    "-" if r["cpu"] is None else "%.0f%%" % (100 * r["cpu"]), "-" if r["unseen"] is None
                    else r["unseen"], r["result"]), flush=True)
            if all(rl.done for rl in labs):
                break
        notes = describe_refusals([rl.router for rl in labs])
        best = [(rl, rl.best) for rl in labs]
    print("highest rate with p99 set-up delay < %d ms: %s" % (LIMIT * 1000, ", ".join(
        "%s %s" % (LABELS[rl.mode], ("≥%d/s (the highest tried)" if b == rates[-1] else "%d/s") % b if b else "none")
        for rl, b in best)))
    if "plain" in modes:
        print("(plain NAT's figure is the lab's own ceiling: sipp UAC and UAS on this machine; a mode that "
              "reaches it is at least that fast)")
    for line in notes:
        print(line)
    return 0


def ms(x) -> str:
    return "-" if x is None else "%.2f ms" % (x * 1000)


if __name__ == "__main__":
    sys.exit(main())
