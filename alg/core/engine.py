"""Engine.handle(): the one entry point of the pure core.

The shell queues every SIP datagram crossing the router and calls
handle(direction, src, dst, payload, now):

  direction  OUT for LAN->WAN, IN for WAN->LAN.
  src, dst   (ip_text, port) as the router sees them *before* its own NAT:
             OUT: src is the LAN device, dst the remote;
             IN:  src is the remote, dst is the router's WAN ip and port.
  payload    the UDP payload, bytes.
  now        seconds (float), from the shell's monotonic clock.

It returns a Result: the payload to forward (None = unchanged), the verdict,
and the actions the shell must carry out first.
"""

OUT = "out"
IN = "in"

# Result.status values, which are also the counter names.
REWRITTEN = "rewritten"
UNCHANGED = "unchanged"
MALFORMED = "malformed"
KEEPALIVE = "keepalive"
DROPPED = "dropped"

ACCEPT = "accept"
DROP = "drop"


class Result:
    __slots__ = ("payload", "verdict", "actions", "status", "_reason", "_notes", "dnat")

    def __init__(self, payload=None, verdict=ACCEPT, actions=None, status=UNCHANGED, reason="",
                 notes=None):
        self.payload = payload      # bytes to forward instead, or None
        self.verdict = verdict      # ACCEPT or DROP
        self.actions = actions if actions is not None else []
        self.status = status        # one of the status names above
        self._reason = reason
        self._notes = notes         # (format, args...) tuples, rendered when reason is read
        self.dnat = None            # IN: (lan_ip, lan_port) the packet goes to, when known

    @property
    def reason(self):
        """Short text for the log: what was rewritten and why.

        Built on first read: most packets are never logged in detail."""
        notes = self._notes
        if notes is not None:
            self._notes = None
            text = "; ".join([_render(n) for n in notes])
            if text:
                self._reason = text
        return self._reason

    @reason.setter
    def reason(self, text):
        self._notes = None
        self._reason = text


def _render(note):
    """A note's text: its format with the arguments (bytes read as ASCII text)."""
    args = note[1:]
    if not args:
        return note[0]
    return note[0] % tuple([a.decode() if isinstance(a, bytes) else a for a in args])


from .actions import (Action, OPEN_BINDING, REFRESH_BINDING, CLOSE_BINDING, OPEN_PINHOLE,
                      REFRESH_PINHOLE, MOVE_PINHOLE, CLOSE_PINHOLE, SEND)
from .addr import norm_ip, Network
from .bindings import BindingTable
from .timers import Timers
from .message import parse_message, MalformedMessage
from .keepalive import classify, PING, PONG, NUL, STUN, PONG_BYTES
from .via import top_via, rewrite_sent_by, replace_sent_by, restore_received_rport
from .nameaddr import map_header_uris, contacts, map_uri_span
from .uri import splice
from .headers import param_span
from .sdp import parse_sdp
from .multipart import find_sdp_part
from .registrations import PendingRegister, Registration, granted_expires
from .dialogs import Call, MediaLeg, EARLY, CONFIRMED, remote_media

STATUSES = (REWRITTEN, UNCHANGED, MALFORMED, KEEPALIVE, DROPPED)

# Headers whose URIs an outbound message may need mapped to the WAN.
_NAME_ADDR = {b"contact": 1, b"record-route": 1, b"route": 1, b"path": 1, b"from": 1, b"to": 1}

# Methods whose requests and responses carry offer/answer SDP (RFC 3261, 3262, 3311).
_SDP_METHODS = (b"INVITE", b"ACK", b"UPDATE", b"PRACK")


class _Ctx:
    """Per-message scratch: what changed and why, and what the shell must do."""

    __slots__ = ("actions", "notes", "now", "dnat")

    def __init__(self, now):
        self.actions = []
        self.notes = []
        self.now = now
        self.dnat = None


