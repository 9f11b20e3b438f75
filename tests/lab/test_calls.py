"""End to end through the router: real kernel, real sipp, real packets."""
import re
import signal
import time

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import (SLOW, Alg, ArmedSend, Capture, RtpEcho, Sipp, exchange_udp, received, received_at,
                                     recv_udp, rtp_send, rtp_send_bg, send_udp)

SRV = (SERVER, 5060)


def _sip_messages(packets, first_word):
    return [p for p in packets if p[4].startswith(first_word)]


def _until(condition, seconds: float) -> None:
    """Wait until condition() holds (at most SECONDS, dilated like the lab's clock in the VM)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within %.1f s" % seconds
        time.sleep(0.1)


def _call(lab, logdir, phone_ns, phone_ip, rtp=6000, duration_ms=2500, name="uac"):
    uac = Sipp(lab, phone_ns, "uac.xml", phone_ip, logdir, remote="%s:5060" % SERVER, rtp=rtp,
               duration_ms=duration_ms, name=name).start()
    return uac


def test_outbound_call_rewritten_and_audio_both_ways(lab, alg, logdir):
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    lan = Capture(lab, lab.ph1, "eth0", logdir + "/lan.pcap")
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 6)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3)
    uac = _call(lab, logdir, lab.ph1, PHONES[0])
    time.sleep(0.8)
    rtp = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 50)
    assert uac.wait() == 0 and uas.wait() == 0
    seen = echo.result()
    # RTP both ways, and from the port the SDP promised
    assert rtp["received"] == 50 and seen == {"%s:6000" % ROUTER_WAN: 50}
    pk = wan.packets()
    inv = _sip_messages(pk, b"INVITE")[0]
    src = "%s:%d" % (inv[0], inv[1])
    via = re.search(rb"Via: SIP/2.0/UDP ([^;\r]+)", inv[4]).group(1).decode()
    assert via == src == "%s:5060" % ROUTER_WAN
    assert b"Contact: <sip:phone@%s:5060>" % ROUTER_WAN.encode() in inv[4]
    assert b"c=IN IP4 %s\r\n" % ROUTER_WAN.encode() in inv[4]
    m_port = int(re.search(rb"m=audio (\d+)", inv[4]).group(1))
    assert "%s:%d" % (ROUTER_WAN, m_port) in seen
    sip = b"".join(p[4] for p in pk if p[1] == 5060 or p[3] == 5060)
    assert PHONES[0].encode() not in re.sub(rb"Call-ID: [^\r]*", b"", sip)     # Call-ID is opaque: kept
    # the phone sees its own Via back
    ok = [p for p in lan.packets() if p[4].startswith(b"SIP/2.0 200")][0]
    assert b"Via: SIP/2.0/UDP %s:5060;" % PHONES[0].encode() in ok[4]


def test_bye_closes_pinholes_in_kernel(lab, alg, logdir):
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3)
    uac = _call(lab, logdir, lab.ph1, PHONES[0], duration_ms=2000)
    time.sleep(1.0)
    during = alg.kernel_table()
    assert len(during["media2lan"]) == 2 and len(during["media_peer"]) == 2
    assert uac.wait() == 0 and uas.wait() == 0
    time.sleep(0.3)
    after = alg.kernel_table()
    assert after["media2lan"] == [] and after["media_peer"] == [] and after["media_open"] == []
    assert len(after["sip2lan"]) == 1            # the signalling binding stays for its idle time


def test_two_phones_same_ports_both_get_audio(lab, alg, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 8)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, calls=2, name="uas").start()
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    time.sleep(0.3)
    u1 = _call(lab, logdir, lab.ph1, PHONES[0], duration_ms=3500, name="uac1")
    u2 = _call(lab, logdir, lab.ph2, PHONES[1], duration_ms=3500, name="uac2")
    time.sleep(1.0)
    s1 = rtp_send_bg(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 50)
    s2 = rtp_send_bg(lab, lab.ph2, (PHONES[1], 6000), (SERVER, 20000), 50)
    import json
    r1, r2 = json.loads(s1.communicate(timeout=30)[0]), json.loads(s2.communicate(timeout=30)[0])
    assert u1.wait() == 0 and u2.wait() == 0 and uas.wait() == 0
    assert r1["received"] == 50 and r2["received"] == 50
    seen = echo.result()
    assert len(seen) == 2 and all(n == 50 for n in seen.values())
    invites = _sip_messages(wan.packets(), b"INVITE")
    pairs = set()
    for inv in invites:
        via = re.search(rb"Via: SIP/2.0/UDP ([^;\r]+)", inv[4]).group(1).decode()
        assert via == "%s:%d" % (inv[0], inv[1])            # consistent with the packet
        m = int(re.search(rb"m=audio (\d+)", inv[4]).group(1))
        assert "%s:%d" % (ROUTER_WAN, m) in seen             # consistent with the media
        pairs.add((inv[1], m))
    assert len(pairs) == 2 and len({p[0] for p in pairs}) == 2 and len({p[1] for p in pairs}) == 2


def test_public_address_phone_passes_byte_identical(lab, alg):
    msg = (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKstun;rport\r\n"
           b"From: <sip:a@203.0.113.1>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: stun1\r\nCSeq: 1 OPTIONS\r\n"
           b"Contact: <sip:a@203.0.113.1:5060>\r\nContent-Length: 0\r\n\r\n")
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, msg)
    src, payload = received(rx)
    assert payload == msg


def test_malformed_and_keepalives_pass_and_daemon_survives(lab, alg):
    cases = [b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00", b"\x16\x03garbage\xff",
             b"INVITE sip:x@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060\r\nContent-Length: 999\r\n\r\nabc",
             b"INVITE sip:x@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:50"]
    for c in cases:
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, c)
        got = received(rx)
        assert got is not None and got[1] == c, c
    assert alg.proc.poll() is None
    good = (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKok\r\n"
            b"From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: ok1\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n")
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, good)
    src, payload = received(rx)
    assert b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKok" in payload
    st = alg.status()["counters"]
    assert st["malformed"] >= 3 and st["keepalive"] >= 3
    # an inbound CRLFCRLF ping to the phone's binding is answered by the router
    got = exchange_udp(lab, lab.wan, (SERVER, 5070), (ROUTER_WAN, 5060), b"\r\n\r\n")
    assert got is not None and got[1] == b"\r\n" and got[0] == (ROUTER_WAN, 5060)


def test_no_rtp_is_queued(lab, alg, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 8)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3)
    uac = _call(lab, logdir, lab.ph1, PHONES[0], duration_ms=6000)
    time.sleep(0.8)
    rtp = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 250, 0.02)      # 5 s of audio
    assert uac.wait() == 0 and uas.wait() == 0
    assert rtp["received"] == 250 and sum(echo.result().values()) == 250
    counters = alg.status()["counters"]
    assert counters["media_queued"] == 0
    assert 6 <= counters["queued"] <= 12        # INVITE, 180, 200, ACK, BYE, 200 (+ retransmissions)


def test_sigkill_fails_open_and_restart_picks_up(lab, alg, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 12)
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3)
    # the BYE comes after the restart, however long a start takes (about 6 s under TCG at SLOW 1)
    uac = _call(lab, logdir, lab.ph1, PHONES[0], duration_ms=14000)
    _until(lambda: len(alg.kernel_table()["media2lan"]) == 2, 10.0)     # the 200 crossed: media admitted
    sender = rtp_send_bg(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 300, 0.02)
    time.sleep(1.0)
    msg = (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKfo\r\n"
           b"From: <sip:a@10.0.0.3>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: fo1\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")
    # receiver and sender start before the kill (seconds each under TCG, where procd respawns
    # the daemon 5 s after it dies): the datagram goes out the moment the daemon is gone
    rx = recv_udp(lab, lab.wan, (SERVER, 5080), timeout=30)        # sipp holds 5060 there
    tx = ArmedSend(lab, lab.ph2, (PHONES[1], 5060), (SERVER, 5080), msg)
    alg.stop(signal.SIGKILL)
    sent = tx.fire()
    got = received_at(rx)
    # fail-open: through at once (the kernel's clock, not a queue waiting for a listener), unmodified
    assert got is not None and got[1] == msg and got[2] - sent < 1.0 * SLOW, (got, sent)
    alg.start()
    st = alg.status()
    kinds = sorted(b["kind"] for b in st["bindings"])
    assert kinds.count("rtp") == 1 and kinds.count("sip") >= 1
    import json
    r = json.loads(sender.communicate(timeout=30)[0])
    assert uac.wait() == 0 and uas.wait() == 0
    assert r["received"] >= 295                   # audio kept flowing through the kill and restart
    deadline = time.monotonic() + 2.0 * SLOW       # the BYE closed the pinholes picked up after the restart
    t = alg.kernel_table()
    while (t["media2lan"] or t["media_peer"]) and time.monotonic() < deadline:
        time.sleep(0.1)
        t = alg.kernel_table()
    assert t["media2lan"] == [] and t["media_peer"] == [], t
    alg.stop(signal.SIGTERM)
    assert alg.kernel_table() == {}
    ipt = lab.run(lab.rtr, "iptables-save").stdout.decode()
    assert "NFQUEUE" not in ipt
    assert "sipalg" not in lab.run(lab.rtr, "nft", "list", "tables").stdout.decode()


def test_slipstreaming_guard_opens_nothing(lab, alg):
    # a LAN host asks for media on port 22, and names another host's address
    evil = (b"INVITE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKev\r\n"
            b"From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: ev1\r\nCSeq: 1 INVITE\r\n"
            b"Contact: <sip:a@10.0.0.3:5060>\r\nContent-Type: application/sdp\r\n")
    sdp = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 22 RTP/AVP 0\r\n"
           b"m=video 3306 RTP/AVP 96\r\nc=IN IP4 10.0.0.3\r\n")
    msg = evil + b"Content-Length: %d\r\n\r\n" % len(sdp) + sdp
    # restrict the media range as a router owner would, so 3306 is outside it too
    alg.stop()
    a2 = Alg(lab, alg.state_dir.rsplit("/", 1)[0], "--rtp-ports", "10000-20000").start()
    try:
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, msg)
        got = received(rx)
        assert got is not None
        t = a2.kernel_table()
        assert t["media2lan"] == [] and t["media_open"] == []
        assert len(t["sip2lan"]) == 1              # only the sender's own signalling binding
        assert b"Contact: <sip:a@10.0.0.3:5060>" in got[1]
        # a SIP-looking payload inside TCP opens nothing
        code = ("import socket;s=socket.socket();s.settimeout(2)\ntry:\n s.connect(('203.0.113.10',5060));"
                "s.send(open('/dev/stdin','rb').read())\nexcept OSError: pass")
        lab.run(lab.ph1, "python3", "-c", code, input=msg.replace(b"m=audio 22", b"m=audio 12000"))
        time.sleep(0.3)
        t = a2.kernel_table()
        assert t["media2lan"] == [] and t["media_open"] == []
    finally:
        a2.stop()
