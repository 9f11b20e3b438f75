"""The NAT the ALG owns: LAN ip:port <-> WAN ip:port for UDP, and who holds each.

Port preservation first (a phone on 5060 shows up on 5060), the next free
port when two devices collide, chosen deterministically so the same
history always gives the same mapping.  Mapping is endpoint-independent
(RFC 4787 REQ-1): one WAN port per LAN ip:port, whatever the remote.
Media ports come in even/odd RTP/RTCP pairs from the configured range.
Whether a LAN port may have a binding at all is policy.py's to say.

A binding is held by owners (the idle timer of its last packet, each
registration and call using it), each until a deadline: it lives until
the last owner lets go, and every change the kernel must know about is an
action (open, refresh, move, close) plus an event for the log.
"""

from .actions import Action, OPEN, REFRESH, MOVE, CLOSE
from .events import BindingOpened, BindingClosed, MediaOpened, MediaClosed, MediaNarrowed, MediaMoved

SIP = "sip"
RTP = "rtp"
RTCP = "rtcp"

# Timer kind (timers.py keys are (kind, key)): a binding's own expiry.
EXPIRY = "binding"

# Owners that are not a registration or a call.
IDLE = "idle"            # the last packet through a signalling binding
RESTORED = "restored"    # found in the kernel after a daemon restart


class Binding:
    __slots__ = ("lan", "wan", "kind", "remote", "expires")

    def __init__(self, lan, wan, kind, expires=0.0, remote=None):
        self.lan = lan              # (ip, port) on the LAN
        self.wan = wan              # (ip, port) on the WAN
        self.kind = kind            # SIP, RTP or RTCP
        self.remote = remote        # media: (ip, port) of the far end once known
        self.expires = expires      # absolute engine time

    def copy(self):
        return Binding(self.lan, self.wan, self.kind, self.expires, self.remote)

    def __repr__(self):
        return "<%s %s:%d=%s:%d until %.1f>" % (
            self.kind, self.lan[0], self.lan[1], self.wan[0] or "?", self.wan[1], self.expires)


