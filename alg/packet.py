"""IPv4/IPv6 + UDP packets as NFQUEUE hands them over: parse, swap payload, fix checksums.

The payload stays bytes end to end; only the headers around it are rebuilt.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

UDP = 17
# IPv6 extension headers we step over to reach UDP (hop-by-hop, routing, destination options).
_V6_EXT = (0, 43, 60)


class UdpDatagram:
    """A parsed IP+UDP packet: where the UDP header sits and what it carries."""

    __slots__ = ("version", "src", "dst", "sport", "dport", "payload", "ip_len", "udp_at")

    def __init__(self, version: int, src: str, dst: str, sport: int, dport: int,
                 payload: bytes, ip_len: int, udp_at: int):
        self.version = version
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.payload = payload
        self.ip_len = ip_len          # bytes of IP header(s) before UDP
        self.udp_at = udp_at

    def __repr__(self) -> str:
        return "<UDPv%d %s:%d -> %s:%d %dB>" % (self.version, self.src, self.sport, self.dst,
                                                 self.dport, len(self.payload))


def parse_udp(packet: bytes) -> Optional[UdpDatagram]:
    """The UDP datagram in an IP packet, or None (not UDP, fragment, truncated, junk)."""
    try:
        return _parse(packet)
    except (IndexError, struct.error, ValueError):
        return None


def _parse(packet: bytes) -> Optional[UdpDatagram]:
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl + 8 or packet[9] != UDP:
            return None
        frag = struct.unpack_from("!H", packet, 6)[0]
        if frag & 0x3FFF:                     # MF set or offset: a fragment
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        if total > len(packet) or total < ihl + 8:
            return None
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
        at = ihl
        end = total
    elif version == 6:
        if len(packet) < 48:
            return None
        nh = packet[6]
        at = 40
        while nh in _V6_EXT:
            nh = packet[at]
            at += (packet[at + 1] + 1) * 8
        if nh != UDP or len(packet) < at + 8:
            return None
        end = 40 + struct.unpack_from("!H", packet, 4)[0]
        if end > len(packet):
            return None
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    else:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", packet, at)
    if ulen < 8 or at + ulen > end:
        return None
    return UdpDatagram(version, src, dst, sport, dport, packet[at + 8:at + ulen], at, at)


def _sum16(data: bytes) -> int:
    """The ones'-complement sum of the 16-bit words, folded.  Read as one big number the data
    is that sum modulo 0xFFFF (2**16 = 1 there), which a single C operation gives; a fold is
    0 only for all-zero data and 0xFFFF for the other multiples."""
    if len(data) & 1:
        data += b"\x00"
    x = int.from_bytes(data, "big")
    r = x % 0xFFFF
    return r if r or not x else 0xFFFF


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    return (~_sum16(data)) & 0xFFFF


def _udp_checksum(version: int, src: bytes, dst: bytes, udp: bytes) -> int:
    if version == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, UDP, len(udp))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(udp), UDP)
    c = checksum(pseudo + udp)
    return c or 0xFFFF                        # 0 means "no checksum": send all ones instead


def _rebuild(packet: bytes, d: UdpDatagram, src_addr: bytes, dst_addr: bytes,
             sport: int, dport: int, payload: bytes) -> bytes:
    at = d.udp_at
    head = bytearray(packet[:at])
    ulen = 8 + len(payload)
    if d.version == 4:
        head[12:16] = src_addr
        head[16:20] = dst_addr
        struct.pack_into("!H", head, 2, at + ulen)
        struct.pack_into("!H", head, 10, 0)
        struct.pack_into("!H", head, 10, checksum(bytes(head[:at])))
        had_sum = struct.unpack_from("!H", packet, at + 6)[0] != 0
    else:
        head[8:24] = src_addr
        head[24:40] = dst_addr
        struct.pack_into("!H", head, 4, at - 40 + ulen)
        had_sum = True                        # mandatory in IPv6
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    if had_sum:
        c = _udp_checksum(d.version, src_addr, dst_addr, udp)
        udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return bytes(head) + udp


def _addr_bytes(version: int, ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET if version == 4 else socket.AF_INET6, ip)


def with_payload(packet: bytes, payload: bytes, d: Optional[UdpDatagram] = None) -> bytes:
    """The same packet carrying payload, with lengths and checksums recomputed (d: the packet
    as parse_udp() read it, when the caller has it)."""
    if d is None:
        d = parse_udp(packet)
        if d is None:
            raise ValueError("not an IP/UDP packet")
    return _rebuild(packet, d, _addr_bytes(d.version, d.src), _addr_bytes(d.version, d.dst),
                    d.sport, d.dport, payload)


def with_addresses(packet: bytes, src: Optional[tuple] = None, dst: Optional[tuple] = None,
                   payload: Optional[bytes] = None) -> bytes:
    """The packet with source and/or destination (ip, port) changed, checksums fixed."""
    d = parse_udp(packet)
    if d is None:
        raise ValueError("not an IP/UDP packet")
    s = src or (d.src, d.sport)
    t = dst or (d.dst, d.dport)
    return _rebuild(packet, d, _addr_bytes(d.version, s[0]), _addr_bytes(d.version, t[0]),
                    s[1], t[1], d.payload if payload is None else payload)


def build_udp(src: tuple, dst: tuple, payload: bytes, ttl: int = 64) -> bytes:
    """A fresh IPv4/IPv6 UDP packet (for keep-alive answers and tests)."""
    v6 = ":" in src[0]
    if v6:
        head = struct.pack("!IHBB", 6 << 28, 8 + len(payload), UDP, ttl) + bytes(32)
        d = UdpDatagram(6, src[0], dst[0], src[1], dst[1], b"", 40, 40)
    else:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0x4000, ttl, UDP, 0,
                           bytes(4), bytes(4))
        d = UdpDatagram(4, src[0], dst[0], src[1], dst[1], b"", 20, 20)
    fake = head + struct.pack("!HHHH", 0, 0, 8, 1)      # checksum field non-zero: compute one
    return _rebuild(fake, d, _addr_bytes(d.version, src[0]), _addr_bytes(d.version, dst[0]),
                    src[1], dst[1], payload)
