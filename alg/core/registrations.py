"""REGISTER lifetimes: what keeps a phone's signalling binding open.

A registration holds its binding for as long as the registrar granted
(Expires header, or the contact's expires parameter in the 2xx), so an
incoming INVITE finds the phone long after a conntrack entry would have
timed out, with no keep-alive traffic at all.
"""

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
