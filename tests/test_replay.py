"""`sipalg replay` over a capture made here with dpkt: a phone's call as seen on the LAN."""
import subprocess
import sys

import pytest

dpkt = pytest.importorskip("dpkt")

from alg.packet import parse_udp, checksum  # noqa: E402

PHONE, SERVER = "10.0.0.2", "203.0.113.10"


def _crlf(s):
    return s.replace("\n", "\r\n").encode()


def _sip(head, body=""):
    b = _crlf(body)
    return _crlf(head) + b"Content-Length: %d\r\n\r\n" % len(b) + b


SDP = "v=0\no=- 1 1 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\nm=audio 10000 RTP/AVP 0\n"
INVITE = _sip("INVITE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport\n"
              "From: <sip:alice@10.0.0.2>;tag=1\nTo: <sip:bob@203.0.113.10>\nCall-ID: c1\nCSeq: 1 INVITE\n"
              "Contact: <sip:alice@10.0.0.2:5060>\nContent-Type: application/sdp\n", SDP)
OK = _sip("SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport=5060;received=10.0.0.2\n"
          "From: <sip:alice@10.0.0.2>;tag=1\nTo: <sip:bob@203.0.113.10>;tag=2\nCall-ID: c1\nCSeq: 1 INVITE\n"
          "Contact: <sip:bob@203.0.113.10>\nContent-Type: application/sdp\n",
          SDP.replace("10.0.0.2", "203.0.113.10").replace("10000", "20000"))


def _frame(src, dst, sport, dport, payload):
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=17, data=udp)
    ip.len = len(ip)
    raw = bytes(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=b"")
    return bytes(eth) + raw


def _write(path, frames):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=1)
        for i, fr in enumerate(frames):
            w.writepkt(fr, 1000.0 + i)


def _read(path):
    with open(path, "rb") as f:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


def _checksums_ok(ip):
    assert checksum(ip[:20]) == 0
    u = ip[20:]
    import struct
    return checksum(ip[12:20] + struct.pack("!BBH", 0, 17, len(u)) + u) == 0


def test_replay_rewrites_both_directions(tmp_path):
    rtp = b"\x80\x00\x00\x01" + bytes(168)
    frames = [
        _frame(PHONE, SERVER, 5060, 5060, INVITE),
        _frame(SERVER, PHONE, 5060, 5060, OK),
        _frame(PHONE, SERVER, 10000, 20000, rtp),
        _frame(PHONE, SERVER, 5060, 5060, b"\r\n\r\n"),
        _frame(PHONE, SERVER, 5060, 5060, b"\x16garbage that is not SIP"),
    ]
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    _write(src, frames)
    r = subprocess.run([sys.executable, "-m", "alg", "replay", str(src), str(dst), "--wan-ip", "203.0.113.1",
                        "--lan-net", "10.0.0.0/24"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("replay: 5 packets, 3 SIP messages, 1 rewritten, 1 unchanged, "
                                "1 malformed, 1 keep-alives")
    out = _read(dst)
    assert len(out) == 5 and [ts for ts, _ in out] == [1000.0 + i for i in range(5)]
    inv = parse_udp(out[0][1][14:])
    assert inv.src == "203.0.113.1" and inv.sport == 5060
    assert b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK1;rport\r\n" in inv.payload
    assert b"c=IN IP4 203.0.113.1\r\n" in inv.payload and b"10.0.0.2" not in inv.payload
    assert _checksums_ok(out[0][1][14:])
    assert out[0][1][:14] == frames[0][:14]
    ok = parse_udp(out[1][1][14:])
    assert ok.dst == PHONE and ok.dport == 5060
    assert out[2][1] == frames[2]                       # RTP copied as it was
    assert parse_udp(out[4][1][14:]).payload == b"\x16garbage that is not SIP"


def test_replay_errors_name_the_input(tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all")
    r = subprocess.run([sys.executable, "-m", "alg", "replay", str(bad), str(tmp_path / "o"), "--wan-ip",
                        "203.0.113.1", "--lan-net", "10.0.0.0/24"], capture_output=True, text=True)
    assert r.returncode == 2 and "x.pcap" in r.stderr
    r = subprocess.run([sys.executable, "-m", "alg", "replay", str(tmp_path / "missing.pcap"), "o",
                        "--wan-ip", "203.0.113.1", "--lan-net", "10.0.0.0/24"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.pcap" in r.stderr
    r = subprocess.run([sys.executable, "-m", "alg", "replay", str(bad), "o", "--wan-ip", "nope",
                        "--lan-net", "10.0.0.0/24"], capture_output=True, text=True)
    assert r.returncode == 2 and "nope" in r.stderr
