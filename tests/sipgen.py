"""Hypothesis strategies that write SIP datagrams the way real (and sloppy) phones do.

Messages are built as bytes from drawn pieces: method or status, header
order, name case and compact forms, white space around the colon, Via
lists on one line or many, the usual Contact forms, folding, CRLF or LF,
optional SDP bodies, with or without Content-Length.  `mutated` then
damages valid messages the way lost fragments and fuzzers do.

The addresses a message uses come from `hosts`: pass PRIVATE to make a
phone's message that needs rewriting, PUBLIC for one that must not change.
"""
from hypothesis import strategies as st

PHONE_IP = "10.0.0.2"
OTHER_LAN_IP = "10.0.0.3"
WAN_IP = "203.0.113.1"
SERVER_IP = "203.0.113.10"

PHONE = (PHONE_IP, 5060)
SERVER = (SERVER_IP, 5060)
WAN = (WAN_IP, 5060)

# What a phone behind the router writes about itself.
PRIVATE = (PHONE_IP,)
# Addresses that never need rewriting: the WAN address itself (a STUN-aware
# phone), public hosts and hostnames.
PUBLIC = (WAN_IP, SERVER_IP, "198.51.100.7", "198.51.100.77", "sip.example.com",
          "pbx.example.net")
# Far-end addresses for the parts of a message that are not the sender's.
REMOTE = (SERVER_IP, "198.51.100.30", "198.51.100.40", "proxy.example.com")

METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "UPDATE", "PRACK",
           "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER", "INFO", "PUBLISH", "FROB-x.y!~%")
SDP_METHODS = ("INVITE", "ACK", "UPDATE", "PRACK")
REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
           302: "Moved Temporarily", 401: "Unauthorized", 486: "Busy Here",
           487: "Request Terminated", 500: "Server Internal Error", 603: ""}

# full name, compact form (or None)
NAMES = {
    "via": ("Via", "v"), "from": ("From", "f"), "to": ("To", "t"), "call-id": ("Call-ID", "i"),
    "cseq": ("CSeq", None), "contact": ("Contact", "m"), "max-forwards": ("Max-Forwards", None),
    "content-type": ("Content-Type", "c"), "content-length": ("Content-Length", "l"),
    "supported": ("Supported", "k"), "subject": ("Subject", "s"), "expires": ("Expires", None),
    "record-route": ("Record-Route", None), "route": ("Route", None),
    "user-agent": ("User-Agent", None), "x-long": ("X-Long-Unknown-Header", None),
}

DISPLAY_NAMES = ('"Alice"', '"Smith, John"', '"a;b=c"', '"<sip:x@10.0.0.2>"', '"Q \\"q\\" Q"',
                 '"back \\\\"', "Alice", "")
USERS = ("alice", "bob", "100", "a%40b", "user;par=1", "%61lice", "10.0.0.2")
SEPARATORS = (": ", ":", " : ", ":\t", ":   ", "\t:  ")
CALL_IDS = ("prime-call@10.0.0.2", "prime-reg@10.0.0.2", "c1@example.com", "x")
BRANCHES = ("z9hG4bK-prime-inv", "z9hG4bK-prime-reg", "z9hG4bK-a1", "z9hG4bK-b2")
MEDIA_PORTS = (0, 10000, 20000, 30001, 40000, 65534, 65535)


def _case(draw, name):
    how = draw(st.integers(0, 3))
    if how == 1:
        return name.lower()
    if how == 2:
        return name.upper()
    if how == 3:
        flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
        return "".join(c.upper() if f else c.lower() for c, f in zip(name, flips))
    return name


def header_name(draw, key):
    full, compact = NAMES[key]
    name = compact if compact is not None and draw(st.booleans()) else full
    return _case(draw, name)


def hostport(draw, hosts, port=True):
    host = draw(st.sampled_from(hosts))
    text = "[%s]" % host if ":" in host else host
    if port:
        p = draw(st.sampled_from((None, 5060, 5060, 5062, 15060)))
        if p is not None:
            text += ":%d" % p
    return text


