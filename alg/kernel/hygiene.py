"""Conntrack hygiene: no flow outlives the mapping or the admission it was let in by.

A pinhole that narrows, moves or closes, and a binding that closes, leave
conntrack entries behind that still carry the old mapping: a stranger's
flow started before the far end was known would keep flowing after the
narrowing and even after the BYE, and a WAN port handed to another device
while the kernel holds the old device's flow on it crosses two calls'
audio.  So the entries an action makes stale are deleted over ctnetlink
(one persistent socket, no process):

  move    a pinhole's admitted far end changed: the old far end's flows go,
          and when anyone was admitted before (media_from 'any'), every flow
          from anyone but the new far end; and when the new far end was not
          admitted (nobody was: an offer's gate meets the answer; or another
          host was), its own first packets, which overtook the queued answer
          and ended at the router, before the answer's verdict
  close   the binding's flows, both ways
  readmit who may reach the bindings changed (a reload of inbound_sip or
          sip_peer): the flows to their WAN ports but their own peers'
          go, since NAT is chosen on a flow's first packet: a refused
          host's flow ended at the router itself and would stay so once
          admitted, and a host no longer admitted would keep its DNAT

A flow whose two tuples are known (the phone's own ip:port and the far end
its SDP named) is deleted by its tuple: one hash lookup in the kernel.
Where a side isn't known (a signalling binding's peers' ports, a far end
admitted by address only) a filtered dump finds them, which walks the
whole conntrack hash; so the work is queued by defer() and done by run()
after the packets' verdicts have gone out, never in front of SIP.  The
freed WAN port itself rests in the engine (port_reuse_delay) so a stray
packet of the old flow can't cross into a new one.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Optional

from alg.core import actions as A
from alg.core.bindings import SIP
from alg.core.policy import ANYONE
from alg.kernel.ctnetlink import Conntrack, Match, Tuple
from alg.kernel.netlink import NetlinkError

log = logging.getLogger("sipalg")
UDP = 17


class Hygiene:
    def __init__(self, conntrack: Optional[Conntrack] = None):
        self.ct = conntrack or Conntrack()
        self.deleted = 0           # entries deleted so far (status counter)
        self.errors = 0
        self._pending: List[A.Action] = []

    def close(self) -> None:
        self.ct.close()

    def clear_the_way(self, actions: Iterable[A.Action], wan_ip: Optional[str]) -> None:
        """Before the verdict: a new signalling binding's first datagram is NATed to its WAN port
        toward a known far end; a flow already holding that reply tuple for another LAN address
        (NATed by MASQUERADE while the daemon was busy or down) would make the kernel drop it as a
        clash.  One lookup by reply tuple per new binding (a hash lookup, no dump); the binding's
        own flow is left alone.  And a media gate the answer opens: the far end's flow that
        overtook the answer (see _overtaken), all of them in one delete."""
        if wan_ip is None:
            return
        overtaken = []
        for a in actions:
            b = a.binding
            if a.kind == A.MOVE and b is not None and b.kind != SIP:
                t = self._overtaken(b, a.old, wan_ip)
                if t is not None:
                    overtaken.append(t)
                continue
            if a.kind != A.OPEN or a.dst is None or b is None or b.kind != SIP:
                continue
            try:
                f = self.ct.by_reply(Tuple(a.dst[0], wan_ip, a.dst[1], b.wan[1], UDP))
                if f is not None and (f.orig.src, f.orig.sport) != tuple(b.lan) and self.ct.delete(f):
                    self.deleted += 1
                    log.info("conntrack: cleared %s:%d's flow to %s:%d from WAN port %d for %s:%d", f.orig.src,
                             f.orig.sport, a.dst[0], a.dst[1], b.wan[1], b.lan[0], b.lan[1])
            except (NetlinkError, OSError) as e:
                self.errors += 1
                log.debug("conntrack: clearing the way for %r: %s", a, e)
        if overtaken:
            try:
                n = self.ct.delete_all(overtaken)      # one sendmsg; gone already: ENOENT, not counted
                if n:
                    self.deleted += n
                    log.debug("conntrack: cleared %d flows that reached media ports before their gate opened", n)
            except (NetlinkError, OSError) as e:
                self.errors += 1
                log.debug("conntrack: clearing the way for media: %s", e)

    @staticmethod
    def _overtaken(b, old, wan_ip: str) -> Optional[Tuple]:
        """A media gate now admits a far end it did not admit (an answer names it: nobody or
        another host before).  The far end may send at once (RFC 3264 6: the answerer MAY send
        media immediately), and its first packet overtakes its answer, which waits in the queue:
        finding no gate it ended at the router itself, and conntrack keeps that flow, so every
        later packet would too (the phone deaf) and the phone's own media, whose reply tuple it
        holds, would be NATed to another port.  Its original tuple (symmetric RTP: it sends from
        the port it named), to delete before the answer reaches the phone; one the gate let in
        is DNATed and is only started afresh."""
        new = b.remote
        if old is None or new is None or new == ANYONE:
            return None
        if not new[1]:
            return None                 # a far end by address only: run() walks the port's flows
        was = old.remote
        if was is not None and (was == ANYONE or was[0] == new[0]):
            return None                 # the gate admitted that host already (by address)
        return Tuple(new[0], wan_ip, new[1], b.wan[1], UDP)

    def defer(self, actions: Iterable[A.Action]) -> None:
        """Remember what these actions make stale, for run()."""
        for a in actions:
            if a.binding is not None and (a.kind == A.CLOSE or (a.kind == A.MOVE and a.binding.kind != SIP)):
                self._pending.append(a)

    def run(self, wan_ip: Optional[str]) -> None:
        pending, self._pending = self._pending, []
        if wan_ip is None:
            return
        for a in pending:
            try:
                if a.kind == A.MOVE:
                    self._moved(a.binding, a.old, wan_ip)
                else:
                    self._closed(a.binding, wan_ip)
            except (NetlinkError, OSError) as e:
                self.errors += 1
                log.debug("conntrack hygiene for %r: %s", a, e)

    def _known(self, b, far, wan_ip: str) -> List[Tuple]:
        """The two flows of a media binding with a far end known to the port: the phone's, the far end's."""
        lan_ip, lan_port = b.lan
        return [Tuple(lan_ip, far[0], lan_port, far[1], UDP), Tuple(far[0], wan_ip, far[1], b.wan[1], UDP)]

    def _moved(self, b, old, wan_ip: str) -> None:
        was = old.remote if old is not None else None
        if was is None:
            if b.remote is not None and b.remote != ANYONE and not b.remote[1]:
                # admitted by address only: its early flows (see _overtaken) ended at the router
                self.deleted += self.ct.delete_flows(orig=Match(src=b.remote[0], dst=wan_ip, dport=b.wan[1]),
                                                     keep=lambda f: f.reply.src == b.lan[0])
            return                                      # nobody was let in before: nothing to undo
        if was == b.remote:
            return
        if was == ANYONE or was[1] == 0:
            keep = b.remote[0] if b.remote is not None and b.remote != ANYONE else None
            self.deleted += self.ct.delete_flows(orig=Match(dst=wan_ip, dport=b.wan[1]),
                                                 keep=lambda f: keep is not None and f.orig.src == keep)
            return
        self.deleted += self.ct.delete_all(self._known(b, was, wan_ip))

    def _closed(self, b, wan_ip: str) -> None:
        ct = self.ct
        port = b.wan[1]
        if b.kind != SIP:
            if b.remote is None:
                # nobody was ever let in; the phone's own early flows keep a mapping whose port
                # rests longer than they live (port_reuse_delay >= the UDP unreplied timeout)
                return
            if b.remote != ANYONE and b.remote[1]:
                self.deleted += ct.delete_all(self._known(b, b.remote, wan_ip))
                return
        self.deleted += ct.delete_flows(reply=Match(dst=wan_ip, dport=port))
        self.deleted += ct.delete_flows(orig=Match(dst=wan_ip, dport=port))

    def readmit(self, wan_ip: Optional[str], bindings: Iterable) -> int:
        """Who may reach the signalling bindings changed: forget every flow to their WAN ports but a
        binding's own peers' DNATed ones.  A refused host's flow ended at the router (un-DNATed) and
        would stay so once admitted; a host no longer admitted would keep its DNATed flow.  A host
        still admitted just starts a new flow with its next datagram."""
        if wan_ip is None:
            return 0
        peers = {b.wan[1]: set(b.peers) for b in bindings if b.kind == SIP}

        def keep(f) -> bool:
            port = f.orig.dport
            return port not in peers or (f.reply.src != wan_ip and f.orig.src in peers[port])
        n = self.ct.delete_flows(orig=Match(dst=wan_ip), keep=keep)
        self.deleted += n
        return n

    def renumbered(self, old_wan: str) -> int:
        """The WAN address changed: flows NATed to the old one would keep it; let them start afresh."""
        n = self.ct.delete_flows(reply=Match(dst=old_wan))
        self.deleted += n
        return n
