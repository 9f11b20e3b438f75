"""Engine throughput: messages per second for typical SIP traffic.

Runs on CPython and MicroPython (no imports beyond alg.core and time), so
the same numbers can be printed for both:

    python3 bench/engine_bench.py
    python3 bench/mpy/run.py bench/engine_bench.py     # under MicroPython

A benchmark, not a test: it prints numbers and asserts nothing.
"""
import sys
import time

sys.path.insert(0, ".")

from alg.core.config import Config          # noqa: E402
from alg.core.engine import Engine, OUT, IN, Outcome  # noqa: E402


def _clock():
    if hasattr(time, "perf_counter"):
        return time.perf_counter()
    return time.ticks_us() / 1e6


def _crlf(s):
    return s.replace("\n", "\r\n").encode()


SDP = ("v=0\no=alice 2890844526 2890844526 IN IP4 10.0.0.2\ns=call\nc=IN IP4 10.0.0.2\nt=0 0\n"
       "m=audio 6000 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
       "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=ptime:20\na=sendrecv\n")


def invite(i):
    body = _crlf(SDP)
    head = _crlf("INVITE sip:bob@203.0.113.10 SIP/2.0\n"
                 "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK%08d;rport\n"
                 "Max-Forwards: 70\n"
                 "From: \"Alice\" <sip:alice@203.0.113.10>;tag=1928301774\n"
                 "To: <sip:bob@203.0.113.10>\n"
                 "Call-ID: a84b4c76e66710-%d@10.0.0.2\n"
                 "CSeq: 314159 INVITE\n"
                 "Contact: <sip:alice@10.0.0.2:5060;transport=udp>\n"
                 "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\n"
                 "Supported: replaces, timer\n"
                 "User-Agent: bench/1.0\n"
                 "Content-Type: application/sdp\n" % (i, i))
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def ok200(i):
    body = _crlf(SDP.replace("10.0.0.2", "203.0.113.10").replace("6000", "20000"))
    head = _crlf("SIP/2.0 200 OK\n"
                 "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK%08d;rport=5060;received=203.0.113.1\n"
                 "From: \"Alice\" <sip:alice@203.0.113.10>;tag=1928301774\n"
                 "To: <sip:bob@203.0.113.10>;tag=a6c85cf\n"
                 "Call-ID: a84b4c76e66710-%d@10.0.0.2\n"
                 "CSeq: 314159 INVITE\n"
                 "Contact: <sip:bob@203.0.113.10>\n"
                 "Content-Type: application/sdp\n" % (i, i))
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def register(i):
    return _crlf("REGISTER sip:203.0.113.10 SIP/2.0\n"
                 "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr%08d;rport\n"
                 "Max-Forwards: 70\n"
                 "From: <sip:alice@203.0.113.10>;tag=r1\n"
                 "To: <sip:alice@203.0.113.10>\n"
                 "Call-ID: reg-1@10.0.0.2\n"
                 "CSeq: %d REGISTER\n"
                 "Contact: <sip:alice@10.0.0.2:5060>;expires=3600\n"
                 "Expires: 3600\n"
                 "User-Agent: bench/1.0\n"
                 "Content-Length: 0\n\n" % (i, i + 1))


PHONE = ("10.0.0.2", 5060)
SERVER = ("203.0.113.10", 5060)
WAN = ("203.0.113.1", 5060)


def bench(name, n, step):
    """Time n calls of step(i) and print messages/s."""
    t0 = _clock()
    for i in range(n):
        step(i)
    dt = _clock() - t0
    rate = n / dt if dt > 0 else 0
    print("%-28s %8d msgs/s  (%d in %.3f s)" % (name + ":", int(rate), n, dt))
    return rate


def main(n=None):
    if n is None:
        args = [a for a in sys.argv[1:] if a != "--quick"]
        n = int(args[0]) if args else 500 if "--quick" in sys.argv else 20000
    impl = sys.implementation.name
    print("engine throughput on %s %s" % (impl, ".".join(str(x) for x in sys.implementation.version[:3])))
    cfg = Config(wan_ip="203.0.113.1", lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999))

    invites = [invite(i) for i in range(n)]
    e = Engine(cfg)

    def out_invite(i):
        # time moves on (1 ms a message) and timers run, as in the daemon's loop
        now = i * 0.001
        if i % 100 == 0:
            e.expire(now)
        r = e.handle(OUT, PHONE, SERVER, invites[i], now)
        assert r.payload is not None
        # end the call (as its BYE would) so the next INVITE starts a new one
        for call in e.dialogs.all():
            e.dialogs.end(call, "BYE", now, Outcome())
    bench("INVITE+SDP out (rewrite)", n, out_invite)

    e = Engine(cfg)
    oks = [ok200(i) for i in range(n)]
    for i in range(n):
        e.handle(OUT, PHONE, SERVER, invites[i], 0.0)
        for call in e.dialogs.all():
            if len(e.dialogs) > 1000:
                e.dialogs.end(call, "BYE", 0.0, Outcome())

    def in_ok(i):
        e.handle(IN, SERVER, WAN, oks[i], 1.0)
    bench("200 OK+SDP in (restore)", n, in_ok)

    e = Engine(cfg)
    regs = [register(i) for i in range(n)]

    def out_register(i):
        now = i * 0.001
        if i % 100 == 0:
            e.expire(now)
        e.handle(OUT, PHONE, SERVER, regs[i], now)
    bench("REGISTER out (rewrite)", n, out_register)


main()