def via_value(draw, hosts, top=False):
    transport = draw(st.sampled_from(("UDP", "UDP", "udp", "TCP", "TLS", "SCTP")))
    sp = draw(st.sampled_from((" ", "  ", "\t")))
    v = "SIP/2.0/%s%s%s;branch=%s" % (transport, sp, hostport(draw, hosts),
                                      draw(st.sampled_from(BRANCHES)))
    if draw(st.booleans()):
        v += draw(st.sampled_from((";rport", ";rport=5060", ";received=%s" % hosts[0],
                                   ";maddr=%s;ttl=1" % hosts[0])))
    return v


def uri(draw, hosts):
    scheme = draw(st.sampled_from(("sip", "sip", "SIP", "sips")))
    user = draw(st.sampled_from(USERS + ("",)))
    u = "%s:%s%s%s" % (scheme, user, "@" if user else "", hostport(draw, hosts))
    if draw(st.booleans()):
        u += draw(st.sampled_from((";transport=udp", ";lr", ";ob", ";x=%5Bv%5D")))
    return u


def name_addr(draw, hosts, tag=False):
    form = draw(st.integers(0, 2))
    u = uri(draw, hosts)
    if form == 0 and ";" not in u and "?" not in u:
        v = u                                               # bare addr-spec
    else:
        disp = draw(st.sampled_from(DISPLAY_NAMES))
        gap = "" if disp.startswith('"') and draw(st.booleans()) else " "
        v = "%s%s<%s>" % (disp, gap if disp else "", u)
    if tag:
        v += ";tag=%s" % draw(st.sampled_from(("a1", "b2", "x-y.z")))
    return v


def contact_value(draw, hosts, method):
    if method == "REGISTER" and draw(st.integers(0, 9)) == 0:
        return "*"
    values = [name_addr(draw, hosts)]
    if method == "REGISTER" and draw(st.booleans()):
        values.append(name_addr(draw, (OTHER_LAN_IP,) + REMOTE))
    out = []
    for v in values:
        if draw(st.booleans()) and not v.startswith("sip") and not v.startswith("SIP"):
            v += draw(st.sampled_from((";expires=60", ";q=0.5", ';+sip.instance="<urn:uuid:1>"')))
        out.append(v)
    return draw(st.sampled_from((",", ", ", " ,\t"))).join(out)


def sdp_body(draw, hosts, eol):
    ip = draw(st.sampled_from(hosts))
    fam = "IP6" if ":" in ip else "IP4"
    lines = ["v=0", "o=- %d 1 IN %s %s" % (draw(st.integers(0, 2 ** 32)), fam, ip), "s=-"]
    if draw(st.booleans()):
        lines.append("c=IN %s %s" % (fam, ip))
    lines.append("t=0 0")
    for kind in draw(st.lists(st.sampled_from(("audio", "video")), min_size=1, max_size=3)):
        port = draw(st.sampled_from(MEDIA_PORTS))
        count = draw(st.sampled_from(("", "", "/2")))
        lines.append("m=%s %d%s RTP/AVP 0 101" % (kind, port, count))
        if draw(st.booleans()) or not lines[3].startswith("c="):
            lines.append("c=IN %s %s" % (fam, draw(st.sampled_from(hosts + ("0.0.0.0",)))))
        lines.append("a=rtpmap:0 PCMU/8000")
        extra = draw(st.sampled_from((None, "a=rtcp:%d" % (port + 1),
                                      "a=rtcp:%d IN %s %s" % (port + 3, fam, ip), "a=sendonly",
                                      "a=inactive", "a=candidate:1 1 UDP 2130706431 %s %d typ host"
                                      % (ip, port))))
        if extra:
            lines.append(extra)
    return eol.join(lines) + eol


