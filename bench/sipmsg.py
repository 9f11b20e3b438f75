"""The SIP the lab benchmarks send by hand: phone-side requests, and a UAS/registrar's answers.

Real SIP, as a phone behind the NAT writes it: its private address in Via, Contact and SDP,
so every router mode (the kernel helper, sipalg) has its usual work to do.  Call-IDs carry
no address, so a datagram can be recognised on both sides of the router by Call-ID and CSeq.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

COMPACT = {b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id", b"m": b"contact", b"l": b"content-length"}


def _b(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def sdp(ip: str, port: int, session: int = 1) -> bytes:
    return (b"v=0\r\no=- %d %d IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 8\r\n"
            b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" % (session, session, _b(ip), _b(ip), port))


def request(method: str, ruri: str, local: Tuple[str, int], branch: str, call_id: str, cseq: int,
            user: str = "phone", to_uri: Optional[str] = None, from_tag: str = "1", to_tag: Optional[str] = None,
            expires: Optional[int] = None, body: bytes = b"") -> bytes:
    """A request from a phone at local (ip, port): Via with rport, From/Contact naming local."""
    ip, port = _b(local[0]), local[1]
    m = _b(method)
    lines = [b"%s %s SIP/2.0" % (m, _b(ruri)),
             b"Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (ip, port, _b(branch)),
             b"Max-Forwards: 70",
             b"From: <sip:%s@%s>;tag=%s" % (_b(user), ip, _b(from_tag)),
             b"To: <%s>%s" % (_b(to_uri or ruri), (b";tag=" + _b(to_tag)) if to_tag else b""),
             b"Call-ID: %s" % _b(call_id),
             b"CSeq: %d %s" % (cseq, m),
             b"Contact: <sip:%s@%s:%d>" % (_b(user), ip, port)]
    if expires is not None:
        lines.append(b"Expires: %d" % expires)
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def round_message(step: str, r: int, ip: str, server: Tuple[str, int],
                  to_tag: Optional[str] = None) -> Tuple[int, bytes]:
    """The latency run's round r, one step of it (options, register, refresh, unregister, invite,
    ack, bye) from the phone at ip: (its source port, the datagram).  Round r's phone lives on
    port 10000 + 2r (OPTIONS from 5060); ack and bye go in the dialog whose To tag is to_tag."""
    port = 10000 + 2 * (r % 10000)
    user = "u%d" % r
    uas = "sip:uas@%s:%d" % server
    if step == "options":
        return 5060, request("OPTIONS", uas, (ip, 5060), "o%d" % r, "opt-%d" % r, 1)
    if step in ("register", "refresh", "unregister"):
        n = {"register": 1, "refresh": 2, "unregister": 3}[step]
        return port, request("REGISTER", "sip:%s" % server[0], (ip, port), "r%d.%d" % (r, n), "reg-%d" % r, n,
                             user=user, to_uri="sip:%s@%s" % (user, server[0]), from_tag="f%d" % r,
                             expires=0 if step == "unregister" else 3600)
    if step == "invite":
        return port, request("INVITE", uas, (ip, port), "i%d" % r, "call-%d" % r, 1, user=user, from_tag="f%d" % r,
                             body=sdp(ip, 40000 + 2 * (r % 10000)))
    if step in ("ack", "bye"):
        return port, request(step.upper(), uas, (ip, port), "%s%d" % (step, r), "call-%d" % r,
                             1 if step == "ack" else 2, user=user, to_uri=uas, from_tag="f%d" % r, to_tag=to_tag)
    raise ValueError("no such step %r" % step)


def parse(data: bytes) -> Tuple[bytes, Dict[bytes, bytes], bytes]:
    """(start line, {lower-case header name: first value}, body); compact names spelled out."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers: Dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        headers.setdefault(COMPACT.get(name, name), value.strip())
    return lines[0], headers, body


def key(data: bytes) -> Optional[Tuple[bytes, bytes, bytes]]:
    """(Call-ID, CSeq, method or status code): the same datagram on either side of the router."""
    try:
        start, h, _ = parse(data)
    except ValueError:
        return None
    what = start.split(b" ", 2)
    if len(what) < 2:
        return None
    return h.get(b"call-id", b""), h.get(b"cseq", b""), what[1] if what[0] == b"SIP/2.0" else what[0]


def answer(data: bytes, local: Tuple[str, int], expires: int = 3600, media_port: int = 40000) -> Optional[bytes]:
    """A UAS/registrar's 200 OK to a request (None for an ACK or a response): every Via, From,
    To with a tag, Call-ID and CSeq copied; REGISTER gets its Contact back with the granted
    Expires, INVITE a Contact and an SDP answer with media at local's address."""
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method = lines[0].split(b" ", 1)[0]
    if method in (b"ACK", b"SIP/2.0") or not method:
        return None
    ip, port = _b(local[0]), local[1]
    out = [b"SIP/2.0 200 OK"]
    contact = None
    asked = None
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        name = COMPACT.get(name, name)
        if name in (b"via", b"from", b"call-id", b"cseq"):
            out.append(line)
        elif name == b"to":
            out.append(line if b";tag=" in line else line + b";tag=uas1")
        elif name == b"contact":
            contact = line.split(b":", 1)[1].strip()
        elif name == b"expires":
            asked = int(line.split(b":", 1)[1])
    body = b""
    if method == b"REGISTER" and contact is not None:
        granted = min(expires, asked) if asked is not None else expires
        out.append(b"Contact: %s;expires=%d" % (contact.split(b";", 1)[0], granted))
        out.append(b"Expires: %d" % granted)
    elif method == b"INVITE":
        out.append(b"Contact: <sip:uas@%s:%d>" % (ip, port))
        body = sdp(local[0], media_port, 2)
        out.append(b"Content-Type: application/sdp")
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body
