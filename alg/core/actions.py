"""What the engine asks the shell to do.

The engine never touches the kernel; it returns these and the shell carries
them out (nftables map elements, a datagram on a socket) before it issues the
verdict for the packet that caused them.
"""

# Action kinds.  Plain strings: cheap, printable, MicroPython-friendly.
OPEN_BINDING = "open-binding"        # signalling binding: SNAT lan->wan, DNAT wan->lan
REFRESH_BINDING = "refresh-binding"  # same binding, new expiry
CLOSE_BINDING = "close-binding"
OPEN_PINHOLE = "open-pinhole"        # media binding (RTP or RTCP port), maybe restricted to remote
REFRESH_PINHOLE = "refresh-pinhole"
MOVE_PINHOLE = "move-pinhole"        # remote media address (or LAN port) changed
CLOSE_PINHOLE = "close-pinhole"
SEND = "send"                        # send a datagram (keep-alive answer, OPTIONS 200)


class Action:
    """One thing for the shell to do.

    binding: a snapshot of the Binding it concerns (OPEN/REFRESH/CLOSE/MOVE) as
             it was when the action was made, so a batch replays in order.
    old:     for MOVE_PINHOLE, a copy of the binding as it was before.
    src, dst, payload: for SEND, (ip, port) tuples and bytes.
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
