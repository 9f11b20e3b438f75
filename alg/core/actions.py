"""What the engine asks the shell to do: a small closed set.

The engine never touches the kernel; it returns these and the shell carries
them out around the verdict for the packet that caused them: what that
datagram needs before it, the rest after (split_at_verdict).  The
shell picks the kernel maps from the binding's kind (signalling or media),
so the set stays this small however many maps there are.
"""

OPEN = "open"          # a new binding: SNAT lan->wan, DNAT wan->lan, and its gate
REFRESH = "refresh"    # the same binding with a later expiry
MOVE = "move"          # its gate changed (the far end's media address); `old` is as it was
CLOSE = "close"        # gone
SEND = "send"          # send a datagram (keep-alive answer, OPTIONS 200)

KINDS = (OPEN, REFRESH, MOVE, CLOSE, SEND)

SIGNALLING = "sip"     # a signalling binding's kind (bindings.SIP, which imports this module)


class Action:
    """One thing for the shell to do.

    binding: a snapshot of the Binding it concerns, as it was when the action
             was made, so a batch replays in order.
    old:     for MOVE, a snapshot of the binding before the move.
    src, dst, payload: for SEND, (ip, port) tuples and bytes; for OPEN, dst is where the
             binding's first datagram goes (the shell clears the way for it), or None.
    """

    __slots__ = ("kind", "binding", "old", "src", "dst", "payload")

    def __init__(self, kind, binding=None, old=None, src=None, dst=None, payload=None):
        self.kind = kind
        self.binding = binding
        self.old = old
        self.src = src
        self.dst = dst
        self.payload = payload

    def __repr__(self):
        if self.kind == SEND:
            return "<%s %s:%d -> %s:%d %d bytes>" % (
                self.kind, self.src[0], self.src[1], self.dst[0], self.dst[1], len(self.payload))
        return "<%s %r>" % (self.kind, self.binding)


def _may_follow(a):
    """Whether the verdict need not wait for this action (see split_at_verdict)."""
    k = a.kind
    if k == REFRESH or k == CLOSE:
        return a.binding is not None
    b = a.binding
    if b is None or b.kind == SIGNALLING:
        return False
    return k == OPEN and b.remote is None


def split_at_verdict(actions):
    """(before, after): the actions the datagram's verdict waits for, and those that may follow it.

    A datagram needs only its own signalling binding in the kernel to cross.  A refresh only
    moves expiries and a close only ends what this datagram no longer needs.  A media binding
    that admits nobody yet (an offer's: its far end is not known) carries nothing until the
    answer comes back, and the offerer sends no media before it.  Writing these after the
    verdict takes their cost off its latency.  Opens of signalling bindings, of media bindings
    with a far end (the phone may send at once), moves (the answer's sender may send media
    as soon as it sent the answer, RFC 3264 6) and sends stay before.  A binding that any
    action kept before also touches keeps all its actions before, in order, so each
    binding's writes still reach the kernel in the order the engine made them."""
    touched = set()
    for a in actions:
        if not _may_follow(a) and a.binding is not None:
            touched.add(a.binding.lan)
            touched.add(a.binding.wan)
            if a.old is not None:
                touched.add(a.old.lan)
                touched.add(a.old.wan)
    before, after = [], []
    for a in actions:
        b = a.binding
        if _may_follow(a) and b.lan not in touched and b.wan not in touched \
                and (a.old is None or (a.old.lan not in touched and a.old.wan not in touched)):
            after.append(a)
        else:
            before.append(a)
    return before, after
