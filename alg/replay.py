"""`sipalg replay`: the engine over a capture, offline, as if it crossed the router.

Packets from a --lan-net host are outbound: the engine rewrites them and
they leave with the WAN address as source (the binding's port).  Packets to
a --lan-net host (a capture taken on the LAN side) or to --wan-ip are
inbound: they are first addressed to the WAN mapping, rewritten, and
delivered to the LAN device.  Everything else is copied as it was.
"""

from __future__ import annotations

import argparse
import sys

from alg.core.addr import Network, norm_ip
from alg import options
from alg.core.config import Config
from alg.core.engine import Engine, IN, OUT
from alg.packet import parse_udp, with_addresses

# pcap link types: where the IP packet starts in a frame
_ETHERNET, _SLL, _SLL2 = 1, 113, 276
_RAW = (101, 12, 14, 228, 229)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the ALG engine over IN.pcap as if every SIP packet in it crossed the router, "
                     "and write OUT.pcap with what each side would receive: outbound packets rewritten "
                     "and sent from the WAN address, inbound packets mapped back to the LAN device. "
                     "RTP and other traffic is copied unchanged.")
    p.add_argument("input", metavar="IN.pcap", help="capture to read (pcap or pcapng)")
    p.add_argument("output", metavar="OUT.pcap", help="capture to write (pcap, same link type)")
    p.add_argument("--wan-ip", required=True, help="the router's WAN address, e.g. 203.0.113.1")
    options.add_arguments(p, only=("lan_net", "sip_port", "rtp_ports"), required=("lan_net",))


def _ip_offset(linktype: int, frame: bytes):
    """Offset of the IP header in a frame, or None for non-IP frames."""
    if linktype == _ETHERNET:
        off, etype = 14, frame[12:14]
        while etype == b"\x81\x00" and len(frame) >= off + 4:     # 802.1Q
            etype = frame[off + 2:off + 4]
            off += 4
        return off if etype in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == _SLL:
        return 16 if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == _SLL2:
        return 20 if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in _RAW:
        return 0
    return None


def run(args: argparse.Namespace) -> int:
    try:
        import dpkt
    except ImportError:
        print("replay needs dpkt: pip install dpkt", file=sys.stderr)
        return 2
    wan_ip = norm_ip(args.wan_ip)
    if wan_ip is None:
        print("replay: --wan-ip %r is not an IP address" % args.wan_ip, file=sys.stderr)
        return 2
    nets = [Network(n) for n in args.lan_net]
    defaults = {o.attr: o.parse(o.default) for o in options.OPTIONS if o.name in ("sip_port", "rtp_ports")}
    config = Config(wan_ip=wan_ip, lan_nets=args.lan_net, sip_ports=args.sip_port or defaults["sip_port"],
                    rtp_ports=args.rtp_ports or defaults["rtp_ports"])
    try:
        f = open(args.input, "rb")
    except OSError as e:
        print("replay: cannot read %s: %s" % (args.input, e.strerror), file=sys.stderr)
        return 2
    with f:
        magic = f.read(4)
        f.seek(0)
        try:
            reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        except (ValueError, dpkt.dpkt.Error) as e:
            print("replay: %s is not a pcap or pcapng file (%s)" % (args.input, e), file=sys.stderr)
            return 2
        linktype = reader.datalink()
        try:
            out = open(args.output, "wb")
        except OSError as e:
            print("replay: cannot write %s: %s" % (args.output, e.strerror), file=sys.stderr)
            return 2
        with out:
            writer = dpkt.pcap.Writer(out, linktype=linktype)
            counts = _replay(reader, writer, linktype, Engine(config), nets, wan_ip, set(config.sip_ports))
    print("replay: %(packets)d packets, %(sip)d SIP messages, %(rewritten)d rewritten, "
          "%(unchanged)d unchanged, %(malformed)d malformed, %(keepalive)d keep-alives" % counts)
    return 0


def _replay(reader, writer, linktype, engine, nets, wan_ip, sip_ports) -> dict:
    counts = {"packets": 0, "sip": 0, "rewritten": 0, "unchanged": 0, "malformed": 0, "keepalive": 0,
              "dropped": 0}

    def on_lan(ip):
        return any(ip in n for n in nets)

    for ts, frame in reader:
        counts["packets"] += 1
        engine.expire(ts)
        off = _ip_offset(linktype, frame)
        d = parse_udp(frame[off:]) if off is not None else None
        if d is None or not (d.sport in sip_ports or d.dport in sip_ports):
            writer.writepkt(frame, ts)
            continue
        src, dst = (norm_ip(d.src), d.sport), (norm_ip(d.dst), d.dport)
        if on_lan(src[0]):
            res = engine.handle(OUT, src, dst, d.payload, ts)
            new_src = res.snat or (wan_ip, src[1])
            ip = with_addresses(frame[off:], src=new_src, payload=res.payload)
        elif on_lan(dst[0]) or dst[0] == wan_ip:
            wan = dst
            if dst[0] != wan_ip:
                b = engine.lookup_lan(dst)
                wan = b.wan if b is not None else (wan_ip, dst[1])
            res = engine.handle(IN, src, wan, d.payload, ts)
            to = res.dnat or (dst if dst[0] != wan_ip else wan)
            ip = with_addresses(frame[off:], dst=to, payload=res.payload)
        else:
            writer.writepkt(frame, ts)
            continue
        counts["sip"] += res.status != "keepalive"
        counts[res.status] += 1
        if res.verdict == "drop":
            continue
        writer.writepkt(frame[:off] + ip, ts)
    return counts
