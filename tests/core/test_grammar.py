"""grammar.check(): exactly as strict as RFC 3261's grammar for what the rewrite reads."""
from alg.core.grammar import check
from alg.core.message import parse_message
from alg.core.engine import Engine, OUT, IN
from alg.core.config import Config
from alg.core.events import Malformed
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, crlf, with_body, invite, register

HEAD = {
    "start": "INVITE sip:bob@203.0.113.10 SIP/2.0",
    "via": "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKg1;rport",
    "from": 'From: "Alice" <sip:alice@10.0.0.2>;tag=a1',
    "to": "To: <sip:bob@203.0.113.10>",
    "call-id": "Call-ID: g1@10.0.0.2",
    "cseq": "CSeq: 1 INVITE",
    "contact": "Contact: <sip:alice@10.0.0.2:5060>",
}
ORDER = ("start", "via", "from", "to", "call-id", "cseq", "contact")


def request(extra="", **parts):
    """An INVITE from the phone with some parts replaced (None drops a header)."""
    lines = []
    for k in ORDER:
        v = parts.get(k.replace("-", "_"), HEAD[k])
        if v is not None:
            lines.append(v)
    return crlf("\n".join(lines) + "\n" + extra) + b"Content-Length: 0\r\n\r\n"


def why(data):
    return check(parse_message(data))


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))


def assert_valid(data):
    w = why(data)
    assert w == "", "%r: %s" % (data, w)


def assert_invalid(data, words):
    w = why(data)
    assert w and words in w, "%r: %r (want %r)" % (data, w, words)


# ----------------------------------------------------------------- valid

def test_plain_messages_are_valid():
    assert_valid(request())
    assert_valid(invite())
    assert_valid(register())


def test_valid_near_misses():
    for parts in (
        {"to": "TO :\n sip:bob@203.0.113.10 ;   x-p    = 1"},
        {"from": 'from   : "A \\\\\\"" \t <sip:alice@10.0.0.2>\n  ;\n  tag = 9'},
        {"from": "From: alice<sip:alice@10.0.0.2>;tag=a1"},              # RFC 4475 3.1.1.6
        {"from": "From: Alice  Smith <sip:alice@10.0.0.2>;tag=a1"},
        {"from": 'From: "Smith, A; <boss>" <sip:alice@10.0.0.2>;tag=a1'},
        {"via": "Via  : SIP  /   2.0\n /UDP\n    10.0.0.2:5060;branch=z9hG4bKg1"},
        {"via": "v: SIP/2.0/UDP 10.0.0.2:5060 ;\n  branch  =   z9hG4bKx  ,\n SIP/2.0/TCP h.example.com;branch=b"},
        {"via": 'Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKg1;x="a;b,c \\"d\\""'},
        {"via": "Via: SIP/2.0/UDP 10.0.0.2"},                               # RFC 2543: no branch
        {"via": "Via: SIP/2.0/UDP [::ffff:10.0.0.2]:5060;branch=b;received=[2001:db8::9];rport=5060"},
        {"via": "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=b;received=2001:db8::9;maddr=[fd00::1];ttl=255"},
        {"via": "Via: SIP/3.0/X-Unknown 10.0.0.2:5060;branch=b"},
        {"cseq": "cseq: 0009\n  INVITE"},
        {"call_id": "i: abc"},
        {"start": "INVITE sip:sips%3Abob%40example.com@203.0.113.10;transport=udp SIP/2.0"},
        {"start": "INVITE sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,"
                  "weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0"},
        {"start": "INVITE sip:bob@[2001:db8::10:5070] SIP/2.0"},          # RFC 5118 4.3
        {"start": "INVITE sip:bob@example.com. SIP/2.0"},
        {"start": "INVITE tel:+1-201-555-0123 SIP/2.0"},
        {"start": "INVITE soap.beep://203.0.113.10:3002 SIP/2.0"},
        {"start": "INVITE sip:bob@203.0.113.10 sip/2.0"},
        {"contact": 'm:"Quoted \\"\\"" <sip:alice@10.0.0.2:5060> ; newparam =\n newvalue ;\n second ; q = 0.33'},
        {"contact": "Contact: <sip:alice@10.0.0.2:5060;lr;x-p=%5Bv%5D?Route=%3Csip:x%3E&Subject=>;expires=60"},
        {"contact": 'Contact: <sip:a@10.0.0.2>;+sip.instance="<urn:uuid:1;2,3>", sip:b@10.0.0.3;q=0.1'},
        {"contact": "Contact: <sip:alice@[2001:db8::192.0.2.1]>, <urn:service:sos>, <isbn:2983792873>"},
        {"contact": "Contact: <sip:%00@10.0.0.2>"},
        {"to": "To: <sip:bob@203.0.113.10>;tag=x-y.z"},
    ):
        assert_valid(request(**parts))


