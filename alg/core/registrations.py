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
from .policy import HOST_REGISTRATIONS, REGISTRATIONS
from .result import refuse

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
    """One contact the registrar accepted for a LAN device.

    Its key, ("registration", Call-ID, LAN ip:port), is also its timer's key
    and the owner under which it holds its binding: one tuple per
    registration, however many tables name it."""

    __slots__ = ("key", "aor", "wan", "expires_at")

    def __init__(self, key, aor, wan, expires_at):
        self.key = key
        self.aor = aor
        self.wan = wan
        self.expires_at = expires_at

    @property
    def call_id(self):
        return self.key[1]

    @property
    def lan(self):
        return self.key[2]

    def owner(self):
        """The key under which this registration holds its binding."""
        return self.key


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
    """Pending REGISTERs by (Call-ID, CSeq), and accepted registrations by their key.

    Listed per LAN host: the caps count them there, and a Contact: * or a
    keep-alive looks only at its own host's, never at them all."""

    def __init__(self, policy, table, timers):
        self.policy = policy
        self.table = table
        self.timers = timers
        self._pending = {}       # (call_id, cseq) -> PendingRegister
        self._pending_host = {}  # LAN ip -> number pending
        self._regs = {}          # (EXPIRY, call_id, lan) -> Registration
        self._by_host = {}       # LAN ip -> [key, ...]: at most limit_host_registrations

    def __len__(self):
        return len(self._regs)

    def all(self):
        return list(self._regs.values())

    def is_registered(self, lan):
        for key in self._by_host.get(lan[0], ()):
            if key[2] == lan:
                return True
        return False

    def host_registrations(self, ip):
        return len(self._by_host.get(ip, ()))

    # -- handlers (engine.py's method table)

    def request(self, msg, ctx):
        """A REGISTER from the LAN, after its Contacts were mapped to the WAN."""
        if not ctx.from_lan:
            return None
        call_id = msg.call_id()
        cseq = msg.cseq()[0]
        if call_id is None or cseq is None:
            return None
        to = msg.value(b"to")
        phone = ctx.binding.lan
        p = PendingRegister(call_id, cseq, phone, to if to is not None else b"", _expires_value(msg))
        wan_ip = ctx.wan_ip
        seen = {}
        for h in msg.get_all(b"contact"):
            for ip, port, exp in contacts(h):
                if ip == "*":
                    p.remove_all = True
                    continue
                if ip == wan_ip:
                    b = self.table.lookup_wan(port)
                    if b is not None and b.lan[0] == phone[0] and b.lan not in seen:
                        seen[b.lan] = True
                        p.contacts.append((b.lan, b.wan, exp))
        why = self._over_cap(p)
        if why is not None:
            return refuse(ctx, "registration", phone, why)
        key = (call_id, cseq)
        if key not in self._pending:
            self._pending_host[phone[0]] = self._pending_host.get(phone[0], 0) + 1
        self._pending[key] = p
        self.timers.schedule((PENDING, key), self.policy.transaction_until(ctx.now))
        return None

    def _over_cap(self, p):
        """The cap a REGISTER would pass, or None."""
        host = p.phone[0]
        lim = self.policy.limit
        if self._pending_host.get(host, 0) >= lim("limit_host_transactions") or \
                len(self._pending) >= lim("limit_transactions"):
            return HOST_REGISTRATIONS if self._pending_host.get(host, 0) >= lim("limit_host_transactions") \
                else REGISTRATIONS
        asked = p.expires
        new = 0
        for lan, wan, exp in p.contacts:
            secs = exp if exp is not None else asked
            if secs != 0 and (EXPIRY, p.call_id, lan) not in self._regs:
                new += 1
        if not new:
            return None
        if self.host_registrations(host) + new > lim("limit_host_registrations"):
            return HOST_REGISTRATIONS
        if len(self._regs) + new > lim("limit_registrations"):
            return REGISTRATIONS
        return None

    def response(self, msg, ctx):
        """The registrar's answer: register, refresh or remove each contact; map them back."""
        if ctx.from_lan or msg.status < 200:
            return None
        key = (msg.call_id(), msg.cseq()[0])
        p = self._forget_pending(key)
        if p is None:
            return None
        self.timers.cancel((PENDING, key))
        if msg.status >= 300:
            return None
        self._accepted(msg, p, ctx)
        n = 0
        for h in msg.get_all(b"contact"):
            n += map_header_uris(h, ctx.map.map)
        if n:
            ctx.notes.append(("Contact x%d -> LAN", n))
        return None

    def _forget_pending(self, key):
        p = self._pending.pop(key, None)
        if p is not None:
            host = p.phone[0]
            n = self._pending_host.get(host, 1) - 1
            if n > 0:
                self._pending_host[host] = n
            else:
                self._pending_host.pop(host, None)
        return p

    def _accepted(self, msg, p, ctx):
        call_id = p.call_id
        now = ctx.now
        listed = []
        for h in msg.get_all(b"contact"):
            listed.extend(contacts(h))
        eh = _expires_value(msg)
        if p.remove_all:
            for key in [k for k in self._by_host.get(p.phone[0], ()) if k[1] == call_id]:
                self._remove(key, now, ctx, "registrar")
        for lan_wan in p.contacts:
            secs = granted_expires(p, lan_wan, listed, eh)
            lan = lan_wan[0]
            key = (EXPIRY, call_id, lan)
            if secs <= 0:
                if not self._remove(key, now, ctx, "registrar"):
                    ctx.events.append(Deregistered(p.aor, lan, "registrar"))
                continue
            secs = self.policy.registration_secs(secs)
            until = self.policy.registration_until(secs, now)
            reg = self._regs.get(key)
            if reg is None:
                listed_here = self._by_host.get(lan[0])
                if listed_here is None:
                    self._by_host[lan[0]] = [key]
                else:
                    listed_here.append(key)
            else:
                key = reg.key               # the tuple the timer and the binding's owners already hold
            reg = Registration(key, p.aor, lan_wan[1], now + secs)
            self._regs[key] = reg
            self.timers.schedule(key, until)
            b = self.table.lookup_lan(lan)
            if b is not None:
                self.table.hold(b, reg.owner(), until, now, ctx)
            ctx.events.append(Registered(p.aor, lan, lan_wan[1], secs))

    def _remove(self, key, now, out, why):
        """Forget a registration and let go of its binding; False when there was none."""
        reg = self._regs.pop(key, None)
        self.timers.cancel(key)
        lan = key[2]
        if reg is None:
            self.table.release(lan, key, now, out)
            return False
        listed_here = self._by_host[lan[0]]
        listed_here.remove(key)
        if not listed_here:
            del self._by_host[lan[0]]
        out.events.append(Deregistered(reg.aor, lan, why))
        self.table.release(lan, reg.owner(), now, out)
        return True

    # -- timers

    def expire_pending(self, key, now, out):
        self._forget_pending(key[1])

    def expire(self, key, now, out):
        self._remove(key, now, out, "expired")
