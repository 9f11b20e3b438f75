"""Odd bytes on the wire: folded Content-Length, non-UTF-8 in what the engine writes down."""
from alg.core.engine import Engine, OUT, IN
from alg.core.events import InternalError
from alg.core.config import Config
from alg.core.message import parse_message
from alg.core.result import Result
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, invite, register


def crashed(r):
    return any(isinstance(e, InternalError) for e in r.events)


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))


def test_folded_content_length_gets_its_new_value_where_the_old_one_was():
    for fold in (b"\r\n ", b"\r\n\t", b" \r\n   "):
        data = invite()
        old = parse_message(data).value(b"content-length")
        data = data.replace(b"Content-Length: " + old + b"\r\n",
                            b"Content-Length:" + fold + old + b"\r\n")
        r = engine().handle(OUT, PHONE, SERVER, data, 1.0)
        assert r.status == "rewritten", r.reason
        m = parse_message(r.payload)
        new = str(len(m.body)).encode()
        assert new != old                       # the SDP changed length
        assert b"\r\nContent-Length:" + fold + new + b"\r\n\r\n" in r.payload, r.payload
        assert r.payload.count(b"Content-Length") == 1


def test_folded_compact_length_lf_only():
    data = invite().replace(b"\r\n", b"\n")
    m = parse_message(data)
    old = m.value(b"content-length")
    data = data.replace(b"Content-Length: " + old + b"\n", b"l:\n " + str(len(m.body)).encode() + b"\n")
    r = engine().handle(OUT, PHONE, SERVER, data, 1.0)
    assert r.status == "rewritten", r.reason
    m = parse_message(r.payload)
    assert b"\nl:\n " + str(len(m.body)).encode() + b"\n\n" in r.payload


def test_notes_render_any_bytes():
    r = Result(notes=[("m=%s %d -> %d", b"aud\xffio", 5, 6), ("Request-URI %s -> %s", b"sip:\xc3(@x", b"a\\b"),
                      ("plain",)])
    assert r.reason == "m=aud\\xffio 5 -> 6; Request-URI sip:\\xc3(@x -> a\\x5cb; plain"


def test_non_utf8_media_token_renders():
    body = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
            b"m=aud\xffio 6000 RTP/AVP 0\r\n")
    data = invite().split(b"\r\n\r\n")[0]
    data = data[:data.rfind(b"Content-Length:")] + b"Content-Length: " + str(len(body)).encode() + \
        b"\r\n\r\n" + body
    r = engine().handle(OUT, PHONE, SERVER, data, 1.0)
    assert r.status == "rewritten"
    assert not crashed(r) and "\\xff" in r.reason
    for ev in r.events:
        ev.describe()


def test_non_utf8_call_id_and_headers_never_raise():
    e = engine()
    for old, new in ((b"Call-ID: call1@10.0.0.2", b"Call-ID: c\xff\xfe@10.0.0.2"),
                     (b"Max-Forwards: 70", b"Max-Forwards: 7\xc3\x28"),
                     (b"From: \"Alice, A\"", b"From: \"Al\xe9ce\"")):
        r = e.handle(OUT, PHONE, SERVER, invite().replace(old, new), 1.0)
        assert not crashed(r), r.reason
        for ev in r.events:
            ev.describe()


def test_non_utf8_inbound_request_uri_never_raises():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    inv = (b"INVITE sip:al\xffice@203.0.113.1:5060 SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKi1\r\n"
           b"From: <sip:c@203.0.113.10>;tag=c1\r\nTo: <sip:alice@203.0.113.10>\r\n"
           b"Call-ID: i1@203.0.113.10\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    r = e.handle(IN, SERVER, WAN, inv, 2.0)
    assert r.status == "malformed" and r.payload is None      # not a URI byte (RFC 3261 25.1)
    assert not crashed(r) and "Request-URI" in r.reason
