"""A dual-stack phone writing itself IPv4-mapped (::ffff:10.0.0.2) is still the sender."""
from alg.core.addr import in_any, norm_ip, parse_ip, Network
from alg.core.engine import Engine, OUT, IN
from alg.core.config import Config
from alg.core.message import parse_message
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, crlf, with_body, header_line


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999)))


def test_mapped_spellings_normalise_to_ipv4():
    for text in (b"::ffff:10.0.0.2", b"[::ffff:10.0.0.2]", b"::ffff:a00:2", b"::FFFF:0A00:0002",
                 b"0:0:0:0:0:ffff:10.0.0.2", b"0000:0000:0000:0000:0000:ffff:0a00:0002", "::ffff:10.0.0.2"):
        assert norm_ip(text) == "10.0.0.2", text
    # other IPv6 addresses stay IPv6 (IPv4-compatible ::a.b.c.d is no IPv4 node)
    assert norm_ip(b"::10.0.0.2") == "::a00:2"
    assert norm_ip(b"::ffff:0:a00:2") == "::ffff:0:a00:2"
    assert norm_ip(b"64:ff9b::10.0.0.2") == "64:ff9b::a00:2"
    assert parse_ip(b"::ffff:10.0.0.2") == (6, 0xFFFF0A000002)


def test_mapped_address_is_in_the_ipv4_network():
    lan = Network("10.0.0.0/24")
    assert "::ffff:10.0.0.2" in lan and b"[::ffff:a00:2]" in lan
    assert "::ffff:10.0.1.2" not in lan and "fd00::2" not in lan
    assert "10.0.0.2" not in Network("fd00::/8")


def mapped_invite(via_host="[::ffff:10.0.0.2]", contact_host="[::ffff:10.0.0.2]",
                  c_addr="IP6 ::ffff:a00:2", o_addr="IP6 ::ffff:10.0.0.2"):
    head = ("INVITE sip:bob@203.0.113.10 SIP/2.0\n"
            "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bKm1;rport\n"
            "Max-Forwards: 70\n"
            "From: <sip:alice@[::ffff:10.0.0.2]>;tag=a1\n"
            "To: <sip:bob@203.0.113.10>\n"
            "Call-ID: m1@10.0.0.2\n"
            "CSeq: 1 INVITE\n"
            "Contact: <sip:alice@%s:5060>\n"
            "Content-Type: application/sdp\n") % (via_host, contact_host)
    body = ("v=0\no=- 1 1 IN %s\ns=-\nc=IN %s\nt=0 0\nm=audio 6000 RTP/AVP 0\n"
            "a=rtcp:6001 IN IP6 ::FFFF:10.0.0.2\n") % (o_addr, c_addr)
    return with_body(head, body)


def test_mapped_sender_is_rewritten_to_the_wan_ipv4_address():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, mapped_invite(), 1.0)
    assert r.status == "rewritten", r.reason
    out = r.payload
    assert header_line(out, b"Via:") == b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKm1;rport"
    assert header_line(out, b"From:") == b"From: <sip:alice@203.0.113.1>;tag=a1"
    assert header_line(out, b"Contact:") == b"Contact: <sip:alice@203.0.113.1:5060>"
    # SDP: the WAN address written as the rewrite writes it, IPv4, and the addrtype with it
    assert b"o=- 1 1 IN IP4 203.0.113.1\r\n" in out
    assert b"c=IN IP4 203.0.113.1\r\n" in out
    assert b"a=rtcp:6001 IN IP4 203.0.113.1\r\n" in out
    assert b"ffff" not in out.lower()
    m = parse_message(out)
    assert int(m.value(b"content-length")) == len(m.body)
    # the binding is the IPv4 sender's
    assert e.lookup_lan(PHONE) is not None


def test_mapped_hex_spelling_in_via_and_sdp():
    e = engine()
    data = mapped_invite(via_host="[::ffff:a00:2]", c_addr="IP6 0:0:0:0:0:FFFF:0A00:0002")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert r.status == "rewritten", r.reason
    assert header_line(r.payload, b"Via:") == b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKm1;rport"
    assert b"c=IN IP4 203.0.113.1\r\n" in r.payload


def test_response_restores_the_mapped_sent_by():
    """The phone gets back exactly the sent-by it wrote, mapped spelling and all."""
    e = engine()
    e.handle(OUT, PHONE, SERVER, mapped_invite(), 1.0)
    ok = crlf("SIP/2.0 180 Ringing\n"
              "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKm1;rport=5060;received=203.0.113.1\n"
              "From: <sip:alice@203.0.113.1>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
              "Call-ID: m1@10.0.0.2\nCSeq: 1 INVITE\n") + b"Content-Length: 0\r\n\r\n"
    r = e.handle(IN, SERVER, WAN, ok, 1.5)
    assert r.status == "rewritten", r.reason
    assert header_line(r.payload, b"Via:") == \
        b"Via: SIP/2.0/UDP [::ffff:10.0.0.2]:5060;branch=z9hG4bKm1;rport=5060;received=10.0.0.2"


def test_other_hosts_mapped_stay():
    e = engine()
    data = mapped_invite(contact_host="[::ffff:10.0.0.3]")
    r = e.handle(OUT, PHONE, SERVER, data, 1.0)
    assert header_line(r.payload, b"Contact:") == b"Contact: <sip:alice@[::ffff:10.0.0.3]:5060>"


def _one_by_one(ip, nets):
    """Membership as each network decided it before in_any(): parse, map, compare, per network."""
    for net in nets:
        p = parse_ip(ip)
        if p is None:
            continue
        family, n = p
        if family == 6 and net.family == 4 and n >> 32 == 0xFFFF:
            family, n = 4, n & 0xFFFFFFFF
        if family == net.family and (n & net.mask) == net.net:
            return True
    return False


def test_one_parse_for_many_networks_decides_as_each_network_would():
    nets = [Network(n) for n in ("10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0", "::ffff:0:0/96", "fc00::/7",
                                 "2001:db8::/32", "203.0.113.7", "::1/128")]
    ips = ["10.1.2.3", "192.168.1.9", "192.168.2.9", "203.0.113.7", "203.0.113.8", "::ffff:10.0.0.2",
           "::ffff:203.0.113.7", "fd00::5", "2001:db8::1", "2001:db9::1", "::1", "::", "example.com", "",
           b"10.0.0.2", b"[fd00::1]", "1.2.3", "300.1.1.1"]
    for ip in ips:
        for k in range(len(nets)):
            for group in ([nets[k]], nets[k:], nets[:k]):
                assert in_any(ip, group) == _one_by_one(ip, group), (ip, group)
                assert (ip in group[0]) == _one_by_one(ip, group[:1]) if group else True
    assert not in_any("10.0.0.1", [])
