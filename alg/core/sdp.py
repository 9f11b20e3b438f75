"""SDP (RFC 4566): the addresses and ports a device asks media to be sent to.

Only c=, o=, m= and a=rtcp: (RFC 3605) are read or rewritten; every other
line, ICE candidates above all, keeps its bytes.  Each line keeps its own
line end (CRLF or bare LF).

Parsing finds those lines with bytes.find rather than walking every line,
and notes where each rewritable address or port sits, so a rewrite is a
splice of the parsed body with no second pass.
"""

from .addr import norm_ip

DIRECTIONS = (b"sendrecv", b"sendonly", b"recvonly", b"inactive")

# What a noted span holds (see SessionDescription.spans).
_ADDR = 0       # an address: replaced when it is the old address
_PORT = 1       # a port (never 0 in m=): replaced when port_map has it
_LINE = 2       # a line with odd spacing: _rewrite_line decides


class MediaDescription:
    __slots__ = ("media", "port", "nports", "proto", "conn", "rtcp_port", "rtcp_addr",
                 "_direction", "_dirs", "_index")

    def __init__(self):
        self.media = b""
        self.port = 0
        self.nports = 1
        self.proto = b""
        self.conn = None
        self.rtcp_port = None
        self.rtcp_addr = None
        self._direction = None
        self._dirs = None       # _Directions of the body, until read
        self._index = 0         # position among the body's m= lines

    @property
    def direction(self):
        if self._dirs is not None:
            self._direction = self._dirs.read()[1][self._index]
            self._dirs = None
        return self._direction

    @direction.setter
    def direction(self, value):
        self._dirs = None
        self._direction = value


class _Directions:
    """The a=sendrecv/sendonly/recvonly/inactive lines of a body, read when first
    asked for (nothing in the engine needs them).  Descriptions point here,
    never at each other, so a parse leaves no reference cycle behind."""

    __slots__ = ("body", "m_at", "found")

    def __init__(self, body):
        self.body = body
        self.m_at = []          # offsets of the m= lines
        self.found = None       # (session direction, [direction of each m=])

    def read(self):
        if self.found is not None:
            return self.found
        body = self.body
        lines = []
        for d in DIRECTIONS:
            tag = b"\na=" + d
            i = body.find(tag)
            while i >= 0:
                end = i + len(tag)
                rest = body[end:end + 2]
                if rest == b"" or rest == b"\r" or rest[:1] == b"\n" or rest == b"\r\n":
                    lines.append((i, d))
                i = body.find(tag, i + 3)
        lines.sort()
        m_at = self.m_at
        session = b"sendrecv"
        media = [None] * len(m_at)
        k = -1
        for pos, d in lines:
            while k + 1 < len(m_at) and m_at[k + 1] < pos:
                k += 1
            if k < 0:
                session = d
            else:
                media[k] = d
        for k in range(len(media)):
            if media[k] is None:
                media[k] = session
        self.found = (session, media)
        self.body = None
        return self.found


class SessionDescription:
    __slots__ = ("origin_addr", "conn", "media", "_direction", "spans", "_dirs")

    def __init__(self):
        self.origin_addr = None
        self.conn = None
        self.media = []
        self._direction = b"sendrecv"
        # (line offset, [(start, end, kind, value)]): each rewritable address
        # or port, in body order, relative to its line; kind _LINE marks a
        # whole line to rewrite the slow way
        self.spans = []
        self._dirs = None       # _Directions of the body, until read

    @property
    def direction(self):
        if self._dirs is not None:
            self._direction = self._dirs.read()[0]
            self._dirs = None
        return self._direction

    @direction.setter
    def direction(self, value):
        self._dirs = None
        self._direction = value

    def rewrite(self, body, old_addr, new_addr, port_map):
        """rewrite_sdp() for the body this was parsed from, splicing the noted spans."""
        out = []
        pos = 0
        for line_at, spans in self.spans:
            for s, e, kind, value in spans:
                if kind == _ADDR:
                    if value != old_addr and not _same_addr(value, old_addr):
                        continue
                    new = new_addr
                    if _mapped(value, new_addr) and body[line_at + s - 4:line_at + s] == b"IP6 ":
                        s -= 4                  # the addrtype follows the address
                        new = b"IP4 " + new_addr
                elif kind == _PORT:
                    new = port_map.get(value)
                    if new is None:
                        continue
                    new = str(new).encode()
                else:
                    text = body[line_at + s:line_at + e]
                    new = _rewrite_line(text, old_addr, new_addr, port_map)
                    if new == text:
                        continue
                out.append(body[pos:line_at + s])
                out.append(new)
                pos = line_at + e
        if not out:
            return body
        out.append(body[pos:])
        return b"".join(out)


