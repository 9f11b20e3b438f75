"""NFQUEUE consumption behind one small interface, with two backends.

- "binding": the `netfilterqueue` binding (PyPI, C over libnetfilter_queue).
- "netlink": our own nfnetlink_queue client (alg/kernel/nfnetlink_queue.py),
  stdlib only.  OpenWrt's feed has no Python NFQUEUE binding and python3-light
  no ctypes, so on a router this is the one that runs.  It also sets the
  queue's fail-open flag: when we fall behind, the kernel accepts packets
  unchanged instead of dropping them.

"auto" (the default) takes the binding when it imports, else netlink.
`backend=` or the environment variable SIPALG_QUEUE_BACKEND forces one.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Dict, Optional

log = logging.getLogger("sipalg.queue")

BACKENDS = ("auto", "netlink", "binding")
ENV = "SIPALG_QUEUE_BACKEND"
REPORT_EVERY = 60.0                            # seconds between warnings about overruns and errors


class QueueUnavailable(RuntimeError):
    pass


def binding_available() -> bool:
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return False
    return True


class PacketQueue:
    """Bind a queue number; `poll()` hands each waiting packet to the callback.

    The callback gets (payload bytes, verdict) where verdict(new_payload or
    None, accept: bool) must be called exactly once.  `backend` says which
    backend is in use ("netlink" or "binding"); `counters` what went wrong
    without stopping us (netlink backend: ENOBUFS overruns, kernel errors,
    truncated packets passed unseen).
    """

    def __init__(self, num: int, callback: Callable, backend: Optional[str] = None):
        choice = (backend or os.environ.get(ENV) or "auto").strip().lower()
        if choice not in BACKENDS:
            raise QueueUnavailable("unknown NFQUEUE backend %r (from %s): use %s"
                                   % (backend or os.environ.get(ENV), "argument" if backend else ENV,
                                      ", ".join(BACKENDS)))
        if choice == "auto":
            choice = "binding" if binding_available() else "netlink"
        self.backend = choice
        self._impl = _Binding(num, callback) if choice == "binding" else _Netlink(num, callback)

    @property
    def counters(self) -> Dict[str, int]:
        return self._impl.counters

    @property
    def fail_open(self) -> bool:
        return self._impl.fail_open

    def fileno(self) -> int:
        return self._impl.fileno()

    def poll(self) -> None:
        self._impl.poll()

    def close(self) -> None:
        self._impl.close()


class _Netlink:
    def __init__(self, num: int, callback: Callable):
        from alg.kernel.nfnetlink_queue import NfQueue
        self._callback = callback
        try:
            self._q = NfQueue(num)
        except ValueError as e:
            raise QueueUnavailable(str(e)) from None
        except OSError as e:
            raise QueueUnavailable("cannot bind NFQUEUE %d over netlink: %s (root? nfnetlink_queue module? "
                                   "another daemon?)" % (num, e.strerror or e)) from None
        self.fail_open = self._q.fail_open
        if not self.fail_open:
            log.warning("NFQUEUE %d: kernel refused the fail-open flag (%s); a backlog drops packets",
                        num, self._q.last_error)
        self._unseen = 0
        self._reported = {"enobufs": 0, "errors": 0, "send_errors": 0}
        self._last_report = -REPORT_EVERY

    @property
    def counters(self) -> Dict[str, int]:
        return dict(self._q.counters, unseen=self._unseen)

    def fileno(self) -> int:
        return self._q.fileno()

    def poll(self) -> None:
        q = self._q
        for p in q.receive():
            if p.truncated:                    # never rewrite what we did not see whole
                self._unseen += 1
                q.verdict(p.packet_id, True)
                continue
            given = []

            def verdict(payload, accept, _id=p.packet_id):
                if given:
                    raise RuntimeError("verdict given twice for queued packet %d" % _id)
                given.append(True)
                try:
                    q.verdict(_id, bool(accept), payload)
                except ValueError as e:        # a rewrite the kernel cannot take: pass the original
                    log.warning("NFQUEUE packet %d passed unchanged: %s", _id, e)
                    q.verdict(_id, True)

            try:
                self._callback(p.payload, verdict)
            except Exception:                  # the rest of the batch still needs its verdicts
                log.exception("NFQUEUE callback failed; packet %d passed unchanged", p.packet_id)
            if not given:                      # fail open: a packet is never left held
                q.verdict(p.packet_id, True)
        self._report()

    def _report(self) -> None:
        """A warning when something went wrong since the last one, at most once a minute (no syslog floods)."""
        if self._q.counters == self._reported:
            return
        now = time.monotonic()
        if now - self._last_report < REPORT_EVERY:
            return
        self._last_report = now
        for k, n in self._q.counters.items():
            if n != self._reported[k]:
                self._reported[k] = n
                if k == "enobufs":
                    log.warning("NFQUEUE backlog overran our socket %d time(s) so far: those packets passed "
                                "unchanged (fail-open)", n)
                else:
                    log.warning("NFQUEUE %s: %d so far, last: %s", k, n, self._q.last_error)

    def close(self) -> None:
        self._q.close()


class _Binding:
    fail_open = False                          # netfilterqueue 1.x cannot set queue flags

    def __init__(self, num: int, callback: Callable):
        try:
            from netfilterqueue import NetfilterQueue
        except ImportError:
            raise QueueUnavailable("no NFQUEUE binding: pip install NetfilterQueue "
                                   "(needs libnetfilter-queue-dev), or use the netlink backend") from None
        self._nfq = NetfilterQueue()
        self.counters: Dict[str, int] = {}

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
