"""Inbound rewriting: what the phone sees, so that it can't tell NAT is there."""
from alg.core.engine import Engine, OUT, IN, DROP
from alg.core.config import Config
from sipmsgs import PHONE, PHONE2, SERVER, WAN, WAN_IP, invite, register, response, header_line, crlf, sdp


def engine(**kw):
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999), **kw))


def test_response_via_restored_exactly():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
    r = e.handle(IN, SERVER, WAN, response(100, "Trying", via, "call1@10.0.0.2", 1, "INVITE"), 1.1)
    assert header_line(r.payload, b"Via:") == \
        b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinv1;rport=5060;received=10.0.0.2"
    assert r.dnat == PHONE


def test_response_via_without_port_restored():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite().replace(b"UDP 10.0.0.2:5060", b"UDP 10.0.0.2"), 1.0)
    via = "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
    r = e.handle(IN, SERVER, WAN, response(100, "Trying", via, "call1@10.0.0.2", 1, "INVITE"), 1.1)
    assert header_line(r.payload, b"Via:") == \
        b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKinv1;rport=5060;received=10.0.0.2"



def test_plain_sent_by_is_rebuilt_not_remembered():
    """10k registering phones that write their sent-by as ip:port cost no remembered Via each:
    the response's rebuild gives the phone back the same bytes."""
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    assert len(e.transactions) == 0
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
    r = e.handle(IN, SERVER, WAN, response(100, "Trying", via, "call1@10.0.0.2", 1, "INVITE"), 1.1)
    assert header_line(r.payload, b"Via:") == \
        b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinv1;rport=5060;received=10.0.0.2"


def test_sent_by_written_otherwise_is_remembered():
    """Spacing, a missing port or a leading zero: the rebuild would differ, so the Via is kept."""
    for spelt, echoed in ((b"10.0.0.2 : 5060", "203.0.113.1 : 5060"), (b"10.0.0.2", "203.0.113.1"),
                          (b"10.0.0.2:05060", "203.0.113.1:05060")):
        e = engine()
        e.handle(OUT, PHONE, SERVER, invite().replace(b"UDP 10.0.0.2:5060", b"UDP " + spelt), 1.0)
        assert len(e.transactions) == 1, spelt
        via = "SIP/2.0/UDP %s;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1" % echoed
        r = e.handle(IN, SERVER, WAN, response(100, "Trying", via, "call1@10.0.0.2", 1, "INVITE"), 1.1)
        assert header_line(r.payload, b"Via:") == \
            b"Via: SIP/2.0/UDP " + spelt + b";branch=z9hG4bKinv1;rport=5060;received=10.0.0.2", spelt

def test_rport_maps_to_collided_phone_port():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    r = e.handle(OUT, PHONE2, SERVER, register(ip="10.0.0.3", call_id="reg2", branch="z9hG4bKr2"), 1.0)
    wan_port = e.lookup_lan(PHONE2).wan[1]
    assert wan_port != 5060
    via = "SIP/2.0/UDP 203.0.113.1:%d;branch=z9hG4bKr2;rport=%d;received=203.0.113.1" % (wan_port, wan_port)
    resp = response(200, "OK", via, "reg2", 1, "REGISTER", contact="<sip:alice@203.0.113.1:%d>;expires=600" % wan_port)
    r = e.handle(IN, SERVER, (WAN_IP, wan_port), resp, 1.1)
    assert r.dnat == PHONE2
    assert header_line(r.payload, b"Via:") == \
        b"Via: SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKr2;rport=5060;received=10.0.0.3"
    assert header_line(r.payload, b"Contact:") == b"Contact: <sip:alice@10.0.0.3:5060>;expires=600"


def test_foreign_via_left_alone():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    via = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKzz;received=203.0.113.1"
    data = response(200, "OK", via, "other", 1, "OPTIONS")
    r = e.handle(IN, SERVER, WAN, data, 1.1)
    assert r.payload is None


def test_incoming_request_uri_mapped_back():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    data = crlf("INVITE sip:alice@203.0.113.1:5060;transport=udp SIP/2.0\n"
                "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKsrv1\n"
                "From: <sip:carol@203.0.113.10>;tag=c1\nTo: <sip:alice@203.0.113.10>\n"
                "Call-ID: in1\nCSeq: 1 INVITE\nContact: <sip:carol@203.0.113.10>\n"
                "Content-Length: 0\n\n")
    r = e.handle(IN, SERVER, WAN, data, 2.0)
    assert r.payload.startswith(b"INVITE sip:alice@10.0.0.2:5060;transport=udp SIP/2.0\r\n")
    assert b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKsrv1\r\n" in r.payload
    assert r.dnat == PHONE


