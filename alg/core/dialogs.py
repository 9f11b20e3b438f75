"""INVITE dialogs: which media bindings a call holds, and toward whom.

One Call per (Call-ID, LAN device): a call between two phones behind the
same router through a proxy crosses the router twice with one Call-ID.
Media legs are indexed by the position of the m= line, as offer/answer
pairs them (RFC 3264 section 6).  The LAN device's SDP (offer or answer,
in any INVITE, ACK, PRACK or UPDATE, request or response) binds its media
ports and is rewritten to the WAN; the far end's SDP says whom each
pinhole admits.  State changes follow call_states.py's table.
"""

from .addr import norm_ip
from .headers import param_span
from .multipart import find_sdp_part
from .sdp import parse_sdp
from .events import CallStarted, CallAnswered, CallEnded, Refused
from .policy import NO_FREE_PORT, HOST_CALLS, CALLS, SDP_MEDIA, BINDINGS
from .result import refuse
from .bindings import RESTORED
from .call_states import (EARLY, CONFIRMED, ENDED, ANSWERED, REJECTED, CANCELLED, HUNG_UP,
                          REFRESHED, EXPIRED, next_state)

EXPIRY = "call"      # timer kind


class MediaLeg:
    """One m= line of the LAN device: its RTP/RTCP bindings and the far end."""

    __slots__ = ("lan_rtp", "lan_rtcp", "rtp", "rtcp")

    def __init__(self, lan_rtp, lan_rtcp, rtp, rtcp):
        self.lan_rtp = lan_rtp
        self.lan_rtcp = lan_rtcp
        self.rtp = rtp              # Binding
        self.rtcp = rtcp            # Binding


class Call:
    __slots__ = ("call_id", "phone", "outgoing", "state", "invite_cseq", "legs",
                 "remote", "tags", "deadline", "_key", "_owner")

    def __init__(self, call_id, phone, outgoing, invite_cseq):
        self.call_id = call_id
        self.phone = phone          # LAN ip (text)
        self.outgoing = outgoing    # True when the LAN device sent the INVITE
        self.state = EARLY
        self.invite_cseq = invite_cseq
        self.legs = {}              # m= index -> MediaLeg
        self.remote = {}            # m= index -> ((ip, rtp port), (ip, rtcp port)) from the far end's SDP
        self.tags = []              # To-tags of confirmed dialogs (forked 2xx make several)
        self.deadline = 0.0
        self._key = (call_id, phone)
        self._owner = ("call", call_id, phone)

    def key(self):
        return self._key

    def owner(self):
        return self._owner


def remote_media(sdp, norm_ip):
    """{index: ((ip, port), (ip, rtcp_port))} from the far end's SDP.

    A disabled stream (port 0) and hold (c=0.0.0.0 or ::) say nothing about
    where media comes from, so they leave the earlier address in place.
    """
    out = {}
    for i in range(len(sdp.media)):
        m = sdp.media[i]
        if m.port == 0 or m.conn is None:
            continue
        ip = norm_ip(m.conn)
        if ip is None or ip == "0.0.0.0" or ip == "::":
            continue
        rtcp_ip = ip
        if m.rtcp_addr is not None:
            rtcp_ip = norm_ip(m.rtcp_addr) or ip
        rtcp_port = m.rtcp_port if m.rtcp_port is not None else m.port + 1
        out[i] = ((ip, m.port), (rtcp_ip, rtcp_port))
    return out


def call_tag(call_id, phone):
    """A short, stable name for a call (Call-ID and phone): the kernel keeps it with the call's
    pinholes, so a restarted daemon can tell which call they belong to (see Dialogs.adopt)."""
    h = 5381
    for c in call_id:
        h = ((h * 33) ^ c) & 0xFFFFFFFF
    for c in phone.encode():
        h = ((h * 33) ^ c) & 0xFFFFFFFF
    return "call-%08x" % h


def to_tag(msg):
    f = msg.field(b"to")
    if f is None:
        return None
    raw = f[0]
    span = param_span(raw, f[1], f[2], b"tag")
    return None if span is None else raw[span[0]:span[1]]


