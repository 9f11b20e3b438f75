"""nf_tables element messages against byte layouts written out from the kernel UAPI headers.

Expected bytes are packed by hand with literal numbers from
linux/netfilter/nf_tables.h and nfnetlink.h, never with the module's own
helpers.  No root needed; tests/lab/test_nf_tables_kernel.py runs the writer
against the kernel.
"""
import errno
import struct

import pytest

from tests.support import uapi
from tests.support.wire import HDR, nest, nla, nlmsg
from alg.kernel import nf_tables as nft

NEWSETELEM, GETSETELEM, DELSETELEM = 0x0A0C, 0x0A0D, 0x0A0E      # NFNL_SUBSYS_NFTABLES (10) << 8 | op


# -- values as the kernel's registers hold them


@pytest.mark.parametrize("value,wire", [
    (5060, b"\x13\xc4"),                                                  # inet_service: 2 bytes, no padding
    ("10.0.0.2", b"\x0a\x00\x00\x02"),                                    # ipv4_addr
    (("10.0.0.2", 5060), b"\x0a\x00\x00\x02" + b"\x13\xc4\0\0"),          # ipv4_addr . inet_service
    ((6000, "198.51.100.7"), b"\x17\x70\0\0" + b"\xc6\x33\x64\x07"),      # inet_service . ipv4_addr
    (b"\x01\x02\x03", b"\x01\x02\x03"),                                   # bytes as they are
])
def test_encode_value(value, wire):
    assert nft.encode_value(value) == wire


@pytest.mark.parametrize("bad,why", [(99999, "99999"), (-1, "-1"), ("10.0.0", "IPv4"), ("::1", "IPv4"),
                                     (1.5, "not an nftables"), (True, "not an nftables")])
def test_bad_values_are_named(bad, why):
    with pytest.raises(ValueError, match=why):
        nft.encode_value(bad)


def test_decode_value_follows_nftables_type_ids():
    # nftables' datatype ids, concatenated in 6-bit fields: TYPE_IPADDR 7, TYPE_INET_SERVICE 13
    assert nft.type_id(7, 13) == (7 << 6) | 13 == 461 and nft.type_id(13, 7) == 839
    assert nft.decode_value(461, b"\x0a\x00\x00\x02\x13\xc4\0\0") == ("10.0.0.2", 5060)
    assert nft.decode_value(839, b"\x17\x70\0\0\xc6\x33\x64\x07") == (6000, "198.51.100.7")
    assert nft.decode_value(13, b"\x13\xc4") == 5060 and nft.decode_value(7, b"\x0a\0\0\x01") == "10.0.0.1"
    assert nft.decode_value(19, b"\0\0\0\x01") == b"\0\0\0\x01"          # another type: bytes
    assert nft.decode_value(None, b"ab") == b"ab"
    assert nft.decode_value(461, b"\x0a\x00") == b"\x0a\x00"             # too short: bytes, not a guess


def test_timeouts_are_milliseconds_rounded_up():
    assert (nft.ms(30), nft.ms(0.0001), nft.ms(0), nft.ms(1.2345)) == (30000, 1, 1, 1235)


# -- messages


def test_element_layout():
    key = nest(1, nla(1, b"\x0a\0\0\x02\x13\xc4\0\0"))                     # NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
    data = nest(2, nla(1, b"\x13\xc4"))                                  # NFTA_SET_ELEM_DATA { NFTA_DATA_VALUE }
    timeout = nla(4, struct.pack(">Q", 30000))                           # NFTA_SET_ELEM_TIMEOUT, be64 ms
    expiration = nla(5, struct.pack(">Q", 30000))                        # NFTA_SET_ELEM_EXPIRATION
    got = nft.element(b"\x0a\0\0\x02\x13\xc4\0\0", b"\x13\xc4", 30000, 30000)
    assert got == nest(1, key, data, timeout, expiration)               # NFTA_LIST_ELEM
    assert nft.element(b"\x13\xc4") == nest(1, nest(1, nla(1, b"\x13\xc4")))


@pytest.mark.parametrize("klen", [1, 2, 3, 4, 6, 8, 16])
@pytest.mark.parametrize("dlen", [None, 2, 5, 8])
def test_element_is_packed_as_its_nested_attributes_for_every_padding(klen, dlen):
    """element() packs directly (it runs before a new binding's verdict): the same bytes as the
    attributes nested one by one, whatever padding key and data need, with a comment too."""
    key = bytes(range(1, klen + 1))
    data = None if dlen is None else bytes(range(100, 100 + dlen))
    parts = [nest(1, nla(1, key))]
    if data is not None:
        parts.append(nest(2, nla(1, data)))
    assert nft.element(key, data) == nest(1, *parts)
    udata = nft.comment_udata("c7")
    assert nft.element(key, data, 5000, 4000, "c7") == nest(1, *parts, nla(4, struct.pack(">Q", 5000)),
                                                            nla(5, struct.pack(">Q", 4000)), nla(6, udata))


