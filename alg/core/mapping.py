"""The sender's addresses, mapped across the NAT: one rule for both directions.

As nf_nat_sip's map_addr() does, every header and URI rewrite asks one
question: does this (ip, port) belong to the device this message is about,
and what is it on the other side?

  OUT  an address of the sending LAN device (any port of its ip) maps to the
       WAN address and the port of that ip:port's binding (its own port when
       it has none); bind() also makes the signalling binding a Contact or
       Via port needs when the policy gives it one, and maps it to the
       source port's binding otherwise.
  IN   the WAN address with the port of one of this device's signalling
       bindings maps back to that binding's LAN ip:port.

Everything else (other hosts, hostnames, public addresses a STUN phone
writes) maps to None and is left as it is.
"""

from .result import OUT
from .bindings import SIP, IDLE
from .events import Refused


def signalling_binding(table, policy, lan, ctx):
    """The signalling binding of a LAN ip:port, made if the policy allows (None when
    refused, with the Refused event); each use keeps it alive for the idle time."""
    now = ctx.now
    until = policy.idle_until(now)
    b = table.lookup_lan(lan)
    created = False
    if b is None:
        why = policy.port_refusal(lan[1])
        if why is None:
            try:
                b, created = table.bind_signalling(lan, until)
            except ValueError as e:
                why = str(e)
        if why is not None:
            ctx.events.append(Refused("signalling", lan, why))
            return None
        if ctx.from_lan and ctx.remote is not None:
            b.peers = table.shared_peers((ctx.remote[0],))   # where the device sends: its first peer
    table.hold(b, IDLE, until, now, ctx, created, ctx.remote if ctx.from_lan else None)
    ctx.bound.append(b)
    return b


class AddressMap:
    __slots__ = ("direction", "lan_ip", "wan_ip", "table", "policy", "ctx", "first")

    def __init__(self, direction, lan_ip, wan_ip, table, policy, ctx, first):
        self.direction = direction
        self.lan_ip = lan_ip      # the device's LAN ip (text)
        self.wan_ip = wan_ip      # the router's WAN ip (text)
        self.table = table
        self.policy = policy
        self.ctx = ctx
        self.first = first        # the binding the datagram itself crosses

    def map(self, ip, port):
        """(ip, port) on the other side, or None when it isn't the device's."""
        if self.direction == OUT:
            if ip != self.lan_ip:
                return None
            b = self.table.lookup_lan((ip, port))
            return (self.wan_ip, b.wan[1] if b is not None else port)
        if ip != self.wan_ip:
            return None
        b = self.table.lookup_wan(port)
        if b is None or b.kind != SIP or b.lan[0] != self.lan_ip:
            return None
        return b.lan

    def bind(self, ip, port):
        """As map(), making (OUT) the signalling binding a Contact or Via port needs:
        its own for a SIP port, else the source port's (policy.own_binding_port)."""
        if self.direction != OUT:
            return self.map(ip, port)
        if ip != self.lan_ip:
            return None
        first = self.first
        if port == first.lan[1] or not self.policy.own_binding_port(port, first.lan[1]):
            return (self.wan_ip, first.wan[1])        # held for this datagram already
        b = signalling_binding(self.table, self.policy, (ip, port), self.ctx)
        if b is None:                                 # refused (a cap): the one flow known to work
            return (self.wan_ip, first.wan[1])
        return (self.wan_ip, b.wan[1])
