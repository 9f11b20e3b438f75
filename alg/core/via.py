"""Via: the sent-by of the top value, and its received / rport / maddr.

Outbound requests carry the phone's own Via on top; its sent-by names the
phone's private address, which the server would answer to.  Inbound
responses carry the same Via back, now with received= and rport= saying
where the server saw the request come from (the WAN mapping); putting the
phone's own values back keeps the NAT invisible to it (RFC 3581).
"""

from .headers import split_values, param_span
from .uri import sent_by_span, host_ip, port_of, hostport_edits, splice, format_host

DEFAULT_PORT = 5060


class TopVia:
    """The first Via value of a message, located in its header."""

    __slots__ = ("header", "start", "end", "sent_by")

    def __init__(self, header, start, end, sent_by):
        self.header = header
        self.start = start
        self.end = end
        self.sent_by = sent_by   # (hs, he, ps, pe) relative to header.raw

    def host(self):
        hs, he, ps, pe = self.sent_by
        return host_ip(self.header.raw, hs, he)

    def port(self):
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
        return self.param(b"branch")


def top_via(msg):
    h = msg.get(b"via")
    if h is None:
        return None
    spans = split_values(h.raw, h.vstart, h.vend)
    if not spans:
        return None
    s, e = spans[0]
    sb = sent_by_span(h.raw, s, e)
    if sb is None:
        return None
    return TopVia(h, s, e, sb)


def rewrite_sent_by(via, new_ip, new_port, maddr_from=None):
    """Point the top Via's sent-by (and a maddr= naming maddr_from) at new_ip:new_port."""
    raw = via.header.raw
    edits = hostport_edits(raw, via.sent_by, new_ip, new_port, DEFAULT_PORT)
    if maddr_from is not None:
        span = param_span(raw, via.sent_by[1], via.end, b"maddr")
        if span is not None and host_ip(raw, span[0], span[1]) == maddr_from:
            edits.append((span[0], span[1], format_host(new_ip)))
    _replace(via, splice(raw, edits))


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


def _replace(via, raw):
    h = via.header
    delta = len(raw) - len(h.raw)
    h.raw = raw
    h.vend += delta
    via.end += delta
    sb = sent_by_span(raw, via.start, via.end)
    if sb is not None:
        via.sent_by = sb
