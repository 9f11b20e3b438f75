"""What the engine tells the shell: typed events and the mapping each datagram used."""
from alg.core.engine import Engine, OUT, IN
from alg.core.config import Config
from alg.core import events as E
from alg.core.call_states import TRANSITIONS, EARLY, CONFIRMED, ENDED, next_state, REFRESHED, CANCELLED
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, invite, register, response, crlf, sdp

VIA_INV = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKinv1;rport=5060;received=203.0.113.1"
VIA_REG = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1"


def engine(**kw):
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999), **kw))


def names(out):
    return [ev.name for ev in out.events]


def _registered(e, expires=600, now=1.0):
    e.handle(OUT, PHONE, SERVER, register(), now)
    return e.handle(IN, SERVER, WAN, response(200, "OK", VIA_REG, "reg1@10.0.0.2", 1, "REGISTER",
                                              contact="<sip:alice@203.0.113.1:5060>;expires=%d" % expires),
                    now + 0.1)


def test_register_and_its_expiry_are_events():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, register(), 1.0)
    assert names(r) == ["binding-opened"] and r.snat == WAN
    assert r.events[0].binding.lan == PHONE and r.events[0].binding.wan == WAN
    r = _registered(e)
    reg = [ev for ev in r.events if isinstance(ev, E.Registered)]
    assert len(reg) == 1 and reg[0].lan == PHONE and reg[0].wan == WAN and reg[0].expires == 600
    assert reg[0].aor == b"<sip:alice@203.0.113.10>" and r.dnat == PHONE
    out = e.expire(1.1 + 600 + 30)
    assert names(out) == ["deregistered", "binding-closed"]
    assert out.events[0].why == "expired" and out.events[0].lan == PHONE


def test_register_expires_zero_is_deregistered_by_the_registrar():
    e = engine()
    _registered(e)
    e.handle(OUT, PHONE, SERVER, register(expires=0, cseq=2, branch="z9hG4bKreg2"), 5.0)
    via = VIA_REG.replace("reg1", "reg2")
    r = e.handle(IN, SERVER, WAN, response(200, "OK", via, "reg1@10.0.0.2", 2, "REGISTER"), 5.1)
    dereg = [ev for ev in r.events if isinstance(ev, E.Deregistered)]
    assert len(dereg) == 1 and dereg[0].why == "registrar" and not e.registrations


def test_call_events_follow_the_call():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    assert names(r) == ["binding-opened", "call-started", "media-opened", "media-opened"]
    started = r.events[1]
    assert started.call_id == b"call1@10.0.0.2" and started.phone == "10.0.0.2" and started.outgoing
    assert [ev.binding.remote for ev in r.events[2:]] == [None, None]
    answer = response(200, "OK", VIA_INV, "call1@10.0.0.2", 1, "INVITE", body=sdp(ip="203.0.113.10", port=20000))
    r = e.handle(IN, SERVER, WAN, answer, 1.0)
    assert names(r) == ["call-answered", "media-narrowed", "media-narrowed"]
    assert r.events[1].binding.remote == ("203.0.113.10", 20000)
    update = response(200, "OK", VIA_INV, "call1@10.0.0.2", 1, "INVITE", body=sdp(ip="203.0.113.11", port=22000))
    r = e.handle(IN, SERVER, WAN, update, 2.0)
    assert names(r) == ["media-moved", "media-moved"]
    assert r.events[0].old_remote == ("203.0.113.10", 20000) and r.events[0].binding.remote == ("203.0.113.11", 22000)
    bye = crlf("BYE sip:bob@203.0.113.10 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbye\n"
               "From: <sip:alice@10.0.0.2>;tag=a1\nTo: <sip:bob@203.0.113.10>;tag=b1\n"
               "Call-ID: call1@10.0.0.2\nCSeq: 2 BYE\nContent-Length: 0\n\n")
    r = e.handle(OUT, PHONE, SERVER, bye, 3.0)
    assert sorted(names(r)) == ["call-ended", "media-closed", "media-closed"]
    ended = [ev for ev in r.events if isinstance(ev, E.CallEnded)][0]
    assert ended.why == "BYE" and ended.phone == "10.0.0.2"


