"""The ALG's own nftables table: bindings and pinholes as map elements with timeouts.

    lan2wan      lan ip . lan port -> wan port     SNAT (srcnat - 5): ports the ALG chose,
                                                   so MASQUERADE never picks another one
    sip2lan      wan port -> lan ip . lan port     DNAT for signalling bindings: incoming
                                                   INVITEs reach the phone after conntrack forgot it
    sip_wanports wan port                          the signalling bindings' WAN ports
    sip_peer     wan port . remote ip              ... and who may start a flow to each: the
                                                   phone's peers (inbound_sip 'peers', the default)
    sip_peer_any remote ip or network              the user's `list sip_peer`: any binding
    media2lan    wan port -> lan ip . lan port     DNAT for media pinholes, gated by
    media_peer   wan port . remote ip              ... only the far end its SDP named
    media_open   wan port                          ... or anyone (media_from 'any', until it is known)

Only SIP is queued to userspace, and only SIP from the LAN side or SIP the
bindings admit from the WAN side (RTP never is): with the nft `queue`
statement where the kernel has it, else by a packet mark that an iptables
NFQUEUE rule picks up (the host kernels without nft_queue).  Both use
bypass, so with no daemon listening SIP flows unmodified (fail-open).
WAN-side SIP to a binding from anyone else is neither queued nor let in,
and counted (counter sip_refused).

Elements are written from the daemon itself over netlink (nf_tables.py):
one batch per packet's actions, per-element errors, no process.  The whole
table is installed with `nft -f` at start and on rebuilds only.  Every
element carries a timeout a little longer than the engine's own expiry, so
the kernel cleans up even if the daemon is killed, and a daemon restarted
in time finds its bindings still there (elements()).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from typing import Iterable, List, Optional, Sequence, Tuple

from alg.core import actions as A
from alg.core.bindings import Binding, SIP
from alg.core.policy import ANYONE
from alg.kernel.nf_tables import ElementFailure, NfTables

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


def _names(ifaces: Sequence[str]) -> str:
    """An nft match set of interface names: "br-lan" or { "br-lan", "br-voip" }."""
    quoted = ", ".join('"%s"' % i for i in ifaces)
    return quoted if len(ifaces) == 1 else "{ %s }" % quoted


def _meter(match: str, name: str, rate: int) -> str:
    """A per-source meter rule: what matches, past `rate` datagrams/s (burst twice that) from one
    address, is accepted here, so it skips the queue rules after it; counted in counter `name`.
    No rule for rate 0."""
    if not rate:
        return ""
    return ("    %s update @%s { ip saddr limit rate over %d/second burst %d packets } counter name \"%s\" accept\n"
            % (match, name, rate, 2 * rate, name))


class NftTable:
    """Our table: its rules (nft -f), its elements (netlink), the iptables queue fallback.

    inbound_sip: "peers" (a binding admits its peers and sip_peers only) or "any".
    sip_peers:   the user's `list sip_peer` (addresses or CIDRs), admitted to every binding."""

    def __init__(self, wan_if: str, lan_ifs: Sequence[str], wan_ip: Optional[str], sip_ports: Sequence[int],
                 queue_num: int = 0, name: str = "sipalg", use_nft_queue: Optional[bool] = None,
                 binary: str = "nft", iptables: str = "iptables", inbound_sip: str = "peers",
                 sip_peers: Sequence[str] = (), wan_sip_rate: int = 0, lan_sip_rate: int = 0,
                 state_dir: Optional[str] = None):
        self.wan_if = wan_if
        self.lan_ifs = [lan_ifs] if isinstance(lan_ifs, str) else list(lan_ifs)
        self.wan_ip = wan_ip
        self.sip_ports = list(sip_ports)
        self.queue_num = queue_num
        self.name = name
        self.binary = binary
        self.iptables = iptables
        self.inbound_sip = inbound_sip
        self.sip_peers = list(sip_peers)
        self.wan_sip_rate = wan_sip_rate
        self.lan_sip_rate = lan_sip_rate
        self.use_nft_queue = kernel_has_nft_queue(binary) if use_nft_queue is None else use_nft_queue
        self.nl: Optional[NfTables] = None
        self.last_failure = ""
        # the iptables fallback adds rules to `table ip mangle` (iptables-nft): whether that table was
        # there before, so remove() leaves the router as it found it.  A marker in the state dir
        # keeps the answer across a crash and restart (the table is there then, but ours).
        self._mangle_was_there: Optional[bool] = None
        self._mangle_marker = os.path.join(state_dir, "mangle-created-by-sipalg") if state_dir else None
        # a registered userspace conntrack helper (alg.kernel.cthelper) that the table attaches to the
        # flows its queue rules take, so that no flowtable takes them past the queue; None: none
        self.ct_helper: Optional[str] = None

    # -- the table

    def _queue(self) -> str:
        if self.use_nft_queue:
            return "queue num %d bypass" % self.queue_num
        # accept ends this chain as `queue` would; the iptables rule after it queues the mark
        return "meta mark set 0x%08x accept" % MARK

    def ruleset(self) -> str:
        """The whole table, without elements."""
        t = self.name
        q = self._queue()
        ports = ", ".join(str(p) for p in self.sip_ports)
        wan = self.wan_ip or "0.0.0.0"
        w = '"%s"' % self.wan_if
        m = "meta mark set meta mark or 0x%08x" % DNAT_MARK
        peers = ", ".join(self.sip_peers)
        any_peer = "elements = { %s }; " % peers if peers else ""
        match_in, match_out = self._matches(wan)
        queue_in = "".join("    %s counter %s\n" % (mt, q) for mt in match_in)
        # a WAN host past its rate passes as plain NAT (still DNAT'd when admitted), never queued
        queue_in = _meter("iifname %s ip daddr %s udp dport @sip_wanports" % (w, wan), "sip_flood",
                          self.wan_sip_rate) + queue_in
        # a LAN host's past lan_sip_rate: plain NAT, unqueued (each meter right before its queue
        # rule, so a datagram is counted once)
        queue_out = "".join("%s    %s counter %s\n" % (_meter(mt, "sip_flood_lan", self.lan_sip_rate), mt, q)
                            for mt in match_out)
        dnat_sip = "".join("    %s %s dnat ip to udp dport map @sip2lan\n" % (mt, m) for mt in match_in)
        helper, attach = self._helper_rules(match_in, match_out)
        return f"""table ip {t} {{
{helper}  set sip_ports {{ type inet_service; elements = {{ {ports} }}; }}
  map lan2wan {{ type ipv4_addr . inet_service : inet_service; flags timeout; }}
  map sip2lan {{ type inet_service : ipv4_addr . inet_service; flags timeout; }}
  set sip_wanports {{ type inet_service; flags timeout; }}
  set sip_peer {{ type inet_service . ipv4_addr; flags timeout; }}
  set sip_peer_any {{ type ipv4_addr; flags interval; {any_peer}}}
  map media2lan {{ type inet_service : ipv4_addr . inet_service; flags timeout; }}
  set media_peer {{ type inet_service . ipv4_addr; flags timeout; }}
  set media_open {{ type inet_service; flags timeout; }}
  set sip_flood {{ type ipv4_addr; flags dynamic, timeout; timeout 10s; size 65535; }}
  set sip_flood_lan {{ type ipv4_addr; flags dynamic, timeout; timeout 10s; size 65535; }}
  counter sip_refused {{ }}
  counter sip_flood {{ }}
  counter sip_flood_lan {{ }}
  chain queue_in {{
    type filter hook prerouting priority mangle - 10; policy accept;
{queue_in}    iifname {w} ip daddr {wan} udp dport @sip_wanports counter name "sip_refused"
  }}
  chain queue_out {{
    type filter hook forward priority mangle - 10; policy accept;
{queue_out}  }}
{attach}  chain local_out {{
    type filter hook output priority raw; policy accept;
    meta mark 0x{LOCAL_MARK:08x} notrack
  }}
  chain dstnat {{
    type nat hook prerouting priority dstnat - 5; policy accept;
{dnat_sip}    iifname {w} ip daddr {wan} udp dport . ip saddr @media_peer {m} dnat ip to udp dport map @media2lan
    iifname {w} ip daddr {wan} udp dport @media_open {m} dnat ip to udp dport map @media2lan
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname {w} ct status dnat meta l4proto udp counter accept
  }}
  chain srcnat {{
    type nat hook postrouting priority srcnat - 5; policy accept;
    oifname {w} meta l4proto udp snat ip to {wan} : ip saddr . udp sport map @lan2wan
  }}
}}
"""

    def _writer(self) -> NfTables:
        if self.nl is None:
            self.nl = NfTables("ip", self.name)
        return self.nl

    def _matches(self, wan: str) -> Tuple[List[str], List[str]]:
        """What SIP the table takes: from the WAN side what the bindings admit (their peers, the
        user's sip_peers, or anyone with inbound_sip 'any'), from the LAN side all of it."""
        w = '"%s"' % self.wan_if
        if self.inbound_sip == "any":
            admit = ["udp dport @sip_wanports"]
        else:
            admit = ["udp dport . ip saddr @sip_peer", "ip saddr @sip_peer_any udp dport @sip_wanports"]
        lans = _names(self.lan_ifs)
        return (["iifname %s ip daddr %s %s" % (w, wan, a) for a in admit],
                ["iifname %s oifname %s udp dport @sip_ports" % (lans, w),
                 "iifname %s oifname %s udp sport @sip_ports" % (lans, w)])

    def _helper_rules(self, match_in: List[str], match_out: List[str]) -> Tuple[str, str]:
        """The helper object, and the chains that attach it to each flow the queue rules take (the same
        matches) on its first packet, after the queue's verdict: a verdict on a packet whose entry
        already has a userspace helper confirms the entry there and then, before NAT
        (nf_confirm_cthelper(), see alg/kernel/cthelper.py).  mangle + 5 comes after the iptables
        NFQUEUE fallback (mangle) too, and before dstnat."""
        if not self.ct_helper:
            return "", ""
        h = 'ct helper set "%s"' % self.ct_helper
        rules_in = "".join("    %s %s\n" % (mt, h) for mt in match_in)
        rules_out = "".join("    %s %s\n" % (mt, h) for mt in match_out)
        return f"""  ct helper {self.ct_helper} {{ type "{self.ct_helper}" protocol udp; }}
""", f"""  chain helper_in {{
    type filter hook prerouting priority mangle + 5; policy accept;
{rules_in}  }}
  chain helper_out {{
    type filter hook forward priority mangle + 5; policy accept;
{rules_out}  }}
"""

    def install(self, keep_elements: bool = False) -> List[Binding]:
        """Create the table (replacing ours if there); returns the bindings it held if keep_elements
        (their expires: the seconds the kernel still gives them)."""
        kept: List[Binding] = []
        if keep_elements and self.present():
            kept = self.elements()
        self._load(kept, None)
        if not self.use_nft_queue:
            self._iptables_queue(add=True)
        return kept

    def set_wan_ip(self, wan_ip: str, bindings: Iterable[Binding], now: float) -> None:
        """Renumbering: rules name the WAN address, so the table is rebuilt with its elements."""
        self.wan_ip = wan_ip
        self.rebuild(bindings, now)

    def reconfigure(self, wan_if: str, lan_ifs: Sequence[str], sip_ports: Sequence[int], queue_num: int,
                    bindings: Iterable[Binding], now: float, inbound_sip: Optional[str] = None,
                    sip_peers: Optional[Sequence[str]] = None, wan_sip_rate: Optional[int] = None,
                    lan_sip_rate: Optional[int] = None) -> None:
        """What the rules name changed (devices, e.g. PPPoE came up; SIP ports; queue; who may
        come in): rebuild."""
        if not self.use_nft_queue:
            self._iptables_queue(add=False)
        self.wan_if = wan_if
        self.lan_ifs = [lan_ifs] if isinstance(lan_ifs, str) else list(lan_ifs)
        self.sip_ports = list(sip_ports)
        self.queue_num = queue_num
        if inbound_sip is not None:
            self.inbound_sip = inbound_sip
        if sip_peers is not None:
            self.sip_peers = list(sip_peers)
        if wan_sip_rate is not None:
            self.wan_sip_rate = wan_sip_rate
        if lan_sip_rate is not None:
            self.lan_sip_rate = lan_sip_rate
        self.rebuild(bindings, now)
        if not self.use_nft_queue:
            self._iptables_queue(add=True)

    def present(self) -> bool:
        return self._writer().table_exists()

    def rebuild(self, bindings: Iterable[Binding], now: float) -> None:
        """The table again, holding the engine's bindings: after renumbering, new devices, or `fw4 flush`
        (`nft flush ruleset` takes iptables-nft's rules too: the fallback hook is checked, added if gone)."""
        self._load(list(bindings), now)
        if not self.use_nft_queue:
            self._iptables_queue(add=True)

    def _load(self, bindings: List[Binding], now: Optional[float]) -> None:
        nft("add table ip %s\ndelete table ip %s\n" % (self.name, self.name) + self.ruleset(), self.binary)
        if bindings:
            batch = self._writer().batch()
            for b in bindings:
                self._open(batch, b, self._timeout(b, now))
            self._commit(batch)

    def remove(self) -> None:
        nft("delete table ip %s\n" % self.name, self.binary, check=False)
        if not self.use_nft_queue:
            self._iptables_queue(add=False)
            self._remove_mangle_if_ours()
        if self.nl is not None:
            self.nl.close()
            self.nl = None

    def queue_rules_ok(self) -> bool:
        """Are the iptables fallback's queue rules all there (always True with the nft queue)?"""
        if self.use_nft_queue:
            return True
        return all(self._ipt(op="-C", chain=c, match=m) == 0 for c, m in self._fallback_rules())

    def ensure_queue_rules(self) -> bool:
        """Put back fallback queue rules someone removed (an `nft flush ruleset`, `iptables -F`);
        True when some were missing."""
        if self.queue_rules_ok():
            return False
        self._iptables_queue(add=True)
        return True

    def _fallback_rules(self) -> List[Tuple[str, List[str]]]:
        hooks = [("PREROUTING", ["-i", self.wan_if])] + [("FORWARD", ["-i", i]) for i in self.lan_ifs]
        # the mark outlives the hook: without -i an inbound packet would be queued twice
        return [(chain, iface + ["-m", "mark", "--mark", "0x%08x" % MARK, "-j", "NFQUEUE",
                                 "--queue-num", str(self.queue_num), "--queue-bypass"]) for chain, iface in hooks]

    def _ipt(self, op: str, chain: str, match: List[str]) -> int:
        return subprocess.run([self.iptables, "-t", "mangle", op, chain] + match,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode

    def _mangle_present(self) -> bool:
        return subprocess.run([self.binary, "list", "table", "ip", "mangle"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0

    def _iptables_queue(self, add: bool) -> None:
        """The fallback hook: iptables NFQUEUE (mangle, priority -150) for what our chains marked."""
        if add and self._mangle_was_there is None:
            marker = self._mangle_marker
            self._mangle_was_there = self._mangle_present() and not (marker and os.path.exists(marker))
            if not self._mangle_was_there and marker:
                try:
                    os.makedirs(os.path.dirname(marker), exist_ok=True)
                    with open(marker, "w"):
                        pass
                except OSError:
                    pass
        for chain, match in self._fallback_rules():
            if add:
                if self._ipt("-C", chain, match) != 0 and self._ipt("-I", chain, match) != 0:
                    raise NftError("iptables NFQUEUE rule could not be added in mangle %s" % chain)
            else:
                while self._ipt("-C", chain, match) == 0:
                    if self._ipt("-D", chain, match) != 0:
                        break

    def _remove_mangle_if_ours(self) -> None:
        """iptables-nft made `table ip mangle` for our rules: take it back when it holds none now."""
        if self._mangle_was_there is not False:
            return
        r = subprocess.run([self.binary, "-j", "list", "table", "ip", "mangle"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return
        try:
            items = json.loads(r.stdout).get("nftables", [])
        except ValueError:
            return
        if not any("rule" in i for i in items):
            nft("delete table ip mangle\n", self.binary, check=False)
        if self._mangle_marker:
            try:
                os.unlink(self._mangle_marker)
            except OSError:
                pass

    # -- elements

    def _timeout(self, b: Binding, now: Optional[float]) -> float:
        if now is None:
            return max(1, int(math.ceil(b.expires)))      # restored: expires holds seconds left
        return max(1, int(math.ceil(b.expires - now)) + MARGIN)

    @staticmethod
    def _gate(b: Binding) -> Optional[Tuple[str, object]]:
        """Which set lets the far end in through a media binding: (set, key), or None: nobody yet."""
        if b.remote is None:
            return None
        if b.remote == ANYONE:
            return "media_open", b.wan[1]
        return "media_peer", (b.wan[1], b.remote[0])

    def _open(self, batch, b: Binding, to: float) -> None:
        self._elements(batch.add, b, to)

    def _refresh(self, batch, b: Binding, to: float) -> None:
        self._elements(batch.refresh, b, to)

    def _elements(self, put, b: Binding, to: float) -> None:
        """A binding's elements, each through put (a batch's add or refresh)."""
        port = b.wan[1]
        put("lan2wan", b.lan, port, to)
        if b.kind == SIP:
            put("sip2lan", port, b.lan, to)
            put("sip_wanports", port, None, to)
            for ip in b.peers:
                put("sip_peer", (port, ip), None, to)
        else:
            put("media2lan", port, b.lan, to, b.tag)
            gate = self._gate(b)
            if gate is not None:
                put(gate[0], gate[1], None, to)

    def _close(self, batch, b: Binding) -> None:
        port = b.wan[1]
        batch.delete("lan2wan", b.lan)
        if b.kind == SIP:
            batch.delete("sip2lan", port)
            batch.delete("sip_wanports", port)
            for ip in b.peers:
                batch.delete("sip_peer", (port, ip))
        else:
            batch.delete("media2lan", port)
            gate = self._gate(b)
            if gate is not None:
                batch.delete(gate[0], gate[1])

    def _move(self, batch, b: Binding, old: Binding, to: float) -> None:
        port = b.wan[1]
        if b.kind == SIP:
            for ip in old.peers:
                if ip not in b.peers:
                    batch.delete("sip_peer", (port, ip))
            for ip in b.peers:
                if ip not in old.peers:
                    batch.add("sip_peer", (port, ip), None, to)
            return
        was, now_gate = self._gate(old), self._gate(b)
        if was != now_gate:
            if was is not None:
                batch.delete(was[0], was[1])
            if now_gate is not None:
                batch.add(now_gate[0], now_gate[1], None, to)

    def apply(self, actions: Iterable[A.Action], now: float) -> int:
        """Carry out the engine's actions in one netlink batch; returns the elements that failed
        (each failure affects only itself: the rest is applied)."""
        batch = self._writer().batch()
        for a in actions:
            b = a.binding
            if b is None:
                continue
            if a.kind == A.OPEN:
                self._open(batch, b, self._timeout(b, now))
            elif a.kind == A.REFRESH:
                self._refresh(batch, b, self._timeout(b, now))
            elif a.kind == A.MOVE:
                self._move(batch, b, a.old, self._timeout(b, now))
            elif a.kind == A.CLOSE:
                self._close(batch, b)
        if not len(batch):
            return 0
        return self._commit(batch)

    def _commit(self, batch) -> int:
        failures: List[ElementFailure] = batch.commit()
        if failures:
            self.last_failure = "; ".join(str(f) for f in failures[:3])
        return len(failures)

    def elements(self) -> List[Binding]:
        """The bindings our table holds now (to pick up after a crash); expires = seconds left."""
        w = self._writer()
        sip = {e.key: e for e in w.elements("sip2lan")}
        peers: dict = {}
        for e in w.elements("sip_peer"):
            peers.setdefault(e.key[0], []).append(e.key[1])
        media_peer = {e.key[0]: e.key[1] for e in w.elements("media_peer")}
        tags = {e.key: e.comment for e in w.elements("media2lan")}
        media_open = {e.key: True for e in w.elements("media_open")}
        out = []
        for e in w.elements("lan2wan"):
            lan = (e.key[0], int(e.key[1]))
            wport = e.data
            left = e.expires if e.expires is not None else (e.timeout or 1)
            if wport in sip:
                out.append(Binding(lan, (self.wan_ip, wport), SIP, float(left), None,
                                   tuple(sorted(peers.get(wport, ())))))
                continue
            kind = "rtp" if wport % 2 == 0 else "rtcp"
            remote = (media_peer[wport], 0) if wport in media_peer else ANYONE if wport in media_open else None
            out.append(Binding(lan, (self.wan_ip, wport), kind, float(left), remote, (), tags.get(wport)))
        return out
