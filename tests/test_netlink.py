"""The shared netlink layer: message and attribute layouts, acks and extended-ack errors, the socket.

Expected bytes are packed by hand with literal numbers from linux/netlink.h
(nlmsghdr, nlattr, nlmsgerr and its attributes), never with the module's
own helpers.  The socket tests talk to the real kernel over NETLINK_ROUTE,
which answers dumps without privileges.
"""
import errno
import socket
import struct

import pytest

from tests.support import uapi
from tests.support.wire import HDR, nlmsg
from alg.kernel import netlink as nl


# -- encoding


def test_message_header_and_padding():
    assert nl.message(0x10, 0x1, 7, b"abcd") == struct.pack(HDR, 20, 0x10, 1, 7, 0) + b"abcd"
    odd = nl.message(0x12, 0x5, 8, b"abcde", pid=3)
    assert odd == struct.pack(HDR, 21, 0x12, 5, 8, 3) + b"abcde" + b"\0\0\0"    # len says 21, next starts at 24


@pytest.mark.parametrize("data,wire", [
    (b"", struct.pack("=HH", 4, 9)),
    (b"x", struct.pack("=HH", 5, 9) + b"x\0\0\0"),
    (b"abcd", struct.pack("=HH", 8, 9) + b"abcd"),
    (b"abcdef", struct.pack("=HH", 10, 9) + b"abcdef\0\0"),
])
def test_attribute_length_excludes_padding(data, wire):
    assert nl.attr(9, data) == wire


def test_typed_attributes():
    assert nl.attr_str(1, "sipalg") == struct.pack("=HH", 11, 1) + b"sipalg\0" + b"\0"
    assert nl.attr_u8(1, 17) == struct.pack("=HH", 5, 1) + b"\x11\0\0\0"
    assert nl.attr_be16(3, 5060) == struct.pack("=HH", 6, 3) + b"\x13\xc4\0\0"
    assert nl.attr_be32(4, 1) == struct.pack("=HH", 8, 4) + b"\0\0\0\x01"
    assert nl.attr_be64(4, 30000) == struct.pack("=HH", 12, 4) + b"\0\0\0\0\0\0\x75\x30"
    assert nl.attr_u32(1, 1) == struct.pack("=HH", 8, 1) + struct.pack("=I", 1)


def test_nested_sets_the_flag_and_counts_its_children():
    inner = struct.pack("=HH", 8, 1) + b"\x0a\0\0\x02" + struct.pack("=HH", 5, 2) + b"\x11\0\0\0"
    got = nl.nested(3, nl.attr(1, b"\x0a\0\0\x02"), nl.attr_u8(2, 17))
    assert got == struct.pack("=HH", 4 + len(inner), 3 | 0x8000) + inner


def test_oversized_attribute_refused():
    with pytest.raises(ValueError, match="too long"):
        nl.attr(10, b"x" * 0xFFFC)
    assert len(nl.attr(10, b"x" * 0xFFFB)) == 0xFFFF + 1


def test_nfnetlink_message():
    got = nl.nfnl_message(10, 12, 2, b"", nl.NLM_F_REQUEST | nl.NLM_F_ACK, 5, res_id=0x0102)
    assert got == nlmsg(0x0A0C, 5, 5, b"\x02\x00\x01\x02")                  # nfgenmsg: family, version, be16 res_id


# -- decoding


def test_messages_and_attributes_walked_in_order():
    a = nlmsg(0x10, 0, 1, b"\x02\0\0\0" + struct.pack("=HH", 5, 1) + b"z\0\0\0" + struct.pack("=HH", 5, 1) + b"y\0\0\0")
    b = struct.pack(HDR, 16 + 1, 0x11, 2, 2, 0) + b"q\0\0\0"              # unaligned length, padded
    msgs = list(nl.iter_messages(a + b))
    assert [(m[0], m[1], m[2]) for m in msgs] == [(0x10, 0, 1), (0x11, 2, 2)]
    assert bytes(msgs[1][4]) == b"q"
    assert list(nl.iter_attrs(msgs[0][4], 4)) == [(1, b"z"), (1, b"y")]    # repeats kept (lists)
    assert nl.parse_attrs(msgs[0][4], 4) == {1: b"y"}


