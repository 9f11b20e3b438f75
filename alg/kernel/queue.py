"""NFQUEUE consumption behind one small interface, with two backends.

- "netlink": our own nfnetlink_queue client (alg/kernel/nfnetlink_queue.py),
  stdlib only.  It sets the queue's fail-open flag (when we fall behind the
  kernel accepts packets unchanged instead of dropping them), copies whole
  datagrams (up to the kernel's 65,531-byte copy limit) and sends verdicts
  in batches.  OpenWrt's feed has no Python NFQUEUE binding and
  python3-light no ctypes, so on a router this is the one that runs; it is
  what "auto" (the default) always picks.
- "binding": the `netfilterqueue` binding (PyPI, C over libnetfilter_queue),
  only when forced with SIPALG_QUEUE_BACKEND=binding or backend="binding".
  It can set neither fail-open (a backlog drops SIP) nor a copy range above
  its ~4 KB receive buffer (a larger datagram never gets a verdict and,
  4,096 of them later, wedges the queue), so it never leaves "auto".

The callback gets (payload, verdict, meta): verdict(new_payload or None,
accept) must be called once; meta carries the packet's `indev` and
`outdev` (interface indexes, 0 when absent), `mark` (None when absent) and
`hook`.  Whatever the callback does, raises or forgets, every packet gets
exactly one verdict.
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
BACKLOG = 64                                   # packets read per poll() after the first
FLUSH_AFTER = 0.001                            # seconds a given verdict may wait for the rest of its batch
BINDING_LIMITS = ("NetfilterQueue binding forced (%s=binding): no fail-open (a backlog drops SIP) and no "
                  "datagrams over ~4 KB (they get no verdict); use the netlink backend" % ENV)


class QueueUnavailable(RuntimeError):
    pass


def binding_available() -> bool:
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return False
    return True


def holder(num: int, proc: str = "/proc") -> Optional[str]:
    """Who has bound NFQUEUE `num`, for the error that says it's taken: the netlink port id from
    /proc/net/netfilter/nfnetlink_queue, its socket inode from /proc/net/netlink, the process holding
    that socket ("etherwake-nfqueue (pid 812)"); None when not found (or not ours to see)."""
    try:
        with open(os.path.join(proc, "net/netfilter/nfnetlink_queue")) as f:
            ports = [int(w[1]) for w in (line.split() for line in f) if len(w) > 1 and w[0] == str(num)]
        if not ports:
            return None
        with open(os.path.join(proc, "net/netlink")) as f:
            inodes = {int(w[-1]) for w in (line.split() for line in f)
                      if len(w) > 9 and w[1] == "12" and w[2].isdigit() and int(w[2]) == ports[0]}
    except (OSError, ValueError):
        return None
    targets = {"socket:[%d]" % i for i in inodes}
    for pid in (d for d in os.listdir(proc) if d.isdigit()):
        try:
            fds = os.listdir(os.path.join(proc, pid, "fd"))
            if any(os.readlink(os.path.join(proc, pid, "fd", fd)) in targets for fd in fds):
                with open(os.path.join(proc, pid, "comm")) as f:
                    return "%s (pid %s)" % (f.read().strip(), pid)
        except OSError:
            continue
    return "netlink port %d" % ports[0]


class PacketMeta:
    """What the binding backend tells about a packet (the netlink backend passes its Packet, same fields)."""

    __slots__ = ("indev", "outdev", "mark", "hook")

    def __init__(self, indev: int = 0, outdev: int = 0, mark: Optional[int] = None, hook: Optional[int] = None):
        self.indev = indev
        self.outdev = outdev
        self.mark = mark
        self.hook = hook

    def __repr__(self) -> str:
        return "PacketMeta(indev=%d, outdev=%d, mark=%r)" % (self.indev, self.outdev, self.mark)


class PacketQueue:
    """Bind a queue number; `poll()` hands each waiting packet to `callback(payload, verdict, meta)`.

    `backend` says which backend runs ("netlink" or "binding"), `limits`
    what it cannot do ("" for netlink), `counters` what went wrong without
    stopping us (netlink backend: ENOBUFS overruns, kernel errors, packets
    passed unseen because the kernel copied them short).
    """

    def __init__(self, num: int, callback: Callable, backend: Optional[str] = None):
        choice = (backend or os.environ.get(ENV) or "auto").strip().lower()
        if choice not in BACKENDS:
            raise QueueUnavailable("unknown NFQUEUE backend %r (from %s): use %s"
                                   % (backend or os.environ.get(ENV), "argument" if backend else ENV,
                                      ", ".join(BACKENDS)))
        if choice == "auto":
            choice = "netlink"                 # the binding cannot give fail-open or whole datagrams
        self.backend = choice
        if choice == "binding":
            self.limits = BINDING_LIMITS
            log.warning("%s", BINDING_LIMITS)
            self._impl = _Binding(num, callback)
        else:
            self.limits = ""
            self._impl = _Netlink(num, callback)

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
        self._reported = dict(self._q.counters)
        self._last_report = -REPORT_EVERY

    @property
    def counters(self) -> Dict[str, int]:
        return dict(self._q.counters, unseen=self._unseen)

    def fileno(self) -> int:
        return self._q.fileno()

    def poll(self) -> None:
        """The first waiting packet's verdict goes out before anything else is read (a lone
        packet never waits on a recv that finds nothing); the backlog behind it in batches."""
        q = self._q
        for p in q.receive(1):
            self._handle(q, p, True)
        q.flush()
        clock = time.monotonic
        first = None                           # when the oldest unsent verdict was given
        for p in q.receive(BACKLOG):
            self._handle(q, p)
            if first is None:
                first = clock()
            elif clock() - first >= FLUSH_AFTER:
                q.flush()
                first = None
        q.flush()
        self._report()

    def _handle(self, q, p, at_once: bool = False) -> None:
        if p.truncated:                        # never rewrite what we did not see whole
            self._unseen += 1
            q.verdict(p.packet_id, True)
        else:
            self._one(q, p, at_once)

    def _one(self, q, p, at_once: bool = False) -> None:
        """at_once: the verdict is sent as it is given, so what the callback does after it
        (logging) costs the packet nothing."""
        given = []

        def verdict(payload, accept, _id=p.packet_id):
            if given:
                raise RuntimeError("verdict given twice for queued packet %d" % _id)
            given.append(True)
            try:
                q.verdict(_id, bool(accept), payload)
            except ValueError as e:            # a rewrite the kernel cannot take: pass the original
                log.warning("NFQUEUE packet %d passed unchanged: %s", _id, e)
                q.verdict(_id, True)
            if at_once:
                q.flush()

        try:
            self._callback(p.payload, verdict, p)
        except Exception:                      # the rest of the batch still needs its verdicts
            log.exception("NFQUEUE callback failed; packet %d passed unchanged", p.packet_id)
        if not given:                          # fail open: a packet is never left held
            q.verdict(p.packet_id, True)

    def _report(self) -> None:
        """A warning when something went wrong since the last one, at most once a minute (no syslog floods)."""
        c = self._q.counters
        if all(c[k] == self._reported.get(k) for k in ("enobufs", "errors", "send_errors")):
            return
        now = time.monotonic()
        if now - self._last_report < REPORT_EVERY:
            return
        self._last_report = now
        for k in ("enobufs", "errors", "send_errors"):
            n = c[k]
            if n != self._reported.get(k):
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
            raise QueueUnavailable("no NFQUEUE binding (pip install NetfilterQueue, needs libnetfilter-queue-dev); "
                                   "%s=binding forced it: the netlink backend needs nothing and is the default"
                                   % ENV) from None
        self._nfq = NetfilterQueue()
        self.counters: Dict[str, int] = {}

        def on_packet(pkt):
            given = []

            def verdict(payload, accept):
                if given:
                    raise RuntimeError("verdict given twice for queued packet %d" % pkt.id)
                given.append(True)
                if payload is not None:
                    pkt.set_payload(payload)
                if accept:
                    pkt.accept()
                else:
                    pkt.drop()
            meta = PacketMeta(getattr(pkt, "indev", 0) or 0, getattr(pkt, "outdev", 0) or 0,
                              pkt.get_mark() or None, getattr(pkt, "hook", None))
            try:
                callback(pkt.get_payload(), verdict, meta)
            except Exception:
                log.exception("NFQUEUE callback failed; packet passed unchanged")
            if not given:
                pkt.accept()

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
