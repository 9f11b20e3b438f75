"""SDP (RFC 4566): the addresses and ports a device asks media to be sent to.

Only c=, o=, m= and a=rtcp: (RFC 3605) are read or rewritten; every other
line, ICE candidates above all, keeps its bytes.  Each line keeps its own
line end (CRLF or bare LF).
"""

DIRECTIONS = (b"sendrecv", b"sendonly", b"recvonly", b"inactive")


class MediaDescription:
    __slots__ = ("media", "port", "nports", "proto", "conn", "rtcp_port", "rtcp_addr", "direction")

    def __init__(self):
        self.media = b""
        self.port = 0
        self.nports = 1
        self.proto = b""
        self.conn = None
        self.rtcp_port = None
        self.rtcp_addr = None
        self.direction = None


class SessionDescription:
    __slots__ = ("origin_addr", "conn", "media", "direction")

    def __init__(self):
        self.origin_addr = None
        self.conn = None
        self.media = []
        self.direction = b"sendrecv"


def _conn_addr(line):
    """Address of 'c=IN IP4 addr[/ttl]' or None."""
    parts = line[2:].split()
    if len(parts) < 3:
        return None
    return parts[2].split(b"/")[0]


def _int(b):
    return int(b) if b.isdigit() else None


def parse_sdp(body):
    if body[:2] != b"v=":
        raise ValueError("not SDP: body does not start with v=")
    s = SessionDescription()
    m = None
    for line in body.split(b"\n"):
        if line[-1:] == b"\r":
            line = line[:-1]
        k = line[:2]
        if k == b"m=":
            m = MediaDescription()
            parts = line[2:].split()
            if len(parts) < 3:
                raise ValueError("bad m= line: %r" % line)
            m.media = parts[0]
            port = parts[1].split(b"/")
            if _int(port[0]) is None:
                raise ValueError("bad m= port: %r" % line)
            m.port = int(port[0])
            if len(port) > 1 and _int(port[1]) is not None:
                m.nports = int(port[1])
            m.proto = parts[2]
            m.conn = s.conn
            s.media.append(m)
        elif k == b"c=":
            addr = _conn_addr(line)
            if m is None:
                s.conn = addr
            else:
                m.conn = addr
        elif k == b"o=":
            parts = line[2:].split()
            if len(parts) >= 6:
                s.origin_addr = parts[5]
        elif k == b"a=":
            attr = line[2:]
            if attr[:5] == b"rtcp:" and m is not None:
                parts = attr[5:].split()
                if parts and _int(parts[0]) is not None:
                    m.rtcp_port = int(parts[0])
                    if len(parts) >= 3:
                        m.rtcp_addr = parts[2]
            elif attr in DIRECTIONS:
                if m is None:
                    s.direction = attr
                else:
                    m.direction = attr
    for md in s.media:
        if md.direction is None:
            md.direction = s.direction
    return s


def _same_addr(a, b):
    return a == b or (b":" in a and a.lower() == b.lower())


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
            return line[:span[0]] + new_addr + line[span[0] + len(addr):]
        return line
    if k == b"o=":
        span = _token_at(line, 5)
        if span is not None and _same_addr(line[span[0]:span[1]], old_addr):
            return line[:span[0]] + new_addr + line[span[1]:]
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
            out = out[:aspan[0]] + new_addr + out[aspan[1]:]
        if port is not None and port in port_map:
            out = out[:span[0]] + str(port_map[port]).encode() + out[span[1]:]
        return line[:7] + out
    return line


def rewrite_sdp(body, old_addr, new_addr, port_map):
    """body with old_addr -> new_addr in c=/o=/a=rtcp and m=/a=rtcp ports mapped.

    Hold (c= 0.0.0.0) and port 0 never match; a=candidate lines are never
    looked at.  Returns body itself when nothing changed.
    """
    lines = body.split(b"\n")
    changed = False
    for i in range(len(lines)):
        line = lines[i]
        k = line[:2]
        if k == b"c=" or k == b"o=" or k == b"m=" or line[:7] == b"a=rtcp:":
            cr = line[-1:] == b"\r"
            text = line[:-1] if cr else line
            new = _rewrite_line(text, old_addr, new_addr, port_map)
            if new != text:
                lines[i] = new + b"\r" if cr else new
                changed = True
    if not changed:
        return body
    return b"\n".join(lines)
