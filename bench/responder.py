"""The WAN side's registrar and UAS for the lab benchmarks: a 200 OK for every request.

Stateless and quick (sipmsg.answer): REGISTER gets its Contact back with Expires, INVITE an
SDP answer, BYE/OPTIONS a plain 200, ACK nothing.  Answers go where the request came from
(rport behaviour, as a server behind no NAT answers one that is).  Prints `ready`, then runs
until killed.

    python3 bench/responder.py 203.0.113.10 5060 [--expires 3600]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.sipmsg import answer    # noqa: E402


HERE = os.path.abspath(__file__)
SO_RCVBUFFORCE = 33                              # root: a receive buffer past net.core.rmem_max


def start(lab, ip: str = "203.0.113.10", port: int = 5060) -> subprocess.Popen:
    """The responder in the lab's WAN namespace, answering from ip:port once it says ready."""
    p = lab.popen(lab.wan, sys.executable, HERE, ip, str(port), stdout=subprocess.PIPE)
    if p.stdout.readline().strip() != b"ready":
        raise RuntimeError("the responder did not start on %s:%d" % (ip, port))
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("--expires", type=int, default=3600, help="the most a REGISTER is granted (s)")
    args = ap.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 25)
    s.bind((args.ip, args.port))
    local = (args.ip, args.port)
    print("ready", flush=True)
    while True:
        data, src = s.recvfrom(65535)
        out = answer(data, local, args.expires)
        if out is not None:
            s.sendto(out, src)


if __name__ == "__main__":
    sys.exit(main())