def test_unknown_headers_and_methods_are_not_looked_into():
    assert_valid(request(extra="UnknownHeaderWithUnusualValue: ;;,,;;,;\nSubject:\nX-Long: \"\n"))
    data = request(start="FROB-ni%ca_te.2*+!`'~ sip:bob@203.0.113.10 SIP/2.0",
                   cseq="CSeq: 7 FROB-ni%ca_te.2*+!`'~")
    assert_valid(data)
    # the Route set, Record-Route and Path are name-addrs
    assert_valid(request(extra="Route: <sip:203.0.113.10;lr>,<sip:[2001:db8::10]:5070;lr>\n"
                               "Record-Route: <sip:10.0.0.2;lr>\nPath: \"p\" <sip:10.0.0.2;lr;ob>\n"))


def test_responses():
    ok = crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=b;received=203.0.113.1;rport=5060\n"
              "From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 5 FROB\n") + b"l: 0\r\n\r\n"
    assert_valid(ok)
    assert_valid(ok.replace(b"200 OK", b"183 "))                   # empty reason phrase
    assert_invalid(ok.replace(b"200 OK", b"200"), "SP after the status code")
    assert_valid(ok.replace(b"200 OK", b"099 Early"))              # extension-code = 3DIGIT
    assert_invalid(ok.replace(b"CSeq: 5 FROB", b"CSeq: 5 FR<OB"), "CSeq: method is not a token")


def test_message_sipfrag_body_is_no_second_message():
    head = HEAD["start"]
    data = with_body("\n".join(
        [head] + [HEAD[k] for k in ORDER[1:]] + ["Content-Type: message/sipfrag;version=2.0"]) + "\n",
        "SIP/2.0 200 OK\n")
    assert_valid(data)


# --------------------------------------------------------------- invalid

def test_start_line():
    assert_invalid(request(start="INVITE <sip:bob@203.0.113.10> SIP/2.0"), "URI scheme")
    assert_invalid(request(start="INVITE sip:bob@203.0.113.10?Route=%3Csip:x%3E SIP/2.0"),
                   "headers in a Request-URI")
    assert_invalid(request(start="INV[ITE sip:bob@203.0.113.10 SIP/2.0", cseq="CSeq: 1 INV[ITE"),
                   "is not a token")
    for host in (b"-x-.example.com", b"a..b", b"1.2.3", b"example.123", b"2001:db8::1"):
        assert_invalid(request(start="INVITE sip:bob@%s SIP/2.0" % host.decode()), "Request-URI")
    assert_invalid(request(start="INVITE sip:bob@203.0.113.10:99999 SIP/2.0"), "port")
    assert_invalid(request(start="INVITE sip:bob@203.0.113.10;;lr SIP/2.0"), "URI parameter")
    assert_invalid(request(start="INVITE sip:b%4@203.0.113.10 SIP/2.0"), "escape")
    assert_invalid(request().replace(b"sip:bob@", b"sip:b\xffb@", 1), "user part")


