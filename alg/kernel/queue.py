"""NFQUEUE consumption behind one small interface.

Today through the `netfilterqueue` binding (PyPI).  OpenWrt's feed has no
such package; a pure-Python netlink backend will slot in here (issue:
OpenWrt packaging), chosen automatically when the binding is missing.
"""

from __future__ import annotations

import socket
from typing import Callable


class QueueUnavailable(RuntimeError):
    pass


class PacketQueue:
    """Bind a queue number; `poll()` hands each waiting packet to the callback.

    The callback gets (payload bytes, verdict) where verdict(new_payload or
    None, accept: bool) must be called exactly once.
    """

    def __init__(self, num: int, callback: Callable):
        try:
            from netfilterqueue import NetfilterQueue
        except ImportError:
            raise QueueUnavailable("no NFQUEUE binding: pip install NetfilterQueue "
                                   "(needs libnetfilter-queue-dev)") from None
        self._nfq = NetfilterQueue()
        self._callback = callback

        def on_packet(pkt):
            def verdict(payload, accept):
                if payload is not None:
                    pkt.set_payload(payload)
                if accept:
                    pkt.accept()
                else:
                    pkt.drop()
            callback(pkt.get_payload(), verdict)

        try:
            self._nfq.bind(num, on_packet, max_len=4096)
        except OSError as e:
            raise QueueUnavailable("cannot bind NFQUEUE %d: %s (root? another daemon?)" % (num, e)) from None
        self.fd = self._nfq.get_fd()
        self._sock = socket.fromfd(self.fd, socket.AF_NETLINK, socket.SOCK_RAW)

    def fileno(self) -> int:
        return self.fd

    def poll(self) -> None:
        self._nfq.run(block=False)

    def close(self) -> None:
        try:
            self._nfq.unbind()
        finally:
            self._sock.close()
