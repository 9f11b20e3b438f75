"""Kernel timestamps of the SIP datagrams crossing some interfaces of one namespace.

An AF_PACKET socket per interface (ETH_P_ALL: only those taps see outgoing and bridged
frames) with SO_TIMESTAMPNS: the kernel stamps a frame as it is received from the wire and
as it is handed to the device, so what this process does later costs nothing measured.
For every SIP datagram (UDP, port 5060 either end) the first timestamp per interface and
way is kept, under (Call-ID, CSeq, method or status): the same datagram on both sides of
a router, whatever the router rewrote.  Until stdin closes; then one JSON line.

    python3 bench/stamps.py lan=lan0 wan=wan0      (in the namespace; prints `ready` first)
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.sipmsg import key    # noqa: E402

HERE = os.path.abspath(__file__)
SO_TIMESTAMPNS = 35                              # = SCM_TIMESTAMPNS; socket has no name for it
SO_RCVBUFFORCE = 33                              # root: a receive buffer past net.core.rmem_max
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
PACKET_OUTGOING = 4
SIP_PORT = 5060
WHAT = "kernel timestamps (AF_PACKET, SO_TIMESTAMPNS)"


def capture(sides: Dict[str, str]) -> None:
    """sides: {name: interface}; records `name_in` / `name_out` per datagram."""
    socks = {}
    for side, ifname in sides.items():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 25)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
        socks[s] = side
    seen: Dict[Tuple[bytes, bytes, bytes], Dict[str, int]] = {}
    print("ready", flush=True)
    while True:
        for s in select.select(list(socks) + [sys.stdin], [], [])[0]:
            if s is sys.stdin:
                if not sys.stdin.readline():
                    print(json.dumps([[k[0].decode(errors="replace"), k[1].decode(errors="replace"),
                                       k[2].decode(errors="replace"), v] for k, v in seen.items()]))
                    return
                continue
            side = socks[s]
            while True:
                try:
                    data, anc, _, addr = s.recvmsg(65535, 64)
                except BlockingIOError:
                    break
                if addr[1] != ETH_P_IP or len(data) < 28 or data[9] != 17:
                    continue
                ihl = (data[0] & 15) * 4
                sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
                if SIP_PORT not in (sport, dport):
                    continue
                ts = None
                for level, kind, blob in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", blob[:16])
                        ts = sec * 1000000000 + nsec
                k = key(data[ihl + 8:])
                if ts is not None and k is not None:
                    way = "_out" if addr[2] == PACKET_OUTGOING else "_in"
                    seen.setdefault(k, {}).setdefault(side + way, ts)


class Stamps:
    """The capture started in a lab namespace; result() stops it: [(Call-ID, CSeq, what, {slot: ns})]."""

    def __init__(self, lab, ns: str, **sides: str):
        self.proc = lab.popen(ns, sys.executable, HERE, *("%s=%s" % kv for kv in sides.items()),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("stamps did not start in %s" % ns)

    def result(self, timeout: float = 60) -> List[Tuple[str, str, str, Dict[str, int]]]:
        out, _ = self.proc.communicate(b"", timeout=timeout)
        return [tuple(r) for r in json.loads(out)]


if __name__ == "__main__":
    capture(dict(a.split("=", 1) for a in sys.argv[1:]))