def test_attribute_type_flags_are_masked():
    data = struct.pack("=HH", 8, 5 | 0x8000 | 0x4000) + b"abcd"
    assert list(nl.iter_attrs(data)) == [(5, b"abcd")]


def test_bad_lengths_are_named():
    with pytest.raises(ValueError, match="netlink message"):
        list(nl.iter_messages(struct.pack(HDR, 40, 0x10, 0, 0, 0) + b"abcd"))
    with pytest.raises(ValueError, match="attribute"):
        list(nl.iter_attrs(struct.pack("=HH", 2, 1) + b"\0\0"))
    with pytest.raises(ValueError, match="attribute"):
        list(nl.iter_attrs(struct.pack("=HH", 12, 1) + b"\0\0\0\0"))


def test_value_getters():
    assert nl.get_str(b"sipalg\0\0") == "sipalg" and nl.get_str(b"abc") == "abc"
    assert nl.get_be16(b"\x13\xc4") == 5060 and nl.get_be32(b"\0\0\x01\0") == 256
    assert nl.get_be64(b"\0\0\0\0\0\0\x75\x30") == 30000 and nl.get_u32(struct.pack("=I", 9)) == 9


# -- acks and errors


def _err(code, req, flags=0, tlvs=b""):
    return nlmsg(2, flags, 0, struct.pack("=i", code) + req + tlvs)


def test_ack_carries_the_requests_seq():
    (a,) = nl.decode_errors(_err(0, struct.pack(HDR, 20, 0x0A0C, 5, 41, 0), flags=0x100))
    assert isinstance(a, nl.Ack) and a.seq == 41


def test_error_with_extended_ack_capped():
    # NETLINK_CAP_ACK: the request's header only (NLM_F_CAPPED), then NLMSGERR_ATTR_MSG and _OFFS
    req = struct.pack(HDR, 64, 0x0A0C, 5, 1234, 0)
    tlvs = struct.pack("=HH", 4 + 14, 1) + b"bad key length" + b"\0\0" + struct.pack("=HH", 8, 2) + struct.pack("=I", 20)
    (e,) = nl.decode_errors(_err(-errno.EINVAL, req, flags=0x100 | 0x200, tlvs=tlvs))
    assert isinstance(e, nl.NetlinkError) and isinstance(e, OSError)
    assert (e.errno, e.name, e.seq, e.kernel_msg, e.offset) == (errno.EINVAL, "EINVAL", 1234, "bad key length", 20)
    assert "EINVAL" in str(e) and "bad key length" in str(e)
    assert "my request" in str(e.named("my request")) and e.named("x").kernel_msg == "bad key length"


def test_error_with_the_whole_request_echoed():
    # without NETLINK_CAP_ACK the request follows in full (its nlmsg_len, padded), then the TLVs
    req = struct.pack(HDR, 22, 0x0A0C, 5, 77, 0) + b"\x02\0\0\0ab" + b"\0\0"
    tlvs = struct.pack("=HH", 4 + 4, 1) + b"why\0"
    (e,) = nl.decode_errors(_err(-errno.ENOENT, req, flags=0x200, tlvs=tlvs))
    assert (e.errno, e.seq, e.kernel_msg, e.offset) == (errno.ENOENT, 77, "why", None)


def test_error_without_echo_uses_the_outer_seq():
    (e,) = nl.decode_errors(nlmsg(2, 0, 5, struct.pack("=i", -errno.EPERM)))
    assert e.name == "EPERM" and e.seq == 5 and e.kernel_msg == ""


def test_error_too_short():
    with pytest.raises(ValueError, match="NLMSG_ERROR"):
        nl.decode_errors(nlmsg(2, 0, 0, b"\0\0"))


# -- constants against the installed UAPI headers


