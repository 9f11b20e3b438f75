"""The NAT the ALG owns: LAN ip:port <-> WAN ip:port for UDP.

Port preservation first (a phone on 5060 shows up on 5060), the next free
port when two devices collide, chosen deterministically so the same
history always gives the same mapping.  Mapping is endpoint-independent
(RFC 4787 REQ-1): one WAN port per LAN ip:port, whatever the remote.
Media ports come in even/odd RTP/RTCP pairs and only from the configured
range, which is also the guard against NAT slipstreaming: a LAN host
can't get a WAN port pointed at, say, its port 22.
"""

SIP = "sip"
RTP = "rtp"
RTCP = "rtcp"


class Binding:
    __slots__ = ("lan", "wan", "kind", "remote", "expires", "owners")

    def __init__(self, lan, wan, kind, expires=0.0, remote=None):
        self.lan = lan              # (ip, port) on the LAN
        self.wan = wan              # (ip, port) on the WAN
        self.kind = kind            # SIP, RTP or RTCP
        self.remote = remote        # media: (ip, port) of the far end once known
        self.expires = expires      # absolute engine time
        self.owners = None          # left to the engine

    def copy(self):
        return Binding(self.lan, self.wan, self.kind, self.expires, self.remote)

    def __repr__(self):
        return "<%s %s:%d=%s:%d until %.1f>" % (
            self.kind, self.lan[0], self.lan[1], self.wan[0] or "?", self.wan[1], self.expires)


class BindingTable:
    def __init__(self, wan_ip, rtp_ports=(1024, 65535), sip_ports=(5060,)):
        self.wan_ip = wan_ip
        self.rtp_lo = rtp_ports[0]
        self.rtp_hi = rtp_ports[1]
        self.sip_ports = tuple(sip_ports)
        self._by_lan = {}
        self._by_wan = {}

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

    def bind_signalling(self, lan, now, expires):
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

    def bind_media(self, lan_ip, rtp_port, rtcp_port, now, expires):
        """(rtp, rtcp, created) for a media description, or None when refused.

        Refused when a LAN port lies outside the RTP range or no pair is free.
        """
        lo = self.rtp_lo
        hi = self.rtp_hi
        sip = self.sip_ports
        if not (lo <= rtp_port <= hi and lo <= rtcp_port <= hi
                and rtp_port not in sip and rtcp_port not in sip):
            return None
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
        """Renumbering: every binding keeps its port on the new address."""
        self.wan_ip = ip
        changed = []
        for b in self._by_lan.values():
            if b.wan[0] != ip:
                old = b.copy()
                b.wan = (ip, b.wan[1])
                changed.append((old, b))
        return changed

    def restore(self, b):
        """Put back a binding the kernel still holds (daemon restart)."""
        other = self._by_wan.get(b.wan[1])
        if other is not None and other.lan != b.lan:
            raise ValueError("WAN port %d is already bound to %s:%d" % (b.wan[1], other.lan[0], other.lan[1]))
        old = self._by_lan.get(b.lan)
        if old is not None:
            self.remove(old)
        self._add(b)
