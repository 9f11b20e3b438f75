"""The in-process nf_tables writer against the real kernel, each test in a network namespace of its own.

The table is the daemon's own (NftTable.ruleset(), installed with nft -f);
elements are written, refreshed and deleted with NfTables and checked with
`nft -j list table` (here only: the writer never runs nft).  Root only.
"""
import json
import os
import select
import struct
import subprocess
import time


from alg.kernel import netlink as nl
from alg.kernel.nf_tables import NfTables, NfTablesMonitor, parse_event
from alg.kernel.nftables import NftTable

from tests.support.private_netns import in_private_netns

WAN_IP = "203.0.113.1"


def _install():
    t = NftTable("wan0", "br0", WAN_IP, [5060], use_nft_queue=False)
    subprocess.run(["nft", "-f", "-"], input=t.ruleset().encode(), check=True)


def _listed():
    """{set: {key: (data, timeout s, expires s)}} from `nft -j list table ip sipalg`."""
    out = json.loads(subprocess.run(["nft", "-j", "list", "table", "ip", "sipalg"], check=True,
                                    stdout=subprocess.PIPE).stdout)
    sets = {}
    for item in out["nftables"]:
        s = item.get("set") or item.get("map")
        if not s:
            continue
        elems = {}
        for e in s.get("elem", []):
            data = None
            if isinstance(e, list):                          # a map element: [key, data]
                e, data = e
                data = tuple(data["concat"]) if isinstance(data, dict) else data
            val = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
            key = tuple(val["concat"]) if isinstance(val, dict) else val
            meta = e["elem"] if isinstance(e, dict) and "elem" in e else {}
            elems[key] = (data, meta.get("timeout"), meta.get("expires"))
        sets[s["name"]] = elems
    return sets


def _kernel_updates_timeouts():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 12)


@in_private_netns
def test_add_refresh_delete_every_kind_of_element():
    _install()
    nft = NfTables("ip", "sipalg")
    try:
        b = nft.batch()
        b.add("lan2wan", ("10.0.0.2", 5060), 5060, timeout=60)
        b.add("sip2lan", 5060, ("10.0.0.2", 5060), timeout=60)
        b.add("sip_wanports", 5060, timeout=60)
        b.add("media2lan", 6000, ("10.0.0.2", 7078), timeout=60)
        b.add("media_open", 6000, timeout=60)
        b.add("media_peer", (6002, "198.51.100.7"), timeout=60)
        assert b.commit() == []
        got = _listed()
        assert got["lan2wan"][("10.0.0.2", 5060)][:2] == (5060, 60)
        assert got["sip2lan"][5060][:2] == (("10.0.0.2", 5060), 60)
        assert got["media2lan"][6000][:2] == (("10.0.0.2", 7078), 60)
        assert got["sip_wanports"][5060][1] == 60 and got["media_open"][6000][1] == 60
        assert got["media_peer"][(6002, "198.51.100.7")][1] == 60

        time.sleep(1.2)
        b = nft.batch()
        b.refresh("lan2wan", ("10.0.0.2", 5060), 5060, timeout=120)
        b.refresh("sip_wanports", 5060, timeout=60)           # the same timeout again: expiry still reset
        assert b.commit() == []
        got = _listed()
        assert got["lan2wan"][("10.0.0.2", 5060)][:2] == (5060, 120)
        assert got["lan2wan"][("10.0.0.2", 5060)][2] >= 119     # nft -j shows whole seconds
        assert got["sip_wanports"][5060][2] >= 59, got["sip_wanports"]
        assert got["media_open"][6000][2] < 59                 # untouched: it kept ageing

        b = nft.batch()
        for s, k in (("lan2wan", ("10.0.0.2", 5060)), ("sip2lan", 5060), ("sip_wanports", 5060),
                     ("media2lan", 6000), ("media_open", 6000), ("media_peer", (6002, "198.51.100.7"))):
            b.delete(s, k)
        assert b.commit() == []
        assert all(not v for k, v in _listed().items() if k != "sip_ports")
    finally:
        nft.close()


@in_private_netns
def test_one_bad_element_fails_alone():
    _install()
    nft = NfTables("ip", "sipalg")
    try:
        b = nft.batch()
        for port in range(6000, 6010):
            b.add("media_open", port, timeout=30)
        b.add("media_open", b"\x01\x02\x03", timeout=30)      # a 3-byte key in a 2-byte set: EINVAL
        b.delete("media_open", 7000)                          # not there: ENOENT
        b.add("no_such_set", 5060, timeout=30)                # ENOENT
        b.add("lan2wan", ("10.0.0.3", 99999), 5, timeout=30)  # refused before it is sent
        b.add("sip_wanports", 5060, timeout=30)
        failures = b.commit()
        assert sorted((f.op, f.set, f.errno) for f in failures) == [
            ("add", "lan2wan", 22), ("add", "media_open", 22), ("add", "no_such_set", 2), ("delete", "media_open", 2)]
        assert "99999" in [str(f) for f in failures if f.set == "lan2wan"][0]
        got = _listed()
        assert sorted(got["media_open"]) == list(range(6000, 6010)) and 5060 in got["sip_wanports"]
        assert nft.commits == 2                               # the batch, then once without the bad ones
    finally:
        nft.close()


