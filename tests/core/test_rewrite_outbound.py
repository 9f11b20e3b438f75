"""Outbound rewriting: what the server sees from a phone behind the router."""
from alg.core.engine import Engine, OUT, IN, ACCEPT
from alg.core.config import Config
from alg.core.message import parse_message
from sipmsgs import PHONE, PHONE2, SERVER, WAN, WAN_IP, invite, register, header_line, crlf, with_body, kinds


def engine(**kw):
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999), **kw))


def content_length_ok(data):
    m = parse_message(data)
    return int(m.get(b"content-length").value.strip()) == len(m.body)


def test_invite_via_contact_sdp_rewritten():
    e = engine()
    src = invite()
    r = e.handle(OUT, PHONE, SERVER, src, 1.0)
    assert r.status == "rewritten" and r.verdict == ACCEPT
    out = r.payload
    assert header_line(out, b"Via:") == b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport"
    assert header_line(out, b"Contact:") == b"Contact: <sip:alice@203.0.113.1:5060>"
    assert header_line(out, b"From:") == b'From: "Alice, A" <sip:alice@203.0.113.1>;tag=a1'
    assert b"c=IN IP4 203.0.113.1\r\n" in out and b"o=- 1 1 IN IP4 203.0.113.1\r\n" in out
    assert b"m=audio 6000 RTP/AVP 0 8\r\n" in out
    assert out.count(b"10.0.0.2") == 1 and b"Call-ID: call1@10.0.0.2\r\n" in out
    assert content_length_ok(out)
    # only the address tokens and Content-Length changed
    back = out.replace(b"203.0.113.1:", b"10.0.0.2:").replace(b"IP4 203.0.113.1", b"IP4 10.0.0.2") \
        .replace(b"@203.0.113.1>", b"@10.0.0.2>").replace(b"Content-Length: 115", b"Content-Length: 109")
    assert back == src
    assert sorted(kinds(r.actions)) == ["open rtcp", "open rtp", "open sip"]


def test_second_phone_same_ports_gets_distinct_wan_ports():
    e = engine()
    r1 = e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    r2 = e.handle(OUT, PHONE2, SERVER, invite(ip="10.0.0.3", call_id="c2"), 1.0)
    v1 = header_line(r1.payload, b"Via:")
    v2 = header_line(r2.payload, b"Via:")
    assert b"203.0.113.1:5060;" in v1
    assert b"203.0.113.1:" in v2 and b"203.0.113.1:5060;" not in v2
    assert b"m=audio 6000 " in r1.payload and b"m=audio 6002 " in r2.payload
    assert e.lookup_lan(PHONE2).wan != e.lookup_lan(PHONE).wan
    # deterministic: a fresh engine with the same history makes the same choice
    e2 = engine()
    e2.handle(OUT, PHONE, SERVER, invite(), 1.0)
    assert e2.handle(OUT, PHONE2, SERVER, invite(ip="10.0.0.3", call_id="c2"), 1.0).payload == r2.payload


def test_public_addresses_pass_byte_identical():
    e = engine()
    stun = invite(ip="203.0.113.1", port=5060)
    r = e.handle(OUT, PHONE, SERVER, stun, 1.0)
    assert r.payload is None and r.status == "unchanged"


def test_other_lan_host_and_hostnames_left_alone():
    e = engine()
    data = invite().replace(b"Contact: <sip:alice@10.0.0.2:5060>",
                            b"Contact: <sip:alice@10.0.0.3:5060>, <sip:alice@pbx.example.com>")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert b"Contact: <sip:alice@10.0.0.3:5060>, <sip:alice@pbx.example.com>\r\n" in r.payload
    assert e.lookup_lan(("10.0.0.3", 5060)) is None


def test_via_without_port_and_maddr():
    e = engine()
    data = invite().replace(b"Via: SIP/2.0/UDP 10.0.0.2:5060;", b"Via: SIP/2.0/UDP 10.0.0.2;maddr=10.0.0.2;")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert header_line(r.payload, b"Via:") == b"Via: SIP/2.0/UDP 203.0.113.1;maddr=203.0.113.1;branch=z9hG4bKinv1;rport"


def test_via_port_added_when_wan_port_differs():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    data = invite(ip="10.0.0.3").replace(b"UDP 10.0.0.3:5060", b"UDP 10.0.0.3")
    r = e.handle(OUT, PHONE2, SERVER, data, 1.0)
    via = header_line(r.payload, b"Via:")
    assert via.startswith(b"Via: SIP/2.0/UDP 203.0.113.1:50"), via
    assert via != b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport"


def test_record_route_and_compact_forms():
    e = engine()
    data = crlf("OPTIONS sip:bob@203.0.113.10 SIP/2.0\n"
                "v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKo1, SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKo0\n"
                "Record-Route: <sip:10.0.0.2;lr>\n"
                "f: <sip:a@10.0.0.2>;tag=1\nt: <sip:bob@203.0.113.10>\ni: x1\nCSeq: 1 OPTIONS\n"
                "m: <sip:a@10.0.0.2:5060>\nl: 0\n\n")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    out = r.payload
    assert b"v: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKo1, SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKo0\r\n" in out
    assert b"Record-Route: <sip:203.0.113.1;lr>\r\n" in out
    assert b"m: <sip:a@203.0.113.1:5060>\r\n" in out
    assert b"l: 0\r\n" in out


