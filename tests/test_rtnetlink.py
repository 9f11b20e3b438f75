"""rtnetlink messages against linux/rtnetlink.h, if_addr.h and if_link.h, and lookups on this host.

Expected bytes are packed by hand with literal numbers.  Dumps need no
privileges, so the lookups run against the kernel here (loopback is always
there); tests/lab/test_rtnetlink_kernel.py changes addresses in a namespace
of its own.
"""
import socket
import struct

from tests.support import uapi
from tests.support.wire import nla, nlmsg

from alg.kernel import rtnetlink as rt


def test_dump_requests():
    assert rt.getaddr_dump(5) == nlmsg(22, 0x301, 5, struct.pack("=BBBBI", 2, 0, 0, 0, 0))     # AF_INET addresses
    assert rt.getlink_dump(6) == nlmsg(18, 0x301, 6, struct.pack("=BxHiII", 0, 0, 0, 0, 0))
    assert rt.getlink(7, name="wan0") == nlmsg(18, 5, 7, struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(3, b"wan0\0"))
    assert rt.getlink(8, index=4) == nlmsg(18, 5, 8, struct.pack("=BxHiII", 0, 0, 4, 0, 0))


def test_parse_addr_prefers_the_local_address():
    # PPPoE: IFA_ADDRESS is the peer, IFA_LOCAL ours
    body = (struct.pack("=BBBBI", 2, 32, 0x80, 0, 7) + nla(1, socket.inet_aton("198.51.100.1"))
            + nla(2, socket.inet_aton("203.0.113.9")) + nla(3, b"pppoe-wan\0"))
    a = rt.parse_addr(body)
    assert a == rt.Address(7, "203.0.113.9", 32, "pppoe-wan", False) and a.network == "203.0.113.9/32"
    lan = struct.pack("=BBBBI", 2, 24, 0x01, 0, 3) + nla(1, socket.inet_aton("10.0.0.77")) + nla(8, struct.pack("=I", 0x81))
    b = rt.parse_addr(lan)
    assert (b.address, b.secondary, b.network) == ("10.0.0.77", True, "10.0.0.0/24")
    assert rt.parse_addr(struct.pack("=BBBBI", 10, 64, 0, 0, 3) + nla(1, b"\0" * 16)) is None     # IPv6: not ours
    assert rt.Address(1, "10.1.2.3", 0).network == "0.0.0.0/0"


def test_parse_link():
    body = struct.pack("=BxHiII", 0, 1, 5, 0x1043, 0) + nla(3, b"br-lan\0")
    link = rt.parse_link(body)
    assert link == rt.Link(5, "br-lan", 0x1043) and link.up


def test_lookups_on_this_host():
    r = rt.Rtnl()
    try:
        links = r.links()
        lo = [l for l in links.values() if l.name == "lo"][0]
        assert r.ifindex("lo") == lo.index and r.ifname(lo.index) == "lo"
        assert r.ifindex("no-such-if0") is None and r.ifname(0x7FFFFFF0) is None
        if lo.up:
            assert r.ipv4("lo") == "127.0.0.1" and r.networks("lo") == ["127.0.0.0/8"]
        assert r.addresses("no-such-if0") == []
    finally:
        r.close()


def test_constants_match_uapi_headers():
    text = uapi.header("rtnetlink.h")
    assert uapi.check_module(rt, text, ("", "rtnetlink_groups")) == 8   # RTM_* (the first, anonymous enum), groups
    addr = uapi.header("if_addr.h")
    assert uapi.check_module(rt, addr, ("",)) >= 4 and uapi.define(addr, "IFA_F_SECONDARY") == rt.IFA_F_SECONDARY
    link = uapi.header("if_link.h")
    assert uapi.check_module(rt, link, ("",)) >= 1
