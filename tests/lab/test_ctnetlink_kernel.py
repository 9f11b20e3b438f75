"""Conntrack hygiene over ctnetlink against real flows, each test in a network namespace of its own.

The test's namespace is the router (MASQUERADE out of wan0, a DNAT of WAN
port 6000 to the LAN host); a LAN host and a WAN host (two addresses)
namespaces of their own send real UDP through it.  Every filter deletes
what it names and keeps the rest, as `conntrack -L` (here only) shows.
Root only.
"""
import os
import subprocess
import sys

from alg.kernel.ctnetlink import Conntrack, Flow, Match, Tuple, dump_message

from tests.support.need import need
from tests.support.private_netns import in_private_netns

LAN, WAN, FAR, STRANGER = "10.9.0.2", "192.0.2.1", "192.0.2.2", "192.0.2.3"
SEND = "import socket,sys;s=socket.socket(2,2);s.bind((sys.argv[1],int(sys.argv[2])));s.sendto(b'x',(sys.argv[3],int(sys.argv[4])))"


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


class Net:
    """The router is the current namespace; a LAN and a WAN host hang off it."""

    def __init__(self):
        tag = "hn-%d" % os.getpid()
        self.lan, self.wan = tag + "-lan", tag + "-wan"

    def __enter__(self):
        need(subprocess.run(["which", "conntrack"], stdout=subprocess.DEVNULL).returncode == 0,
             "needs conntrack (scripts/setup installs it)")
        for ns in (self.lan, self.wan):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", self.lan)
        sh("ip", "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", self.wan)
        for dev, addr in (("lan0", "10.9.0.1/24"), ("wan0", WAN + "/24")):
            sh("ip", "addr", "add", addr, "dev", dev)
            sh("ip", "link", "set", dev, "up")
        for ns, addrs, gw in ((self.lan, [LAN], "10.9.0.1"), (self.wan, [FAR, STRANGER], WAN)):
            for a in addrs:
                sh("ip", "-n", ns, "addr", "add", a + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            if ns == self.lan:
                sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        subprocess.run(["nft", "-f", "-"], check=True, input=(
            "table ip nat {\n"
            " chain pre { type nat hook prerouting priority dstnat; iifname wan0 udp dport 6000 dnat to %s:7078; }\n"
            " chain post { type nat hook postrouting priority srcnat; oifname wan0 masquerade; }\n"
            "}\n" % LAN).encode())
        return self

    def __exit__(self, *exc):
        for ns in (self.lan, self.wan):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)

    def send(self, ns, src, sport, dst, dport):
        sh("ip", "netns", "exec", ns, sys.executable, "-c", SEND, src, str(sport), dst, str(dport))

    def traffic(self):
        self.send(self.lan, LAN, 5060, FAR, 5060)            # signalling out: SNAT to WAN:5060
        self.send(self.lan, LAN, 7078, FAR, 20000)           # media out: SNAT to WAN:7078
        self.send(self.wan, FAR, 30000, WAN, 6000)           # media in from the far end: DNAT to LAN:7078
        self.send(self.wan, STRANGER, 31000, WAN, 6000)      # ... and from a stranger