def test_unanswered_call_ends_by_its_timer():
    e = engine(early_media_timeout=30)
    e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    out = e.expire(31.0)
    ended = [ev for ev in out.events if isinstance(ev, E.CallEnded)]
    assert len(ended) == 1 and ended[0].why == "expired"


def test_media_outside_the_range_is_refused_with_a_reason():
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, invite(rtp=7000), 0.0)
    refused = [ev for ev in r.events if isinstance(ev, E.Refused)]
    assert len(refused) == 1 and refused[0].what == "media" and refused[0].lan == ("10.0.0.2", 7000)
    assert refused[0].reason == "media port outside rtp_ports or a SIP port"


def test_keepalive_answer_and_malformed_are_events():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 1.0)
    r = e.handle(IN, SERVER, WAN, b"\r\n\r\n", 2.0)
    assert names(r) == ["keepalive-answered"] and r.events[0].lan == PHONE and r.events[0].kind == "ping"
    r = e.handle(OUT, PHONE, SERVER, b"GET / HTTP/1.1\r\n\r\n", 3.0)
    assert names(r) == ["malformed"] and r.status == "malformed"


def test_inbound_result_names_its_dnat_and_outbound_its_snat():
    e = engine()
    e.handle(OUT, ("10.0.0.3", 5060), SERVER, register(ip="10.0.0.3", call_id="other"), 0.5)
    r = e.handle(OUT, PHONE, SERVER, register(), 1.0)
    assert r.snat == (WAN_IP, 5061)          # the second phone on 5060 got the next port
    r = e.handle(IN, SERVER, (WAN_IP, 5061), b"\r\n\r\n", 2.0)
    assert r.dnat == PHONE


def test_a_new_signalling_binding_says_where_its_first_datagram_goes():
    """The shell clears a stale flow off that reply tuple before the verdict (hygiene.clear_the_way)."""
    from alg.core import actions as A
    e = engine()
    r = e.handle(OUT, PHONE, SERVER, register(), 1.0)
    opens = [a for a in r.actions if a.kind == A.OPEN]
    assert len(opens) == 1 and opens[0].dst == SERVER and opens[0].binding.wan == WAN
    r = e.handle(OUT, PHONE, SERVER, register(), 2.0)               # held again: nothing new to clear
    assert [a for a in r.actions if a.kind == A.OPEN] == []


def test_event_text_escapes_wire_bytes():
    ev = E.CallStarted(b"<img src=x>\r\n\x1b[2J", "10.0.0.2", True)
    text = ev.describe()
    assert "\r" not in text and "\n" not in text and "\x1b" not in text and "\\x0d\\x0a" in text


def test_call_state_table():
    for state in TRANSITIONS:
        for trigger in TRANSITIONS[state]:
            assert TRANSITIONS[state][trigger] in (EARLY, CONFIRMED, ENDED)
    assert next_state(EARLY, REFRESHED) is None            # an early UPDATE changes only SDP
    assert next_state(CONFIRMED, CANCELLED) is None        # CANCEL after the 2xx is too late
    assert next_state(ENDED, REFRESHED) is None


def test_a_fault_inside_the_engine_keeps_what_it_recorded_and_the_kernel_in_step():
    e = engine()
    boom = {"n": 0}
    real = e.dialogs._lan_sdp

    def failing(call, sdp, body, ctx):
        real(call, sdp, body, ctx)         # the media bindings are made ...
        boom["n"] += 1
        raise RuntimeError("injected \xff fault")   # ... then handling fails
    e.dialogs._lan_sdp = failing
    r = e.handle(OUT, PHONE, SERVER, invite(), 0.0)
    assert r.status == "malformed" and r.payload is None and boom["n"] == 1
    assert "internal error RuntimeError: injected \\xff fault" in r.reason
    opened = sorted(a.binding.kind for a in r.actions if a.kind == "open")
    assert opened == sorted(b.kind for b in e.bindings())      # the kernel hears of every binding made
    e.dialogs._lan_sdp = real
    r = e.handle(OUT, PHONE, SERVER, invite(call_id="call2@10.0.0.2", rtp=6010), 1.0)
    assert r.status == "rewritten" and sorted(a.binding.kind for a in r.actions if a.kind == "open") == ["rtcp", "rtp"]
