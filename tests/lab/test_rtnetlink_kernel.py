"""rtnetlink lookups and change notifications against address changes made with `ip`, in a namespace of
its own.  Root only."""
import select
import subprocess
import time

from alg.kernel.rtnetlink import Rtnl, RtnlMonitor

from tests.support.private_netns import in_private_netns


def ip(*args):
    subprocess.run(("ip",) + args, check=True)


def _wait(mon, want, limit=1.0):
    """Events until one satisfies `want`; returns (event, seconds it took)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if select.select([mon], [], [], limit - (time.monotonic() - t0))[0]:
            for e in mon.read():
                if want(e):
                    return e, time.monotonic() - t0
    return None, limit


@in_private_netns
def test_a_wan_address_change_is_seen_at_once():
    ip("link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")      # no dummy module everywhere
    ip("link", "set", "wan0", "up")
    ip("addr", "add", "203.0.113.1/24", "dev", "wan0")
    r = Rtnl()
    mon = RtnlMonitor()
    try:
        idx = r.ifindex("wan0")
        assert r.ipv4("wan0") == "203.0.113.1" and r.networks("wan0") == ["203.0.113.0/24"]
        ip("addr", "add", "198.51.100.7/24", "dev", "wan0")
        e, took = _wait(mon, lambda e: e.kind == "newaddr" and e.address.address == "198.51.100.7")
        assert e is not None and e.index == idx and took < 0.2, took
        print("new address seen after %.1f ms" % (took * 1000))
        ip("addr", "del", "203.0.113.1/24", "dev", "wan0")
        e, took = _wait(mon, lambda e: e.kind == "deladdr" and e.address.address == "203.0.113.1")
        assert e is not None and took < 0.2
        assert r.ipv4("wan0") == "198.51.100.7"
        ip("addr", "add", "198.51.100.8/24", "dev", "wan0")                 # same network: a secondary
        e, _ = _wait(mon, lambda e: e.kind == "newaddr" and e.address.address == "198.51.100.8")
        assert e.address.secondary and r.ipv4("wan0") == "198.51.100.7"
        assert r.networks("wan0") == ["198.51.100.0/24"]
        ip("link", "set", "wan0", "down")
        e, _ = _wait(mon, lambda e: e.kind == "newlink" and e.index == idx and not e.link.up)
        assert e is not None and e.link.name == "wan0"
        ip("link", "del", "wan0")
        e, _ = _wait(mon, lambda e: e.kind == "dellink" and e.index == idx)
        assert e is not None and r.ifindex("wan0") is None and r.ipv4("wan0") is None
    finally:
        r.close()
        mon.close()


@in_private_netns
def test_ifindex_and_name_both_ways():
    ip("link", "add", "br-lan", "type", "veth", "peer", "name", "br-lanp")
    r = Rtnl()
    try:
        idx = r.ifindex("br-lan")
        assert idx and r.ifname(idx) == "br-lan" and r.links()[idx].name == "br-lan"
        assert r.ipv4("br-lan") is None and r.networks("br-lan") == []
    finally:
        r.close()