def test_contact_star_untouched():
    e = engine()
    data = register(contact="*", expires=0)
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert b"Contact: *\r\n" in r.payload


def test_ipv6_reference_in_contact_left_for_ipv4_wan():
    e = engine()
    data = invite().replace(b"Contact: <sip:alice@10.0.0.2:5060>", b"Contact: <sip:alice@[2001:db8::5]:5060>")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert b"Contact: <sip:alice@[2001:db8::5]:5060>\r\n" in r.payload


def test_content_length_compact_recomputed():
    e = engine()
    data = invite(ip="10.0.0.22", call_id="x").replace(b"Content-Length:", b"l:")
    r = e.handle(OUT, ("10.0.0.22", 5060), SERVER, data, 1.0)
    m = parse_message(r.payload)
    assert int(m.get(b"content-length").value) == len(m.body)
    assert len(m.body) == len(parse_message(data).body) + 2 * (len("203.0.113.1") - len("10.0.0.22"))


def test_bad_content_length_passes_unchanged():
    e = engine()
    data = invite().replace(b"Content-Length: ", b"Content-Length: 9")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert r.payload is None and r.status == "malformed"
    assert e.counters["malformed"] == 1
    assert e.handle(OUT, PHONE, SERVER, b"\x01garbage", 1.0).status == "malformed"


def test_not_from_lan_unchanged():
    e = engine()
    r = e.handle(OUT, ("192.0.2.7", 5060), SERVER, invite(ip="192.0.2.7"), 1.0)
    assert r.payload is None


def test_unknown_wan_address_unchanged():
    e = Engine(Config(lan_nets=["10.0.0.0/24"]))
    assert e.handle(OUT, PHONE, SERVER, invite(), 1.0).payload is None
    e.set_wan_ip("203.0.113.1")
    assert e.handle(OUT, PHONE, SERVER, invite(), 3.0).payload is not None


def test_multipart_sdp_part_rewritten():
    e = engine()
    sdp = "v=0\no=- 1 1 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\nm=audio 6000 RTP/AVP 0\n"
    body = ("--b1\nContent-Type: application/sdp\n\n" + sdp + "\n--b1\nContent-Type: text/plain\n\n"
            "10.0.0.2 is mentioned here\n--b1--\n")
    head = ("INVITE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKm\n"
            "From: <sip:a@x>;tag=1\nTo: <sip:b@y>\nCall-ID: mp1\nCSeq: 1 INVITE\n"
            "Content-Type: multipart/mixed;boundary=b1\n")
    r = e.handle(OUT, PHONE, SERVER, with_body(head, body), 1.0)
    out = r.payload
    assert b"c=IN IP4 203.0.113.1\r\n" in out
    assert b"10.0.0.2 is mentioned here" in out
    assert content_length_ok(out)


def test_ice_candidates_untouched():
    e = engine()
    cand = "a=candidate:1 1 UDP 2130706431 10.0.0.2 6000 typ host\n"
    r = e.handle(OUT, PHONE, SERVER, invite(extra_sdp=cand), 1.0)
    assert cand.replace("\n", "\r\n").encode() in r.payload


def test_rtcp_attribute_mapped():
    e = engine()
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    r = e.handle(OUT, PHONE2, SERVER, invite(ip="10.0.0.3", call_id="c2", extra_sdp="a=rtcp:6001 IN IP4 10.0.0.3\n"), 1.0)
    assert b"a=rtcp:6003 IN IP4 203.0.113.1\r\n" in r.payload


def test_rtp_port_outside_range_opens_nothing():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, invite(rtp=22), 1.0)
    assert kinds(r.actions) == ["open sip"]
    assert b"m=audio 22 " in r.payload


def test_engine_never_raises_on_junk():
    e = engine()
    for junk in (b"\x00" * 3, b"\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"INVITE a SIP/2.0\r\n\r\n", bytes(range(256))):
        for d in (OUT, IN):
            r = e.handle(d, PHONE if d == OUT else SERVER, SERVER if d == OUT else WAN, junk, 1.0)
            assert r.verdict in ("accept", "drop")


def test_contact_naming_the_sender_ipv4_mapped_is_rewritten():
    e = engine()
    reg = register(contact="<sip:alice@[::ffff:a00:2]:5060>")
    r = e.handle(OUT, PHONE, SERVER, reg, 1.0)
    assert b"Contact: <sip:alice@203.0.113.1:5060>\r\n" in r.payload


def test_an_excluded_lan_host_is_left_alone_and_counted():
    e = engine(exclude=["10.0.0.2/32"])
    r = e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    assert r.payload is None and r.status == "unchanged" and not r.actions
    assert e.counters["excluded"] == 1 and e.bindings() == []
    r = e.handle(OUT, PHONE2, SERVER, invite(ip="10.0.0.3", call_id="c2@10.0.0.3"), 1.0)
    assert r.status == "rewritten"
