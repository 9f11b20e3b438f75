"""Keep-alives that share the SIP port (RFC 5626 section 3.5.1, and older habits).

They are not SIP messages: they must be recognised before parsing, kept
away from the parser's malformed counter, and answered where configured.
"""

PING = "ping"      # CRLFCRLF: asks for a pong
PONG = "pong"      # a single CRLF: the answer
NUL = "nul"        # four NUL bytes some phones send to keep the NAT open
STUN = "stun"      # an RFC 5389 message on the SIP flow (RFC 5626 STUN keep-alive)

PONG_BYTES = b"\r\n"


def classify(data):
    """Name the keep-alive in a datagram, or None if it isn't one."""
    if data == b"\r\n\r\n":
        return PING
    if data == b"\r\n":
        return PONG
    n = len(data)
    if 0 < n <= 4 and data == b"\x00" * n:
        return NUL
    # STUN: first two bits zero, magic cookie 0x2112A442 at offset 4, 20-byte header.
    if n >= 20 and data[0] < 2 and data[4:8] == b"\x21\x12\xa4\x42":
        return STUN
    return None


def options_answer(msg, call_id):
    """A 200 OK to an out-of-dialog OPTIONS, from the request's own Via, From,
    Call-ID, CSeq and To (with a To tag of our own, stable per Call-ID)."""
    lines = [b"SIP/2.0 200 OK\r\n"]
    for h in msg.headers:
        if h.key in (b"via", b"from", b"call-id", b"cseq"):
            lines.append(h.raw)
        elif h.key == b"to":
            raw = h.raw
            tag = b";tag=sipalg" + str(_hash(call_id or b"")).encode()
            lines.append(raw[:h.vend] + tag + raw[h.vend:])
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(lines)


def _hash(b):
    h = 5381
    for c in b:
        h = ((h * 33) ^ c) & 0xFFFFFFFF
    return h