def sdp_span(msg):
    """Where the SDP sits in the body (the whole body, or one multipart part), or None."""
    if not msg.body:
        return None
    ct = msg.value(b"content-type")
    if ct is None:
        return None
    if ct == b"application/sdp":
        return 0, len(msg.body)
    return find_sdp_part(ct, msg.body)


class Dialogs:
    """The calls crossing the router and the media bindings each holds."""

    def __init__(self, policy, table, timers):
        self.policy = policy
        self.table = table
        self.timers = timers
        self._calls = {}        # (call_id, lan ip) -> Call
        self._per_host = {}     # lan ip -> number of calls
        self._adopted = {}      # call tag -> [media bindings found in the kernel after a restart]

    def host_calls(self, ip):
        return self._per_host.get(ip, 0)

    def __len__(self):
        return len(self._calls)

    def all(self):
        return list(self._calls.values())

    def get(self, call_id, phone):
        return self._calls.get((call_id, phone))

    def _call(self, msg, ctx):
        call_id = msg.call_id()
        if call_id is None:
            return None
        call = self._calls.get((call_id, ctx.phone))
        if call is None and self._adopted:
            call = self._resume(call_id, ctx)
        return call

    def adopt(self, b):
        """A media binding the kernel held across a daemon restart: its call comes back to life
        when the next message of that call (a BYE, a re-INVITE...) names it."""
        if b.tag:
            self._adopted.setdefault(b.tag, []).append(b)

    def _resume(self, call_id, ctx):
        bindings = self._adopted.pop(call_tag(call_id, ctx.phone), None)
        if not bindings:
            return None
        call = Call(call_id, ctx.phone, ctx.from_lan, 0)
        call.state = CONFIRMED
        self._calls[call.key()] = call
        self._per_host[ctx.phone] = self._per_host.get(ctx.phone, 0) + 1
        by_lan = {}
        for b in bindings:
            by_lan[b.lan[1]] = b
        i = 0
        for port in sorted(by_lan):
            b = by_lan[port]
            if b.kind != "rtp":
                continue
            rtcp = by_lan.get(port + 1) or b
            call.legs[i] = MediaLeg(port, rtcp.lan[1], b, rtcp)
            i += 1
        self._deadline(call, ctx)
        owner = call.owner()
        for b in bindings:
            if self.table.lookup_lan(b.lan) is b:
                self.table.hold(b, owner, call.deadline, ctx.now, ctx)
                self.table.release(b.lan, RESTORED, ctx.now, ctx)
        return call

    # -- handlers (engine.py's method table)

    def invite(self, msg, ctx):
        call_id = msg.call_id()
        if call_id is None:
            return None
        call = self._call(msg, ctx)
        if call is not None:
            self._trigger(call, REFRESHED, ctx)
            return self._sdp(call, msg, ctx)
        if to_tag(msg):
            return None           # a re-INVITE for a call we never saw: leave it be
        if self._per_host.get(ctx.phone, 0) >= self.policy.limit("limit_host_calls"):
            return refuse(ctx, "call", ctx.binding.lan, HOST_CALLS)
        if len(self._calls) >= self.policy.limit("limit_calls"):
            return refuse(ctx, "call", ctx.binding.lan, CALLS)
        call = Call(call_id, ctx.phone, ctx.from_lan, msg.cseq()[0])
        self._calls[call.key()] = call
        self._per_host[ctx.phone] = self._per_host.get(ctx.phone, 0) + 1
        self._deadline(call, ctx)
        at = len(ctx.events)
        res = self._sdp(call, msg, ctx)
        if res is not None:                  # its SDP was refused: the call was never here
            self._release_legs(call, ctx.now, ctx)
            self._forget(call)
            return res
        ctx.events.insert(at, CallStarted(call_id, ctx.phone, ctx.from_lan))
        return None

    def update(self, msg, ctx):
        call = self._call(msg, ctx)
        if call is None:
            return None
        self._trigger(call, REFRESHED, ctx)
        return self._sdp(call, msg, ctx)

    def offer_answer(self, msg, ctx):
        """ACK and PRACK requests, UPDATE and PRACK responses: only their SDP matters."""
        call = self._call(msg, ctx)
        return None if call is None else self._sdp(call, msg, ctx)

    def bye(self, msg, ctx):
        call = self._call(msg, ctx)
        if call is not None:
            self._trigger(call, HUNG_UP, ctx)

    def cancel(self, msg, ctx):
        call = self._call(msg, ctx)
        if call is not None:
            self._trigger(call, CANCELLED, ctx)

    def invite_response(self, msg, ctx):
        call = self._call(msg, ctx)
        status = msg.status
        if call is None:
            if not ctx.from_lan or not 100 < status < 300 or sdp_span(msg) is None:
                return None
            # the phone answers an INVITE this daemon never saw (it restarted while the call was
            # set up): its SDP still goes out rewritten, its media opened as for any call
            call_id = msg.call_id()
            if call_id is None:
                return None
            if self._per_host.get(ctx.phone, 0) >= self.policy.limit("limit_host_calls"):
                return refuse(ctx, "call", ctx.binding.lan, HOST_CALLS)
            if len(self._calls) >= self.policy.limit("limit_calls"):
                return refuse(ctx, "call", ctx.binding.lan, CALLS)
            call = Call(call_id, ctx.phone, False, msg.cseq()[0])
            self._calls[call.key()] = call
            self._per_host[ctx.phone] = self._per_host.get(ctx.phone, 0) + 1
            self._deadline(call, ctx)
            ctx.events.append(CallStarted(call_id, ctx.phone, False))
            res = self._sdp(call, msg, ctx)
            if res is not None:
                return res
            # the offer named the far end, and it is gone: admit the signalling peer it came from
            for leg in call.legs.values():
                for b in (leg.rtp, leg.rtcp):
                    self.table.admit(b, (ctx.remote[0], 0), ctx)
            if status >= 200:
                self._trigger(call, ANSWERED, ctx)
            return None
        if status >= 300:
            if msg.cseq()[0] == call.invite_cseq:
                self._trigger(call, REJECTED, ctx)
            return None
        if status >= 200:
            tag = to_tag(msg)
            if tag not in call.tags:
                call.tags.append(tag)
            self._trigger(call, ANSWERED, ctx)
        return self._sdp(call, msg, ctx)

    # -- timers

    def expire(self, key, now, out):
        call = self._calls.get(key[1])
        if call is not None:
            self.end(call, EXPIRED, now, out)

    # -- state

    def _trigger(self, call, trigger, ctx):
        state = next_state(call.state, trigger)
        if state is None:
            return
        if state == ENDED:
            self.end(call, trigger, ctx.now, ctx)
            ctx.notes.append(("%s: call closed", trigger))
            return
        if state == CONFIRMED and call.state != CONFIRMED:
            ctx.events.append(CallAnswered(call.call_id, call.phone))
        call.state = state
        self._deadline(call, ctx)

    def _deadline(self, call, ctx):
        """The call's expiry for its state, and its media bindings' with it."""
        deadline = self.policy.call_until(call.state == CONFIRMED, ctx.now)
        call.deadline = deadline
        self.timers.schedule((EXPIRY, call.key()), deadline)
        table = self.table
        owner = call.owner()
        for i in call.legs:
            leg = call.legs[i]
            for b in (leg.rtp, leg.rtcp):
                if table.lookup_lan(b.lan) is b:
                    table.hold(b, owner, deadline, ctx.now, ctx)

    def _forget(self, call):
        key = call.key()
        if self._calls.pop(key, None) is not None:
            n = self._per_host.get(call.phone, 1) - 1
            if n > 0:
                self._per_host[call.phone] = n
            else:
                self._per_host.pop(call.phone, None)
        self.timers.cancel((EXPIRY, key))

    def end(self, call, why, now, out):
        """End a call now (what a BYE does; its trigger text is why)."""
        self._forget(call)
        self._release_legs(call, now, out)
        out.events.append(CallEnded(call.call_id, call.phone, why))

    def _release_legs(self, call, now, out):
        legs = call.legs
        if legs:
            owner = call.owner()
            for i in list(legs):
                leg = legs.pop(i)
                self.table.release(leg.rtp.lan, owner, now, out)
                self.table.release(leg.rtcp.lan, owner, now, out)

    # -- media

    def _sdp(self, call, msg, ctx):
        """Bind (LAN) or admit (WAN) the message's media; a Result when a cap refuses it."""
        span = sdp_span(msg)
        if span is None:
            return None
        s, e = span
        try:
            sdp = parse_sdp(msg.body[s:e])
        except ValueError:
            return None
        if not ctx.from_lan:
            self._remote_sdp(call, sdp, ctx)
            return None
        new = self._lan_sdp(call, sdp, msg.body[s:e], ctx)
        if type(new) is not bytes:
            return new
        if new != msg.body[s:e]:
            msg.body = msg.body[:s] + new + msg.body[e:]
            msg.set_content_length()
        return None

    def _lan_sdp(self, call, sdp, body, ctx):
        """Bind the LAN device's media ports and rewrite its SDP to the WAN: the new body,
        or a Result when a cap refuses the message."""
        lan_ip = call.phone
        port_map = {}
        deadline = call.deadline
        table = self.table
        owner = call.owner()
        policy = self.policy
        own = 0
        for m in sdp.media:
            if m.port and m.conn is not None and norm_ip(m.conn) == lan_ip:
                own += 1
        if own > policy.limit("limit_sdp_media"):
            return refuse(ctx, "media", (lan_ip, sdp.media[0].port), SDP_MEDIA)
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
                why = policy.media_refusal(m.port, rtcp_port) or policy.port_refusal(m.port) \
                    or policy.port_refusal(rtcp_port)
                pair = None if why else table.bind_media(lan_ip, m.port, rtcp_port, deadline)
                if pair is None:
                    if why is None and len(table) + 2 > policy.limit("limit_bindings"):
                        return refuse(ctx, "media", (lan_ip, m.port), BINDINGS)
                    ctx.events.append(Refused("media", (lan_ip, m.port), why or NO_FREE_PORT))
                    ctx.notes.append(("m=%s %d not bound: %s", m.media, m.port, why or NO_FREE_PORT))
                    continue
                leg = MediaLeg(m.port, rtcp_port, pair[0], pair[1])
                call.legs[i] = leg
                pair[0].tag = pair[1].tag = call_tag(call.call_id, lan_ip)
                remote = call.remote.get(i)
                unknown = policy.unknown_far_end()
                for b, r in ((leg.rtp, remote[0] if remote else unknown),
                             (leg.rtcp, remote[1] if remote else unknown)):
                    # a binding nobody holds yet is new to the kernel: it opens already narrowed
                    fresh = not table.held(b)
                    if fresh:
                        b.remote = r
                    elif r is not None and table.admit(b, r, ctx):
                        ctx.notes.append(("pinhole %d <- %s:%d", b.wan[1], r[0], r[1]))
                    table.hold(b, owner, deadline, ctx.now, ctx, fresh)
            port_map[m.port] = leg.rtp.wan[1]
            port_map[leg.lan_rtcp] = leg.rtcp.wan[1]
            ctx.notes.append(("m=%s %d -> %d", m.media, m.port, leg.rtp.wan[1]))
        if not ours:
            return body
        new = sdp.rewrite(body, lan_ip.encode(), ctx.wan_ip.encode(), port_map)
        if new != body:
            ctx.notes.append(("SDP %s -> %s", lan_ip, ctx.wan_ip))
        return new

    def _remote_sdp(self, call, sdp, ctx):
        """Note where the far end sends media from, and narrow the pinholes to it (or to
        the signalling peer where the SDP's address can't be the sender: policy.py)."""
        remote = remote_media(sdp, norm_ip)
        table = self.table
        peer = ctx.remote[0]
        source = self.policy.media_source
        for i in remote:
            rtp, rtcp = remote[i]
            call.remote[i] = (source(rtp, peer), source(rtcp, peer))
            leg = call.legs.get(i)
            if leg is None:
                continue
            for b, r in ((leg.rtp, call.remote[i][0]), (leg.rtcp, call.remote[i][1])):
                if table.admit(b, r, ctx):
                    ctx.notes.append(("pinhole %d <- %s:%d", b.wan[1], r[0], r[1]))

    def _drop_leg(self, call, i, ctx):
        leg = call.legs.pop(i)
        for b in (leg.rtp, leg.rtcp):
            self.table.release(b.lan, call.owner(), ctx.now, ctx)
