"""What a verdict does not wait for (alg/daemon.py _later): when it reaches the kernel, in what order.

The daemon here is real down to its packet path (the engine, the split at the verdict,
the deferred work and its queue look-up on a real file descriptor); only the kernel table
and the conntrack hygiene are recorders, so the order of writes and verdicts can be read.
"""
import socket
import types

from alg import daemon as D
from alg.core.config import Config
from alg.core.engine import Engine
from alg.kernel.queue import PacketMeta
from alg.packet import build_udp, parse_udp
from bench import sipmsg

PHONE, SERVER, WAN_IP = "10.0.0.2", ("203.0.113.10", 5060), "203.0.113.1"
LAN_DEV, WAN_DEV = 3, 2


class Recorder:
    """The kernel table and the hygiene as the daemon calls them: every call, in one list."""

    def __init__(self, trail):
        self.trail = trail
        self.last_failure = None

    def apply(self, actions, now):
        self.trail.append(("apply", [(a.kind, a.binding.kind, a.binding.lan[1]) for a in actions]))
        return 0

    def clear_the_way(self, actions, wan_ip):
        pass

    def defer(self, actions):
        pass


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def daemon():
    d = D.Daemon.__new__(D.Daemon)
    d.trail = []
    d.clock = Clock()
    d.engine = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], limit_host_calls=200, limit_sdp_media=200,
                             limit_host_bindings=400))
    d.site = types.SimpleNamespace(wan_index=WAN_DEV, lan_indexes={LAN_DEV})
    d.table = d.hygiene = Recorder(d.trail)
    d.wan_ip = WAN_IP
    d.nft_failures = 0
    d.counters = {"sent": 0, "not_udp": 0, "media_queued": 0, "not_crossing": 0}
    d.refused, d._refusal_logged, d._refusal_quiet = {}, {}, {}
    d._later = D.collections.deque()
    d.queue, d.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)   # readable: a datagram waits
    return d


def send(d, payload, sport):
    """One datagram from the phone through the daemon's packet path; its verdict goes in the trail."""
    def verdict(data, accept):
        d.trail.append(("verdict", payload.split(b" ", 1)[0].decode()))
    d.on_packet(build_udp((PHONE, sport), SERVER, payload), verdict, PacketMeta(LAN_DEV, WAN_DEV))


def invite(port, n=1):
    return sipmsg.request("INVITE", "sip:bob@203.0.113.10", (PHONE, port), "i%d" % n, "call-%d" % n, 1,
                          body=sipmsg.sdp(PHONE, 40000 + 2 * n))


def register(port):
    return sipmsg.request("REGISTER", "sip:203.0.113.10", (PHONE, port), "r%d" % port, "reg-%d" % port, 1,
                          expires=3600)


def media_opens(entry):
    return entry[0] == "apply" and any(kind in ("rtp", "rtcp") for _op, kind, _p in entry[1])


def test_an_offers_media_reaches_the_kernel_after_the_invite_passed():
    d = daemon()
    send(d, invite(5070), 5070)
    assert d.trail[0] == ("apply", [("open", "sip", 5070)])      # the INVITE's own binding: before
    assert d.trail[1] == ("verdict", "INVITE")
    assert len(d.trail) == 2 and len(d._later) == 1               # its media: not yet
    d._work_off()                                                 # nothing waits: done now
    assert media_opens(d.trail[2]) and not d._later


def test_deferred_work_waits_for_a_waiting_datagram_but_not_for_long():
    d = daemon()
    send(d, invite(5070), 5070)
    d.peer.send(b"x")                              # the answer is already in the queue
    d._work_off()
    assert len(d._later) == 1 and len(d.trail) == 2
    d.clock.t += D.LATER_WAIT / 2
    d._work_off()
    assert len(d._later) == 1
    d.clock.t += D.LATER_WAIT / 2 + 0.001          # ... and still there after LATER_WAIT: no more waiting
    d._work_off()
    assert not d._later and media_opens(d.trail[2])


def test_what_earlier_datagrams_left_goes_first_when_a_binding_opens():
    d = daemon()
    send(d, invite(5070), 5070)
    d.peer.send(b"x")
    d._work_off()                                  # held: a datagram waits
    send(d, register(5072), 5072)                  # a new binding: the INVITE's media go to the kernel first,
    assert [e[0] for e in d.trail] == ["apply", "verdict", "apply", "verdict"]          # in the same batch
    assert d.trail[2] == ("apply", [("open", "rtp", 40002), ("open", "rtcp", 40003), ("open", "sip", 5072)])
    assert len(d._later) == 2                      # the log lines still wait
    d.queue.recv(16)                              # the waiting datagram was handled
    d._work_off()
    assert not d._later and len(d.trail) == 4      # ... and nothing went to the kernel twice


def test_the_answers_media_gate_opens_before_the_answer_crosses():
    # the far end may send media as soon as it sent its answer (RFC 3264 6): the gate is open, and
    # the flow its first packet left at the router cleared, before the phone gets the answer
    d = daemon()
    seen = []
    d.on_packet(build_udp((PHONE, 5070), SERVER, invite(5070)), lambda data, ok: seen.append(data),
                PacketMeta(LAN_DEV, WAN_DEV))
    d.peer.send(b"x")
    d._work_off()                                  # the offer's media still wait
    ok = sipmsg.answer(parse_udp(seen[0]).payload, SERVER, media_port=20000)
    cleared = []
    d.hygiene.clear_the_way = lambda actions, wan_ip: cleared.append([a.kind for a in actions])
    d.on_packet(build_udp(SERVER, (WAN_IP, 5070), ok), lambda data, ok: d.trail.append(("verdict", "200")),
                PacketMeta(WAN_DEV, LAN_DEV))
    applied = d.trail[1][1]
    assert [e[0] for e in d.trail] == ["apply", "apply", "verdict"]
    assert applied[:2] == [("open", "rtp", 40002), ("open", "rtcp", 40003)]
    assert ("move", "rtp", 40002) in applied[2:] and ("move", "rtcp", 40003) in applied[2:]
    assert cleared and "move" in cleared[-1]


def test_a_pile_of_deferred_work_is_done_regardless():
    d = daemon()
    d.peer.send(b"x")                              # a datagram waits all along
    for n in range(D.LATER_MAX):
        send(d, invite(5070, n), 5070)             # the first opens the binding, the rest only refresh it
        d._work_off()
    assert len(d._later) == D.LATER_MAX
    send(d, invite(5070, D.LATER_MAX), 5070)       # one more than may wait: all of it goes now, in order
    assert not d._later
    ports = [p for e in d.trail if media_opens(e) for op, kind, p in e[1] if op == "open" and kind == "rtp"]
    assert ports == [40000 + 2 * n for n in range(D.LATER_MAX + 1)]


def test_a_fault_in_deferred_work_costs_that_item_not_the_daemon(caplog):
    d = daemon()
    send(d, invite(5070, 1), 5070)
    send(d, invite(5070, 2), 5070)

    def broken(actions, now):
        raise OSError(105, "No buffer space available")
    d.table.apply = broken
    d._catch_up()                                  # both items tried, neither raises out of the loop
    assert not d._later
    assert caplog.text.count("internal error after a verdict") == 2
