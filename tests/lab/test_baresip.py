"""baresip, a real user agent, behind the router: registers, answers, calls, talks, hangs up.

alice is baresip on phone 1 (10.0.0.2:5060), registered at kamailio on the WAN server;
bob is baresip on the server (203.0.113.10:5070), also registered there. Both send a
sine tone as G.711 RTP, so media is real in both directions and counted on the wire.
"""
import re
import time

import pytest

from tests.support.lab.baresip import Baresip
from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Capture, Kamailio
from tests.support.need import require_lab

REGISTRAR = "%s:5060" % SERVER


@pytest.fixture(autouse=True)
def _tools():
    require_lab(extra=("baresip", "kamailio"))        # before the lab is built


@pytest.fixture
def phones(lab, alg, logdir):
    Kamailio(lab, logdir).start()
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    lan = Capture(lab, lab.ph1, "eth0", logdir + "/lan.pcap")
    bob = Baresip(lab, lab.wan, SERVER, logdir, user="bob", port=5070, registrar=REGISTRAR,
                  rtp_ports=(20000, 20019))
    alice = Baresip(lab, lab.ph1, PHONES[0], logdir, user="alice", registrar=REGISTRAR,
                    rtp_ports=(6000, 6019))
    try:
        bob.start()
        alice.start()
        bob.wait_registered()
        alice.wait_registered()
        yield alice, bob, wan, lan
    finally:
        alice.stop()
        bob.stop()
        for ua in (alice, bob):
            print("----- %s\n%s" % (ua.name, ua.log()[-3000:]))


def _sip(packets, first):
    return [p for p in packets if p[4].startswith(first)]


def _media(msg):
    """(c= address, m=audio port) of a SIP message's SDP."""
    c = re.search(rb"\r\nc=IN IP4 ([0-9.]+)", msg).group(1).decode()
    m = int(re.search(rb"\r\nm=audio (\d+) ", msg).group(1))
    return c, m


def _rtp(packets, src, dst):
    """RTP (version 2, not RTCP) packets from src (ip, port) to dst (ip, port)."""
    return [p for p in packets if (p[0], p[1]) == src and (p[2], p[3]) == dst
            and len(p[4]) >= 12 and p[4][0] >> 6 == 2 and not 200 <= p[4][1] <= 204]


