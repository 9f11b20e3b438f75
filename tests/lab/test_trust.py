"""Tried as an attacker would: sipalg opens nothing the phone didn't ask for, to no one it didn't talk to.

Each test is one observation of issue 10 against the real kernel: forged
WAN sources, ports below 1024, pinholes before the far end is known, the
router's own listeners, SIP scanners, reused ports, one host at its caps.
"""
import json
import re
import subprocess
import sys
import time

import pytest

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import (Alg, Counter, Kamailio, RtpEcho, Sipp, recv_udp, received, rtp_send,
                                     rtp_send_bg, send_udp, write_config)
from tests.support.lab.messages import invite

STRANGER = "203.0.113.66"      # an internet host the phone never talked to
SRV = (SERVER, 5060)


def _add_wan_address(lab, ip):
    lab.run(lab.wan, "ip", "addr", "add", ip + "/32", "dev", "eth0")


def _register(call_id, contact_port, via_port=5060, src_port=5060, cseq=1):
    return (("REGISTER sip:203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:%d;branch=z9hG4bK%s%d\r\n"
             "From: <sip:alice@203.0.113.10>;tag=r\r\nTo: <sip:alice@203.0.113.10>\r\nCall-ID: %s\r\n"
             "CSeq: %d REGISTER\r\nContact: <sip:alice@10.0.0.2:%d>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
            % (via_port, call_id, cseq, call_id, cseq, contact_port)).encode()


def _ok(call_id, rtp=20000, media_ip=SERVER):
    sdp = ("v=0\r\no=- 2 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n"
           % (media_ip, media_ip, rtp)).encode()
    return (("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK%s\r\n"
             "From: <sip:alice@203.0.113.10>;tag=1\r\nTo: <sip:bob@203.0.113.10>;tag=2\r\nCall-ID: %s\r\n"
             "CSeq: 1 INVITE\r\nContact: <sip:bob@203.0.113.10>\r\nContent-Type: application/sdp\r\n"
             "Content-Length: %d\r\n\r\n") % (call_id, call_id, len(sdp))).encode() + sdp


def _bye(call_id):
    return (("BYE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKb%s\r\n"
             "From: <sip:alice@203.0.113.10>;tag=1\r\nTo: <sip:bob@203.0.113.10>;tag=2\r\nCall-ID: %s\r\n"
             "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n") % (call_id, call_id)).encode()


def _out(lab, payload, src_port=5060, phone=0):
    """A datagram from phone 1 (or 2) to the server, as the server gets it."""
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, (lab.ph1, lab.ph2)[phone], (PHONES[phone], src_port), SRV, payload)
    return received(rx)


def _reaches(lab, src, wan_port, to_port, ns=None):
    """Does a datagram from src to the router's WAN port arrive at phone 1's to_port?"""
    rx = recv_udp(lab, ns or lab.ph1, (PHONES[0], to_port), timeout=1.5)
    send_udp(lab, lab.wan, src, (ROUTER_WAN, wan_port), b"\x80\x00\x00\x01" + b"\x00" * 40)
    return received(rx) is not None


def _bound_lan(alg):
    return sorted((e[0]["elem"]["val"]["concat"] if isinstance(e[0], dict) else e[0]["concat"])[1]
                  for e in alg.kernel_table()["lan2wan"])