@in_private_netns
def test_a_batch_that_goes_through_leaves_nothing_to_read():
    """No element message asks for an ack: the kernel answers only failures, and has answered
    them by the time sendmsg returns, so a good batch leaves the socket empty (the daemon reads
    nothing before a new binding's verdict) and a bad one has its errors queued already."""
    _install()
    nft = NfTables("ip", "sipalg")
    try:
        sent = []
        send = nft.nl.send
        nft.nl.send = lambda data: (sent.append(bytes(data)), send(data))[1]
        b = nft.batch()
        b.add("lan2wan", ("10.0.0.2", 5060), 5060, timeout=30).add("sip_wanports", 5060, timeout=30)
        assert b.commit() == [] and nft.commits == 1
        assert select.select([nft.nl.sock], [], [], 0)[0] == []     # nothing answered, nothing to read
        flags = []
        data = sent[0]
        while data:
            n, mtype, f = struct.unpack_from("=IHH", data)
            flags.append((mtype & 0xFF, f & 0x4))                   # NLM_F_ACK
            data = data[(n + 3) & ~3:]
        assert flags == [(0x10, 0), (12, 0), (12, 0), (0x11, 0)]    # BEGIN, NEWSETELEM x2, END: no ack asked
        assert "sip_wanports" in _listed() and 5060 in _listed()["sip_wanports"]
    finally:
        nft.close()


@in_private_netns
def test_refresh_uses_the_kernels_update_and_the_fallback_works_too():
    _install()
    probe = NfTables("ip", "sipalg")
    assert probe.timeout_update is _kernel_updates_timeouts()
    assert "sipalg_probe" not in subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE).stdout.decode()
    mon = _EveryEvent()                  # the monitor hides element events; this sees them all
    forced = NfTables("ip", "sipalg", timeout_update=False)
    try:
        b = probe.batch().add("sip2lan", 5060, ("10.0.0.2", 5060), timeout=30).add("sip2lan", 5062, ("10.0.0.3", 5060),
                                                                                   timeout=30)
        assert b.commit() == []
        _drain(mon)
        time.sleep(1.1)
        assert probe.batch().refresh("sip2lan", 5060, ("10.0.0.2", 5060), timeout=90).commit() == []
        kinds = [e.kind for e in _drain(mon) if e.kind.endswith("setelem")]
        assert kinds == (["newsetelem"] if probe.timeout_update else ["delsetelem", "newsetelem"])
        assert forced.batch().refresh("sip2lan", 5062, ("10.0.0.3", 5060), timeout=90).commit() == []
        assert [e.kind for e in _drain(mon) if e.kind.endswith("setelem")] == ["delsetelem", "newsetelem"]
        # a refresh of an element that expired or was never there creates it, both ways
        assert forced.batch().refresh("sip2lan", 5064, ("10.0.0.4", 5060), timeout=90).commit() == []
        assert probe.batch().refresh("sip2lan", 5066, ("10.0.0.5", 5060), timeout=90).commit() == []
        got = _listed()["sip2lan"]
        assert {k: v[:2] for k, v in got.items()} == {5060: (("10.0.0.2", 5060), 90), 5062: (("10.0.0.3", 5060), 90),
                                                      5064: (("10.0.0.4", 5060), 90), 5066: (("10.0.0.5", 5060), 90)}
        assert all(v[2] > 80 for v in got.values())             # all reset (they had 30 s)
    finally:
        probe.close()
        forced.close()
        mon.close()


class _EveryEvent(nl.Subscription):
    """NFNLGRP_NFTABLES without the monitor's filter."""

    def __init__(self):
        super().__init__(nl.NETLINK_NETFILTER, [nl.NFNLGRP_NFTABLES])

    def read(self):
        return [e for m in self.messages()[0] for e in (parse_event(m[0], m[3]),) if e is not None]


def _drain(mon, wait=0.3):
    out = []
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if select.select([mon], [], [], max(0, end - time.monotonic()))[0]:
            out += mon.read()
    return out


