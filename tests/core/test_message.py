from alg.core.message import parse_message, MalformedMessage
from alg.core.headers import split_values, param_span, header_key
from sipmsgs import invite, crlf


def _roundtrip(data):
    assert parse_message(data).to_bytes() == data


def test_roundtrip_invite():
    _roundtrip(invite())


def test_compact_and_case_keys():
    data = crlf("OPTIONS sip:x@example.com SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\n"
                "vIA: SIP/2.0/UDP g\nm: <sip:a@b>\nL: 0\nI: abc\nf: <sip:a@b>;tag=1\nT: <sip:x@y>\n"
                "c: text/plain\nk: path\ns: hi\ne: gzip\no: presence\n\n")
    m = parse_message(data)
    keys = [h.key for h in m.headers]
    assert keys == [b"via", b"via", b"contact", b"content-length", b"call-id", b"from", b"to",
                    b"content-type", b"supported", b"subject", b"content-encoding", b"event"]
    assert m.to_bytes() == data
    assert header_key(b"X-Custom") == b"x-custom"


def test_folded_lines_kept():
    data = crlf("INVITE sip:b@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060\n"
                "  ;branch=z9hG4bKx\nSubject: one\n\ttwo\nContent-Length: 0\n\n")
    m = parse_message(data)
    assert len(m.headers) == 3
    assert m.headers[0].value == b" SIP/2.0/UDP 10.0.0.2:5060\r\n  ;branch=z9hG4bKx"
    assert m.to_bytes() == data


def test_lf_only_and_body():
    data = b"SIP/2.0 200 OK\nVia: SIP/2.0/UDP a\nContent-Length: 3\n\nabc"
    m = parse_message(data)
    assert not m.is_request and m.status == 200 and m.body == b"abc"
    assert m.to_bytes() == data


def test_request_line_fields():
    m = parse_message(invite())
    assert m.is_request and m.method == b"INVITE" and m.uri == b"sip:bob@203.0.113.10"
    assert m.cseq() == (1, b"INVITE")
    assert m.call_id() == b"call1@10.0.0.2"


def test_malformed():
    for bad in (b"", b"hello", b"hello world\r\n\r\n", b"INVITE sip:x SIP/2.0\r\nVia: x\r\n",
                b"SIP/2.0 2000 OK\r\n\r\n", b"INVITE sip:x SIP/3.0\r\n\r\n",
                b"INVITE sip:x SIP/2.0\r\n no header\r\n\r\n",
                b"INVITE sip:x SIP/2.0\r\nnocolon\r\n\r\n"):
        try:
            parse_message(bad)
        except MalformedMessage:
            continue
        assert False, bad


def test_split_values_quotes_and_brackets():
    v = b' "Doe, J" <sip:j@h;a=b,c>;q=1 , <sip:k@h> ,sip:l@h'
    spans = split_values(v)
    assert [v[s:e] for s, e in spans] == [b'"Doe, J" <sip:j@h;a=b,c>;q=1', b"<sip:k@h>", b"sip:l@h"]
    v2 = b'"a \\" , b" <sip:x@y>'
    assert len(split_values(v2)) == 1


def test_param_span():
    v = b"SIP/2.0/UDP h:1;branch=z9hG4bK;rport;received=1.2.3.4"
    s = param_span(v, 0, len(v), b"branch")
    assert v[s[0]:s[1]] == b"z9hG4bK"
    s = param_span(v, 0, len(v), b"rport")
    assert s[0] == s[1]
    s = param_span(v, 0, len(v), b"RECEIVED")
    assert v[s[0]:s[1]] == b"1.2.3.4"
    assert param_span(v, 0, len(v), b"maddr") is None
    c = b"<sip:a@h;expires=5>;expires=60"
    s = param_span(c, 0, len(c), b"expires")
    assert c[s[0]:s[1]] == b"60"