def test_header_names_and_counts():
    assert_invalid(request(extra="X Y: 1\n"), "header name")
    assert_invalid(request(extra="X-A(1): 1\n"), "header name")
    assert_invalid(request(call_id=None), "no Call-ID")
    assert_invalid(request(from_=None, **{"from": None}), "no From")
    assert_invalid(request(to=None), "no To")
    assert_invalid(request(cseq=None), "no CSeq")
    assert_invalid(request(via=None), "no Via")
    assert_invalid(request(extra="t: <sip:carol@203.0.113.10>\n"), "more than one To")
    assert_invalid(request(extra="Call-ID: again\n"), "more than one Call-ID")
    data = request().replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 0\r\n")
    assert_invalid(data, "more than one Content-Length")


def test_cseq():
    assert_invalid(request(cseq="CSeq: 1 OPTIONS"), "not the request's")
    assert_invalid(request(cseq="CSeq: 1 invite"), "not the request's")     # methods are case-sensitive
    assert_invalid(request(cseq="CSeq: 4294967296 INVITE"), "32-bit")
    assert_valid(request(cseq="CSeq: 4294967295 INVITE"))
    assert_invalid(request(cseq="CSeq: 1"), "number and a method")
    assert_invalid(request(cseq="CSeq: INVITE 1"), "32-bit")
    assert_invalid(request(cseq="CSeq: 1 INVITE x"), "number and a method")
    assert_invalid(request(cseq="CSeq: -1 INVITE"), "32-bit")


def test_call_id_is_opaque_but_single():
    # the engine only compares it: its word[@word] syntax is not what the rewrite reads
    assert_valid(request(call_id="Call-ID: YmFzZTY0==@10.0.0.2"))
    assert_invalid(request(call_id=None), "no Call-ID")


def test_via():
    for bad, words in (
            ("Via: SIP/2.0/UDP 10.0.0.2:5060;;branch=b", "empty parameter"),
            ("Via: SIP/2.0/UDP 10.0.0.2:5060;branch=b,,SIP/2.0/UDP h", "empty value"),
            ("Via: SIP/2.0/UDP 10.0.0.2:5060;branch=b;", "empty parameter"),
            ("Via: SIP/2.0 10.0.0.2:5060;branch=b", "sent-protocol"),
            ("Via: SIP/2.0/UDP10.0.0.2;branch=b", "no sent-by"),
            ("Via: SIP/2.0/UDP/10.0.0.2;branch=b", "sent-protocol"),
            ("Via: SIP/2.0/UDP ;branch=b", "no sent-by"),
            ("Via: SIP/2.0/UDP 10.0.0.2:50a60;branch=b", "sent-by port"),
            ("Via: SIP/2.0/UDP 10.0.0.2:65536;branch=b", "sent-by port"),
            ("Via: SIP/2.0/UDP 10.0.0.2:;branch=b", "sent-by port"),
            ("Via: SIP/2.0/UDP [10.0.0.2]:5060;branch=b", "IPv6 reference"),
            ("Via: SIP/2.0/UDP [fd00::2;branch=b", "IPv6 reference"),
            ("Via: SIP/2.0/UDP host_name.example.com;branch=b", "sent-by"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch", "branch without a value"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=a<b", "branch"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=\"b\"", "branch"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;received=example.com", "received"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;received=10.0.0", "received"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;received=[10.0.0.2]", "received"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;rport=", "rport"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;rport=70000", "rport"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;ttl=256", "ttl"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;maddr=-x", "maddr"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;x=a b", "not a token"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;x=\"open", "unterminated"),
            ("Via: SIP/2.0/UDP 10.0.0.2;branch=b;x=\"a\"junk", "between parameters"),
            ("Via: <sip:10.0.0.2>", "sent-protocol"),
            ("Via: SIP/2.0/UDP 10.0.0.2:5060\r;branch=b", "stray CR"),
    ):
        assert_invalid(request(via=bad), words)


