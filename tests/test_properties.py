"""Property-based tests of the engine over generated SIP datagrams (tests/sipgen.py).

  (a) nothing escapes Engine.handle, and nothing inside it crashes (the
      engine turns internal exceptions into "malformed", so the reason text
      is checked too), for random bytes and damaged messages, both ways;
  (b) whatever it rewrites parses again and its Content-Length is right;
  (c) messages naming only public addresses pass untouched, and rewriting
      is idempotent: the engine's own output goes through unchanged;
  (d) the message model serializes generated messages byte for byte;
  (e) random bytes (non-UTF-8 included) in every position the engine reads
      (Request-URI, method, Via parts, display names, URIs, tags, Call-ID,
      CSeq, Contact, Content-Type/-Length, SDP o=/c=/m=/a= tokens, multipart
      boundaries, status line) never crash it, with the grammar check on and
      off (off, the rewrite code itself meets the bytes), and every text it
      renders (reason, events) is total.
"""
import re

from hypothesis import HealthCheck, given, settings, strategies as st

import alg.core.engine
from alg.core.config import Config
from alg.core.engine import Engine, OUT, IN, ACCEPT, DROP
from alg.core.events import InternalError
from alg.core.message import parse_message, MalformedMessage

from tests import sipgen
from tests.sipgen import PHONE, SERVER, WAN, WAN_IP, PHONE_IP, sip_message, mutated, prime

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
STATUSES = ("rewritten", "unchanged", "malformed", "keepalive", "dropped")
VIA_SENT_BY = re.compile(rb"SIP\s*/\s*2\.0\s*/\s*[^\s/]+\s+(\[[^\]]*\]|[^\s:;,\[]+)", re.I)


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24", "fd00::/8"],
                         rtp_ports=(10000, 65535)))


def primed():
    return prime(engine())


def crashed(res):
    return any(isinstance(e, InternalError) for e in res.events)


def check_result(res, data):
    """What every result must satisfy, whatever came in."""
    assert res.status in STATUSES
    assert not crashed(res), "engine crashed on %r: %s" % (data, res.reason)
    assert res.verdict in (ACCEPT, DROP)
    if res.payload is not None:
        assert res.status == "rewritten"
        assert res.payload != data
        check_output(res.payload)


def check_output(out):
    msg = parse_message(out)      # must parse: raises MalformedMessage otherwise
    assert msg.to_bytes() == out
    for h in msg.get_all(b"content-length"):
        assert int(h.value.strip()) == len(msg.body), \
            "%s: %s but %d body bytes in %r" % (h.name, h.value.strip(), len(msg.body), out)


def both_ways(data):
    eng = primed()
    for direction, src, dst in ((OUT, PHONE, SERVER), (IN, SERVER, WAN)):
        check_result(eng.handle(direction, src, dst, data, 2.0), data)


# ----------------------------------------------------------------- (a), (b)

@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data):
    both_ways(data)


@SETTINGS
@given(st.binary(max_size=200).map(lambda b: b"INVITE sip:a@10.0.0.2 SIP/2.0\r\nVia: " + b))
def test_random_header_bytes_never_crash(data):
    both_ways(data)


@SETTINGS
@given(mutated(sip_message(hosts=sipgen.PRIVATE)))
def test_mutated_messages_never_crash(data):
    both_ways(data)


@SETTINGS
@given(sip_message(hosts=sipgen.PRIVATE))
def test_phone_messages_rewrite_cleanly(data):
    """(b) plus: a request whose top Via names the phone leaves with the WAN in it."""
    eng = primed()
    res = eng.handle(OUT, PHONE, SERVER, data, 2.0)
    check_result(res, data)
    assert res.status in ("rewritten", "unchanged")
    msg = parse_message(data)
    if msg.is_request:
        via = msg.get(b"via")
        m = VIA_SENT_BY.search(via.value)
        if m and m.group(1) == PHONE_IP.encode():
            assert res.payload is not None, "top Via names the phone but nothing was rewritten"
            top = VIA_SENT_BY.search(parse_message(res.payload).get(b"via").value).group(1)
            assert top == WAN_IP.encode()


@SETTINGS
@given(sip_message(hosts=sipgen.REMOTE, via_hosts=(WAN_IP,)))
def test_inbound_messages_rewrite_cleanly(data):
    """Requests and responses coming in to the WAN address, Via naming the WAN."""
    eng = primed()
    res = eng.handle(IN, SERVER, WAN, data, 2.0)
    check_result(res, data)
    assert res.status in ("rewritten", "unchanged", "keepalive")


# ---------------------------------------------------------------------- (c)

