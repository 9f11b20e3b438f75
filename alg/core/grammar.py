"""The grammar of what the rewrite reads, checked before anything is rewritten.

An ALG that rewrites a message it cannot read the way the far end will read
it is guessing: an unbalanced quote moves where a display name ends and so
which '<' starts the URI, a second Content-Length or a second message in the
datagram changes what the body is, a CSeq naming another method sends a
response to the wrong handler.  So every part the rewrite depends on is
held to RFC 3261 section 25 (with RFC 3581 for rport, RFC 5118 and RFC 5954
for IPv6 references), exactly as strictly as the grammar and no more: odd
spacing, folding, case, compact forms, unknown headers and methods, escaped
URI characters and quoted commas or brackets in display names are all valid.
check() says what is wrong; the engine then passes the datagram as it came.

Headers the rewrite does not read (Subject, Max-Forwards, Date, unknown
ones...) are not looked into beyond their names.  What a device repeats (its
start lines, its From/To/Contact values, the head of its Via) is judged once
and remembered by its bytes.
"""

from .addr import parse_ip

_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_ALNUM = _ALPHA + _DIGIT
_WS = b" \t\r\n"                     # LWS once CR and LF are known to fold (see _line_ends)
_TOKEN = _ALNUM + b"-.!%*_+`'~"
_TOKEN_LWS = _TOKEN + _WS            # display-name = *(token LWS)
_SCHEME = _ALNUM + b"+-."
_UNRESERVED = _ALNUM + b"-_.!~*'()"
# user (with escapes) and the characters a telephone-subscriber adds (RFC 2806:
# '#' and the token-chars ^ ` |)
_USER = _UNRESERVED + b"%&=+$,;?/" + b"#^`|"
_PASSWORD = _UNRESERVED + b"%&=+$,"
_PARAMCHAR = _UNRESERVED + b"%[]/:&+$"
_HNV = _UNRESERVED + b"%[]/?:+$"
_HOSTNAME = _ALNUM + b"-."
_URIC = _UNRESERVED + b"%;/?:@&=+$,[]"   # absoluteURI (RFC 2396, brackets from RFC 2732)
# qdtext (LWS, %x21, %x23-5B, %x5D-7E, UTF8-NONASCII): everything but controls, DEL, '"' and '\'
_QDTEXT = bytes([c for c in range(256) if (c >= 32 and c != 34 and c != 92 and c != 127)
                 or c == 9 or c == 10 or c == 13])

_CACHE_MAX = 256
_KEY_MAX = 1024       # longer lines are judged each time: 256 of 64 KB would be a lot of router

# What was found valid, remembered by its bytes: header lines (a Via line with
# its branch value cut out, see _via_line) and Via heads; and what a start line
# with its list of header names gives (_shape).  Invalid ones are found again
# each time: they only cost the malformed path.
# Worth it through the daemon: without them a message costs 216k more
# instructions (433k with, 650k without, the check itself then more than the
# rest of the engine), about 35 us of the daemon's 300 us CPU per queued
# packet (12%; bench/cache_value.py's mix under callgrind, 2026-12-01).
_GOOD = set()
_HEADS = set()
_SHAPES = {}

# The headers looked into, one bit each.  Exactly once: From, To, Call-ID,
# CSeq (RFC 3261 8.1.1, 20; 7.3.1: only comma-list headers may repeat), and
# Content-Length at most once; Via at least once.
_VIA = 1
_FROM = 2
_TO = 4
_CALL_ID = 8
_CSEQ = 16
_LENGTH = 32
_CONTACT = 64
_ROUTE = 128          # Route, Record-Route, Path: lists of name-addrs
_ONCE = _FROM | _TO | _CALL_ID | _CSEQ | _LENGTH
_NAME_ADDRS = _FROM | _TO | _CONTACT | _ROUTE
_REQUIRED = ((_VIA, "Via"), (_FROM, "From"), (_TO, "To"), (_CALL_ID, "Call-ID"), (_CSEQ, "CSeq"))
_KINDS = {b"via": _VIA, b"from": _FROM, b"to": _TO, b"call-id": _CALL_ID, b"cseq": _CSEQ,
          b"content-length": _LENGTH, b"contact": _CONTACT, b"route": _ROUTE,
          b"record-route": _ROUTE, b"path": _ROUTE}
