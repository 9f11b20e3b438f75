"""IP address text: parse, normalise, match networks.

MicroPython has no `ipaddress`, and SIP carries addresses as bytes, so the
core does its own small parsing.  Addresses are kept as text (str) in the
normalised form: dotted quad for IPv4, RFC 5952 compressed lower case for
IPv6, so two spellings of one address compare equal.  An IPv4-mapped IPv6
address (::ffff:a.b.c.d, RFC 4291 2.5.5.2) is the IPv4 node itself, as a
dual-stack phone writes its own address: it normalises to the dotted quad, so
"[::ffff:10.0.0.2]" and "::ffff:a00:2" name the sender 10.0.0.2 wherever the
core compares addresses (and the rewrite writes the WAN address as IPv4).
"""

_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"


def _v4_int(b):
    parts = b.split(b".")
    if len(parts) != 4:
        return None
    n = 0
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit():
            return None
        v = int(p)
        if v > 255:
            return None
        n = (n << 8) | v
    return n


def _v6_int(b):
    if b.count(b"::") > 1 or not b:
        return None
    tail_v4 = None
    if b"." in b:
        cut = b.rfind(b":")
        tail_v4 = _v4_int(b[cut + 1:])
        if tail_v4 is None:
            return None
        b = b[:cut + 1] + b"0:0"
    if b"::" in b:
        head, rest = b.split(b"::")
        head = head.split(b":") if head else []
        rest = rest.split(b":") if rest else []
        missing = 8 - len(head) - len(rest)
        if missing < 1:
            return None
        groups = head + [b"0"] * missing + rest
    else:
        groups = b.split(b":")
    if len(groups) != 8:
        return None
    n = 0
    for g in groups:
        if not g or len(g) > 4:
            return None
        for c in g:
            if c not in _HEX:
                return None
        n = (n << 16) | int(g, 16)
    if tail_v4 is not None:
        n = (n & ~0xFFFFFFFF) | tail_v4
    return n


def _v6_text(n):
    groups = [(n >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    # RFC 5952: compress the longest run (>= 2) of zero groups, the first on ties.
    best_at, best_len, at, run = -1, 0, -1, 0
    for i in range(8):
        if groups[i] == 0:
            if run == 0:
                at = i
            run += 1
            if run > best_len:
                best_at, best_len = at, run
        else:
            run = 0
    hexes = ["%x" % g for g in groups]
    if best_len < 2:
        return ":".join(hexes)
    return ":".join(hexes[:best_at]) + "::" + ":".join(hexes[best_at + best_len:])


def parse_ip(b):
    """Return (family, int) for IP text (bytes or str, IPv6 may be [bracketed]), or None."""
    if isinstance(b, str):
        b = b.encode()
    if b[:1] == b"[" and b[-1:] == b"]":
        b = b[1:-1]
    if b"." in b and b":" not in b:
        n = _v4_int(b)
        return None if n is None else (4, n)
    if b":" in b:
        n = _v6_int(b)
        return None if n is None else (6, n)
    return None


# Text and bytes spellings are kept apart: MicroPython hashes "1.2.3.4" and
# b"1.2.3.4" alike and warns on every comparison between them.  Worth it through
# the daemon: without it a message costs 57k more instructions (14% of the
# engine's), about 9 us of the daemon's 300 us CPU per queued packet (3%;
# bench/cache_value.py, callgrind, 2026-12-01).  The start-line and SDP-line
# caches were dropped: under 0.5% each through the daemon.
_cache = {}
_text_cache = {}


def norm_ip(b):
    """Normalised text of an IP literal (bytes or str), or None for hostnames and junk."""
    cache = _text_cache if type(b) is str else _cache
    try:
        return cache[b]
    except KeyError:
        pass
    p = parse_ip(b)
    if p is None:
        text = None
    elif p[0] == 4 or p[1] >> 32 == 0xFFFF:
        n = p[1]
        text = "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
    else:
        text = _v6_text(p[1])
    if len(cache) >= 512:      # a handful of addresses repeat; junk must not grow it
        cache.clear()
    cache[b] = text
    return text


def is_ipv6(text):
    return ":" in text


def hostport_text(ip, port):
    """ip:port as SIP writes it (IPv6 in brackets)."""
    if ":" in ip:
        return "[%s]:%d" % (ip, port)
    return "%s:%d" % (ip, port)


class Network:
    """A CIDR prefix such as 10.0.0.0/24 or fd00::/8."""

    __slots__ = ("family", "net", "mask", "text")

    def __init__(self, cidr):
        self.text = cidr
        if "/" in cidr:
            ip, plen = cidr.split("/", 1)
        else:
            ip, plen = cidr, None
        p = parse_ip(ip)
        if p is None:
            raise ValueError("not an IP network: %r" % (cidr,))
        bits = 32 if p[0] == 4 else 128
        try:
            plen = bits if plen is None else int(plen)
        except ValueError:
            raise ValueError("bad prefix length in %r" % (cidr,))
        if not 0 <= plen <= bits:
            raise ValueError("bad prefix length in %r" % (cidr,))
        self.family = p[0]
        self.mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
        self.net = p[1] & self.mask

    def __contains__(self, ip):
        return in_any(ip, (self,))

    def __repr__(self):
        return "<Network %s>" % self.text


def in_any(ip, nets):
    """Whether ip (text or bytes) is in any of the Networks nets, parsed once for all of them.
    An IPv4-mapped IPv6 address is in an IPv4 network as the IPv4 node it names."""
    p = parse_ip(ip)
    if p is None:
        return False
    family, n = p
    mapped = family == 6 and n >> 32 == 0xFFFF
    for net in nets:
        if net.family == family:
            if n & net.mask == net.net:
                return True
        elif mapped and net.family == 4 and n & 0xFFFFFFFF & net.mask == net.net:
            return True
    return False