class Engine:
    def __init__(self, config):
        self.config = config
        self.lan_nets = [Network(n) for n in config.lan_nets]
        self.wan_ip = norm_ip(config.wan_ip) if config.wan_ip else None
        self.table = BindingTable(self.wan_ip, config.rtp_ports, config.sip_ports)
        self.timers = Timers()
        self.counters = {"queued": 0, "keepalives_answered": 0}
        for s in STATUSES:
            self.counters[s] = 0
        self._owners = {}        # binding lan -> {owner: deadline}
        self._txns = {}          # Via branch -> sent-by bytes the LAN device wrote
        self._pending = {}       # (call_id, cseq) -> PendingRegister
        self.regs = {}           # (call_id, lan) -> Registration
        self.calls = {}          # (call_id, lan ip) -> Call
        self._lan_cache = {}     # ip text -> inside lan_nets

    # ------------------------------------------------------------------ API

    def handle(self, direction, src, dst, payload, now):
        self.counters["queued"] += 1
        try:
            res = self._handle(direction, src, dst, payload, now)
        except Exception as e:     # do no harm: a bug here must not stop traffic
            res = Result(status=MALFORMED, reason="not rewritten: internal error %s: %s"
                         % (type(e).__name__, e))
        self.counters[res.status] += 1
        return res

    def expire(self, now):
        actions = []
        for key in self.timers.due(now):
            kind = key[0]
            if kind == "b":
                b = self.table.lookup_lan(key[1])
                if b is not None:
                    self._close(b, actions)
            elif kind == "t":
                self._txns.pop(key[1], None)
            elif kind == "p":
                self._pending.pop(key[1], None)
            elif kind == "r":
                reg = self.regs.pop(key[1], None)
                if reg is not None:
                    self._release_owner(reg.lan, reg.owner(), now, actions)
            elif kind == "c":
                call = self.calls.get(key[1])
                if call is not None:
                    self._end_call(call, now, actions)
        return actions

    def next_deadline(self):
        return self.timers.next_deadline()

    def set_wan_ip(self, ip, now):
        ip = norm_ip(ip)
        if ip is None:
            raise ValueError("not an IP address: %r" % (ip,))
        self.wan_ip = ip
        actions = []
        for old, b in self.table.set_wan_ip(ip):
            kind = MOVE_PINHOLE if b.kind != "sip" else REFRESH_BINDING
            actions.append(Action(kind, b.copy(), old=old))
        return actions

    def bindings(self):
        return self.table.all()

    def lookup_lan(self, lan):
        return self.table.lookup_lan(lan)

    def lookup_wan(self, wan_port):
        return self.table.lookup_wan(wan_port)

    def restore(self, binding, now):
        """Take back a binding the kernel still holds after a daemon restart."""
        self.table.restore(binding)
        self._owners[binding.lan] = {"restored": binding.expires}
        self.timers.schedule(("b", binding.lan), binding.expires)

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
            return Result(status=MALFORMED, reason="not SIP, passed as is: %s" % e)
        bad = _length_problem(msg)
        if bad:
            return Result(status=MALFORMED, reason="passed as is: " + bad)
        ctx = _Ctx(now)
        if self.wan_ip is None:
            return Result(status=UNCHANGED, reason="WAN address not known yet")
        if direction == OUT:
            res = self._outbound(msg, src, dst, ctx)
        else:
            res = self._inbound(msg, src, dst, ctx)
        if res is not None:
            return res
        return self._finish(msg, payload, ctx)

    def _finish(self, msg, payload, ctx):
        out = msg.to_bytes()
        if out == payload:
            res = Result(None, ACCEPT, ctx.actions, UNCHANGED, "nothing of the sender's to rewrite",
                         ctx.notes)
        else:
            res = Result(out, ACCEPT, ctx.actions, REWRITTEN, "", ctx.notes)
        res.dnat = ctx.dnat
        return res

    # ------------------------------------------------------------- outbound

    def _outbound(self, msg, src, dst, ctx):
        lan_ip = norm_ip(src[0])
        if lan_ip is None or not self._in_lan(lan_ip):
            return Result(status=UNCHANGED, reason="sender %s is not on the LAN" % src[0])
        if (":" in lan_ip) != (":" in self.wan_ip):
            return Result(status=UNCHANGED, reason="sender's address family has no WAN address")
        phone = (lan_ip, src[1])
        binding = self._signalling(phone, ctx)
        if binding is None:
            return Result(status=UNCHANGED, reason="no WAN port free for %s:%d" % phone)
        wan_ip = self.wan_ip

        def mapper(ip, port):
            if ip != lan_ip:
                return None
            b = self.table.lookup_lan((ip, port))
            return (wan_ip, b.wan[1] if b is not None else port)

        def contact_mapper(ip, port):
            if ip != lan_ip:
                return None
            if port == phone[1]:
                return (wan_ip, binding.wan[1])     # held for this message already
            b = self._signalling((ip, port), ctx)
            return None if b is None else (wan_ip, b.wan[1])

        if msg.is_request:
            via = top_via(msg)
            if via is not None and via.host() == lan_ip:
                vport = via.port() or 5060
                vb = binding if vport == phone[1] else self._signalling((lan_ip, vport), ctx)
                if vb is not None:
                    before = via.sent_by_bytes()
                    rewrite_sent_by(via, wan_ip, vb.wan[1], maddr_from=lan_ip)
                    branch = via.branch()
                    if branch:
                        self._txns[branch] = before
                        self.timers.schedule(("t", branch), ctx.now + self.config.transaction_timeout)
                    ctx.notes.append(("Via %s -> %s", before, via.sent_by_bytes()))
        n = 0
        # IPv4 text is canonical, so a header without the sender's address
        # text can't name it: skip parsing it (IPv6 has many spellings).
        needle = lan_ip.encode() if ":" not in lan_ip else b""
        i = -1
        for k in msg._keys:
            i += 1
            if k not in _NAME_ADDR or msg.raw_at(i).find(needle) < 0:
                continue
            h = msg.header_at(i)
            if k == b"contact":
                n += map_header_uris(h, contact_mapper)
            elif map_header_uris(h, mapper):
                ctx.notes.append(("%s %s", h.name.decode(), lan_ip))
        if n:
            ctx.notes.append(("Contact x%d", n))
        method = msg.method if msg.is_request else msg.cseq()[1]
        if msg.is_request and method == b"REGISTER":
            self._register_request(msg, phone, ctx)
        if method in _SDP_METHODS or method == b"BYE" or method == b"CANCEL":
            self._dialog(msg, method, lan_ip, True, ctx)
        return None

    def _signalling(self, lan, ctx):
        """The binding for a LAN ip:port, made if needed; each use keeps it alive."""
        until = ctx.now + self.config.sip_idle
        b = self.table._by_lan.get(lan)
        created = False
        if b is None:
            try:
                b, created = self.table.bind_signalling(lan, ctx.now, until)
            except ValueError:
                return None
        self._hold(b, "idle", until, ctx, created)
        return b

    # -------------------------------------------------------------- inbound

    def _inbound(self, msg, src, dst, ctx):
        binding = self.table.lookup_wan(dst[1])
        if binding is None or binding.kind != "sip":
            return Result(status=UNCHANGED, reason="no binding for WAN port %d" % dst[1])
        lan_ip = binding.lan[0]
        wan_ip = self.wan_ip
        ctx.dnat = binding.lan

        def mapper(ip, port):
            if ip != wan_ip:
                return None
            b = self.table.lookup_wan(port)
            if b is None or b.kind != "sip" or b.lan[0] != lan_ip:
                return None
            return b.lan

        self._hold(binding, "idle", ctx.now + self.config.sip_idle, ctx, False)
        if msg.is_request:
            us = (msg._uri_span[0], msg._uri_span[1])
            edits = map_uri_span(msg.start_line, us[0], us[1], mapper)
            if edits:
                new = splice(msg.start_line[us[0]:us[1]], [(s - us[0], e - us[0], r) for s, e, r in edits])
                ctx.notes.append(("Request-URI %s -> %s", msg.uri.decode(), new.decode()))
                msg.set_uri(new)
            method = msg.method
            if method == b"OPTIONS" and self.config.answer_keepalives == "options":
                ans = self._answer_options(msg, src, dst, binding, ctx)
                if ans is not None:
                    return ans
            # a To built from the device's contact names our WAN mapping
            self._map_back(msg, b"to", mapper, ctx)
        else:
            via = top_via(msg)
            if via is not None and via.host() == wan_ip:
                branch = via.branch()
                before = via.sent_by_bytes()
                orig = self._txns.get(branch) if branch else None
                if orig is not None:
                    replace_sent_by(via, orig)
                else:
                    vb = self.table.lookup_wan(via.port() or 5060)
                    if vb is not None and vb.lan[0] == lan_ip:
                        rewrite_sent_by(via, vb.lan[0], vb.lan[1])
                # the device's own From, echoed in the response
                self._map_back(msg, b"from", mapper, ctx)
                after = via.sent_by_bytes()
                if after != before:
                    ctx.notes.append(("Via %s -> %s", before.decode(), after.decode()))
                if restore_received_rport(via, wan_ip, dst[1], binding.lan[0], binding.lan[1]):
                    ctx.notes.append(("received/rport -> %s:%d", binding.lan[0], binding.lan[1]))
            method = msg.cseq()[1]
            if method == b"REGISTER":
                self._register_response(msg, mapper, ctx)
        if method in _SDP_METHODS or method == b"BYE" or method == b"CANCEL":
            self._dialog(msg, method, lan_ip, False, ctx)
        return None

    def _map_back(self, msg, key, mapper, ctx):
        h = msg.get(key)
        if h is not None and self.wan_ip.encode() in h.raw and map_header_uris(h, mapper):
            ctx.notes.append(("%s -> LAN", h.name.decode()))

    # --------------------------------------------------------- registration

    def _register_request(self, msg, phone, ctx):
        call_id = msg.call_id()
        cseq = msg.cseq()[0]
        if call_id is None or cseq is None:
            return
        ev = msg.value(b"expires")
        expires = int(ev) if ev is not None and ev.isdigit() else None
        to = msg.value(b"to")
        p = PendingRegister(call_id, cseq, phone, to if to is not None else b"", expires)
        for h in msg.get_all(b"contact"):
            for ip, port, exp in contacts(h):
                if ip == "*":
                    p.remove_all = True
                    continue
                if ip == self.wan_ip:
                    b = self.table.lookup_wan(port)
                    if b is not None and b.lan[0] == phone[0]:
                        p.contacts.append((b.lan, b.wan, exp))
        self._pending[(call_id, cseq)] = p
        self.timers.schedule(("p", (call_id, cseq)), ctx.now + self.config.transaction_timeout)

    def _register_response(self, msg, mapper, ctx):
        call_id = msg.call_id()
        cseq = msg.cseq()[0]
        if msg.status < 200:
            return
        p = self._pending.pop((call_id, cseq), None)
        if p is None:
            return
        self.timers.cancel(("p", (call_id, cseq)))
        if msg.status >= 300:
            return
        listed = []
        for h in msg.get_all(b"contact"):
            listed.extend(contacts(h))
        eh = msg.value(b"expires")
        eh = int(eh) if eh is not None and eh.isdigit() else None
        if p.remove_all:
            for key in list(self.regs):
                if key[0] == call_id and key[1][0] == p.phone[0]:
                    reg = self.regs.pop(key)
                    self.timers.cancel(("r", key))
                    self._release_owner(reg.lan, reg.owner(), ctx.now, ctx.actions)
        for lan_wan in p.contacts:
            secs = granted_expires(p, lan_wan, listed, eh)
            lan = lan_wan[0]
            key = (call_id, lan)
            if secs <= 0:
                reg = self.regs.pop(key, None)
                self.timers.cancel(("r", key))
                self._release_owner(lan, ("reg", call_id, lan), ctx.now, ctx.actions)
                ctx.notes.append(("de-registered %s:%d", lan[0], lan[1]))
                continue
            secs = min(secs, self.config.max_expires)
            until = ctx.now + secs + self.config.registration_margin
            reg = Registration(call_id, p.aor, lan, lan_wan[1], ctx.now + secs)
            self.regs[key] = reg
            self.timers.schedule(("r", key), until)
            b = self.table.lookup_lan(lan)
            if b is not None:
                self._hold(b, reg.owner(), until, ctx, False)
            ctx.notes.append(("registered %s:%d for %ds", lan[0], lan[1], secs))
        n = 0
        for h in msg.get_all(b"contact"):
            n += map_header_uris(h, mapper)
        if n:
            ctx.notes.append(("Contact x%d -> LAN", n))

    # -------------------------------------------------------------- dialogs

    def _dialog(self, msg, method, lan_ip, from_lan, ctx):
        call_id = msg.call_id()
        if call_id is None:
            return
        key = (call_id, lan_ip)
        call = self.calls.get(key)
        now = ctx.now
        cseq = msg.cseq()[0]
        if msg.is_request:
            if method == b"BYE" or method == b"CANCEL":
                if call is not None and (method == b"BYE" or call.state == EARLY):
                    self._end_call(call, now, ctx.actions)
                    ctx.notes.append(("%s: call closed", method.decode()))
                return
            if method == b"INVITE" and call is None:
                if _to_tag(msg):
                    return    # a re-INVITE for a call we never saw: leave it be
                call = Call(call_id, lan_ip, from_lan, cseq)
                self.calls[key] = call
                self._call_deadline(call, now + self.config.early_media_timeout, ctx)
            elif method == b"INVITE" or method == b"UPDATE":
                if call is not None and call.state == CONFIRMED:
                    self._call_deadline(call, now + self.config.call_timeout, ctx)
        else:
            if call is None:
                return
            status = msg.status
            if method == b"INVITE" and status >= 300:
                if call.state == EARLY and cseq == call.invite_cseq:
                    self._end_call(call, now, ctx.actions)
                    ctx.notes.append(("%d to INVITE: call closed", status))
                return
            if method == b"INVITE" and 200 <= status < 300:
                tag = _to_tag(msg)
                if tag not in call.tags:
                    call.tags.append(tag)
                if call.state == EARLY:
                    call.state = CONFIRMED
                self._call_deadline(call, now + self.config.call_timeout, ctx)
        if call is None:
            return
        body_span = _sdp_span(msg)
        if body_span is None:
            return
        s, e = body_span
        try:
            sdp = parse_sdp(msg.body[s:e])
        except ValueError:
            return
        if from_lan:
            new = self._lan_sdp(call, sdp, msg.body[s:e], ctx)
            if new is not None:
                msg.body = msg.body[:s] + new + msg.body[e:]
                _set_content_length(msg)
        else:
            self._remote_sdp(call, sdp, ctx)

    def _lan_sdp(self, call, sdp, body, ctx):
        """Bind the LAN device's media ports and rewrite its SDP to the WAN."""
        lan_ip = call.phone
        port_map = {}
        deadline = call.deadline
        ours = norm_ip(sdp.origin_addr) == lan_ip if sdp.origin_addr else False
        for i in range(len(sdp.media)):
            m = sdp.media[i]
            conn = norm_ip(m.conn) if m.conn is not None else None
            if conn != lan_ip:
                continue
            ours = True
            leg = call.legs.get(i)
            if m.port == 0:
                if leg is not None:
                    self._drop_leg(call, i, ctx)
                continue
            rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
            if leg is not None and (leg.lan_rtp != m.port or leg.lan_rtcp != rtcp_port):
                self._drop_leg(call, i, ctx)
                leg = None
            if leg is None:
                pair = self.table.bind_media(lan_ip, m.port, rtcp_port, ctx.now, deadline)
                if pair is None:
                    ctx.notes.append(("m=%s %d not bound: outside the RTP range or no free port",
                                      m.media.decode(), m.port))
                    continue
                leg = MediaLeg(m.port, rtcp_port, pair[0], pair[1])
                call.legs[i] = leg
                remote = call.remote.get(i)
                for b, r in ((leg.rtp, remote[0] if remote else None), (leg.rtcp, remote[1] if remote else None)):
                    # a binding nobody holds yet is new to the kernel: it opens already narrowed
                    fresh = b.lan not in self._owners
                    if fresh:
                        b.remote = r
                    elif r is not None:
                        self._narrow(b, r, ctx)
                    self._hold(b, call.owner(), deadline, ctx, fresh)
            port_map[m.port] = leg.rtp.wan[1]
            port_map[leg.lan_rtcp] = leg.rtcp.wan[1]
            ctx.notes.append(("m=%s %d -> %d", m.media.decode(), m.port, leg.rtp.wan[1]))
        if not ours:
            return None
        new = sdp.rewrite(body, lan_ip.encode(), self.wan_ip.encode(), port_map)
        if new != body:
            ctx.notes.append(("SDP %s -> %s", lan_ip, self.wan_ip))
            return new
        return None

    def _remote_sdp(self, call, sdp, ctx):
        """Note where the far end sends media from, and narrow the pinholes to it."""
        remote = remote_media(sdp, norm_ip)
        for i in remote:
            call.remote[i] = remote[i]
            leg = call.legs.get(i)
            if leg is None:
                continue
            self._narrow(leg.rtp, remote[i][0], ctx)
            self._narrow(leg.rtcp, remote[i][1], ctx)

    def _narrow(self, b, remote, ctx):
        """Let only the far end's media through b (move the pinhole when it changed)."""
        if b.remote == remote:
            return
        old = b.copy()
        b.remote = remote
        ctx.actions.append(Action(MOVE_PINHOLE, b.copy(), old=old))
        ctx.notes.append(("pinhole %d <- %s:%d", b.wan[1], remote[0], remote[1]))

    def _drop_leg(self, call, i, ctx):
        leg = call.legs.pop(i)
        for b in (leg.rtp, leg.rtcp):
            self._release_owner(b.lan, call.owner(), ctx.now, ctx.actions)

    def _end_call(self, call, now, actions):
        key = call.key()
        self.calls.pop(key, None)
        self.timers.cancel(("c", key))
        legs = call.legs
        if legs:
            owner = call.owner()
            for i in list(legs):
                leg = legs.pop(i)
                self._release_owner(leg.rtp.lan, owner, now, actions)
                self._release_owner(leg.rtcp.lan, owner, now, actions)

    def _call_deadline(self, call, deadline, ctx):
        """Move the call's expiry, and its media bindings' with it."""
        call.deadline = deadline
        self.timers.schedule(("c", call.key()), deadline)
        for i in call.legs:
            leg = call.legs[i]
            for b in (leg.rtp, leg.rtcp):
                if self.table.lookup_lan(b.lan) is b:
                    self._hold(b, call.owner(), deadline, ctx, False)

    # ------------------------------------------------------------- bindings

    def _hold(self, b, owner, deadline, ctx, created):
        """Let owner keep b open until deadline; tell the kernel when that moves it."""
        lan = b.lan
        owners = self._owners.get(lan)
        if owners is None:
            self._owners[lan] = {owner: deadline}
            until = deadline
        else:
            owners[owner] = deadline
            until = max(owners.values()) if len(owners) > 1 else deadline
        if created:
            b.expires = until
            ctx.actions.append(Action(OPEN_PINHOLE if b.kind != "sip" else OPEN_BINDING, b.copy()))
        else:
            expires = b.expires
            if until < expires:
                pass
            elif until > expires:
                # refresh the kernel only when the expiry moves by a tenth of its span (>= 1 s)
                slack = (until - ctx.now) / 10
                if until <= expires + (slack if slack > 1 else 1):
                    return
            else:
                return
            b.expires = until
            ctx.actions.append(Action(REFRESH_PINHOLE if b.kind != "sip" else REFRESH_BINDING, b.copy()))
        # A media binding that only calls hold needs no timer of its own: each
        # call's timer lets go of it, and the last one closes it (_end_call).
        if b.kind == "sip" or "restored" in self._owners[lan]:
            self.timers.schedule(("b", lan), until)

    def _release_owner(self, lan, owner, now, actions):
        owners = self._owners.get(lan)
        b = self.table._by_lan.get(lan)
        if owners is None or b is None:
            return
        owners.pop(owner, None)
        if b.kind != "sip":
            if not owners:
                self._close(b, actions)
            return
        # A signalling binding outlives its registrations by the idle time
        # since its last packet, as MASQUERADE would have kept it.
        if not owners or max(owners.values()) <= now:
            self._close(b, actions)
            return
        until = max(owners.values())
        if until != b.expires:
            b.expires = until
            actions.append(Action(REFRESH_BINDING, b.copy()))
            self.timers.schedule(("b", b.lan), until)

    def _close(self, b, actions):
        self.table.remove(b)
        self._owners.pop(b.lan, None)
        self.timers.cancel(("b", b.lan))
        actions.append(Action(CLOSE_PINHOLE if b.kind != "sip" else CLOSE_BINDING, b))

    def _in_lan(self, ip):
        try:
            return self._lan_cache[ip]
        except KeyError:
            pass
        inside = False
        for n in self.lan_nets:
            if ip in n:
                inside = True
                break
        if len(self._lan_cache) >= 256:     # a few LAN devices repeat; junk must not grow it
            self._lan_cache.clear()
        self._lan_cache[ip] = inside
        return inside

    # ----------------------------------------------------------- keep-alive

    def _keepalive(self, ka, direction, src, dst, now):
        ctx = _Ctx(now)
        if direction == OUT:
            lan_ip = norm_ip(src[0])
            if lan_ip is not None and self._in_lan(lan_ip) and self.wan_ip is not None:
                self._signalling((lan_ip, src[1]), ctx)
            return Result(actions=ctx.actions, status=KEEPALIVE, reason="keep-alive %s from LAN" % ka)
        b = self.table.lookup_wan(dst[1])
        res = Result(status=KEEPALIVE, reason="keep-alive %s" % ka)
        if b is None or b.kind != "sip":
            return res
        res.dnat = b.lan
        mode = self.config.answer_keepalives
        if mode == "off" or ka == PONG or ka == STUN:
            return res
        self._hold(b, "idle", now + self.config.sip_idle, ctx, False)
        res.actions = ctx.actions
        res.verdict = DROP
        if ka == PING:
            res.actions.append(Action(SEND, src=dst, dst=src, payload=PONG_BYTES))
            self.counters["keepalives_answered"] += 1
            res.reason = "CRLFCRLF ping answered for %s:%d" % b.lan
        else:
            res.reason = "NUL probe absorbed for %s:%d" % b.lan
        return res

    def _answer_options(self, msg, src, dst, binding, ctx):
        """200 OK to an out-of-dialog OPTIONS for a registered device (mode "options")."""
        if _to_tag(msg) or not self._registered(binding.lan):
            return None
        lines = [b"SIP/2.0 200 OK\r\n"]
        for h in msg.headers:
            if h.key in (b"via", b"from", b"call-id", b"cseq"):
                lines.append(h.raw)
            elif h.key == b"to":
                raw = h.raw
                tag = b";tag=sipalg" + str(_hash(msg.call_id() or b"")).encode()
                lines.append(raw[:h.vend] + tag + raw[h.vend:])
        lines.append(b"Content-Length: 0\r\n\r\n")
        res = Result(verdict=DROP, status=KEEPALIVE, actions=ctx.actions,
                     reason="OPTIONS answered for registered %s:%d" % binding.lan)
        res.actions.append(Action(SEND, src=dst, dst=src, payload=b"".join(lines)))
        self.counters["keepalives_answered"] += 1
        return res

    def _registered(self, lan):
        for reg in self.regs.values():
            if reg.lan == lan:
                return True
        return False