@SETTINGS
@given(sip_message(hosts=sipgen.PUBLIC))
def test_public_messages_pass_unchanged(data):
    eng = primed()
    res = eng.handle(OUT, PHONE, SERVER, data, 2.0)
    check_result(res, data)
    assert res.payload is None, "%s: %s" % (res.status, res.reason)
    assert res.status == "unchanged"


@SETTINGS
@given(sip_message(hosts=sipgen.PRIVATE))
def test_rewriting_is_idempotent(data):
    eng = primed()
    first = eng.handle(OUT, PHONE, SERVER, data, 2.0)
    check_result(first, data)
    if first.payload is None:
        return
    again = eng.handle(OUT, PHONE, SERVER, first.payload, 2.5)
    assert again.payload is None, "second pass changed %r into %r (%s)" % (
        first.payload, again.payload, again.reason)
    assert again.status == "unchanged"
    # A fresh engine (no bindings yet) agrees: the output is already public.
    fresh = engine().handle(OUT, PHONE, SERVER, first.payload, 3.0)
    assert fresh.payload is None, fresh.reason


# ---------------------------------------------------------------------- (d)

@SETTINGS
@given(st.one_of(sip_message(hosts=sipgen.PRIVATE), sip_message(hosts=sipgen.PUBLIC),
                 sip_message(hosts=sipgen.REMOTE, via_hosts=(WAN_IP,))))
def test_generated_messages_round_trip(data):
    msg = parse_message(data)
    assert msg.to_bytes() == data


@SETTINGS
@given(mutated(sip_message(hosts=sipgen.PRIVATE)))
def test_mutated_messages_round_trip_when_they_parse(data):
    try:
        msg = parse_message(data)
    except MalformedMessage:
        return
    assert msg.to_bytes() == data


# ---------------------------------------------------------------------- (e)

SLOT = b"\x00@@\x00"
SDP_BODY = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
            b"m=audio 40000 RTP/AVP 0 101\r\na=rtcp:40001 IN IP4 10.0.0.2\r\na=sendrecv\r\n")
INVITE_OUT = (b"INVITE sip:bob@203.0.113.10 SIP/2.0\r\n"
              b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-e1;rport\r\n"
              b"Max-Forwards: 70\r\n"
              b'From: "Alice" <sip:alice@10.0.0.2>;tag=e1\r\n'
              b"To: <sip:bob@203.0.113.10>\r\n"
              b"Call-ID: e1@10.0.0.2\r\n"
              b"CSeq: 1 INVITE\r\n"
              b"Contact: <sip:alice@10.0.0.2:5060>;expires=60\r\n"
              b"Record-Route: <sip:10.0.0.2;lr>\r\n"
              b"X-Unknown: value\r\n"
              b"Content-Type: application/sdp\r\n"
              b"Content-Length: #\r\n\r\n") + SDP_BODY
MULTIPART_OUT = INVITE_OUT.replace(b"application/sdp", b'multipart/mixed;boundary="b1"').split(b"\r\n\r\n")[0] \
    + b"\r\n\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP_BODY + b"\r\n--b1--\r\n"
OK_IN = (b"SIP/2.0 200 OK\r\n"
         b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-prime-inv;rport=5060;received=203.0.113.1\r\n"
         b"From: <sip:alice@203.0.113.1>;tag=a1\r\nTo: <sip:bob@203.0.113.10>;tag=b1\r\n"
         b"Call-ID: prime-call@10.0.0.2\r\nCSeq: 1 INVITE\r\n"
         b"Contact: <sip:bob@203.0.113.10:5060>\r\nContent-Type: application/sdp\r\n"
         b"Content-Length: #\r\n\r\n") + SDP_BODY.replace(b"10.0.0.2", b"203.0.113.10")
REG_OK_IN = (b"SIP/2.0 200 OK\r\n"
             b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-prime-reg;rport=5060;received=203.0.113.1\r\n"
             b"From: <sip:alice@203.0.113.10>;tag=p1\r\nTo: <sip:alice@203.0.113.10>;tag=s1\r\n"
             b"Call-ID: prime-reg@10.0.0.2\r\nCSeq: 1 REGISTER\r\n"
             b"Contact: <sip:alice@203.0.113.1:5060>;expires=600\r\nContent-Length: #\r\n\r\n")
INVITE_IN = (b"INVITE sip:alice@203.0.113.1:5060 SIP/2.0\r\n"
             b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-e2\r\n"
             b"From: <sip:carol@203.0.113.10>;tag=c1\r\nTo: <sip:alice@203.0.113.10>\r\n"
             b"Call-ID: e2@203.0.113.10\r\nCSeq: 7 INVITE\r\nContact: <sip:carol@203.0.113.10:5060>\r\n"
             b"Record-Route: <sip:203.0.113.10;lr>\r\nContent-Type: application/sdp\r\n"
             b"Content-Length: #\r\n\r\n") + SDP_BODY.replace(b"10.0.0.2", b"203.0.113.10")


