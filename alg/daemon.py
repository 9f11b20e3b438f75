"""`sipalg run`: the ALG on a router, in the foreground.

The shell around the pure engine: NFQUEUE in, verdicts out, the engine's
actions carried out in the kernel (one nft transaction per packet at most)
before the verdict, timers driven from a monotonic clock, the WAN address
followed as it changes, state written for `sipalg status`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import logging.handlers
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import List, Optional

from alg.core import actions as A
from alg.core.addr import Network, norm_ip
from alg.core.config import Config, parse_port_range
from alg.core.engine import Engine, IN, OUT, DROP
from alg import uci
from alg.leds import LedConfig, StatusLeds
from alg.packet import build_udp, parse_udp, with_payload

log = logging.getLogger("sipalg")

DEFAULT_CONFIG = "/etc/config/sipalg"
DEFAULT_STATE_DIR = "/var/run/sipalg"
SO_MARK = 36


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the SIP ALG on this router in the foreground: installs its own nftables table "
                     "(bindings and media pinholes as map elements with timeouts) and queue rules for SIP, "
                     "rewrites SIP/SDP crossing the NAT, and removes everything on SIGTERM/SIGINT. "
                     "SIGHUP reloads the config. If the daemon dies, SIP flows unmodified (queue bypass).")
    p.add_argument("--wan-if", help="WAN interface (its IPv4 address is followed as it changes)")
    p.add_argument("--lan-if", help="LAN interface (its networks are the LAN)")
    p.add_argument("--config", help="uci config file (default %s if it exists)" % DEFAULT_CONFIG)
    p.add_argument("--state-dir", default=None, help="where status is written (default %s)" % DEFAULT_STATE_DIR)
    p.add_argument("--queue-num", type=int, default=None, help="NFQUEUE number (default 0)")
    p.add_argument("--sip-port", type=int, action="append", help="UDP port carrying SIP (repeatable; default 5060)")
    p.add_argument("--rtp-ports", help="media port range LO-HI (default 1024-65535)")
    p.add_argument("--lan-net", action="append", help="LAN prefix (repeatable; default: the LAN interface's)")
    p.add_argument("--answer-keepalives", choices=("off", "crlf", "options"), help="see README (default crlf)")
    p.add_argument("--table", default="sipalg", help="nftables table name (default sipalg)")
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))


class Settings:
    """Command line over uci file over defaults."""

    def __init__(self, args: argparse.Namespace):
        sec = None
        path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
        self.config_path = path
        cfg = uci.load(path) if path else []
        if path:
            sec = uci.section(cfg, "sipalg", "main")
        opt = (lambda k, d=None: sec.get(k, d)) if sec else (lambda k, d=None: d)
        lst = (lambda k: sec.get_list(k)) if sec else (lambda k: [])
        wan_if = args.wan_if or opt("wan_if")
        lan_if = args.lan_if or opt("lan_if")
        if not wan_if or not lan_if:
            raise ValueError("both --wan-if and --lan-if are needed (or wan_if/lan_if in the config)")
        self.wan_if = resolve_device(wan_if)
        self.lan_if = resolve_device(lan_if)
        # the kernel's SIP helper would rewrite too; off by default on OpenWrt (config file), left alone without
        self.disable_kernel_helper = sec.get_bool("disable_kernel_helper", True) if sec else False
        self.state_dir = args.state_dir or opt("state_dir", DEFAULT_STATE_DIR)
        self.queue_num = args.queue_num if args.queue_num is not None else int(opt("queue_num", "0"))
        self.sip_ports = args.sip_port or [int(p) for p in lst("sip_port")] or [5060]
        self.rtp_ports = parse_port_range(args.rtp_ports or opt("rtp_ports", "1024-65535"))
        self.lan_nets = args.lan_net or lst("lan_net")
        self.answer_keepalives = args.answer_keepalives or opt("answer_keepalives", "crlf")
        self.log_level = args.log_level or opt("log_level", "info")
        self.leds = LedConfig.from_section(uci.section(cfg, "leds", "leds"))
        self.table = args.table


def iface_ipv4(ifname: str) -> Optional[str]:
    """The interface's IPv4 address (SIOCGIFADDR), or None when it has none yet."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname.encode()[:15]))
        return socket.inet_ntoa(res[20:24])
    except OSError:
        return None
    finally:
        s.close()


