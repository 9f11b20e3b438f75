"""Side by side: plain NAT, the Linux kernel's SIP helper (nf_nat_sip), and sipalg.

The same scenarios run through the same namespace lab with each router
setup (bench/routers.py: the helper is attached by an nft `ct helper` object,
sipalg runs at info level), and the numbers are printed in a table.  A benchmark, not a test:
it asserts nothing and needs root, sipp and kamailio (scripts/setup).

    sudo python3 bench/nat_compare.py [--quick]

Scenarios:
  outbound   phone calls the server; audio both ways; the server sees no private address,
             and the SDP names the address and port the phone's RTP really comes from
  two-phones two phones on SIP 5060 / RTP 6000 call at once; both get audio both ways, and
             each SDP names the port its RTP comes from (a server that isn't symmetric needs it)
  odd-sip    the server answers with a terse but parseable response (no From/To/CSeq);
             it must reach the phone (helpers that drop what they can't parse lose it)
  incoming   phones register, conntrack UDP timeouts 5/5 s, silence until conntrack forgot
             them (at most 12 s), then the server calls each; the right phone answers
Measured:   SIP round trip through the router (OPTIONS -> 200, median / p99),
            RTP packets the daemon saw (sipalg only; must be 0), daemon RSS.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.routers import LABELS, Router                                          # noqa: E402
from bench.stats import pct                                                       # noqa: E402
from tests.support.lab.netns import Lab, PHONES, SERVER                           # noqa: E402
from tests.support.lab.peers import Capture, Kamailio, RtpEcho, Sipp, rtp_send_bg  # noqa: E402

MODES = ("plain", "helper", "sipalg")          # bench/routers.py


def outbound(lab, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 6)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    time.sleep(0.3)
    uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
               duration_ms=2500, name="uac").start()
    time.sleep(0.8)
    s = rtp_send_bg(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 50)
    r = json.loads(s.communicate(timeout=30)[0])
    ok = uac.wait() == 0 and uas.wait() == 0
    seen = echo.result()
    packets = wan.packets()
    leaked = any(PHONES[0].encode() in re.sub(rb"Call-ID: [^\r]*", b"", p[4]) for p in packets)
    return ok and r["received"] == 50 and sum(seen.values()) == 50 and not leaked and _sdp_true(packets, seen)


def _sdp_true(packets, seen):
    """Every INVITE's c=/m= names a source the server really got RTP from."""
    invites = [p[4] for p in packets if p[4].startswith(b"INVITE")]
    for inv in invites:
        c = re.search(rb"c=IN IP4 ([0-9.]+)", inv)
        m = re.search(rb"m=audio (\d+)", inv)
        if not c or not m or "%s:%s" % (c.group(1).decode(), m.group(1).decode()) not in seen:
            return False
    return bool(invites)


def two_phones(lab, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 8)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, calls=2, name="uas2").start()
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan2.pcap")
    time.sleep(0.3)
    u1 = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
              duration_ms=3500, name="u1").start()
    u2 = Sipp(lab, lab.ph2, "uac.xml", PHONES[1], logdir, remote="%s:5060" % SERVER, rtp=6000,
              duration_ms=3500, name="u2").start()
    time.sleep(1.0)
    s1 = rtp_send_bg(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 50)
    s2 = rtp_send_bg(lab, lab.ph2, (PHONES[1], 6000), (SERVER, 20000), 50)
    r1, r2 = json.loads(s1.communicate(timeout=30)[0]), json.loads(s2.communicate(timeout=30)[0])
    ok = u1.wait() == 0 and u2.wait() == 0 and uas.wait() == 0
    seen = echo.result()
    return (ok and r1["received"] == 50 and r2["received"] == 50 and len(seen) == 2
            and _sdp_true(wan.packets(), seen))


def incoming(lab, logdir):
    lab.set_udp_timeouts(5, 5)
    Kamailio(lab, logdir).start()
    for ns, ip, user in ((lab.ph1, PHONES[0], "alice"), (lab.ph2, PHONES[1], "bob")):
        reg = Sipp(lab, ns, "register.xml", ip, logdir, remote="%s:5060" % SERVER, name="reg-" + user,
                   extra=["-key", "expires", "600"])
        reg.args[reg.args.index("-s") + 1] = user
        if reg.start().wait() != 0:
            return False
    deadline = time.monotonic() + 12                # silence until conntrack forgot both phones
    while time.monotonic() < deadline:
        ct = lab.run(lab.rtr, "conntrack", "-L", "-p", "udp", check=False).stdout.decode()
        if PHONES[0] not in ct and PHONES[1] not in ct:
            break
        time.sleep(0.5)
    ok = True
    for ns, ip, user, port in ((lab.ph1, PHONES[0], "alice", 5070), (lab.ph2, PHONES[1], "bob", 5072)):
        uas = Sipp(lab, ns, "uas.xml", ip, logdir, name="in-" + user, extra=["-timeout", "8s"])
        uas.args[uas.args.index("-s") + 1] = user
        uas.start()
        time.sleep(0.3)
        caller = Sipp(lab, lab.wan, "uac.xml", SERVER, logdir, remote="%s:5060" % SERVER, port=port,
                      rtp=20000 + port, name="caller-" + user, extra=["-timeout", "8s"])
        caller.args[caller.args.index("-s") + 1] = user
        ok = caller.start().wait() == 0 and uas.wait() == 0 and ok
    return ok


