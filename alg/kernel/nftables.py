"""The ALG's own nftables table: bindings and pinholes as map elements with timeouts.

    lan2wan      lan ip . lan port -> wan port     SNAT (srcnat - 5): ports the ALG chose,
                                                   so MASQUERADE never picks another one
    sip2lan      wan port -> lan ip . lan port     DNAT for signalling bindings: incoming
                                                   INVITEs reach the phone after conntrack forgot it
    media2lan    wan port -> lan ip . lan port     DNAT for media pinholes, gated by
    media_open   wan port                          ... any remote (far end not known yet)
    media_peer   wan port . remote ip              ... or only the far end from its SDP
    sip_wanports wan port                          inbound SIP to these is queued too

Only SIP is queued to userspace (RTP never is): with the nft `queue`
statement where the kernel has it, else by a packet mark that an iptables
NFQUEUE rule picks up (the host kernels without nft_queue).  Both use
bypass, so with no daemon listening SIP flows unmodified (fail-open).

Every element carries a timeout a little longer than the engine's own
expiry, so the kernel cleans up even if the daemon is killed, and a daemon
restarted in time finds its bindings still there (elements()).
"""

from __future__ import annotations

import math
import subprocess
from typing import Iterable, List, Optional, Sequence, Tuple

from alg.core import actions as A
from alg.core.bindings import Binding
from alg.kernel.nftjson import table_elements

MARK = 0x5A1A0001          # "queue me" for the iptables fallback
LOCAL_MARK = 0x5A1A0002    # our own keep-alive answers: never NATed
# OR'ed into the mark of a flow's first packet that our dstnat sends to a phone:
# fw4's forward_wan (policy drop) accepts it through our include file, since an
# accept in this table can't get past a drop in fw4's
DNAT_MARK = 0x5A1A0000
MARGIN = 5                 # seconds the kernel keeps an element past the engine's expiry


class NftError(RuntimeError):
    pass


