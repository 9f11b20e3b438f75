"""A null daemon: the ALG's own table and queue rules, every queued packet accepted at once.

The floor for the lab benchmarks: what handing SIP to userspace and back costs on one
queue backend (SIPALG_QUEUE_BACKEND forces it) before any SIP work.  It runs in the
router namespace, prints `ready BACKEND` once bound, and removes its table on SIGTERM.

    python3 bench/null_daemon.py --wan-if wan0 --lan-if br0 --wan-ip 203.0.113.1
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alg.kernel.nftables import NftTable       # noqa: E402
from alg.kernel.queue import PacketQueue       # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wan-if", required=True)
    ap.add_argument("--lan-if", required=True)
    ap.add_argument("--wan-ip", required=True)
    ap.add_argument("--sip-port", type=int, action="append")
    ap.add_argument("--queue-num", type=int, default=0)
    args = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    table = NftTable(args.wan_if, args.lan_if, args.wan_ip, args.sip_port or [5060], args.queue_num)
    table.install()
    try:
        q = PacketQueue(args.queue_num, lambda payload, verdict, meta: verdict(None, True))
        print("ready", q.backend, flush=True)
        while not stop:
            try:
                if select.select([q], [], [], 0.5)[0]:
                    q.poll()
            except InterruptedError:
                pass
        q.close()
    finally:
        table.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
