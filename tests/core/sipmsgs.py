"""Messages shared by the core tests (plain bytes; MicroPython-friendly)."""

PHONE = ("10.0.0.2", 5060)
PHONE2 = ("10.0.0.3", 5060)
SERVER = ("203.0.113.10", 5060)
WAN_IP = "203.0.113.1"
WAN = (WAN_IP, 5060)


def crlf(text):
    """Test messages are written with \\n; the wire uses CRLF."""
    return text.replace("\n", "\r\n").encode()


def with_body(head, body):
    """head (no Content-Length) + correct Content-Length + body, CRLF."""
    b = crlf(body)
    return crlf(head) + b"Content-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b


def sdp(ip="10.0.0.2", port=6000, extra=""):
    return ("v=0\no=- 1 1 IN IP4 %s\ns=-\nc=IN IP4 %s\nt=0 0\n"
            "m=audio %d RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\n%s") % (ip, ip, port, extra)


def invite(ip="10.0.0.2", port=5060, rtp=6000, call_id="call1@10.0.0.2", branch="z9hG4bKinv1",
           cseq=1, extra_sdp="", to_tag=""):
    head = ("INVITE sip:bob@203.0.113.10 SIP/2.0\n"
            "Via: SIP/2.0/UDP %s:%d;branch=%s;rport\n"
            "Max-Forwards: 70\n"
            "From: \"Alice, A\" <sip:alice@%s>;tag=a1\n"
            "To: <sip:bob@203.0.113.10>%s\n"
            "Call-ID: %s\n"
            "CSeq: %d INVITE\n"
            "Contact: <sip:alice@%s:%d>\n"
            "Content-Type: application/sdp\n") % (
        ip, port, branch, ip, (";tag=" + to_tag) if to_tag else "", call_id, cseq, ip, port)
    return with_body(head, sdp(ip, rtp, extra_sdp))


def response(code, reason, via, call_id, cseq, method, to_tag="b1", body=None, contact=None,
             extra=""):
    head = ("SIP/2.0 %d %s\n"
            "Via: %s\n"
            "From: \"Alice, A\" <sip:alice@10.0.0.2>;tag=a1\n"
            "To: <sip:bob@203.0.113.10>;tag=%s\n"
            "Call-ID: %s\n"
            "CSeq: %d %s\n%s") % (code, reason, via, to_tag, call_id, cseq, method, extra)
    if contact:
        head += "Contact: %s\n" % contact
    if body is None:
        return crlf(head) + b"Content-Length: 0\r\n\r\n"
    head += "Content-Type: application/sdp\n"
    return with_body(head, body)


def register(ip="10.0.0.2", port=5060, expires=3600, call_id="reg1@10.0.0.2", cseq=1,
             branch="z9hG4bKreg1", contact=None):
    if contact is None:
        contact = "<sip:alice@%s:%d>" % (ip, port)
    head = ("REGISTER sip:203.0.113.10 SIP/2.0\n"
            "Via: SIP/2.0/UDP %s:%d;branch=%s;rport\n"
            "Max-Forwards: 70\n"
            "From: <sip:alice@203.0.113.10>;tag=r1\n"
            "To: <sip:alice@203.0.113.10>\n"
            "Call-ID: %s\n"
            "CSeq: %d REGISTER\n"
            "Contact: %s\n"
            "Expires: %d\n") % (ip, port, branch, call_id, cseq, contact, expires)
    return crlf(head) + b"Content-Length: 0\r\n\r\n"


def register_ok(wan, call_id, cseq=1, branch="z9hG4bKreg1", contact=None):
    """The registrar's 200 to a REGISTER that went out on our WAN mapping wan (ip, port)."""
    via = "SIP/2.0/UDP %s:%d;branch=%s;rport=%d;received=%s" % (wan[0], wan[1], branch, wan[1], wan[0])
    return response(200, "OK", via, call_id, cseq, "REGISTER", contact=contact)


def header_line(data, name):
    """The first line starting with name (e.g. b'Via:'), without the line end."""
    for line in data.split(b"\r\n"):
        if line.startswith(name):
            return line
    return None


def kinds(actions):
    """Each action as "<action> <binding kind>" ("open sip", "move rtp"), or "send"."""
    return [a.kind if a.binding is None else "%s %s" % (a.kind, a.binding.kind) for a in actions]