_LABELS = {b"via": "Via", b"from": "From", b"to": "To", b"call-id": "Call-ID", b"cseq": "CSeq",
           b"content-length": "Content-Length", b"contact": "Contact", b"route": "Route",
           b"record-route": "Record-Route", b"path": "Path"}


def check(msg):
    """Why msg breaks the grammar the rewrite relies on, or "" when it follows it."""
    names = msg.names
    # the start line and the header names: which lines to look into, or why not
    key = msg.start_line + b"\n".join(names)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _start_line(msg) or _shape(names)
        _remember(_SHAPES, key, shape)
    if type(shape) is str:
        return shape
    name_addrs, vias, cseq = shape
    raws = msg.raw_lines()
    good = _GOOD
    for i in name_addrs:
        # From, To, Contact, Route...: a device repeats them, the line is the key
        raw = raws[i]
        if raw not in good:
            why = _name_addrs(_value(raw), _KINDS[names[i]])
            if why:
                return _LABELS[names[i]] + ": " + why
            _remember(good, raw)
    for i in vias:
        why = _via_line(raws[i])
        if why:
            return "Via: " + why
    why = _cseq(raws[cseq], msg)
    if why:
        return "CSeq: " + why
    body = msg.body
    if body and body[:2] != b"v=":        # SDP is no start line
        return _second_message(msg, body)
    return ""


def _shape(names):
    """(name-addr line indexes, Via line indexes, CSeq's), or why the names alone
    break the grammar (a name that is no token, a header missing or twice).

    Call-ID must be there once, but its word[@word] syntax is not looked into:
    the engine only compares it byte for byte, so a Call-ID outside that syntax
    (a base64 '=', say) changes nothing the rewrite does."""
    for k in names:
        # header-name = token (compact forms are tokens too)
        if not k or k.lstrip(_TOKEN):
            return "header name %s is not a token" % _show(k)
    seen = 0
    name_addrs = []
    vias = []
    cseq = -1
    i = -1
    for k in names:
        i += 1
        bit = _KINDS.get(k)
        if bit is None:
            continue
        if bit & seen & _ONCE:
            return "more than one " + _LABELS[k]
        seen |= bit
        if bit == _VIA:
            vias.append(i)
        elif bit == _CSEQ:
            cseq = i
        elif bit & _NAME_ADDRS:           # length_problem() read Content-Length
            name_addrs.append(i)
    for bit, label in _REQUIRED:
        if not seen & bit:
            return "no " + label
    return (tuple(name_addrs), tuple(vias), cseq)


def _value(raw):
    """A header line's value: after the colon, without the CR of its line end."""
    return raw[raw.find(b":") + 1:(-1 if raw[-1:] == b"\r" else len(raw))]


def _via_line(raw):
    """_via() of a header line, remembered by the line without its branch value (a
    new one every transaction): a token branch can make no line valid or invalid.

    (partition, and `in` with a byte's value, not find: in CPython they skip find's
    argument parsing, and `bytes in bytes` first fails to read the needle as a number.)"""
    head, sep, rest = raw.partition(b";branch=")
    if not sep or 34 in raw:                  # a '"'
        return _via(_value(raw))
    value, semi, tail = rest.partition(b";")
    if not semi and value[-1:] == b"\r":
        value = value[:-1]
        tail = b"\r"
    if not value or value.lstrip(_TOKEN):
        return _via(_value(raw))             # ',' ends it (another value follows), or worse
    key = head + semi + tail
    if key in _GOOD:
        return ""
    why = _via(_value(key))
    if not why:
        _remember(_GOOD, key)
    return why


def _remember(cache, key, value=None):
    """cache[key] = value (a dict), or key into cache (a set); emptied when full."""
    if len(key) > _KEY_MAX:
        return
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    if value is None:
        cache.add(key)
    else:
        cache[key] = value


def _show(b):
    """Wire bytes in a reason, escaped (reasons reach logs) and kept short."""
    out = []
    for c in b[:40]:
        out.append(chr(c) if 32 < c < 127 and c != 92 else "\\x%02x" % c)
    return "".join(out) + ("..." if len(b) > 40 else "")


