"""The engine's shortcuts give what the plain parsing gives.

Parsing takes shortcuts for the usual message (no folding, single spaces,
branch first after the sent-by, a value seen before) and falls back to the
careful way otherwise; these tests hold both ways to the same answers, on
CPython and under MicroPython alike (bytes.split/lstrip differ in C there).
"""
from alg.core.headers import param_span, split_values, first_value_span, find_outside
from alg.core.message import parse_message, MalformedMessage
from alg.core.sdp import parse_sdp, rewrite_sdp
from alg.core.uri import sent_by_span
from alg.core.bindings import Binding
from alg.core.config import Config
from alg.core.engine import Engine, OUT
from alg.core.via import top_via
from sipmsgs import PHONE, SERVER, WAN_IP, invite, crlf, kinds


def _value(buf, name):
    s = param_span(buf, 0, len(buf), name)
    return None if s is None else buf[s[0]:s[1]]


def test_param_value_ends_at_white_space_comma_or_fold():
    assert _value(b";branch=abc ;rport", b"branch") == b"abc"
    assert _value(b";branch=abc\r\n ;rport", b"branch") == b"abc"
    assert _value(b";branch=abc,x", b"branch") == b"abc"
    assert _value(b";branch=abc\tdef", b"branch") == b"abc"
    assert _value(b";branch=a\x0bc;x", b"branch") == b"a\x0bc"      # not a delimiter
    assert _value(b";branch=", b"branch") == b""
    assert _value(b";branch = \"q;r\";x", b"branch") == b"\"q;r\""


def test_param_name_must_be_a_whole_parameter():
    assert _value(b";xbranch=1;branch=2", b"branch") == b"2"
    assert _value(b";branchx=1;BRANCH=2", b"branch") == b"2"
    assert _value(b";x=branch;branch=3", b"branch") == b"3"
    assert _value(b"branch=1", b"branch") is None
    assert _value(b"<sip:a;branch=1>;branch=2", b"branch") == b"2"
    assert _value(b"\"x;branch=1\" <sip:a>;branch=2", b"branch") == b"2"
    assert _value(b";maddr", b"maddr") == b""
    assert _value(b";rport;received=1.2.3.4", b"maddr") is None


def test_find_outside_without_quotes_skips_brackets():
    v = b"<sip:a,b>,<sip:c>"
    assert find_outside(v, 0, len(v), 44) == 9
    assert find_outside(b"<sip:a,b", 0, 8, 44) == -1
    assert find_outside(b"a<b>c;d", 0, 7, 59) == 5
    assert find_outside(b"a>b,c", 0, 5, 44) == 3


def test_first_value_matches_split_values():
    for v in (b" a , b", b"a", b" , a", b"  ", b'"x,y" <sip:a>, b', b"<sip:a,b>;q=1"):
        spans = split_values(v)
        assert first_value_span(v, 0, len(v)) == (spans[0] if spans else None), v


def test_sent_by_terminators_and_ipv6():
    for via, want in ((b"SIP/2.0/UDP 10.0.0.2:5060;branch=x", (b"10.0.0.2", b"5060")),
                      (b"SIP/2.0/UDP 10.0.0.2;branch=x", (b"10.0.0.2", None)),
                      (b"SIP/2.0/UDP host.example ;x", (b"host.example", None)),
                      (b"SIP/2.0/UDP [fd00::2]:5062", (b"[fd00::2]", b"5062")),
                      (b"SIP/2.0/UDP 10.0.0.2:50x", (b"10.0.0.2", b"50")),
                      (b"SIP/2.0/UDP\r\n  10.0.0.2:7", (b"10.0.0.2", b"7"))):
        hs, he, ps, pe = sent_by_span(via, 0, len(via))
        assert (via[hs:he], via[ps:pe] if ps >= 0 else None) == want, via
    assert sent_by_span(b"SIP/2.0/UDP 10.0.0.2:;x", 0, 23) is None
    assert sent_by_span(b"SIP/2.0/UDP [fd00::2", 0, 20) is None


def test_via_seen_before_and_odd_vias():
    a = parse_message(invite(branch="z9hG4bKa"))
    b = parse_message(invite(branch="z9hG4bKb"))
    for m, br in ((a, b"z9hG4bKa"), (b, b"z9hG4bKb")):
        v = top_via(m)
        assert (v.host(), v.port(), v.branch()) == ("10.0.0.2", 5060, br)
    # the part before ';' alone does not show the sent-by: read the whole value
    m = parse_message(crlf("OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP;x=1 10.0.0.9;branch=q\n\n"))
    v = top_via(m)
    assert v is None or v.host() is None or v.host() == "10.0.0.9"
    m = parse_message(crlf("OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2 ;branch= b1;BRANCH=b2\n\n"))
    assert top_via(m).branch() == b"b1"
    m = parse_message(crlf("OPTIONS sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2;Branch=\"q\"\n\n"))
    assert top_via(m).branch() == b"\"q\""


