"""ctnetlink messages against byte layouts written out from linux/netfilter/nfnetlink_conntrack.h.

Expected bytes are packed by hand with literal numbers, never with the
module's helpers.  No root needed; tests/lab/test_ctnetlink_kernel.py runs
them against real flows.
"""
import socket
import struct

import pytest

from tests.support import uapi
from tests.support.wire import nest, nla, nlmsg
from alg.kernel import ctnetlink as ct


def tuple_(kind, src=None, dst=None, sport=None, dport=None, proto=17):
    ip = (nla(1, bytes(map(int, src.split(".")))) if src else b"") + (nla(2, bytes(map(int, dst.split(".")))) if dst else b"")
    pr = nla(1, bytes([proto])) + (nla(2, struct.pack(">H", sport)) if sport is not None else b"") \
        + (nla(3, struct.pack(">H", dport)) if dport is not None else b"")
    return nest(kind, *([nest(1, ip)] if ip else []), nest(2, pr))     # CTA_TUPLE_IP, CTA_TUPLE_PROTO


def test_delete_names_the_original_tuple_and_id():
    got = ct.delete_message(7, ct.Tuple("10.0.0.2", "192.0.2.2", 5060, 5060), id=0x01020304)
    body = b"\x02\x00\x00\x00" + tuple_(1, "10.0.0.2", "192.0.2.2", 5060, 5060) + nla(12, b"\x01\x02\x03\x04")
    assert got == nlmsg(0x0102, 1 | 4, 7, body)                  # NFNL_SUBSYS_CTNETLINK << 8 | CT_DELETE


@pytest.mark.parametrize("t", [ct.Tuple("203.0.113.10", "203.0.113.1", 5060, 5062),
                               ct.Tuple("10.0.0.2", "198.51.100.7", 0, 65535, 6)])
def test_a_whole_tuple_packs_as_its_attributes_nested(t):
    """tuple_attr packs a whole Tuple in one go (a lookup before a new binding's verdict): the same
    bytes as the attributes nested one by one, which a Match naming every field still builds."""
    ip = nest(1, nla(1, socket.inet_aton(t.src)), nla(2, socket.inet_aton(t.dst)))
    proto = nest(2, nla(1, bytes((t.proto,))), nla(2, struct.pack(">H", t.sport)), nla(3, struct.pack(">H", t.dport)))
    assert ct.tuple_attr(ct.CTA_TUPLE_REPLY, t) == nest(ct.CTA_TUPLE_REPLY, ip, proto)
    assert ct.tuple_attr(ct.CTA_TUPLE_REPLY, ct.Match(t.src, t.dst, t.sport, t.dport), t.proto) == \
        nest(ct.CTA_TUPLE_REPLY, ip, proto)


def test_dump_filters_by_both_tuples():
    got = ct.dump_message(3, orig=ct.Match(dport=6000), reply=ct.Match(dst="192.0.2.1"))
    flt = nest(25, nla(1, struct.pack("=I", (1 << 3) | (1 << 5))),              # orig: PROTO_NUM | DST_PORT
               nla(2, struct.pack("=I", (1 << 3) | (1 << 1))))                   # reply: PROTO_NUM | IP_DST
    body = b"\x02\x00\x00\x00" + tuple_(1, dport=6000) + tuple_(2, dst="192.0.2.1") + flt
    assert got == nlmsg(0x0101, 1 | 0x300, 3, body)             # CT_GET, NLM_F_DUMP
    plain = ct.dump_message(4)
    assert plain == nlmsg(0x0101, 0x301, 4, b"\x02\0\0\0" + tuple_(1) + nest(25, nla(1, struct.pack("=I", 8))))


def test_match_checks_values():
    with pytest.raises(ValueError, match="70000"):
        ct.Match(dport=70000)
    with pytest.raises(ValueError, match="'10.0.0'"):
        ct.Match(dst="10.0.0")
    m = ct.Match(dst="192.0.2.1", dport=6000)
    assert m.matches(ct.Tuple("1.2.3.4", "192.0.2.1", 9, 6000))
    assert not m.matches(ct.Tuple("1.2.3.4", "192.0.2.1", 9, 6001))


def test_parse_flow_from_a_dump_answer():
    body = (b"\x02\x00\x00\x00" + tuple_(1, "10.0.0.2", "192.0.2.2", 5060, 5060)
            + tuple_(2, "192.0.2.2", "192.0.2.1", 5060, 5060)
            + nla(3, struct.pack(">I", 0x188)) + nla(7, struct.pack(">I", 29)) + nla(8, struct.pack(">I", 0x5A1A0000))
            + nla(12, struct.pack(">I", 99)))
    f = ct.parse_flow(body)
    assert f.orig == ct.Tuple("10.0.0.2", "192.0.2.2", 5060, 5060, 17)
    assert f.reply == ct.Tuple("192.0.2.2", "192.0.2.1", 5060, 5060, 17)
    assert (f.status, f.timeout, f.mark, f.id, f.zone) == (0x188, 29, 0x5A1A0000, 99, 0)
    v6 = b"\x0a\x00\x00\x00" + nest(1, nest(1, nla(3, b"\0" * 16), nla(4, b"\0" * 16)), nest(2, nla(1, b"\x11")))
    assert ct.parse_flow(v6) is None


def test_constants_match_uapi_headers():
    text = uapi.header("netfilter/nfnetlink_conntrack.h")
    assert uapi.check_module(ct, text, ("cntl_msg_types", "ctattr_type", "ctattr_tuple", "ctattr_ip",
                                        "ctattr_l4proto", "ctattr_filter")) >= 20
