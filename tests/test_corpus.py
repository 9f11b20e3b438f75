"""The engine over a corpus of raw SIP datagrams (tests/corpus, listed in MANIFEST).

Byte-exactness is the point: a message that needs no change must come out
as None (forwarded as is), and a rewritten one may differ from its input
only in the address tokens the ALG owns and in Content-Length.  The corpus
takes its ideas from RFC 4475 / RFC 5118 (odd white space, folding, compact
forms, escaped URIs, long and unknown headers, multipart, IPv6, bad
lengths), written for the lab setting: LAN 10.0.0.0/24, phone 10.0.0.2,
router WAN 203.0.113.1, server 203.0.113.10.

Invalid SIP (RFC 3261's grammar, RFC 4475's invalid cases) must pass
byte-identical even where it names the sender: their lines say why= (what the
reason names) and lax=rewritten (what the engine does with the grammar check
turned off, which shows the datagram names the sender where a rewrite would
happen).  Valid near-misses (RFC 4475's valid cases, folding, odd spacing,
IPv4-mapped spellings) must be rewritten with the sender's address gone.
"""
import os
import re
from urllib.parse import unquote_to_bytes

import pytest

import alg.core.engine
from alg.core.addr import norm_ip
from alg.core.config import Config
from alg.core.engine import Engine, OUT, IN, ACCEPT
from alg.core.events import InternalError, Malformed
from alg.core.message import parse_message, MalformedMessage

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
WAN_IP = "203.0.113.1"
EXPECTS = ("rewritten", "unchanged", "malformed")
DIRECTIONS = {"out": OUT, "in": IN}

# Headers whose address tokens the ALG may rewrite; every other header line
# must come out byte-identical.
REWRITABLE = (b"via", b"contact", b"route", b"record-route", b"path", b"from", b"to",
              b"content-length")
# SDP lines that may carry the sender's address or media ports.
SDP_REWRITABLE = (b"c=", b"o=", b"m=", b"a=rtcp:")
ICE_LINES = (b"a=candidate", b"a=remote-candidates")


def new_engine():
    # rtp_ports: the brief said (1024, 65535), but Config refuses a range that
    # holds the SIP port 5060; every media port in the corpus is >= 10000.
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24", "fd00::/8"],
                         rtp_ports=(10000, 65535)))


class Case:
    __slots__ = ("name", "direction", "src", "dst", "expect", "after", "keep", "why", "lax", "line")

    def __repr__(self):
        return self.name


