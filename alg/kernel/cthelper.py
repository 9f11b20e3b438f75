"""Keep SIP flows out of flowtables: a userspace conntrack helper that does nothing, attached to them.

With flow offloading on (fw4's `flow_offloading`, and `flow_offloading_hw`),
fw4's forward chain starts with `meta l4proto { tcp, udp } flow offload @ft`:
from the second packet on, an established flow takes the flowtable's ingress
fast path and never reaches sipalg's queue rules again, so SIP would cross
the NAT unrewritten.  The kernel itself keeps some flows out:
nft_flow_offload_eval() (net/netfilter/nft_flow_offload.c, the same test in
6.1, 6.6 and 6.18) skips a conntrack entry that carries a helper extension:

    if (nf_ct_ext_exist(ct, NF_CT_EXT_HELPER) ||
        ct->status & (IPS_SEQ_ADJUST | IPS_NAT_CLASH))
            goto out;

That expression is the only way into an nftables flowtable, hardware ones
(`flags offload`) included: flow_offload_add() (nf_flow_table_core.c) hands a
flow to the driver (nf_flow_offload_add) only after it.  OpenWrt's iptables
FLOWOFFLOAD target (hack-6.6/650-netfilter-add-xt_FLOWOFFLOAD-target.patch,
fw3) and tc's act_ct make the same test.

So sipalg registers a userspace helper of its own over nfnetlink_cthelper
(NFNL_SUBSYS_CTHELPER, as conntrackd registers its helpers; Linux 3.6+,
OpenWrt's kmod-nfnetlink-cthelper) and its table attaches it to the first
packet of every flow its queue rules take (`ct helper set`, nft_ct.c's
nft_ct_helper_obj_eval(): unconfirmed entries only).  Media flows never
match those rules and stay offloadable.  The helper is registered
NFCT_HELPER_STATUS_DISABLED, a helper "not yet configured":
nfnl_userspace_cthelper(), which nf_confirm() calls for each packet of the
flow (postrouting and input, after NAT), returns NF_ACCEPT for it instead of
NF_QUEUE to the helper's queue number, so it does nothing at all; SIP is
queued by sipalg's own rules as before.  It needs no expectation classes, but
the kernel wants one (a policy with max_expected 1).

Where it is attached matters: after the queue's verdict, never before it.
A verdict on a packet whose entry has a userspace helper makes the kernel
believe the packet was queued by that helper, from nf_confirm() at the end
of postrouting, and confirm the entry there and then (nf_conntrack_update()
-> nf_confirm_cthelper(), nf_conntrack_core.c, since 5.7's "make conntrack
userspace helpers work again"; in 6.1, 6.6 and 6.18).  sipalg queues first
packets before NAT (prerouting and forward, mangle - 10), so an entry
confirmed at that verdict would never be NATed: seen in the QEMU VM, the
INVITE left with the phone's address.  So the table attaches the helper in
chains of their own at mangle + 5, after the verdict (and after the
iptables NFQUEUE fallback at mangle); later packets' verdicts find the
entry confirmed already, where that confirmation does nothing.

Helpers are global to the kernel, not per network namespace, and their names
are shared: registering again updates the one there.  A helper that an
nftables `ct helper` object still holds can't be deleted (EBUSY: the object's
reference, nfnetlink_cthelper.c nfnl_cthelper_del() on 6.1-6.18), so the
table goes first and the helper after; nf_tables may let the object's
reference go a moment after the table's delete returns, so the delete is
tried again for a while.  A helper another
namespace's table holds stays.  Conntrack entries keep the helper extension
after the helper is gone (unhelp() only clears the pointer), so they stay
out of the flowtable until they end.

Entries made before the table was there (or while fw4 had flushed it) have
no helper and would be offloaded: sweep() deletes the NAT'd SIP ones when
a flowtable exists, and their next packet starts a new entry through our
rules.

Layouts: linux/netfilter/nfnetlink_cthelper.h (attributes big-endian, as
nfnetlink_cthelper.c reads them with nla_get_be32/be16), nf_tables.h for the
flowtable dump, nf_conntrack_common.h for the status bits.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from typing import List, NamedTuple, Optional, Sequence

from alg.kernel import netlink as nl
from alg.kernel.netlink import (NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
                                NLM_F_REQUEST, NetlinkError, NetlinkSocket, attr_be16, attr_be32, attr_str, attr_u8,
                                get_be16, get_be32, get_str, nested, parse_attrs)

NFNL_SUBSYS_CTHELPER = 9
# enum nfnl_cthelper_msg_types
NFNL_MSG_CTHELPER_NEW = 0
NFNL_MSG_CTHELPER_GET = 1
NFNL_MSG_CTHELPER_DEL = 2
# enum nfnl_cthelper_type
NFCTH_NAME = 1
NFCTH_TUPLE = 2
NFCTH_QUEUE_NUM = 3
NFCTH_POLICY = 4
NFCTH_PRIV_DATA_LEN = 5
NFCTH_STATUS = 6
# enum nfnl_cthelper_policy_type
NFCTH_POLICY_SET_NUM = 1
NFCTH_POLICY_SET = 2
# enum nfnl_cthelper_pol_type
NFCTH_POLICY_NAME = 1
NFCTH_POLICY_EXPECT_MAX = 2
NFCTH_POLICY_EXPECT_TIMEOUT = 3
# enum nfnl_cthelper_tuple_type
NFCTH_TUPLE_L3PROTONUM = 1
NFCTH_TUPLE_L4PROTONUM = 2
NFCT_HELPER_STATUS_DISABLED = 0
NFCT_HELPER_STATUS_ENABLED = 1
NF_CT_HELPER_NAME_LEN = 16                # with its NUL

# nf_tables.h: listing flowtables
NFT_MSG_GETFLOWTABLE = 23
NFTA_FLOWTABLE_TABLE = 1
NFTA_FLOWTABLE_NAME = 2

# nf_conntrack_common.h
IPS_SRC_NAT = 1 << 4
IPS_DST_NAT = 1 << 5
IPS_HELPER = 1 << 13                      # a helper was attached explicitly (nft `ct helper set`, CT target)
IPS_OFFLOAD = 1 << 14

NFPROTO_UNSPEC = 0
NFPROTO_IPV4 = 2
IPPROTO_UDP = 17

log = logging.getLogger("sipalg.offload")

NAME = "sipalg"
UNREGISTER_WAIT = 2.0                     # seconds the delete is retried while the table's reference is let go


class Helper(NamedTuple):
    """A userspace helper as the kernel lists it."""
    name: str
    l3proto: int
    l4proto: int
    queue_num: int
    status: int
    priv_data_len: int


def check_name(name: str) -> str:
    if not name or len(name.encode()) >= NF_CT_HELPER_NAME_LEN or "\0" in name or '"' in name:
        raise ValueError("conntrack helper name %r: 1-%d characters" % (name, NF_CT_HELPER_NAME_LEN - 1))
    return name


def _tuple(l3proto: int, l4proto: int) -> bytes:
    return nested(NFCTH_TUPLE, attr_be16(NFCTH_TUPLE_L3PROTONUM, l3proto), attr_u8(NFCTH_TUPLE_L4PROTONUM, l4proto))


def helper_message(op: int, seq: int, name: str, l3proto: int = NFPROTO_IPV4, l4proto: int = IPPROTO_UDP,
                   flags: int = NLM_F_ACK) -> bytes:
    """NFNL_MSG_CTHELPER_GET / DEL naming one helper (a DEL without a name would delete them all)."""
    attrs = attr_str(NFCTH_NAME, check_name(name)) + _tuple(l3proto, l4proto)
    return nl.nfnl_message(NFNL_SUBSYS_CTHELPER, op, socket.AF_UNSPEC, attrs, NLM_F_REQUEST | flags, seq)


def new_message(seq: int, name: str, l3proto: int = NFPROTO_IPV4, l4proto: int = IPPROTO_UDP,
                queue_num: int = 0) -> bytes:
    """NFNL_MSG_CTHELPER_NEW: create the helper, or update the one of that name and tuple.

    Status disabled: the helper never queues.  One expectation class, as
    nfnl_cthelper_parse_expect_policy() demands; none is ever created.
    """
    policy = nested(NFCTH_POLICY,
                    attr_be32(NFCTH_POLICY_SET_NUM, 1),
                    nested(NFCTH_POLICY_SET, attr_str(NFCTH_POLICY_NAME, check_name(name)),
                           attr_be32(NFCTH_POLICY_EXPECT_MAX, 1), attr_be32(NFCTH_POLICY_EXPECT_TIMEOUT, 1)))
    attrs = (attr_str(NFCTH_NAME, name) + _tuple(l3proto, l4proto) + attr_be32(NFCTH_QUEUE_NUM, queue_num)
             + policy + attr_be32(NFCTH_PRIV_DATA_LEN, 0) + attr_be32(NFCTH_STATUS, NFCT_HELPER_STATUS_DISABLED))
    return nl.nfnl_message(NFNL_SUBSYS_CTHELPER, NFNL_MSG_CTHELPER_NEW, socket.AF_UNSPEC, attrs,
                           NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq)


def parse_helper(body: bytes) -> Optional[Helper]:
    a = parse_attrs(body, nl.NFGEN.size)
    if NFCTH_NAME not in a or NFCTH_TUPLE not in a:
        return None
    t = parse_attrs(a[NFCTH_TUPLE])
    return Helper(get_str(a[NFCTH_NAME]),
                  get_be16(t[NFCTH_TUPLE_L3PROTONUM]) if NFCTH_TUPLE_L3PROTONUM in t else 0,
                  t[NFCTH_TUPLE_L4PROTONUM][0] if NFCTH_TUPLE_L4PROTONUM in t else 0,
                  get_be32(a[NFCTH_QUEUE_NUM]) if NFCTH_QUEUE_NUM in a else 0,
                  get_be32(a[NFCTH_STATUS]) if NFCTH_STATUS in a else NFCT_HELPER_STATUS_DISABLED,
                  get_be32(a[NFCTH_PRIV_DATA_LEN]) if NFCTH_PRIV_DATA_LEN in a else 0)


def flowtables_message(seq: int) -> bytes:
    """NFT_MSG_GETFLOWTABLE dump of every family's flowtables."""
    return nl.nfnl_message(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETFLOWTABLE, NFPROTO_UNSPEC, b"",
                           NLM_F_REQUEST | NLM_F_DUMP, seq)


