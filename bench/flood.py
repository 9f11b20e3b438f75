"""SIP floods from either side: what became of every datagram, what it cost the daemon,
and whether a legitimate registration and call still went through.

Each flood runs against a fresh sipalg (bench/routers.py) on one queue backend, for
--seconds at each rate, from a raw socket (any source address and port, every datagram
built on the fly, paced in bursts of 50), and, just before it in the same lab, the same
flood through plain NAT (--modes): what the kernel's own NAT loses under it is the
baseline for what sipalg loses, since every datagram sipalg passes unrewritten (over a
cap or lan_sip_rate) is plain NAT too:

  lan-options        OPTIONS from one phone port                       -> a WAN sink
  lan-register       REGISTERs, each from a new LAN address:port       -> a WAN sink (new bindings)
  lan-invite         INVITEs with SDP, each from a new address:port    -> a WAN sink (new dialogs, media)
                     (50,000 address:ports, then the same again: a NAT has ~64k ports per destination)
  wan-options-peer   OPTIONS from the registrar's own address:port     -> a registered phone's WAN port
  wan-invite-peer    INVITEs with SDP, from the registrar              -> the same
  wan-options-other  OPTIONS from a host that is no peer of the phone  -> the same
  wan-invite-other   INVITEs from it                                   -> the same

Every datagram carries its sequence number in its Call-ID; the receiving side (the sink
on 203.0.113.20, or the phone itself) counts each one as rewritten (its Via, or for
inbound its Request-URI, names the other side's mapping), unmodified, or, never seen,
not delivered.  Not delivering is the bar's failure for every kind but the two from a
non-peer, which a router that admits inbound SIP only from a phone's peers turns away.
Meanwhile: the daemon's CPU (utime+stime per second) and RSS each second, what the
kernel queued against what the daemon saw (the difference passed fail-open, unseen), and
two seconds in, a phone on the other LAN address registers with kamailio and is called
through it.  A benchmark: it prints numbers and asserts nothing.

    sudo python3 bench/flood.py [--rates 1000,5000,20000] [--seconds 10] [--kinds ...]
                                [--modes plain,sipalg] [--backends netlink,binding] [--quick]
                                [--daemon-arg=--flag ...]
"""

from __future__ import annotations

import argparse
import array
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import sipmsg                                                          # noqa: E402
from bench.routers import (Router, add_daemon_options, conntrack_drops, daemon_note,  # noqa: E402
                           describe_refusals, queue_state, queued_by_kernel)
from tests.support.lab.netns import Lab, PHONES, ROUTER_WAN, SERVER               # noqa: E402
from tests.support.lab.peers import Kamailio, Sipp                                # noqa: E402
from alg.statusfile import MIN_INTERVAL                                           # noqa: E402

HERE = os.path.abspath(__file__)
# sipalg's status shows what happened by then once this has passed (it is rewritten at most
# every MIN_INTERVAL while things change); plain NAT has no status to wait for
STATUS_SETTLE = MIN_INTERVAL + 0.3
SINK = "203.0.113.20"                  # where LAN floods go (kamailio keeps SERVER:5060)
OTHER = "203.0.113.66"                 # a WAN host that is no peer of the phone
KINDS = ("lan-options", "lan-register", "lan-invite", "wan-options-peer", "wan-invite-peer",
         "wan-options-other", "wan-invite-other")
SO_RCVBUFFORCE = 33                              # root: a receive buffer past net.core.rmem_max
PER_HOST = 5000                        # LAN floods: new source ports per address (10.0.0.10-19) before the next
SOURCES = 50000                        # ... and how many address:ports before they come round again


# -- the flood, in the sending namespace

def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(array.array("H", data))


def udp_packet(src, dst, payload: bytes) -> bytes:
    """IPv4 + UDP with a real checksum (the kernel fills in the IP header's own)."""
    length = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    udp = struct.pack("!HHHH", src[1], dst[1], length, 0)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, length)
    s = _sum16(pseudo + udp + payload)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF or 0xFFFF
    return ip + udp[:6] + struct.pack("=H", c) + payload          # native order: summed that way