def listed():
    """(orig src, sport, orig dst, dport) of every UDP entry, from `conntrack -L`."""
    out = subprocess.run(["conntrack", "-L", "-p", "udp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         check=True).stdout.decode()
    rows = set()
    for line in out.splitlines():
        f = {}
        for kv in line.split():
            if "=" in kv:
                k, v = kv.split("=", 1)
                f.setdefault(k, v)                          # the first of each key: the original tuple
        rows.add((f["src"], int(f["sport"]), f["dst"], int(f["dport"])))
    return rows


ALL = {(LAN, 5060, FAR, 5060), (LAN, 7078, FAR, 20000), (FAR, 30000, WAN, 6000), (STRANGER, 31000, WAN, 6000)}


@in_private_netns
def test_renumbering_drops_the_flows_natted_to_the_old_address():
    with Net() as net:
        net.traffic()
        assert listed() == ALL
        ct = Conntrack()
        try:
            raw = ct.nl.dump(lambda seq: dump_message(seq, reply=Match(dst=WAN)))
            assert len(raw) == 2 and all(flags & 0x20 for _t, flags, _s, _b in raw)   # NLM_F_DUMP_FILTERED: the
            mine = ct.flows(reply=Match(dst=WAN))                                  # kernel did the filtering
            assert {(f.orig.src, f.orig.sport) for f in mine} == {(LAN, 5060), (LAN, 7078)}
            assert all(isinstance(f, Flow) and f.id and f.reply.dst == WAN for f in mine)
            assert ct.delete_flows(reply=Match(dst=WAN)) == 2
        finally:
            ct.close()
        assert listed() == ALL - {(LAN, 5060, FAR, 5060), (LAN, 7078, FAR, 20000)}


@in_private_netns
def test_a_narrowed_pinhole_drops_everyone_but_the_far_end():
    with Net() as net:
        net.traffic()
        ct = Conntrack()
        try:
            gone = ct.delete_flows(orig=Match(dst=WAN, dport=6000), keep=lambda f: f.orig.src == FAR)
            assert gone == 1
        finally:
            ct.close()
        assert listed() == ALL - {(STRANGER, 31000, WAN, 6000)}


@in_private_netns
def test_a_closed_binding_drops_its_flows_and_frees_its_port():
    with Net() as net:
        net.traffic()
        ct = Conntrack()
        try:
            assert ct.holds_port(5060, WAN) and ct.holds_port(6000, WAN) and ct.holds_port(7078, WAN)
            assert not ct.holds_port(5070, WAN) and not ct.holds_port(5060, "192.0.2.99")
            assert ct.delete_flows(reply=Match(dport=5060)) == 1          # replies to WAN port 5060
            assert not ct.holds_port(5060, WAN) and ct.holds_port(7078)
            assert listed() == ALL - {(LAN, 5060, FAR, 5060)}
            # one entry by its tuple; again, it is gone
            assert ct.delete(Tuple(LAN, FAR, 7078, 20000))
            assert not ct.delete(Tuple(LAN, FAR, 7078, 20000))
            assert ct.delete_all([Tuple(FAR, WAN, 30000, 6000), Tuple(STRANGER, WAN, 31000, 6000),
                                  Tuple(STRANGER, WAN, 1, 6000)]) == 2
            assert listed() == set() and ct.flows() == []
        finally:
            ct.close()


@in_private_netns
def test_an_answers_gate_clears_the_far_ends_flow_that_overtook_the_answer():
    # the far end's first packet to WAN port 6002 came before any gate (no DNAT: it ended here)
    from alg.core import actions as A
    from alg.core.bindings import Binding
    from alg.kernel.hygiene import Hygiene
    with Net() as net:
        net.traffic()
        net.send(net.wan, FAR, 30002, WAN, 6002)
        early = (FAR, 30002, WAN, 6002)
        assert early in listed()
        h = Hygiene(Conntrack())
        try:
            def by_orig(src, sport, dport):
                return h.ct.flows(orig=Match(src=src, sport=sport, dst=WAN, dport=dport))
            f = by_orig(FAR, 30002, 6002)
            assert len(f) == 1 and f[0].reply.src == WAN                 # ended at the router
            assert by_orig(FAR, 30000, 6000)[0].reply.src == LAN         # DNATed
            assert by_orig(FAR, 39999, 6002) == []
            gate = Binding((LAN, 7078), (WAN, 6002), "rtp", remote=(FAR, 30002))
            was = Binding((LAN, 7078), (WAN, 6002), "rtp", remote=None)
            h.clear_the_way([A.Action(A.MOVE, gate, old=was)], WAN)
            assert h.deleted == 1 and listed() == ALL
            # none there (the far end waited for its answer): nothing else goes
            gate = Binding((LAN, 7078), (WAN, 6006), "rtp", remote=(FAR, 30006))
            h.clear_the_way([A.Action(A.MOVE, gate, old=Binding((LAN, 7078), (WAN, 6006), "rtp", remote=None))], WAN)
            assert h.deleted == 1 and h.errors == 0 and listed() == ALL
            # a re-INVITE's answer moves the gate from the far end to another host, which sent first
            net.send(net.wan, STRANGER, 30008, WAN, 6008)
            assert (STRANGER, 30008, WAN, 6008) in listed()
            moved = Binding((LAN, 7082), (WAN, 6008), "rtp", remote=(STRANGER, 30008))
            h.clear_the_way([A.Action(A.MOVE, moved, old=Binding((LAN, 7082), (WAN, 6008), "rtp",
                                                                   remote=(FAR, 30000)))], WAN)
            assert h.deleted == 2 and listed() == ALL
            # the same host on another port: the gate admitted it already (by address), nothing to clear
            net.send(net.wan, STRANGER, 30010, WAN, 6010)
            same = Binding((LAN, 7084), (WAN, 6010), "rtp", remote=(STRANGER, 30012))
            h.clear_the_way([A.Action(A.MOVE, same, old=Binding((LAN, 7084), (WAN, 6010), "rtp",
                                                                 remote=(STRANGER, 30010)))], WAN)
            assert h.deleted == 2 and (STRANGER, 30010, WAN, 6010) in listed()
            subprocess.run(["conntrack", "-D", "-p", "udp", "--orig-port-dst", "6010"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            # by address only: after the verdict, a walk of the port's flows
            net.send(net.wan, FAR, 30004, WAN, 6004)
            addr_only = Binding((LAN, 7080), (WAN, 6004), "rtp", remote=(FAR, 0))
            h.defer([A.Action(A.MOVE, addr_only, old=Binding((LAN, 7080), (WAN, 6004), "rtp", remote=None))])
            h.run(WAN)
            assert h.deleted == 3 and listed() == ALL
        finally:
            h.close()
