"""Engine.handle(): the one entry point of the pure core.

The shell queues every SIP datagram crossing the router and calls
handle(direction, src, dst, payload, now):

  direction  OUT for LAN->WAN, IN for WAN->LAN.
  src, dst   (ip_text, port) as the router sees them *before* its own NAT:
             OUT: src is the LAN device, dst the remote;
             IN:  src is the remote, dst is the router's WAN ip and port.
  payload    the UDP payload, bytes.
  now        seconds (float), from the shell's monotonic clock.

It returns a Result (result.py): the payload to forward (None = unchanged),
the verdict, the actions the shell must carry out first and the events
saying what happened.

Handling a message is: keep-alives aside, parse; map the sender's addresses
in the headers every message carries (Via, Contact and the other name-addr
headers going out; Request-URI, Via, To/From coming back) through one
AddressMap; then the method's own handler from the table below, as
nf_conntrack_sip keeps sip_handlers[]: registrations.py for REGISTER,
dialogs.py for the INVITE dialog's methods and their media.
"""

from .result import (OUT, IN, REWRITTEN, UNCHANGED, MALFORMED, KEEPALIVE, STATUSES, ACCEPT, DROP,
                     Outcome, Result)
from .actions import Action, SEND
from .addr import norm_ip
from .bindings import BindingTable, SIP, IDLE, EXPIRY as BINDING_EXPIRY, REST as PORT_REST
from .timers import Timers
from .message import parse_message, MalformedMessage
from .grammar import check as grammar_problem
from .keepalive import classify, options_answer, PING, PONG, STUN, PONG_BYTES
from .via import top_via, rewrite_sent_by, replace_sent_by, restore_received_rport
from .nameaddr import map_header_uris, map_uri_span, contacts
from .uri import splice
from .policy import Policy
from .mapping import AddressMap, signalling_binding
from .transactions import Transactions, worth_remembering, EXPIRY as TRANSACTION_EXPIRY
from .registrations import Registrations, PENDING, EXPIRY as REGISTRATION_EXPIRY
from .dialogs import Dialogs, to_tag, EXPIRY as CALL_EXPIRY
from .events import InternalError, KeepaliveAnswered, Malformed, Refused
from .policy import PEERS, SPOOFED

__all__ = ("Engine", "OUT", "IN", "ACCEPT", "DROP", "STATUSES", "Result", "Outcome")

# Headers whose URIs an outbound message may need mapped to the WAN.
_NAME_ADDR = {b"contact": 1, b"record-route": 1, b"route": 1, b"path": 1, b"from": 1, b"to": 1}


class _Ctx:
    """One message's scratch: who it is about, and what changed and why."""

    __slots__ = ("now", "from_lan", "phone", "remote", "wan_ip", "binding", "map", "payload",
                 "actions", "events", "notes", "snat", "dnat", "bound", "txn")

    def __init__(self, now, from_lan, phone, remote, wan_ip, payload):
        self.now = now
        self.from_lan = from_lan    # True for OUT
        self.phone = phone          # the LAN device's ip (text)
        self.remote = remote        # the other end's (ip, port): OUT dst, IN src
        self.wan_ip = wan_ip
        self.binding = None         # the signalling binding the datagram crosses
        self.map = None             # its AddressMap
        self.payload = payload      # the datagram as it came
        self.actions = []
        self.events = []
        self.notes = []
        self.snat = None
        self.dnat = None
        self.bound = []             # the signalling bindings this message used (their peers grow)
        self.txn = None             # (branch, sent-by) to remember once the message is through


