"""Via: the sent-by of the top value, and its received / rport / maddr.

Outbound requests carry the phone's own Via on top; its sent-by names the
phone's private address, which the server would answer to.  Inbound
responses carry the same Via back, now with received= and rport= saying
where the server saw the request come from (the WAN mapping); putting the
phone's own values back keeps the NAT invisible to it (RFC 3581).
"""

from .headers import first_value_span, param_span, token_end
from .uri import sent_by_span, host_ip, port_of, splice, format_host

DEFAULT_PORT = 5060

# A device starts every Via the same way ("SIP/2.0/UDP 10.0.0.2:5060;"), so
# what lies before the first ';' is kept: (sent-by span relative to it, host
# IP or None, port or None), or False where that part alone does not show it.
# Worth it through the daemon: without it a message costs 20k more instructions
# (5% of the engine's 400k), about 3 us of the daemon's 300 us CPU per queued
# packet (1%; bench/cache_value.py, callgrind, 2026-12-01).
_SENT_BY = {}

# A branch value that starts with one of these is left to param_span.
_NOT_AT_VALUE = (b'"', b" ", b"\t", b"\r", b"\n")
_CACHE_MAX = 128


class TopVia:
    """The first Via value of a message, located in its header."""

    __slots__ = ("header", "start", "end", "sent_by", "_hostport")

    def __init__(self, header, start, end, sent_by, hostport=None):
        self.header = header
        self.start = start
        self.end = end
        self.sent_by = sent_by   # (hs, he, ps, pe) relative to header.raw
        self._hostport = hostport   # (host(), port()) while sent_by is unchanged

    def host(self):
        if self._hostport is not None:
            return self._hostport[0]
        hs, he, ps, pe = self.sent_by
        return host_ip(self.header.raw, hs, he)

    def port(self):
        if self._hostport is not None:
            return self._hostport[1]
        hs, he, ps, pe = self.sent_by
        return port_of(self.header.raw, ps, pe)

    def sent_by_bytes(self):
        hs, he, ps, pe = self.sent_by
        return self.header.raw[hs:(pe if ps >= 0 else he)]

    def param(self, name):
        span = param_span(self.header.raw, self.sent_by[1], self.end, name)
        if span is None:
            return None
        return self.header.raw[span[0]:span[1]]

    def branch(self):
        raw = self.header.raw
        hs, he, ps, pe = self.sent_by
        at = pe if ps >= 0 else he
        # usually the first parameter, right after the sent-by
        if raw[at:at + 8].lower() == b";branch=" and raw[at + 8:at + 9] not in _NOT_AT_VALUE:
            return raw[at + 8:token_end(raw, at + 8, self.end)]
        return self.param(b"branch")


def top_via(msg):
    h = msg.get(b"via")
    if h is None:
        return None
    raw = h.raw
    span = first_value_span(raw, h.vstart, h.vend)
    if span is None:
        return None
    s, e = span
    semi = raw.find(b";", s, e)
    head = raw[s:semi if semi >= 0 else e]
    known = _SENT_BY.get(head)
    if known is None:
        # found in the part before ';' means found the same in the whole value
        sb = sent_by_span(head, 0, len(head))
        known = False if sb is None else (sb, host_ip(head, sb[0], sb[1]), port_of(head, sb[2], sb[3]))
        if len(_SENT_BY) >= _CACHE_MAX:
            _SENT_BY.clear()
        _SENT_BY[head] = known
    if known is False:
        sb = sent_by_span(raw, s, e)
        if sb is None:
            return None
        return TopVia(h, s, e, sb)
    hs, he, ps, pe = known[0]
    if ps >= 0:
        sb = (s + hs, s + he, s + ps, s + pe)
    else:
        sb = (s + hs, s + he, -1, -1)
    return TopVia(h, s, e, sb, (known[1], known[2]))


def rewrite_sent_by(via, new_ip, new_port, maddr_from=None):
    """Point the top Via's sent-by (and a maddr= naming maddr_from) at new_ip:new_port."""
    raw = via.header.raw
    hs, he, ps, pe = via.sent_by
    host = format_host(new_ip)
    # the port is written only if it was before or differs from the default
    colon = b":"
    if ps >= 0:
        port = raw[ps:pe] if int(raw[ps:pe]) == new_port else str(new_port).encode()
        colon = raw[he:ps]            # ":" as a rule, " : " where the phone spaced it (SWS)
        sent_by = host + colon + port
        rest = pe
    elif new_port != DEFAULT_PORT:
        sent_by = host + colon + str(new_port).encode()
        rest = he
    else:
        sent_by = host
        rest = he
    tail = raw[rest:]
    if maddr_from is not None:
        span = param_span(raw, he, via.end, b"maddr")
        if span is not None and host_ip(raw, span[0], span[1]) == maddr_from:
            tail = raw[rest:span[0]] + host + raw[span[1]:]
    he = hs + len(host)
    if len(sent_by) > len(host):
        sb = (hs, he, he + len(colon), hs + len(sent_by))
    else:
        sb = (hs, he, -1, -1)
    _replace(via, raw[:hs] + sent_by + tail, sb)


def replace_sent_by(via, sent_by):
    """Put back exactly the sent-by bytes the phone wrote."""
    hs, he, ps, pe = via.sent_by
    raw = via.header.raw
    _replace(via, raw[:hs] + sent_by + raw[(pe if ps >= 0 else he):])


def restore_received_rport(via, wan_ip, wan_port, lan_ip, lan_port):
    """received=WAN -> LAN address, rport=WAN port -> LAN port (only when they name the WAN)."""
    raw = via.header.raw
    edits = []
    span = param_span(raw, via.sent_by[1], via.end, b"received")
    if span is not None and span[1] > span[0] and host_ip(raw, span[0], span[1]) == wan_ip:
        # received= holds a bare address, IPv6 included (RFC 3261 25.1 via-received).
        edits.append((span[0], span[1], lan_ip.encode()))
    span = param_span(raw, via.sent_by[1], via.end, b"rport")
    if span is not None and span[1] > span[0] and raw[span[0]:span[1]] == str(wan_port).encode():
        edits.append((span[0], span[1], str(lan_port).encode()))
    if edits:
        _replace(via, splice(raw, edits))
    return len(edits)


def _replace(via, raw, sent_by=None):
    """Install a header's new bytes; sent_by is where the sent-by now sits, if known."""
    h = via.header
    delta = len(raw) - len(h.raw)
    h.raw = raw
    h.vend += delta
    via.end += delta
    via._hostport = None
    if sent_by is None:
        sent_by = sent_by_span(raw, via.start, via.end)
    if sent_by is not None:
        via.sent_by = sent_by