def test_name_addr_headers():
    for part, bad, words in (
            ("to", 'To: "Bob <sip:bob@203.0.113.10>', "unterminated quoted display name"),
            ("from", 'From: "A\\', "unterminated"),
            ("from", 'From: "Alice" x <sip:alice@10.0.0.2>;tag=1', "not followed by <"),
            ("from", "From: Smith, Alice <sip:alice@10.0.0.2>;tag=1", "display name"),
            ("from", "From: <sip:alice@10.0.0.2>, <sip:eve@10.0.0.2>", "after >"),
            ("from", "From: <sip:alice@10.0.0.2;tag=1", "< without >"),
            ("from", "From: sip:alice@10.0.0.2>;tag=1", "host"),
            ("from", "From: <sip:alice@10.0.0.2>;tag", "tag without a value"),
            ("from", "From: <sip:alice@10.0.0.2>;tag=a@b", "tag"),
            ("from", "From: sip:a,b@10.0.0.2;tag=1", "not in <>"),
            ("to", "To: < sip:bob@203.0.113.10 >", "white space inside <>"),
            ("to", "To: <>", "scheme"),
            ("to", "To:", "empty value"),
            ("contact", "Contact: sip:alice@10.0.0.2?Route=%3Csip:x%3E", "not in <>"),
            ("contact", "Contact: <sip:alice@bob@10.0.0.2>", "more than one @"),
            ("contact", "Contact: <sip:alice@10.0.0.2:5060:5061>", "after the URI host"),
            ("contact", "Contact: <sip:alice@[2001:db8:::192.0.2.1]>", "IPv6 reference"),
            ("contact", "Contact: <sip:alice@[::ffff:10.0.0.2>", "IPv6 reference"),
            ("contact", "Contact: <sip:alice@::ffff:10.0.0.2>", "no host"),
            ("contact", "Contact: *, <sip:alice@10.0.0.2>", "* with other values"),
            ("contact", "Contact: <sip:alice@10.0.0.2>;expires=soon", "expires"),
            ("contact", "Contact: <sip:alice@10.0.0.2>;;;;", "empty parameter"),
            ("contact", "Contact: <sip:alice@10.0.0.2>,,<sip:b@10.0.0.2>", "empty value"),
            ("contact", "Contact: <sip:al ice@10.0.0.2>", "user part"),
            ("contact", "Contact: <sip:alice@10.0.0.2?a>", "URI header"),
            ("contact", "Contact: <sip:alice@10.0.0.2;a=>", "URI parameter value"),
            ("contact", "Contact: <<sip:alice@10.0.0.2>>", "URI scheme"),
            ("contact", "Contact: <sip:alice@10.0.0.2>;x=\"a\\\n \"", "unterminated"),
    ):
        assert_invalid(request(**{part.replace("-", "_"): bad}), words)
    assert_invalid(request(extra="Record-Route: sip:10.0.0.2;lr\n"), "Record-Route: URI not in <>")
    assert_invalid(request(extra="Route: <sip:203.0.113.10;lr>, <sip:10.0.0.2;lr\n"), "Route: < without >")
    assert_invalid(request(extra="Path: <sip:10.0.0.2;lr>;\n"), "Path: empty parameter")


def test_quoted_pairs():
    # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): controls may be escaped, CR and LF not
    assert_valid(request(**{"from": 'From: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@10.0.0.2>;tag=1'}))
    assert_invalid(request(**{"from": 'From: "BEL:\x07" <sip:a@10.0.0.2>;tag=1'}), "unterminated")
    # qdtext takes UTF-8 (not checked to be well-formed: no rewrite depends on it)
    assert_valid(request().replace(b'"Alice"', b'"\xc3\xa9 \xff"'))
    assert_invalid(request().replace(b'"Alice"', b'"\\\xc3"'), "unterminated")   # quoted-pair is ASCII


def test_one_message_per_datagram():
    second = ("INVITE sip:eve@198.51.100.66 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2\r\n"
              "\r\n").encode()
    head = b"\r\n".join(request().split(b"\r\n")[:-3]) + b"\r\n\r\n"    # no Content-Length
    assert_invalid(head + second, "a second message")
    assert_invalid(head + b"SIP/2.0 200 OK\r\n\r\n", "a second message")
    assert_valid(head + b"just text\r\n")


# ---------------------------------------------------------------- engine