def test_forged_lan_source_from_the_wan_creates_nothing(lab, alg):
    lab.run(lab.rtr, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    lab.run(lab.rtr, "sysctl", "-qw", "net.ipv4.conf.wan0.rp_filter=1")
    _add_wan_address(lab, PHONES[0])                      # the attacker writes the phone's address
    send_udp(lab, lab.wan, (PHONES[0], 5060), (ROUTER_WAN, 5060), _register(b"forged".decode(), 5060))
    time.sleep(0.5)
    t = alg.kernel_table()
    assert t["lan2wan"] == [] and t["sip2lan"] == [] and t["sip_peer"] == []
    # and nobody on the WAN reaches the phone through the router afterwards
    _add_wan_address(lab, STRANGER)
    assert not _reaches(lab, (STRANGER, 5060), 5060, 5060)
    assert alg.status()["bindings"] == []


@pytest.mark.parametrize("port", [22, 445, 3389, 0, 99999])
def test_contact_and_via_ports_get_no_binding_of_their_own(lab, alg, port):
    sent = _register("low%d" % port, contact_port=port, via_port=port)
    got = _out(lab, sent)
    assert got is not None
    if port > 65535:                                      # not SIP at all: passed as it came, nothing bound
        assert got[1] == sent and alg.kernel_table()["lan2wan"] == []
        return
    assert _bound_lan(alg) == [5060]                      # the source port only
    t = alg.kernel_table()
    assert len(t["sip2lan"]) == 1
    if 0 < port < 65536:
        _add_wan_address(lab, STRANGER)
        assert not _reaches(lab, (STRANGER, 40000), port, port)
        assert not _reaches(lab, (SERVER, 40001), port, port)
    # what the registrar got still reaches the phone: its own source binding
    assert b"<sip:alice@203.0.113.1:5060>" in got[1] and b"Via: SIP/2.0/UDP 203.0.113.1:5060;" in got[1]


def test_sdp_on_3389_opens_no_pinhole_to_anyone(lab, alg):
    _add_wan_address(lab, STRANGER)
    got = _out(lab, invite("rdp", 3389))
    wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    t = alg.kernel_table()
    assert len(t["media2lan"]) == 2 and t["media_open"] == [] and t["media_peer"] == []
    assert not _reaches(lab, (STRANGER, 40000), wan_port, 3389)      # before the answer: nobody
    assert not _reaches(lab, (SERVER, 20000), wan_port, 3389)


def test_a_router_listener_keeps_its_wan_port(lab, alg, logdir):
    # WireGuard's port on the router: a pinhole there would divert it to the phone
    listener = lab.popen(lab.rtr, "python3", "-c",
                         "import socket,sys;s=socket.socket(2,2);s.bind(('0.0.0.0',51820));s.settimeout(8);"
                         "print('ready',file=sys.stderr,flush=True);d,a=s.recvfrom(100);print(a[0])",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listener.stderr.readline()
    alg.reload(wait=1.0)                                   # the router's ports are read at start and reload
    got = _out(lab, invite("wg", 51820))
    wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    assert wan_port != 51820
    send_udp(lab, lab.wan, (SERVER, 40000), (ROUTER_WAN, 51820), b"handshake")
    out, _ = listener.communicate(timeout=10)
    assert out.decode().strip() == SERVER                  # the router's own listener got it


def test_media_admits_only_the_far_end_before_during_and_after(lab, alg):
    _add_wan_address(lab, STRANGER)
    got = _out(lab, invite("far", 6000))
    wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    assert not _reaches(lab, (STRANGER, 30000), wan_port, 6000)        # before the answer
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060))
    send_udp(lab, lab.wan, SRV, (ROUTER_WAN, 5060), _ok("far"))
    assert received(rx) is not None
    assert _reaches(lab, (SERVER, 20000), wan_port, 6000)              # the far end: yes
    assert not _reaches(lab, (STRANGER, 30001), wan_port, 6000)        # anyone else: no
    _out(lab, _bye("far"))
    time.sleep(0.3)
    # the far end's flow to the phone went with the BYE, conntrack entry and all (the stranger's
    # refused attempts only ever reached the router itself)
    ct = lab.run(lab.rtr, "conntrack", "-L", "-p", "udp", "--orig-port-dst", str(wan_port),
                 "--reply-src", PHONES[0], check=False)
    assert ct.stdout.decode().strip() == ""
    assert not _reaches(lab, (SERVER, 20000), wan_port, 6000)          # after the BYE: nobody


EAGER_ANSWERER = """
import json, socket, struct, sys, time
sip = socket.socket(2, 2); sip.bind((%r, 5060))
rtp = socket.socket(2, 2); rtp.bind((%r, 20000)); rtp.setblocking(False)
sip.sendto(sys.stdin.buffer.read(), (%r, 5060))
seen = {}
for i in range(25):                     # RFC 3264: the answerer may send media at once
    rtp.sendto(struct.pack("!BBHII", 0x80, 0, i, i * 160, 7) + bytes(160), (%r, %d))
    end = time.monotonic() + 0.02
    while time.monotonic() < end:
        try:
            _, src = rtp.recvfrom(2048)
            seen["%%s:%%d" %% src] = seen.get("%%s:%%d" %% src, 0) + 1
        except OSError:
            time.sleep(0.002)
print(json.dumps(seen))
"""


