"""Registrations keep the signalling binding open for their whole lifetime."""
from alg.core.engine import Engine, OUT, IN
from alg.core.config import Config
from sipmsgs import PHONE, SERVER, WAN, WAN_IP, register, register_ok, response, kinds


def engine():
    return Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], rtp_ports=(6000, 6999),
                         sip_idle=180, registration_margin=30))


def _ok(expires_param=None, expires_header=None, cseq=1, branch="z9hG4bKreg1", contact=True):
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=%s;rport=5060;received=203.0.113.1" % branch
    c = None
    if contact:
        c = "<sip:alice@203.0.113.1:5060>"
        if expires_param is not None:
            c += ";expires=%d" % expires_param
    extra = "Expires: %d\n" % expires_header if expires_header is not None else ""
    return response(200, "OK", via, "reg1@10.0.0.2", cseq, "REGISTER", contact=c, extra=extra)


def test_registration_holds_binding_past_idle():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(expires=3600), 0.0)
    r = e.handle(IN, SERVER, WAN, _ok(expires_param=1800), 0.1)
    assert b"Contact: <sip:alice@10.0.0.2:5060>;expires=1800\r\n" in r.payload
    b = e.lookup_lan(PHONE)
    assert b.expires == 0.1 + 1800 + 30
    assert kinds(r.actions) == ["refresh sip"]
    assert e.expire(1000.0).actions == [] and e.lookup_lan(PHONE) is not None
    acts = e.expire(1831.0).actions
    assert kinds(acts) == ["close sip"]
    assert e.lookup_lan(PHONE) is None and e.lookup_wan(5060) is None



def test_registered_binding_runs_on_its_registrations_timer():
    """A registration holding the latest deadline lets go of its binding by its own timer: the
    binding keeps none beside it (10k registered phones: 10k timers, not 20k), and still closes at
    the registration's end, or lives on by the idle time of a packet sent near that end."""
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(expires=3600), 0.0)
    e.handle(IN, SERVER, WAN, _ok(expires_param=600), 0.1)
    assert len(e.timers) == 1 and e.next_deadline() == 0.1 + 630
    r = e.handle(OUT, PHONE, SERVER, b"\r\n\r\n", 600.0)        # a keep-alive: idle until 780, past it
    assert kinds(r.actions) == ["refresh sip"] and len(e.timers) == 2   # the binding's own timer again
    assert e.expire(631.0).actions == [] and not e.registrations
    assert e.lookup_lan(PHONE).expires == 780.0 and e.next_deadline() == 780.0
    assert kinds(e.expire(781.0).actions) == ["close sip"] and e.lookup_lan(PHONE) is None

def test_expires_header_used_when_no_param():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(expires=600), 0.0)
    e.handle(IN, SERVER, WAN, _ok(expires_header=300), 0.1)
    assert e.lookup_lan(PHONE).expires == 0.1 + 300 + 30


def test_unregister_falls_back_to_idle():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(expires=3600), 0.0)
    e.handle(IN, SERVER, WAN, _ok(expires_param=3600), 0.1)
    e.handle(OUT, PHONE, SERVER, register(expires=0, cseq=2, branch="z9hG4bKreg2"), 100.0)
    r = e.handle(IN, SERVER, WAN, _ok(cseq=2, branch="z9hG4bKreg2", contact=False, expires_header=0), 100.1)
    assert e.lookup_lan(PHONE).expires == 100.1 + 180
    assert "refresh sip" in kinds(r.actions)
    assert not e.registrations
    assert kinds(e.expire(281.0).actions) == ["close sip"]      # its own timer again, once no registration holds it


def test_failed_register_changes_nothing():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)
    before = e.lookup_lan(PHONE).expires
    via = "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKreg1;rport=5060;received=203.0.113.1"
    e.handle(IN, SERVER, WAN, response(401, "Unauthorized", via, "reg1@10.0.0.2", 1, "REGISTER"), 0.1)
    assert e.lookup_lan(PHONE).expires == before and not e.registrations