def fold(draw, value, eol):
    """Fold a header value at its first header-parameter ';' (RFC 3261 7.3.1 line
    folding): SEMI allows white space there, a URI inside <...> has none (a ';'
    inside quotes is no parameter's)."""
    depth = 0
    quoted = escaped = False
    at = -1
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            escaped = c == "\\"
            quoted = c != '"'
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == ";" and depth == 0:
            at = i
            break
    if at < 0 or not draw(st.booleans()):
        return value
    return value[:at] + eol + draw(st.sampled_from((" ", "\t", "   "))) + value[at:]


@st.composite
def sip_message(draw, hosts=PRIVATE, request=None, via_hosts=None):
    """A SIP datagram whose own addresses (top Via of a request, Contact,
    SDP) are drawn from hosts.  via_hosts: where a response's Via points
    (defaults to the remote side, as for a response the phone sends)."""
    eol = draw(st.sampled_from(("\r\n", "\r\n", "\r\n", "\n")))
    is_request = draw(st.booleans()) if request is None else request
    method = draw(st.sampled_from(METHODS))
    if is_request:
        start = "%s %s SIP/2.0" % (method, uri(draw, REMOTE))
    else:
        code = draw(st.sampled_from(sorted(REASONS)))
        start = "SIP/2.0 %d %s" % (code, REASONS[code])
    if is_request:
        vias = [via_value(draw, hosts, top=True)]
    else:
        vias = [via_value(draw, via_hosts or REMOTE)]
    vias += [via_value(draw, REMOTE) for _ in range(draw(st.integers(0, 2)))]

    blocks = []    # header lines (each already with its line end), shuffled as units
    sep = draw(st.sampled_from(SEPARATORS))
    if draw(st.booleans()):
        value = draw(st.sampled_from((",", ", ", " ,  "))).join(vias)
        blocks.append(header_name(draw, "via") + sep + fold(draw, value, eol) + eol)
    else:
        blocks.append("".join(header_name(draw, "via") + draw(st.sampled_from(SEPARATORS))
                              + fold(draw, v, eol) + eol for v in vias))

    def add(key, value):
        blocks.append(header_name(draw, key) + draw(st.sampled_from(SEPARATORS)) + value + eol)

    add("from", name_addr(draw, hosts + REMOTE, tag=True))
    add("to", name_addr(draw, REMOTE, tag=not is_request or draw(st.booleans())))
    add("call-id", draw(st.sampled_from(CALL_IDS)))
    add("cseq", "%d %s" % (draw(st.integers(1, 2 ** 31 - 1)), method))
    if is_request:
        add("max-forwards", str(draw(st.integers(0, 70))))
    if draw(st.integers(0, 4)):
        add("contact", fold(draw, contact_value(draw, hosts, method), eol))
    if draw(st.booleans()):
        add("record-route", "<%s;lr>" % uri(draw, draw(st.sampled_from((hosts, REMOTE)))))
    if draw(st.booleans()):
        add("supported", "100rel, timer")
    if draw(st.integers(0, 4)) == 0:
        add("x-long", "x" * draw(st.integers(100, 2000)))
    if draw(st.booleans()):
        add("expires", str(draw(st.integers(0, 7200))))
    blocks = draw(st.permutations(blocks))

    body = ""
    with_sdp = draw(st.booleans()) if method in SDP_METHODS else draw(st.integers(0, 5)) == 0
    if with_sdp:
        body = sdp_body(draw, hosts, eol)
        blocks.append(header_name(draw, "content-type") + sep + "application/sdp" + eol)
    elif draw(st.integers(0, 5)) == 0:
        body = "plain text naming %s%s" % (draw(st.sampled_from(hosts)), eol)
        blocks.append(header_name(draw, "content-type") + sep + "text/plain" + eol)
    raw_body = body.encode()
    if draw(st.integers(0, 5)):
        blocks.append(header_name(draw, "content-length") + draw(st.sampled_from(SEPARATORS))
                      + str(len(raw_body)) + eol)
    return (start + eol + "".join(blocks) + eol).encode() + raw_body


