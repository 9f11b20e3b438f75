"""The UDP ports the router itself uses on its WAN side, read live.

No binding or pinhole may take one: a pinhole on WAN port 500 or 51820
would divert new flows meant for the router's IKE or WireGuard listener to
a LAN host.  Two sources: the router's own UDP sockets (/proc/net/udp and
udp6: anything bound to the wildcard or the WAN address), and the ports
other tables DNAT or redirect (fw4's port forwards, other daemons'
rules), from the ruleset.  Read at start, on reload and whenever another
table changes (the daemon's nf_tables monitor says so), never per packet.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from typing import Iterable, Optional, Set

_WILDCARD4 = "0.0.0.0"


def _addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))


def listeners(wan_ip: Optional[str], paths: Iterable[str] = ("/proc/net/udp", "/proc/net/udp6")) -> Set[int]:
    """Local ports of the router's UDP sockets reachable on the WAN address."""
    out: Set[int] = set()
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 2 or ":" not in parts[1]:
                continue
            hex_ip, hex_port = parts[1].rsplit(":", 1)
            try:
                ip = _addr(hex_ip)
            except (ValueError, OSError):
                continue
            if ip in (_WILDCARD4, "::", wan_ip) or ip == "::ffff:%s" % wan_ip:
                out.add(int(hex_port, 16))
    return out


def _ports(value) -> Set[int]:
    """Ports in an nft JSON match's right-hand side: a number, a set, a range."""
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        if "set" in value:
            out: Set[int] = set()
            for v in value["set"]:
                out |= _ports(v)
            return out
        if "range" in value and len(value["range"]) == 2 and all(isinstance(x, int) for x in value["range"]):
            lo, hi = value["range"]
            return set(range(lo, min(hi, 65535) + 1)) if hi - lo < 65536 else set()
    if isinstance(value, list):
        out = set()
        for v in value:
            out |= _ports(v)
        return out
    return set()


def forwarded(ruleset_json: str, own_table: str) -> Set[int]:
    """UDP destination ports that rules of other tables DNAT or redirect."""
    out: Set[int] = set()
    for item in json.loads(ruleset_json).get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("table") == own_table:
            continue
        exprs = rule.get("expr", [])
        if not any(isinstance(e, dict) and ("dnat" in e or "redirect" in e) for e in exprs):
            continue
        for e in exprs:
            m = e.get("match") if isinstance(e, dict) else None
            if not m:
                continue
            left = m.get("left", {})
            payload = left.get("payload", {}) if isinstance(left, dict) else {}
            if payload.get("protocol") in ("udp", "th") and payload.get("field") == "dport" and m.get("op") in ("==", "in"):
                out |= _ports(m.get("right"))
    return out


def forwarded_ports(own_table: str, nft: str = "nft") -> Set[int]:
    """The ports other tables of the ruleset forward, as `nft -j list ruleset` shows them now."""
    r = subprocess.run([nft, "-j", "list", "ruleset"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if r.returncode == 0 and r.stdout.strip():
        try:
            return forwarded(r.stdout.decode(), own_table)
        except ValueError:
            pass
    return set()


def router_ports(wan_ip: Optional[str], own_table: str, nft: str = "nft") -> Set[int]:
    """Everything no binding may take: listeners and other tables' forwards."""
    return listeners(wan_ip) | forwarded_ports(own_table, nft)