def datagram(kind: str, seq: int, target: tuple):
    """(source, destination, payload) of datagram seq of a flood; target: where WAN floods go."""
    cid = "fl-%d" % seq
    if kind.startswith("lan-"):
        host, k = divmod(seq % SOURCES, PER_HOST)
        src = (PHONES[0], 5070) if kind == "lan-options" else ("10.0.0.%d" % (10 + host), 10000 + 2 * k)
        dst = (SINK, 5060)
        if kind == "lan-options":
            msg = sipmsg.request("OPTIONS", "sip:sink@%s" % SINK, src, "o%d" % seq, cid, 1)
        elif kind == "lan-register":
            msg = sipmsg.request("REGISTER", "sip:" + SINK, src, "r%d" % seq, cid, 1, user="f%d" % seq,
                                 to_uri="sip:f%d@%s" % (seq, SINK), expires=3600)
        else:
            msg = sipmsg.request("INVITE", "sip:sink@%s" % SINK, src, "i%d" % seq, cid, 1,
                                 body=sipmsg.sdp(src[0], src[1] + 20000))
        return src, dst, msg
    src = (SERVER, 5060) if kind.endswith("-peer") else (OTHER, 5060)
    ruri = "sip:alice@%s:%d" % target
    body = sipmsg.sdp(src[0], 30000 + 2 * (seq % 10000)) if "invite" in kind else b""
    msg = sipmsg.request("INVITE" if body else "OPTIONS", ruri, src, "w%d" % seq, cid, 1, user="caller",
                         to_uri="sip:alice@%s" % target[0], body=body)
    return src, target, msg


def generate(job: dict) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    kind, rate, seconds, target = job["kind"], job["rate"], job["seconds"], tuple(job["target"])
    total = int(rate * seconds)
    gap = 50.0 / rate
    sent = errors = 0
    t0 = t = time.monotonic()
    end = t0 + seconds                 # a machine that can't offer the rate floods as fast as it can, as long
    seq = 0
    while seq < total and time.monotonic() < end:
        for _ in range(min(50, total - seq)):
            src, dst, msg = datagram(kind, seq, target)
            try:
                s.sendto(udp_packet(src, dst, msg), (dst[0], 0))
                sent += 1
            except OSError:
                errors += 1
            seq += 1
        t += gap
        time.sleep(max(0.0, t - time.monotonic()))
    return {"sent": sent, "errors": errors, "seconds": time.monotonic() - t0}


# -- the receiving side

def sink(job: dict) -> None:
    """Counts each sequence number once: rewritten or unmodified; `ready`, then JSON at stdin's end."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 25)
    s.bind((job["ip"], 5060))
    s.setblocking(False)
    inbound = job["inbound"]
    mark_new, mark_old = (b"@%s:" % PHONES[0].encode(), b"@%s:" % ROUTER_WAN.encode()) if inbound \
        else (b"UDP %s:" % ROUTER_WAN.encode(), b"UDP 10.0.0.")
    seen, counts = set(), {"rewritten": 0, "unmodified": 0, "other": 0, "duplicates": 0}
    drops0 = _rcvbuf_errors()
    print("ready", flush=True)
    while True:
        ready = select.select([s, sys.stdin], [], [])[0]
        if sys.stdin in ready:
            break
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                break
            i = data.find(b"Call-ID: fl-")
            if i < 0:
                continue
            seq = int(data[i + 12:data.index(b"\r", i)])
            if seq in seen:
                counts["duplicates"] += 1
                continue
            seen.add(seq)
            line = data[:data.index(b"\r")] if inbound else data[data.index(b"Via:"):data.index(b"\r", data.index(b"Via:"))]
            counts["rewritten" if mark_new in line else "unmodified" if mark_old in line else "other"] += 1
    counts["sink_buffer_drops"] = _rcvbuf_errors() - drops0
    print(json.dumps(counts))


def _rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


# -- the driver

class Sampler(threading.Thread):
    """The daemon's CPU share each second, and its RSS at the start and each second."""

    def __init__(self, router: Router):
        super().__init__(daemon=True)
        self.router, self.cpu, self.rss = router, [], [router.rss_kb() or 0]
        self.stopped = threading.Event()

    def run(self) -> None:
        last, t = self.router.cpu_seconds(), time.monotonic()
        while not self.stopped.wait(1.0):
            c, now = self.router.cpu_seconds(), time.monotonic()
            if c is None:
                return
            self.cpu.append((c - last) / (now - t))
            self.rss.append(self.router.rss_kb() or 0)
            last, t = c, now


