"""Netlink bytes packed by hand, from linux/netlink.h's layouts, for tests to compare against.

Deliberately independent of alg/kernel/netlink.py: a test that built its
expected bytes with the module under test would prove nothing.
"""
import struct

HDR = "=IHHII"          # nlmsghdr, host order: len, type, flags, seq, pid


def nlmsg(mtype, flags, seq, body, pid=0):
    return struct.pack(HDR, 16 + len(body), mtype, flags, seq, pid) + body


def nla(atype, data):
    """nlattr with host-order len/type; len counts header + data, padding to 4 comes after."""
    return struct.pack("=HH", 4 + len(data), atype) + data + b"\0" * (-len(data) % 4)


def nest(atype, *parts):
    return nla(atype | 0x8000, b"".join(parts))                 # NLA_F_NESTED
