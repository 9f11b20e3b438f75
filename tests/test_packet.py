import struct

import pytest

from alg.packet import parse_udp, with_payload, with_addresses, build_udp, checksum

dpkt = pytest.importorskip("dpkt")


def _v4(payload=b"hello", src="10.0.0.2", dst="203.0.113.10", options=b""):
    udp = dpkt.udp.UDP(sport=5060, dport=5060, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=17, data=udp, opts=options)
    ip.hl = 5 + len(options) // 4
    ip.len = len(ip)
    return bytes(ip)


def _udp_sum_ok_v4(pkt):
    ip = dpkt.ip.IP(pkt)
    assert checksum(pkt[:ip.hl * 4]) == 0
    u = pkt[ip.hl * 4:]
    if u[6:8] == b"\0\0":
        return True
    pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 17, len(u))
    return checksum(pseudo + u) == 0


def test_parse_v4():
    d = parse_udp(_v4(b"INVITE"))
    assert (d.version, d.src, d.dst, d.sport, d.dport, d.payload) == (4, "10.0.0.2", "203.0.113.10", 5060, 5060, b"INVITE")


@pytest.mark.parametrize("new", [b"", b"x", b"longer payload, odd length!", b"y" * 1400])
def test_with_payload_checksums(new):
    pkt = with_payload(_v4(b"original"), new)
    assert parse_udp(pkt).payload == new
    assert _udp_sum_ok_v4(pkt)
    again = dpkt.ip.IP(pkt)
    assert again.len == len(pkt)


def test_ip_options_kept():
    pkt = _v4(b"abc", options=b"\x01\x01\x01\x00")       # NOP NOP NOP EOL
    assert parse_udp(pkt).payload == b"abc"
    out = with_payload(pkt, b"abcdef")
    assert out[20:24] == b"\x01\x01\x01\x00" and _udp_sum_ok_v4(out)


def test_zero_udp_checksum_stays_zero():
    pkt = bytearray(_v4(b"abc"))
    pkt[26:28] = b"\0\0"
    out = with_payload(bytes(pkt), b"abcd")
    assert out[26:28] == b"\0\0" and _udp_sum_ok_v4(out)


def test_addresses_rewritten():
    out = with_addresses(_v4(b"abc"), src=("203.0.113.1", 5062))
    d = parse_udp(out)
    assert (d.src, d.sport, d.dst) == ("203.0.113.1", 5062, "203.0.113.10") and _udp_sum_ok_v4(out)


def test_ipv6_with_extension_header():
    udp = dpkt.udp.UDP(sport=5060, dport=5070, data=b"REGISTER")
    udp.ulen = len(udp)
    src = bytes.fromhex("fd000000000000000000000000000002")
    dst = bytes.fromhex("20010db8000000000000000000000001")
    pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
    raw = bytes(udp)
    c = checksum(pseudo + raw[:6] + b"\0\0" + raw[8:])
    raw = raw[:6] + struct.pack("!H", c) + raw[8:]
    hop = bytes([17, 0]) + bytes(6)                        # hop-by-hop, next = UDP
    pkt = struct.pack("!IHBB", 6 << 28, len(hop) + len(raw), 0, 64) + src + dst + hop + raw
    d = parse_udp(pkt)
    assert (d.version, d.src, d.dst, d.payload) == (6, "fd00::2", "2001:db8::1", b"REGISTER")
    out = with_payload(pkt, b"REGISTER sip:x")
    d2 = parse_udp(out)
    u = out[48:]
    assert d2.payload == b"REGISTER sip:x"
    assert checksum(src + dst + struct.pack("!IxxxB", len(u), 17) + u) == 0
    assert struct.unpack("!H", out[4:6])[0] == len(out) - 40


def test_junk_is_none():
    for junk in (b"", b"\x45" * 10, b"\x60" + bytes(30), _v4()[:25], b"\x45\x00" + bytes(40)):
        assert parse_udp(junk) is None
    frag = bytearray(_v4())
    frag[6] = 0x20                                        # MF
    assert parse_udp(bytes(frag)) is None


def test_build_udp_v4():
    pkt = build_udp(("203.0.113.1", 5060), ("203.0.113.10", 5060), b"\r\n")
    d = parse_udp(pkt)
    assert d.payload == b"\r\n" and d.sport == 5060 and _udp_sum_ok_v4(pkt)


def test_checksum_is_the_rfc1071_word_sum():
    """The big-number shortcut gives what summing 16-bit words and folding the carries gives."""
    import random

    def by_words(data):
        if len(data) & 1:
            data += b"\0"
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return (~total) & 0xFFFF

    rnd = random.Random(1071)
    cases = [b"", b"\0", b"\0\0", b"\xff\xff", b"\xff\xff" * 3, b"\x00\x01\xff\xfe", b"\x80", bytes(1500),
             b"\xff" * 1499]
    cases += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 1500))) for _ in range(300)]
    for data in cases:
        assert checksum(data) == by_words(data), data[:16]