def test_refresh_extends():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)
    e.handle(IN, SERVER, WAN, _ok(expires_param=600), 0.1)
    e.handle(OUT, PHONE, SERVER, register(cseq=2, branch="z9hG4bKreg2"), 500.0)
    e.handle(IN, SERVER, WAN, _ok(expires_param=600, cseq=2, branch="z9hG4bKreg2"), 500.1)
    assert e.lookup_lan(PHONE).expires == 500.1 + 630
    assert e.expire(700.0).actions == []


def test_max_expires_caps():
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], max_expires=7200, registration_margin=30))
    e.handle(OUT, PHONE, SERVER, register(expires=86400), 0.0)
    e.handle(IN, SERVER, WAN, _ok(expires_param=86400), 0.0)
    assert e.lookup_lan(PHONE).expires == 7230


def test_idle_binding_expires_without_registration():
    e = engine()
    e.handle(OUT, PHONE, SERVER, register(), 0.0)
    assert e.next_deadline() is not None
    acts = e.expire(181.0).actions
    assert "close sip" in kinds(acts)


def _registered(e, lan, call_id, n=1):
    """lan registers under call_id; its WAN ip:port."""
    ip, port = lan
    r = e.handle(OUT, lan, SERVER, register(ip, port, call_id=call_id, branch="z9hG4bKr%d" % n), float(n))
    wan = r.snat
    e.handle(IN, SERVER, wan, register_ok(wan, call_id, 1, "z9hG4bKr%d" % n,
                                           "<sip:alice@%s:%d>;expires=3600" % wan), float(n))
    return wan


def test_contact_star_removes_that_call_ids_registrations_on_the_phones_host_only():
    """RFC 3261 10.2.2: Contact: * with Expires: 0 removes every contact of that Call-ID.  Only
    the sending host's are ours to drop: the same Call-ID from another host, or another Call-ID
    on this host, stay registered."""
    e = engine()
    a, a2, other = ("10.0.0.2", 5060), ("10.0.0.2", 5062), ("10.0.0.3", 5060)
    wan_a = _registered(e, a, "shared@x", 1)
    _registered(e, a2, "own@x", 2)
    _registered(e, other, "shared@x", 3)
    assert len(e.registrations) == 3 and e.registrations.host_registrations("10.0.0.2") == 2
    e.handle(OUT, a, SERVER, register(contact="*", expires=0, call_id="shared@x", cseq=2, branch="z9hG4bKr9"), 10.0)
    r = e.handle(IN, SERVER, wan_a, register_ok(wan_a, "shared@x", 2, "z9hG4bKr9", None), 10.1)
    gone = [ev for ev in r.events if type(ev).__name__ == "Deregistered"]
    assert [ev.lan for ev in gone] == [a]
    assert sorted(reg.lan for reg in e.registrations.all()) == [a2, other]
    assert e.registrations.host_registrations("10.0.0.2") == 1
    assert e.registrations.is_registered(a2) and not e.registrations.is_registered(a)
    assert e.registrations.is_registered(other)


def test_a_host_at_its_registration_cap_registers_again_once_one_expires():
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/24"], limit_host_registrations=2, registration_margin=0))
    for n, port in enumerate((5060, 5062, 5064), 1):
        _registered(e, ("10.0.0.2", port), "c%d@x" % n, n)
    assert sorted(reg.lan[1] for reg in e.registrations.all()) == [5060, 5062]   # the third was refused
    e.expire(3601.5)                                       # the first's hour is up, the second's not
    assert [reg.lan[1] for reg in e.registrations.all()] == [5062]
    assert e.registrations.host_registrations("10.0.0.2") == 1
    _registered(e, ("10.0.0.2", 5064), "c3@x", 3602)
    assert sorted(reg.lan[1] for reg in e.registrations.all()) == [5062, 5064]
