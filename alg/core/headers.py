"""Header names and the comma-separated values some headers carry.

RFC 3261 7.3.3 compact forms expand to their full names so that the rest of
the core asks for b"via" and gets `v:` lines too.
"""

COMPACT = {
    b"a": b"accept-contact", b"b": b"referred-by", b"c": b"content-type",
    b"d": b"request-disposition", b"e": b"content-encoding", b"f": b"from",
    b"i": b"call-id", b"j": b"reject-contact", b"k": b"supported",
    b"l": b"content-length", b"m": b"contact", b"n": b"identity-info",
    b"o": b"event", b"r": b"refer-to", b"s": b"subject", b"t": b"to",
    b"u": b"allow-events", b"v": b"via", b"x": b"session-expires", b"y": b"identity",
}

# Headers whose value may be a comma-separated list (RFC 3261 7.3.1).
# The others (From, To, Call-ID, CSeq, ...) are taken whole.
LIST_HEADERS = (b"via", b"contact", b"route", b"record-route", b"path")

WS = b" \t\r\n"


def header_key(name):
    """Canonical lower-case full name for a header name as written."""
    key = name.lower()
    if len(key) == 1:
        return COMPACT.get(key, key)
    return key


def strip_span(buf, start, end):
    """Shrink [start, end) past linear white space (folding included)."""
    while start < end and buf[start] in WS:
        start += 1
    while end > start and buf[end - 1] in WS:
        end -= 1
    return start, end


def find_outside(buf, start, end, target, angles=True):
    """Index of the byte `target` in buf[start:end] outside "quoted strings"
    (backslash escapes included) and, with angles, outside <...>; else -1.
    """
    if buf.find(b'"', start, end) < 0:
        # no quotes: bytes.find, then step over a <...> the hit sits in
        t = _BYTE[target]
        i = start
        while True:
            c = buf.find(t, i, end)
            if c < 0 or not angles:
                return c
            lt = buf.rfind(b"<", i, c)
            if lt < 0 or buf.find(b">", lt, c) >= 0:
                return c
            gt = buf.find(b">", c, end)
            if gt < 0:
                return -1
            i = gt + 1
    quoted = False
    angle = False
    i = start
    while i < end:
        c = buf[i]
        if quoted:
            if c == 92:          # backslash: skip the escaped octet
                i += 1
            elif c == 34:
                quoted = False
        elif c == 34:
            quoted = True
        elif c == target and not angle:
            return i
        elif angles and c == 60:
            angle = True
        elif c == 62:
            angle = False
        i += 1
    return -1


_BYTE = {44: b",", 59: b";", 60: b"<", 62: b">", 61: b"="}


def split_values(buf, start=0, end=None):
    """Spans of the comma-separated elements of a header value.

    Commas inside "quoted strings" (with backslash escapes) and <angle
    brackets> don't split: display names and URIs may hold both.
    """
    if end is None:
        end = len(buf)
    if buf.find(b",", start, end) < 0:
        s, e = strip_span(buf, start, end)
        return [(s, e)] if e > s else []
    fast = buf.find(b'"', start, end) < 0 and buf.find(b"<", start, end) < 0
    spans = []
    pos = start
    while True:
        # nothing can hide a comma without quotes or brackets: plain find
        c = buf.find(b",", pos, end) if fast else find_outside(buf, pos, end, 44)
        s, e = strip_span(buf, pos, end if c < 0 else c)
        if e > s:
            spans.append((s, e))
        if c < 0:
            return spans
        pos = c + 1


def first_value_span(buf, start, end):
    """split_values(buf, start, end)[0], without looking past the first element; or None."""
    if buf.find(b",", start, end) < 0:
        s, e = strip_span(buf, start, end)
        return (s, e) if e > s else None
    fast = buf.find(b'"', start, end) < 0 and buf.find(b"<", start, end) < 0
    pos = start
    while True:
        c = buf.find(b",", pos, end) if fast else find_outside(buf, pos, end, 44)
        s, e = strip_span(buf, pos, end if c < 0 else c)
        if e > s:
            return s, e
        if c < 0:
            return None
        pos = c + 1


def param_span(buf, start, end, name):
    """Span of the value of ;name=value (or (pos, pos) for a bare ;name) in buf[start:end].

    Parameters are looked for outside quotes and angle brackets only, so a
    URI parameter inside <...> is not taken for a header parameter.
    Returns None when the parameter is absent.
    """
    lname = name.lower()
    n = len(lname)
    # the name's bytes must be there (in any case) for the parameter to be
    low = buf[start:end].lower()
    p = low.find(lname)
    if p < 0:
        return None
    fast = low.find(b'"') < 0 and low.find(b"<") < 0
    if fast and p > 0 and low[p - 1] == 59:
        # the first occurrence right after a ';': no earlier parameter can have the name
        i = start + p - 1
    elif fast:
        i = buf.find(b";", start, end)
    else:
        i = start
    while True:
        if not fast:
            i = find_outside(buf, i, end, 59)
        if i < 0:
            return None
        j = i + 1
        while j < end and buf[j] in WS:
            j += 1
        k = j + n
        # the name matches when its bytes do and a delimiter (or the end) follows
        if k <= end and (k == end or buf[k] in _NAME_END) and buf[j:k].lower() == lname:
            m = k
            while m < end and buf[m] in WS:
                m += 1
            if m < end and buf[m] == 61:   # '='
                m += 1
                while m < end and buf[m] in WS:
                    m += 1
                v = m
                if v < end and buf[v] == 34:
                    v += 1
                    while v < end and buf[v] != 34:
                        v += 1
                    return (m, min(v + 1, end))
                return (m, token_end(buf, v, end))
            return (k, k)
        if fast:
            i = buf.find(b";", j, end)
        else:
            # quotes or brackets about: resume exactly where the name ends
            while j < end and buf[j] not in _NAME_END:
                j += 1
            i = j


_NAME_END = b"=; \t\r\n,"


def token_end(buf, v, end):
    """End of the parameter value starting at v: the first of ; SP HT CR LF , (or end)."""
    e = buf.find(b";", v, end)
    if e < 0:
        e = end
    if e > v:
        seg = buf[v:e]
        # one piece as long as seg: no white space of any kind in it
        parts = seg.split()
        if len(parts) != 1 or len(parts[0]) != e - v or seg.find(b",") >= 0:
            while v < e and buf[v] not in b" \t\r\n,":
                v += 1
            return v
    return e
