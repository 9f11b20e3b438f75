"""An fw4-shaped ruleset (tests/openwrt/fw4_shaped.nft) for the packaging and lab tests."""
import os

from tests.support import ROOT


def fw4_ruleset(lan: str, wan: str, includes) -> str:
    """The ruleset for these devices, with `include` lines for the given files in forward_wan."""
    with open(os.path.join(ROOT, "tests", "openwrt", "fw4_shaped.nft")) as f:
        text = f.read()
    inc = "".join('\t\tinclude "%s"\n' % p for p in includes)
    return text.replace("@LAN@", lan).replace("@WAN@", wan).replace("@INCLUDES@\n", inc)
