"""What happened, as typed events: the shell logs, counts and shows these.

A Result (and the outcome of an expiry pass) carries a list of them.  The
shell never reads the engine's prose: it dispatches on the event's class
(or its `name`) and reads the fields.  Addresses are (ip text, port)
tuples; SIP strings (Call-ID, AOR) are the bytes from the wire, which
whoever shows them must escape.

Every event has describe(), a one-line text for logs with wire strings
printed through repr-style escaping (no control characters reach a log).
"""


def wire(b):
    """Bytes from the wire as printable text: non-ASCII and controls escaped."""
    if b is None:
        return "-"
    out = []
    for c in b:
        if 32 <= c < 127 and c != 92:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def _hp(addr):
    if addr is None:
        return "-"
    ip, port = addr
    return ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)


class Event:
    """Base of every event; `name` is the event's stable identifier."""

    __slots__ = ()
    name = "event"

    def describe(self):
        return self.name


class Registered(Event):
    """The registrar accepted a contact of a LAN device: its binding is held
    for `expires` seconds (plus a margin)."""

    __slots__ = ("aor", "lan", "wan", "expires")
    name = "registered"

    def __init__(self, aor, lan, wan, expires):
        self.aor = aor            # To URI bytes of the REGISTER
        self.lan = lan            # the phone's (ip, port)
        self.wan = wan            # its WAN mapping (ip, port)
        self.expires = expires    # seconds granted (after the max_expires cap)

    def describe(self):
        return "registered %s %s as %s for %ds" % (wire(self.aor), _hp(self.lan), _hp(self.wan), self.expires)


class Deregistered(Event):
    """A registration ended: the registrar removed it, or it expired."""

    __slots__ = ("aor", "lan", "why")
    name = "deregistered"

    def __init__(self, aor, lan, why):
        self.aor = aor
        self.lan = lan
        self.why = why            # "registrar" (expires 0, Contact *) or "expired"

    def describe(self):
        return "de-registered %s %s (%s)" % (wire(self.aor), _hp(self.lan), self.why)


class CallStarted(Event):
    """An initial INVITE crossed the router."""

    __slots__ = ("call_id", "phone", "outgoing")
    name = "call-started"

    def __init__(self, call_id, phone, outgoing):
        self.call_id = call_id
        self.phone = phone        # the LAN device's ip
        self.outgoing = outgoing  # True when the LAN device sent the INVITE

    def describe(self):
        return "call %s %s %s" % (wire(self.call_id), "from" if self.outgoing else "to", self.phone)


class CallAnswered(Event):
    """A 2xx to the initial INVITE: the call is established."""

    __slots__ = ("call_id", "phone")
    name = "call-answered"

    def __init__(self, call_id, phone):
        self.call_id = call_id
        self.phone = phone

    def describe(self):
        return "call %s of %s answered" % (wire(self.call_id), self.phone)


class CallEnded(Event):
    """A call's state is gone and its media bindings let go."""

    __slots__ = ("call_id", "phone", "why")
    name = "call-ended"

    def __init__(self, call_id, phone, why):
        self.call_id = call_id
        self.phone = phone
        self.why = why            # the trigger: "BYE", "CANCEL", "final error response", "expired"

    def describe(self):
        return "call %s of %s ended: %s" % (wire(self.call_id), self.phone, self.why)


class BindingOpened(Event):
    """A signalling binding (LAN ip:port <-> WAN port) now exists."""

    __slots__ = ("binding",)
    name = "binding-opened"

    def __init__(self, binding):
        self.binding = binding

    def describe(self):
        b = self.binding
        return "binding %s <-> %s opened" % (_hp(b.lan), _hp(b.wan))


class BindingClosed(Event):
    __slots__ = ("binding",)
    name = "binding-closed"

    def __init__(self, binding):
        self.binding = binding

    def describe(self):
        b = self.binding
        return "binding %s <-> %s closed" % (_hp(b.lan), _hp(b.wan))


class PeerAdmitted(Event):
    """The device sent SIP to `peer` (or a proxy on its path): from now on it may
    start flows through the signalling binding too."""

    __slots__ = ("binding", "peer")
    name = "peer-admitted"

    def __init__(self, binding, peer):
        self.binding = binding
        self.peer = peer          # ip text

    def describe(self):
        return "binding %s admits SIP from %s" % (_hp(self.binding.wan), self.peer)


class MediaOpened(Event):
    """A media pinhole (RTP or RTCP) opened, admitting `binding.remote` (None: not known yet)."""

    __slots__ = ("binding",)
    name = "media-opened"

    def __init__(self, binding):
        self.binding = binding

    def describe(self):
        b = self.binding
        return "%s pinhole %s <-> %s opened, from %s" % (b.kind, _hp(b.lan), _hp(b.wan), _hp(b.remote))


class MediaNarrowed(Event):
    """The far end's SDP arrived: the pinhole admits only that address from now on."""

    __slots__ = ("binding",)
    name = "media-narrowed"

    def __init__(self, binding):
        self.binding = binding

    def describe(self):
        b = self.binding
        return "%s pinhole %s narrowed to %s" % (b.kind, _hp(b.wan), _hp(b.remote))


class MediaMoved(Event):
    """The far end moved its media (re-INVITE, UPDATE, a forked answer)."""

    __slots__ = ("binding", "old_remote")
    name = "media-moved"

    def __init__(self, binding, old_remote):
        self.binding = binding
        self.old_remote = old_remote

    def describe(self):
        b = self.binding
        return "%s pinhole %s moved from %s to %s" % (b.kind, _hp(b.wan), _hp(self.old_remote), _hp(b.remote))


class MediaClosed(Event):
    __slots__ = ("binding",)
    name = "media-closed"

    def __init__(self, binding):
        self.binding = binding

    def describe(self):
        b = self.binding
        return "%s pinhole %s <-> %s closed" % (b.kind, _hp(b.lan), _hp(b.wan))


class Refused(Event):
    """The policy said no: nothing was opened for `lan`, and `reason` says why.

    `what` names what was asked for: "signalling", "media", "registration",
    "call", "peer" or "datagram" (a forged WAN-side source)."""

    __slots__ = ("what", "lan", "reason")
    name = "refused"

    def __init__(self, what, lan, reason):
        self.what = what
        self.lan = lan
        self.reason = reason      # a fixed text (policy.py), safe to log and count by

    def describe(self):
        return "refused %s for %s: %s" % (self.what, _hp(self.lan), self.reason)


class KeepaliveAnswered(Event):
    """The router answered a keep-alive (CRLF ping, NUL probe, OPTIONS) for a phone."""

    __slots__ = ("kind", "lan")
    name = "keepalive-answered"

    def __init__(self, kind, lan):
        self.kind = kind          # keepalive.PING, keepalive.NUL or "options"
        self.lan = lan

    def describe(self):
        return "%s keep-alive answered for %s" % (self.kind, _hp(self.lan))


class Malformed(Event):
    """Not a SIP message we may rewrite: passed as it came."""

    __slots__ = ("reason",)
    name = "malformed"

    def __init__(self, reason):
        self.reason = reason

    def describe(self):
        return "malformed, passed as is: %s" % self.reason


class InternalError(Malformed):
    """The engine itself failed on this message (a bug): passed as it came, what it had
    recorded before the fault still carried out, so kernel and engine agree."""

    __slots__ = ()
    name = "internal-error"