INSERTS = (b"\r\n", b"\n", b"\r", b":", b";", b",", b"<", b">", b'"', b"\\", b"[", b"]", b"@",
           b" ", b"\t", b"\x00", b"%", b"=", b"\xff\xfe", b"99999999999999999999", b"-1",
           b"\r\n\r\n", b"Content-Length: 5\r\n", b"l: 0\r\n", b"sip:", b"[2001:db8::",
           b"10.0.0.2", b"203.0.113.1", b"c=IN IP4 10.0.0.2\r\n", b"m=audio 70000/3 RTP/AVP 0\r\n",
           b"a=rtcp:99999\r\n", b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKm\r\n",
           b"Contact: <sip:a@10.0.0.2:99999>\r\n", b"m: *\r\n")


@st.composite
def mutated(draw, base):
    """base with 1-4 random edits: flips, cuts, inserts, duplicated slices, new numbers."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        op = draw(st.sampled_from(("flip", "delete", "insert", "dup", "truncate", "eol", "digits")))
        i = draw(st.integers(0, n))
        if op == "flip" and n:
            i = min(i, n - 1)
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 40))]
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from(INSERTS), st.binary(min_size=1, max_size=8)))
            data[i:i] = piece
        elif op == "dup":
            j = draw(st.integers(i, min(n, i + 80)))
            data[j:j] = data[i:j]
        elif op == "truncate":
            del data[i:]
        elif op == "eol":
            data[:] = data.replace(b"\r\n", b"\n") if draw(st.booleans()) else data.replace(b"\n", b"\r\n")
        elif op == "digits":
            k = i
            while k < n and not (48 <= data[k] <= 57):
                k += 1
            e = k
            while e < n and 48 <= data[e] <= 57:
                e += 1
            data[k:e] = draw(st.sampled_from((b"0", b"1", b"65535", b"65536", b"99999999999", b"")))
    return bytes(data)


def prime(engine, now=1.0):
    """Give an engine a registration and a call from the phone, so inbound
    datagrams find bindings, transactions and dialogs to act on."""
    reg = ("REGISTER sip:203.0.113.10 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-prime-reg;rport\r\n"
           "From: <sip:alice@203.0.113.10>;tag=p1\r\nTo: <sip:alice@203.0.113.10>\r\n"
           "Call-ID: prime-reg@10.0.0.2\r\nCSeq: 1 REGISTER\r\n"
           "Contact: <sip:alice@10.0.0.2:5060>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n").encode()
    ok = ("SIP/2.0 200 OK\r\n"
          "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK-prime-reg;rport=5060;received=203.0.113.1\r\n"
          "From: <sip:alice@203.0.113.10>;tag=p1\r\nTo: <sip:alice@203.0.113.10>;tag=s1\r\n"
          "Call-ID: prime-reg@10.0.0.2\r\nCSeq: 1 REGISTER\r\n"
          "Contact: <sip:alice@203.0.113.1:5060>;expires=600\r\nContent-Length: 0\r\n\r\n").encode()
    sdp = ("v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0\r\n").encode()
    inv = ("INVITE sip:bob@203.0.113.10 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-prime-inv;rport\r\n"
           "From: <sip:alice@10.0.0.2>;tag=a1\r\nTo: <sip:bob@203.0.113.10>\r\n"
           "Call-ID: prime-call@10.0.0.2\r\nCSeq: 1 INVITE\r\n"
           "Contact: <sip:alice@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\n"
           "Content-Length: %d\r\n\r\n" % len(sdp)).encode() + sdp
    from alg.core.engine import OUT, IN
    engine.handle(OUT, PHONE, SERVER, reg, now)
    engine.handle(IN, SERVER, WAN, ok, now)
    engine.handle(OUT, PHONE, SERVER, inv, now)
    return engine