class BindingTable:
    """Bindings by LAN and by WAN port, their allocation and their owners.

    timers: the engine's Timers; signalling bindings (and restored ones)
    expire by their own timer there, media bindings by their calls'."""

    def __init__(self, wan_ip, rtp_ports=(1024, 65535), sip_ports=(5060,), timers=None):
        self.wan_ip = wan_ip
        self.configure(rtp_ports, sip_ports)
        self.timers = timers
        self._by_lan = {}
        self._by_wan = {}
        self._owners = {}        # lan -> {owner: deadline}

    def configure(self, rtp_ports, sip_ports):
        """Where new media bindings go from now on; the ones there stay."""
        self.rtp_lo = rtp_ports[0]
        self.rtp_hi = rtp_ports[1]
        self.sip_ports = tuple(sip_ports)

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

    def bind_signalling(self, lan, expires):
        """(binding, created) for a LAN ip:port; ValueError when no WAN port is free."""
        b = self._by_lan.get(lan)
        if b is not None:
            return b, False
        port = self._free_signalling_port(lan[1])
        if port is None:
            raise ValueError("no free WAN port for %s:%d" % lan)
        return self._add(Binding(lan, (self.wan_ip, port), SIP, expires)), True

    def _free_signalling_port(self, want):
        if want not in self._by_wan:
            return want
        port = want
        for _ in range(65536):
            port += 1
            if port > 65535:
                port = 1024
            if self.rtp_lo <= port <= self.rtp_hi and port not in self.sip_ports:
                if self.rtp_hi < 65535:
                    port = self.rtp_hi   # jump over the media range
                    continue
            if port not in self._by_wan:
                return port
        return None

    def bind_media(self, lan_ip, rtp_port, rtcp_port, expires):
        """(rtp, rtcp, created) for a media description, or None when no WAN pair is free.

        The LAN ports are the policy's to allow (policy.media_refusal)."""
        by_lan = self._by_lan
        rtp = by_lan.get((lan_ip, rtp_port))
        rtcp = by_lan.get((lan_ip, rtcp_port))
        if rtp is not None and rtcp is not None:
            return rtp, rtcp, False
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
            self._by_wan[wan_rtp] = None           # reserve while the second is chosen
            wan_rtcp = self._free_single(rtcp_port)
            del self._by_wan[wan_rtp]
            if wan_rtcp is None:
                return None
        rtp = Binding((lan_ip, rtp_port), (self.wan_ip, wan_rtp), RTP, expires)
        rtcp = Binding((lan_ip, rtcp_port), (self.wan_ip, wan_rtcp), RTCP, expires)
        by_wan = self._by_wan
        by_lan[rtp.lan] = rtp
        by_wan[wan_rtp] = rtp
        by_lan[rtcp.lan] = rtcp
        by_wan[wan_rtcp] = rtcp
        return rtp, rtcp, True

    def _pair_free(self, p):
        by_wan = self._by_wan
        return (p not in by_wan and p + 1 not in by_wan and self.rtp_lo <= p and p + 1 <= self.rtp_hi
                and p not in self.sip_ports and p + 1 not in self.sip_ports)

    def _free_pair(self, want):
        if self._pair_free(want):
            return want, want + 1
        start = want - (want & 1)
        lo = self.rtp_lo + (self.rtp_lo & 1)
        span = (self.rtp_hi - lo + 1) // 2
        p = start
        for _ in range(span + 1):
            p += 2
            if p + 1 > self.rtp_hi:
                p = lo
            if self._pair_free(p):
                return p, p + 1
        return None

    def _free_single(self, want):
        p = want
        for _ in range(self.rtp_hi - self.rtp_lo + 2):
            if self.in_rtp_range(p) and p not in self._by_wan:
                return p
            p += 1
            if p > self.rtp_hi:
                p = self.rtp_lo
        return None

    def _add(self, b):
        self._by_lan[b.lan] = b
        self._by_wan[b.wan[1]] = b
        return b

    def remove(self, b):
        if self._by_lan.get(b.lan) is b:
            del self._by_lan[b.lan]
        if self._by_wan.get(b.wan[1]) is b:
            del self._by_wan[b.wan[1]]

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
        self._add(b)
        self._owners[b.lan] = {RESTORED: b.expires}
        if self.timers is not None:
            self.timers.schedule((EXPIRY, b.lan), b.expires)

    # -- owners

    def held(self, b):
        """Whether anyone holds b yet (a binding nobody holds is not in the kernel)."""
        return b.lan in self._owners

    def hold(self, b, owner, deadline, now, out, created=False):
        """Let owner keep b open until deadline; tell the kernel when that moves its expiry.

        out collects actions and events (a message's context or an expiry's outcome)."""
        lan = b.lan
        owners = self._owners.get(lan)
        if owners is None:
            owners = self._owners[lan] = {owner: deadline}
            until = deadline
        else:
            owners[owner] = deadline
            until = max(owners.values()) if len(owners) > 1 else deadline
        if created:
            b.expires = until
            snap = b.copy()
            out.actions.append(Action(OPEN, snap))
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
        if b.kind == SIP or RESTORED in owners:
            self.timers.schedule((EXPIRY, lan), until)

    def release(self, lan, owner, now, out):
        """owner lets go of the binding at lan; the last one closes it."""
        owners = self._owners.get(lan)
        b = self._by_lan.get(lan)
        if owners is None or b is None:
            return
        owners.pop(owner, None)
        if b.kind != SIP:
            if not owners:
                self.close(b, out)
            return
        # A signalling binding outlives its registrations by the idle time
        # since its last packet, as MASQUERADE would have kept it.
        until = max(owners.values()) if owners else now
        if until <= now:
            self.close(b, out)
            return
        if until != b.expires:
            b.expires = until
            out.actions.append(Action(REFRESH, b.copy()))
            self.timers.schedule((EXPIRY, lan), until)

    def close(self, b, out):
        self.remove(b)
        self._owners.pop(b.lan, None)
        self.timers.cancel((EXPIRY, b.lan))
        out.actions.append(Action(CLOSE, b))
        out.events.append(BindingClosed(b) if b.kind == SIP else MediaClosed(b))

    def expire(self, lan, now, out):
        """The binding's own timer fired."""
        b = self._by_lan.get(lan)
        if b is not None:
            self.close(b, out)

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
