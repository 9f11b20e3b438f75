"""SIP message model that never loses a byte.

A message is its start line, a list of header fields (each with its exact
raw bytes, folded continuation lines and line ends included), the empty
line, and the body.  Rewriting replaces one header's value or the body;
everything else is emitted as it came in.
"""

from .headers import COMPACT


class MalformedMessage(ValueError):
    pass


class Header:
    """One header field: `raw` is exactly what was on the wire."""

    __slots__ = ("name", "key", "raw", "vstart", "vend")

    def __init__(self, raw, colon):
        # raw always ends in LF here (the parser and builders make sure of it)
        self.raw = raw
        # "Via : x" is legal: white space may sit before the colon.
        name = raw[:colon].rstrip(b" \t")
        self.name = name
        key = name.lower()
        if len(key) == 1:
            key = COMPACT.get(key, key)
        self.key = key
        self.vstart = colon + 1
        self.vend = len(raw) - (2 if raw[-2:] == b"\r\n" else 1)

    @property
    def value(self):
        """The raw value after the colon, folding and all, without the line end."""
        return self.raw[self.vstart:self.vend]

    def set_value(self, value):
        self.raw = self.raw[:self.vstart] + value + self.raw[self.vend:]
        self.vend = self.vstart + len(value)

    def __repr__(self):
        return "<Header %r>" % (self.raw,)


class Message:
    __slots__ = ("start_line", "headers", "blank", "body", "is_request",
                 "method", "uri", "version", "status", "_uri_span", "_first")

    def to_bytes(self):
        parts = [self.start_line]
        for h in self.headers:
            parts.append(h.raw)
        parts.append(self.blank)
        parts.append(self.body)
        return b"".join(parts)

    def get(self, key):
        return self._first.get(key)

    def get_all(self, key):
        return [h for h in self.headers if h.key == key]

    def set_uri(self, uri):
        """Replace the Request-URI, keeping the rest of the request line."""
        s, e = self._uri_span
        self.start_line = self.start_line[:s] + uri + self.start_line[e:]
        self._uri_span = (s, s + len(uri))
        self.uri = uri

    def cseq(self):
        """(number, method) from CSeq, or (None, None)."""
        h = self.get(b"cseq")
        if h is None:
            return None, None
        parts = h.value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return None, None
        return int(parts[0]), parts[1].upper()

    def call_id(self):
        h = self.get(b"call-id")
        return None if h is None else h.value.strip()


def _parse_start_line(msg, line):
    text = line.rstrip(b"\r\n")
    if text[:8] == b"SIP/2.0 " or text[:8].upper() == b"SIP/2.0 ":
        msg.is_request = False
        rest = text[8:]
        code = rest[:3]
        if len(code) != 3 or not code.isdigit() or (len(rest) > 3 and rest[3:4] != b" "):
            raise MalformedMessage("bad status line")
        msg.status = int(code)
        msg.version = text[:7]
        msg.method = None
        msg.uri = None
        msg._uri_span = None
        return
    sp1 = text.find(b" ")
    sp2 = text.rfind(b" ")
    if sp1 <= 0 or sp2 <= sp1 + 1:
        raise MalformedMessage("bad request line")
    version = text[sp2 + 1:]
    if version.upper() != b"SIP/2.0":
        raise MalformedMessage("not SIP/2.0")
    uri = text[sp1 + 1:sp2]
    if b" " in uri or b":" not in uri:
        raise MalformedMessage("bad Request-URI")
    msg.is_request = True
    msg.method = text[:sp1]
    msg.uri = uri
    msg.version = version
    msg.status = None
    msg._uri_span = (sp1 + 1, sp2)


def parse_message(data):
    """Split a datagram into start line, header fields, empty line and body.

    Raises MalformedMessage for anything that isn't a SIP message; the caller
    then forwards the datagram untouched.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    nl = data.find(b"\n")
    if nl < 0:
        raise MalformedMessage("no line end")
    msg = Message()
    msg.start_line = data[:nl + 1]
    _parse_start_line(msg, msg.start_line)
    # The header block ends at the first empty line (CRLF or bare LF).
    pos = nl + 1
    if data[pos:pos + 2] == b"\r\n" or data[pos:pos + 1] == b"\n":
        end = pos
    else:
        a = data.find(b"\n\r\n", pos)
        b = data.find(b"\n\n", pos)
        if a < 0 and b < 0:
            raise MalformedMessage("no empty line after headers")
        end = (a if b < 0 or (0 <= a < b) else b) + 1
    headers = []
    lines = data[pos:end].split(b"\n")
    lines.pop()                                 # after the last line end
    cur = None
    for line in lines:
        first = line[:1]
        if first == b" " or first == b"\t":  # folded continuation of the header above
            if cur is None:
                raise MalformedMessage("continuation line before any header")
            cur.append(line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise MalformedMessage("header line without a name")
        if cur is not None:
            headers.append(_header(cur))
        cur = [line, colon]
    if cur is not None:
        headers.append(_header(cur))
    msg.headers = headers
    first = {}
    for h in reversed(headers):
        first[h.key] = h
    msg._first = first
    blank_end = data.find(b"\n", end) + 1
    msg.blank = data[end:blank_end]
    msg.body = data[blank_end:]
    return msg


def _header(parts):
    """A Header from its line(s): [first line, colon offset, continuation lines...]."""
    if len(parts) == 2:
        return Header(parts[0] + b"\n", parts[1])
    return Header(b"\n".join([parts[0]] + parts[2:]) + b"\n", parts[1])