def _int(b):
    return int(b) if b.isdigit() else None


# Line starts the parser looks for; the first line is always v=, so every
# other line begins right after a LF.
_MARKS = ((b"\nm=", 0), (b"\nc=", 1), (b"\no=", 2), (b"\na=rtcp:", 3))


def _offset(parts, k):
    """Offset of parts[k] in b" ".join(parts)."""
    n = 0
    for j in range(k):
        n += len(parts[j]) + 1
    return n


def _read_line(kind, line):
    """(kind, values, spans) for one c=/o=/m=/a=rtcp: line (see parse_sdp)."""
    # Tokens are split at any white space here, but the rewrite splits at SP
    # and HT only: where a line is not single-spaced, it goes the slow way.
    rest = line[7:] if kind == 3 else line[2:]
    parts = rest.split()
    plain = b" ".join(parts) == rest
    spans = [] if plain else [(0, len(line), _LINE, None)]
    end = len(line)
    if kind == 0:
        if len(parts) < 3:
            return (kind, "bad m= line: %r" % line, spans)
        port = parts[1].split(b"/")
        if not port[0].isdigit():
            return (kind, "bad m= port: %r" % line, spans)
        p = int(port[0])
        nports = int(port[1]) if len(port) > 1 and port[1].isdigit() else 1
        if plain and p:
            a = 3 + len(parts[0])
            spans.append((a, a + len(port[0]), _PORT, p))
        return (kind, (parts[0], p, nports, parts[2]), spans)
    if kind == 1:
        addr = parts[2].split(b"/")[0] if len(parts) >= 3 else None
        if plain and addr is not None:
            a = end - len(parts[2]) if len(parts) == 3 else 2 + _offset(parts, 2)
            spans.append((a, a + len(addr), _ADDR, addr))
        return (kind, addr, spans)
    if kind == 2:
        addr = parts[5] if len(parts) >= 6 else None
        if plain and addr is not None:
            a = end - len(addr) if len(parts) == 6 else 2 + _offset(parts, 5)
            spans.append((a, a + len(addr), _ADDR, addr))
        return (kind, addr, spans)
    port = _int(parts[0]) if parts else None
    addr = parts[2] if len(parts) >= 3 else None
    if plain and parts:
        if port is not None:
            spans.append((7, 7 + len(parts[0]), _PORT, port))
        if len(parts) >= 4:
            a = 7 + _offset(parts, 3)
            spans.append((a, a + len(parts[3]), _ADDR, parts[3]))
    return (kind, (port, addr), spans)


def parse_sdp(body):
    """The SDP's addresses and ports, and where the rewritable ones sit."""
    if body[:2] != b"v=":
        raise ValueError("not SDP: body does not start with v=")
    marks = []
    for tag, kind in _MARKS:
        i = body.find(tag)
        while i >= 0:
            marks.append((i + 1, kind))
            i = body.find(tag, i + 3)
    marks.sort()
    s = SessionDescription()
    dirs = s._dirs = _Directions(body)
    m_at = dirs.m_at
    spans = s.spans
    media = s.media
    m = None
    for pos, kind in marks:
        end = body.find(b"\n", pos)
        if end < 0:
            end = len(body)
        if end > pos and body[end - 1] == 13:
            end -= 1
        line = body[pos:end]
        known = _read_line(kind, line)
        values = known[1]
        if kind == 0:
            if isinstance(values, str):
                raise ValueError(values)
            m = MediaDescription()
            m.media, m.port, m.nports, m.proto = values
            m.conn = s.conn
            m._dirs = dirs
            m._index = len(m_at)
            m_at.append(pos)
            media.append(m)
        elif kind == 1:
            if m is None:
                s.conn = values
            else:
                m.conn = values
        elif kind == 2:
            if values is not None:
                s.origin_addr = values
        elif m is not None and values[0] is not None:
            m.rtcp_port = values[0]
            if values[1] is not None:
                m.rtcp_addr = values[1]
        if known[2]:
            spans.append((pos, known[2]))
    return s


