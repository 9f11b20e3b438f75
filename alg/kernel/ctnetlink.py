"""Conntrack entries read and deleted over ctnetlink from the daemon itself (no `conntrack` process).

Conntrack hygiene: when a pinhole narrows, moves or closes, or a binding
closes or the WAN address changes, the entries still carrying the old
mapping must go, and a WAN port must not be handed out again while the
kernel still holds a flow on it.  Listing uses the kernel's own dump filter
(CTA_FILTER: exact match on either tuple's addresses, ports and protocol;
Linux 5.9+), and every entry is checked again here, so a kernel without
the filter (it then dumps the whole table) gives the same answer.  A
filter the kernel cannot express ("any source but this one") is a `keep`
predicate.  Deletes name each entry by its original tuple and id
(CTA_ID, so a new flow that reuses the tuple is not hit), all in one
sendmsg on the same socket; flushing by filter in the kernel needs 6.12,
which the routers don't have.

Layouts and numbers: linux/netfilter/nfnetlink_conntrack.h; the filter
flag bits are the kernel's (net/netfilter/nf_internals.h, CTA_FILTER_F_*).
Addresses, ports, ids, marks and status are big-endian; CTA_FILTER's flag
words are host order (NLA_U32).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

from alg.kernel import netlink as nl
from alg.kernel.netlink import (NETLINK_NETFILTER, NFNL_SUBSYS_CTNETLINK, NLA_F_NESTED, NLM_F_ACK, NLM_F_DUMP,
                                NLM_F_REQUEST, NetlinkSocket, attr, attr_be16, attr_be32, attr_u8, attr_u32, get_be16, get_be32,
                                nested, parse_attrs)

# enum cntl_msg_types
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_ID = 12
CTA_ZONE = 18
CTA_MARK_MASK = 21
CTA_FILTER = 25
# enum ctattr_tuple
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3
# enum ctattr_ip
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
# enum ctattr_l4proto
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
# enum ctattr_filter
CTA_FILTER_ORIG_FLAGS = 1
CTA_FILTER_REPLY_FLAGS = 2

# net/netfilter/nf_internals.h: which tuple fields a CTA_FILTER compares
CTA_FILTER_F_CTA_IP_SRC = 1 << 0
CTA_FILTER_F_CTA_IP_DST = 1 << 1
CTA_FILTER_F_CTA_TUPLE_ZONE = 1 << 2
CTA_FILTER_F_CTA_PROTO_NUM = 1 << 3
CTA_FILTER_F_CTA_PROTO_SRC_PORT = 1 << 4
CTA_FILTER_F_CTA_PROTO_DST_PORT = 1 << 5

IPPROTO_UDP = 17
CT_NEW = nl.nfnl_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW)


class Tuple(NamedTuple):
    """One direction of a flow: addresses as dotted quads, ports as ints."""
    src: str
    dst: str
    sport: int
    dport: int
    proto: int = IPPROTO_UDP


class Flow:
    """A conntrack entry: both tuples (the reply one shows the NAT), its id, mark, status, seconds left."""

    __slots__ = ("orig", "reply", "id", "mark", "status", "timeout", "zone")

    def __init__(self, orig: Tuple, reply: Tuple, id: Optional[int] = None, mark: int = 0, status: int = 0,
                 timeout: Optional[int] = None, zone: int = 0):
        self.orig = orig
        self.reply = reply
        self.id = id
        self.mark = mark
        self.status = status
        self.timeout = timeout
        self.zone = zone

    def __repr__(self) -> str:
        o, r = self.orig, self.reply
        return "Flow(%s:%d -> %s:%d / reply %s:%d -> %s:%d, id=%s)" % (o.src, o.sport, o.dst, o.dport, r.src,
                                                                        r.sport, r.dst, r.dport, self.id)


class Match:
    """What one tuple must be equal to (None: anything)."""

    __slots__ = ("src", "dst", "sport", "dport")

    def __init__(self, src: Optional[str] = None, dst: Optional[str] = None, sport: Optional[int] = None,
                 dport: Optional[int] = None):
        for port in (sport, dport):
            if port is not None and not 0 <= port <= 0xFFFF:
                raise ValueError("port %r out of range 0-65535" % (port,))
        for a in (src, dst):
            if a is not None and not _is_ipv4(a):
                raise ValueError("not an IPv4 address: %r" % (a,))
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport

    def matches(self, t: Tuple) -> bool:
        return ((self.src is None or t.src == self.src) and (self.dst is None or t.dst == self.dst)
                and (self.sport is None or t.sport == self.sport) and (self.dport is None or t.dport == self.dport))

    def filter_flags(self) -> int:
        f = CTA_FILTER_F_CTA_PROTO_NUM                      # ports mean nothing without the protocol
        if self.src is not None:
            f |= CTA_FILTER_F_CTA_IP_SRC
        if self.dst is not None:
            f |= CTA_FILTER_F_CTA_IP_DST
        if self.sport is not None:
            f |= CTA_FILTER_F_CTA_PROTO_SRC_PORT
        if self.dport is not None:
            f |= CTA_FILTER_F_CTA_PROTO_DST_PORT
        return f

    def __repr__(self) -> str:
        return "Match(src=%r, dst=%r, sport=%r, dport=%r)" % (self.src, self.dst, self.sport, self.dport)


def _is_ipv4(a: str) -> bool:
    try:
        return a.count(".") == 3 and bool(socket.inet_aton(a))
    except OSError:
        return False


# -- messages


# A whole tuple packed at once (clear_the_way looks one up before a new binding's verdict):
# outer, CTA_TUPLE_IP {V4_SRC, V4_DST}, CTA_TUPLE_PROTO {NUM u8, SRC_PORT be16, DST_PORT be16}
_WHOLE_TUPLE = struct.Struct("=HH HH HH4s HH4s HH HHB3x HH2s2x HH2s2x")


def tuple_attr(ctype: int, t: Union[Tuple, Match], proto: int = IPPROTO_UDP) -> bytes:
    """CTA_TUPLE_ORIG/REPLY { CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SRC_PORT, DST_PORT } };
    a Match gives only the fields it names."""
    if isinstance(t, Tuple) and 0 <= t.sport <= 0xFFFF and 0 <= t.dport <= 0xFFFF:
        return _WHOLE_TUPLE.pack(52, ctype | NLA_F_NESTED, 20, CTA_TUPLE_IP | NLA_F_NESTED,
                                 8, CTA_IP_V4_SRC, socket.inet_aton(t.src), 8, CTA_IP_V4_DST, socket.inet_aton(t.dst),
                                 28, CTA_TUPLE_PROTO | NLA_F_NESTED, 5, CTA_PROTO_NUM, t.proto,
                                 6, CTA_PROTO_SRC_PORT, t.sport.to_bytes(2, "big"),
                                 6, CTA_PROTO_DST_PORT, t.dport.to_bytes(2, "big"))
    ip = []
    if t.src is not None:
        ip.append(attr(CTA_IP_V4_SRC, socket.inet_aton(t.src)))
    if t.dst is not None:
        ip.append(attr(CTA_IP_V4_DST, socket.inet_aton(t.dst)))
    pr = [attr_u8(CTA_PROTO_NUM, t.proto if isinstance(t, Tuple) else proto)]
    if t.sport is not None:
        pr.append(attr_be16(CTA_PROTO_SRC_PORT, t.sport))
    if t.dport is not None:
        pr.append(attr_be16(CTA_PROTO_DST_PORT, t.dport))
    parts = ([nested(CTA_TUPLE_IP, *ip)] if ip else []) + [nested(CTA_TUPLE_PROTO, *pr)]
    return nested(ctype, *parts)


def ct_message(op: int, attrs: bytes, flags: int, seq: int) -> bytes:
    return nl.nfnl_message(NFNL_SUBSYS_CTNETLINK, op, socket.AF_INET, attrs, NLM_F_REQUEST | flags, seq)


def dump_message(seq: int, orig: Optional[Match] = None, reply: Optional[Match] = None,
                 proto: int = IPPROTO_UDP) -> bytes:
    """IPCTNL_MSG_CT_GET dump of AF_INET entries of `proto`, filtered in the kernel by both tuples."""
    orig = orig or Match()
    attrs = tuple_attr(CTA_TUPLE_ORIG, orig, proto)
    flt = [attr_u32(CTA_FILTER_ORIG_FLAGS, orig.filter_flags())]
    if reply is not None:
        attrs += tuple_attr(CTA_TUPLE_REPLY, reply, proto)
        flt.append(attr_u32(CTA_FILTER_REPLY_FLAGS, reply.filter_flags()))
    return ct_message(IPCTNL_MSG_CT_GET, attrs + nested(CTA_FILTER, *flt), NLM_F_DUMP, seq)


def delete_message(seq: int, t: Tuple, id: Optional[int] = None, zone: int = 0, reply: bool = False) -> bytes:
    """IPCTNL_MSG_CT_DELETE of the entry whose original tuple is `t` (its reply tuple with reply=True:
    ctnetlink_del_conntrack looks either up; and whose id is `id`, if given)."""
    attrs = tuple_attr(CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG, t)
    if id is not None:
        attrs += attr_be32(CTA_ID, id)
    if zone:
        attrs += attr_be16(CTA_ZONE, zone)
    return ct_message(IPCTNL_MSG_CT_DELETE, attrs, NLM_F_ACK, seq)


def parse_tuple(data: bytes) -> Optional[Tuple]:
    a = parse_attrs(data)
    ip = parse_attrs(a.get(CTA_TUPLE_IP, b""))
    pr = parse_attrs(a.get(CTA_TUPLE_PROTO, b""))
    if CTA_IP_V4_SRC not in ip or CTA_IP_V4_DST not in ip or CTA_PROTO_NUM not in pr:
        return None                                         # IPv6 or malformed: not ours
    return Tuple(socket.inet_ntoa(bytes(ip[CTA_IP_V4_SRC][:4])), socket.inet_ntoa(bytes(ip[CTA_IP_V4_DST][:4])),
                 get_be16(pr[CTA_PROTO_SRC_PORT]) if CTA_PROTO_SRC_PORT in pr else 0,
                 get_be16(pr[CTA_PROTO_DST_PORT]) if CTA_PROTO_DST_PORT in pr else 0,
                 pr[CTA_PROTO_NUM][0])


def parse_flow(body: bytes) -> Optional[Flow]:
    """An IPCTNL_MSG_CT_NEW body (dump answer or event) as a Flow; None for what is not IPv4."""
    a = parse_attrs(body, nl.NFGEN.size)
    orig = parse_tuple(a.get(CTA_TUPLE_ORIG, b""))
    reply = parse_tuple(a.get(CTA_TUPLE_REPLY, b""))
    if orig is None or reply is None:
        return None
    return Flow(orig, reply, get_be32(a[CTA_ID]) if CTA_ID in a else None,
                get_be32(a[CTA_MARK]) if CTA_MARK in a else 0, get_be32(a[CTA_STATUS]) if CTA_STATUS in a else 0,
                get_be32(a[CTA_TIMEOUT]) if CTA_TIMEOUT in a else None, get_be16(a[CTA_ZONE]) if CTA_ZONE in a else 0)


# -- the socket


class Conntrack:
    """IPv4 conntrack entries over one persistent ctnetlink socket.

        ct.delete_flows(reply=Match(dst=old_wan))                  # renumbering: flows NATed to the old address
        ct.delete_flows(orig=Match(dst=wan, dport=p),              # a pinhole narrowed to `far`: flows from
                        keep=lambda f: f.orig.src == far)          #   anyone else go
        ct.delete_flows(reply=Match(dport=p))                      # a binding closed: flows SNATed to port p
        ct.holds_port(p, wan)                                      # may port p be handed out again?
    """

    def __init__(self, timeout: float = 2.0):
        self.nl = NetlinkSocket(NETLINK_NETFILTER, rcvbuf=4 << 20, timeout=timeout)

    def close(self) -> None:
        self.nl.close()

    def flows(self, orig: Optional[Match] = None, reply: Optional[Match] = None,
              proto: int = IPPROTO_UDP) -> List[Flow]:
        """The entries of `proto` whose tuples match (the kernel filters; each is checked again here)."""
        msgs = self.nl.dump(lambda seq: dump_message(seq, orig, reply, proto), "conntrack dump")
        out = []
        for mtype, _f, _s, body in msgs:
            if mtype != CT_NEW:
                continue
            f = parse_flow(body)
            if (f is not None and f.orig.proto == proto and (orig is None or orig.matches(f.orig))
                    and (reply is None or reply.matches(f.reply))):
                out.append(f)
        return out

    def delete(self, what: Union[Flow, Tuple]) -> bool:
        """Delete one entry (by its original tuple, and its id for a Flow); False if it was gone."""
        return self.delete_all([what]) == 1

    def by_reply(self, t: Tuple) -> Optional[Flow]:
        """The entry whose reply tuple is t (one hash lookup in the kernel), or None."""
        # No ack asked for: the kernel answers a get inside our sendmsg, with the entry or an
        # error (ENOENT: none), so both are queued when it returns and nothing is waited for.
        seq = self.nl.seq()
        msg = ct_message(IPCTNL_MSG_CT_GET, tuple_attr(CTA_TUPLE_REPLY, t, t.proto), 0, seq)
        replies: List[nl.Message] = []
        err = self.nl.errors(msg, replies).get(seq)
        if err is not None and err.errno != errno.ENOENT:
            raise err.named("conntrack get")
        for mtype, _f, s, body in replies:
            if mtype == CT_NEW and s == seq:
                return parse_flow(body)
        return None

    def delete_all(self, entries: Sequence[Union[Flow, Tuple]]) -> int:
        """Delete entries in one go (one sendmsg per send buffer's worth); returns how many were there."""
        msgs, seqs = [], []
        for e in entries:
            seq = self.nl.seq()
            if isinstance(e, Flow):
                msgs.append(delete_message(seq, e.orig, e.id, e.zone))
            else:
                msgs.append(delete_message(seq, e))
            seqs.append(seq)
        if not msgs:
            return 0
        res = self.nl.transact(msgs, seqs)
        for e in res.values():
            if e is not None and e.errno != errno.ENOENT:   # ENOENT: it ended meanwhile
                raise e.named("conntrack delete")
        return sum(1 for e in res.values() if e is None)

    def delete_flows(self, orig: Optional[Match] = None, reply: Optional[Match] = None,
                     keep: Optional[Callable[[Flow], bool]] = None, proto: int = IPPROTO_UDP) -> int:
        """Delete every entry that matches and that `keep` does not spare; returns how many went."""
        victims = [f for f in self.flows(orig, reply, proto) if keep is None or not keep(f)]
        return self.delete_all(victims)

    def holds_port(self, port: int, ip: Optional[str] = None, proto: int = IPPROTO_UDP) -> bool:
        """Does any entry still use `port` (on `ip`, if given): a flow to it (DNAT'd inbound) or a flow
        whose replies come back to it (SNAT'd outbound)?"""
        return bool(self.flows(orig=Match(dst=ip, dport=port), proto=proto)
                    or self.flows(reply=Match(dst=ip, dport=port), proto=proto))