def odd_sip(lab, logdir):
    from tests.support.lab.peers import exchange_udp
    resp = lab.popen(lab.wan, sys.executable, "-c", TERSE_RESPONDER)
    time.sleep(0.3)
    msg = (b"OPTIONS sip:x@203.0.113.10:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKodd\r\n"
           b"From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:x@203.0.113.10>\r\nCall-ID: odd1\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")
    got = exchange_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5090), msg)
    resp.kill()
    return got is not None and got[1].startswith(b"SIP/2.0 200")


TERSE_RESPONDER = r"""
import socket
s = socket.socket(2, 2); s.bind(("203.0.113.10", 5090))
while True:
    d, a = s.recvfrom(4096)
    via = [l for l in d.split(b"\r\n") if l.startswith(b"Via:")][0]
    s.sendto(b"SIP/2.0 200 OK\r\n" + via + b"\r\nContent-Length: 0\r\n\r\n", a)
"""


RTT_CODE = r"""
import socket, sys, time, json
s = socket.socket(2, 2); s.bind(("10.0.0.2", 5060)); s.settimeout(0.25)
out = []
for i in range(int(sys.argv[1])):
    m = ("OPTIONS sip:x@203.0.113.10:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKrtt%d;rport\r\n"
         "From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:x@203.0.113.10>\r\nCall-ID: rtt%d\r\nCSeq: 1 OPTIONS\r\n"
         "Contact: <sip:a@10.0.0.2:5060>\r\nContent-Length: 0\r\n\r\n" % (i, i)).encode()
    t = time.perf_counter(); s.sendto(m, ("203.0.113.10", 5090))
    try:    # only our own answer: a UAS left from a failed call may still be resending its 200 here
        while b"Call-ID: rtt%d\r" % i not in s.recvfrom(4096)[0]:
            pass
        out.append(time.perf_counter() - t)
    except socket.timeout:
        pass
print(json.dumps(out))
"""

RESPONDER = r"""
import socket
s = socket.socket(2, 2); s.bind(("203.0.113.10", 5090))
while True:
    d, a = s.recvfrom(4096)
    keep = [l for l in d.split(b"\r\n") if l.split(b":")[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
    s.sendto(b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n", a)
"""


def rtt(lab, n):
    resp = lab.popen(lab.wan, sys.executable, "-c", RESPONDER)
    time.sleep(0.3)
    out = json.loads(lab.run(lab.ph1, sys.executable, "-c", RTT_CODE, str(n), timeout=120).stdout)
    resp.kill()
    return out


def main():
    quick = "--quick" in sys.argv
    scenarios = [("outbound", outbound), ("two-phones", two_phones), ("odd-sip", odd_sip)] + \
        ([] if quick else [("incoming", incoming)])
    rows = {}
    for mode in MODES:
        res = {}
        for name, fn in scenarios:
            logdir = tempfile.mkdtemp(prefix="sipalg-bench-")
            with Lab(tag="b") as lab:
                router = Router(lab, mode, logdir).start()
                try:
                    res[name] = fn(lab, logdir)
                except Exception as e:              # a scenario that breaks counts as failed
                    print("  %s / %s: %s" % (mode, name, e), file=sys.stderr)
                    res[name] = False
                if name == "outbound":
                    times = rtt(lab, 200)
                    res["rtt"] = times
                    if router.alg is not None:
                        st = router.alg.status()
                        res["rss"] = router.rss_kb()
                        res["rtp_queued"] = st["counters"]["media_queued"]
                router.stop()
        rows[mode] = res
        print("%s: done" % mode, file=sys.stderr)
    print()
    print("%-22s" % "" + "".join("%20s" % LABELS[m] for m in MODES))
    for name, _ in scenarios:
        print("%-22s" % name + "".join("%20s" % ("pass" if rows[m].get(name) else "FAIL") for m in MODES))
    passed = ["%d/%d" % (sum(1 for n, _ in scenarios if rows[m].get(n)), len(scenarios)) for m in MODES]
    print("%-22s" % "scenarios passed" + "".join("%20s" % p for p in passed))

    def q(ts, p):
        return "-" if not ts else "%.2f ms" % (1000 * pct(ts, p))
    print("%-22s" % "SIP RTT median" + "".join("%20s" % q(rows[m].get("rtt"), 50) for m in MODES))
    print("%-22s" % "SIP RTT p99" + "".join("%20s" % q(rows[m].get("rtt"), 99) for m in MODES))
    print("%-22s" % "RTP seen by daemon" + "".join("%20s" % rows[m].get("rtp_queued", "-") for m in MODES))
    print("%-22s" % "daemon RSS" + "".join("%20s" % (("%d kB" % rows[m]["rss"]) if "rss" in rows[m] else "-")
                                           for m in MODES))


if __name__ == "__main__":
    main()