def test_no_binding_passes_unchanged():
    e = engine()
    r = e.handle(IN, SERVER, (WAN_IP, 40000), invite(ip="203.0.113.10"), 1.0)
    assert r.payload is None and r.dnat is None


def test_keepalive_ping_answered_and_nul_absorbed():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    r = e.handle(IN, SERVER, WAN, b"\r\n\r\n", 2.0)
    assert r.verdict == DROP and r.status == "keepalive"
    assert [(a.kind, a.src, a.dst, a.payload) for a in r.actions if a.kind == "send"] == \
        [("send", WAN, SERVER, b"\r\n")]
    r = e.handle(IN, SERVER, WAN, b"\x00\x00\x00\x00", 2.0)
    assert r.verdict == DROP and not [a for a in r.actions if a.kind == "send"]
    r = e.handle(IN, SERVER, WAN, b"\r\n", 2.0)
    assert r.verdict == "accept" and r.dnat == PHONE
    assert e.counters["keepalive"] == 3 and e.counters["keepalives_answered"] == 1


def test_keepalive_off_passes():
    e = engine(answer_keepalives="off")
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    r = e.handle(IN, SERVER, WAN, b"\r\n\r\n", 2.0)
    assert r.verdict == "accept" and not r.actions and r.dnat == PHONE


def test_outbound_ping_keeps_binding():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, b"\r\n\r\n", 2.0)
    assert r.status == "keepalive" and r.payload is None
    assert e.lookup_lan(PHONE) is not None


def _options():
    return crlf("OPTIONS sip:alice@203.0.113.1:5060 SIP/2.0\n"
                "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKopt\n"
                "From: <sip:ka@203.0.113.10>;tag=k1\nTo: <sip:alice@203.0.113.1:5060>\n"
                "Call-ID: opt1\nCSeq: 7 OPTIONS\nContent-Length: 0\n\n")


def test_options_mode_answers_for_registered_phone():
    e = engine(answer_keepalives="options")
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1"
    e.handle(IN, SERVER, WAN, response(200, "OK", via, "reg1@10.0.0.2", 1, "REGISTER",
                                        contact="<sip:alice@203.0.113.1:5060>;expires=600"), 1.1)
    r = e.handle(IN, SERVER, WAN, _options(), 2.0)
    assert r.verdict == DROP
    sends = [a for a in r.actions if a.kind == "send"]
    assert len(sends) == 1 and sends[0].dst == SERVER and sends[0].src == WAN
    ok = sends[0].payload
    assert ok.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKopt\r\n" in ok
    assert b"CSeq: 7 OPTIONS\r\n" in ok and b"Call-ID: opt1\r\n" in ok
    assert b"To: <sip:alice@203.0.113.1:5060>;tag=" in ok
    assert ok.endswith(b"Content-Length: 0\r\n\r\n")


def test_options_mode_not_registered_passes_to_phone():
    e = engine(answer_keepalives="options")
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    r = e.handle(IN, SERVER, WAN, _options(), 2.0)
    assert r.verdict == "accept" and r.dnat == PHONE
    assert r.payload.startswith(b"OPTIONS sip:alice@10.0.0.2:5060 SIP/2.0")


def test_own_from_mapped_back_in_responses_only_when_via_is_ours():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
    data = response(100, "Trying", via, "call1@10.0.0.2", 1, "INVITE").replace(
        b"<sip:alice@10.0.0.2>", b"<sip:alice@203.0.113.1>")
    r = e.handle(IN, SERVER, WAN, data, 1.1)
    assert header_line(r.payload, b"From:") == b'From: "Alice, A" <sip:alice@10.0.0.2>;tag=a1'
    foreign = data.replace(b"UDP 203.0.113.1:5060;branch=z9hG4bKinv1", b"UDP 198.51.100.7:5060;branch=z9hG4bKx")
    r = e.handle(IN, SERVER, WAN, foreign, 1.2)
    assert r.payload is None
