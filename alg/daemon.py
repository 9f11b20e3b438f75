"""`sipalg run`: the ALG on a router, in the foreground.

The shell around the pure engine: NFQUEUE in, verdicts out, the engine's
actions carried out in the kernel (one nft transaction per packet at most)
before the verdict, timers driven from a monotonic clock, the WAN address
followed as it changes, status published for `sipalg status` and LuCI (alg/statusfile.py).
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
from alg.core import events as E
from alg.core.addr import Network, norm_ip
from alg.core.call_states import CONFIRMED
from alg.core.config import Config
from alg.core.engine import Engine, IN, OUT, DROP
from alg import options
from alg.leds import LedConfig, StatusLeds
from alg.packet import build_udp, parse_udp, with_payload
from alg.status import LIST_LIMIT
from alg.statusfile import StatusFile, wire_text

log = logging.getLogger("sipalg")

# What a router user reads at info level: one line per registration, call and refusal.
INFO_EVENTS = (E.Registered, E.Deregistered, E.CallStarted, E.CallEnded, E.Refused)

SO_MARK = 36


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the SIP ALG on this router in the foreground: installs its own nftables table "
                     "(bindings and media pinholes as map elements with timeouts) and queue rules for SIP, "
                     "rewrites SIP/SDP crossing the NAT, and removes everything on SIGTERM/SIGINT. "
                     "SIGHUP reloads the config, keeping live calls. If the daemon dies, SIP flows "
                     "unmodified (queue bypass). Settings come from the uci file; flags override it.")
    p.add_argument("--config", help="uci config file (default %s if it exists)" % options.DEFAULT_CONFIG)
    options.add_arguments(p)


def config_path(args: argparse.Namespace) -> Optional[str]:
    if args.config:
        return args.config
    return options.DEFAULT_CONFIG if os.path.exists(options.DEFAULT_CONFIG) else None


def flags_of(args: argparse.Namespace) -> dict:
    return {o.attr: getattr(args, o.attr, None) for o in options.OPTIONS if o.flag}


class Site:
    """What the settings name on this router, looked up: devices, LAN prefixes, LEDs,
    and the engine's Config.  Made anew on each reload, so a bad value (or a
    device that isn't there) leaves the running one in place."""

    def __init__(self, s: options.Settings, wan_ip: Optional[str]):
        self.settings = s
        self.wan_if = resolve_device(s.wan_if, "sipalg.main.wan_if")
        self.lan_if = resolve_device(s.lan_if, "sipalg.main.lan_if")
        lan_nets = s.lan_net or iface_networks(self.lan_if)
        if not lan_nets:
            raise options.OptionError("LAN interface %s has no IPv4 network: set sipalg.main.lan_net"
                                      % self.lan_if)
        self.lan_nets = [Network(n) for n in lan_nets]
        self.leds = LedConfig.from_settings(s)
        self.config = Config(wan_ip=wan_ip, lan_nets=lan_nets, sip_ports=s.sip_port, rtp_ports=s.rtp_ports,
                             answer_keepalives=s.answer_keepalives)


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


