"""An fw4-shaped ruleset (tests/openwrt/fw4_shaped.nft) for the packaging and lab tests."""
import os

from tests.support import ROOT


def fw4_ruleset(lan: str, wan: str, includes, offload: bool = False) -> str:
    """The ruleset for these devices, with `include` lines for the given files in forward_wan; with
    `offload`, as fw4 renders software flow offloading (firewall4 ruleset.uc: `flowtable ft` over the
    zones' devices, hook ingress priority 0, and `flow offload @ft` first in forward)."""
    with open(os.path.join(ROOT, "tests", "openwrt", "fw4_shaped.nft")) as f:
        text = f.read()
    inc = "".join('\t\tinclude "%s"\n' % p for p in includes)
    flowtable = offload_rule = ""
    if offload:
        flowtable = ('\tflowtable ft {\n\t\thook ingress priority 0;\n\t\tdevices = { "%s", "%s" };\n'
                     '\t\tcounter;\n\t}\n' % tuple(sorted((lan, wan))))
        offload_rule = "\t\tmeta l4proto { tcp, udp } flow offload @ft;\n"
    return (text.replace("@LAN@", lan).replace("@WAN@", wan).replace("@INCLUDES@\n", inc)
            .replace("@FLOWTABLE@\n", flowtable).replace("@OFFLOAD@\n", offload_rule))