def test_constants_match_uapi_headers():
    text = uapi.header("netlink.h")
    for name in ("NETLINK_ROUTE", "NETLINK_NETFILTER", "NLM_F_REQUEST", "NLM_F_MULTI", "NLM_F_ACK", "NLM_F_ECHO",
                 "NLM_F_DUMP_INTR", "NLM_F_DUMP_FILTERED", "NLM_F_ROOT", "NLM_F_MATCH", "NLM_F_REPLACE",
                 "NLM_F_EXCL", "NLM_F_CREATE", "NLM_F_APPEND", "NLM_F_CAPPED", "NLM_F_ACK_TLVS", "NLMSG_NOOP",
                 "NLMSG_ERROR", "NLMSG_DONE", "NLMSG_OVERRUN", "NLMSG_MIN_TYPE", "NETLINK_ADD_MEMBERSHIP",
                 "NETLINK_DROP_MEMBERSHIP", "NETLINK_NO_ENOBUFS", "NETLINK_CAP_ACK", "NETLINK_EXT_ACK",
                 "NLA_F_NESTED", "NLA_F_NET_BYTEORDER"):
        assert getattr(nl, name) == uapi.define(text, name), name
    assert uapi.check_module(nl, text, ("nlmsgerr_attrs",)) >= 2
    nfnl = uapi.header("netfilter/nfnetlink.h")
    for name in ("NFNETLINK_V0", "NFNL_SUBSYS_CTNETLINK", "NFNL_SUBSYS_QUEUE", "NFNL_SUBSYS_NFTABLES"):
        assert getattr(nl, name) == uapi.define(nfnl, name), name
    assert uapi.enum(nfnl, "nfnetlink_groups")["NFNLGRP_NFTABLES"] == nl.NFNLGRP_NFTABLES
    assert nl.NFNL_MSG_BATCH_BEGIN == nl.NLMSG_MIN_TYPE and nl.NFNL_MSG_BATCH_END == nl.NLMSG_MIN_TYPE + 1
    assert "#define NFNL_MSG_BATCH_END\t\tNLMSG_MIN_TYPE+1" in nfnl


# -- the socket, against the kernel (NETLINK_ROUTE answers unprivileged)

RTM_GETLINK = 18
IFINFO = struct.Struct("=BxHiII")       # ifinfomsg: family, pad, type, index, flags, change


def test_dump_runs_to_done_and_sees_loopback():
    s = nl.NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        msgs = s.dump(lambda seq: nl.message(RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq,
                                             IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)))
        names = {nl.get_str(nl.parse_attrs(body, IFINFO.size)[3]) for mtype, _f, _s, body in msgs if mtype == 16}
        assert "lo" in names                                       # RTM_NEWLINK answers, IFLA_IFNAME = 3
        assert all(flags & nl.NLM_F_MULTI for _t, flags, _s, _b in msgs)
    finally:
        s.close()


def test_request_error_is_matched_by_seq_and_raised_named():
    s = nl.NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        seq = s.seq()
        msg = nl.message(RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, seq, IFINFO.pack(0, 0, 0x7FFFFFF0, 0, 0))
        with pytest.raises(nl.NetlinkError, match="GETLINK 2147483632") as ei:
            s.request(msg, "GETLINK 2147483632")
        assert ei.value.errno == errno.ENODEV and ei.value.seq == seq
        seqs = [s.seq() for _ in range(3)]                          # several requests in one sendmsg
        res = s.transact([nl.message(RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, q,
                                     IFINFO.pack(0, 0, 1 if i != 1 else 0x7FFFFFF0, 0, 0))
                          for i, q in enumerate(seqs)], seqs)
        assert [None if res[q] is None else res[q].errno for q in seqs] == [None, errno.ENODEV, None]
    finally:
        s.close()


def test_send_refuses_a_datagram_the_socket_cannot_take():
    s = nl.NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        with pytest.raises(ValueError, match="exceeds"):
            s.send(b"\0" * (s.max_send + 1))
        packed = s.pack([b"x" * 1000] * (s.max_send // 1000 * 2 + 1))
        assert len(packed) >= 2 and all(len(d) <= s.max_send for d, _n in packed)
        assert sum(n for _d, n in packed) == s.max_send // 1000 * 2 + 1
    finally:
        s.close()


def test_receive_is_non_blocking():
    s = nl.NetlinkSocket(nl.NETLINK_ROUTE)
    try:
        assert s.receive() == [] and s.recv() is None and s.pid == s.sock.getsockname()[0] != 0
    finally:
        s.close()
