"""The NAT the ALG owns: LAN ip:port <-> WAN ip:port for UDP, and who holds each.

Port preservation first (a phone on 5060 shows up on 5060), the next free
port when two devices collide, chosen deterministically so the same
history always gives the same mapping.  Mapping is endpoint-independent
(RFC 4787 REQ-1): one WAN port per LAN ip:port, whatever the remote.
Media ports come in even/odd RTP/RTCP pairs from the configured range.
Whether a LAN port may have a binding at all is policy.py's to say; the
table keeps the WAN side's rules: never a port below 1024, one the router
uses itself (reserve_wan_ports), or one freed less than port_reuse_delay
ago.  Free ports are found with bytearray.find over a map of the 65,536
ports (and one of the 32,768 even/odd pairs): a bounded C-speed scan,
however full the table is.

A binding is held by owners (the idle timer of its last packet, each
registration and call using it), each until a deadline: it lives until
the last owner lets go, and every change the kernel must know about is an
action (open, refresh, move, close) plus an event for the log.  A
signalling binding also keeps its peers: the addresses its device sent
SIP to, the only ones the kernel lets start a new flow through it.
"""

from .actions import Action, OPEN, REFRESH, MOVE, CLOSE, SIGNALLING
from .events import (BindingOpened, BindingClosed, MediaOpened, MediaClosed, MediaNarrowed, MediaMoved,
                     PeerAdmitted)
from .policy import HOST_BINDINGS, BINDINGS, NO_FREE_PORT

SIP = SIGNALLING
RTP = "rtp"
RTCP = "rtcp"

# Timer kinds (timers.py keys are (kind, key)): a binding's own expiry, a freed port's rest.
EXPIRY = "binding"
REST = "port-rest"

# Owners that are not a registration or a call.
IDLE = "idle"            # the last packet through a signalling binding
RESTORED = "restored"    # found in the kernel after a daemon restart

FLOOR = 1024             # no WAN port below this, ever


class Binding:
    __slots__ = ("lan", "wan", "kind", "remote", "expires", "peers", "tag", "owners")

    def __init__(self, lan, wan, kind, expires=0.0, remote=None, peers=(), tag=None):
        self.lan = lan              # (ip, port) on the LAN
        self.wan = wan              # (ip, port) on the WAN
        self.kind = kind            # SIP, RTP or RTCP
        self.remote = remote        # media: (ip, port) the pinhole admits (port 0: any), None: nobody yet
        self.expires = expires      # absolute engine time
        self.peers = peers          # signalling: the remote ips that may start a flow through it
        self.tag = tag              # media: its call (dialogs.call_tag), kept in the kernel beside it
        self.owners = None          # (owner, deadline, owner, deadline, ...) (BindingTable's; None: nobody)

    def copy(self):
        return Binding(self.lan, self.wan, self.kind, self.expires, self.remote, self.peers, self.tag)

    def __repr__(self):
        return "<%s %s:%d=%s:%d until %.1f>" % (
            self.kind, self.lan[0], self.lan[1], self.wan[0] or "?", self.wan[1], self.expires)


