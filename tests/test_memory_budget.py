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
from sipmsgs import SERVER, WAN_IP, crlf, invite, register, register_ok, response, sdp, with_body  # noqa: E402

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


def test_messages_leave_no_reference_cycles_behind():
    """Each message's garbage goes when its last reference does: a cycle (a message's scratch
    and its address map pointed at each other) lives on until the cyclic GC runs, a pause on
    the packet path that grows with everything the daemon holds."""
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/8"]))
    phone = ("10.0.0.2", 5060)
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        left = {}

        def send(what, direction, src, dst, data, now=1.0):
            r = e.handle(direction, src, dst, data, now)
            left[what] = gc.collect()
            return r

        r = send("REGISTER", OUT, phone, SERVER, register())
        wan = r.snat
        send("200 REGISTER", IN, SERVER, wan, register_ok(wan, "reg1@10.0.0.2", contact="<sip:alice@%s:%d>" % wan))
        send("INVITE", OUT, phone, SERVER, invite())
        via = "SIP/2.0/UDP %s:%d;branch=z9hG4bKinv1;rport=%d;received=%s" % (wan[0], wan[1], wan[1], wan[0])
        send("200 INVITE", IN, SERVER, wan, response(200, "OK", via, "call1@10.0.0.2", 1, "INVITE",
                                                     body=sdp("203.0.113.10", 20000),
                                                     contact="<sip:bob@203.0.113.10>"))
        bye = crlf("BYE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbye1;rport\n"
                   "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
                   "Call-ID: call1@10.0.0.2\nCSeq: 2 BYE\nContent-Length: 0\n\n")
        send("BYE", OUT, phone, SERVER, bye)
        send("keep-alive", OUT, phone, SERVER, b"\r\n\r\n")
        send("not SIP", OUT, phone, SERVER, b"GET / HTTP/1.0\r\n\r\n")
        send("bad body", OUT, phone, SERVER, with_body("OPTIONS sip:x SIP/2.0\n", "v=0\n")[:-2])
        e.expire(10000.0)
        left["expiry"] = gc.collect()
    finally:
        if was:
            gc.enable()
    assert left == {k: 0 for k in left}, left