def test_setelem_message_layout():
    elem = nft.element(b"\x13\xc4")
    got = nft.setelem_message(nft.NFT_MSG_DELSETELEM, 2, "sipalg", "sip_wanports", [elem], 9, flags=4)
    body = (b"\x02\x00\x00\x00"                                          # nfgenmsg: NFPROTO_IPV4, v0, res_id 0
            + nla(1, b"sipalg\0") + nla(2, b"sip_wanports\0")            # LIST_TABLE, LIST_SET
            + nest(3, elem))                                             # LIST_ELEMENTS
    assert got == nlmsg(DELSETELEM, 1 | 4, 9, body)                      # NLM_F_REQUEST | NLM_F_ACK
    dump = nft.setelem_message(nft.NFT_MSG_GETSETELEM, 2, "t", "s", [], 3, flags=0x300)
    assert dump == nlmsg(GETSETELEM, 0x301, 3, b"\x02\0\0\0" + nla(1, b"t\0") + nla(2, b"s\0"))


def test_batch_markers_name_the_subsystem():
    # NFNL_MSG_BATCH_BEGIN = NLMSG_MIN_TYPE (0x10), res_id = NFNL_SUBSYS_NFTABLES big-endian
    assert nft.batch_begin(5) == nlmsg(0x10, 1, 5, b"\x00\x00\x00\x0a")
    assert nft.batch_end(6) == nlmsg(0x11, 1, 6, b"\x00\x00\x00\x0a")


def test_nft_requests_always_carry_request():
    got = nft.nft_message(nft.NFT_MSG_GETTABLE, 2, nla(1, b"sipalg\0"), 4, 1)
    assert struct.unpack_from(HDR, got)[1:3] == (0x0A01, 5)


def test_parse_elements_of_a_dump_answer():
    e1 = nest(1, nest(1, nla(1, b"\x13\xc4")), nest(2, nla(1, b"\x0a\0\0\x02\x13\xc4\0\0")),
              nla(4, struct.pack(">Q", 30000)), nla(5, struct.pack(">Q", 29996)))
    e2 = nest(1, nest(1, nla(1, b"\x17\x70")), nla(4, struct.pack(">Q", 5000)))
    body = b"\x02\x00\x12\x34" + nla(1, b"sipalg\0") + nla(2, b"sip2lan\0") + nest(3, e1, e2)
    table, name, elems = nft.parse_elements(body)
    assert (table, name) == ("sipalg", "sip2lan")
    assert elems[0][1] == b"\x13\xc4" and elems[0][2] == b"\x0a\0\0\x02\x13\xc4\0\0"
    assert struct.unpack(">Q", elems[0][5])[0] == 29996 and 2 not in elems[1]


def test_parse_event_names_table_and_object():
    deltable = b"\x02\x00\x00\x07" + nla(1, b"sipalg\0")
    ev = nft.parse_event(nft.nl.nfnl_type(10, 2), deltable)
    assert (ev.kind, ev.family, ev.table, ev.name) == ("deltable", 2, "sipalg", "")
    delchain = b"\x02\x00\x00\x07" + nla(1, b"sipalg\0") + nla(3, b"dstnat\0")       # NFTA_CHAIN_NAME = 3
    assert nft.parse_event(nft.nl.nfnl_type(10, 5), delchain).name == "dstnat"
    newgen = b"\x00\x00\x00\x07" + nla(1, struct.pack(">I", 9)) + nla(3, b"nft\0")
    assert nft.parse_event(nft.nl.nfnl_type(10, 15), newgen).kind == "newgen"
    assert nft.parse_event(nft.nl.nfnl_type(1, 0), b"\x02\0\0\0") is None           # ctnetlink: not ours
    mon = nft.NfTablesMonitor.__new__(nft.NfTablesMonitor)
    mon.family, mon.table = 2, "sipalg"
    assert mon.removed([ev]) and not mon.removed([nft.TableEvent("deltable", 2, "other")])
    assert not mon.removed([nft.TableEvent("delsetelem", 2, "sipalg", "lan2wan")])
    assert mon.removed([nft.TableEvent("overrun", 2, "sipalg")])


def test_failures_say_what_and_why():
    f = nft.ElementFailure("delete", "media_open", 7000, None, errno.ENOENT)
    assert str(f) == "delete media_open 7000: ENOENT (No such file or directory)"
    g = nft.ElementFailure("add", "lan2wan", ("10.0.0.3", 99999), 5, errno.EINVAL, "port 99999 out of range 0-65535")
    assert "lan2wan ('10.0.0.3', 99999) : 5: EINVAL (port 99999" in str(g)