@in_private_netns
def test_elements_read_back_with_time_left():
    _install()
    nft = NfTables("ip", "sipalg")
    try:
        b = nft.batch()
        b.add("lan2wan", ("10.0.0.2", 5060), 5060, timeout=3600)
        b.add("lan2wan", ("10.0.0.3", 6000), 6002, timeout=20)
        b.add("media_peer", (6002, "198.51.100.7"), timeout=20)
        b.add("sip_wanports", 5060, timeout=3600)
        assert b.commit() == []
        lan2wan = {e.key: e for e in nft.elements("lan2wan")}
        assert set(lan2wan) == {("10.0.0.2", 5060), ("10.0.0.3", 6000)}
        assert lan2wan[("10.0.0.3", 6000)].data == 6002 and lan2wan[("10.0.0.3", 6000)].timeout == 20
        assert 19 < lan2wan[("10.0.0.3", 6000)].expires <= 20
        assert [(e.key, e.data) for e in nft.elements("media_peer")] == [((6002, "198.51.100.7"), None)]
        assert [e.key for e in nft.elements("sip_ports")] == [5060] and nft.elements("sip_ports")[0].timeout is None
        assert len(nft.elements("media_open")) == 0
        many = nft.batch()
        for port in range(10000, 12000):                      # more than one dump message's worth
            many.add("media_open", port, timeout=60)
        assert many.commit() == [] and nft.commits == 3       # 2,000 elements: two kernel batches
        assert sorted(e.key for e in nft.elements("media_open")) == list(range(10000, 12000))
    finally:
        nft.close()


@in_private_netns
def test_the_table_going_away_is_seen_at_once():
    _install()
    nft = NfTables("ip", "sipalg", timeout_update=False)
    mon = NfTablesMonitor("ip", "sipalg")
    try:
        assert nft.table_exists()
        assert nft.batch().add("sip_wanports", 5060, timeout=30).commit() == []
        assert not mon.removed(_drain(mon, 0.1))               # our own writes are announced, and harmless
        t0 = time.monotonic()
        subprocess.run(["nft", "flush", "ruleset"], check=True)
        assert select.select([mon], [], [], 2.0)[0]
        events = mon.read()
        assert mon.removed(events) and time.monotonic() - t0 < 1.0
        assert any(e.kind == "deltable" and e.table == "sipalg" for e in events)
        assert not nft.table_exists()
        _install()
        assert nft.table_exists() and not mon.removed([e for e in _drain(mon, 0.1) if e.kind != "deltable"])
        subprocess.run(["nft", "delete", "chain", "ip", "sipalg", "dstnat"], check=True)
        assert mon.removed(_drain(mon, 0.2))                   # a chain of ours taken out counts too
        subprocess.run(["nft", "add", "table", "ip", "other"], check=True)
        subprocess.run(["nft", "delete", "table", "ip", "other"], check=True)
        assert not mon.removed(_drain(mon, 0.2))               # someone else's table: not ours
    finally:
        nft.close()
        mon.close()


@in_private_netns
def test_our_own_element_writes_do_not_wake_the_monitor():
    """The monitor's socket filter keeps element and generation notifications in the kernel: a
    new binding's elements written (one commit, its notifications in one datagram), refreshed
    and deleted leave nothing to read, while a commit that also takes a rule or chain away
    (the same datagram holding elements and the removal) and one with more messages than
    the filter walks still arrive whole."""
    _install()
    nft = NfTables("ip", "sipalg")
    mon = NfTablesMonitor("ip", "sipalg")
    try:
        assert mon.hiding
        _drain(mon, 0.1)
        b = nft.batch()
        b.add("lan2wan", ("10.0.0.2", 5060), 5060, timeout=30).add("sip2lan", 5060, ("10.0.0.2", 5060), timeout=30)
        b.add("sip_wanports", 5060, timeout=30).add("sip_peer", (5060, "198.51.100.7"), timeout=30)
        assert b.commit() == []
        assert nft.batch().refresh("sip_wanports", 5060, timeout=60).commit() == []
        assert nft.batch().delete("sip_peer", (5060, "198.51.100.7")).commit() == []
        assert select.select([mon], [], [], 0.2)[0] == []          # nothing woke the reader
        many = nft.batch()
        for port in range(6000, 6040, 2):                          # 20 messages in one commit
            many.add("sip_wanports", port, timeout=30)
        assert many.commit() == []
        assert [e.kind for e in _drain(mon, 0.2)].count("newsetelem") == 20
        subprocess.run(["nft", "-f", "-"], check=True, input=(
            b"add element ip sipalg sip_wanports { 7000 timeout 30s }\n"
            b"delete chain ip sipalg dstnat\n"))
        events = _drain(mon, 0.2)
        assert mon.removed(events) and "newsetelem" in [e.kind for e in events]
    finally:
        nft.close()
        mon.close()
