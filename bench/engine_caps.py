"""Engine cost under a state flood: 100k unanswered INVITEs and 50k REGISTERs.

What issue 10 measured at the time: 100,000 unanswered INVITEs held 186 MB
and pushed per-message time from 0.2 ms to 2.9 ms; one expiry pass blocked
for 364 ms.  With the caps (policy.py) state stays bounded and every message
costs about the same however much is held.  Per batch of messages it prints
the time per message, the process's resident memory (VmRSS; tracemalloc
would slow every allocation several times over and distort the timing),
what the engine holds, and what it refused; then the longest single
expiry pass.

    python3 bench/engine_caps.py [--invites N] [--registers N] [--hosts N]

A benchmark, not a test: it prints numbers and asserts nothing.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alg.core.config import Config                 # noqa: E402
from alg.core.engine import Engine, OUT, IN         # noqa: E402
from alg.core.events import Refused                 # noqa: E402

SERVER = ("203.0.113.10", 5060)
WAN = "203.0.113.1"


def host(i, hosts):
    n = i % hosts
    return "10.%d.%d.%d" % (n >> 16 & 255, n >> 8 & 255, (n & 255) or 1)


def invite(ip, i):
    sdp = ("v=0\r\no=- %d 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n"
           % (i, ip, ip, 10000 + 2 * (i % 20000))).encode()
    return (("INVITE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bKi%d\r\n"
             "From: <sip:a@203.0.113.10>;tag=%d\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: flood%d\r\n"
             "CSeq: 1 INVITE\r\nContact: <sip:a@%s:5060>\r\nContent-Type: application/sdp\r\n"
             "Content-Length: %d\r\n\r\n") % (ip, i, i, i, ip, len(sdp))).encode() + sdp


def register(ip, i):
    return (("REGISTER sip:203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bKr%d\r\n"
             "From: <sip:u%d@203.0.113.10>;tag=r\r\nTo: <sip:u%d@203.0.113.10>\r\nCall-ID: reg%d\r\n"
             "CSeq: 1 REGISTER\r\nContact: <sip:u%d@%s:5060>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
            % (ip, i, i, i, i, i, ip)).encode()


def register_ok(i, port):
    return (("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKr%d\r\n"
             "From: <sip:u%d@203.0.113.10>;tag=r\r\nTo: <sip:u%d@203.0.113.10>;tag=s\r\nCall-ID: reg%d\r\n"
             "CSeq: 1 REGISTER\r\nContact: <sip:u%d@%s:%d>;expires=3600\r\nContent-Length: 0\r\n\r\n")
            % (WAN, port, i, i, i, i, i, WAN, port)).encode()


def rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def held(e):
    return "bindings %5d  calls %5d  regs %5d  txns %5d" % (len(e.table), len(e.dialogs), len(e.registrations),
                                                         len(e.transactions))


def run(name, n, batch, step, e):
    print("%s: %d messages" % (name, n))
    print("  %8s %10s %9s  %s  %s" % ("messages", "us/msg", "RSS MiB", "held", "refused"))
    refused = 0
    t_all = 0.0
    for start in range(0, n, batch):
        t0 = time.perf_counter()
        for i in range(start, min(n, start + batch)):
            res = step(i)
            for ev in res.events:
                if isinstance(ev, Refused):
                    refused += 1
        dt = time.perf_counter() - t0
        t_all += dt
        print("  %8d %10.1f %9.1f  %s  %d" % (min(n, start + batch), dt * 1e6 / batch, rss_mib(), held(e),
                                             refused))
    return t_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--invites", type=int, default=100000)
    ap.add_argument("--registers", type=int, default=50000)
    ap.add_argument("--hosts", type=int, default=5000, help="LAN hosts the messages come from")
    ap.add_argument("--batch", type=int, default=10000)
    args = ap.parse_args()
    print("before: RSS %.1f MiB" % rss_mib())
    cfg = Config(wan_ip=WAN, lan_nets=["10.0.0.0/8"], rtp_ports=(10000, 65535))
    e = Engine(cfg)
    now = [0.0]

    def out_invite(i):
        now[0] += 0.0001                       # 10k messages a second, as a flood would come
        return e.handle(OUT, (host(i, args.hosts), 5060), SERVER, invite(host(i, args.hosts), i), now[0])
    run("unanswered INVITEs from %d hosts" % args.hosts, args.invites, args.batch, out_invite, e)

    def out_register(i):
        now[0] += 0.0001
        ip = host(i, args.hosts)
        r = e.handle(OUT, (ip, 5060), SERVER, register(ip, i), now[0])
        if r.snat is not None:
            e.handle(IN, SERVER, r.snat, register_ok(i, r.snat[1]), now[0])
        return r
    run("REGISTERs (and their 200 OK) from %d hosts" % args.hosts, args.registers, args.batch, out_register, e)

    # the calls' early-media timers all come due at once: one expiry pass each loop turn
    worst = 0.0
    passes = 0
    t = now[0] + cfg.early_media_timeout + 1
    while e.next_deadline() is not None and e.next_deadline() <= t:
        t0 = time.perf_counter()
        e.expire(t, 256)
        worst = max(worst, time.perf_counter() - t0)
        passes += 1
    print("expiry after the early-media timeout: %d passes of at most 256 timers, the longest %.1f ms; then %s"
          % (passes, worst * 1e3, held(e)))
    print("RSS at the end: %.1f MiB" % rss_mib())


if __name__ == "__main__":
    main()
