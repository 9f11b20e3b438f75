"""Engine settings, with the defaults a router user gets without a config file."""

ANSWER_KEEPALIVES = ("off", "crlf", "options")


def parse_port_range(text):
    """'LO-HI' -> (lo, hi); ValueError naming the text otherwise."""
    parts = text.split("-")
    if len(parts) != 2 or not parts[0].strip().isdigit() or not parts[1].strip().isdigit():
        raise ValueError("a port range must look like LO-HI, not %r" % (text,))
    lo, hi = int(parts[0]), int(parts[1])
    if not 1 <= lo <= hi <= 65535:
        raise ValueError("port range %r: need 1 <= LO <= HI <= 65535" % (text,))
    return lo, hi


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
    """

    def __init__(self, wan_ip=None, lan_nets=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
                 sip_ports=(5060,), rtp_ports=(1024, 65535), answer_keepalives="crlf",
                 sip_idle=180, registration_margin=30, early_media_timeout=180,
                 call_timeout=7200, transaction_timeout=64, max_expires=7200):
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
        self.check()

    def check(self):
        """Raise ValueError naming the bad setting."""
        if self.answer_keepalives not in ANSWER_KEEPALIVES:
            raise ValueError("answer_keepalives must be one of off, crlf, options, not %r"
                             % (self.answer_keepalives,))
        lo, hi = self.rtp_ports
        if not (1024 <= lo < hi <= 65535):
            raise ValueError("rtp_ports must be LO-HI within 1024-65535, got %d-%d" % (lo, hi))
        if (hi - lo + 1) < 4:
            raise ValueError("rtp_ports range %d-%d is too small for one call" % (lo, hi))
        for p in self.sip_ports:
            if not (1 <= int(p) <= 65535):
                raise ValueError("sip port %r is out of range" % (p,))