def _same_addr(a, b):
    """One address in two spellings: IPv6 case and zeros, or an IPv4-mapped IPv6
    spelling of an IPv4 address (addr.norm_ip)."""
    return a == b or (b":" in a and (a.lower() == b.lower() or norm_ip(a) == norm_ip(b)))


def _mapped(old, new):
    """An IPv4-mapped IPv6 spelling replaced by an IPv4 address: "IN IP6" becomes "IN IP4"."""
    return b":" in old and b":" not in new


def _token_at(line, index):
    """(start, end) of the whitespace-separated token number index in line."""
    i = 0
    n = len(line)
    t = 0
    while i < n:
        while i < n and line[i] in b" \t":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and line[j] not in b" \t":
            j += 1
        if t == index:
            return i, j
        t += 1
        i = j
    return None


def _rewrite_line(line, old_addr, new_addr, port_map):
    k = line[:2]
    if k == b"c=":
        span = _token_at(line, 2)
        if span is None:
            return line
        tok = line[span[0]:span[1]]
        slash = tok.find(b"/")
        addr = tok if slash < 0 else tok[:slash]
        if _same_addr(addr, old_addr):
            return _addrtype(line[:span[0]] + new_addr + line[span[0] + len(addr):], 1, addr, new_addr)
        return line
    if k == b"o=":
        span = _token_at(line, 5)
        if span is not None and _same_addr(line[span[0]:span[1]], old_addr):
            return _addrtype(line[:span[0]] + new_addr + line[span[1]:], 4, line[span[0]:span[1]], new_addr)
        return line
    if k == b"m=":
        span = _token_at(line, 1)
        if span is None:
            return line
        tok = line[span[0]:span[1]]
        slash = tok.find(b"/")
        port = _int(tok if slash < 0 else tok[:slash])
        if port and port in port_map:
            end = span[1] if slash < 0 else span[0] + slash
            return line[:span[0]] + str(port_map[port]).encode() + line[end:]
        return line
    if line[:7] == b"a=rtcp:":
        rest = line[7:]
        span = _token_at(rest, 0)
        if span is None:
            return line
        out = rest
        port = _int(rest[span[0]:span[1]])
        aspan = _token_at(rest, 3)
        if aspan is not None and _same_addr(rest[aspan[0]:aspan[1]], old_addr):
            out = _addrtype(out[:aspan[0]] + new_addr + out[aspan[1]:], 2, rest[aspan[0]:aspan[1]], new_addr)
        if port is not None and port in port_map:
            out = out[:span[0]] + str(port_map[port]).encode() + out[span[1]:]
        return line[:7] + out
    return line


def _addrtype(line, index, old, new):
    """line with its addrtype token (number index) set to IP4 where _mapped(old, new)."""
    if _mapped(old, new):
        span = _token_at(line, index)
        if span is not None and line[span[0]:span[1]] == b"IP6":
            return line[:span[0]] + b"IP4" + line[span[1]:]
    return line


def rewrite_sdp(body, old_addr, new_addr, port_map):
    """body with old_addr -> new_addr in c=/o=/a=rtcp and m=/a=rtcp ports mapped.

    Hold (c= 0.0.0.0) and port 0 never match; a=candidate lines are never
    looked at.  Returns body itself when nothing changed.  ValueError when
    body is not SDP (see parse_sdp); a parsed body rewrites with
    SessionDescription.rewrite without being read twice.
    """
    return parse_sdp(body).rewrite(body, old_addr, new_addr, port_map)