def _line_ends(v):
    """A CR or LF inside a value is only ever part of folding (CRLF or LF, then
    SP/HT: the message model starts a new header at any other LF)."""
    return v.find(b"\r") < 0 or v.count(b"\r") == v.count(b"\r\n")


# ------------------------------------------------------------- start line

def _start_line(msg):
    """RFC 3261 7.1 Request-Line / 7.2 Status-Line (message.py found the parts)."""
    if not msg.is_request:
        text = msg.start_line.rstrip(b"\r\n")
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase: the SP after the code is not optional
        # (Status-Code = 3DIGIT: extension-code takes any three, message.py read them)
        if len(text) < 12 or text[11] != 32:
            return "no SP after the status code"
        return ""
    if msg.method.lstrip(_TOKEN):
        return "method %s is not a token" % _show(msg.method)
    why = _uri(msg.uri, False)
    if why:
        return "Request-URI: " + why
    line = msg.start_line
    if line[:-2 if line[-2:] == b"\r\n" else -1].find(b"\r") >= 0:
        return "stray CR in the request line"
    return ""


# ------------------------------------------------------------------ URIs

def _uri(u, headers_ok=True):
    """addr-spec: a SIP/SIPS URI checked to the last byte, any other scheme as an absoluteURI.

    headers_ok=False for the Request-URI, where RFC 3261 19.1.1 allows no ?headers."""
    colon = u.find(b":")
    if colon <= 0:
        return "no URI scheme"
    scheme = u[:colon]
    if scheme[0] not in _ALPHA or scheme.lstrip(_SCHEME):
        return "bad URI scheme %s" % _show(scheme)
    low = scheme.lower()
    if low != b"sip" and low != b"sips":
        rest = u[colon + 1:]
        if not rest or rest.lstrip(_URIC):
            return "bad %s URI" % _show(scheme)
        return "" if _escapes_ok(rest) else "bad %-escape in the URI"
    return _sip_uri(u[colon + 1:], headers_ok)


def _sip_uri(rest, headers_ok):
    """RFC 3261 19.1.1 / 25.1: [userinfo "@"] hostport uri-parameters [headers]."""
    if not _escapes_ok(rest):
        return "bad %-escape in the URI"
    at = rest.find(b"@")
    if at >= 0:
        if rest.find(b"@", at + 1) >= 0:
            return "more than one @ in the URI"
        ui = rest[:at]
        c = ui.find(b":")
        user = ui if c < 0 else ui[:c]
        if not user or user.lstrip(_USER):
            return "bad user part in the URI"
        if c >= 0 and ui[c + 1:].lstrip(_PASSWORD):
            return "bad password in the URI"
        rest = rest[at + 1:]
    i, why = _hostport(rest)
    if why:
        return why
    tail = rest[i:]
    if tail:
        q = tail.find(b"?")
        params = tail if q < 0 else tail[:q]
        if params:
            if params[0] != 59:
                return "bad byte after the URI host"
            for p in params.split(b";")[1:]:
                eq = p.find(b"=")
                name = p if eq < 0 else p[:eq]
                if not name or name.lstrip(_PARAMCHAR):
                    return "bad URI parameter"
                if eq >= 0 and (eq == len(p) - 1 or p[eq + 1:].lstrip(_PARAMCHAR)):
                    return "bad URI parameter value"
        if q >= 0:
            if not headers_ok:
                return "headers in a Request-URI"
            for h in tail[q + 1:].split(b"&"):
                eq = h.find(b"=")
                if eq <= 0 or h[:eq].lstrip(_HNV) or h[eq + 1:].lstrip(_HNV):
                    return "bad URI header"
    return ""


def _hostport(b):
    """(end of host[:port] at the start of b, why not) for a URI: no white space anywhere."""
    if b[:1] == b"[":
        close = b.find(b"]")
        if close < 0:
            return 0, "unterminated IPv6 reference"
        if not _ipv6(b[1:close]):
            return 0, "bad IPv6 reference"
        i = close + 1
    else:
        i = len(b) - len(b.lstrip(_HOSTNAME))
        if not _host(b[:i]):
            return 0, "bad host %s" % _show(b[:i]) if i else "no host"
    if b[i:i + 1] == b":":
        j = len(b) - len(b[i + 1:].lstrip(_DIGIT))
        if not _port(b[i + 1:j]):
            return 0, "bad port"
        i = j
    return i, ""