def test_media_the_far_end_sends_with_its_answer_reaches_the_phone_both_ways(lab, alg):
    # The far end's first packet overtakes its 200 (queued) and ends at the router itself: that
    # flow must not keep the phone deaf, nor push the phone's own media onto another WAN port.
    got = _out(lab, invite("eager", 6000))
    wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    echo = RtpEcho(lab, lab.ph1, PHONES[0], 6000, 2.5)
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060))
    far = lab.run(lab.wan, sys.executable, "-c", EAGER_ANSWERER % (SERVER, SERVER, ROUTER_WAN, ROUTER_WAN, wan_port),
                  input=_ok("eager"), timeout=30)
    assert received(rx) is not None
    back = json.loads(far.stdout)
    heard = echo.result()
    assert heard.get("%s:20000" % SERVER, 0) >= 20, heard                    # in: at the phone
    assert set(back) == {"%s:%d" % (ROUTER_WAN, wan_port)} and back["%s:%d" % (ROUTER_WAN, wan_port)] >= 20, back


def test_a_strangers_early_flow_dies_when_the_pinhole_narrows(lab, logdir):
    # media_from 'any' (relaxed) lets anyone in before the answer; narrowing must cut them off
    alg = Alg(lab, logdir, "--rtp-ports", "1024-65535").start()
    cfg = logdir + "/relaxed.conf"
    write_config(cfg, media_from="any")
    alg.stop()
    alg = Alg(lab, logdir, "--config", cfg).start()
    try:
        _add_wan_address(lab, STRANGER)
        got = _out(lab, invite("early", 6000))
        wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
        assert _reaches(lab, (STRANGER, 30000), wan_port, 6000)        # relaxed: in before the answer
        rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060))
        send_udp(lab, lab.wan, SRV, (ROUTER_WAN, 5060), _ok("early"))
        assert received(rx) is not None
        assert not _reaches(lab, (STRANGER, 30000), wan_port, 6000)    # the same flow, cut off
        assert _reaches(lab, (SERVER, 20000), wan_port, 6000)
    finally:
        alg.stop()


OPTIONS_PROBE = ("OPTIONS sip:100@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5070;branch=z9hG4bK%s\r\n"
                 "From: \"sipvicious\" <sip:100@%s>;tag=x\r\nTo: <sip:100@203.0.113.1>\r\nCall-ID: %s\r\n"
                 "CSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")


def test_scanners_dont_reach_a_registered_phone_but_the_registrar_does(lab, alg, logdir):
    Kamailio(lab, logdir).start()
    reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, name="reg",
               extra=["-key", "expires", "600"])
    assert reg.start().wait() == 0
    _add_wan_address(lab, STRANGER)
    for method, probe in (("OPTIONS", OPTIONS_PROBE % (STRANGER, "s1", STRANGER, "scan1")),
                          ("INVITE", (OPTIONS_PROBE % (STRANGER, "s2", STRANGER, "scan2")).replace("OPTIONS", "INVITE"))):
        rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060), timeout=1.5)
        send_udp(lab, lab.wan, (STRANGER, 5070), (ROUTER_WAN, 5060), probe.encode())
        assert received(rx) is None, "a %s from a scanner rang the phone" % method
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060))
    send_udp(lab, lab.wan, (SERVER, 5071), (ROUTER_WAN, 5060),
             (OPTIONS_PROBE % (SERVER, "r1", SERVER, "reg1")).encode())
    got = received(rx)
    assert got is not None and got[1].startswith(b"OPTIONS sip:100@10.0.0.2 SIP/2.0")
    t = lab.run(lab.rtr, "nft", "list", "counter", "ip", "sipalg", "sip_refused").stdout.decode()
    assert "packets 2 " in t


def test_two_phones_on_the_same_ports_one_after_the_other_each_hear_their_own(lab, alg, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 20)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, calls=2, duration_ms=2500, name="uas").start()
    time.sleep(0.3)
    results = []
    for ns, ip, name in ((lab.ph1, PHONES[0], "uac1"), (lab.ph2, PHONES[1], "uac2")):
        uac = Sipp(lab, ns, "uac.xml", ip, logdir, remote="%s:5060" % SERVER, rtp=6000, duration_ms=2500,
                   name=name).start()
        time.sleep(0.8)
        results.append(rtp_send(lab, ns, (ip, 6000), (SERVER, 20000), 40))
        late = rtp_send_bg(lab, ns, (ip, 6000), (SERVER, 20000), 40)    # still talking as the call ends
        assert uac.wait() == 0, name
        late.communicate(timeout=30)
        time.sleep(0.5)                                  # the next phone calls right after the BYE
    assert uas.wait() == 0
    assert [r["received"] for r in results] == [40, 40], results
    seen = echo.result()
    assert len(seen) >= 2                                # two WAN mappings, one per phone


