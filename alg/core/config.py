"""Engine settings.

The user-visible ones (lan_nets, sip_ports, rtp_ports, answer_keepalives)
come from alg/options.py on a router, which validates them; the defaults
here serve the core's own tests and tools and a test holds them equal to
the options table's.  The rest are tunables with no option yet.
"""


class Config:
    """Plain settings object (no dataclasses: MicroPython).

    wan_ip:        the router's public address as text, or None until known.
    lan_nets:      CIDR strings; a packet from inside them is outbound.
    sip_ports:     UDP ports that carry SIP (what the shell queues).
    rtp_ports:     (lo, hi) inclusive range media bindings may use, on both
                   sides: a LAN SDP naming a port outside it (or a SIP port)
                   opens nothing.  Phones' own ranges differ widely (Polycom
                   2222, Grandstream 5004, linphone 7078, Yealink 11780...),
                   so the default is every unprivileged port.
    answer_keepalives: "off" | "crlf" | "options" (see README).
    media_from:    "sdp" (a pinhole admits only the far end its SDP names) or
                   "any" (anyone until that SDP is seen); see policy.py.
    limit_*:       the caps of policy.py, per LAN host and in all.
    """

    # Caps, sized for a home or a small office (policy.py says what each bounds).
    LIMITS = {"limit_host_bindings": 8, "limit_host_registrations": 16, "limit_host_calls": 16,
              "limit_sdp_media": 8, "limit_bindings": 4096, "limit_registrations": 1024,
              "limit_calls": 1024, "limit_transactions": 4096, "limit_host_transactions": 256,
              "limit_binding_peers": 16}

    def __init__(self, wan_ip=None, lan_nets=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
                 sip_ports=(5060,), rtp_ports=(1024, 65535), answer_keepalives="crlf",
                 sip_idle=180, registration_margin=30, early_media_timeout=180,
                 call_timeout=7200, transaction_timeout=64, max_expires=7200,
                 media_from="sdp", port_reuse_delay=30, exclude=(), **limits):
        self.wan_ip = wan_ip
        self.lan_nets = list(lan_nets)
        self.sip_ports = list(sip_ports)
        self.rtp_ports = (int(rtp_ports[0]), int(rtp_ports[1]))
        self.answer_keepalives = answer_keepalives
        # A signalling binding with no registration or dialog lives this long
        # after its last packet (it is what MASQUERADE would have given).
        self.sip_idle = sip_idle
        # Kept open this much longer than the registrar granted, so a refresh
        # that is a little late still finds the binding.
        self.registration_margin = registration_margin
        # Media bindings of a call that has not been answered yet.
        self.early_media_timeout = early_media_timeout
        # Upper bound for an established call's bindings without any signalling
        # (a re-INVITE or UPDATE refreshes it); stops leaks when BYE is lost.
        self.call_timeout = call_timeout
        # How long a transaction's original Via is remembered for responses.
        self.transaction_timeout = transaction_timeout
        # Registrations longer than this are capped (the binding is ours to keep).
        self.max_expires = max_expires
        self.media_from = media_from
        # LAN hosts or networks the ALG leaves alone (a PBX that does its own STUN)
        self.exclude = list(exclude)
        # A freed WAN port rests this long before another binding gets it, so
        # stray packets of the old flow can't cross into the new one.
        self.port_reuse_delay = port_reuse_delay
        for k in self.LIMITS:
            setattr(self, k, limits.pop(k, self.LIMITS[k]))
        if limits:
            raise TypeError("unknown settings: %s" % ", ".join(sorted(limits)))

    def update(self, other):
        """Take other's values (a reload), keeping the WAN address this one has."""
        wan_ip = self.wan_ip
        for k in ("lan_nets", "sip_ports", "rtp_ports", "answer_keepalives", "sip_idle", "registration_margin",
                  "early_media_timeout", "call_timeout", "transaction_timeout", "max_expires", "media_from",
                  "port_reuse_delay", "exclude") + tuple(self.LIMITS):
            setattr(self, k, getattr(other, k))
        self.wan_ip = wan_ip