def _pinholes_closed(alg, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        t = alg.kernel_table()
        if t["media2lan"] == [] and t["media_peer"] == [] and t["media_open"] == []:
            return t
        if time.monotonic() > deadline:
            return t
        time.sleep(0.2)


def test_baresip_registers_through_router_and_answers_call_from_wan(lab, alg, phones):
    alice, bob, wan, lan = phones
    regs = alg.status()["registrations"]
    assert [r["lan"] for r in regs] == ["%s:5060" % PHONES[0]]
    # an incoming call: bob -> kamailio -> (location says the router) -> ALG -> alice, who answers
    bob.dial("sip:alice@%s" % SERVER)
    bob.wait_event("CALL_ESTABLISHED", 10)
    assert alice.wait_event("CALL_ESTABLISHED", 5)["direction"] == "incoming"
    time.sleep(2.0)                                          # 2 s of audio each way
    during = alg.kernel_table()
    assert len(during["media2lan"]) == 2                     # RTP and RTCP
    bob.hangup()                                             # the BYE comes in from the WAN
    alice.wait_event("CALL_CLOSED", 5)
    bob.wait_event("CALL_CLOSED", 5)
    after = _pinholes_closed(alg)
    assert after["media2lan"] == [] and after["media_peer"] == [] and after["media_open"] == []

    wpk, lpk = wan.packets(), lan.packets()
    reg = [p for p in _sip(wpk, b"REGISTER") if b"alice" in p[4]][0]
    assert (reg[0], reg[1]) == (ROUTER_WAN, 5060)
    assert re.search(rb"Contact: <sip:[^@>]+@%s:5060>" % ROUTER_WAN.encode(), reg[4]), reg[4]
    # kamailio sent the INVITE to the Contact the ALG wrote; the phone got it on its own address
    inv_wan = [p for p in _sip(wpk, b"INVITE") if p[2] == ROUTER_WAN][0]
    assert (inv_wan[2], inv_wan[3]) == (ROUTER_WAN, 5060)
    inv_lan = _sip(lpk, b"INVITE")[0]
    assert (inv_lan[2], inv_lan[3]) == (PHONES[0], 5060)
    assert re.match(rb"INVITE sip:[^@ ]+@%s:5060[ ;]" % PHONES[0].encode(), inv_lan[4]), inv_lan[4][:80]
    # alice's answer: the WAN sees the router's address in Contact and SDP, the phone's port maps
    ok_lan = [p for p in _sip(lpk, b"SIP/2.0 200") if b"CSeq: " in p[4] and b" INVITE" in p[4] and p[0] == PHONES[0]][0]
    ok_wan = [p for p in _sip(wpk, b"SIP/2.0 200") if b" INVITE" in p[4] and p[0] == ROUTER_WAN][0]
    assert _media(ok_lan[4])[0] == PHONES[0]
    c_wan, m_wan = _media(ok_wan[4])
    assert c_wan == ROUTER_WAN
    assert re.search(rb"Contact: <sip:[^@>]+@%s:5060>" % ROUTER_WAN.encode(), ok_wan[4]), ok_wan[4]
    bob_ip, bob_port = _media(inv_wan[4])
    assert bob_ip == SERVER
    m_lan = _media(ok_lan[4])[1]
    # audio both ways, at the addresses the SDP named on each side
    out_wan = _rtp(wpk, (ROUTER_WAN, m_wan), (SERVER, bob_port))
    in_lan = _rtp(lpk, (SERVER, bob_port), (PHONES[0], m_lan))
    assert len(out_wan) >= 50 and len(in_lan) >= 50, (len(out_wan), len(in_lan))
    stats = alice.rtp_stats()[-1]
    assert stats["tx"] >= 50 and stats["rx"] >= 50, stats


def test_baresip_calls_out_audio_both_ways_and_bye_closes_pinholes(lab, alg, phones):
    alice, bob, wan, lan = phones
    alice.dial("sip:bob@%s:5070" % SERVER)
    alice.wait_event("CALL_ESTABLISHED", 10)
    assert bob.wait_event("CALL_ESTABLISHED", 5)["direction"] == "incoming"
    time.sleep(2.0)
    during = alg.kernel_table()
    assert len(during["media2lan"]) == 2 and len(during["media_peer"]) == 2
    alice.hangup()                                           # the BYE goes out through the router
    bob.wait_event("CALL_CLOSED", 5)
    alice.wait_event("CALL_CLOSED", 5)
    after = _pinholes_closed(alg)
    assert after["media2lan"] == [] and after["media_peer"] == [] and after["media_open"] == []
    assert len(after["sip2lan"]) == 1                        # the registration keeps the signalling binding

    wpk, lpk = wan.packets(), lan.packets()
    inv = [p for p in _sip(wpk, b"INVITE") if p[3] == 5070][0]
    assert (inv[0], inv[1]) == (ROUTER_WAN, 5060)
    via = re.search(rb"Via: SIP/2.0/UDP ([^;\r]+)", inv[4]).group(1).decode()
    assert via == "%s:5060" % ROUTER_WAN
    assert re.search(rb"Contact: <sip:[^@>]+@%s:5060>" % ROUTER_WAN.encode(), inv[4]), inv[4]
    c_wan, m_wan = _media(inv[4])
    assert c_wan == ROUTER_WAN
    sip = b"".join(p[4] for p in wpk if 5060 in (p[1], p[3]) or 5070 in (p[1], p[3]))
    assert PHONES[0].encode() not in sip                     # nothing of the LAN leaks to the WAN
    inv_lan = _sip(lpk, b"INVITE")[0]
    c_lan, m_lan = _media(inv_lan[4])
    assert c_lan == PHONES[0]
    ok = [p for p in _sip(wpk, b"SIP/2.0 200") if p[1] == 5070 and b" INVITE" in p[4]][0]
    bob_ip, bob_port = _media(ok[4])
    assert bob_ip == SERVER
    ok_lan = [p for p in _sip(lpk, b"SIP/2.0 200") if b" INVITE" in p[4]][0]
    assert b"Via: SIP/2.0/UDP %s:5060;" % PHONES[0].encode() in ok_lan[4]     # the phone sees its own Via
    # RTP: at the server from the router's address and the port the SDP announced, and back to the phone
    out_wan = _rtp(wpk, (ROUTER_WAN, m_wan), (SERVER, bob_port))
    in_wan = _rtp(wpk, (SERVER, bob_port), (ROUTER_WAN, m_wan))
    out_lan = _rtp(lpk, (PHONES[0], m_lan), (SERVER, bob_port))
    in_lan = _rtp(lpk, (SERVER, bob_port), (PHONES[0], m_lan))
    assert min(len(out_wan), len(in_wan), len(out_lan), len(in_lan)) >= 50, \
        (len(out_wan), len(in_wan), len(out_lan), len(in_lan))
    assert len(in_lan) >= len(in_wan) - 2                    # what bob sent reached the phone
    bye = [p for p in _sip(wpk, b"BYE") if p[3] == 5070][0]
    assert (bye[0], bye[1]) == (ROUTER_WAN, 5060)
    assert _sip([p for p in wpk if p[1] == 5070], b"SIP/2.0 200")[-1][4].find(b"CSeq:") > 0
    a, b = alice.rtp_stats()[-1], bob.rtp_stats()[-1]
    assert a["tx"] >= 50 and a["rx"] >= 50 and b["tx"] >= 50 and b["rx"] >= 50, (a, b)