def test_engine_passes_invalid_sip_byte_identical():
    e = engine()
    data = request(to='To: "Bob <sip:bob@203.0.113.10>')
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert r.payload is None and r.status == "malformed"
    assert not r.actions and e.bindings() == []
    assert len(r.events) == 1 and isinstance(r.events[0], Malformed)
    assert "To: unterminated quoted display name" in r.events[0].reason
    assert "To: unterminated quoted display name" in r.reason
    assert e.counters["malformed"] == 1
    # the same message made valid is rewritten
    r = e.handle(OUT, PHONE, SERVER, request(), 2.0)
    assert r.status == "rewritten" and b"10.0.0.2" not in r.payload.split(b"Call-ID")[0]


def test_engine_inbound_invalid_passes():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    ok = crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1\n"
              "From: <sip:alice@203.0.113.10>;tag=r1\nTo: <sip:alice@203.0.113.10>;tag=s\n"
              "Call-ID: reg1@10.0.0.2\nCSeq: 1 REGISTER\nContact: <sip:alice@203.0.113.1:5060>;expires=60\n") \
        + b"Content-Length: 0\r\n\r\n"
    assert e.handle(IN, SERVER, WAN, ok, 2.0).status == "rewritten"
    bad = ok.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 REGISTER\r\nCSeq: 2 REGISTER")
    r = e.handle(IN, SERVER, WAN, bad, 3.0)
    assert r.payload is None and r.status == "malformed" and "more than one CSeq" in r.reason


def test_remembered_verdicts_stay_right():
    # the same header lines judged again (from the caches) give the same answers
    for _ in range(3):
        assert_valid(request())
        assert_invalid(request(to='To: "Bob <sip:bob@203.0.113.10>'), "unterminated")
        # the Via line is remembered without its branch: the branch is still checked
        assert_invalid(request(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK<g1>;rport"), "branch")
        assert_valid(request(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKother;rport"))
        assert_invalid(request(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKg1;;rport"), "empty")


def test_sent_by_with_spaced_colon_keeps_its_port():
    """sent-by = host [ COLON port ], COLON = SWS ":" SWS: the port after " : " is the
    one bound and rewritten, the spacing stays, and the response gets it back."""
    e = engine()
    e.handle(OUT, ("10.0.0.3", 5070), SERVER, register(ip="10.0.0.3", port=5070), 1.0)   # takes WAN 5070
    data = register(port=5070).replace(b"10.0.0.2:5070;branch", b"10.0.0.2 :\r\n 5070;branch")
    assert_valid(data)
    r = e.handle(OUT, ("10.0.0.2", 5070), SERVER, data, 1.0)
    assert r.status == "rewritten", r.reason
    wan_port = e.lookup_lan(("10.0.0.2", 5070)).wan[1]
    assert wan_port != 5070
    assert (b"Via: SIP/2.0/UDP 203.0.113.1 :\r\n %d;branch=z9hG4bKreg1;rport\r\n" % wan_port) in r.payload
    assert e.lookup_lan(("10.0.0.2", 5060)) is None        # no binding for a port the phone never named
    ok = crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 203.0.113.1 :\n %d;branch=z9hG4bKreg1;rport=%d;received=203.0.113.1\n"
              "From: <sip:alice@203.0.113.10>;tag=r1\nTo: <sip:alice@203.0.113.10>;tag=s\n"
              "Call-ID: reg1@10.0.0.2\nCSeq: 1 REGISTER\n" % (wan_port, wan_port)) + b"Content-Length: 0\r\n\r\n"
    r = e.handle(IN, SERVER, (WAN_IP, wan_port), ok, 2.0)
    assert r.status == "rewritten", r.reason
    assert b"Via: SIP/2.0/UDP 10.0.0.2 :\r\n 5070;branch=z9hG4bKreg1;rport=5070;received=10.0.0.2\r\n" in r.payload


def test_long_lines_are_judged_but_not_kept():
    import alg.core.grammar as grammar
    contacts = ", ".join("<sip:alice@10.0.0.2:%d>" % (6000 + n) for n in range(200))
    data = request(contact="Contact: " + contacts)
    for _ in range(2):
        assert_valid(data)
        assert_invalid(data.replace(b":6150>", b":6150"), "Contact")
    assert max(len(k) for k in grammar._GOOD) <= grammar._KEY_MAX
