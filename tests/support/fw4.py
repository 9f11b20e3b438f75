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


# -- a ruleset rendered from uci, for the QEMU VM's /sbin/fw4 stand-in (qemu/guest/overlay/sbin/fw4)

def _words(v):
    if v is None:
        return []
    return [w for item in (v if isinstance(v, list) else [v]) for w in item.split()]


def _false(v):
    return v is not None and v.lower() in ("0", "off", "false", "no", "disabled")


def _policy(v, default="drop"):
    return (v or default).lower()


def _devs(devices):
    return "{ %s }" % ", ".join('"%s"' % d for d in devices)


def render(firewall, network_devices, helpers, available, auto_includes=()):
    """What fw4 (firewall4 ruleset.uc, fw4.uc) renders for these uci sections, for the parts a SIP ALG
    meets: per-zone input/forward chains with their policies and forwardings, masquerading, nftables
    includes (uci `config include` and /usr/share/nftables.d chain-pre ones) at chain-prepend, and
    conntrack helpers per zone: `list helper`, else with auto_helper on and no masq every available
    helper (fw4.uc parse_zone), a helper available when its module is (parse_helper).  Written apart
    from alg/fw4.py, from fw4's sources, so that a test of one is no test of itself.

    firewall: alg.uci Sections; network_devices: interface -> device; helpers: fw4's definitions as
    (name, module, proto, port); available: module names present; auto_includes: (chain, path)."""
    defaults = next((s for s in firewall if s.type == "defaults"), None)
    d = defaults.options if defaults else {}
    defaults_auto = not _false(d.get("auto_helper"))
    zones = []
    for s in firewall:
        if s.type != "zone" or _false(s.get("enabled")) or not s.get("name"):
            continue
        devs = [network_devices[n] for n in _words(s.get("network")) if n in network_devices] + _words(s.get("device"))
        listed = _words(s.get("helper"))
        masq = not _false(s.get("masq", "0"))
        if listed:
            use = [h for h in helpers if h[0] in listed]
        elif defaults_auto and not _false(s.get("auto_helper")) and not masq:
            use = list(helpers)
        else:
            use = []
        zones.append({"name": s.get("name"), "devs": devs, "masq": masq, "helpers": [h for h in use if h[1] in available],
                      "input": _policy(s.get("input"), d.get("input")), "forward": _policy(s.get("forward"), d.get("forward")),
                      "dests": [f.get("dest") for f in firewall if f.type == "forwarding" and f.get("src") == s.get("name")]})
    includes = {}
    for s in firewall:
        if s.type == "include" and s.get("type") == "nftables" and not _false(s.get("enabled")) \
                and s.get("position") in ("chain-prepend", "chain-pre") and s.get("chain"):
            includes.setdefault(s.get("chain"), []).append(s.get("path"))
    for chain, path in auto_includes:
        includes.setdefault(chain, []).append(path)
    zones = [z for z in zones if z["devs"]]
    out = ["table inet fw4 {"]
    for h in sorted({h for z in zones for h in z["helpers"]}):
        out.append('\tct helper %s {\n\t\ttype "%s" protocol %s\n\t}\n' % (h[0], h[0], h[2]))
    out.append("\tchain handle_reject {\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject\n\t}\n")

    def inc(chain):
        return ['\t\tinclude "%s"' % p for p in includes.get(chain, [])]

    def verdict(policy):
        return "jump handle_reject" if policy == "reject" else policy
    out += ["\tchain input {", "\t\ttype filter hook input priority filter; policy %s;" % _policy(d.get("input")).replace("reject", "drop"),
            '\t\tiifname "lo" accept comment "!fw4: Accept traffic from loopback"',
            "\t\tct state vmap { established : accept, related : accept }"]
    out += ['\t\tiifname %s jump input_%s' % (_devs(z["devs"]), z["name"]) for z in zones]
    out += ["\t}", "", "\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy %s;" % _policy(d.get("forward")).replace("reject", "drop")]
    out += inc("forward")
    out += ["\t\tct state vmap { established : accept, related : accept }"]
    out += ['\t\tiifname %s jump forward_%s' % (_devs(z["devs"]), z["name"]) for z in zones]
    out += ["\t}", "", "\tchain output {", "\t\ttype filter hook output priority filter; policy accept;", "\t}", "",
            "\tchain prerouting {", "\t\ttype filter hook prerouting priority filter; policy accept;"]
    out += ['\t\tiifname %s jump helper_%s' % (_devs(z["devs"]), z["name"]) for z in zones if z["helpers"]]
    out += ["\t}", ""]
    by_name = {z["name"]: z for z in zones}
    for z in zones:
        n = z["name"]
        out += ["\tchain input_%s {" % n] + inc("input_" + n) + [
                "\t\tiifname %s counter %s" % (_devs(z["devs"]), verdict(z["input"])), "\t}", ""]
        out += ["\tchain forward_%s {" % n] + inc("forward_" + n)
        out += ["\t\toifname %s counter accept" % _devs(by_name[t]["devs"]) for t in z["dests"] if t in by_name]
        out += ["\t\toifname %s counter %s" % (_devs(z["devs"]), verdict(z["forward"])), "\t}", ""]
        if z["helpers"]:
            out += ["\tchain helper_%s {" % n]
            out += ['\t\tmeta l4proto %s %s dport %s ct helper set "%s" comment "!fw4: %s"' % (h[2], h[2], h[3], h[0], h[0])
                    for h in z["helpers"]]
            out += ["\t}", ""]
    out += ["\tchain dstnat {", "\t\ttype nat hook prerouting priority dstnat; policy accept;", "\t}", "",
            "\tchain srcnat {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    out += ['\t\toifname %s meta nfproto ipv4 masquerade comment "!fw4: Masquerade %s"' % (_devs(z["devs"]), z["name"])
            for z in zones if z["masq"]]
    out += ["\t}", "}", ""]
    return "\n".join(out)