def _host(h):
    """hostname or IPv4address (RFC 3261 25.1; IPv6 comes bracketed, see _ipv6)."""
    if not h:
        return False
    if not h.lstrip(b"0123456789."):
        # IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
        parts = h.split(b".")
        if len(parts) != 4:
            return False
        for p in parts:
            if not 1 <= len(p) <= 3:
                return False
        return True
    labels = h.split(b".")
    if not labels[-1]:
        labels.pop()                       # a fully qualified name's final dot
    if not labels:
        return False
    for label in labels:
        if not label or label[0] == 45 or label[-1] == 45:
            return False
    return labels[-1][0] in _ALPHA         # toplabel starts with a letter


def _ipv6(text):
    """IPv6address as RFC 5954 corrected it (RFC 4291 text forms): three colons are not one."""
    if text.find(b":") < 0 or text.lstrip(_HEX + b":."):
        return False
    p = parse_ip(text)
    return p is not None and p[0] == 6


def _port(b):
    """port = 1*DIGIT, and a UDP/TCP port fits in 16 bits."""
    return 0 < len(b) <= 5 and not b.lstrip(_DIGIT) and int(b) <= 65535


def _escapes_ok(b):
    i = b.find(b"%")
    while i >= 0:
        h = b[i + 1:i + 3]
        if len(h) != 2 or h.lstrip(_HEX):
            return False
        i = b.find(b"%", i + 3)
    return True


# ------------------------------------------------------------------ CSeq

def _cseq(raw, msg):
    """CSeq = 1*DIGIT LWS Method (RFC 3261 20.16); 8.1.1.5: 32 bits, the request's method."""
    parts = raw.partition(b":")[2].split()
    if len(parts) != 2:
        return "not a number and a method"
    num, method = parts
    if not num.isdigit() or (len(num) > 9 and (len(num) > 10 or int(num) > 0xFFFFFFFF)):
        return "number is not a 32-bit number"
    if msg.is_request:
        if method != msg.method:          # the request line's method is a token
            return "method %s is not the request's %s" % (_show(method), _show(msg.method))
    elif method.lstrip(_TOKEN):
        return "method is not a token"
    if 13 in raw[:-1] and not _line_ends(raw[:-1] if raw[-1] == 13 else raw):
        return "stray CR"
    return ""


# ------------------------------------------------------------------- Via

def _via(v):
    """via-parm *(COMMA via-parm) (RFC 3261 20.42, 25.1)."""
    if not _line_ends(v):
        return "stray CR"
    if v.find(b'"') < 0:
        elements = v.split(b",")
    else:
        elements = _split(v, False)
        if type(elements) is str:
            return elements
    heads = _HEADS
    for e in elements:
        e = e.strip(_WS)
        if not e:
            return "empty value"
        semi = e.find(b";")
        head = e if semi < 0 else e[:semi]
        if head not in heads:
            why = _via_head(head)
            if why:
                return why
            _remember(heads, head)
        if semi >= 0:
            why = _params(e[semi:], _VIA_PARAMS)
            if why:
                return why
    return ""


def _via_head(h):
    """sent-protocol LWS sent-by: SIP / 2.0 / UDP host[:port], with SWS around the slashes."""
    parts = h.split(b"/")
    if len(parts) != 3:
        return "bad sent-protocol"
    name = parts[0].strip(_WS)
    version = parts[1].strip(_WS)
    if not name or name.lstrip(_TOKEN) or not version or version.lstrip(_TOKEN):
        return "bad sent-protocol"
    rest = parts[2].lstrip(_WS)
    after = rest.lstrip(_TOKEN)
    if len(after) == len(rest):
        return "no transport"
    if not after.strip(_WS):
        return "no sent-by"
    sent_by = after.lstrip(_WS)
    if len(sent_by) == len(after):
        return "no LWS before sent-by"
    sent_by = sent_by.rstrip(_WS)
    # sent-by = host [ COLON port ], COLON = SWS ":" SWS
    if sent_by[0] == 91:
        close = sent_by.find(b"]")
        if close < 0 or not _ipv6(sent_by[1:close]):
            return "bad IPv6 reference in sent-by"
        tail = sent_by[close + 1:]
    else:
        i = len(sent_by) - len(sent_by.lstrip(_HOSTNAME))
        if not _host(sent_by[:i]):
            return "bad sent-by host %s" % _show(sent_by[:i]) if i else "no sent-by host"
        tail = sent_by[i:]
    if tail:
        tail = tail.lstrip(_WS)
        if tail[:1] != b":" or not _port(tail[1:].lstrip(_WS)):
            return "bad sent-by port"
    return ""


