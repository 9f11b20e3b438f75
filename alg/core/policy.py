"""Who may get a binding or a pinhole, for which LAN address and port, admitting whom, for how long.

An ALG opens the firewall on the say-so of packet contents, so every such
decision is made here and nowhere else; the rest of the core asks.  The
rules (stricter than the kernel's nf_conntrack_sip with its defaults):

  direction    the shell says from which interface a datagram came; a LAN
               sender must be inside lan_nets and not in exclude (hosts the ALG
               leaves alone, e.g. a PBX doing its own NAT traversal), and a datagram from the WAN
               side whose source is a LAN, loopback or unspecified address,
               or the router's own, creates nothing (SPOOFED).
  ports        never a binding or pinhole for a LAN port below 1024 (or
               outside 1-65535), never a WAN port the router itself uses
               (its listeners, port forwards, other DNATs: the shell keeps
               reserve_wan_ports() current), never a WAN port freed less
               than port_reuse_delay ago.
  signalling   a LAN device gets a signalling binding for the port it sends
               from.  A Contact or top Via of its own address naming another
               port gets a binding of its own only when that port is a
               configured SIP port; otherwise it is mapped to the source
               port's binding, the one flow known to reach the device (as
               rport does for responses), so the registrar still reaches it.
  peers        a signalling binding admits new inbound flows only from the
               addresses its device sent SIP to and the hosts their
               Record-Route/Path name (the shell adds the user's sip_peer
               list); at most limit_binding_peers each.
  media        a media description of the device's own address gets an
               RTP/RTCP pinhole pair only when both ports lie inside
               rtp_ports and neither is a SIP port.  A pinhole admits only
               the far end's media address from its SDP, from the moment that
               SDP is seen; nothing before.  Where that address can't be the
               real sender (private, loopback, link-local, multicast,
               reserved, or of the other family), the signalling peer's
               address is admitted instead.  media_from "any" relaxes this:
               anyone until the far end is known (RFC 4787 endpoint-
               independent filtering), then the far end.
  caps         per LAN host: limit_host_bindings signalling bindings,
               limit_host_registrations registrations, limit_host_calls
               calls, limit_sdp_media media descriptions per SDP; in all:
               limit_bindings, limit_registrations, limit_calls,
               limit_transactions.  A message that would pass a cap passes
               unmodified and is refused with the cap's reason.
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

from .addr import Network, in_any

# Refusal reasons (Refused.reason).
OUTSIDE_RTP_RANGE = "media port outside rtp_ports or a SIP port"
NO_FREE_PORT = "no free WAN port"
PRIVILEGED_PORT = "port below 1024 or not a port"
SPOOFED = "WAN-side datagram from a LAN, loopback or router address"
HOST_BINDINGS = "host at limit_host_bindings"
HOST_REGISTRATIONS = "host at limit_host_registrations"
HOST_CALLS = "host at limit_host_calls"
SDP_MEDIA = "SDP over limit_sdp_media"
BINDINGS = "router at limit_bindings"
REGISTRATIONS = "router at limit_registrations"
CALLS = "router at limit_calls"
PEERS = "binding at limit_binding_peers"

# A pinhole's remote that admits anyone (media_from "any", before the far end is known).
ANYONE = ("0.0.0.0", 0)

# Addresses a media sender across the internet can't have: private and shared
# (RFC 1918, 6598), loopback, link-local, multicast and reserved, unspecified.
# (Documentation ranges are left out: nobody's SDP names them but a lab's.)
_NOT_A_SENDER = [Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/3",
    "::/127", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8")]
_LOOPBACK = [Network("127.0.0.0/8"), Network("0.0.0.0/8"), Network("::1/128"), Network("::/128")]


class Policy:
    def __init__(self, config):
        self.reserved = {}           # WAN port -> True: the router's own (reserve_wan_ports)
        self.configure(config)

    def configure(self, config):
        """The rules of config from the next decision on (a reload)."""
        self.config = config
        self.lan_nets = [Network(n) for n in config.lan_nets]
        self.excluded_nets = [Network(n) for n in config.exclude]
        self.rtp_lo, self.rtp_hi = config.rtp_ports
        self.sip_ports = tuple(config.sip_ports)
        self._lan_cache = {}

    # -- who is where

    def on_lan(self, ip):
        try:
            return self._lan_cache[ip]
        except KeyError:
            pass
        # an excluded host is left alone: the ALG treats it as not there
        inside = in_any(ip, self.lan_nets) and not self.excluded(ip)
        if len(self._lan_cache) >= 256:     # a few LAN devices repeat; junk must not grow it
            self._lan_cache.clear()
        self._lan_cache[ip] = inside
        return inside

    def excluded(self, ip):
        return in_any(ip, self.excluded_nets)

    def spoofed(self, ip, wan_ip):
        """A WAN-side source that can only be forged: a LAN, loopback, unspecified or router address."""
        return ip == wan_ip or self.on_lan(ip) or self.excluded(ip) or in_any(ip, _LOOPBACK)

    # -- ports

    def port_refusal(self, port):
        """Why a LAN port gets no binding at all, or None."""
        if not isinstance(port, int) or port < 1024 or port > 65535:
            return PRIVILEGED_PORT
        return None

    def own_binding_port(self, port, source_port):
        """Whether a Contact/Via port of the sender gets a signalling binding of its own
        (else it maps to the source port's binding)."""
        return port == source_port or (port in self.sip_ports and self.port_refusal(port) is None)

    def reserve_wan_ports(self, ports):
        """The WAN ports the router itself uses now; no new binding takes them."""
        self.reserved = dict((p, True) for p in ports)

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

    def media_source(self, sdp_addr, signalling_peer):
        """Whom a pinhole admits for the far end's SDP address (ip, port): itself when it can
        be the real sender, else the signalling peer's address (port 0: any port)."""
        ip = sdp_addr[0]
        if (":" in ip) == (":" in signalling_peer) and not self._fake_sender(ip):
            return sdp_addr
        return (signalling_peer, 0)

    def unknown_far_end(self):
        """What a pinhole admits before the far end's SDP is seen: nobody (None), or anyone."""
        return ANYONE if self.config.media_from == "any" else None

    def _fake_sender(self, ip):
        return in_any(ip, _NOT_A_SENDER)

    # -- caps

    def limit(self, name):
        return getattr(self.config, name)

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

    def reuse_after(self, now):
        """When a freed WAN port may be handed out again (stray packets of the old flow die down)."""
        return now + self.config.port_reuse_delay

