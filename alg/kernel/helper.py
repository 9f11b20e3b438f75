"""Keep the kernel's own SIP helper from rewriting what sipalg rewrites.

fw4 attaches every available conntrack helper to LAN traffic (`auto_helper`,
on by default for zones without masquerading), and a helper counts as
available when its module is loaded (/sys/module/nf_conntrack_sip).  With
kmod-nf-nathelper-sip installed, SIP would be rewritten twice and the
kernel would open expectations of its own.  So, when the config asks for it
(disable_kernel_helper, the default): delete every rule that sets a ct
helper of type "sip" and those helper objects (fw4's or anyone's), then try
to unload nf_nat_sip and nf_conntrack_sip, so fw4's next reload no longer
offers the helper.  A built-in helper can't be unloaded; then the rules are
taken out again after each fw4 reload (the fw4 include sends us a HUP).
Other helpers (ftp, tftp, ...) are left alone.
"""

from __future__ import annotations

import json
import subprocess
from typing import List, Tuple

MODULES = ("nf_nat_sip", "nf_conntrack_sip")


def sip_helper_users(ruleset: dict) -> Tuple[List[tuple], List[tuple]]:
    """From `nft -j list ruleset`: rules setting a sip helper, and the sip helper objects."""
    objects = {}
    for item in ruleset.get("nftables", []):
        h = item.get("ct helper")
        if h and h.get("type") == "sip":
            objects[(h["family"], h["table"], h["name"])] = h.get("handle")
    rules = []
    for item in ruleset.get("nftables", []):
        r = item.get("rule")
        if not r:
            continue
        for ex in r.get("expr", []):
            if isinstance(ex, dict) and "ct helper" in ex and (r["family"], r["table"], ex["ct helper"]) in objects:
                rules.append((r["family"], r["table"], r["chain"], r["handle"]))
                break
    return rules, sorted(objects)


def disable_sip_helper(nft: str = "nft", rmmod: str = "rmmod") -> List[str]:
    """Take the kernel SIP helper out of use; returns what was done, for the log."""
    done = []
    r = subprocess.run([nft, "-j", "list", "ruleset"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode == 0 and r.stdout.strip():
        rules, objects = sip_helper_users(json.loads(r.stdout))
        script = "".join("delete rule %s %s %s handle %d\n" % rule for rule in rules)
        script += "".join("delete ct helper %s %s %s\n" % obj for obj in objects)
        if script:
            d = subprocess.run([nft, "-f", "-"], input=script.encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            if d.returncode == 0:
                done += ["removed rule %s %s %s handle %d (sets the sip helper)" % rule for rule in rules]
                done += ["removed ct helper %s %s %s" % obj for obj in objects]
            else:
                done.append("could not remove the sip helper rules: %s"
                            % d.stderr.decode(errors="replace").strip()[:200])
    for mod in MODULES:
        try:
            with open("/sys/module/%s/refcnt" % mod):
                pass
        except OSError:
            continue                     # not loaded, or built in (no refcnt): nothing to unload
        u = subprocess.run([rmmod, mod], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done.append("unloaded %s" % mod if u.returncode == 0 else
                    "could not unload %s: %s" % (mod, u.stderr.decode(errors="replace").strip()[:200]))
    return done
