"""What the engine allocates per registration, by tracemalloc (CPython only: tests/core also
runs under MicroPython, which has no tracemalloc).

Issue 11 measured 2.9 kB of RSS per registration at 10k.  The engine's own share is what a
change to its tables moves; bench/memory.py measures the daemon's RSS through the lab.  This
is a budget, not a timing: allocation sizes are the same on every run of one CPython."""
import gc
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "core"))

from alg.core.config import Config  # noqa: E402
from alg.core.engine import Engine, OUT, IN  # noqa: E402
from sipmsgs import SERVER, WAN_IP, register, register_ok  # noqa: E402

BUDGET = 1100            # bytes per registration with its binding and timer: 1220 before issue 11's last round, 940 after


def test_a_registration_with_its_binding_stays_within_the_engines_budget():
    n_regs = 5000
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/8"], **{k: 65535 for k in Config.LIMITS}))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(n_regs):                    # 100 phones per LAN address, as bench/memory.py
            host, k = divmod(n, 100)
            ip, port = "10.0.%d.%d" % (host // 250, 10 + host % 250), 10000 + 2 * k
            call_id, branch = "reg%d" % n, "z9hG4bKr%d" % n
            r = e.handle(OUT, (ip, port), SERVER, register(ip, port, call_id=call_id, branch=branch), 1000.0 + n / 1000)
            e.handle(IN, SERVER, r.snat, register_ok(r.snat, call_id, branch=branch,
                                                   contact="<sip:alice@%s:%d>;expires=3600" % r.snat),
                     1000.0 + n / 1000)
        del r
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(e.registrations) == n_regs and len(e.table) == n_regs
    per = held / n_regs
    assert per < BUDGET, "%.0f bytes per registration (budget %d)" % (per, BUDGET)
