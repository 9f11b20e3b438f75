"""The netlink queue backend against a real NFQUEUE, each test in a network namespace of its own.

UDP to a local port is queued by an iptables NFQUEUE rule (--queue-bypass)
and handed to PacketQueue(backend="netlink"); a socket in the same
namespace counts what comes out.  Root only.
"""
import os
import select
import socket
import subprocess
import sys
import time

from alg.kernel.queue import PacketQueue
from alg.packet import parse_udp, with_payload

from tests.support.private_netns import in_private_netns

QUEUE = 5
PORT = 9999
SENDER = ("import socket,sys;s=socket.socket(2,2);s.setsockopt(1,7,1<<22);s.bind(('127.0.0.1',40000))\n"
          "n,size=int(sys.argv[1]),int(sys.argv[2])\n"
          "for i in range(n):\n"
          " while True:\n"
          "  try: s.sendto(b'%%08d' %% i + b'x' * (size - 8), ('127.0.0.1', %d)); break\n"
          "  except BlockingIOError: pass\n" % PORT)


def _setup():
    subprocess.run(["iptables", "-A", "INPUT", "-p", "udp", "--dport", str(PORT), "-j", "NFQUEUE",
                    "--queue-num", str(QUEUE), "--queue-bypass"], check=True)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)            # SO_RCVBUFFORCE: the receiver never drops
    rx.bind(("127.0.0.1", PORT))
    rx.setblocking(False)
    return rx


def _stats():
    """/proc/net/netfilter/nfnetlink_queue for our queue: (waiting, dropped, user_dropped)."""
    with open("/proc/net/netfilter/nfnetlink_queue") as f:
        for line in f:
            p = line.split()
            if int(p[0]) == QUEUE:
                return int(p[2]), int(p[5]), int(p[6])
    return 0, 0, 0


def _run(q, rx, sender, quiet=1.0, limit=60.0):
    """Poll the queue and drain the receiver until the sender is done and nothing moved for `quiet` s."""
    got = []
    last = time.monotonic()
    end = last + limit
    while time.monotonic() < end:
        ready = select.select([q, rx], [], [], 0.1)[0]
        if q in ready:
            q.poll()
            last = time.monotonic()
        if rx in ready:
            while True:
                try:
                    got.append(rx.recv(70000))
                except BlockingIOError:
                    break
            last = time.monotonic()
        if (sender is None or sender.poll() is not None) and time.monotonic() - last > quiet:
            break
    return got


def _send(n, size):
    return subprocess.Popen([sys.executable, "-c", SENDER, str(n), str(size)])


@in_private_netns
def test_a_burst_gets_every_datagram_through_with_batched_verdicts():
    rx = _setup()
    seen = [0]

    def accept(payload, verdict, meta):
        seen[0] += 1
        assert meta.indev == 1 and meta.outdev == 0          # lo's ifindex; INPUT has no out device
        verdict(None, True)

    q = PacketQueue(QUEUE, accept, backend="netlink")
    try:
        n = 5000
        got = _run(q, rx, _send(n, 200))
        counters = q.counters
    finally:
        q.close()
    assert len(got) == n, (len(got), seen[0], counters)
    assert len({g[:8] for g in got}) == n                    # each once
    waiting, dropped, user_dropped = _stats()
    assert (dropped, user_dropped) == (0, 0)
    assert seen[0] > 0 and counters["errors"] == 0 and counters["send_errors"] == 0
    assert counters["batches"] > 0                           # runs of accepts went as VERDICT_BATCH
    print("queued %d of %d, %d batch verdicts, %d enobufs" % (seen[0], n, counters["batches"],
                                                              counters["enobufs"]))


@in_private_netns
def test_a_60kb_datagram_passes_whole_and_rewritten():
    rx = _setup()
    sizes = []

    def reverse(payload, verdict, meta):
        d = parse_udp(payload)
        sizes.append(len(d.payload))
        verdict(with_payload(payload, d.payload[::-1]), True)

    q = PacketQueue(QUEUE, reverse, backend="netlink")
    try:
        got = _run(q, rx, _send(3, 60000), quiet=0.5)
    finally:
        q.close()
    assert sizes == [60000] * 3
    want = sorted((b"%08d" % i + b"x" * 59992)[::-1] for i in range(3))
    assert sorted(got) == want                              # every byte of each, rewritten
    assert q.counters["unseen"] == 0


@in_private_netns
def test_a_datagram_over_the_copy_limit_passes_unchanged_unseen():
    rx = _setup()
    calls = []
    q = PacketQueue(QUEUE, lambda p, v, m: calls.append(p) or v(b"cut", True), backend="netlink")
    try:
        got = _run(q, rx, _send(1, 65507), quiet=0.5)        # IP packet 65,535 bytes: the kernel copies 65,531
    finally:
        q.close()
    assert calls == [] and len(got) == 1 and len(got[0]) == 65507
    assert q.counters["unseen"] == 1


@in_private_netns
def test_a_callback_that_raises_still_yields_accept():
    rx = _setup()

    def boom(payload, verdict, meta):
        if parse_udp(payload).payload.startswith(b"00000001"):
            verdict(None, False)                             # the one it does answer: dropped
            return
        raise RuntimeError("engine bug")

    q = PacketQueue(QUEUE, boom, backend="netlink")
    try:
        got = _run(q, rx, _send(5, 100), quiet=0.5)
    finally:
        q.close()
    assert sorted(g[:8] for g in got) == [b"00000000", b"00000002", b"00000003", b"00000004"]
    assert _stats()[1:] == (0, 0)


@in_private_netns
def test_a_stalled_consumer_fails_open_and_catches_up():
    rx = _setup()
    seen = []
    q = PacketQueue(QUEUE, lambda p, v, m: seen.append(1) or v(None, True), backend="netlink")
    try:
        assert q.fail_open
        n = 8000                                             # more than the queue's 4,096 slots, not polled
        s = _send(n, 100)
        s.wait(60)
        time.sleep(0.2)
        assert _stats()[0] > 0                               # held for us
        got = _run(q, rx, None, quiet=0.5)
    finally:
        q.close()
    assert len(got) == n and 0 < len(seen) < n              # the rest passed unqueued, none dropped
    assert _stats()[1:] == (0, 0) and _stats()[0] == 0
    assert os.path.exists("/proc/net/netfilter/nfnetlink_queue")
