"""Where the host and port sit inside Via sent-by values and SIP URIs.

Everything here returns byte offsets, so that rewriting can splice a new
host:port in and leave every other byte (user part, parameters, odd
spacing) exactly as it was.
"""

from .addr import norm_ip
from .headers import WS, find_outside

_HOST_END = b":;?>, \t\r\n"


# Bytes a host token may hold, and port digits: lstrip() runs over them in C.
_HOST_CHARS = bytes([c for c in range(256) if c not in _HOST_END])
_DIGITS = b"0123456789"


def _host_port_at(buf, i, end):
    """(hs, he, ps, pe) of host[:port] starting at i; ps == pe == -1 when no port."""
    if i < end and buf[i] == 91:                   # '[' IPv6 reference
        close = buf.find(b"]", i, end)
        if close < 0:
            return None
        hs, he = i, close + 1
        rest = buf[he:end]
    else:
        hs = i
        rest = buf[i:end].lstrip(_HOST_CHARS)
        he = end - len(rest)
    if he == hs:
        return None
    ps = pe = -1
    if rest[:1] == b":":
        ps = he + 1
        pe = end - len(rest[1:].lstrip(_DIGITS))
        if pe == ps:
            return None
    return hs, he, ps, pe


def sent_by_span(buf, start, end):
    """Locate sent-by in one Via element 'SIP/2.0/UDP host:port;params'.

    Returns (hs, he, ps, pe) or None when the element is not a Via we can read.
    """
    i = start
    for _ in range(2):                             # protocol-name / version / transport
        slash = buf.find(b"/", i, end)
        if slash < 0:
            return None
        i = slash + 1
    while i < end and buf[i] in WS:
        i += 1
    while i < end and buf[i] not in WS:            # transport token
        i += 1
    while i < end and buf[i] in WS:
        i += 1
    hp = _host_port_at(buf, i, end)
    if hp is not None and hp[2] >= 0:
        return hp
    # sent-by = host [ COLON port ] and COLON = SWS ":" SWS: "10.0.0.2 : 5060" has its port too
    he = hp[1] if hp is not None else end - len(buf[i:end].lstrip(_HOST_CHARS))
    if he == i:
        return None
    j = he
    while j < end and buf[j] in WS:
        j += 1
    if j < end and buf[j] == 58:
        j += 1
        while j < end and buf[j] in WS:
            j += 1
        k = end - len(buf[j:end].lstrip(_DIGITS))
        if k == j:
            return None
        return i, he, j, k
    return hp


def uri_span(buf, start, end):
    """Span of the URI inside a name-addr (<...>) or a bare addr-spec element."""
    lt = find_outside(buf, start, end, 60, angles=False)     # '<' outside a quoted display name
    if lt >= 0:
        close = buf.find(b">", lt + 1, end)
        if close < 0:
            return None
        return lt + 1, close
    # addr-spec without brackets: header parameters start at the first ';'
    semi = buf.find(b";", start, end)
    return start, (semi if semi >= 0 else end)


def uri_hostport(buf, start, end):
    """(hs, he, ps, pe) of the host part of a sip:/sips: URI in buf[start:end], or None."""
    while start < end and buf[start] in WS:
        start += 1
    colon = buf.find(b":", start, end)
    if colon < 0:
        return None
    scheme = buf[start:colon].lower()
    if scheme != b"sip" and scheme != b"sips":
        return None
    i = colon + 1
    # The user part may hold ';' '?' '/' ... but never an unescaped '@'.
    limit = buf.find(b">", i, end)
    if limit < 0:
        limit = end
    at = buf.rfind(b"@", i, limit)
    if at >= 0:
        i = at + 1
    return _host_port_at(buf, i, limit)


def host_ip(buf, hs, he):
    """Normalised IP text of a host token, or None for a hostname."""
    return norm_ip(buf[hs:he])


def port_of(buf, ps, pe):
    return int(buf[ps:pe]) if ps >= 0 else None


def format_host(ip):
    """Host token for an IP text: IPv6 goes into brackets."""
    if ":" in ip:
        return b"[" + ip.encode() + b"]"
    return ip.encode()


def splice(buf, edits):
    """Apply (start, end, replacement) edits, which must not overlap."""
    if not edits:
        return buf
    if len(edits) == 1:
        s, e, rep = edits[0]
        return buf[:s] + rep + buf[e:]
    edits.sort(key=_first)
    out = []
    pos = 0
    for s, e, rep in edits:
        out.append(buf[pos:s])
        out.append(rep)
        pos = e
    out.append(buf[pos:])
    return b"".join(out)


def _first(edit):
    return edit[0]


def hostport_edits(buf, span, new_ip, new_port, default_port):
    """Edits turning the host[:port] at span into new_ip[:new_port].

    The port is written only if it was written before or differs from the
    default, so a phone that left it out sees it left out.
    """
    hs, he, ps, pe = span
    edits = [(hs, he, format_host(new_ip))]
    if ps >= 0:
        if int(buf[ps:pe]) != new_port:
            edits.append((ps, pe, str(new_port).encode()))
    elif new_port != default_port:
        edits.append((he, he, b":" + str(new_port).encode()))
    return edits
