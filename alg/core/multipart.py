"""Multipart bodies (RFC 2046): find the SDP part so only it is rewritten."""

from .headers import param_span


def _media_type(content_type):
    semi = content_type.find(b";")
    t = content_type if semi < 0 else content_type[:semi]
    return t.strip().lower()


def boundary_of(content_type):
    span = param_span(content_type, 0, len(content_type), b"boundary")
    if span is None or span[1] <= span[0]:
        return None
    b = content_type[span[0]:span[1]]
    if b[:1] == b'"' and b[-1:] == b'"':
        b = b[1:-1]
    return b or None


def find_sdp_part(content_type, body):
    """(start, end) of the application/sdp body within body, or None."""
    mt = _media_type(content_type)
    if mt == b"application/sdp":
        return 0, len(body)
    if mt[:10] != b"multipart/":
        return None
    boundary = boundary_of(content_type)
    if boundary is None:
        return None
    delim = b"--" + boundary
    pos = 0
    # the first delimiter may open the body or follow a preamble line
    first = body.find(delim)
    if first < 0:
        return None
    pos = first
    while True:
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            return None
        if body[pos + len(delim):pos + len(delim) + 2] == b"--":
            return None                          # close delimiter
        part_start = line_end + 1
        nxt = body.find(b"\n" + delim, part_start)
        if nxt < 0:
            return None
        part_end = nxt
        if part_end > part_start and body[part_end - 1] == 13:
            part_end -= 1                        # CRLF before the delimiter belongs to it
        found = _sdp_in_part(body, part_start, part_end)
        if found is not None:
            return found
        pos = nxt + 1


def _sdp_in_part(body, start, end):
    """The SDP span inside one body part (its own headers, an empty line, content)."""
    ctype = b"text/plain"
    pos = start
    while pos < end:
        nl = body.find(b"\n", pos, end)
        if nl < 0:
            return None
        line = body[pos:nl]
        if line[-1:] == b"\r":
            line = line[:-1]
        pos = nl + 1
        if not line:
            break
        colon = line.find(b":")
        if colon > 0 and line[:colon].strip().lower() in (b"content-type", b"c"):
            ctype = line[colon + 1:].strip()
    else:
        return None
    mt = _media_type(ctype)
    if mt == b"application/sdp":
        return pos, end
    if mt[:10] == b"multipart/":
        inner = find_sdp_part(ctype, body[pos:end])
        if inner is not None:
            return pos + inner[0], pos + inner[1]
    return None
