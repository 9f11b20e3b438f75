"""What handling one datagram (or one expiry pass) gives the shell back."""

from .events import Refused, wire

OUT = "out"     # LAN -> WAN
IN = "in"       # WAN -> LAN

# Result.status values, which are also the counter names.
REWRITTEN = "rewritten"
UNCHANGED = "unchanged"
MALFORMED = "malformed"
KEEPALIVE = "keepalive"
STATUSES = (REWRITTEN, UNCHANGED, MALFORMED, KEEPALIVE)

ACCEPT = "accept"
DROP = "drop"


class Outcome:
    """What the shell must do (actions) and what happened (events)."""

    __slots__ = ("actions", "events")

    def __init__(self, actions=None, events=None):
        self.actions = actions if actions is not None else []
        self.events = events if events is not None else []


class Result(Outcome):
    """One datagram's outcome.

    payload: bytes to forward instead, or None (unchanged).
    verdict: ACCEPT or DROP (a keep-alive the router answered itself).
    status:  one of STATUSES.
    snat:    OUT: the WAN (ip, port) the datagram leaves from, when it has a binding.
    dnat:    IN: the LAN (ip, port) the datagram goes to, when it has a binding.
    reason:  a short text for the debug log (what was rewritten and why), built
             only when read; nothing outside the core may parse it: events say
             what happened.
    """

    __slots__ = ("payload", "verdict", "status", "snat", "dnat", "_reason", "_notes")

    def __init__(self, payload=None, verdict=ACCEPT, actions=None, status=UNCHANGED, reason="",
                 notes=None, events=None):
        self.actions = actions if actions is not None else []
        self.events = events if events is not None else []
        self.payload = payload
        self.verdict = verdict
        self.status = status
        self.snat = None
        self.dnat = None
        self._reason = reason
        self._notes = notes         # (format, args...) tuples, rendered when reason is read

    @property
    def reason(self):
        notes = self._notes
        if notes is not None:
            self._notes = None
            text = "; ".join([_render(n) for n in notes])
            if text:
                self._reason = text
        return self._reason

    @reason.setter
    def reason(self, text):
        self._notes = None
        self._reason = text


def _render(note):
    """A note's text: its format with the arguments, wire bytes escaped (events.wire:
    non-ASCII and controls as \\xNN), so any bytes render and none reach a log raw."""
    args = note[1:]
    if not args:
        return note[0]
    return note[0] % tuple([wire(a) if isinstance(a, bytes) else a for a in args])


def refuse(ctx, what, lan, why):
    """A Result passing the message unmodified: a cap or rule said no to what it needed.
    What the message already holds (its signalling binding) stays, as the kernel is told."""
    ctx.events.append(Refused(what, lan, why))
    res = Result(status=UNCHANGED, actions=ctx.actions, events=ctx.events, reason="refused: " + why)
    res.snat = ctx.snat
    res.dnat = ctx.dnat
    return res
