"""The daemon's RSS idle, holding 1k and 10k registrations, and holding 1k calls.

sipalg runs in the lab's router (bench/routers.py); everything reaches it through the
real kernel path.  Phones are many LAN addresses on the phone namespace (10.0.0.10 and
up, --per-host registrations each, one source port apiece), registering with a WAN
registrar that grants an hour (bench/responder.py); calls are INVITEs with SDP answered
with SDP, then ACKed (confirmed, media bindings open).  Registrations are one daemon's
life (idle, 1k, 10k); calls a fresh daemon's (idle, 1k), so neither hides in the other.
RSS is VmRSS from /proc/PID/status once the daemon has written its status for what it
holds.  What the daemon held is printed beside it (registrations, calls, bindings from
its status) with what it refused (log and counters): a capped or overrun run shows as
such, never as a measurement of what it was asked to hold.  A benchmark: it prints
numbers and asserts nothing.

    sudo python3 bench/memory.py [--registrations 1000,10000] [--calls 1000] [--per-host 100]
                                 [--quick] [--daemon-arg=--flag ...] [--config UCI]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import sipmsg                                   # noqa: E402
from bench import responder                                                    # noqa: E402
from bench.routers import Router, add_daemon_options, daemon_note, describe_refusals, rss_kb  # noqa: E402
from tests.support.lab.netns import Lab, SERVER           # noqa: E402
from tests.support.lab.peers import _env                  # noqa: E402

HERE = os.path.abspath(__file__)
SERVER_SIP = (SERVER, 5060)
FIRST_HOST = 10                      # 10.0.0.10 and up on the phone namespace


def phones(first: int, count: int, per_host: int):
    """[(ip, sip port, media port, n)] for items first..first+count-1, per_host on each address."""
    out = []
    for n in range(first, first + count):
        host, k = divmod(n, per_host)
        out.append(("10.0.0.%d" % (FIRST_HOST + host), 10000 + 2 * k, 40000 + 2 * k, n))
    return out


# -- in the phone's namespace: many phones, a window of transactions in flight

def bulk(job: dict) -> dict:
    """REGISTER (or INVITE then ACK) from each phone of the job, `window` at a time, resent
    after `timeout` up to `tries` times; one socket per phone, closed once answered."""
    todo = [tuple(p) for p in reversed(job["phones"])]
    window, timeout, tries = job.get("window", 32), job.get("timeout", 4.0), job.get("tries", 3)
    invite = job["kind"] == "invite"
    sel = selectors.DefaultSelector()
    flight = {}                      # socket -> [message, sent at, tries, phone]
    answered = sent = 0
    t0 = time.monotonic()

    def message(ph):
        ip, port, media, n = ph
        if invite:
            return sipmsg.request("INVITE", "sip:uas@%s:%d" % SERVER_SIP, (ip, port), "mi%d" % n, "mcall-%d" % n, 1,
                                  user="m%d" % n, from_tag="f%d" % n, body=sipmsg.sdp(ip, media))
        aor = "sip:m%d@%s" % (n, SERVER)
        return sipmsg.request("REGISTER", "sip:" + SERVER, (ip, port), "mr%d" % n, "mreg-%d" % n, 1, user="m%d" % n,
                              to_uri=aor, from_tag="f%d" % n, expires=job.get("expires", 3600))

    while todo or flight:
        while todo and len(flight) < window:
            ph = todo.pop()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(ph[:2])
            msg = message(ph)
            s.sendto(msg, SERVER_SIP)
            sent += 1
            flight[s] = [msg, time.monotonic(), 1, ph]
            sel.register(s, selectors.EVENT_READ)
        for k, _ in sel.select(0.05):
            s = k.fileobj
            data = s.recv(65535)
            if not data.startswith(b"SIP/2.0 200"):
                continue
            msg, _, _, ph = flight.pop(s)
            if invite:
                h = sipmsg.parse(data)[1]
                tag = h.get(b"to", b"").split(b";tag=", 1)[-1].decode()
                n = ph[3]
                s.sendto(sipmsg.request("ACK", "sip:uas@%s:%d" % SERVER_SIP, ph[:2], "ma%d" % n, "mcall-%d" % n, 1,
                                        user="m%d" % n, to_uri="sip:uas@%s:%d" % SERVER_SIP, from_tag="f%d" % n,
                                        to_tag=tag), SERVER_SIP)
            answered += 1
            sel.unregister(s)
            s.close()
        now = time.monotonic()
        for s, f in list(flight.items()):
            if now - f[1] > timeout:
                if f[2] >= tries:
                    del flight[s]
                    sel.unregister(s)
                    s.close()
                else:
                    s.sendto(f[0], SERVER_SIP)
                    f[1], f[2] = now, f[2] + 1
                    sent += 1
    return {"answered": answered, "sent": sent, "seconds": time.monotonic() - t0}


# -- the driver

class MemoryLab:
    def __init__(self, lab: Lab, args):
        self.lab, self.args = lab, args
        self.logdir = tempfile.mkdtemp(prefix="sipalg-memory-")
        self.router = None
        self.hosts = 0
        responder.start(lab, *SERVER_SIP)

    def start(self) -> None:
        if self.router is not None:
            self.router.stop()
        logdir = tempfile.mkdtemp(prefix="daemon-", dir=self.logdir)      # its own log: refusals of one life
        self.router = Router(self.lab, "sipalg", logdir, self.args.daemon_arg, self.args.config).start()

    def add_hosts(self, upto: int) -> None:
        while self.hosts < upto:
            self.lab.run(self.lab.ph1, "ip", "addr", "add", "10.0.0.%d/24" % (FIRST_HOST + self.hosts), "dev", "eth0")
            self.hosts += 1

    def drive(self, kind: str, items) -> dict:
        self.add_hosts(max(int(ip.rsplit(".", 1)[1]) for ip, _, _, _ in items) - FIRST_HOST + 1)
        job = {"kind": kind, "phones": items}
        r = self.lab.run(self.lab.ph1, sys.executable, HERE, "--bulk", input=json.dumps(job).encode(),
                         timeout=3600)
        return json.loads(r.stdout)

    def sample(self, what: str, drove=None) -> dict:
        st = self.router.alg.status()                   # waits for the next write: it holds what we sent
        time.sleep(0.5)
        st = self.router.status() or st
        size = os.path.getsize(os.path.join(self.router.alg.state_dir, "status.json"))
        c = st.get("counters", {})
        t = st.get("totals", {})                        # the lists hold only their first entries
        return {"what": what, "rss": self.router.rss_kb(), "regs": t.get("registrations", 0),
                "calls": t.get("calls", 0), "bindings": t.get("bindings", 0) + t.get("pinholes", 0),
                "unchanged": c.get("unchanged", 0), "status_kb": size / 1024.0, "drove": drove}


def interpreter_kb(*flags: str) -> int:
    """VmRSS of this interpreter started as the daemon is (same environment), doing nothing: the
    floor under every figure.  With "-S" it skips site (this machine's .pth files, which load
    what the daemon never asks for)."""
    p = subprocess.Popen([sys.executable, *flags, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
    try:
        p.stdout.readline()
        return rss_kb(p.pid) or 0
    finally:
        p.communicate(b"")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registrations", default="1000,10000", help="registration counts to hold, rising")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--per-host", type=int, default=100, help="registrations (and calls) per LAN address")
    add_daemon_options(ap)
    ap.add_argument("--quick", action="store_true", help="100 and 200 registrations, 50 calls: a smoke run")
    ap.add_argument("--bulk", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bulk:
        print(json.dumps(bulk(json.load(sys.stdin))))
        return 0
    if os.geteuid() != 0:
        print("memory: needs root (network namespaces, nftables, NFQUEUE)", file=sys.stderr)
        return 2
    if args.quick:
        args.registrations, args.calls, args.per_host = "100,200", 50, 20
    try:
        targets = [int(x) for x in args.registrations.split(",")]
    except ValueError:
        print("memory: --registrations %r: give counts, comma-separated" % args.registrations, file=sys.stderr)
        return 2
    if (max(targets + [args.calls]) + args.per_host - 1) // args.per_host > 245:
        print("memory: more than 245 LAN addresses needed: raise --per-host", file=sys.stderr)
        return 2
    rows = []
    with Lab(tag="mem") as lab:
        ml = MemoryLab(lab, args)
        try:
            ml.start()
            rows.append(ml.sample("idle"))
            held = 0
            for n in targets:
                d = ml.drive("register", phones(held, n - held, args.per_host))
                held = n
                rows.append(ml.sample("%d registrations" % n, d))
            notes = describe_refusals([ml.router])
            ml.start()
            rows.append(ml.sample("idle (fresh daemon)"))
            if args.calls:
                d = ml.drive("invite", phones(0, args.calls, args.per_host))
                rows.append(ml.sample("%d calls" % args.calls, d))
            notes += describe_refusals([ml.router])
            backend = ml.router.backend
        finally:
            if ml.router is not None:
                ml.router.stop()
    report(rows, args, backend, notes)
    print("the interpreter alone, started as the daemon is: %.1f MB; without site (-S): %.1f MB"
          % (interpreter_kb() / 1024.0, interpreter_kb("-S") / 1024.0))
    return 0


def report(rows, args, backend, notes) -> None:
    print("sipalg daemon RSS (VmRSS); queue backend %s; %d per LAN address%s" % (
        backend, args.per_host, daemon_note(args)))
    print("%-22s %10s %8s %7s %9s %11s %10s %9s %12s" % ("holding", "RSS", "regs", "calls", "bindings", "unchanged",
                                                        "answered", "seconds", "status.json"))
    base = None
    for r in rows:
        d = r["drove"]
        print("%-22s %7.1f MB %8d %7d %9d %11d %10s %9s %9.0f kB" % (
            r["what"], r["rss"] / 1024.0, r["regs"], r["calls"], r["bindings"], r["unchanged"],
            "%d/%d" % (d["answered"], d["sent"]) if d else "", "%.1f" % d["seconds"] if d else "", r["status_kb"]))
        if r["what"].startswith("idle"):
            base = r
        elif base is not None:
            n = r["calls"] if "calls" in r["what"] else r["regs"]
            if n:
                print("%-22s %7.1f kB" % ("  per " + ("call" if "calls" in r["what"] else "registration"),
                                          (r["rss"] - base["rss"]) / n))
    print("(regs, calls, bindings: what the daemon's status holds; unchanged: datagrams it passed unrewritten; "
          "answered: 200 OKs the phones got / requests sent, with resends)")
    for line in notes:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
