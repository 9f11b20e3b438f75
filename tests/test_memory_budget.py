"""What the engine allocates per registration, by tracemalloc (CPython only: tests/core also
runs under MicroPython, which has no tracemalloc).

Issue 11 measured 2.9 kB of RSS per registration at 10k.  The engine's own share is what a
change to its tables moves; bench/memory.py measures the daemon's RSS through the lab.  This
is a budget, not a timing: allocation sizes are the same on every run of one CPython."""
import gc
import tracemalloc

from alg.core.config import Config
from alg.core.engine import Engine, OUT, IN

SERVER = ("203.0.113.10", 5060)
WAN = "203.0.113.1"
BUDGET = 1100            # bytes per registration with its binding and timer: 1220 before issue 11's last round, 940 after


def _register(ip, port, n):
    return (("REGISTER sip:203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKr%d\r\n"
             "From: <sip:u%d@203.0.113.10>;tag=r\r\nTo: <sip:u%d@203.0.113.10>\r\nCall-ID: reg%d\r\n"
             "CSeq: 1 REGISTER\r\nContact: <sip:u%d@%s:%d>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n")
            % (ip, port, n, n, n, n, n, ip, port)).encode()


def _ok(n, wan):
    return (("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKr%d\r\n"
             "From: <sip:u%d@203.0.113.10>;tag=r\r\nTo: <sip:u%d@203.0.113.10>;tag=s\r\nCall-ID: reg%d\r\n"
             "CSeq: 1 REGISTER\r\nContact: <sip:u%d@%s:%d>;expires=3600\r\nContent-Length: 0\r\n\r\n")
            % (wan[0], wan[1], n, n, n, n, n, wan[0], wan[1])).encode()


def test_a_registration_with_its_binding_stays_within_the_engines_budget():
    n_regs = 5000
    e = Engine(Config(wan_ip=WAN, lan_nets=["10.0.0.0/8"], **{k: 65535 for k in Config.LIMITS}))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(n_regs):                    # 100 phones per LAN address, as bench/memory.py
            host, k = divmod(n, 100)
            ip, port = "10.0.%d.%d" % (host // 250, 10 + host % 250), 10000 + 2 * k
            r = e.handle(OUT, (ip, port), SERVER, _register(ip, port, n), 1000.0 + n / 1000)
            e.handle(IN, SERVER, r.snat, _ok(n, r.snat), 1000.0 + n / 1000)
        del r
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(e.registrations) == n_regs and len(e.table) == n_regs
    per = held / n_regs
    assert per < BUDGET, "%.0f bytes per registration (budget %d)" % (per, BUDGET)