def test_header_block_end_and_folding():
    m = parse_message(b"OPTIONS sip:x SIP/2.0\r\nAb: 1\n\nB: 2\r\n\r\nbody")
    assert [h.key for h in m.headers] == [b"ab"] and m.body == b"B: 2\r\n\r\nbody"
    m = parse_message(b"OPTIONS sip:x SIP/2.0\r\nV : x\r\n\tmore\r\nI:c\r\n\r\n")
    assert [h.key for h in m.headers] == [b"via", b"call-id"]
    assert m.get(b"via").name == b"V" and m.call_id() == b"c"
    assert m.to_bytes() == b"OPTIONS sip:x SIP/2.0\r\nV : x\r\n\tmore\r\nI:c\r\n\r\n"
    m = parse_message(b"SIP/2.0 200 OK\r\n\r\n")
    assert m.headers == [] and m.to_bytes() == b"SIP/2.0 200 OK\r\n\r\n"
    for bad in (b"OPTIONS sip:x SIP/2.0\r\n\tx: 1\r\n\r\n", b"OPTIONS sip:x SIP/2.0\r\nx\r\n y: 1\r\n\r\n"):
        try:
            parse_message(bad)
        except MalformedMessage:
            continue
        assert False, bad


def test_start_line_seen_before():
    for _ in range(2):
        m = parse_message(b"INVITE sip:a@b SIP/2.0\r\n\r\n")
        assert (m.is_request, m.method, m.uri, m.uri_span) == (True, b"INVITE", b"sip:a@b", (7, 14))
        m.set_uri(b"sip:c@d")
        assert m.to_bytes() == b"INVITE sip:c@d SIP/2.0\r\n\r\n"
    for _ in range(2):
        try:
            parse_message(b"INVITE sip:a@b SIP/3.0\r\n\r\n")
        except MalformedMessage:
            continue
        assert False


def test_values_without_header_objects_and_after_edits():
    m = parse_message(invite())
    assert m.value(b"content-type") == b"application/sdp"
    assert m.value(b"expires") is None and m.field(b"expires") is None
    raw, s, e = m.field(b"to")
    assert raw[s:e] == b" <sip:bob@203.0.113.10>"
    m.get(b"to").set_value(b" <sip:x@y>;tag=9")
    raw, s, e = m.field(b"to")
    assert raw[s:e] == b" <sip:x@y>;tag=9" and m.to_bytes().find(b"To: <sip:x@y>;tag=9\r\n") > 0
    assert m.get_all(b"contact")[0] is m.get(b"contact") and m.get_all(b"route") == []


def test_sdp_odd_spacing_and_directions():
    body = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\nc=IN\tIP4 10.0.0.2\r\na=recvonly\r\n"
            b"m=audio  6000 RTP/AVP 0\r\na=rtcp:6001  IN IP4 10.0.0.2\r\n"
            b"m=video 6002 RTP/AVP 96\r\nc=IN IP4 10.0.0.2/127\r\na=inactive\r\n")
    s = parse_sdp(body)
    assert s.media[1].direction == b"inactive" and s.media[0].direction == b"recvonly"
    assert s.direction == b"recvonly"
    assert (s.media[0].port, s.media[0].rtcp_port, s.media[1].conn) == (6000, 6001, b"10.0.0.2")
    new = rewrite_sdp(body, b"10.0.0.2", b"203.0.113.1", {6000: 7000, 6001: 7001, 6002: 7002})
    assert new == (b"v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\nc=IN\tIP4 203.0.113.1\r\na=recvonly\r\n"
                   b"m=audio  7000 RTP/AVP 0\r\na=rtcp:7001  IN IP4 203.0.113.1\r\n"
                   b"m=video 7002 RTP/AVP 96\r\nc=IN IP4 203.0.113.1/127\r\na=inactive\r\n")
    again = parse_sdp(body)          # the same lines again
    assert again.media[0].direction == b"recvonly" and again.rewrite(
        body, b"10.0.0.2", b"203.0.113.1", {6000: 7000, 6001: 7001, 6002: 7002}) == new
    try:
        parse_sdp(b"v=0\r\nm=audio x RTP/AVP 0\r\n")
    except ValueError:
        pass
    else:
        assert False


def test_reason_is_rendered_when_read():
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))
    r = e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    assert r.status == "rewritten"
    assert r.reason == ("Via 10.0.0.2:5060 -> 203.0.113.1:5060; From 10.0.0.2; Contact x1; "
                        "m=audio 6000 -> 6000; SDP 10.0.0.2 -> 203.0.113.1")
    r.reason = "set"
    assert r.reason == "set"