def nft(script: str, binary: str = "nft", check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([binary, "-f", "-"], input=script.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise NftError(r.stderr.decode(errors="replace").strip())
    return r


def kernel_has_nft_queue(binary: str = "nft") -> bool:
    """Try the `queue` statement in a throwaway table (nft -c can't tell)."""
    probe = ("add table ip sipalg_probe\n"
             "add chain ip sipalg_probe c { type filter hook prerouting priority 0; }\n"
             "add rule ip sipalg_probe c udp dport 9 queue num 0 bypass\n")
    ok = nft(probe, binary, check=False).returncode == 0
    nft("delete table ip sipalg_probe\n", binary, check=False)
    return ok


class NftTable:
    def __init__(self, wan_if: str, lan_if: str, wan_ip: Optional[str], sip_ports: Sequence[int],
                 queue_num: int = 0, name: str = "sipalg", use_nft_queue: Optional[bool] = None,
                 binary: str = "nft", iptables: str = "iptables"):
        self.wan_if = wan_if
        self.lan_if = lan_if
        self.wan_ip = wan_ip
        self.sip_ports = list(sip_ports)
        self.queue_num = queue_num
        self.name = name
        self.binary = binary
        self.iptables = iptables
        self.use_nft_queue = kernel_has_nft_queue(binary) if use_nft_queue is None else use_nft_queue
        self.last_failure = ""
        # a registered userspace conntrack helper (alg.kernel.cthelper) that the table attaches to the
        # flows its queue rules take, so that no flowtable takes them past the queue; None: none
        self.ct_helper: Optional[str] = None

    # -- the table

    def _queue(self) -> str:
        if self.use_nft_queue:
            return "queue num %d bypass" % self.queue_num
        return "meta mark set 0x%08x" % MARK

    def ruleset(self) -> str:
        """The whole table, without elements."""
        t = self.name
        q = self._queue()
        ports = ", ".join(str(p) for p in self.sip_ports)
        wan = self.wan_ip or "0.0.0.0"
        m = "meta mark set meta mark or 0x%08x" % DNAT_MARK
        helper, attach = self._helper_rules(wan)
        return f"""table ip {t} {{
{helper}  set sip_ports {{ type inet_service; elements = {{ {ports} }}; }}
  map lan2wan {{ type ipv4_addr . inet_service : inet_service; flags timeout; }}
  map sip2lan {{ type inet_service : ipv4_addr . inet_service; flags timeout; }}
  map media2lan {{ type inet_service : ipv4_addr . inet_service; flags timeout; }}
  set media_open {{ type inet_service; flags timeout; }}
  set media_peer {{ type inet_service . ipv4_addr; flags timeout; }}
  set sip_wanports {{ type inet_service; flags timeout; }}
  chain queue_in {{
    type filter hook prerouting priority mangle - 10; policy accept;
    iifname "{self.wan_if}" ip daddr {wan} udp sport @sip_ports counter {q}
    iifname "{self.wan_if}" ip daddr {wan} udp dport @sip_wanports counter {q}
  }}
  chain queue_out {{
    type filter hook forward priority mangle - 10; policy accept;
    iifname "{self.lan_if}" oifname "{self.wan_if}" udp dport @sip_ports counter {q}
    iifname "{self.lan_if}" oifname "{self.wan_if}" udp sport @sip_ports counter {q}
  }}
{attach}  chain local_out {{
    type filter hook output priority raw; policy accept;
    meta mark 0x{LOCAL_MARK:08x} notrack
  }}
  chain dstnat {{
    type nat hook prerouting priority dstnat - 5; policy accept;
    iifname "{self.wan_if}" ip daddr {wan} udp dport @sip_wanports {m} dnat ip to udp dport map @sip2lan
    iifname "{self.wan_if}" ip daddr {wan} udp dport . ip saddr @media_peer {m} dnat ip to udp dport map @media2lan
    iifname "{self.wan_if}" ip daddr {wan} udp dport @media_open {m} dnat ip to udp dport map @media2lan
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname "{self.wan_if}" ct status dnat meta l4proto udp counter accept
  }}
  chain srcnat {{
    type nat hook postrouting priority srcnat - 5; policy accept;
    oifname "{self.wan_if}" meta l4proto udp snat ip to {wan} : ip saddr . udp sport map @lan2wan
  }}
}}
"""

    def _helper_rules(self, wan: str) -> Tuple[str, str]:
        """The helper object, and the chains that attach it to each flow the queue rules take (the same
        matches) on its first packet, after the queue's verdict: a verdict on a packet whose entry
        already has a userspace helper confirms the entry there and then, before NAT
        (nf_confirm_cthelper(), see alg/kernel/cthelper.py).  mangle + 5 comes after the iptables
        NFQUEUE fallback (mangle) too, and before dstnat."""
        if not self.ct_helper:
            return "", ""
        h = 'ct helper set "%s"' % self.ct_helper
        return f"""  ct helper {self.ct_helper} {{ type "{self.ct_helper}" protocol udp; }}
""", f"""  chain helper_in {{
    type filter hook prerouting priority mangle + 5; policy accept;
    iifname "{self.wan_if}" ip daddr {wan} udp sport @sip_ports {h}
    iifname "{self.wan_if}" ip daddr {wan} udp dport @sip_wanports {h}
  }}
  chain helper_out {{
    type filter hook forward priority mangle + 5; policy accept;
    iifname "{self.lan_if}" oifname "{self.wan_if}" udp dport @sip_ports {h}
    iifname "{self.lan_if}" oifname "{self.wan_if}" udp sport @sip_ports {h}
  }}
"""

    def install(self, keep_elements: bool = False) -> List[Binding]:
        """Create the table (replacing ours if there); returns the bindings it held if keep_elements."""
        kept: List[Binding] = []
        if keep_elements:
            kept = self.elements()
        script = "add table ip %s\ndelete table ip %s\n" % (self.name, self.name) + self.ruleset()
        script += "".join(self._element_lines(A.OPEN, b, None) for b in kept)
        self._run(script)
        if not self.use_nft_queue:
            self._iptables_queue(add=True)
        return kept

    def set_wan_ip(self, wan_ip: str, bindings: Iterable[Binding], now: float) -> None:
        """Renumbering: rules name the WAN address, so the table is rebuilt with its elements."""
        self.wan_ip = wan_ip
        self.rebuild(bindings, now)

    def reconfigure(self, wan_if: str, lan_if: str, sip_ports: Sequence[int], queue_num: int,
                    bindings: Iterable[Binding], now: float) -> None:
        """What the rules name changed (devices, e.g. PPPoE came up; SIP ports; queue): rebuild."""
        if not self.use_nft_queue:
            self._iptables_queue(add=False)
        self.wan_if, self.lan_if = wan_if, lan_if
        self.sip_ports = list(sip_ports)
        self.queue_num = queue_num
        self.rebuild(bindings, now)
        if not self.use_nft_queue:
            self._iptables_queue(add=True)

    def present(self) -> bool:
        return subprocess.run([self.binary, "list", "table", "ip", self.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0

    def rebuild(self, bindings: Iterable[Binding], now: float) -> None:
        """The table again, holding the engine's bindings: after renumbering, new devices, or `fw4 flush`."""
        script = "add table ip %s\ndelete table ip %s\n" % (self.name, self.name) + self.ruleset()
        for b in bindings:
            script += self._element_lines(A.OPEN, b, now)
        self._run(script)

    def remove(self) -> None:
        nft("delete table ip %s\n" % self.name, self.binary, check=False)
        if not self.use_nft_queue:
            self._iptables_queue(add=False)

    def _iptables_queue(self, add: bool) -> None:
        """The fallback hook: iptables NFQUEUE (mangle, priority -150) for what our chains marked."""
        for chain, iface in (("PREROUTING", ["-i", self.wan_if]), ("FORWARD", ["-i", self.lan_if])):
            # the mark outlives the hook: without -i an inbound packet would be queued twice
            match = iface + ["-m", "mark", "--mark", "0x%08x" % MARK, "-j", "NFQUEUE",
                     "--queue-num", str(self.queue_num), "--queue-bypass"]

            def ipt(op: str) -> int:
                return subprocess.run([self.iptables, "-t", "mangle", op, chain] + match,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
            if add:
                if ipt("-C") != 0 and ipt("-I") != 0:
                    raise NftError("iptables NFQUEUE rule could not be added in mangle %s" % chain)
            else:
                while ipt("-C") == 0:
                    if ipt("-D") != 0:
                        break

    # -- elements

    def _timeout(self, b: Binding, now: Optional[float]) -> str:
        if now is None:
            secs = max(1, int(math.ceil(b.expires)))      # restored: expires holds seconds left
        else:
            secs = max(1, int(math.ceil(b.expires - now)) + MARGIN)
        return "%ds" % secs

    def _element_lines(self, kind: str, b: Binding, now: Optional[float], old: Optional[Binding] = None) -> str:
        """The nft lines for one action; the binding's kind picks the maps."""
        t = self.name
        lan_ip, lan_port = b.lan
        wport = b.wan[1]
        to = self._timeout(b, now)
        lines = []
        if kind == A.CLOSE or kind == A.REFRESH:
            lines += self._delete_lines(b)
            if kind == A.CLOSE:
                return "".join(lines)
        if kind == A.MOVE and old is not None:
            lines += self._gate_delete(old)
            lines.append(self._gate_add(b, to))
            return "".join(lines)
        lines.append("add element ip %s lan2wan { %s . %d timeout %s : %d }\n" % (t, lan_ip, lan_port, to, wport))
        if b.kind == "sip":
            lines.append("add element ip %s sip2lan { %d timeout %s : %s . %d }\n" % (t, wport, to, lan_ip, lan_port))
            lines.append("add element ip %s sip_wanports { %d timeout %s }\n" % (t, wport, to))
        else:
            lines.append("add element ip %s media2lan { %d timeout %s : %s . %d }\n" % (t, wport, to, lan_ip, lan_port))
            lines.append(self._gate_add(b, to))
        return "".join(lines)

    def _gate_add(self, b: Binding, to: str) -> str:
        if b.remote is None:
            return "add element ip %s media_open { %d timeout %s }\n" % (self.name, b.wan[1], to)
        return "add element ip %s media_peer { %d . %s timeout %s }\n" % (self.name, b.wan[1], b.remote[0], to)

    def _gate_delete(self, b: Binding) -> List[str]:
        if b.remote is None:
            return ["delete element ip %s media_open { %d }\n" % (self.name, b.wan[1])]
        return ["delete element ip %s media_peer { %d . %s }\n" % (self.name, b.wan[1], b.remote[0])]

    def _delete_lines(self, b: Binding) -> List[str]:
        t = self.name
        lines = ["delete element ip %s lan2wan { %s . %d }\n" % (t, b.lan[0], b.lan[1])]
        if b.kind == "sip":
            lines.append("delete element ip %s sip2lan { %d }\n" % (t, b.wan[1]))
            lines.append("delete element ip %s sip_wanports { %d }\n" % (t, b.wan[1]))
        else:
            lines.append("delete element ip %s media2lan { %d }\n" % (t, b.wan[1]))
            lines += self._gate_delete(b)
        return lines

    def script_for(self, actions: Iterable[A.Action], now: float) -> str:
        out = []
        for a in actions:
            if a.kind == A.SEND or a.binding is None:
                continue
            out.append(self._element_lines(a.kind, a.binding, now, a.old))
        return "".join(out)

    def apply(self, actions: Iterable[A.Action], now: float) -> int:
        """Carry out the engine's actions in one nft transaction; returns lines that failed."""
        script = self.script_for(actions, now)
        if not script:
            return 0
        if nft(script, self.binary, check=False).returncode == 0:
            return 0
        # One line failed (an element the kernel already expired, or one that
        # survived a restart): do what can be done, line by line.
        failed = 0
        for line in script.splitlines(True):
            r = nft(line, self.binary, check=False)
            if r.returncode != 0:
                failed += 1
                self.last_failure = "%s: %s" % (line.strip(), r.stderr.decode(errors="replace").strip()[:200])
        return failed

    def _run(self, script: str) -> None:
        nft(script, self.binary)

    def elements(self) -> List[Binding]:
        """The bindings our table holds now (to pick up after a crash); expires = seconds left."""
        r = subprocess.run([self.binary, "-j", "list", "table", "ip", self.name], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            return []
        maps = table_elements(r.stdout)
        sig = set()
        for e in maps.get("sip2lan", []):
            sig.add(_elem_key(e[0]))
        peers = {}
        for e in maps.get("media_peer", []):
            key = _elem_key(e)
            peers[key[0]] = key[1]
        out = []
        for e in maps.get("lan2wan", []):
            key, left = _elem_key(e[0]), _elem_expires(e[0])
            wport = e[1]
            lan = (key[0], int(key[1]))
            if wport in sig:
                kind = "sip"
            else:
                kind = "rtp" if wport % 2 == 0 else "rtcp"
            remote = (peers[wport], 0) if wport in peers else None
            out.append(Binding(lan, (self.wan_ip, wport), kind, float(left), remote))
        return out


def _elem_key(e):
    """Key of a JSON element: plain value, {"elem": {...}} or {"concat": [...]}."""
    if isinstance(e, dict) and "elem" in e:
        e = e["elem"]["val"]
    if isinstance(e, dict) and "concat" in e:
        return tuple(e["concat"])
    return e


def _elem_expires(e) -> int:
    if isinstance(e, dict) and "elem" in e:
        return int(e["elem"].get("expires", e["elem"].get("timeout", 0)))
    return 0
