"""`make demo`: one phone, a router running the ALG, a SIP server; a registration and a call.

Builds the namespace lab, starts kamailio (registrar) and a sipp UAS with an
RTP echo on the server side, registers the phone, calls, sends audio both
ways, and shows what the ALG rewrote, the bindings and pinholes it held, and
how many RTP packets crossed each way.  Everything is removed at the end.

    python3 -m tests.support.lab.demo [--keep-logs DIR]     (from the checkout, as root)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from tests.support.lab.netns import Lab, PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, Capture, Kamailio, RtpEcho, Sipp, rtp_send

DIVIDER = "-" * 72


def _show(title: str, before: bytes, after: bytes) -> None:
    print(DIVIDER)
    print(title)
    b_lines = before.decode(errors="replace").split("\r\n")
    a_lines = after.decode(errors="replace").split("\r\n")
    width = max(len(x) for x in b_lines) if b_lines else 0
    width = min(max(width, 20), 70)
    print("  %-*s | %s" % (width, "as the phone/server sent it", "as the other side received it"))
    for i in range(max(len(b_lines), len(a_lines))):
        left = b_lines[i] if i < len(b_lines) else ""
        right = a_lines[i] if i < len(a_lines) else ""
        mark = " " if left == right else "*"
        print("%s %-*s | %s" % (mark, width, left[:width], right))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.support.lab.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-logs", metavar="DIR", help="keep the lab's logs and captures in DIR")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    logdir = args.keep_logs or tempfile.mkdtemp(prefix="sipalg-demo-")
    os.makedirs(logdir, exist_ok=True)
    print("demo: phone %s -- router (LAN 10.0.0.1, WAN %s, NAT + sipalg) -- server %s"
          % (PHONES[0], ROUTER_WAN, SERVER))
    with Lab(tag="demo") as lab:
        alg = Alg(lab, logdir).start()
        Kamailio(lab, logdir, port=5060).start()
        lan = Capture(lab, lab.ph1, "eth0", os.path.join(logdir, "lan.pcap"))
        wan = Capture(lab, lab.wan, "eth0", os.path.join(logdir, "wan.pcap"))
        reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER,
                   extra=["-key", "expires", "600"], name="register")
        reg.args[reg.args.index("-s") + 1] = "phone"
        print("1. the phone registers with kamailio ...", "ok" if reg.start().wait() == 0 else "FAILED")
        echo = RtpEcho(lab, lab.wan, SERVER, 20000, 8)
        uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, port=5080, rtp=20000, name="server-uas").start()
        time.sleep(0.3)
        uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5080" % SERVER, rtp=6000,
                   duration_ms=3000, name="phone-uac").start()
        time.sleep(0.8)
        during = alg.status()
        rtp = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 100)
        call_ok = uac.wait() == 0 and uas.wait() == 0
        print("2. the phone calls the server, 2 s of audio ...", "ok" if call_ok else "FAILED")
        seen = echo.result()
        lan_p, wan_p = lan.packets(), wan.packets()
        alg.stop()

    def first(packets, start, sport=None):
        for p in packets:
            if p[4].startswith(start) and (sport is None or p[1] == sport or p[3] == sport):
                return p[4]
        return b""

    invite_out = first(wan_p, b"INVITE")
    _show("INVITE (phone -> server)", first(lan_p, b"INVITE"), invite_out)
    _show("200 OK to the INVITE (server -> phone)",
          next((p[4] for p in wan_p if p[4].startswith(b"SIP/2.0 200") and b"INVITE" in p[4]), b""),
          next((p[4] for p in lan_p if p[4].startswith(b"SIP/2.0 200") and b"INVITE" in p[4]), b""))
    print(DIVIDER)
    print("bindings and pinholes during the call (sipalg status):")
    for b in during["bindings"]:
        if b["kind"] == "sip":
            admits = "SIP from " + ", ".join(b["peers"]) if b["peers"] else "no SIP from anyone yet"
        else:
            admits = "media from " + b["remote"] if b["remote"] else "no media from anyone yet"
        print("  %-4s %-16s <-> %-18s %s" % (b["kind"], b["lan"], b["wan"], admits))
    for r in during["registrations"]:
        print("  registration %s: %s <-> %s, %d s left" % (r["aor"], r["lan"], r["wan"],
                                                             r["expires"] - during["now"]))
    print(DIVIDER)
    to_server = sum(seen.values())
    print("RTP phone -> server: %d of %d packets arrived, from %s" % (to_server, rtp["sent"], ", ".join(seen) or "-"))
    print("RTP server -> phone: %d of %d packets arrived" % (rtp["received"], rtp["sent"]))
    print("SIP packets queued to the daemon: %d (RTP never is)" % during["counters"]["queued"])
    print("logs and captures: %s" % logdir)
    # the INVITE the server got names the router's WAN address where the phone wrote its own (the
    # Call-ID is opaque and keeps it), and the audio came from the port its SDP promised
    opaque = b"\r\n".join(ln for ln in invite_out.split(b"\r\n") if not ln.lower().startswith((b"call-id:", b"i:")))
    rewritten = (bool(invite_out) and PHONES[0].encode() not in opaque
                 and b"c=IN IP4 %s\r\n" % ROUTER_WAN.encode() in invite_out)
    print("INVITE rewritten to the WAN address: %s" % ("yes" if rewritten else "NO"))
    ok = call_ok and rewritten and rtp["received"] == rtp["sent"] and to_server == rtp["sent"]
    print("demo %s" % ("passed: rewritten, audio both ways through the NAT" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
