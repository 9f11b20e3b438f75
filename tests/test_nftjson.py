"""The one reader of `nft -j list table` (alg.kernel.nftjson), against what the real nft lists
for the daemon's own table, in a throwaway network namespace (unshare -n)."""
import json
import os
import subprocess
import sys

from tests.support import ROOT
from tests.support.need import need, need_tools

# the daemon's table with a phone's signalling binding and one narrowed media pinhole, read back
# both raw (table_elements) and as the daemon picks it up after a restart (NftTable.elements)
PROBE = """
import json, subprocess
from alg.core.bindings import Binding
from alg.kernel.nftables import NftTable
from alg.kernel.nftjson import table_elements
t = NftTable("wan0", "br0", "203.0.113.1", [5060], use_nft_queue=False)
t.rebuild([Binding(("10.0.0.2", 5060), ("203.0.113.1", 5060), "sip", 600.0, None, ("203.0.113.10",)),
           Binding(("10.0.0.2", 6000), ("203.0.113.1", 6000), "rtp", 600.0, ("203.0.113.10", 20000))], 0.0)
listed = subprocess.run(["nft", "-j", "list", "table", "ip", "sipalg"], stdout=subprocess.PIPE, check=True).stdout
print(json.dumps({"elements": table_elements(listed),
                  "restored": sorted([list(b.lan), list(b.wan), b.kind, b.remote and b.remote[0]]
                                     for b in t.elements())}))
"""


def test_table_elements_reads_the_daemons_table_as_nft_lists_it():
    need(os.geteuid() == 0, "needs root (nft in a new network namespace)")
    need_tools("nft", "unshare")
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", PROBE], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    el = got["elements"]
    assert sorted(el) == ["lan2wan", "media2lan", "media_open", "media_peer", "sip2lan", "sip_flood", "sip_flood_lan",
                          "sip_peer", "sip_peer_any",
                          "sip_ports", "sip_wanports"]
    assert el["sip_ports"] == [5060] and el["media_open"] == []          # a set without elements: []
    assert len(el["lan2wan"]) == 2 and len(el["sip2lan"]) == 1 and len(el["media2lan"]) == 1
    assert el["media_peer"][0]["elem"]["val"] == {"concat": [6000, "203.0.113.10"]}
    assert el["sip_peer"][0]["elem"]["val"] == {"concat": [5060, "203.0.113.10"]}
    assert got["restored"] == [[["10.0.0.2", 5060], ["203.0.113.1", 5060], "sip", None],
                               [["10.0.0.2", 6000], ["203.0.113.1", 6000], "rtp", "203.0.113.10"]]