def parse_hostport(text, where):
    """'10.0.0.2:5060' or '[fd00::2]:5060' -> (ip, port)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            raise ValueError("%s: bad address %r" % (where, text))
        return text[1:close], int(text[close + 2:])
    ip, _, port = text.rpartition(":")
    if not ip or not port.isdigit():
        raise ValueError("%s: bad address %r" % (where, text))
    return ip, int(port)


def load_manifest():
    cases = []
    with open(os.path.join(CORPUS, "MANIFEST")) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = "MANIFEST line %d" % n
            cols = line.split()
            if len(cols) < 5:
                raise ValueError("%s: want 'file direction src dst expect [key=value]...'" % where)
            c = Case()
            c.line = n
            c.name = cols[0]
            if cols[1] not in DIRECTIONS:
                raise ValueError("%s: direction must be out or in, not %r" % (where, cols[1]))
            c.direction = DIRECTIONS[cols[1]]
            c.src = parse_hostport(cols[2], where)
            c.dst = parse_hostport(cols[3], where)
            if cols[4] not in EXPECTS:
                raise ValueError("%s: expect must be one of %s, not %r" % (where, EXPECTS, cols[4]))
            c.expect = cols[4]
            c.after = None
            c.keep = []
            c.why = None
            c.lax = None
            for opt in cols[5:]:
                key, eq, value = opt.partition("=")
                if not eq:
                    raise ValueError("%s: option %r is not key=value" % (where, opt))
                if key == "after":
                    c.after = value
                elif key == "keep":
                    c.keep.append(unquote_to_bytes(value))
                elif key == "why":
                    c.why = unquote_to_bytes(value).decode()
                elif key == "lax":
                    if value not in EXPECTS:
                        raise ValueError("%s: lax must be one of %s, not %r" % (where, EXPECTS, value))
                    c.lax = value
                else:
                    raise ValueError("%s: unknown option %r" % (where, key))
            cases.append(c)
    return cases


CASES = load_manifest()
BY_NAME = dict((c.name, c) for c in CASES)


def data_of(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def prerequisites(case):
    """The after= chain of a case, oldest first."""
    chain = []
    c = case
    while c.after is not None:
        if c.after not in BY_NAME:
            raise ValueError("%s: after=%s is not in the manifest" % (c.name, c.after))
        c = BY_NAME[c.after]
        if c in chain or c is case:
            raise ValueError("%s: after= chain loops" % case.name)
        chain.insert(0, c)
    return chain


def run(case):
    eng = new_engine()
    for pre in prerequisites(case):
        r = eng.handle(pre.direction, pre.src, pre.dst, data_of(pre.name), now=999.0)
        assert r.status != "malformed", "prerequisite %s: %s" % (pre.name, r.reason)
    return eng.handle(case.direction, case.src, case.dst, data_of(case.name), now=1000.0)


# ------------------------------------------------------------------ helpers

QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
VIA_SENT_BY = re.compile(rb"SIP\s*/\s*2\.0\s*/\s*[^\s/]+\s+(\[[^\]]*\]|[^\s:;,\[]+)", re.I)
SIP_URI = re.compile(rb"sips?:([^\s>,]*)", re.I)


def header_block(msg):
    return msg.start_line + b"".join(h.raw for h in msg.headers)


def ip_of(host):
    """The address a host names, normalised (IPv4-mapped spellings are IPv4), or its text."""
    text = host[1:-1] if host[:1] == b"[" else host
    return norm_ip(text) or text.decode("latin-1").lower()


def via_hosts(msg):
    """The sent-by host of every Via value, in order."""
    hosts = []
    for h in msg.get_all(b"via"):
        hosts.extend(ip_of(m.group(1)) for m in VIA_SENT_BY.finditer(h.value))
    return hosts


def uri_hosts(value):
    """Hosts of the sip:/sips: URIs in a header value, display names ignored."""
    hosts = []
    for m in SIP_URI.finditer(QUOTED.sub(b'""', value)):
        rest = m.group(1)
        q = rest.find(b"?")
        if q >= 0:
            rest = rest[:q]
        rest = rest[rest.rfind(b"@") + 1:]
        if rest[:1] == b"[":
            host = rest[:rest.find(b"]") + 1]
        else:
            host = re.split(rb"[:;]", rest, 1)[0]
        hosts.append(ip_of(host))
    return hosts


def body_lines(msg):
    return msg.body.split(b"\n")


def content_type(msg):
    h = msg.get(b"content-type")
    return b"" if h is None else h.value.strip().lower()


def check_content_length(msg, label):
    for h in msg.get_all(b"content-length"):
        assert int(h.value.strip()) == len(msg.body), \
            "%s: %s says %s but the body has %d bytes" % (label, h.name, h.value.strip(), len(msg.body))


def normalise_length(data):
    msg = parse_message(data)
    for h in msg.get_all(b"content-length"):
        h.set_value(b" N")
    return msg.to_bytes()


def address_re(ip):
    return re.compile(rb"(?<![0-9A-Za-z.])" + re.escape(ip.encode()) + rb"(?![0-9])")


def substitute(data, old_ip, new_ip):
    """old_ip -> new_ip as a whole token, leaving ICE lines alone."""
    pat = address_re(old_ip)
    out = []
    for line in data.split(b"\n"):
        if not line.startswith(ICE_LINES):
            line = pat.sub(new_ip.encode(), line)
        out.append(line)
    return b"\n".join(out)


# -------------------------------------------------------------------- tests

def test_manifest_covers_the_corpus():
    files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".sip"))
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "a file is listed twice in MANIFEST"
    assert sorted(names) == files, "MANIFEST and tests/corpus/*.sip disagree"
    assert len(files) >= 45
    for c in CASES:
        prerequisites(c)
        assert re.match(r"^\d{3}_[a-z0-9_]+\.sip$", c.name), c.name
    for e in EXPECTS:
        assert sum(1 for c in CASES if c.expect == e) >= 5, "too few %s cases" % e


def test_corpus_uses_crlf_unless_about_lf():
    for c in CASES:
        data = data_of(c.name)
        if c.expect == "malformed" or b"lf" in c.name.encode().split(b"_") or "line_ends" in c.name:
            continue
        head = data.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), "%s has bare LF line ends" % c.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parse_serialize_identity(case):
    """Every corpus message that parses serializes back byte for byte."""
    data = data_of(case.name)
    try:
        msg = parse_message(data)
    except MalformedMessage:
        assert case.expect == "malformed", "%s does not parse" % case.name
        return
    assert msg.to_bytes() == data


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_engine_on_corpus(case):
    data = data_of(case.name)
    res = run(case)
    if case.expect == "malformed":
        assert res.payload is None, "%s: malformed input must be forwarded as is" % case.name
        assert res.status == "malformed", "%s: %s (%s)" % (case.name, res.status, res.reason)
        assert res.verdict == ACCEPT
        assert not res.actions, "%s: %r" % (case.name, res.actions)
        events = [e for e in res.events if isinstance(e, Malformed)]
        assert len(events) == 1, "%s: %r" % (case.name, res.events)
        if case.why is not None:
            assert case.why in events[0].reason, "%s: reason %r does not name %r" % (
                case.name, events[0].reason, case.why)
        assert not any(isinstance(e, InternalError) for e in res.events), "%s: %r" % (case.name, res.events)
        return
    if case.expect == "unchanged":
        assert res.payload is None, "%s: expected no change, got %s (%s)" % (
            case.name, res.status, res.reason)
        assert res.status == "unchanged", "%s: %s (%s)" % (case.name, res.status, res.reason)
        assert res.verdict == ACCEPT
        assert parse_message(data).to_bytes() == data
        for k in case.keep:
            assert k in data
        return
    check_rewritten(case, data, res)


LAX_CASES = [c for c in CASES if c.lax is not None]


@pytest.mark.parametrize("case", LAX_CASES, ids=[c.name for c in LAX_CASES])
def test_invalid_would_be_rewritten(case, monkeypatch):
    """With the grammar check off the engine does what lax= says: for lax=rewritten,
    the invalid datagram names the sender where a rewrite would happen, so its
    passing byte-identical is the grammar check's doing."""
    assert case.expect == "malformed", "%s: lax= is for invalid datagrams" % case.name
    monkeypatch.setattr(alg.core.engine, "grammar_problem", lambda msg: "")
    res = run(case)
    assert res.status == case.lax, "%s: %s (%s)" % (case.name, res.status, res.reason)
    if case.lax == "rewritten":
        assert res.payload is not None and res.payload != data_of(case.name)