class UserspaceHelpers:
    """nfnetlink_cthelper over one socket: register, look up and delete userspace helpers."""

    def __init__(self, timeout: float = 2.0):
        self.nl = NetlinkSocket(NETLINK_NETFILTER, timeout=timeout)

    def close(self) -> None:
        self.nl.close()

    def register(self, name: str = NAME, l3proto: int = NFPROTO_IPV4, l4proto: int = IPPROTO_UDP) -> None:
        """Create it (or update the one there) as a helper that accepts every packet; raises NetlinkError
        (EOPNOTSUPP: a kernel without nfnetlink_cthelper; EPERM: no CAP_NET_ADMIN)."""
        self.nl.request(new_message(self.nl.seq(), name, l3proto, l4proto),
                        "registering conntrack helper %r" % name)

    def get(self, name: str = NAME, l3proto: int = NFPROTO_IPV4, l4proto: int = IPPROTO_UDP) -> Optional[Helper]:
        try:
            msgs = self.nl.request(helper_message(NFNL_MSG_CTHELPER_GET, self.nl.seq(), name, l3proto, l4proto),
                                   "looking up conntrack helper %r" % name)
        except NetlinkError as e:
            if e.errno in (errno.ENOENT, errno.EOPNOTSUPP):
                return None
            raise
        for _t, _f, _s, body in msgs:
            h = parse_helper(body)
            if h is not None and h.name == name:
                return h
        return None

    def unregister(self, name: str = NAME, l3proto: int = NFPROTO_IPV4, l4proto: int = IPPROTO_UDP,
                   wait: float = UNREGISTER_WAIT) -> bool:
        """Delete it; False when a `ct helper` object (another namespace's table) still holds it after
        `wait` seconds.  A helper that is not there counts as deleted."""
        deadline = time.monotonic() + wait
        pause = 0.01
        while True:
            try:
                self.nl.request(helper_message(NFNL_MSG_CTHELPER_DEL, self.nl.seq(), name, l3proto, l4proto),
                                "deleting conntrack helper %r" % name)
                return True
            except NetlinkError as e:
                if e.errno in (errno.ENOENT, errno.EOPNOTSUPP):
                    return True
                if e.errno != errno.EBUSY or time.monotonic() + pause > deadline:
                    if e.errno == errno.EBUSY:
                        return False
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def flowtables(sock: NetlinkSocket) -> List[str]:
    """'table/flowtable' of every flowtable in this namespace (none where nf_tables has none)."""
    out = []
    for _t, _f, _s, body in sock.dump(flowtables_message, "flowtable dump"):
        a = parse_attrs(body, nl.NFGEN.size)
        out.append("%s/%s" % (get_str(a.get(NFTA_FLOWTABLE_TABLE, b"")), get_str(a.get(NFTA_FLOWTABLE_NAME, b""))))
    return out


