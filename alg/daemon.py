"""`sipalg run`: the ALG on a router, in the foreground.

The shell around the pure engine: NFQUEUE in (its direction from the
interfaces the packet crosses), verdicts out, the engine's actions carried
out in the kernel (one netlink batch of elements per packet at most, and
the conntrack entries they make stale deleted): what the datagram needs
before its verdict, the rest (actions.split_at_verdict) with its log lines
once no other datagram waits (_work_off), timers
driven from a monotonic clock, the WAN address and our table followed as
the kernel reports changes, status published for `sipalg status` and LuCI
(alg/statusfile.py).  Nothing
here starts a process per packet.
"""

from __future__ import annotations

import argparse
import collections
import logging
import logging.handlers
import os
import select
import signal
import socket
import sys
import time
from typing import Dict, Optional

from alg.core import actions as A
from alg.core import events as E
from alg.core.addr import norm_ip
from alg.core.call_states import CONFIRMED
from alg.core.engine import Engine, IN, OUT, DROP
from alg import options
from alg.leds import StatusLeds
from alg.packet import build_udp, parse_udp, with_payload
from alg.site import Site
from alg.status import LIST_LIMIT
from alg.statusfile import StatusFile, wire_text

log = logging.getLogger("sipalg")

# What a router user reads at info level: one line per registration, call and refusal.
INFO_EVENTS = (E.Registered, E.Deregistered, E.CallStarted, E.CallEnded, E.Refused)
REFUSAL_LOG_EVERY = 10.0        # seconds between two info lines for one refusal reason
EXPIRE_PER_PASS = 256           # timers handled between two looks at the queue
# What a datagram's verdict did not wait for (its refreshes, closes, an offer's media, its log
# lines) is done once no datagram is waiting, unless this many pile up or the oldest is this old.
LATER_MAX = 64
LATER_WAIT = 0.05               # seconds

SO_MARK = 36


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Run the SIP ALG on this router in the foreground: installs its own nftables table "
                     "(bindings and media pinholes as map elements with timeouts) and queue rules for SIP, "
                     "rewrites SIP/SDP crossing the NAT, and removes everything on SIGTERM/SIGINT. "
                     "SIGHUP reloads the config, keeping live calls. If the daemon dies, SIP flows "
                     "unmodified (queue bypass). Settings come from the uci file; flags override it.")
    p.add_argument("--config", help="uci config file (default %s if it exists)" % options.DEFAULT_CONFIG)
    p.add_argument("--syslog", action="store_true", help="log to syslog only (as the init script runs it), "
                   "not to stderr")
    p.add_argument("--user", metavar="NAME", help="after start (table installed, queue bound) run as this user "
                   "with CAP_NET_ADMIN and CAP_NET_RAW only (the init script passes sipalg)")
    options.add_arguments(p)


def config_path(args: argparse.Namespace) -> Optional[str]:
    if args.config:
        return args.config
    return options.DEFAULT_CONFIG if os.path.exists(options.DEFAULT_CONFIG) else None


def flags_of(args: argparse.Namespace) -> dict:
    return {o.attr: getattr(args, o.attr, None) for o in options.OPTIONS if o.flag}


_log_to = "stderr"