def iface_networks(ifname: str) -> List[str]:
    """The interface's IPv4 network (address and netmask by ioctl: no `ip -j` on a small router)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("256s", ifname.encode()[:15])
        addr = fcntl.ioctl(s.fileno(), 0x8915, req)[20:24]           # SIOCGIFADDR
        mask = fcntl.ioctl(s.fileno(), 0x891B, req)[20:24]           # SIOCGIFNETMASK
    except OSError:
        return []
    finally:
        s.close()
    prefix = bin(int.from_bytes(mask, "big")).count("1")
    net = bytes(a & m for a, m in zip(addr, mask))
    return ["%s/%d" % (socket.inet_ntoa(net), prefix)]


def resolve_device(name: str) -> str:
    """A device name as given, or the device behind an OpenWrt logical interface ('wan' -> 'eth1')."""
    if os.path.exists("/sys/class/net/%s" % name):
        return name
    try:
        r = subprocess.run(["ubus", "call", "network.interface.%s" % name, "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        r = None
    if r is not None and r.returncode == 0:
        st = json.loads(r.stdout)
        dev = st.get("l3_device") or st.get("device")
        if dev:
            return dev
    raise ValueError("interface %r is neither a network device nor an OpenWrt interface (ubus network.interface.%s)"
                     % (name, name))


def setup_logging(level: str) -> None:
    root = logging.getLogger("sipalg")
    root.handlers[:] = []
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s sipalg %(levelname)s %(message)s"))
    root.addHandler(h)
    if os.path.exists("/dev/log"):
        try:
            sh = logging.handlers.SysLogHandler(address="/dev/log")
            sh.setFormatter(logging.Formatter("sipalg[%(process)d]: %(message)s"))
            root.addHandler(sh)
        except OSError:
            pass
    root.setLevel(getattr(logging, level.upper()))


class Daemon:
    def __init__(self, settings: Settings):
        from alg.kernel.nftables import NftTable, LOCAL_MARK
        self.s = settings
        self.clock = time.monotonic
        self.wan_ip = iface_ipv4(settings.wan_if)
        lan_nets = settings.lan_nets or iface_networks(settings.lan_if)
        if not lan_nets:
            raise ValueError("LAN interface %s has no IPv4 network; give --lan-net" % settings.lan_if)
        self.lan_nets = [Network(n) for n in lan_nets]
        self.config = Config(wan_ip=self.wan_ip, lan_nets=lan_nets, sip_ports=settings.sip_ports,
                             rtp_ports=settings.rtp_ports, answer_keepalives=settings.answer_keepalives)
        self.engine = Engine(self.config)
        self.table = NftTable(settings.wan_if, settings.lan_if, self.wan_ip, settings.sip_ports,
                              settings.queue_num, name=settings.table)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, LOCAL_MARK)
        self.stop = False
        self.reload = False
        self.started = time.time()
        self.nft_failures = 0
        # media_queued: datagrams on a media binding's port that reached us; the
        # queue rules only take SIP, so this must stay 0 (tests check it)
        self.counters = {"sent": 0, "not_udp": 0, "media_queued": 0}
        self.queue = None
        self.leds = StatusLeds(settings.leds)

    # -- life cycle

    def start(self) -> None:
        from alg.kernel.queue import PacketQueue
        now = self.clock()
        kept = self.table.install(keep_elements=True)
        for b in kept:
            b.expires = now + b.expires
            try:
                self.engine.restore(b, now)
            except ValueError as e:
                log.warning("not restored: %s", e)
        if kept:
            log.info("picked up %d bindings left in the kernel table", len(kept))
        self._kernel_helper_off()
        self.queue = PacketQueue(self.s.queue_num, self.on_packet)
        os.makedirs(self.s.state_dir, exist_ok=True)
        self.leds.start()
        log.info("running: wan %s (%s), lan %s, SIP ports %s, RTP %d-%d, queue %d via %s (%s backend)",
                 self.s.wan_if, self.wan_ip or "no address yet", ",".join(n.text for n in self.lan_nets),
                 ",".join(map(str, self.s.sip_ports)), self.s.rtp_ports[0], self.s.rtp_ports[1],
                 self.s.queue_num, "nft queue" if self.table.use_nft_queue else "iptables NFQUEUE",
                 self.queue.backend)

    def shutdown(self) -> None:
        self.leds.stop()
        if self.queue is not None:
            self.queue.close()
        self.table.remove()
        for f in ("status.json",):
            try:
                os.unlink(os.path.join(self.s.state_dir, f))
            except OSError:
                pass
        log.info("stopped; table %s and queue rules removed", self.s.table)

    def run(self) -> None:
        last_tick = 0.0
        try:
            self.start()
            while not self.stop:
                now = self.clock()
                deadline = self.engine.next_deadline()
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
                try:
                    ready, _, _ = select.select([self.queue], [], [], wait)
                except InterruptedError:
                    ready = []
                if ready:
                    self.queue.poll()
                    self.leds.refresh(self.engine, self.clock())
                now = self.clock()
                acts = self.engine.expire(now)
                if acts:
                    self._carry_out(acts, now)
                    for a in acts:
                        log.info("expired: %s", _describe(a))
                if now - last_tick >= 1.0:
                    last_tick = now
                    wan_ip = self._follow_wan(now)
                    self.write_status(now)
                    self.leds.update(self.engine, wan_ip, self.nft_failures, now)
                if self.reload:
                    self.reload = False
                    self._reload()
        finally:
            self.shutdown()

    def _reload(self) -> None:
        """SIGHUP: re-read the config (live calls stay); also how fw4 tells us it reloaded."""
        try:
            s = Settings(self.s.args)
        except (ValueError, OSError) as e:
            log.error("reload failed, keeping the old config: %s", e)
            return
        s.args = self.s.args
        self.config.answer_keepalives = s.answer_keepalives
        setup_logging(s.log_level)
        self.leds = self.leds.reconfigure(s.leds)
        moved = (s.wan_if, s.lan_if) != (self.s.wan_if, self.s.lan_if)
        self.s = s
        now = self.clock()
        why = ("new devices %s/%s" % (s.wan_if, s.lan_if)) if moved else \
            None if self.table.present() else "it was gone (fw4 flush?)"
        if moved:
            self.table.move_devices(s.wan_if, s.lan_if, self.engine.bindings(), now)
        elif why:
            self.table.rebuild(self.engine.bindings(), now)
        if why:
            log.info("table %s re-installed (%s) with %d bindings", s.table, why, len(self.engine.bindings()))
        self._kernel_helper_off()
        log.info("config reloaded (live calls kept)")

    def _kernel_helper_off(self) -> None:
        if self.s.disable_kernel_helper:
            from alg.kernel.helper import disable_sip_helper
            for what in disable_sip_helper():
                log.info("kernel SIP helper: %s", what)

    def _follow_wan(self, now: float) -> Optional[str]:
        """Returns the WAN address now (None while it has none; self.wan_ip keeps the last one)."""
        ip = iface_ipv4(self.s.wan_if)
        if ip is None or ip == self.wan_ip:
            return ip
        log.info("WAN address %s -> %s: moving %d bindings", self.wan_ip, ip, len(self.engine.bindings()))
        old, self.wan_ip = self.wan_ip, ip
        self.engine.set_wan_ip(ip, now)
        self.table.set_wan_ip(ip, self.engine.bindings(), now)
        if old:
            # flows NATed to the old address would keep it: let them start afresh
            subprocess.run(["conntrack", "-D", "-p", "udp", "--reply-dst", old],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return ip

    # -- packets

    def on_packet(self, packet: bytes, verdict, meta=None) -> None:
        """The queue's callback; meta has the packet's indev/outdev (ifindex, 0 when absent) and mark."""
        try:
            self._on_packet(packet, verdict, meta)
        except Exception:              # never hold a packet because of a bug
            log.exception("internal error; packet passed unchanged")
            verdict(None, True)

    def _on_packet(self, packet: bytes, verdict, meta=None) -> None:
        d = parse_udp(packet)
        if d is None:
            self.counters["not_udp"] += 1
            verdict(None, True)
            return
        now = self.clock()
        src = (norm_ip(d.src) or d.src, d.sport)
        dst = (norm_ip(d.dst) or d.dst, d.dport)
        direction = OUT if any(src[0] in n for n in self.lan_nets) else IN
        b = self.engine.lookup_lan(src) if direction == OUT else self.engine.lookup_wan(dst[1])
        if b is not None and b.kind != "sip":
            self.counters["media_queued"] += 1
        res = self.engine.handle(direction, src, dst, d.payload, now)
        if res.actions:
            self._carry_out(res.actions, now)
        if res.status == "rewritten":
            log.debug("%s %s:%d -> %s:%d rewritten: %s", direction, src[0], src[1], dst[0], dst[1], res.reason)
        elif res.status in ("malformed", "keepalive") or res.reason:
            log.debug("%s %s:%d -> %s:%d %s: %s", direction, src[0], src[1], dst[0], dst[1], res.status, res.reason)
        for a in res.actions:
            if a.kind in (A.OPEN_BINDING, A.CLOSE_BINDING, A.OPEN_PINHOLE, A.CLOSE_PINHOLE):
                log.info("%s", _describe(a))
        if res.reason and ("registered" in res.reason or "call closed" in res.reason):
            log.info("%s:%d %s", src[0] if direction == OUT else res.dnat[0] if res.dnat else dst[0],
                     src[1] if direction == OUT else res.dnat[1] if res.dnat else dst[1], res.reason)
        if res.verdict == DROP:
            verdict(None, False)
        elif res.payload is not None:
            verdict(with_payload(packet, res.payload), True)
        else:
            verdict(None, True)

    def _carry_out(self, actions, now: float) -> None:
        failed = self.table.apply(actions, now)
        if failed:
            self.nft_failures += failed
            log.debug("nft: %d element operations failed, last: %s", failed, self.table.last_failure)
        for a in actions:
            if a.kind == A.SEND:
                try:
                    pkt = build_udp(a.src, a.dst, a.payload)
                    self.raw.sendto(pkt, (a.dst[0], 0))
                    self.counters["sent"] += 1
                except OSError as e:
                    log.warning("could not send keep-alive answer to %s:%d: %s", a.dst[0], a.dst[1], e)

    # -- status

    def status(self, now: float) -> dict:
        e = self.engine
        def left(t):
            return round(t - now, 1)
        return {
            "pid": os.getpid(),
            "started": self.started,
            "written": time.time(),
            "wan_if": self.s.wan_if, "lan_if": self.s.lan_if, "wan_ip": self.wan_ip,
            "queue": "nft" if self.table.use_nft_queue else "iptables",
            "leds": self.leds.describe(),
            "queue_backend": self.queue.backend if self.queue else None,
            "queue_counters": dict(self.queue.counters) if self.queue else {},
            "counters": dict(e.counters, nft_failures=self.nft_failures, **self.counters),
            "registrations": [{"aor": r.aor.decode(errors="replace"), "lan": "%s:%d" % r.lan,
                               "wan": "%s:%d" % r.wan, "expires_in": left(r.expires_at)}
                              for r in e.regs.values()],
            "calls": [{"call_id": c.call_id.decode(errors="replace"), "phone": c.phone,
                       "direction": "out" if c.outgoing else "in", "state": c.state,
                       "media": ["%s:%d" % leg.rtp.lan for leg in c.legs.values()],
                       "expires_in": left(c.deadline)} for c in e.calls.values()],
            "bindings": [{"kind": b.kind, "lan": "%s:%d" % b.lan, "wan": "%s:%d" % (b.wan[0] or "?", b.wan[1]),
                          "remote": ("%s:%d" % b.remote) if b.remote else None, "expires_in": left(b.expires)}
                         for b in sorted(e.bindings(), key=lambda b: b.wan[1])],
        }

    def write_status(self, now: float) -> None:
        path = os.path.join(self.s.state_dir, "status.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.status(now), f)
        os.replace(tmp, path)


def _describe(a) -> str:
    b = a.binding
    if b is None:
        return a.kind
    what = "%s %s:%d <-> %s:%d" % (b.kind, b.lan[0], b.lan[1], b.wan[0] or "?", b.wan[1])
    if b.remote:
        what += " from %s:%d" % b.remote
    return "%s %s" % (a.kind, what)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings(args)
        settings.args = args
        setup_logging(settings.log_level)
    except (ValueError, OSError) as e:
        print("sipalg run: %s" % e, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("sipalg run: needs root (nftables and NFQUEUE)", file=sys.stderr)
        return 2
    try:
        daemon = Daemon(settings)
    except (ValueError, OSError) as e:
        print("sipalg run: %s" % e, file=sys.stderr)
        return 2

    def on_stop(signum, frame):
        daemon.stop = True

    def on_hup(signum, frame):
        daemon.reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        daemon.run()
    except Exception as e:
        log.error("stopped by an error: %s", e)
        return 1
    return 0
