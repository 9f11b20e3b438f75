"""Conntrack hygiene: no flow outlives the mapping or the admission it was let in by.

A pinhole that narrows, moves or closes, and a binding that closes, leave
conntrack entries behind that still carry the old mapping: a stranger's
flow started before the far end was known would keep flowing after the
narrowing and even after the BYE, and a WAN port handed to another device
while the kernel holds the old device's flow on it crosses two calls'
audio.  So, for each of the engine's actions, the entries it makes stale
are deleted over ctnetlink (one persistent socket, one filtered dump and
one batch of deletes per case, no process):

  open    a new binding's WAN port: flows another LAN endpoint still has on it
  move    a media pinhole's far end changed: inbound flows from anyone else
  close   flows through the binding's WAN port, either way
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from alg.core import actions as A
from alg.core.bindings import SIP
from alg.core.policy import ANYONE
from alg.kernel.ctnetlink import Conntrack, Match
from alg.kernel.netlink import NetlinkError

log = logging.getLogger("sipalg")


class Hygiene:
    def __init__(self, conntrack: Optional[Conntrack] = None):
        self.ct = conntrack or Conntrack()
        self.deleted = 0           # entries deleted so far (status counter)
        self.errors = 0

    def close(self) -> None:
        self.ct.close()

    def apply(self, actions: Iterable[A.Action], wan_ip: Optional[str]) -> None:
        if wan_ip is None:
            return
        for a in actions:
            b = a.binding
            if b is None:
                continue
            try:
                if a.kind == A.OPEN:
                    self._opened(b, wan_ip)
                elif a.kind == A.MOVE and b.kind != SIP:
                    self._narrowed(b, wan_ip)
                elif a.kind == A.CLOSE:
                    self._closed(b.wan[1], wan_ip)
            except (NetlinkError, OSError) as e:
                self.errors += 1
                log.debug("conntrack hygiene for %r: %s", a, e)

    def _opened(self, b, wan_ip: str) -> None:
        port = b.wan[1]
        lan_ip, lan_port = b.lan
        ct = self.ct
        # outbound flows NATed to this port by someone else, inbound ones DNATed elsewhere
        self.deleted += ct.delete_flows(reply=Match(dst=wan_ip, dport=port),
                                        keep=lambda f: f.orig.src == lan_ip and f.orig.sport == lan_port)
        self.deleted += ct.delete_flows(orig=Match(dst=wan_ip, dport=port),
                                        keep=lambda f: f.reply.src == lan_ip and f.reply.sport == lan_port)

    def _narrowed(self, b, wan_ip: str) -> None:
        if b.remote is None or b.remote == ANYONE:
            return
        far = b.remote[0]
        self.deleted += self.ct.delete_flows(orig=Match(dst=wan_ip, dport=b.wan[1]),
                                             keep=lambda f: f.orig.src == far)

    def _closed(self, port: int, wan_ip: str) -> None:
        ct = self.ct
        self.deleted += ct.delete_flows(reply=Match(dst=wan_ip, dport=port))
        self.deleted += ct.delete_flows(orig=Match(dst=wan_ip, dport=port))

    def renumbered(self, old_wan: str) -> int:
        """The WAN address changed: flows NATed to the old one would keep it; let them start afresh."""
        n = self.ct.delete_flows(reply=Match(dst=old_wan))
        self.deleted += n
        return n