def _received(v):
    # via-received = "received" EQUAL (IPv4address / IPv6address); RFC 5118 4.5:
    # accept the bracketed IPv6reference servers write too
    if v[:1] == b"[":
        return v[-1:] == b"]" and _ipv6(v[1:-1])
    if v.find(b":") >= 0:
        return _ipv6(v)
    return not v.lstrip(b"0123456789.") and _host(v)      # IPv4address: 4 x 1*3DIGIT


def _ttl(v):
    return len(v) <= 3 and v.isdigit() and int(v) <= 255


def _maddr(v):
    return (v[-1:] == b"]" and _ipv6(v[1:-1])) if v[:1] == b"[" else _host(v)


def _token(v):
    return not v.lstrip(_TOKEN)


def _digits(v):
    return v.isdigit()


# name -> (check of its value, value required): the via-params with a rule of
# their own (RFC 3261 20.42, RFC 3581 for rport); the rest are generic-params
_VIA_PARAMS = {b"branch": (_token, True), b"received": (_received, True), b"maddr": (_maddr, True),
               b"ttl": (_ttl, True), b"rport": (_port, False)}
_CONTACT_PARAMS = {b"expires": (_digits, True)}          # c-p-expires = "expires" EQUAL delta-seconds
_TAG_PARAMS = {b"tag": (_token, True)}                   # tag-param = "tag" EQUAL token
_NO_PARAMS = {}


# ------------------------------------------------------------ parameters

def _params(p, rules):
    """*( SEMI param ), param = token [ EQUAL gen-value ], gen-value = token / host / quoted-string.

    p starts at the first ';'.  White space (folding included) may sit around
    ';' and '=' (SEMI, EQUAL: SWS)."""
    if p.find(b'"') < 0:
        pieces = p.split(b";")
        if pieces[0].strip(_WS):
            return "bad byte before the parameters"
        for piece in pieces[1:]:
            eq = piece.find(b"=")
            if eq < 0:
                name = piece.strip(_WS)
                value = None
            else:
                name = piece[:eq].strip(_WS)
                value = piece[eq + 1:].strip(_WS)
            why = _param(name, value, rules)
            if why:
                return why
        return ""
    # a quoted value may hold ';' and '=': walk it
    i = 0
    n = len(p)
    while i < n:
        if p[i] != 59:
            return "bad byte between parameters"
        j = _skip_ws(p, i + 1)
        k = n - len(p[j:].lstrip(_TOKEN))
        name = p[j:k]
        m = _skip_ws(p, k)
        value = None
        if m < n and p[m] == 61:
            v = _skip_ws(p, m + 1)
            if v < n and p[v] == 34:
                e = _qend(p, v)
                if e < 0:
                    return "unterminated quoted parameter value"
            elif v < n and p[v] == 91:
                e = p.find(b"]", v) + 1
                if e <= 0:
                    return "unterminated IPv6 reference in a parameter"
            else:
                e = n - len(p[v:].lstrip(_TOKEN))
            value = p[v:e]
            m = _skip_ws(p, e)
        why = _param(name, value, rules)
        if why:
            return why
        i = m
    return ""