def test_family_names():
    assert (nft.family_number("ip"), nft.family_number("inet"), nft.family_number(10)) == (2, 1, 10)
    with pytest.raises(ValueError, match="'ipx'"):
        nft.family_number("ipx")


# -- constants against the installed UAPI headers


def test_constants_match_uapi_headers():
    text = uapi.header("netfilter/nf_tables.h")
    assert uapi.check_module(nft, text, ("nf_tables_msg_types", "nft_table_attributes", "nft_set_attributes",
                                         "nft_set_elem_list_attributes", "nft_list_attributes",
                                         "nft_set_elem_attributes", "nft_data_attributes", "nft_gen_attributes",
                                         "nft_set_flags", "nft_table_flags")) >= 30
    chain = uapi.enum(text, "nft_chain_attributes")
    rule = uapi.enum(text, "nft_rule_attributes")
    assert (chain["NFTA_CHAIN_TABLE"], chain["NFTA_CHAIN_NAME"]) == (nft.NFTA_CHAIN_TABLE, nft.NFTA_CHAIN_NAME)
    assert (rule["NFTA_RULE_TABLE"], rule["NFTA_RULE_CHAIN"]) == (nft.NFTA_RULE_TABLE, nft.NFTA_RULE_CHAIN)
    assert uapi.enum(text, "nft_data_types")["NFT_DATA_VERDICT"] == nft.NFT_DATA_VERDICT
    assert uapi.check_module(nft, uapi.header("netfilter.h"), ("",)) == 3    # NFPROTO_INET, _IPV4, _IPV6


class _Seq:
    def __init__(self):
        self.n = 100

    def seq(self):
        self.n += 1
        return self.n


def _writer(timeout_update):
    w = object.__new__(nft.NfTables)          # no socket: only what a batch reads to build messages
    w.family, w.table, w.timeout_update, w.nl = 2, "sipalg", timeout_update, _Seq()
    return w


@pytest.mark.parametrize("timeout_update", [True, False])
def test_a_batchs_messages_are_the_builders_bytes(timeout_update):
    """Batch builds each element message in one step from values' remembered attributes: the
    bytes are setelem_message() of element() of encode_value(), first use and every one after."""
    for _round in range(2):                    # the second finds every value remembered
        b = nft.Batch(_writer(timeout_update))
        b.add("lan2wan", ("10.0.0.2", 5060), 5062, timeout=30.5)
        b.add("media2lan", 6000, ("10.0.0.2", 6000), timeout=60, comment="call-1")
        b.add("sip_wanports", 5062)
        b.refresh("sip2lan", 5062, ("10.0.0.2", 5060), timeout=90)
        b.delete("sip_peer", (5062, "198.51.100.7"))
        msgs = [m for op in b._ops for m in op.msgs]
        el = nft.element
        k, v = nft.encode_value, nft.ms
        want = [(nft.NFT_MSG_NEWSETELEM, "lan2wan", el(k(("10.0.0.2", 5060)), k(5062), v(30.5)), 0x400),
                (nft.NFT_MSG_NEWSETELEM, "media2lan", el(k(6000), k(("10.0.0.2", 6000)), v(60), comment="call-1"),
                 0x400),
                (nft.NFT_MSG_NEWSETELEM, "sip_wanports", el(k(5062)), 0x400)]
        if timeout_update:
            want.append((nft.NFT_MSG_NEWSETELEM, "sip2lan", el(k(5062), k(("10.0.0.2", 5060)), v(90), v(90)), 0x400))
        else:
            want += [(nft.NFT_MSG_DELSETELEM, "sip2lan", el(k(5062)), 0),
                     (nft.NFT_MSG_NEWSETELEM, "sip2lan", el(k(5062), k(("10.0.0.2", 5060)), v(90)), 0x400)]
        want.append((nft.NFT_MSG_DELSETELEM, "sip_peer", el(k((5062, "198.51.100.7"))), 0))
        assert len(msgs) == len(want)
        for (seq, _ok, got), (op, set_name, elem, flags) in zip(msgs, want):
            assert got == nft.setelem_message(op, 2, "sipalg", set_name, [elem], seq, flags)


def test_remembered_values_never_stand_in_for_lookalikes():
    """1 == True == 1.0 to a dict: a remembered port must not let a bool or a float through."""
    b = nft.Batch(_writer(True))
    b.add("sip_wanports", 1)
    b.add("sip_wanports", True).add("sip_wanports", 1.0).add("lan2wan", ("10.0.0.1", 1.0), 5060)
    b.add("lan2wan", ("10.0.0.1", 1), True)
    assert len(b._ops) == 1
    assert [(f.key, f.errno) for f in b._bad] == [(True, errno.EINVAL), (1.0, errno.EINVAL),
                                                 (("10.0.0.1", 1.0), errno.EINVAL), (("10.0.0.1", 1), errno.EINVAL)]