class FloodLab:
    def __init__(self, lab: Lab, backend: str, args):
        self.lab, self.backend, self.args = lab, backend, args
        self.logdir = tempfile.mkdtemp(prefix="sipalg-flood-%s-" % backend)
        lab.run(lab.wan, "ip", "addr", "add", SINK + "/24", "dev", "eth0")
        Kamailio(lab, self.logdir).start()
        self.floods = 0

    def flood(self, kind: str, rate: int, seconds: float, mode: str = "sipalg") -> dict:
        lab = self.lab
        d = tempfile.mkdtemp(prefix="%s-%s-%d-" % (mode, kind, rate), dir=self.logdir)
        router = Router(lab, mode, d, self.args.daemon_arg, self.args.config, backend=self.backend).start()
        try:
            res = self._flood(router, kind, rate, seconds, d)
        finally:
            router.stop()
            lab.conntrack_flush()
        res["killed"] = router.killed
        res["mode"] = mode
        res["router"] = router.label if mode != "sipalg" else "sipalg/" + self.backend
        return res

    def _flood(self, router: Router, kind: str, rate: int, seconds: float, d: str) -> dict:
        lab = self.lab
        target = (ROUTER_WAN, 5060)
        if kind.startswith("wan-"):
            target = self._register_phone(router, d)
        inbound = kind.startswith("wan-")
        sink_p = lab.popen(lab.ph1 if inbound else lab.wan, sys.executable, HERE, "--sink",
                           json.dumps({"ip": PHONES[0] if inbound else SINK, "inbound": inbound}),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sink_p.stdout.readline()
        settle = STATUS_SETTLE if router.alg is not None else 0.0
        time.sleep(settle)                              # a status written since start or registration
        s0 = router.status()
        k0, st0, q0 = queued_by_kernel(lab), s0.get("counters", {}), queue_state(lab) or {}
        st_totals0 = s0.get("totals", {})
        ct0 = conntrack_drops(lab)
        sampler = Sampler(router)
        sampler.start()
        gen = lab.popen(lab.wan if inbound else lab.ph1, sys.executable, HERE, "--gen",
                        json.dumps({"kind": kind, "rate": rate, "seconds": seconds, "target": target}),
                        stdout=subprocess.PIPE)
        legit = {}
        self.floods += 1
        t = threading.Timer(min(2.0, seconds / 3), self._legit, (d, legit, self.floods))
        t.start()
        g = json.loads(gen.communicate(timeout=seconds * 3 + 60)[0])
        t.join()
        drained = time.monotonic() + 120                # what is still queued gets its verdict first
        while (queue_state(lab) or {}).get("waiting") and time.monotonic() < drained:
            time.sleep(0.2)
        time.sleep(max(0.3, settle))                    # the last packets cross, the status is written
        q1 = queue_state(lab) or {}
        sampler.stopped.set()
        sampler.join()
        out, _ = sink_p.communicate(b"end\n", timeout=30)
        got = json.loads(out)
        settled = self._settle(router, st_totals0) if self.args.settle else None
        c = router.status().get("counters", {})
        k1 = queued_by_kernel(lab)
        saw = (c.get("queued", 0) + c.get("not_udp", 0)) - (st0.get("queued", 0) + st0.get("not_udp", 0))
        return {"kind": kind, "rate": rate, "target": "%s:%d" % target, "sent": g["sent"], "send_errors": g["errors"],
                "offered": g["sent"] / g["seconds"], **got,
                "lost": g["sent"] - got["rewritten"] - got["unmodified"] - got["other"],
                "unseen": max(0, (k1 - k0) - saw), "cpu": sampler.cpu, "rss": sampler.rss,
                "kernel_dropped": sum(q1.get(k, 0) - q0.get(k, 0) for k in ("dropped", "user_dropped")),
                "conntrack": {k: v - ct0[k] for k, v in conntrack_drops(lab).items()},
                "legit": legit, "refusals": describe_refusals([router]), "settled": settled,
                "queue_counters": router.status().get("queue_counters", {})}

    def _settle(self, router: Router, before: dict) -> dict:
        """Wait (up to --settle s) until what the daemon holds is back to what it held before the
        flood (the flood's bindings, calls and transactions expired); its RSS then."""
        t0 = time.monotonic()
        deadline = t0 + self.args.settle
        while time.monotonic() < deadline:
            now = router.status().get("totals", {})
            if all(now.get(k, 0) <= before.get(k, 0) for k in ("registrations", "calls", "bindings", "pinholes")):
                break
            time.sleep(1.0)
        time.sleep(2.0)                                 # a pass of the expiry timers and a GC behind it
        return {"after_s": time.monotonic() - t0, "rss": router.rss_kb() or 0,
                "totals": router.status().get("totals", {})}

    def _register_phone(self, router: Router, d: str) -> tuple:
        """Phone 1 registers as alice with kamailio from 5060; its WAN mapping as the daemon holds it."""
        reg = Sipp(self.lab, self.lab.ph1, "register.xml", PHONES[0], d, remote="%s:5060" % SERVER,
                   name="reg-alice", extra=["-key", "expires", "600"])
        reg.args[reg.args.index("-s") + 1] = "alice"
        reg.start().wait()
        for r in router.status().get("registrations", []):
            if r["lan"] == "%s:5060" % PHONES[0]:
                ip, port = r["wan"].rsplit(":", 1)
                return ip, int(port)
        return ROUTER_WAN, 5060

    def _legit(self, d: str, out: dict, n: int) -> None:
        """Phone 2 registers with kamailio, then kamailio's caller rings it: both must succeed.

        A user and port of its own each flood: kamailio forks to every contact it holds, and
        its resends to a failed call's mapping outlive the daemon that made it (the next
        daemon would take that WAN port again, and conntrack would refuse the clash)."""
        lab = self.lab
        user, port = "legit%d" % n, 5100 + 2 * (n % 400)
        peers = []
        for ns, scenario, ip, kw in ((lab.ph2, "register.xml", PHONES[1], dict(remote="%s:5060" % SERVER, port=port,
                                                                              extra=["-key", "expires", "600"])),
                                     (lab.ph2, "uas.xml", PHONES[1], dict(port=port)),
                                     (lab.wan, "uac.xml", SERVER, dict(remote="%s:5060" % SERVER, port=5070,
                                                                       rtp=25070, duration_ms=300))):
            p = Sipp(lab, ns, scenario, ip, d, name="legit-" + scenario[:-4], **kw)
            p.args[p.args.index("-s") + 1] = user
            p.args += ["-timeout", "8s"]
            peers.append(p)
        try:
            out["register"] = peers[0].start().wait(20) == 0
            peers[1].start()
            time.sleep(0.3)
            out["call"] = peers[2].start().wait(20) == 0 and peers[1].wait(20) == 0
        except subprocess.TimeoutExpired:
            out.setdefault("register", False)
            out["call"] = False
        finally:                        # none of them may hold phone 2's port into the next flood
            for p in peers:
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,5000,20000", help="datagrams per second (default 1000,5000,20000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="each flood's length (default 10)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="of " + ", ".join(KINDS))
    ap.add_argument("--backends", default="netlink", help="queue backends, netlink and/or binding (default netlink)")
    ap.add_argument("--modes", default="plain,sipalg",
                    help="routers each flood goes through in turn: plain (NAT alone, the baseline; in the first "
                         "backend's lab) and/or sipalg (default plain,sipalg)")
    add_daemon_options(ap)
    ap.add_argument("--settle", type=float, default=0.0,
                    help="after each flood wait up to this many seconds for what it made to expire, then read "
                         "the RSS again (default 0: not measured)")
    ap.add_argument("--quick", action="store_true", help="every kind at 1000/s for 1 s: a smoke run")
    ap.add_argument("--gen", help=argparse.SUPPRESS)
    ap.add_argument("--sink", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gen:
        print(json.dumps(generate(json.loads(args.gen))))
        return 0
    if args.sink:
        sink(json.loads(args.sink))
        return 0
    if os.geteuid() != 0:
        print("flood: needs root (network namespaces, nftables, NFQUEUE, raw sockets)", file=sys.stderr)
        return 2
    if args.quick:
        args.rates, args.seconds = "1000", 1.0
    kinds = [k for k in args.kinds.split(",") if k]
    backends = [b for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        rates = []
    if not rates or any(k not in KINDS for k in kinds) or any(b not in ("netlink", "binding") for b in backends) \
            or not modes or any(m not in ("plain", "sipalg") for m in modes):
        print("flood: --rates %r / --kinds %r / --backends %r / --modes %r: see --help"
              % (args.rates, args.kinds, args.backends, args.modes), file=sys.stderr)
        return 2
    from alg.kernel.queue import binding_available
    if "binding" in backends and not binding_available():
        print("flood: the NetfilterQueue binding is not installed; netlink only", file=sys.stderr)
        backends.remove("binding")
    results = []
    t0 = time.monotonic()
    for i, backend in enumerate(backends):
        with Lab(tag="fl-" + backend[:4]) as lab:
            fl = FloodLab(lab, backend, args)
            for kind in kinds:
                for rate in rates:
                    for mode in modes:
                        if mode == "plain" and i:
                            continue                # one baseline is enough
                        r = fl.flood(kind, rate, args.seconds, mode)
                        results.append(r)
                        print(row(r), file=sys.stderr, flush=True)
    report(results, args, time.monotonic() - t0)
    return 0


def row(r: dict) -> str:
    cpu, rss = r["cpu"] or [0.0], r["rss"] or [0]
    legit = r["legit"]
    daemon = "%8.0f/%-4.0f %6.1f/%-6.1f" % (100 * sum(cpu) / len(cpu), 100 * max(cpu), rss[0] / 1024.0, max(rss) / 1024.0) \
        if r["mode"] == "sipalg" else "%13s %13s" % ("-", "-")
    return "%-14s %-18s %6d %9.0f %7d %9d %10d %9d %6d %7d %s %6s %5s" % (
        r["router"], r["kind"], r["rate"], r["offered"], r["sent"], r["rewritten"], r["unmodified"], r["lost"], r["other"],
        r["unseen"], daemon,
        {True: "ok", False: "FAIL"}.get(legit.get("register"), "-"),
        {True: "ok", False: "FAIL"}.get(legit.get("call"), "-"))


def report(results, args, elapsed) -> None:
    print("SIP floods through sipalg (and plain NAT: the baseline), %g s each, %.0f s in all%s" % (
        args.seconds, elapsed, daemon_note(args)))
    print("%-14s %-18s %6s %9s %7s %9s %10s %9s %6s %7s %13s %13s %6s %5s" % (
        "router", "flood", "pps", "offered/s", "sent", "rewritten", "unmodified", "not deliv", "other", "unseen",
        "CPU% mean/max", "RSS MB 0/max", "reg", "call"))
    for r in results:
        print(row(r))
    print("(offered/s: what the generator managed, the router's forwarding runs on its core; not deliv: sent but never received, the bar is 0 except from a non-peer (-other), which a router"
          " admitting inbound SIP only from a phone's peers turns away; unseen: queued by the kernel's rules but"
          " never seen by the daemon (fail-open); reg/call: the legitimate phone during the flood)")
    for r in results:
        extra = ["to %s" % r["target"]] if r["kind"].startswith("wan-") else []
        if r["send_errors"]:
            extra.append("%d send errors" % r["send_errors"])
        if r.get("sink_buffer_drops"):
            extra.append("the receiver's socket dropped %d (counted as not delivered)" % r["sink_buffer_drops"])
        if r["duplicates"]:
            extra.append("%d duplicates" % r["duplicates"])
        extra += r["refusals"]
        if r["kernel_dropped"]:
            extra.append("the kernel dropped %d from the full queue (no fail-open)" % r["kernel_dropped"])
        if any(r["conntrack"].values()):
            extra.append("conntrack insert_failed %(insert_failed)d, drop %(drop)d (a NAT mapping clashing with "
                         "one held fails the insert and is dropped)" % r["conntrack"])
        if r["killed"]:
            extra.append("the daemon did not stop within 10 s of SIGTERM and was killed")
        if r.get("settled"):
            st = r["settled"]
            extra.append("RSS %.1f MB %.0f s after the flood (%s)" % (
                st["rss"] / 1024.0, st["after_s"], ", ".join("%s %s" % kv for kv in sorted(st["totals"].items()))))
        q = {k: v for k, v in r["queue_counters"].items() if v and k not in ("batches", "sweeps")}
        if q:
            extra.append("queue counters %s" % q)
        if r["mode"] == "sipalg":
            extra.insert(0, "CPU%% per s %s; RSS MB at 0 and per s %s" % (
                " ".join("%.0f" % (100 * c) for c in r["cpu"]), " ".join("%.1f" % (x / 1024.0) for x in r["rss"])))
        if extra:
            print("%s %s %d/s: %s" % (r["router"], r["kind"], r["rate"], "; ".join(extra)))


if __name__ == "__main__":
    sys.exit(main())