class OffloadGuard:
    """What the daemon holds: the helper registered before its table goes in, removed after it goes.
    It logs what it did and what it could not do itself ("sipalg.offload"); nothing here raises.

        table.ct_helper = guard.start()      # the helper's name, or None: the rules attach none
        table.install(...)
        guard.sweep(sip_ports)               # after each (re)install: entries from before it
        ...
        table.remove()
        guard.stop()
    """

    def __init__(self, name: str = NAME):
        self.name = check_name(name)
        self.active = False
        self.why = ""                          # why there is no helper (or it stayed), for the log

    def start(self) -> Optional[str]:
        try:
            h = UserspaceHelpers()
            try:
                h.register(self.name)
            finally:
                h.close()
        except OSError as e:                   # NetlinkError too
            self.why = str(e)
            # nfnetlink answers EINVAL for a subsystem it has no module for
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP) and not os.path.exists("/sys/module/nfnetlink_cthelper"):
                self.why = "this kernel has no userspace conntrack helpers (nfnetlink_cthelper)"
            log.debug("no conntrack helper for SIP flows: %s", self.why)
            return None
        self.active = True
        self.why = ""
        log.debug("conntrack helper %s registered: SIP flows stay out of flowtables", self.name)
        return self.name

    def stop(self) -> bool:
        """Delete the helper (after the table that names it is gone); False if another table holds it."""
        if not self.active:
            return True
        self.active = False
        try:
            h = UserspaceHelpers()
            try:
                if h.unregister(self.name):
                    return True
                self.why = "still held by another table (another network namespace's?)"
            finally:
                h.close()
        except OSError as e:
            self.why = str(e)
        log.info("conntrack helper %s left registered: %s", self.name, self.why)
        return False

    def sweep(self, sip_ports: Sequence[int]) -> int:
        """When a flowtable exists: delete the NAT'd SIP entries that have no helper (made before our rules
        were there), so that their next packet makes a new entry, which gets ours; returns how many went.
        Without a helper, says once per call that SIP flows will be offloaded past the ALG."""
        try:
            s = NetlinkSocket(NETLINK_NETFILTER)
            try:
                tables = flowtables(s)
            finally:
                s.close()
            if not tables:
                return 0
            if not self.active:
                log.warning("flow offloading is on (flowtable %s) but SIP flows can't be kept out of it, so "
                            "the ALG will miss them: %s (install kmod-nfnetlink-cthelper)", ", ".join(tables),
                            self.why)
                return 0
            n = self._delete_unhelped(sip_ports)
        except OSError as e:
            log.warning("flow offloading: could not check SIP flows: %s", e)
            return 0
        if n:
            log.info("flow offloading: %d SIP flows from before the ALG's table restarted (so that they "
                     "stay out of flowtable %s)", n, ", ".join(tables))
        return n

    @staticmethod
    def _delete_unhelped(sip_ports: Sequence[int]) -> int:
        from alg.kernel.ctnetlink import Conntrack, Match
        ct = Conntrack()
        try:
            seen = {}
            for p in sip_ports:
                for m in (Match(sport=p), Match(dport=p)):
                    for f in ct.flows(orig=m):
                        seen[(f.orig, f.id)] = f
            stale = [f for f in seen.values()
                     if f.status & (IPS_SRC_NAT | IPS_DST_NAT) and not f.status & IPS_HELPER]
            return ct.delete_all(stale)
        finally:
            ct.close()