def test_restored_media_binding_keeps_its_timer_under_a_call():
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))
    e.restore(Binding(("10.0.0.2", 6000), (WAN_IP, 6000), "rtp", 50.0))
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    rtp = e.lookup_lan(("10.0.0.2", 6000))
    assert rtp is not None and rtp.expires == 181.0        # the call's early-media deadline
    # BYE-less call end leaves the restored owner; the binding's own timer closes it
    cancel = crlf("CANCEL sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinv1\n"
                  "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>\nCall-ID: call1@10.0.0.2\n"
                  "CSeq: 1 CANCEL\nContent-Length: 0\n\n")
    e.handle(OUT, PHONE, SERVER, cancel, 2.0)
    assert not e.dialogs
    assert e.lookup_lan(("10.0.0.2", 6000)) is not None
    e.expire(182.0)
    assert e.lookup_lan(("10.0.0.2", 6000)) is None


def test_media_bindings_close_with_the_call_timer():
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))
    e.handle(OUT, PHONE, SERVER, invite(), 1.0)
    assert e.lookup_lan(("10.0.0.2", 6000)) is not None and e.next_deadline() == 181.0   # the early-media timer (a plain Via needs no transaction timer)
    acts = e.expire(181.0)
    assert e.lookup_lan(("10.0.0.2", 6000)) is None and not e.dialogs
    assert sorted(kinds(acts.actions)) == ["close rtcp", "close rtp", "close sip"]


def test_plain_name_addrs_are_judged_as_the_whole_grammar_judges_them():
    from alg.core import grammar as G
    # each part: (what the grammar takes, what it may not), combined on a fixed walk
    parts = [
        ([b"", b"Alice ", b"Al ice\t"], [b"\"A\" ", b"A;b ", b"A<"]),
        ([b"<sip:"], [b"<SIP:", b"<sips:", b"<tel:", b"tel:"]),
        ([b"", b"u5@", b"a.b-c_d@"], [b"a@b@", b"@", b"u%41@", b"u:p@", b"u;x@", b"u?@"]),
        ([b"10.0.0.2", b"example.com", b"x9", b"ex.com."],
         [b"1.2.3", b"1234.1.1.1", b"-a.com", b"a-.com", b"9x", b"a..b", b"", b"[::1]", b"a_b.com"]),
        ([b"", b":5060", b":65535", b":0"], [b":65536", b":", b":123456", b":5a", b":1:2"]),
        ([b"", b";transport=udp", b";lr", b";ob"], [b";x=", b";;", b";a=b=c", b";a=%41", b";", b";a@b"]),
        ([b">"], [b">>", b"> "]),
        ([b"", b";tag=abc", b";expires=60", b";x", b";q=0.5", b";x=y_z", b";tag=a;tag=b"],
         [b";tag", b";tag=", b";expires=x", b";expires", b";x=\"q\"", b" ;tag=1", b";tag=a b", b">",
          b";tag=1>", b"x", b";=1"]),
    ]
    plain = 0
    k = 12345
    for n in range(8000):
        e = b""
        bad = n % len(parts) if n % 3 else -1           # one part at most off the grammar
        for j, (good, worse) in enumerate(parts):
            k = (k * 1103515245 + 12345) % 2147483648
            choice = worse if j == bad else good
            e += choice[(k >> 8) % len(choice)]
        e = e.strip(b" \t\r\n")
        if not e:
            continue
        for rules, brackets in ((G._CONTACT_PARAMS, False), (G._TAG_PARAMS, False), (G._NO_PARAMS, True)):
            for form in (e, e.replace(b"<", b"").replace(b">", b"")):      # name-addr, addr-spec
                if G._plain_name_addr(form, brackets, rules):
                    plain += 1
                    assert G._name_addr(form, brackets, rules) == "", form
    assert plain > 3000                                 # the shortcut is taken, not only refused
    for e in (b"<sip:u5@10.0.0.2:5060>;tag=f5", b"Alice <sip:alice@example.com>", b"<sip:10.0.0.2;lr>",
              b"<sip:u@10.0.0.2:5060;transport=udp>;expires=3600"):
        assert G._plain_name_addr(e, False, G._CONTACT_PARAMS) and G._name_addr(e, False, G._CONTACT_PARAMS) == ""
    assert G._plain_name_addr(b"sip:sipp@10.0.0.2:5060;expires=60", False, G._CONTACT_PARAMS)
    assert not G._plain_name_addr(b"sip:10.0.0.2;lr", True, G._NO_PARAMS)          # a Route needs <>
    for e in (b"<sip:u@10.0.0.2>;expires=x", b"<sip:u@-a.com>", b"<sip:u@h:65536>", b"<sip:u@h>;tag",
              b"sip:u@h;expires=x", b"<sip:u@h"):
        assert not G._plain_name_addr(e, False, G._CONTACT_PARAMS if b"exp" in e else G._TAG_PARAMS)
