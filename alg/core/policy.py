"""Who may get a binding or a pinhole, for which LAN address and port, for how long.

An ALG opens the firewall on the say-so of packet contents, so every such
decision is made here and nowhere else; the rest of the core asks.  The
rules, as they stand:

  LAN          a sender is on the LAN when its address is inside lan_nets.
  signalling   a LAN device gets a signalling binding for the port it sends
               from, and for any port of its own address its Contact or
               top Via names (the registrar must reach what it registers).
  media        a media description of the device's own address gets an
               RTP/RTCP pinhole pair only when both ports lie inside
               rtp_ports and neither is a SIP port.
  how long     a signalling binding lives sip_idle seconds after its last
               packet, or as long as the longest registration (granted
               expires capped at max_expires, plus registration_margin) or
               call holding it; a call's media lives early_media_timeout
               until it is answered, then call_timeout after the last
               INVITE/UPDATE; a transaction's Via is remembered for
               transaction_timeout.

Refusals carry one of the fixed reasons below, so logs and counters can
group by them.
"""

from .addr import Network

# Refusal reasons (Refused.reason).
OUTSIDE_RTP_RANGE = "media port outside rtp_ports or a SIP port"
NO_FREE_PORT = "no free WAN port"


class Policy:
    def __init__(self, config):
        self.configure(config)

    def configure(self, config):
        """The rules of config from the next decision on (a reload)."""
        self.config = config
        self.lan_nets = [Network(n) for n in config.lan_nets]
        self.rtp_lo, self.rtp_hi = config.rtp_ports
        self.sip_ports = tuple(config.sip_ports)
        self._lan_cache = {}

    # -- who is on the LAN

    def on_lan(self, ip):
        try:
            return self._lan_cache[ip]
        except KeyError:
            pass
        inside = False
        for n in self.lan_nets:
            if ip in n:
                inside = True
                break
        if len(self._lan_cache) >= 256:     # a few LAN devices repeat; junk must not grow it
            self._lan_cache.clear()
        self._lan_cache[ip] = inside
        return inside

    # -- media

    def media_refusal(self, rtp_port, rtcp_port):
        """Why a media description's ports get no pinhole, or None when they may."""
        lo = self.rtp_lo
        hi = self.rtp_hi
        sip = self.sip_ports
        if (lo <= rtp_port <= hi and lo <= rtcp_port <= hi
                and rtp_port not in sip and rtcp_port not in sip):
            return None
        return OUTSIDE_RTP_RANGE

    # -- how long

    def idle_until(self, now):
        """A signalling binding's life after a packet, as MASQUERADE would have given it."""
        return now + self.config.sip_idle

    def registration_secs(self, granted):
        """The lifetime the ALG honours for what the registrar granted."""
        return min(granted, self.config.max_expires)

    def registration_until(self, secs, now):
        """Held a little longer than granted, so a late refresh still finds the binding."""
        return now + secs + self.config.registration_margin

    def call_until(self, confirmed, now):
        """How long a call's media stays open without signalling, by call state."""
        if confirmed:
            return now + self.config.call_timeout
        return now + self.config.early_media_timeout

    def transaction_until(self, now):
        return now + self.config.transaction_timeout