def _param(name, value, rules):
    if not name or name.lstrip(_TOKEN):
        return "empty parameter" if not name else "parameter name %s is not a token" % _show(name)
    rule = rules.get(name.lower()) if rules else None
    if rule is not None:
        ok, required = rule
        if value is None:
            if required:
                return "%s without a value" % _show(name)
            return ""
        if not ok(value):
            return "bad %s value" % _show(name)
        return ""
    if value is None:
        return ""
    if not value:
        return "empty value of %s" % _show(name)
    c = value[0]
    if c == 34:
        return "" if _qend(value, 0) == len(value) else "bad quoted value of %s" % _show(name)
    if c == 91:
        return "" if value[-1:] == b"]" and _ipv6(value[1:-1]) else "bad IPv6 reference in %s" % _show(name)
    if value.lstrip(_TOKEN):
        return "value of %s is not a token, host or quoted string" % _show(name)
    return ""


def _skip_ws(b, i):
    n = len(b)
    while i < n and b[i] in _WS:
        i += 1
    return i


def _qend(b, i):
    """Where the quoted-string opening at b[i] ends (after its closing quote), or -1
    when it is unterminated or holds what qdtext / quoted-pair exclude."""
    j = i + 1
    while True:
        q = b.find(b'"', j)
        if q < 0:
            return -1
        bs = b.find(b"\\", j, q)
        if bs < 0:
            return q + 1 if not b[j:q].lstrip(_QDTEXT) else -1
        if b[j:bs].lstrip(_QDTEXT):
            return -1
        c = b[bs + 1] if bs + 1 < len(b) else 10
        if c > 127 or c == 10 or c == 13:     # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            return -1
        j = bs + 2


# ------------------------------------------------------ name-addr headers

def _split(v, angles):
    """v split at the commas outside quoted strings (and <...>), or why it can't be."""
    out = []
    start = pos = 0
    while True:
        comma = v.find(b",", pos)
        quote = v.find(b'"', pos)
        lt = v.find(b"<", pos) if angles else -1
        nxt = comma
        if quote >= 0 and (nxt < 0 or quote < nxt):
            nxt = quote
        if lt >= 0 and (nxt < 0 or lt < nxt):
            nxt = lt
        if nxt < 0:
            out.append(v[start:])
            return out
        if nxt == comma:
            out.append(v[start:nxt])
            start = pos = nxt + 1
        elif nxt == quote:
            pos = _qend(v, nxt)
            if pos < 0:
                return "unterminated quoted string"
        else:
            pos = v.find(b">", nxt + 1) + 1
            if pos <= 0:
                return "< without >"


def _name_addrs(v, kind):
    """From/To, Contact, Route/Record-Route/Path values (RFC 3261 20.10, 20.20, 20.34, 20.39;
    Path: RFC 3327)."""
    if not _line_ends(v):
        return "stray CR"
    if kind == _FROM or kind == _TO:
        elements = [v]
    elif v.find(b'"') < 0 and v.find(b"<") < 0:
        elements = v.split(b",")
    else:
        elements = _split(v, True)
        if type(elements) is str:
            return elements
    rules = _CONTACT_PARAMS if kind == _CONTACT else _NO_PARAMS if kind == _ROUTE else _TAG_PARAMS
    for e in elements:
        e = e.strip(_WS)
        if not e:
            return "empty value"
        if e == b"*" and kind == _CONTACT:
            # Contact: STAR stands alone
            if len(elements) != 1:
                return "* with other values"
            continue
        if _plain_name_addr(e, kind == _ROUTE, rules):
            continue
        why = _name_addr(e, kind == _ROUTE, rules)
        if why:
            return why
    return ""


# Letters, digits, '-', '.' and '_': in every part of a name-addr (user, host, URI and header
# parameter names and values) what the grammar allows, and nothing that opens another reading
# (no quote, escape, bracket, '@', '?', ',' or white space).
_PLAIN = _ALNUM + b"-._"


def _plain_pairs(pieces, rules):
    """Each piece a name[=value] of _PLAIN bytes (a value not empty) that _param() accepts."""
    for p in pieces:
        name, eq, value = p.partition(b"=")
        if not name or name.lstrip(_PLAIN) or (eq and (not value or value.lstrip(_PLAIN))):
            return False
        if rules and _param(name, value if eq else None, rules):
            return False
    return True


