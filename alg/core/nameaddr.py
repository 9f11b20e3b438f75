"""URIs in name-addr headers: Contact, Route, Record-Route, Path, From, To.

One function walks each value of such a header, finds the sip:/sips: URI's
host:port and asks a mapper whether it names an address to translate.
Display names, user parts, URI and header parameters are left as they are.
"""

from .headers import split_values, param_span, LIST_HEADERS
from .uri import uri_span, uri_hostport, host_ip, port_of, hostport_edits, splice, format_host

# A device writes the same Contact, Route... into message after message, so
# what a header value holds is kept by value (separately for list headers,
# which split at commas): [(host_port_span, ip, port, written_port, default_port)]
# for each URI whose host is an IP address, spans relative to the value.
# Worth it through the daemon: without it a message costs 25k more instructions
# (6% of the engine's), about 4 us of the daemon's 300 us CPU per queued packet
# (1.4%; bench/cache_value.py, callgrind, 2026-12-01).
_LISTED = {}
_SINGLE = {}
_CACHE_MAX = 128


def default_port(buf, start):
    """5061 for sips:, 5060 otherwise (RFC 3261 19.1.2)."""
    c = buf[start:start + 1]
    while c == b" " or c == b"\t":
        start += 1
        c = buf[start:start + 1]
    if c != b"s" and c != b"S":
        return 5060
    return 5061 if buf[start:start + 5].lower() == b"sips:" else 5060


def elements(header):
    """Spans of the values of a header (a list header splits on commas)."""
    if header.key in LIST_HEADERS:
        return split_values(header.raw, header.vstart, header.vend)
    return [(header.vstart, header.vend)]


def map_uri_span(buf, start, end, mapper):
    """Edits for the URI in buf[start:end] when mapper maps its (ip, port); else []."""
    hp = uri_hostport(buf, start, end)
    if hp is None:
        return []
    ip = host_ip(buf, hp[0], hp[1])
    if ip is None:
        return []
    dport = default_port(buf, start)
    port = port_of(buf, hp[2], hp[3])
    new = mapper(ip, dport if port is None else port)
    if new is None:
        return []
    return hostport_edits(buf, hp, new[0], new[1], dport)


def _uri_hosts(header):
    """The IP-host URIs of header's value (see _LISTED), from the cache when seen before."""
    vs = header.vstart
    value = header.raw[vs:header.vend]
    cache = _LISTED if header.key in LIST_HEADERS else _SINGLE
    found = cache.get(value)
    if found is not None:
        return found
    found = []
    spans = split_values(value) if cache is _LISTED else [(0, len(value))]
    for s, e in spans:
        if e - s == 1 and value[s] == 42:          # Contact: * (remove all bindings)
            continue
        us = uri_span(value, s, e)
        if us is None:
            continue
        hp = uri_hostport(value, us[0], us[1])
        if hp is None:
            continue
        ip = host_ip(value, hp[0], hp[1])
        if ip is None:
            continue
        dport = default_port(value, us[0])
        port = port_of(value, hp[2], hp[3])
        found.append((hp, ip, dport if port is None else port, port, dport))
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[value] = found
    return found


def map_header_uris(header, mapper):
    """Rewrite every URI in header whose host:port mapper translates; returns how many."""
    hosts = _uri_hosts(header)
    if not hosts:
        return 0
    vs = header.vstart
    edits = []
    count = 0
    for hp, ip, port, written, dport in hosts:
        new = mapper(ip, port)
        if new is None:
            continue
        count += 1
        hs, he, ps, pe = hp
        edits.append((vs + hs, vs + he, format_host(new[0])))
        # the port is written only if it was before or differs from the default
        if ps >= 0:
            if written != new[1]:
                edits.append((vs + ps, vs + pe, str(new[1]).encode()))
        elif new[1] != dport:
            edits.append((vs + he, vs + he, b":" + str(new[1]).encode()))
    if edits:
        raw = header.raw
        new = splice(raw, edits)
        header.vend += len(new) - len(raw)
        header.raw = new
    return count


def contacts(header):
    """(ip, port, expires) for each Contact value; ip None for hostnames, expires None if absent."""
    raw = header.raw
    out = []
    for s, e in elements(header):
        if raw[s:e] == b"*":
            out.append(("*", None, _expires(raw, s, e)))
            continue
        us = uri_span(raw, s, e)
        if us is None:
            continue
        hp = uri_hostport(raw, us[0], us[1])
        if hp is None:
            continue
        port = port_of(raw, hp[2], hp[3])
        if port is None:
            port = default_port(raw, us[0])
        out.append((host_ip(raw, hp[0], hp[1]), port, _expires(raw, s, e)))
    return out


def _expires(raw, s, e):
    # The header parameter sits after the closing '>' (param_span skips <...>).
    span = param_span(raw, s, e, b"expires")
    if span is None:
        return None
    v = raw[span[0]:span[1]]
    return int(v) if v.isdigit() else None
