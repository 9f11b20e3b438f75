"""The kernel's own SIP helper: is it there, is something attaching it, and the last resort.

fw4 attaches conntrack helpers per zone (`auto_helper`, `list helper`), and
a helper counts as available when its module is loaded or built in
(/sys/module/nf_conntrack_sip).  With it attached, SIP would be rewritten
twice and the kernel would open expectations of its own.  Turning it off
is done the uci way, as root, by `sipalg firewall sync` (alg/fw4.py) while
sipalg is enabled; this module only looks (`helper_state`, shown in the
status and on the LuCI page) and, with disable_kernel_helper, takes out
what still attaches it after fw4 rendered its ruleset (a `config rule`
with `set_helper sip`, a file in /etc/nftables.d, another table): every
rule setting a ct helper of type "sip" and those helper objects.  That
needs CAP_NET_ADMIN only, which the daemon keeps.  Modules are left alone:
a helper nobody attaches does nothing (the kernel stopped attaching helpers
by port on its own in 4.7), and unloading needs CAP_SYS_MODULE, which the
daemon gives up after start.  Other helpers (ftp, tftp, ...) stay.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Dict, List, Optional, Tuple

MODULES = ("nf_nat_sip", "nf_conntrack_sip")
SYS_MODULE = "/sys/module"


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


def list_ruleset(nft: str = "nft") -> Optional[dict]:
    r = subprocess.run([nft, "-j", "list", "ruleset"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def helper_state(ruleset: Optional[dict], sys_module: str = SYS_MODULE) -> Dict[str, object]:
    """What the status shows: `present` (nf_conntrack_sip loaded or built in: fw4 counts it available),
    `builtin`, and `attached`: the chains with a rule setting it ("inet fw4 helper_lan")."""
    base = os.path.join(sys_module, "nf_conntrack_sip")
    present = os.path.isdir(base)
    rules = sip_helper_users(ruleset)[0] if ruleset else []
    return {"present": present, "builtin": present and not os.path.exists(os.path.join(base, "refcnt")),
            "attached": sorted({"%s %s %s" % r[:3] for r in rules})}


def disable_sip_helper(nft: str = "nft", ruleset: Optional[dict] = None) -> List[str]:
    """Take out the rules that still attach the kernel SIP helper; returns what was done, for the log."""
    done: List[str] = []
    ruleset = ruleset if ruleset is not None else list_ruleset(nft)
    if not ruleset:
        return done
    rules, objects = sip_helper_users(ruleset)
    script = "".join("delete rule %s %s %s handle %d\n" % rule for rule in rules)
    script += "".join("delete ct helper %s %s %s\n" % obj for obj in objects)
    if script:
        d = subprocess.run([nft, "-f", "-"], input=script.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if d.returncode == 0:
            done += ["removed rule %s %s %s handle %d (sets the sip helper)" % rule for rule in rules]
            done += ["removed ct helper %s %s %s" % obj for obj in objects]
        else:
            done.append("could not remove the sip helper rules: %s" % d.stderr.decode(errors="replace").strip()[:200])
    return done