def _plain_userhost(main):
    """[user@]host[:port] of a SIP URI in _PLAIN bytes, the host and port as the grammar has them."""
    user, at, hostport = main.rpartition(b"@")
    if at and (not user or user.lstrip(_PLAIN)):
        return False
    host, colon, port = hostport.partition(b":")
    return not host.lstrip(_HOSTNAME) and _host(host) and (not colon or _port(port))


def _plain_name_addr(e, brackets, rules):
    """True when e is [display-name] <sip:[user@]host[:port][;p[=v]]...>[;p[=v]]... (or, where
    brackets are not required, sip:[user@]host[:port][;p[=v]]...) in _PLAIN bytes and the display
    name's tokens: the usual From, To and Contact, judged in a few steps to exactly what
    _name_addr() says of it.  False is no verdict: _name_addr() then decides."""
    if e[:4] == b"sip:":
        if brackets:
            return False
        main, semi, params = e[4:].partition(b";")       # addr-spec: header parameters from the first ';'
        return _plain_userhost(main) and (not semi or _plain_pairs(params.split(b";"), rules))
    lt = e.find(b"<")
    if lt < 0 or e[lt:lt + 5] != b"<sip:" or (lt and e[:lt].lstrip(_TOKEN_LWS)):
        return False
    gt = e.find(b">", lt)
    if gt < 0:
        return False
    main, semi, params = e[lt + 5:gt].partition(b";")
    if not _plain_userhost(main) or (semi and not _plain_pairs(params.split(b";"), None)):
        return False
    tail = e[gt + 1:]
    if not tail:
        return True
    return tail[0] == 59 and _plain_pairs(tail[1:].split(b";"), rules)


def _name_addr(e, brackets, rules):
    """( name-addr / addr-spec ) *( SEMI param ): e is stripped and not empty."""
    if e[0] == 34:
        q = _qend(e, 0)
        if q < 0:
            return "unterminated quoted display name"
        lt = _skip_ws(e, q)
        if e[lt:lt + 1] != b"<":
            return "quoted display name not followed by <"
    else:
        lt = e.find(b"<")
        semi = e.find(b";")
        if lt >= 0 and (semi < 0 or lt < semi):
            # display-name = *(token LWS); RFC 4475 3.1.1.6: no LWS before '<' is fine
            if e[:lt].lstrip(_TOKEN_LWS):
                return "display name is neither tokens nor a quoted string"
        else:
            if brackets:
                return "URI not in <>"
            # addr-spec: its header parameters start at the first ';', and a URI
            # holding ',', ';' or '?' must be in <> (RFC 3261 20)
            uri = e if semi < 0 else e[:semi].rstrip(_WS)
            if uri.find(b"?") >= 0 or uri.find(b",") >= 0:
                return "URI with ? or , not in <>"
            why = _uri(uri)
            if why:
                return why
            return _params(e[semi:], rules) if semi >= 0 else ""
    gt = e.find(b">", lt + 1)
    if gt < 0:
        return "< without >"
    uri = e[lt + 1:gt]
    if uri and (uri[0] in _WS or uri[-1] in _WS):
        return "white space inside <>"           # LAQUOT / RAQUOT: SWS only outside
    why = _uri(uri)
    if why:
        return why
    rest = e[gt + 1:].lstrip(_WS)
    if not rest:
        return ""
    if rest[0] != 59:
        return "bad byte after >"
    return _params(rest, rules)


# ------------------------------------------------------------------ body

def _second_message(msg, body):
    """One message per datagram: a body that opens with a SIP start line is a second
    message (RFC 3261 18.3, 7.4.1), unless the first says it carries one (message/sip,
    message/sipfrag)."""
    nl = body.find(b"\n")
    first = (body if nl < 0 else body[:nl]).rstrip(b"\r")
    if first[:8].upper() == b"SIP/2.0 ":
        code = first[8:11]
        if not (len(code) == 3 and code.isdigit() and (len(first) == 11 or first[11] == 32)):
            return ""
    elif first[-8:].upper() == b" SIP/2.0":
        sp = first.find(b" ")
        if sp <= 0 or first[:sp].lstrip(_TOKEN):
            return ""
    else:
        return ""
    ct = msg.value(b"content-type")
    if ct is not None and ct[:11].lower() == b"message/sip":
        return ""
    return "a second message after the first"