def resolve_device(name: str, key: str) -> str:
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
    raise options.OptionError("%s: %r is neither a network device nor an OpenWrt interface "
                              "(ubus network.interface.%s)" % (key, name, name))


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
    def __init__(self, settings: options.Settings, flags: Optional[dict] = None):
        from alg.kernel.nftables import NftTable, LOCAL_MARK
        self.flags = flags or {}
        self.clock = time.monotonic
        site = Site(settings, None)
        self.wan_ip = iface_ipv4(site.wan_if)
        site.config.wan_ip = self.wan_ip
        self.site = site
        self.s = settings
        self.lan_nets = site.lan_nets
        self.engine = Engine(site.config)
        self.table = NftTable(site.wan_if, site.lan_if, self.wan_ip, settings.sip_port,
                              settings.queue_num, name=settings.table)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, LOCAL_MARK)
        self.stop = False
        self.reload = False
        self.published = StatusFile(settings.state_dir, self.clock)
        self.nft_failures = 0
        # media_queued: datagrams on a media binding's port that reached us; the
        # queue rules only take SIP, so this must stay 0 (tests check it)
        self.counters = {"sent": 0, "not_udp": 0, "media_queued": 0}
        self.queue = None
        self.leds = StatusLeds(site.leds)

    # -- life cycle

    def start(self) -> None:
        from alg.kernel.queue import PacketQueue
        now = self.clock()
        kept = self.table.install(keep_elements=True)
        for b in kept:
            b.expires = now + b.expires
            try:
                self.engine.restore(b)
            except ValueError as e:
                log.warning("not restored: %s", e)
        if kept:
            log.info("picked up %d bindings left in the kernel table", len(kept))
        self._kernel_helper_off()
        self.queue = PacketQueue(self.s.queue_num, self.on_packet)
        self.leds.start()
        log.info("running: wan %s (%s), lan %s, SIP ports %s, RTP %d-%d, queue %d via %s (%s backend)",
                 self.site.wan_if, self.wan_ip or "no address yet", ",".join(n.text for n in self.lan_nets),
                 ",".join(map(str, self.s.sip_port)), self.s.rtp_ports[0], self.s.rtp_ports[1],
                 self.s.queue_num, "nft queue" if self.table.use_nft_queue else "iptables NFQUEUE",
                 self.queue.backend)

    def shutdown(self) -> None:
        self.leds.stop()
        if self.queue is not None:
            self.queue.close()
        self.table.remove()
        self._remove_status()
        log.info("stopped; table %s and queue rules removed", self.s.table)

    def run(self) -> None:
        last_tick = 0.0
        try:
            self.start()
            while not self.stop:
                now = self.clock()
                deadline = self.engine.next_deadline()
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
                wait = min(wait, self.published.wait(now))
                try:
                    ready, _, _ = select.select([self.queue], [], [], wait)
                except InterruptedError:
                    ready = []
                if ready:
                    self.queue.poll()
                    self.leds.refresh(self.engine, self.clock())
                now = self.clock()
                out = self.engine.expire(now)
                if out.actions:
                    self._carry_out(out.actions, now)
                self._log_events(out.events, "expired: ")
                if now - last_tick >= 1.0:
                    last_tick = now
                    wan_ip = self._follow_wan(now)
                    self.leds.update(self.engine, wan_ip, self.nft_failures, now)
                self.write_status(now)
                if self.reload:
                    self.reload = False
                    self._reload()
        finally:
            self.shutdown()

    def _reload(self) -> None:
        """SIGHUP: apply the config file's every option, live calls kept; also how fw4 says it reloaded.

        Everything is checked before anything changes: a bad value keeps the old config whole."""
        from alg.kernel.queue import PacketQueue, QueueUnavailable
        try:
            s = options.read(self.s.config_path, self.flags)
            site = Site(s, self.wan_ip)
        except (ValueError, OSError) as e:              # OptionError, UciError: both name the option
            log.error("reload failed, keeping the old config: %s", e)
            return
        changed = self.s.changed(s)
        queue = None
        if s.queue_num != self.s.queue_num:
            try:
                queue = PacketQueue(s.queue_num, self.on_packet)
            except QueueUnavailable as e:
                log.error("reload failed, keeping the old config: sipalg.main.queue_num %d: %s", s.queue_num, e)
                return
        now = self.clock()
        setup_logging(s.log_level)
        self.engine.configure(site.config)
        self.lan_nets = site.lan_nets
        self.leds = self.leds.reconfigure(site.leds)
        self.published.relocate(s.state_dir)
        rebuild = [o.name for o in changed if o.reload == options.REBUILD]
        if (site.wan_if, site.lan_if) != (self.site.wan_if, self.site.lan_if):
            rebuild.append("devices %s/%s" % (site.wan_if, site.lan_if))
        self.s, self.site = s, site
        why = ", ".join(rebuild) if rebuild else None if self.table.present() else "it was gone (fw4 flush?)"
        if why:
            self.table.reconfigure(site.wan_if, site.lan_if, s.sip_port, s.queue_num, self.engine.bindings(), now)
            log.info("table %s re-installed (%s) with %d bindings", s.table, why, len(self.engine.bindings()))
        if queue is not None:
            old, self.queue = self.queue, queue
            old.close()
        self._kernel_helper_off()
        log.info("config reloaded%s (live calls kept)",
                 (": " + ", ".join(o.key for o in changed)) if changed else ", nothing changed")

    def _kernel_helper_off(self) -> None:
        if self.s.disable_kernel_helper:
            from alg.kernel.helper import disable_sip_helper
            for what in disable_sip_helper():
                log.info("kernel SIP helper: %s", what)

    def _follow_wan(self, now: float) -> Optional[str]:
        """Returns the WAN address now (None while it has none; self.wan_ip keeps the last one)."""
        ip = iface_ipv4(self.site.wan_if)
        if ip is None or ip == self.wan_ip:
            return ip
        log.info("WAN address %s -> %s: moving %d bindings", self.wan_ip, ip, len(self.engine.bindings()))
        old, self.wan_ip = self.wan_ip, ip
        self.engine.set_wan_ip(ip)
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
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s:%d -> %s:%d %s: %s", direction, src[0], src[1], dst[0], dst[1], res.status,
                      res.reason)
        if res.events:
            self._log_events(res.events)
        if res.verdict == DROP:
            verdict(None, False)
        elif res.payload is not None:
            verdict(with_payload(packet, res.payload), True)
        else:
            verdict(None, True)

    def _log_events(self, events, prefix: str = "") -> None:
        """Registrations, calls and refusals at info; bindings, pinholes and keep-alives at debug."""
        for ev in events:
            if isinstance(ev, INFO_EVENTS):
                log.info("%s%s", prefix, ev.describe())
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("%s%s", prefix, ev.describe())

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

    def _status_key(self) -> tuple:
        """What status() shows changes only with one of these (all cheap: every loop turn reads them).

        A packet moves the engine's counters, an expiry the next timer; anything else that
        changes what status() shows must call self.published.touch()."""
        e, q = self.engine, self.queue
        return (tuple(e.counters.values()), tuple(self.counters.values()), self.nft_failures,
                len(e.registrations), len(e.dialogs), e.next_deadline(), self.wan_ip,
                self.site.wan_if, self.site.lan_if, self.table.use_nft_queue, tuple(self.leds.describe().items()),
                (q.backend, tuple(q.counters.values())) if q is not None else None)

    def status(self, now: float) -> dict:
        """The document status.json holds after its first line (alg/status.py): summaries, counters
        and the first LIST_LIMIT entries of each list beside its total, times as wall-clock seconds."""
        e, wall = self.engine, self.published.wall
        regs, calls = e.registrations.all(), e.dialogs.all()
        bindings, sip, media, n_sip = e.bindings(), [], [], 0
        for b in bindings:
            if b.kind == "sip":
                n_sip += 1
                if len(sip) < LIST_LIMIT:
                    sip.append(b)
            elif len(media) < LIST_LIMIT:
                media.append(b)
        return {
            "started": wall(self.published.started),
            "wan_if": self.site.wan_if, "lan_if": self.site.lan_if, "wan_ip": self.wan_ip,
            "queue": "nft" if self.table.use_nft_queue else "iptables",
            "leds": self.leds.describe(),
            "queue_backend": self.queue.backend if self.queue else None,
            "queue_counters": dict(self.queue.counters) if self.queue else {},
            "counters": dict(e.counters, nft_failures=self.nft_failures, **self.counters),
            "totals": {"registrations": len(regs), "calls": len(calls),
                       "calls_early": sum(1 for c in calls if c.state != CONFIRMED),
                       "bindings": n_sip, "pinholes": len(bindings) - n_sip},
            "registrations": [{"aor": wire_text(r.aor), "lan": "%s:%d" % r.lan, "wan": "%s:%d" % r.wan,
                               "expires": wall(r.expires_at)} for r in regs[:LIST_LIMIT]],
            "calls": [{"call_id": wire_text(c.call_id), "phone": c.phone,
                       "direction": "out" if c.outgoing else "in", "state": c.state,
                       "media": ["%s:%d" % leg.rtp.lan for leg in c.legs.values()],
                       "expires": wall(c.deadline)} for c in calls[:LIST_LIMIT]],
            "bindings": [{"kind": b.kind, "lan": "%s:%d" % b.lan, "wan": "%s:%d" % (b.wan[0] or "?", b.wan[1]),
                          "remote": ("%s:%d" % b.remote) if b.remote else None, "expires": wall(b.expires)}
                         for b in sip + media],
        }

    def _remove_status(self) -> None:
        self.published.remove()

    def write_status(self, now: float) -> None:
        """Publish status.json if what it shows changed: cheap to call on every turn of the loop,
        and a file that can't be written is a warning (alg/statusfile.py), never the end."""
        self.published.publish(now, self._status_key(), self.status)


def run(args: argparse.Namespace) -> int:
    try:
        flags = flags_of(args)
        settings = options.read(config_path(args), flags)
        setup_logging(settings.log_level)
    except (ValueError, OSError) as e:
        print("sipalg run: %s" % e, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("sipalg run: needs root (nftables and NFQUEUE)", file=sys.stderr)
        return 2
    try:
        daemon = Daemon(settings, flags)
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