class Engine:
    def __init__(self, config):
        self.config = config
        self.policy = Policy(config)
        self.wan_ip = norm_ip(config.wan_ip) if config.wan_ip else None
        self.timers = Timers()
        self.table = BindingTable(self.wan_ip, config.rtp_ports, config.sip_ports, self.timers, config)
        self.transactions = Transactions(self.timers, config)
        self.registrations = Registrations(self.policy, self.table, self.timers)
        self.dialogs = Dialogs(self.policy, self.table, self.timers)
        self._ctx = None            # the message being handled: its actions survive a fault
        self.counters = {"queued": 0, "keepalives_answered": 0, "excluded": 0}
        for s in STATUSES:
            self.counters[s] = 0
        regs = self.registrations
        calls = self.dialogs
        # method -> (request handler, response handler).  Each runs after the
        # sender's addresses were mapped, with the message and its context; a
        # response is dispatched by its CSeq method.
        self.handlers = {
            b"REGISTER": (regs.request, regs.response),
            b"INVITE": (calls.invite, calls.invite_response),
            b"ACK": (calls.offer_answer, None),
            b"PRACK": (calls.offer_answer, calls.offer_answer),
            b"UPDATE": (calls.update, calls.offer_answer),
            b"BYE": (calls.bye, None),
            b"CANCEL": (calls.cancel, None),
            b"OPTIONS": (self._options, None),
        }
        # timer kind -> what expires, given the timer's key: (kind, what) as a rule, a
        # registration's own (kind, Call-ID, lan) key
        self.expiry = {
            BINDING_EXPIRY: self.table.expire,
            PORT_REST: self.table.rested,
            TRANSACTION_EXPIRY: self.transactions.expire,
            PENDING: regs.expire_pending,
            REGISTRATION_EXPIRY: regs.expire,
            CALL_EXPIRY: calls.expire,
        }

    # ------------------------------------------------------------------ API

    def handle(self, direction, src, dst, payload, now):
        self.counters["queued"] += 1
        self._ctx = None
        try:
            res = self._handle(direction, src, dst, payload, now)
        except Exception as e:     # do no harm: a bug here must not stop traffic
            # The message passes as it came; what the engine recorded before the fault still
            # reaches the kernel, so the two never disagree about a binding.
            why = "internal error %s: %s" % (type(e).__name__, _text(e))
            ctx = self._ctx
            res = Result(status=MALFORMED, reason="not rewritten: " + why,
                         actions=ctx.actions if ctx is not None else None,
                         events=(ctx.events if ctx is not None else []) + [InternalError(why)])
        if self._ctx is not None:
            self._ctx.map = None    # the map points back at its ctx: a cycle per message for the GC to find
        self._ctx = None
        self.counters[res.status] += 1
        return res

    def expire(self, now, limit=None):
        """What has come due (at most limit timers: the rest stay due for the next call,
        so one pass never holds SIP up); an Outcome with the actions and events."""
        out = Outcome()
        expiry = self.expiry
        for key in self.timers.due(now, limit):
            expiry[key[0]](key, now, out)
        return out

    def next_deadline(self):
        return self.timers.next_deadline()

    def set_wan_ip(self, ip):
        """Renumbering: every binding keeps its port on the new address (the shell
        rebuilds its kernel table from bindings())."""
        text = norm_ip(ip)
        if text is None:
            raise ValueError("not an IP address: %r" % (ip,))
        self.wan_ip = text
        self.table.set_wan_ip(text)

    def configure(self, config):
        """New settings for a running engine (a reload): bindings, registrations and
        calls stay as they are; the new rules apply from the next message on."""
        self.config.update(config)
        self.policy.configure(self.config)
        self.table.configure(self.config.rtp_ports, self.config.sip_ports, self.config)

    def reserve_wan_ports(self, ports):
        """The WAN ports the router itself uses (its listeners, port forwards, other
        DNATs), as the shell reads them: no new binding or pinhole takes one."""
        self.table.reserve_wan_ports(ports)

    def bindings(self):
        return self.table.all()

    def lookup_lan(self, lan):
        return self.table.lookup_lan(lan)

    def lookup_wan(self, wan_port):
        return self.table.lookup_wan(wan_port)

    def restore(self, binding):
        """Take back a binding the kernel still holds after a daemon restart (a media one
        rejoins its call when the call's next message comes)."""
        self.table.restore(binding)
        if binding.kind != SIP:
            self.dialogs.adopt(binding)

    # ------------------------------------------------------------- dispatch

    def _handle(self, direction, src, dst, payload, now):
        # keep-alives start with CR, NUL or a STUN type byte; SIP with a letter
        if not payload or payload[0] < 32:
            ka = classify(payload)
            if ka is not None:
                return self._keepalive(ka, direction, src, dst, now)
        try:
            msg = parse_message(payload)
        except MalformedMessage as e:
            return _malformed("not SIP: %s" % e)
        bad = msg.length_problem() or grammar_problem(msg)
        if bad:
            return _malformed(bad)
        if self.wan_ip is None:
            return Result(status=UNCHANGED, reason="WAN address not known yet")
        if direction == OUT:
            ctx = self._outbound(msg, src, dst, payload, now)
        else:
            ctx = self._inbound(msg, src, dst, payload, now)
        if type(ctx) is Result:
            return ctx
        handler = self.handlers.get(msg.method if msg.is_request else msg.cseq()[1])
        if handler is not None:
            h = handler[0] if msg.is_request else handler[1]
            if h is not None:
                res = h(msg, ctx)
                if res is not None:
                    return res
        return self._finish(msg, payload, ctx)

    def _finish(self, msg, payload, ctx):
        if ctx.txn is not None:
            self.transactions.remember(ctx.txn[0], ctx.txn[1], ctx.phone, self.policy.transaction_until(ctx.now))
        out = msg.to_bytes()
        if out == payload:
            res = Result(None, ACCEPT, ctx.actions, UNCHANGED, "nothing of the sender's to rewrite",
                         ctx.notes, ctx.events)
        else:
            res = Result(out, ACCEPT, ctx.actions, REWRITTEN, "", ctx.notes, ctx.events)
        res.snat = ctx.snat
        res.dnat = ctx.dnat
        return res

    # ------------------------------------------------------------- outbound

    def _outbound(self, msg, src, dst, payload, now):
        lan_ip = norm_ip(src[0])
        if lan_ip is None or not self.policy.on_lan(lan_ip):
            if lan_ip is not None and self.policy.excluded(lan_ip):
                self.counters["excluded"] += 1
                return Result(status=UNCHANGED, reason="sender %s is excluded: left alone" % src[0])
            return Result(status=UNCHANGED, reason="sender %s is not on the LAN" % src[0])
        wan_ip = self.wan_ip
        if (":" in lan_ip) != (":" in wan_ip):
            return Result(status=UNCHANGED, reason="sender's address family has no WAN address")
        ctx = self._ctx = _Ctx(now, True, lan_ip, dst, wan_ip, payload)
        binding = signalling_binding(self.table, self.policy, (lan_ip, src[1]), ctx)
        if binding is None:
            return Result(status=UNCHANGED, actions=ctx.actions, events=ctx.events,
                          reason="no WAN port free for %s:%d" % (lan_ip, src[1]))
        ctx.binding = binding
        ctx.snat = binding.wan
        amap = ctx.map = AddressMap(OUT, lan_ip, wan_ip, self.table, self.policy, ctx, binding)
        if msg.is_request:
            via = top_via(msg)
            if via is not None and via.host() == lan_ip:
                via_port = via.port()
                mapped = amap.bind(lan_ip, via_port or 5060)
                if mapped is not None:
                    before = via.sent_by_bytes()
                    rewrite_sent_by(via, mapped[0], mapped[1], maddr_from=lan_ip)
                    branch = via.branch()
                    if branch and worth_remembering(before, lan_ip, via_port):
                        ctx.txn = (branch, before)
                    ctx.notes.append(("Via %s -> %s", before, via.sent_by_bytes()))
        n = 0
        # IPv4 text is canonical, so a header without the sender's address
        # text (or a bracketed IPv6 reference, which may be ::ffff:a.b.c.d) can't
        # name it: skip parsing it (IPv6 has many spellings).
        needle = lan_ip.encode() if ":" not in lan_ip else b""
        i = -1
        for k in msg.names:
            i += 1
            if k not in _NAME_ADDR:
                continue
            raw = msg.raw_at(i)
            if raw.find(needle) < 0 and raw.find(b"[") < 0:     # an IPv4-mapped sender is bracketed
                continue
            h = msg.header_at(i)
            if k == b"contact":
                n += map_header_uris(h, amap.bind)
            elif map_header_uris(h, amap.map):
                ctx.notes.append(("%s %s", h.name, lan_ip))
        if n:
            ctx.notes.append(("Contact x%d", n))
        self._admit_peers(msg, ctx, ctx.remote[0])
        return ctx

    def _admit_peers(self, msg, ctx, peer):
        """The far end this message goes to (OUT) and the proxies its Record-Route and
        Path name may start flows through the bindings it used."""
        table = self.table
        wan_ip = self.wan_ip
        hosts = [peer] if peer is not None else []
        for key in (b"record-route", b"path"):
            for h in msg.get_all(key):
                for ip, port, exp in contacts(h):
                    if ip is not None and ip != "*" and ip != wan_ip and not self.policy.on_lan(ip):
                        hosts.append(ip)
        bound = ctx.bound if ctx.from_lan else [ctx.binding]
        for b in bound:
            for ip in hosts:
                if not table.add_peer(b, ip, ctx):
                    ctx.events.append(Refused("peer", b.lan, PEERS))
                    break

    # -------------------------------------------------------------- inbound

    def _inbound(self, msg, src, dst, payload, now):
        binding = self.table.lookup_wan(dst[1])
        if binding is None or binding.kind != SIP:
            return Result(status=UNCHANGED, reason="no binding for WAN port %d" % dst[1])
        if self.policy.spoofed(norm_ip(src[0]) or src[0], self.wan_ip):
            return _spoofed(src)
        lan_ip = binding.lan[0]
        wan_ip = self.wan_ip
        ctx = self._ctx = _Ctx(now, False, lan_ip, src, wan_ip, payload)
        ctx.binding = binding
        ctx.dnat = binding.lan
        amap = ctx.map = AddressMap(IN, lan_ip, wan_ip, self.table, self.policy, ctx, binding)
        self.table.hold(binding, IDLE, self.policy.idle_until(now), now, ctx)
        if msg.is_request:
            s, e = msg.uri_span
            edits = map_uri_span(msg.start_line, s, e, amap.map)
            if edits:
                new = splice(msg.start_line[s:e], [(a - s, b - s, r) for a, b, r in edits])
                ctx.notes.append(("Request-URI %s -> %s", msg.uri, new))
                msg.set_uri(new)
            # a To built from the device's contact names our WAN mapping
            self._map_back(msg, b"to", amap, ctx)
            self._admit_peers(msg, ctx, None)
            return ctx
        via = top_via(msg)
        if via is not None and via.host() == wan_ip:
            branch = via.branch()
            before = via.sent_by_bytes()
            orig = self.transactions.sent_by(branch) if branch else None
            if orig is not None:
                replace_sent_by(via, orig)
            else:
                vb = self.table.lookup_wan(via.port() or 5060)
                if vb is not None and vb.lan[0] == lan_ip:
                    rewrite_sent_by(via, vb.lan[0], vb.lan[1])
            # the device's own From, echoed in the response
            self._map_back(msg, b"from", amap, ctx)
            after = via.sent_by_bytes()
            if after != before:
                ctx.notes.append(("Via %s -> %s", before, after))
            if restore_received_rport(via, wan_ip, dst[1], lan_ip, binding.lan[1]):
                ctx.notes.append(("received/rport -> %s:%d", lan_ip, binding.lan[1]))
        self._admit_peers(msg, ctx, None)
        return ctx

    def _map_back(self, msg, key, amap, ctx):
        h = msg.get(key)
        if h is not None and self.wan_ip.encode() in h.raw and map_header_uris(h, amap.map):
            ctx.notes.append(("%s -> LAN", h.name))

    # ----------------------------------------------------------- keep-alive

    def _keepalive(self, ka, direction, src, dst, now):
        if direction == OUT:
            lan_ip = norm_ip(src[0])
            ctx = self._ctx = _Ctx(now, True, lan_ip, dst, self.wan_ip, None)
            if lan_ip is not None and self.policy.on_lan(lan_ip) and self.wan_ip is not None:
                b = signalling_binding(self.table, self.policy, (lan_ip, src[1]), ctx)
                ctx.snat = b.wan if b is not None else None
            res = Result(actions=ctx.actions, status=KEEPALIVE, reason="keep-alive %s from LAN" % ka,
                         events=ctx.events)
            res.snat = ctx.snat
            return res
        b = self.table.lookup_wan(dst[1])
        res = Result(status=KEEPALIVE, reason="keep-alive %s" % ka)
        if b is None or b.kind != SIP:
            return res
        if self.policy.spoofed(norm_ip(src[0]) or src[0], self.wan_ip):
            res.events.append(Refused("datagram", src, SPOOFED))
            return res
        res.dnat = b.lan
        mode = self.config.answer_keepalives
        if mode == "off" or ka == PONG or ka == STUN:
            return res
        self.table.hold(b, IDLE, self.policy.idle_until(now), now, res)
        res.verdict = DROP
        if ka == PING:
            res.actions.append(Action(SEND, src=dst, dst=src, payload=PONG_BYTES))
            res.events.append(KeepaliveAnswered(ka, b.lan))
            self.counters["keepalives_answered"] += 1
            res.reason = "CRLFCRLF ping answered for %s:%d" % b.lan
        else:
            res.reason = "NUL probe absorbed for %s:%d" % b.lan
        return res

    def _options(self, msg, ctx):
        """Mode "options": the router answers an out-of-dialog OPTIONS for a registered device."""
        if (ctx.from_lan or self.config.answer_keepalives != "options" or to_tag(msg)
                or not self.registrations.is_registered(ctx.binding.lan)):
            return None
        # from the request as it came: the rewrite so far named the LAN in To
        answer = options_answer(parse_message(ctx.payload), msg.call_id())
        ctx.actions.append(Action(SEND, src=ctx.binding.wan, dst=ctx.remote, payload=answer))
        ctx.events.append(KeepaliveAnswered("options", ctx.binding.lan))
        self.counters["keepalives_answered"] += 1
        res = Result(verdict=DROP, status=KEEPALIVE, actions=ctx.actions, events=ctx.events,
                     reason="OPTIONS answered for registered %s:%d" % ctx.binding.lan)
        res.dnat = ctx.dnat
        return res


def _text(e):
    """An exception's message as log-safe text, whatever bytes it holds."""
    try:
        text = str(e)
    except Exception:
        text = repr(e)
    return "".join(c if 32 <= ord(c) < 127 else "\\x%02x" % (ord(c) & 0xFF) for c in text)


def _malformed(why):
    return Result(status=MALFORMED, reason="passed as is: " + why, events=[Malformed(why)])


def _spoofed(src):
    return Result(status=UNCHANGED, reason="refused: " + SPOOFED, events=[Refused("datagram", src, SPOOFED)])

