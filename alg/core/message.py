"""SIP message model that never loses a byte.

A message is its start line, its header fields (each with its exact raw
bytes, folded continuation lines and line ends included), the empty line,
and the body.  Rewriting replaces one header's value or the body;
everything else is emitted as it came in.

Parsing only splits the header block into lines and notes each line's
canonical name: a Header object is built when a header is asked for, so
the dozen headers nobody looks at cost no more than a slice each.
"""

from .headers import COMPACT


class MalformedMessage(ValueError):
    pass


class Header:
    """One header field: `raw` is exactly what was on the wire."""

    __slots__ = ("key", "raw", "vstart", "vend")

    def __init__(self, raw, colon, key=None):
        # raw always ends in LF here (the parser and builders make sure of it)
        self.raw = raw
        if key is None:
            key = raw[:colon].rstrip(b" \t").lower()
            if len(key) == 1:
                key = COMPACT.get(key, key)
        self.key = key
        self.vstart = colon + 1
        self.vend = len(raw) - (2 if raw[-2] == 13 else 1)

    @property
    def name(self):
        """The name as written ("Via : x" is legal: white space may sit before the colon)."""
        return self.raw[:self.vstart - 1].rstrip(b" \t")

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
    """A parsed message.  names[i] is header i's canonical lower-case name
    (read-only: it indexes the headers); _raws[i] its bytes without the final
    LF; _objs holds the Header objects made so far (index -> Header), which
    own their bytes from then on."""

    __slots__ = ("start_line", "blank", "body", "is_request", "method", "uri", "version",
                 "status", "uri_span", "_raws", "names", "_objs", "_cseq")

    @property
    def headers(self):
        """Every header field as a Header, in order."""
        return [self.header_at(i) for i in range(len(self.names))]

    def header_at(self, i):
        h = self._objs.get(i)
        if h is None:
            raw = self._raws[i] + b"\n"
            h = Header(raw, raw.find(b":"), self.names[i])
            self._objs[i] = h
        return h

    def raw_at(self, i):
        """Header i's current bytes (without the final LF)."""
        h = self._objs.get(i)
        return self._raws[i] if h is None else h.raw[:-1]

    def raw_lines(self):
        """Every header's current bytes (without the final LF), in order; the parser's
        own list while nothing was rewritten (read it, don't change it)."""
        if not self._objs:
            return self._raws
        return [self.raw_at(i) for i in range(len(self.names))]

    def to_bytes(self):
        raws = self._raws
        if not raws:
            return self.start_line + self.blank + self.body
        objs = self._objs
        if objs:
            raws = raws[:]
            for i in objs:
                raws[i] = objs[i].raw[:-1]
        return b"".join((self.start_line, b"\n".join(raws), b"\n", self.blank, self.body))

    def _index(self, key):
        """Where the first header named key is, or -1."""
        names = self.names
        return names.index(key) if key in names else -1

    def get(self, key):
        """The first header named key (canonical lower-case name), or None."""
        i = self._index(key)
        return None if i < 0 else self.header_at(i)

    def value(self, key):
        """The first header named key's value, stripped of white space; None if absent.

        Reads the line without making a Header of it."""
        i = self._index(key)
        if i < 0:
            return None
        h = self._objs.get(i)
        if h is not None:
            return h.value.strip()
        raw = self._raws[i]
        return raw[raw.find(b":") + 1:].strip()

    def get_all(self, key):
        keys = self.names
        n = keys.count(key)
        if n < 2:
            return [self.header_at(keys.index(key))] if n else []
        return [self.header_at(i) for i in range(len(keys)) if keys[i] == key]

    def field(self, key):
        """(raw, vstart, vend) of the first header named key, or None: its bytes
        (line end included) and where its value sits, without making a Header."""
        i = self._index(key)
        if i < 0:
            return None
        h = self._objs.get(i)
        if h is not None:
            return h.raw, h.vstart, h.vend
        raw = self._raws[i]
        return raw, raw.find(b":") + 1, len(raw) - (1 if raw[-1:] == b"\r" else 0)

    def set_uri(self, uri):
        """Replace the Request-URI, keeping the rest of the request line."""
        s, e = self.uri_span
        self.start_line = self.start_line[:s] + uri + self.start_line[e:]
        self.uri_span = (s, s + len(uri))
        self.uri = uri

    def cseq(self):
        """(number, method) from CSeq, or (None, None)."""
        c = self._cseq
        if c is None:
            c = (None, None)
            v = self.value(b"cseq")
            if v is not None:
                parts = v.split()
                if len(parts) == 2 and parts[0].isdigit():
                    c = (int(parts[0]), parts[1].upper())
            self._cseq = c
        return c

    def call_id(self):
        return self.value(b"call-id")

    def length_problem(self):
        """Why Content-Length disagrees with the datagram, or '' when it doesn't.

        Such a message is passed as it came: rewriting it would have to guess
        where it ends."""
        n = self.names.count(b"content-length")
        if n == 0:
            return ""
        if n == 1:
            v = self.value(b"content-length")
            if not v.isdigit():
                return "Content-Length %r is not a number" % v
            if int(v) != len(self.body):
                return "Content-Length %d but %d body bytes" % (int(v), len(self.body))
            return ""
        seen = None
        for h in self.get_all(b"content-length"):
            v = h.value.strip()
            if not v.isdigit():
                return "Content-Length %r is not a number" % v
            if seen is not None and int(v) != seen:
                return "two different Content-Length values"
            seen = int(v)
        if seen != len(self.body):
            return "Content-Length %d but %d body bytes" % (seen, len(self.body))
        return ""

    def set_content_length(self):
        """Write the body's length into every Content-Length, where the old digits were."""
        n = str(len(self.body)).encode()
        names = self.names
        if names.count(b"content-length") == 1:
            h = self.header_at(names.index(b"content-length"))
            v = h.value
            if v[:1] == b" " and v[1:].isdigit():     # the usual "Content-Length: 123"
                h.set_value(b" " + n)
                return
        for h in self.get_all(b"content-length"):
            v = h.value
            i = 0
            while i < len(v) and v[i] in b" \t\r\n":     # folding included
                i += 1
            j = i
            k = len(v)
            while j < k and 48 <= v[j] <= 57:
                j += 1
            h.set_value(v[:i] + n + v[j:])


