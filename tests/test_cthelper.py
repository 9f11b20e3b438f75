"""The userspace conntrack helper that keeps SIP flows out of flowtables: its nfnetlink_cthelper
messages against byte layouts written out from linux/netfilter/nfnetlink_cthelper.h, and the
table's rules that attach it.

Expected bytes are packed by hand with literal numbers, never with the module's helpers.  No
root needed.  The kernel side (registration, the flowtable skipping SIP, NAT still done) runs
in the QEMU VM (tests/qemu/guest_scenarios.py): this host's kernel has neither
CONFIG_NF_FLOW_TABLE nor CONFIG_NF_CT_NETLINK_HELPER.
"""
import re
import struct

import pytest

from tests.support import uapi
from tests.support.wire import nest, nla, nlmsg
from alg.kernel import cthelper
from alg.kernel.nftables import NftTable

NEW, GET, DEL = 0x0900, 0x0901, 0x0902          # NFNL_SUBSYS_CTHELPER (9) << 8 | op
TUPLE = nest(2, nla(1, b"\x00\x02"), nla(2, b"\x11"))      # NFCTH_TUPLE { L3PROTONUM be16 2, L4PROTONUM u8 17 }


def be32(v):
    return struct.pack(">I", v)


def test_new_registers_a_helper_that_never_queues():
    got = cthelper.new_message(7, "sipalg")
    policy = nest(4, nla(1, be32(1)),                                     # NFCTH_POLICY { SET_NUM 1,
                  nest(2, nla(1, b"sipalg\0"), nla(2, be32(1)), nla(3, be32(1))))   # SET { NAME, MAX, TIMEOUT } }
    body = (b"\x00\x00\x00\x00" + nla(1, b"sipalg\0") + TUPLE + nla(3, be32(0)) + policy
            + nla(5, be32(0)) + nla(6, be32(0)))                           # PRIV_DATA_LEN 0, STATUS disabled
    assert got == nlmsg(NEW, 0x01 | 0x04 | 0x400, 7, body)                # REQUEST | ACK | CREATE


def test_get_and_delete_name_the_helper_and_its_tuple():
    for op, mtype in ((cthelper.NFNL_MSG_CTHELPER_GET, GET), (cthelper.NFNL_MSG_CTHELPER_DEL, DEL)):
        got = cthelper.helper_message(op, 3, "sipalg")
        assert got == nlmsg(mtype, 0x01 | 0x04, 3, b"\x00\x00\x00\x00" + nla(1, b"sipalg\0") + TUPLE)


def test_flowtable_dump_asks_every_family():
    assert cthelper.flowtables_message(5) == nlmsg(0x0A17, 0x01 | 0x300, 5, b"\x00\x00\x00\x00")   # GETFLOWTABLE


def test_parse_helper_as_the_kernel_lists_it():
    body = (b"\x00\x00\x00\x00" + nla(1, b"sipalg\0") + nla(3, be32(0)) + TUPLE
            + nest(4, nla(1, be32(1)), nest(2, nla(1, b"sipalg\0"), nla(2, be32(1)), nla(3, be32(1))))
            + nla(5, be32(0)) + nla(6, be32(0)))
    assert cthelper.parse_helper(body) == cthelper.Helper("sipalg", 2, 17, 0, 0, 0)
    assert cthelper.parse_helper(b"\x00\x00\x00\x00" + nla(3, be32(0))) is None


@pytest.mark.parametrize("bad", ["", "x" * 16, 'a"b', "a\0b"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="conntrack helper name"):
        cthelper.new_message(1, bad)


def test_constants_match_uapi_headers():
    text = uapi.header("netfilter/nfnetlink_cthelper.h")
    assert uapi.check_module(cthelper, text, ("nfnl_cthelper_msg_types", "nfnl_cthelper_type",
                                              "nfnl_cthelper_policy_type", "nfnl_cthelper_pol_type",
                                              "nfnl_cthelper_tuple_type")) >= 14
    assert uapi.define(text, "NFCT_HELPER_STATUS_DISABLED") == cthelper.NFCT_HELPER_STATUS_DISABLED
    assert uapi.define(uapi.header("netfilter/nfnetlink.h"), "NFNL_SUBSYS_CTHELPER") == cthelper.NFNL_SUBSYS_CTHELPER
    nft = uapi.header("netfilter/nf_tables.h")
    assert uapi.enum(nft, "nf_tables_msg_types")["NFT_MSG_GETFLOWTABLE"] == cthelper.NFT_MSG_GETFLOWTABLE
    assert uapi.enum(nft, "nft_flowtable_attributes")["NFTA_FLOWTABLE_NAME"] == cthelper.NFTA_FLOWTABLE_NAME
    ct = uapi.enum(uapi.header("netfilter/nf_conntrack_common.h"), "ip_conntrack_status")
    assert (ct["IPS_SRC_NAT"], ct["IPS_DST_NAT"], ct["IPS_HELPER"], ct["IPS_OFFLOAD"]) == (
        cthelper.IPS_SRC_NAT, cthelper.IPS_DST_NAT, cthelper.IPS_HELPER, cthelper.IPS_OFFLOAD)


# -- the table's side


def _chains(ruleset):
    """{chain: (hook line, [rules])} of a ruleset as NftTable writes it."""
    out = {}
    for name, body in re.findall(r"chain (\w+) \{\n(.*?)\n  \}", ruleset, re.S):
        lines = [l.strip() for l in body.splitlines()]
        out[name] = (lines[0], lines[1:])
    return out


@pytest.mark.parametrize("nft_queue", [True, False])
def test_the_helper_is_attached_to_what_is_queued_after_the_verdict(nft_queue):
    t = NftTable("wan0", "br0", "203.0.113.1", [5060, 5070], use_nft_queue=nft_queue)
    plain = t.ruleset()
    assert "ct helper" not in plain and "helper_in" not in plain            # no helper registered: none named
    t.ct_helper = "sipalg"
    rs = t.ruleset()
    assert rs.startswith('table ip sipalg {\n  ct helper sipalg { type "sipalg" protocol udp; }\n')
    chains = _chains(rs)
    for queue, attach, hook in (("queue_in", "helper_in", "prerouting"), ("queue_out", "helper_out", "forward")):
        qhook, queued = chains[queue]
        ahook, attached = chains[attach]
        assert qhook.startswith("type filter hook %s priority mangle - 10;" % hook)
        # after the queue's verdict (mangle - 10) and the iptables NFQUEUE fallback (mangle), before dstnat
        assert ahook.startswith("type filter hook %s priority mangle + 5;" % hook)
        assert all(r.endswith(' ct helper set "sipalg"') for r in attached)
        # every queue rule's match (not the refused-SIP counter after them)
        queued = [r for r in queued if "sip_refused" not in r]
        assert [r[:-len(' ct helper set "sipalg"')] for r in attached] == [
            re.sub(r" counter (queue num \d+ bypass|meta mark set 0x5a1a0001 accept)$", "", r) for r in queued]
        assert not any("ct helper" in r for r in queued)       # never before the verdict: NAT would be skipped
    # everything else is as it was
    rest = re.sub(r"  chain helper_(in|out) \{\n.*?\n  \}\n", "", rs, flags=re.S)
    assert re.sub(r"  ct helper sipalg .*\n", "", rest) == plain
