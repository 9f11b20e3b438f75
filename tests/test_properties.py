"""Property-based tests of the engine over generated SIP datagrams (tests/sipgen.py).

  (a) nothing escapes Engine.handle, and nothing inside it crashes (the
      engine turns internal exceptions into "malformed", so the reason text
      is checked too), for random bytes and damaged messages, both ways;
  (b) whatever it rewrites parses again and its Content-Length is right;
  (c) messages naming only public addresses pass untouched, and rewriting
      is idempotent: the engine's own output goes through unchanged;
  (d) the message model serializes generated messages byte for byte.
"""
import re

from hypothesis import HealthCheck, given, settings, strategies as st

from alg.core.config import Config
from alg.core.engine import Engine, OUT, IN, ACCEPT, DROP
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


def check_result(res, data):
    """What every result must satisfy, whatever came in."""
    assert res.status in STATUSES
    assert "internal error" not in res.reason, "engine crashed on %r: %s" % (data, res.reason)
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
