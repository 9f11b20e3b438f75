"""RTP for the lab, precise enough to count: `python3 -m tests.support.lab.rtp echo|send ...`.

    echo IP PORT SECONDS              answer every packet back to its source;
                                      prints JSON {source "ip:port": packets}
    send SRC_IP SRC_PORT DST_IP DST_PORT COUNT [INTERVAL]
                                      send COUNT RTP packets (PCMU, 20 ms), count
                                      what comes back; prints JSON {"sent", "received"}
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def packet(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x5A1A0001) + bytes(160)


def echo(ip: str, port: int, seconds: float) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    s.settimeout(0.2)
    seen: dict = {}
    end = time.monotonic() + seconds
    print("ready", flush=True, file=sys.stderr)
    while time.monotonic() < end:
        try:
            data, src = s.recvfrom(2048)
        except socket.timeout:
            continue
        key = "%s:%d" % src
        seen[key] = seen.get(key, 0) + 1
        s.sendto(data, src)
    return seen


def send(src_ip: str, src_port: int, dst_ip: str, dst_port: int, count: int, interval: float = 0.02) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src_ip, src_port))
    s.setblocking(False)
    received = 0
    for i in range(count):
        try:
            s.sendto(packet(i), (dst_ip, dst_port))
        except OSError:
            pass                        # ICMP unreachable reported on this socket
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            try:
                s.recvfrom(2048)
                received += 1
            except (BlockingIOError, OSError):
                time.sleep(0.002)
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        try:
            s.recvfrom(2048)
            received += 1
        except (BlockingIOError, OSError):
            time.sleep(0.005)
    return {"sent": count, "received": received}


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[0] == "echo":
        print(json.dumps(echo(argv[1], int(argv[2]), float(argv[3]) if len(argv) > 3 else 10)))
        return 0
    if len(argv) >= 6 and argv[0] == "send":
        print(json.dumps(send(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]),
                              float(argv[6]) if len(argv) > 6 else 0.02)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