def test_one_host_at_its_caps_leaves_room_for_another_phone(lab, logdir):
    cfg = logdir + "/caps.conf"
    write_config(cfg, limit_host_bindings=4, limit_host_calls=3)
    alg = Alg(lab, logdir, "--config", cfg).start()
    try:
        Kamailio(lab, logdir).start()
        for i in range(6):                               # six calls nobody answers: past the cap
            send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5099), invite("cap%d" % i, 7000 + 2 * i))
        for i in range(10):                              # ten more source ports: bindings past the cap
            send_udp(lab, lab.ph1, (PHONES[0], 21000 + i), SRV, _register("flood%d" % i, 21000 + i,
                                                                          via_port=21000 + i))
        time.sleep(1.0)
        st = alg.status()
        mine = [b for b in st["bindings"] if b["lan"].startswith(PHONES[0] + ":") and b["kind"] == "sip"]
        assert len(mine) == 4
        assert len([c for c in st["calls"] if c["phone"] == PHONES[0]]) == 3
        assert st["refused"].get("host at limit_host_bindings", 0) >= 6
        assert st["refused"].get("host at limit_host_calls", 0) >= 3
        # the past-the-cap INVITE went out as it came: unmodified
        got = _out(lab, invite("cap-more", 7100))
        assert b"c=IN IP4 10.0.0.2" in got[1]
        # the other phone registers and calls as if nothing happened
        reg = Sipp(lab, lab.ph2, "register.xml", PHONES[1], logdir, remote="%s:5060" % SERVER, name="reg2",
                   extra=["-key", "expires", "600"])
        assert reg.start().wait() == 0
        uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, port=5080, rtp=20000, name="uas").start()
        time.sleep(0.3)
        uac = Sipp(lab, lab.ph2, "uac.xml", PHONES[1], logdir, remote="%s:5080" % SERVER, rtp=6000, name="uac2")
        assert uac.start().wait() == 0 and uas.wait() == 0
        assert "refused signalling for 10.0.0.2" in alg.log()
    finally:
        alg.stop()


def test_a_lan_host_past_lan_sip_rate_passes_as_plain_nat_and_the_other_phones_are_served(lab, logdir):
    """One LAN device floods SIP (malware, a looping phone): past lan_sip_rate its datagrams leave as
    plain NAT, unqueued (none lost), so the daemon stays free for the other phones."""
    cfg = logdir + "/rate.conf"
    write_config(cfg, lan_sip_rate=100)
    alg = Alg(lab, logdir, "--config", cfg).start()
    try:
        n = 3000
        rx = Counter(lab, lab.wan, (SERVER, 5099), idle=3.0)
        flood = ("import socket,sys,time;s=socket.socket(2,2);s.bind(('10.0.0.2',5060));d=sys.stdin.buffer.read()\n"
                 "for i in range(%d):\n s.sendto(d,('203.0.113.10',5099))\n if i%%100==0: time.sleep(0.01)\n" % n)
        lab.run(lab.ph1, "python3", "-c", flood, input=_flood_options(), timeout=120)
        got = _out(lab, invite("other-phone", 6000).replace(b"10.0.0.2", PHONES[1].encode()), phone=1)
        assert b"c=IN IP4 %s" % ROUTER_WAN.encode() in got[1]          # the other phone: rewritten
        mine, other, _ = rx.result()
        assert mine + other == n                                        # none lost
        assert other > n // 2 and mine >= 100                           # the excess went as plain NAT
        t = lab.run(lab.rtr, "nft", "list", "counter", "ip", "sipalg", "sip_flood_lan").stdout.decode()
        assert int(re.search(r"packets (\d+)", t).group(1)) == other
        assert alg.status()["counters"]["queued"] < n // 2
    finally:
        alg.stop()


def _flood_options():
    return (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKflood\r\n"
            b"From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: flood\r\nCSeq: 1 OPTIONS\r\n"
            b"Contact: <sip:a@10.0.0.2:5060>\r\nContent-Length: 0\r\n\r\n")