def _hash(b):
    h = 5381
    for c in b:
        h = ((h * 33) ^ c) & 0xFFFFFFFF
    return h


def _to_tag(msg):
    f = msg.field(b"to")
    if f is None:
        return None
    raw = f[0]
    span = param_span(raw, f[1], f[2], b"tag")
    return None if span is None else raw[span[0]:span[1]]


def _sdp_span(msg):
    if not msg.body:
        return None
    ct = msg.value(b"content-type")
    if ct is None:
        return None
    if ct == b"application/sdp":
        return 0, len(msg.body)
    return find_sdp_part(ct, msg.body)


def _length_problem(msg):
    """Why Content-Length disagrees with the datagram, or '' if it doesn't."""
    keys = msg._keys
    n = keys.count(b"content-length")
    if n == 0:
        return ""
    if n == 1:
        v = msg.value(b"content-length")
        if not v.isdigit():
            return "Content-Length %r is not a number" % v
        n = int(v)
        if n != len(msg.body):
            return "Content-Length %d but %d body bytes" % (n, len(msg.body))
        return ""
    seen = None
    for i in range(len(keys)):
        if keys[i] == b"content-length":
            v = msg.header_at(i).value.strip()
            if not v.isdigit():
                return "Content-Length %r is not a number" % v
            n = int(v)
            if seen is not None and n != seen:
                return "two different Content-Length values"
            seen = n
    if seen is not None and seen != len(msg.body):
        return "Content-Length %d but %d body bytes" % (seen, len(msg.body))
    return ""


def _set_content_length(msg):
    n = str(len(msg.body)).encode()
    keys = msg._keys
    if keys.count(b"content-length") == 1:
        h = msg.header_at(keys.index(b"content-length"))
        v = h.value
        if v[:1] == b" " and v[1:].isdigit():     # the usual "Content-Length: 123"
            h.set_value(b" " + n)
            return
    for h in msg.get_all(b"content-length"):
        v = h.value
        i = 0
        while i < len(v) and (v[i] == 32 or v[i] == 9):
            i += 1
        j = i
        k = len(v)
        while j < k and 48 <= v[j] <= 57:
            j += 1
        h.set_value(v[:i] + n + v[j:])
