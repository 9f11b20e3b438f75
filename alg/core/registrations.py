"""REGISTER lifetimes: what keeps a phone's signalling binding open.

A registration holds its binding for as long as the registrar granted
(Expires header, or the contact's expires parameter in the 2xx), so an
incoming INVITE finds the phone long after a conntrack entry would have
timed out, with no keep-alive traffic at all.

The REGISTER going out is remembered (by Call-ID and CSeq) with the
contacts it named on our WAN mapping; its final response decides: a 2xx
registers or removes each contact, anything else forgets the request.
"""

from .nameaddr import contacts, map_header_uris
from .events import Registered, Deregistered

PENDING = "pending-register"     # timer kinds
EXPIRY = "registration"

DEFAULT_EXPIRES = 3600   # RFC 3261 10.2.1.1 suggests one hour when neither says


class PendingRegister:
    """A REGISTER on its way to the registrar, waiting for the final response."""

    __slots__ = ("call_id", "cseq", "phone", "aor", "contacts", "expires", "remove_all")

    def __init__(self, call_id, cseq, phone, aor, expires):
        self.call_id = call_id
        self.cseq = cseq
        self.phone = phone          # LAN (ip, port) the REGISTER came from
        self.aor = aor              # To URI bytes, for status
        self.contacts = []          # [(lan (ip, port), wan (ip, port), requested expires or None)]
        self.expires = expires      # Expires header value or None
        self.remove_all = False     # Contact: *


class Registration:
    """One contact the registrar accepted for a LAN device."""

    __slots__ = ("call_id", "aor", "lan", "wan", "expires_at")

    def __init__(self, call_id, aor, lan, wan, expires_at):
        self.call_id = call_id
        self.aor = aor
        self.lan = lan
        self.wan = wan
        self.expires_at = expires_at

    def owner(self):
        """The key under which this registration holds its binding."""
        return ("reg", self.call_id, self.lan)


def granted_expires(pending, lan_wan, response_contacts, expires_header):
    """Seconds the registrar granted one of our contacts (0 = gone).

    RFC 3261 10.2.4: the 2xx lists every current contact of the AOR with its
    expires parameter.  When ours isn't recognisable there (a registrar may
    echo it with other parameters), fall back to what was asked: keeping a
    binding a little too long harms nobody, closing it early loses calls.
    """
    wan = lan_wan[1]
    for ip, port, exp in response_contacts:
        if ip == wan[0] and port == wan[1] and exp is not None:
            return exp
    if expires_header is not None:
        return expires_header
    if lan_wan[2] is not None:
        return lan_wan[2]
    if pending.expires is not None:
        return pending.expires
    return DEFAULT_EXPIRES


def _expires_value(msg):
    v = msg.value(b"expires")
    return int(v) if v is not None and v.isdigit() else None


class Registrations:
    """Pending REGISTERs and accepted registrations, by (Call-ID, LAN ip:port)."""

    def __init__(self, policy, table, timers):
        self.policy = policy
        self.table = table
        self.timers = timers
        self._pending = {}       # (call_id, cseq) -> PendingRegister
        self._regs = {}          # (call_id, lan) -> Registration
        self._per_lan = {}       # lan -> number of registrations

    def __len__(self):
        return len(self._regs)

    def all(self):
        return list(self._regs.values())

    def is_registered(self, lan):
        return lan in self._per_lan

    # -- handlers (engine.py's method table)

    def request(self, msg, ctx):
        """A REGISTER from the LAN, after its Contacts were mapped to the WAN."""
        if not ctx.from_lan:
            return
        call_id = msg.call_id()
        cseq = msg.cseq()[0]
        if call_id is None or cseq is None:
            return
        to = msg.value(b"to")
        phone = ctx.binding.lan
        p = PendingRegister(call_id, cseq, phone, to if to is not None else b"", _expires_value(msg))
        wan_ip = ctx.wan_ip
        for h in msg.get_all(b"contact"):
            for ip, port, exp in contacts(h):
                if ip == "*":
                    p.remove_all = True
                    continue
                if ip == wan_ip:
                    b = self.table.lookup_wan(port)
                    if b is not None and b.lan[0] == phone[0]:
                        p.contacts.append((b.lan, b.wan, exp))
        self._pending[(call_id, cseq)] = p
        self.timers.schedule((PENDING, (call_id, cseq)), self.policy.transaction_until(ctx.now))

    def response(self, msg, ctx):
        """The registrar's answer: register, refresh or remove each contact; map them back."""
        if ctx.from_lan or msg.status < 200:
            return
        key = (msg.call_id(), msg.cseq()[0])
        p = self._pending.pop(key, None)
        if p is None:
            return
        self.timers.cancel((PENDING, key))
        if msg.status >= 300:
            return
        self._accepted(msg, p, ctx)
        n = 0
        for h in msg.get_all(b"contact"):
            n += map_header_uris(h, ctx.map.map)
        if n:
            ctx.notes.append(("Contact x%d -> LAN", n))

    def _accepted(self, msg, p, ctx):
        call_id = p.call_id
        now = ctx.now
        listed = []
        for h in msg.get_all(b"contact"):
            listed.extend(contacts(h))
        eh = _expires_value(msg)
        if p.remove_all:
            for key in list(self._regs):
                if key[0] == call_id and key[1][0] == p.phone[0]:
                    self._remove(key, now, ctx, "registrar")
        for lan_wan in p.contacts:
            secs = granted_expires(p, lan_wan, listed, eh)
            lan = lan_wan[0]
            key = (call_id, lan)
            if secs <= 0:
                if not self._remove(key, now, ctx, "registrar"):
                    ctx.events.append(Deregistered(p.aor, lan, "registrar"))
                continue
            secs = self.policy.registration_secs(secs)
            until = self.policy.registration_until(secs, now)
            if key not in self._regs:
                self._per_lan[lan] = self._per_lan.get(lan, 0) + 1
            reg = Registration(call_id, p.aor, lan, lan_wan[1], now + secs)
            self._regs[key] = reg
            self.timers.schedule((EXPIRY, key), until)
            b = self.table.lookup_lan(lan)
            if b is not None:
                self.table.hold(b, reg.owner(), until, now, ctx)
            ctx.events.append(Registered(p.aor, lan, lan_wan[1], secs))

    def _remove(self, key, now, out, why):
        """Forget a registration and let go of its binding; False when there was none."""
        reg = self._regs.pop(key, None)
        self.timers.cancel((EXPIRY, key))
        lan = key[1]
        if reg is None:
            self.table.release(lan, ("reg", key[0], lan), now, out)
            return False
        n = self._per_lan.get(lan, 0) - 1
        if n > 0:
            self._per_lan[lan] = n
        else:
            self._per_lan.pop(lan, None)
        out.events.append(Deregistered(reg.aor, lan, why))
        self.table.release(lan, reg.owner(), now, out)
        return True

    # -- timers

    def expire_pending(self, key, now, out):
        self._pending.pop(key, None)

    def expire(self, key, now, out):
        self._remove(key, now, out, "expired")
