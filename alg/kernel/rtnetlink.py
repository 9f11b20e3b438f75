"""Interfaces and their IPv4 addresses over rtnetlink, and a subscription to their changes.

The daemon follows the WAN address: reading it by ioctl once a second
lags a renumbering by up to a second; RTNLGRP_IPV4_IFADDR and RTNLGRP_LINK
say so at once (select() on RtnlMonitor.fileno()).  Dumps need no
privileges.

Layouts: linux/rtnetlink.h (message types, groups), linux/if_addr.h
(struct ifaddrmsg, IFA_*), linux/if_link.h (struct ifinfomsg, IFLA_*).
Netlink headers and these structs are host order; addresses are bytes in
network order.  On a point-to-point link (PPPoE) IFA_LOCAL is our address
and IFA_ADDRESS the peer's, so IFA_LOCAL is what counts.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Dict, List, NamedTuple, Optional, Union

from alg.kernel import netlink as nl
from alg.kernel.netlink import NETLINK_ROUTE, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NetlinkSocket, \
    attr_str, get_str, parse_attrs

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5

# linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_FLAGS = 8
IFA_F_SECONDARY = 0x01

# linux/if_link.h
IFLA_IFNAME = 3
IFF_UP = 0x1                              # linux/if.h
IFF_RUNNING = 0x40

IFADDRMSG = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index
IFINFOMSG = struct.Struct("=BxHiII")      # family, pad, type, index, flags, change


class Address(NamedTuple):
    """One IPv4 address of an interface."""
    index: int
    address: str
    prefixlen: int
    label: str = ""
    secondary: bool = False

    @property
    def network(self) -> str:
        """The network it is on, "10.0.0.0/24"."""
        mask = (0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF if self.prefixlen else 0
        net = struct.unpack("!I", socket.inet_aton(self.address))[0] & mask
        return "%s/%d" % (socket.inet_ntoa(struct.pack("!I", net)), self.prefixlen)


class Link(NamedTuple):
    index: int
    name: str
    flags: int

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


# -- messages


def getaddr_dump(seq: int) -> bytes:
    return nl.message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0))


def getlink_dump(seq: int) -> bytes:
    return nl.message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))


def getlink(seq: int, index: int = 0, name: Optional[str] = None) -> bytes:
    """One interface, by index or (index 0) by name."""
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + (attr_str(IFLA_IFNAME, name) if name else b"")
    return nl.message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def parse_addr(body: bytes) -> Optional[Address]:
    """An RTM_NEWADDR/DELADDR body; None for what is not IPv4."""
    if len(body) < IFADDRMSG.size:
        return None
    family, prefixlen, flags, _scope, index = IFADDRMSG.unpack_from(body)
    if family != socket.AF_INET:
        return None
    a = parse_attrs(body, IFADDRMSG.size)
    raw = a.get(IFA_LOCAL, a.get(IFA_ADDRESS))
    if raw is None or len(raw) < 4:
        return None
    if IFA_FLAGS in a and len(a[IFA_FLAGS]) >= 4:
        flags = nl.get_u32(a[IFA_FLAGS])                 # the full flag word (ifa_flags is its low byte)
    return Address(index, socket.inet_ntoa(bytes(raw[:4])), prefixlen, get_str(a.get(IFA_LABEL, b"")),
                   bool(flags & IFA_F_SECONDARY))


def parse_link(body: bytes) -> Optional[Link]:
    if len(body) < IFINFOMSG.size:
        return None
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
    a = parse_attrs(body, IFINFOMSG.size)
    return Link(index, get_str(a.get(IFLA_IFNAME, b"")), flags)


# -- queries


class Rtnl:
    """Interface and address lookups over one rtnetlink socket."""

    def __init__(self, timeout: float = 2.0):
        self.nl = NetlinkSocket(NETLINK_ROUTE, timeout=timeout)

    def close(self) -> None:
        self.nl.close()

    def links(self) -> Dict[int, Link]:
        out = {}
        for mtype, _f, _s, body in self.nl.dump(getlink_dump, "RTM_GETLINK dump"):
            if mtype == RTM_NEWLINK:
                link = parse_link(body)
                if link is not None:
                    out[link.index] = link
        return out

    def link(self, which: Union[int, str]) -> Optional[Link]:
        """One interface by index or name; None when there is none."""
        seq = self.nl.seq()
        msg = getlink(seq, which, None) if isinstance(which, int) else getlink(seq, 0, which)
        try:
            replies = self.nl.request(msg, "RTM_GETLINK %s" % (which,))
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return None
            raise
        for mtype, _f, _s, body in replies:
            if mtype == RTM_NEWLINK:
                return parse_link(body)
        return None

    def ifindex(self, name: str) -> Optional[int]:
        link = self.link(name)
        return link.index if link else None

    def ifname(self, index: int) -> Optional[str]:
        link = self.link(index)
        return link.name if link else None

    def addresses(self, ifname: Optional[str] = None) -> List[Address]:
        """IPv4 addresses (of one interface, by name), primary ones first as the kernel lists them."""
        index = None
        if ifname is not None:
            index = self.ifindex(ifname)
            if index is None:
                return []
        out = []
        for mtype, _f, _s, body in self.nl.dump(getaddr_dump, "RTM_GETADDR dump"):
            if mtype == RTM_NEWADDR:
                a = parse_addr(body)
                if a is not None and (index is None or a.index == index):
                    out.append(a)
        return out

    def ipv4(self, ifname: str) -> Optional[str]:
        """The interface's primary IPv4 address (what SIOCGIFADDR gives), or None when it has none."""
        addrs = self.addresses(ifname)
        for a in addrs:
            if not a.secondary:
                return a.address
        return addrs[0].address if addrs else None

    def networks(self, ifname: str) -> List[str]:
        """The interface's IPv4 networks, "10.0.0.0/24", each once."""
        out: List[str] = []
        for a in self.addresses(ifname):
            if a.network not in out:
                out.append(a.network)
        return out


# -- changes


class RtnlEvent(NamedTuple):
    """kind: newaddr, deladdr, newlink, dellink, or overrun (events were lost: read the state again)."""
    kind: str
    index: int = 0
    address: Optional[Address] = None
    link: Optional[Link] = None


_KINDS = {RTM_NEWADDR: "newaddr", RTM_DELADDR: "deladdr", RTM_NEWLINK: "newlink", RTM_DELLINK: "dellink"}


class RtnlMonitor(nl.Subscription):
    """RTNLGRP_LINK and RTNLGRP_IPV4_IFADDR on their own socket: select() on fileno(), then read()."""

    def __init__(self, groups=(RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR)):
        super().__init__(NETLINK_ROUTE, groups, rcvbuf=1 << 20)

    def read(self) -> List[RtnlEvent]:
        msgs, lost = self.messages()
        out = []
        for mtype, _f, _s, body in msgs:
            kind = _KINDS.get(mtype)
            try:
                if kind in ("newaddr", "deladdr"):
                    a = parse_addr(body)
                    if a is not None:
                        out.append(RtnlEvent(kind, a.index, address=a))
                elif kind is not None:
                    link = parse_link(body)
                    if link is not None:
                        out.append(RtnlEvent(kind, link.index, link=link))
            except ValueError:
                lost = True                              # undecodable: as good as lost, read the state again
        if lost:
            out.append(RtnlEvent("overrun"))
        return out