def setup_logging(level: str, to: Optional[str] = None) -> None:
    """Every line goes one way, so each event is logged once: to syslog under procd (the init script
    passes --syslog and lets procd capture only what no logger writes: an interpreter's own errors),
    to stderr when run by hand.  `to` None keeps the destination chosen before (a reload).
    SIPALG_SYSLOG names another syslog socket than /dev/log (tests)."""
    global _log_to
    root = logging.getLogger("sipalg")
    root.handlers[:] = []
    _log_to = to or _log_to
    h: Optional[logging.Handler] = None
    if _log_to == "syslog":
        try:
            h = logging.handlers.SysLogHandler(address=os.environ.get("SIPALG_SYSLOG", "/dev/log"),
                                               facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            h.setFormatter(logging.Formatter("sipalg[%(process)d]: %(message)s"))
        except OSError as e:
            print("sipalg: no syslog (/dev/log: %s), logging to stderr" % e, file=sys.stderr)
            h = None
    if h is None:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s sipalg %(levelname)s %(message)s"))
    root.addHandler(h)
    root.setLevel(getattr(logging, level.upper()))


class Daemon:
    user: Optional[str] = None                  # who to become after start (--user); None: stay as started

    def __init__(self, settings: options.Settings, flags: Optional[dict] = None):
        from alg.kernel.hygiene import Hygiene
        from alg.kernel.cthelper import OffloadGuard
        from alg.kernel.nftables import NftTable, LOCAL_MARK
        from alg.kernel.nf_tables import NfTablesMonitor
        from alg.kernel.rtnetlink import Rtnl, RtnlMonitor
        self.flags = flags or {}
        self.clock = time.monotonic
        self.rtnl = Rtnl()
        site = Site(settings, self.rtnl)
        self.wan_ip = self.rtnl.ipv4(site.wan_if)
        site.config.wan_ip = self.wan_ip
        self.site = site
        self.s = settings
        self.engine = Engine(site.config)
        self.table = NftTable(site.wan_if, site.lan_ifs, self.wan_ip, settings.sip_port,
                              settings.queue_num, name=settings.table, inbound_sip=settings.inbound_sip,
                              sip_peers=settings.sip_peer, wan_sip_rate=settings.wan_sip_rate,
                              lan_sip_rate=settings.lan_sip_rate,
                              state_dir=settings.state_dir)
        self.hygiene = Hygiene()
        self.rtmon = RtnlMonitor()
        self.nftmon = NfTablesMonitor("ip", settings.table)
        self.offload = OffloadGuard()               # keeps SIP flows out of flowtables (alg/kernel/cthelper.py)
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw.setsockopt(socket.SOL_SOCKET, SO_MARK, LOCAL_MARK)
        self.stop = False
        self.reload = False
        self.published = StatusFile(settings.state_dir, self.clock)
        self.nft_failures = 0
        # media_queued: datagrams on a media binding's port that reached us; the
        # queue rules only take SIP, so this must stay 0 (tests check it).
        # not_crossing: queued but neither LAN->WAN nor WAN->LAN by its interfaces.
        self.counters = {"sent": 0, "not_udp": 0, "media_queued": 0, "not_crossing": 0}
        self.refused: Dict[str, int] = {}          # refusal reason -> how many
        self._refusal_logged: Dict[str, float] = {}
        self._refusal_quiet: Dict[str, int] = {}
        self._ports_due = 0.0                      # when to read the router's own listeners again
        self._forwards_due = float("inf")          # ... and other tables' port forwards (on their change)
        self._forwarded: set = set()
        self.queue = None
        self.leds = StatusLeds(site.leds)
        self.kernel_helper: dict = {}              # alg/kernel/helper.py helper_state(), shown in the status
        # (when, actions, events) the verdicts went out without, oldest first (see _work_off)
        self._later: collections.deque = collections.deque()

    # -- life cycle

    def start(self) -> None:
        self.queue = self._bind_queue(self.s.queue_num)     # first: our SIP must not go to another program
        now = self.clock()
        self._read_router_ports(now)
        self.table.ct_helper = self.offload.start()
        kept = self.table.install(keep_elements=True)
        self.offload.sweep(self.s.sip_port)
        for b in kept:
            b.expires = now + b.expires
            try:
                self.engine.restore(b)
            except ValueError as e:
                log.warning("not restored: %s", e)
        if kept:
            log.info("picked up %d bindings left in the kernel table", len(kept))
        self._kernel_helper_off()
        self.nftmon.read()                     # what starting did to the ruleset is known already
        self.leds.start()
        self._drop_privileges()
        log.info("running: wan %s (%s), lan %s, SIP ports %s, RTP %d-%d, queue %d via %s (%s backend)",
                 self.site.wan_if, self.wan_ip or "no address yet",
                 ",".join(n.text for n in self.site.lan_nets), ",".join(map(str, self.s.sip_port)),
                 self.s.rtp_ports[0], self.s.rtp_ports[1], self.s.queue_num,
                 "nft queue" if self.table.use_nft_queue else "iptables NFQUEUE", self.queue.backend)

    def _bind_queue(self, num: int):
        """The queue, or an OptionError naming sipalg.main.queue_num when another program holds it."""
        from alg.kernel.queue import PacketQueue, QueueUnavailable, holder
        try:
            return PacketQueue(num, self.on_packet)
        except QueueUnavailable as e:
            who = holder(num)
            if who:
                raise options.OptionError("sipalg.main.queue_num %d: NFQUEUE %d is taken by %s; set a free queue "
                                          "number" % (num, num, who)) from None
            raise options.OptionError("sipalg.main.queue_num %d: %s" % (num, e)) from None

    def _drop_privileges(self) -> None:
        """After start: run on as self.user with CAP_NET_ADMIN and CAP_NET_RAW only (alg/privileges.py)."""
        if not self.user:
            return
        from alg import privileges
        privileges.own(self.s.state_dir, self.user)
        privileges.own_files(self.leds.paths(), self.user)
        log.info("privileges: %s", privileges.drop(self.user))

    def shutdown(self) -> None:
        self._catch_up()
        self.leds.stop()
        if self.queue is not None:
            self.queue.close()
        self.table.remove()
        self.offload.stop()
        for closing in (self.hygiene, self.rtmon, self.nftmon, self.rtnl):
            closing.close()
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
                if self._later:                        # a datagram came in first: back to it at once
                    wait = 0.0
                try:
                    ready, _, _ = select.select([self.queue, self.rtmon, self.nftmon], [], [], wait)
                except InterruptedError:
                    ready = []
                if self.queue in ready:
                    self.queue.poll()
                    self._work_off()
                    self.hygiene.run(self.wan_ip)      # after the verdicts went out
                    self.leds.refresh(self.engine, self.clock())
                if self._later and self.queue not in ready:
                    self._work_off()
                    self.hygiene.run(self.wan_ip)
                if self.rtmon in ready:
                    self._catch_up()
                    self._links_changed(self.rtmon.read())
                if self.nftmon in ready:
                    self._catch_up()
                    self._ruleset_changed(self.nftmon.read())
                now = self.clock()
                out = self.engine.expire(now, EXPIRE_PER_PASS)
                if out.actions:
                    self._catch_up()
                    self._carry_out(out.actions, now)
                    self.hygiene.run(self.wan_ip)
                self._log_events(out.events, "expired: ")
                if now >= self._ports_due or now >= self._forwards_due:
                    self._read_router_ports(now, forwards=now >= self._forwards_due)
                if now - last_tick >= 1.0:
                    last_tick = now
                    self.leds.update(self.engine, self.wan_ip, self.nft_failures, now)
                self.write_status(now)
                if self.reload:
                    self.reload = False
                    self._catch_up()
                    self._reload()
        finally:
            self.shutdown()

    def _reload(self) -> None:
        """SIGHUP: apply the config file's every option, live calls kept; also how fw4 says it reloaded.

        Everything is checked before anything changes: a bad value keeps the old config whole."""
        from alg.kernel.queue import PacketQueue, QueueUnavailable
        try:
            s = options.read(self.s.config_path, self.flags)
            site = Site(s, self.rtnl, self.wan_ip)
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
        self.leds = self.leds.reconfigure(site.leds)
        self.published.relocate(s.state_dir)
        rebuild = [o.name for o in changed if o.reload == options.REBUILD]
        if (site.wan_if, site.lan_ifs) != (self.site.wan_if, self.site.lan_ifs):
            rebuild.append("devices %s/%s" % (site.wan_if, ",".join(site.lan_ifs)))
        moved_wan = site.wan_if != self.site.wan_if
        self.s, self.site = s, site
        why = ", ".join(rebuild) if rebuild else None if self.table.present() else "it was gone (fw4 flush?)"
        if why:
            self.table.reconfigure(site.wan_if, site.lan_ifs, s.sip_port, s.queue_num, self.engine.bindings(), now,
                                   inbound_sip=s.inbound_sip, sip_peers=s.sip_peer, wan_sip_rate=s.wan_sip_rate,
                                   lan_sip_rate=s.lan_sip_rate)
            log.info("table %s re-installed (%s) with %d bindings", s.table, why, len(self.engine.bindings()))
            self.offload.sweep(s.sip_port)
            if any(o.name in ("inbound_sip", "sip_peer") for o in changed):
                n = self.hygiene.readmit(self.wan_ip, self.engine.bindings())
                log.info("conntrack: %d inbound SIP flows forgotten (who may reach the bindings changed)", n)
        if moved_wan:
            self._follow_wan(now)
        if queue is not None:
            old, self.queue = self.queue, queue
            old.close()
        self._read_router_ports(now)
        self._kernel_helper_off()
        log.info("config reloaded%s (live calls kept)",
                 (": " + ", ".join(o.key for o in changed)) if changed else ", nothing changed")

    def _kernel_helper_off(self) -> None:
        """At start and on each HUP (fw4's include sends one after every reload): what attaches the
        kernel's SIP helper.  The init script turned it off in fw4's config (alg/fw4.py); what still
        attaches it (a rule of the owner's, another table) is taken out here with disable_kernel_helper."""
        from alg.kernel.helper import disable_sip_helper, helper_state, list_ruleset
        ruleset = list_ruleset()
        state = helper_state(ruleset)
        if self.s.disable_kernel_helper and state["attached"]:
            log.warning("kernel SIP helper attached by %s, not from fw4's zone settings: taking it out",
                        ", ".join(state["attached"]))
            for what in disable_sip_helper(ruleset=ruleset):
                log.info("kernel SIP helper: %s", what)
            state = helper_state(list_ruleset())
        if state != self.kernel_helper:
            self.kernel_helper = state
            self.published.touch()

    # -- what the kernel says changed

    def _links_changed(self, events) -> None:
        """rtnetlink: an address or link changed; the WAN address is followed at once."""
        if any(e.kind in ("newlink", "dellink", "overrun") for e in events):
            self.site.indexes(self.rtnl)
        if events:
            self._follow_wan(self.clock())

    def _ruleset_changed(self, events) -> None:
        """nf_tables: our table or the fallback's queue rules gone means put them back at once (an
        `nft flush ruleset`, `fw4 restart`, an admin's mistake); another table changed, so its port
        forwards may have."""
        now = self.clock()
        if self.nftmon.removed(events) and not self.table.present():
            self.table.rebuild(self.engine.bindings(), now)
            self.table.ensure_queue_rules()
            self.offload.sweep(self.s.sip_port)
            log.warning("table %s was removed from the kernel: re-installed with %d bindings",
                        self.s.table, len(self.engine.bindings()))
        elif not self.table.use_nft_queue and any(
                e.kind == "overrun" or (e.kind.startswith("del") and e.table == "mangle") for e in events):
            if self.table.ensure_queue_rules():
                log.warning("the iptables NFQUEUE rules were removed: put back")
        others = [e for e in events if e.table and e.table != self.s.table and not e.table.startswith("sipalg_probe")
                  and e.kind.endswith(("rule", "chain", "table"))]
        if others:
            log.debug("ruleset changed (%s): port forwards read again", others[0])
            self._forwards_due = min(self._forwards_due, now + 2.0)      # debounced: fw4 makes many

    def _read_router_ports(self, now: float, forwards: bool = True) -> None:
        """The WAN ports the router uses itself: its listeners (/proc, every 30 s) and, when asked
        (start, reload, another table changed), the ports other tables forward (`nft -j`, never
        on a timer: nothing is spawned while calls go on undisturbed)."""
        from alg.kernel.router_ports import forwarded_ports, listeners
        if forwards:
            self._forwarded = forwarded_ports(self.s.table)
            self._forwards_due = float("inf")
        self.engine.reserve_wan_ports(listeners(self.wan_ip) | self._forwarded)
        self._ports_due = now + 30.0

    def _follow_wan(self, now: float) -> Optional[str]:
        """Returns the WAN address now (None while it has none; self.wan_ip keeps the last one)."""
        ip = self.rtnl.ipv4(self.site.wan_if)
        if ip is None or ip == self.wan_ip:
            return ip
        log.info("WAN address %s -> %s: moving %d bindings", self.wan_ip, ip, len(self.engine.bindings()))
        old, self.wan_ip = self.wan_ip, ip
        self.engine.set_wan_ip(ip)
        self.table.set_wan_ip(ip, self.engine.bindings(), now)
        if old:
            self.hygiene.renumbered(old)
        self._read_router_ports(now)
        return ip

    # -- packets

    def on_packet(self, packet: bytes, verdict, meta=None) -> None:
        """The queue's callback; meta has the packet's indev/outdev (ifindex, 0 when absent) and mark."""
        try:
            self._on_packet(packet, verdict, meta)
        except Exception:              # never hold a packet because of a bug
            log.exception("internal error; packet passed unchanged")
            verdict(None, True)

    def direction(self, meta) -> Optional[str]:
        """LAN->WAN or WAN->LAN from the interfaces the packet crosses (never from its addresses)."""
        site = self.site
        indev = getattr(meta, "indev", 0)
        if indev and indev == site.wan_index:
            return IN
        if indev in site.lan_indexes and getattr(meta, "outdev", 0) == site.wan_index:
            return OUT
        return None

    def _on_packet(self, packet: bytes, verdict, meta=None) -> None:
        d = parse_udp(packet)
        if d is None:
            self.counters["not_udp"] += 1
            verdict(None, True)
            return
        direction = self.direction(meta)
        if direction is None:
            self.counters["not_crossing"] += 1
            verdict(None, True)
            return
        now = self.clock()
        src = (norm_ip(d.src) or d.src, d.sport)
        dst = (norm_ip(d.dst) or d.dst, d.dport)
        b = self.engine.lookup_lan(src) if direction == OUT else self.engine.lookup_wan(dst[1])
        if b is not None and b.kind != "sip":
            self.counters["media_queued"] += 1
        res = self.engine.handle(direction, src, dst, d.payload, now)
        later = None
        if res.actions:
            first, later = A.split_at_verdict(res.actions)
            if first:
                if self._later:                     # what earlier datagrams left goes to the kernel first,
                    first = self._later_actions() + first       # in the same batch
                self._carry_out(first, now)         # before the verdict: the datagram's own NAT needs them
        if res.verdict == DROP:
            verdict(None, False)
        elif res.payload is not None:
            verdict(with_payload(packet, res.payload, d), True)
        else:
            verdict(None, True)
        if log.isEnabledFor(logging.DEBUG):             # the log after the verdict: it costs the packet nothing
            log.debug("%s %s:%d -> %s:%d %s: %s", direction, src[0], src[1], dst[0], dst[1], res.status,
                      res.reason)
        if later or res.events:
            self._later.append((now, later, res.events))
            if len(self._later) > LATER_MAX:
                self._catch_up()

    def _work_off(self) -> None:
        """What verdicts went out without, in order, while no datagram waits: the answer to the
        datagram just passed (in a lab it comes back within a few hundred microseconds) is not
        held behind its refreshes and log lines.  An item waits at most LATER_WAIT."""
        later = self._later
        while later:
            if len(later) <= LATER_MAX and self.clock() - later[0][0] < LATER_WAIT and self._datagram_waiting():
                return
            self._do_later(later.popleft())

    def _catch_up(self) -> None:
        """All of it now: before anything else reaches the kernel, so every binding's writes keep
        the engine's order."""
        later = self._later
        while later:
            self._do_later(later.popleft())

    def _later_actions(self) -> list:
        """The actions that wait, in order, taken out of the queue (their log lines stay in it)."""
        out: list = []
        later = self._later
        for i in range(len(later)):
            when, actions, events = later[i]
            if actions:
                out.extend(actions)
                later[i] = (when, None, events)
        return out

    def _do_later(self, item) -> None:
        when, actions, events = item
        try:
            if actions:
                self._carry_out(actions, when)
            if events:
                self._log_events(events)
        except Exception:              # as on the packet path: a bug costs this item, never the daemon
            log.exception("internal error after a verdict; %d actions may not have reached the kernel",
                          len(actions or ()))

    def _datagram_waiting(self) -> bool:
        try:
            return bool(select.select([self.queue], [], [], 0)[0])
        except (InterruptedError, ValueError):
            return False

    def _log_events(self, events, prefix: str = "") -> None:
        """Registrations, calls and refusals at info (refusals at most one line per reason
        every REFUSAL_LOG_EVERY seconds); bindings, pinholes and keep-alives at debug."""
        for ev in events:
            if isinstance(ev, E.Refused):
                self._refusal(ev, prefix)
            elif isinstance(ev, E.InternalError):
                log.warning("%s%s", prefix, ev.describe())
            elif isinstance(ev, INFO_EVENTS):
                log.info("%s%s", prefix, ev.describe())
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("%s%s", prefix, ev.describe())

    def _refusal(self, ev, prefix: str) -> None:
        why = ev.reason
        self.refused[why] = self.refused.get(why, 0) + 1
        now = self.clock()
        if now - self._refusal_logged.get(why, -REFUSAL_LOG_EVERY) < REFUSAL_LOG_EVERY:
            self._refusal_quiet[why] = self._refusal_quiet.get(why, 0) + 1
            return
        quiet = self._refusal_quiet.pop(why, 0)
        self._refusal_logged[why] = now
        log.info("%s%s%s", prefix, ev.describe(), " (and %d more since the last such line)" % quiet if quiet else "")

    def _carry_out(self, actions, now: float) -> None:
        failed = self.table.apply(actions, now)
        if failed:
            self.nft_failures += failed
            log.debug("nft: %d element operations failed, last: %s", failed, self.table.last_failure)
        self.hygiene.clear_the_way(actions, self.wan_ip)
        self.hygiene.defer(actions)
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
                tuple(self.refused.values()), self.hygiene.deleted,
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
            "kernel_helper": self.kernel_helper,
            "leds": self.leds.describe(),
            "queue_backend": self.queue.backend if self.queue else None,
            "queue_counters": dict(self.queue.counters) if self.queue else {},
            "counters": dict(e.counters, nft_failures=self.nft_failures, conntrack_deleted=self.hygiene.deleted,
                             **self.counters),
            "refused": dict(self.refused),
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
                          "remote": ("%s:%d" % b.remote) if b.remote else None, "peers": list(b.peers),
                          "expires": wall(b.expires)}
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
        setup_logging(settings.log_level, "syslog" if args.syslog else "stderr")
    except (ValueError, OSError) as e:
        print("sipalg run: %s" % e, file=sys.stderr)
        return 2
    from alg.privileges import may_run
    if not may_run():
        log.error("sipalg run: needs root, or CAP_NET_ADMIN and CAP_NET_RAW (nftables and NFQUEUE)")
        return 2
    try:
        daemon = Daemon(settings, flags)
    except (ValueError, OSError) as e:
        log.error("sipalg run: %s", e)
        return 2
    daemon.user = args.user

    def on_stop(signum, frame):
        daemon.stop = True

    def on_hup(signum, frame):
        daemon.reload = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        daemon.run()
    except options.OptionError as e:                     # e.g. the queue taken: a setting to change
        log.error("sipalg run: %s", e)
        return 2
    except Exception as e:
        log.error("stopped by an error: %s", e)
        return 1
    return 0