class BindingTable:
    """Bindings by LAN and by WAN port, their allocation and their owners.

    timers: the engine's Timers; signalling bindings (and restored ones)
    expire by their own timer there, media bindings by their calls'.
    config: the engine's Config for the caps and port_reuse_delay (None: no caps, no rest)."""

    def __init__(self, wan_ip, rtp_ports=(1024, 65535), sip_ports=(5060,), timers=None, config=None):
        self.wan_ip = wan_ip
        self.timers = timers
        self._by_lan = {}
        self._by_wan = {}
        self._per_host = {}      # LAN ip -> number of signalling bindings
        self._resting = {}       # WAN port -> when it may be used again
        self._reserved = {}      # WAN port -> True: the router's own
        self._peer_sets = {}     # peers tuple -> the same tuple: phones of one server share one
        self._used = bytearray(65536)     # 1: bound, resting, reserved or below the floor
        self._pairs = bytearray(32768)    # 1: either port of the pair 2k, 2k+1 is
        for p in range(FLOOR):
            self._used[p] = 1
        for k in range(FLOOR // 2):
            self._pairs[k] = 1
        self.configure(rtp_ports, sip_ports, config)

    def configure(self, rtp_ports, sip_ports, config=None):
        """Where new bindings go from now on, and the caps; the ones there stay."""
        self.rtp_lo = rtp_ports[0]
        self.rtp_hi = rtp_ports[1]
        self.sip_ports = tuple(sip_ports)
        self.config = config

    def __len__(self):
        return len(self._by_lan)

    def all(self):
        return list(self._by_lan.values())

    def lookup_lan(self, lan):
        return self._by_lan.get(lan)

    def lookup_wan(self, wan_port):
        return self._by_wan.get(wan_port)

    def in_rtp_range(self, port):
        """Media may use this port: inside the range and not a SIP port."""
        return self.rtp_lo <= port <= self.rtp_hi and port not in self.sip_ports

    def host_bindings(self, ip):
        """How many signalling bindings a LAN host has."""
        return self._per_host.get(ip, 0)

    def _cap(self, name):
        c = self.config
        return getattr(c, name) if c is not None else 1 << 30

    # -- allocation

    def bind_signalling(self, lan, expires):
        """(binding, created) for a LAN ip:port; ValueError(reason) when refused or no WAN port is free."""
        b = self._by_lan.get(lan)
        if b is not None:
            return b, False
        if self._per_host.get(lan[0], 0) >= self._cap("limit_host_bindings"):
            raise ValueError(HOST_BINDINGS)
        if len(self._by_lan) >= self._cap("limit_bindings"):
            raise ValueError(BINDINGS)
        port = self._free_signalling_port(lan[1])
        if port is None:
            raise ValueError(NO_FREE_PORT)
        self._per_host[lan[0]] = self._per_host.get(lan[0], 0) + 1
        return self._add(Binding(lan, (self.wan_ip, port), SIP, expires)), True

    def _free_signalling_port(self, want):
        used = self._used
        if 0 < want < 65536 and not used[want]:
            return want
        lo, hi = self.rtp_lo, self.rtp_hi
        if hi < 65535:                      # jump over the media range
            spans = ((FLOOR, lo - 1), (hi + 1, 65535))
        else:
            spans = ((FLOOR, 65535),)
        # upward from want, then from the floor up to it
        start = want + 1 if want < 65535 else FLOOR
        for a, b in spans:
            if b >= start:
                p = used.find(b"\x00", max(a, start), b + 1)
                if p >= 0:
                    return p
        for a, b in spans:
            p = used.find(b"\x00", a, min(b, start - 1) + 1)
            if p >= 0:
                return p
        return None

    def bind_media(self, lan_ip, rtp_port, rtcp_port, expires):
        """(rtp, rtcp, created) for a media description, or None (the reason: cap or no free pair).

        The LAN ports are the policy's to allow (policy.media_refusal)."""
        by_lan = self._by_lan
        rtp = by_lan.get((lan_ip, rtp_port))
        rtcp = by_lan.get((lan_ip, rtcp_port))
        if rtp is not None and rtcp is not None:
            return rtp, rtcp, False
        if len(by_lan) + 2 > self._cap("limit_bindings"):
            return None
        if rtp is not None or rtcp is not None:
            # half of the pair is known (a=rtcp moved): keep it, add the other
            have = rtp if rtp is not None else rtcp
            port = self._free_single(have.wan[1] + (1 if rtp is not None else -1))
            if port is None:
                return None
            if rtp is None:
                rtp = self._add(Binding((lan_ip, rtp_port), (self.wan_ip, port), RTP, expires))
            else:
                rtcp = self._add(Binding((lan_ip, rtcp_port), (self.wan_ip, port), RTCP, expires))
            return rtp, rtcp, True
        if rtcp_port == rtp_port + 1:
            pair = self._free_pair(rtp_port)
            if pair is None:
                return None
            wan_rtp, wan_rtcp = pair
        else:
            wan_rtp = self._free_single(rtp_port)
            if wan_rtp is None:
                return None
            self._mark(wan_rtp, 1)                  # held while the second is chosen
            wan_rtcp = self._free_single(rtcp_port)
            self._mark(wan_rtp, 0)
            if wan_rtcp is None:
                return None
        rtp = self._add(Binding((lan_ip, rtp_port), (self.wan_ip, wan_rtp), RTP, expires))
        rtcp = self._add(Binding((lan_ip, rtcp_port), (self.wan_ip, wan_rtcp), RTCP, expires))
        return rtp, rtcp, True

    def _media_port_free(self, p):
        return self.rtp_lo <= p <= self.rtp_hi and not self._used[p] and p not in self.sip_ports

    def _free_pair(self, want):
        """An RTP port and the next for RTCP: want itself when free, else the next free
        even/odd pair upward in the range, wrapping around."""
        if self._media_port_free(want) and want < 65535 and self._media_port_free(want + 1):
            return want, want + 1
        k_lo = (self.rtp_lo + 1) >> 1                # first pair wholly inside the range
        k_hi = (self.rtp_hi - 1) >> 1                # last one
        k = (want >> 1) + 1
        if k > k_hi or k < k_lo:
            k = k_lo
        pairs = self._pairs
        for a, b in ((k, k_hi), (k_lo, k - 1)):
            while a <= b:
                f = pairs.find(b"\x00", a, b + 1)
                if f < 0:
                    break
                p = f * 2
                if p not in self.sip_ports and p + 1 not in self.sip_ports:
                    return p, p + 1
                a = f + 1
        return None

    def _free_single(self, want):
        lo, hi = self.rtp_lo, self.rtp_hi
        if want < lo or want > hi:
            want = lo
        used = self._used
        for a, b in ((want, hi), (lo, want - 1)):
            while a <= b:
                p = used.find(b"\x00", a, b + 1)
                if p < 0:
                    break
                if p not in self.sip_ports:
                    return p
                a = p + 1
        return None

    def _mark(self, port, v):
        self._used[port] = v
        k = port >> 1
        self._pairs[k] = 1 if (self._used[2 * k] or self._used[2 * k + 1]) else 0

    def _settle(self, port):
        """Recompute whether port is free after one of its reasons went away."""
        busy = (port < FLOOR or port in self._by_wan or port in self._resting or port in self._reserved)
        self._mark(port, 1 if busy else 0)

    def _add(self, b):
        self._by_lan[b.lan] = b
        self._by_wan[b.wan[1]] = b
        self._mark(b.wan[1], 1)
        return b

    def remove(self, b, now=None):
        """Take b out of the table; its WAN port rests port_reuse_delay from now (when known)."""
        if self._by_lan.get(b.lan) is b:
            del self._by_lan[b.lan]
            if b.kind == SIP:
                n = self._per_host.get(b.lan[0], 1) - 1
                if n > 0:
                    self._per_host[b.lan[0]] = n
                else:
                    self._per_host.pop(b.lan[0], None)
        port = b.wan[1]
        if self._by_wan.get(port) is b:
            del self._by_wan[port]
            delay = self.config.port_reuse_delay if self.config is not None else 0
            if now is not None and delay > 0 and self.timers is not None:
                self._resting[port] = now + delay
                self.timers.schedule((REST, port), now + delay)
            self._settle(port)

    def rested(self, key, now, out):
        """A freed port's rest is over (timer (REST, port))."""
        port = key[1]
        self._resting.pop(port, None)
        self._settle(port)

    def reserve_wan_ports(self, ports):
        """The WAN ports the router itself uses now (listeners, port forwards, DNATs):
        no new binding takes them.  Bindings already on one keep it."""
        old = self._reserved
        self._reserved = dict((p, True) for p in ports if 0 < p < 65536)
        for p in old:
            if p not in self._reserved:
                self._settle(p)
        for p in self._reserved:
            self._mark(p, 1)

    def set_wan_ip(self, ip):
        """Renumbering: every binding keeps its port on the new address; returns how many moved."""
        self.wan_ip = ip
        n = 0
        for b in self._by_lan.values():
            if b.wan[0] != ip:
                b.wan = (ip, b.wan[1])
                n += 1
        return n

    def restore(self, b):
        """Put back a binding the kernel still holds (daemon restart), held until it expires."""
        other = self._by_wan.get(b.wan[1])
        if other is not None and other.lan != b.lan:
            raise ValueError("WAN port %d is already bound to %s:%d" % (b.wan[1], other.lan[0], other.lan[1]))
        old = self._by_lan.get(b.lan)
        if old is not None:
            self.remove(old)
        if b.kind == SIP:
            self._per_host[b.lan[0]] = self._per_host.get(b.lan[0], 0) + 1
        self._add(b)
        b.owners = (RESTORED, b.expires)
        if self.timers is not None:
            self.timers.schedule((EXPIRY, b.lan), b.expires)

    # -- owners

    def held(self, b):
        """Whether anyone holds b yet (a binding nobody holds is not in the kernel)."""
        return b.owners is not None

    def hold(self, b, owner, deadline, now, out, created=False, toward=None):
        """Let owner keep b open until deadline; tell the kernel when that moves its expiry.

        out collects actions and events (a message's context or an expiry's outcome); toward is
        the (ip, port) a new binding's first datagram goes to (its OPEN action carries it).
        An owner that is a tuple (a registration's or a call's key) has a timer of its own that
        lets go of b at its deadline; a str (IDLE, RESTORED) has none."""
        lan = b.lan
        owners = b.owners
        if owners is None:
            owners = b.owners = (owner, deadline)
            until = deadline
        else:
            until = _hold(b, owner, deadline)
        if created:
            b.expires = until
            snap = b.copy()
            out.actions.append(Action(OPEN, snap, dst=toward))
            out.events.append(BindingOpened(snap) if b.kind == SIP else MediaOpened(snap))
        else:
            expires = b.expires
            if until > expires:
                # refresh the kernel only when the expiry moves by a tenth of its span (>= 1 s)
                slack = (until - now) / 10
                if until <= expires + (slack if slack > 1 else 1):
                    return
            elif until == expires:
                return
            b.expires = until
            out.actions.append(Action(REFRESH, b.copy()))
        # A media binding that only calls hold needs no timer of its own: each
        # call's timer lets go of it, and the last one closes it.
        if b.kind == SIP:
            self._own_timer(b, until)
        elif _owner_index(b.owners, RESTORED) >= 0:
            self.timers.schedule((EXPIRY, lan), until)

    def _own_timer(self, b, until):
        """A signalling binding's own timer runs only while an owner without one (its last
        packet's idle time, a restored binding) holds the latest deadline: where a registration
        holds it, the registration's timer lets go of it in time, so 10k registered phones need
        10k timers, not 20k."""
        key = (EXPIRY, b.lan)
        owners = b.owners
        for i in range(0, len(owners), 2):
            if owners[i + 1] == until and type(owners[i]) is str:
                if self.timers.deadline(key) != until:
                    self.timers.schedule(key, until)
                return
        self.timers.cancel(key)

    def release(self, lan, owner, now, out):
        """owner lets go of the binding at lan; the last one closes it."""
        b = self._by_lan.get(lan)
        owners = b.owners if b is not None else None
        if owners is None:
            return
        owners = b.owners = _let_go(owners, owner)
        if b.kind != SIP:
            if not owners:
                self.close(b, now, out)
            return
        # A signalling binding outlives its registrations by the idle time
        # since its last packet, as MASQUERADE would have kept it.
        until = _latest(owners) if owners else now
        if until <= now:
            self.close(b, now, out)
            return
        if until != b.expires:
            b.expires = until
            out.actions.append(Action(REFRESH, b.copy()))
        self._own_timer(b, until)

    def close(self, b, now, out):
        self.remove(b, now)
        b.owners = None
        self.timers.cancel((EXPIRY, b.lan))
        out.actions.append(Action(CLOSE, b))
        out.events.append(BindingClosed(b) if b.kind == SIP else MediaClosed(b))

    def expire(self, key, now, out):
        """The binding's own timer (EXPIRY, lan) fired."""
        b = self._by_lan.get(key[1])
        if b is not None:
            self.close(b, now, out)

    def admit(self, b, remote, out):
        """Let only remote's media through b (move the pinhole when it changed); True if it did."""
        if b.remote == remote:
            return False
        old = b.copy()
        b.remote = remote
        snap = b.copy()
        out.actions.append(Action(MOVE, snap, old=old))
        out.events.append(MediaNarrowed(snap) if old.remote is None else MediaMoved(snap, old.remote))
        return True

    def shared_peers(self, peers):
        """The one tuple every binding with these peers holds: a thousand phones of one
        registrar hold one (registrar,), not a thousand.  Forgotten wholesale past 256."""
        shared = self._peer_sets.get(peers)
        if shared is None:
            if len(self._peer_sets) >= 256:
                self._peer_sets = {}
            shared = self._peer_sets[peers] = peers
        return shared

    def add_peer(self, b, ip, out):
        """Let ip start new flows through signalling binding b; False when b is at its peer cap."""
        peers = b.peers
        if ip in peers:
            return True
        if len(peers) >= self._cap("limit_binding_peers"):
            return False
        old = b.copy()
        b.peers = self.shared_peers(peers + (ip,))
        snap = b.copy()
        out.actions.append(Action(MOVE, snap, old=old))
        out.events.append(PeerAdmitted(snap, ip))
        return True


# Owners are one flat tuple of (owner, deadline) pairs, not a dict or a list: a binding has
# one to three of them, and 10k registrations' bindings would otherwise carry 10k small dicts
# (a tuple is one allocation, sized exactly; a change makes a new one).  Searches run in C:
# an owner (a str or a tuple) never equals a deadline (a float), so index() finds it.

def _owner_index(owners, owner):
    try:
        return owners.index(owner)
    except ValueError:
        return -1


try:
    max((0.0, 1.0)[1::2])

    def _latest(owners):
        """The latest deadline among the owners."""
        return max(owners[1::2])
except NotImplementedError:          # MicroPython: tuples have no stepped slices
    def _latest(owners):
        latest = owners[1]
        for i in range(3, len(owners), 2):
            if owners[i] > latest:
                latest = owners[i]
        return latest


def _hold(b, owner, deadline):
    """Set owner's deadline among b's owners; the latest deadline of them all."""
    owners = b.owners
    i = _owner_index(owners, owner)
    if i >= 0:
        owners = b.owners = owners[:i + 1] + (deadline,) + owners[i + 2:]
    else:
        owners = b.owners = owners + (owner, deadline)
    return _latest(owners) if len(owners) > 2 else deadline


def _let_go(owners, owner):
    """owners without owner's pair."""
    i = _owner_index(owners, owner)
    return owners if i < 0 else owners[:i] + owners[i + 2:]