def test_invalid_cases_say_why():
    for c in CASES:
        if c.name >= "078" and c.expect == "malformed":
            assert c.why and c.lax, "%s: an invalid case names why= and lax=" % c.name
    assert sum(1 for c in CASES if c.lax == "rewritten") >= 40


MAPPED = re.compile(rb"(IN IP6 )?\[?(?:0{1,4}:){5}ffff:(?:10\.0\.0\.2|0?a00:0{0,3}2)\]?"
                    rb"|(IN IP6 )?\[?::ffff:(?:10\.0\.0\.2|0?a00:0{0,3}2)\]?", re.I)


def unmap(data, lan_ip):
    """The phone's IPv4-mapped spellings of its own address (only 10.0.0.2 writes
    them here) in the form the rewrite leaves: plain IPv4, "IN IP4" in SDP."""
    if lan_ip != "10.0.0.2":
        return data
    return MAPPED.sub(lambda m: (b"IN IP4 " if m.group(1) or m.group(2) else b"") + b"10.0.0.2", data)


def check_rewritten(case, data, res):
    name = case.name
    assert res.status == "rewritten", "%s: %s (%s)" % (name, res.status, res.reason)
    assert res.verdict == ACCEPT
    out = res.payload
    assert out is not None and out != data
    m_in = parse_message(data)
    m_out = parse_message(out)
    check_content_length(m_out, name)

    # Same header lines, in the same order; only the ALG's headers may change.
    assert [h.name for h in m_out.headers] == [h.name for h in m_in.headers], name
    for hi, ho in zip(m_in.headers, m_out.headers):
        if hi.key not in REWRITABLE:
            assert ho.raw == hi.raw, "%s: %s must not change" % (name, hi.name.decode())
    if case.direction == IN and m_in.is_request:
        assert (m_out.method, m_out.version) == (m_in.method, m_in.version)
    else:
        assert m_out.start_line == m_in.start_line, "%s: start line changed" % name
    # Display names and other quoted strings are never touched.
    assert QUOTED.findall(header_block(m_out)) == QUOTED.findall(header_block(m_in)), name

    # Body: non-SDP bodies are opaque; in SDP only address/port lines may change.
    ct = content_type(m_in)
    if b"sdp" in ct or b"multipart" in ct:
        li, lo = body_lines(m_in), body_lines(m_out)
        assert len(lo) == len(li), "%s: SDP line count changed" % name
        for a, b in zip(li, lo):
            if not a.startswith(SDP_REWRITABLE):
                assert a == b, "%s: body line %r became %r" % (name, a, b)
        ice_in = [l for l in li if l.startswith(ICE_LINES)]
        assert ice_in == [l for l in lo if l.startswith(ICE_LINES)], name
    else:
        assert m_out.body == m_in.body, "%s: non-SDP body changed" % name

    # Differs only in the rewritten tokens: write both sides with one address
    # (the input may name it already, e.g. a phone's Call-ID in a response) and compare.
    if case.direction == OUT:
        lan_ip = case.src[0]
        old_ip, new_ip = WAN_IP, lan_ip
        src = unmap(data, lan_ip)
    else:
        assert res.dnat is not None, "%s: inbound rewrite without a DNAT target" % name
        lan_ip = res.dnat[0]
        old_ip, new_ip = lan_ip, case.dst[0]
        src = data
    assert normalise_length(substitute(out, old_ip, new_ip)) == \
        normalise_length(substitute(src, old_ip, new_ip)), \
        "%s: output differs from the input in more than the rewritten addresses" % name

    for k in case.keep:
        assert k in out, "%s: %r must stay" % (name, k)

    if case.direction == OUT:
        # Nothing naming the sender's private address (in any spelling) is left where
        # the far end would use it.
        if m_in.is_request:
            assert lan_ip != via_hosts(m_out)[0], "%s: the top Via still names %s" % (name, lan_ip)
        for key in (b"contact", b"from", b"to", b"route", b"record-route", b"path"):
            for h in m_out.get_all(key):
                assert lan_ip not in uri_hosts(h.value), "%s: %s still names %s" % (name, h.name, lan_ip)
        for line in body_lines(m_out):
            line = line.rstrip(b"\r")
            if line.startswith((b"c=", b"o=")) or (line.startswith(b"a=rtcp:") and len(line.split()) == 4):
                addr = line.split()[-1].split(b"/")[0]
                assert norm_ip(addr) != lan_ip, "%s: %r" % (name, line)
    elif m_in.is_request:
        assert uri_hosts(m_out.uri) == [lan_ip], "%s: Request-URI %r" % (name, m_out.uri)
    else:
        assert via_hosts(m_out)[0] == lan_ip, "%s: top Via not mapped back" % name