def _parse_start_line(msg, line):
    text = line.rstrip(b"\r\n")
    c = text[:1]
    if text[:8] == b"SIP/2.0 " or ((c == b"S" or c == b"s") and text[:8].upper() == b"SIP/2.0 "):
        msg.is_request = False
        rest = text[8:]
        code = rest[:3]
        if len(code) != 3 or not code.isdigit() or (len(rest) > 3 and rest[3] != 32):
            raise MalformedMessage("bad status line")
        msg.status = int(code)
        msg.version = text[:7]
        msg.method = None
        msg.uri = None
        msg.uri_span = None
        return
    sp1 = text.find(b" ")
    sp2 = text.rfind(b" ")
    if sp1 <= 0 or sp2 <= sp1 + 1:
        raise MalformedMessage("bad request line")
    version = text[sp2 + 1:]
    if version != b"SIP/2.0" and version.upper() != b"SIP/2.0":
        raise MalformedMessage("not SIP/2.0")
    uri = text[sp1 + 1:sp2]
    if uri.find(b" ") >= 0 or uri.find(b":") < 0:
        raise MalformedMessage("bad Request-URI")
    msg.is_request = True
    msg.method = text[:sp1]
    msg.uri = uri
    msg.version = version
    msg.status = None
    msg.uri_span = (sp1 + 1, sp2)


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
    start_line = data[:nl + 1]
    msg.start_line = start_line
    _parse_start_line(msg, start_line)
    # The header block ends at the first empty line (CRLF or bare LF); searching
    # from the start line's LF finds an empty block too.
    pos = nl + 1
    a = data.find(b"\n\r\n", nl)
    raws = None
    if a >= pos:
        # CRLF ends the block unless a bare LF line comes first: that shows
        # as an empty line inside it, which min() below finds
        end = a + 1
        block = data[pos:a]
        raws = block.split(b"\n")
        first = min(raws)
        if not first:
            raws = None
    if raws is None:
        b = data.find(b"\n\n", nl, a + 1 if a >= 0 else len(data))
        if b >= 0:
            end = b + 1
        elif a >= 0:
            end = a + 1
        else:
            raise MalformedMessage("no empty line after headers")
        if end > pos:
            block = data[pos:end - 1]          # without the last header's LF
            raws = block.split(b"\n")
            first = min(raws)
    if end > pos:
        # a continuation line starts with SP or HT: the smallest line shows it
        if first[0] <= 32:
            raws, keys = _folded(raws)
        else:
            keys = []
            compact = COMPACT
            # one lower() for the whole block: the names are sliced from its lines
            for low in block.lower().split(b"\n"):
                colon = low.find(b":")
                if colon <= 1:
                    if colon <= 0:
                        raise MalformedMessage("header line without a name")
                    key = low[:1]
                    key = compact.get(key, key)
                else:
                    key = low[:colon]
                    if key[-1] <= 32:
                        key = key.rstrip(b" \t")
                        if len(key) == 1:
                            key = compact.get(key, key)
                keys.append(key)
    else:
        raws = []
        keys = []
    msg._raws = raws
    msg.names = keys
    msg._objs = {}
    msg._cseq = None
    blank_end = data.find(b"\n", end) + 1
    msg.blank = data[end:blank_end]
    msg.body = data[blank_end:]
    return msg


def _folded(lines):
    """(raws, keys) for header lines with folded continuation lines."""
    raws = []
    keys = []
    for line in lines:
        first = line[:1]
        if first == b" " or first == b"\t":
            if not raws:
                raise MalformedMessage("continuation line before any header")
            raws[-1] = raws[-1] + b"\n" + line
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise MalformedMessage("header line without a name")
        key = line[:colon].rstrip(b" \t").lower()
        if len(key) == 1:
            key = COMPACT.get(key, key)
        raws.append(line)
        keys.append(key)
    return raws, keys