def _slots(template, direction, pieces):
    """(direction, template with SLOT where piece was, piece) for each piece found in template."""
    out = []
    for piece in pieces:
        i = template.find(piece)
        assert i >= 0, piece
        out.append((direction, template[:i] + SLOT + template[i + len(piece):], piece))
    return out


POSITIONS = (
    _slots(INVITE_OUT, OUT, (b"INVITE", b"bob@203.0.113.10 SIP", b"UDP", b"10.0.0.2:5060;branch", b"5060;branch",
                             b"z9hG4bK-e1", b";rport", b'"Alice"', b"alice@10.0.0.2>", b"e1\r\n",
                             b"<sip:bob@203.0.113.10>", b"e1@10.0.0.2", b"1 INVITE", b" INVITE\r\n",
                             b"alice@10.0.0.2:5060", b"expires=60", b"10.0.0.2;lr", b"value",
                             b"application/sdp", b"o=- 1 1 IN IP4 10.0.0.2", b"IP4 10.0.0.2\r\nt",
                             b"audio", b"40000", b"RTP/AVP 0 101", b"40001 IN IP4 10.0.0.2", b"sendrecv"))
    + _slots(MULTIPART_OUT, OUT, (b'"b1"', b"--b1\r\nContent-Type: application/sdp"))
    + _slots(OK_IN, IN, (b"200 OK", b"203.0.113.1:5060;branch", b"z9hG4bK-prime-inv", b"rport=5060",
                         b"received=203.0.113.1", b"tag=a1", b"prime-call@10.0.0.2", b"1 INVITE",
                         b"IN IP4 203.0.113.10\r\nt", b"audio 40000"))
    + _slots(REG_OK_IN, IN, (b"alice@203.0.113.1:5060", b"expires=600", b"1 REGISTER"))
    + _slots(INVITE_IN, IN, (b"alice@203.0.113.1:5060 SIP", b"alice@203.0.113.10>", b"e2@203.0.113.10",
                             b"203.0.113.10;lr"))
)

WIRE_PIECES = st.one_of(
    st.binary(min_size=0, max_size=24),
    st.sampled_from((b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80abc", b"a\x00b", b"\xed\xa0\x80",
                     b"%ff", b"%", b'"', b"\\", b"<", b">", b"[", b"::ffff:10.0.0.2", b"[::ffff:a00:2]",
                     b"99999", b"-1", b"\r\n ", b"\r\n", b";", b",", b"=", b"")),
    st.lists(st.sampled_from((b"\xff", b"a", b"1", b":", b"@", b";", b"=", b" ", b"\xc3", b".", b"/")),
             max_size=12).map(b"".join),
)


def with_length(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if b"Content-Length: #" not in head:
        return data
    return head.replace(b"Content-Length: #", b"Content-Length: " + str(len(body)).encode()) + sep + body


def rendered(res):
    """Every text the engine gives the shell, built now (reason is built when read)."""
    text = res.reason
    for ev in res.events:
        text += ev.describe()
    return text


def no_crash(direction, data, lax):
    saved = alg.core.engine.grammar_problem
    if lax:
        alg.core.engine.grammar_problem = lambda msg: ""
    try:
        eng = primed()
        src, dst = (PHONE, SERVER) if direction == OUT else (SERVER, WAN)
        res = eng.handle(direction, src, dst, data, 2.0)
        check_result(res, data)
        rendered(res)
        # and again, with what the first pass left behind
        res = eng.handle(direction, src, dst, data, 2.5)
        assert not crashed(res), "engine crashed on %r: %s" % (data, res.reason)
        rendered(res)
        for b in eng.bindings():
            repr(b)
    finally:
        alg.core.engine.grammar_problem = saved


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(POSITIONS), WIRE_PIECES, st.booleans())
def test_random_bytes_in_every_position_never_crash(position, piece, lax):
    direction, template, _ = position
    data = with_length(template.replace(SLOT, piece))
    no_crash(direction, data, lax)


def test_every_position_is_reached():
    """Each template, its slot filled with what was there, is valid SIP the engine acts
    on: the random pieces land in positions the engine reads."""
    for direction, template, piece in POSITIONS:
        eng = primed()
        src, dst = (PHONE, SERVER) if direction == OUT else (SERVER, WAN)
        res = eng.handle(direction, src, dst, with_length(template.replace(SLOT, piece)), 2.0)
        assert res.status == "rewritten", "%r: %s (%s)" % (piece, res.status, res.reason)
