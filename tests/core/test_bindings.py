from alg.core.bindings import BindingTable, Binding
from alg.core.config import Config
from alg.core.policy import Policy, OUTSIDE_RTP_RANGE

WAN = "203.0.113.1"


def policy(rtp_ports):
    return Policy(Config(wan_ip=WAN, lan_nets=["10.0.0.0/24"], rtp_ports=rtp_ports))


def table():
    return BindingTable(WAN, rtp_ports=(6000, 6019), sip_ports=(5060,))


def test_signalling_port_preserved_and_endpoint_independent():
    t = table()
    b, created = t.bind_signalling(("10.0.0.2", 5060), 10.0)
    assert created and b.wan == (WAN, 5060) and b.kind == "sip"
    b2, created = t.bind_signalling(("10.0.0.2", 5060), 10.0)
    assert b2 is b and not created
    assert t.lookup_wan(5060) is b and t.lookup_lan(("10.0.0.2", 5060)) is b


def test_signalling_collision_is_deterministic():
    def run():
        t = table()
        t.bind_signalling(("10.0.0.2", 5060), 1.0)
        return t.bind_signalling(("10.0.0.3", 5060), 1.0)[0].wan
    assert run() == run() == (WAN, 5061)


def test_signalling_skips_rtp_range_and_wraps():
    t = BindingTable(WAN, rtp_ports=(5061, 65000))
    t.bind_signalling(("10.0.0.2", 5060), 1.0)
    b, _ = t.bind_signalling(("10.0.0.3", 5060), 1.0)
    assert b.wan[1] == 65001
    t = BindingTable(WAN, rtp_ports=(30000, 65535))
    t.bind_signalling(("10.0.0.2", 29999), 1.0)
    b, _ = t.bind_signalling(("10.0.0.3", 29999), 1.0)
    assert b.wan[1] == 30000      # the range reaches the top: nothing to jump to


def test_media_never_on_sip_port():
    t = BindingTable(WAN, rtp_ports=(1024, 65535), sip_ports=(5060,))
    assert policy(rtp_ports=(1024, 65535)).media_refusal(5060, 5061) == OUTSIDE_RTP_RANGE
    t.bind_media("10.0.0.2", 5058, 5059, 1.0)
    rtp, rtcp, _ = t.bind_media("10.0.0.3", 5058, 5059, 1.0)
    assert (rtp.wan[1], rtcp.wan[1]) == (5062, 5063)


def test_media_pair_preserved_then_next_pair():
    t = table()
    rtp, rtcp, created = t.bind_media("10.0.0.2", 6000, 6001, 5.0)
    assert created and rtp.wan == (WAN, 6000) and rtcp.wan == (WAN, 6001)
    assert (rtp.kind, rtcp.kind) == ("rtp", "rtcp")
    rtp2, rtcp2, _ = t.bind_media("10.0.0.3", 6000, 6001, 5.0)
    assert (rtp2.wan[1], rtcp2.wan[1]) == (6002, 6003)
    again = t.bind_media("10.0.0.2", 6000, 6001, 5.0)
    assert again == (rtp, rtcp, False)


def test_media_odd_port_gets_even_pair_on_collision():
    t = table()
    t.bind_media("10.0.0.2", 6004, 6005, 1.0)
    rtp, rtcp, _ = t.bind_media("10.0.0.3", 6004, 6005, 1.0)
    assert rtp.wan[1] % 2 == 0 and rtcp.wan[1] == rtp.wan[1] + 1


def test_media_rtcp_not_adjacent():
    t = table()
    rtp, rtcp, _ = t.bind_media("10.0.0.2", 6000, 6010, 1.0)
    assert rtp.wan[1] == 6000 and rtcp.wan[1] == 6010
    rtp2, rtcp2, _ = t.bind_media("10.0.0.3", 6000, 6010, 1.0)
    assert rtp2.wan[1] == 6001 and rtcp2.wan[1] == 6011


def test_media_outside_range_refused_by_the_policy():
    p = policy(rtp_ports=(6000, 6019))
    assert p.media_refusal(22, 23) == OUTSIDE_RTP_RANGE
    assert p.media_refusal(6019, 6020) == OUTSIDE_RTP_RANGE
    assert p.media_refusal(6000, 6001) is None


def test_media_exhaustion_and_wrap():
    t = table()
    for i in range(10):
        assert t.bind_media("10.0.1.%d" % i, 6010, 6011, 1.0) is not None
    assert t.bind_media("10.0.2.1", 6010, 6011, 1.0) is None
    ports = sorted(b.wan[1] for b in t.all())
    assert ports == list(range(6000, 6020))


def test_remove_frees_port():
    t = table()
    rtp, rtcp, _ = t.bind_media("10.0.0.2", 6000, 6001, 1.0)
    t.remove(rtp)
    t.remove(rtcp)
    assert t.lookup_wan(6000) is None
    rtp, rtcp, _ = t.bind_media("10.0.0.3", 6000, 6001, 1.0)
    assert rtp.wan[1] == 6000


def test_set_wan_ip():
    t = table()
    b, _ = t.bind_signalling(("10.0.0.2", 5060), 1.0)
    assert t.set_wan_ip("198.51.100.1") == 1 and b.wan == ("198.51.100.1", 5060)
    assert t.set_wan_ip("198.51.100.1") == 0


def test_restore_and_conflict():
    t = table()
    t.restore(Binding(("10.0.0.2", 5060), (WAN, 5070), "sip", 100.0))
    assert t.lookup_wan(5070).lan == ("10.0.0.2", 5060)
    assert t.bind_signalling(("10.0.0.2", 5060), 1.0)[1] is False
    try:
        t.restore(Binding(("10.0.0.3", 5060), (WAN, 5070), "sip", 100.0))
    except ValueError as e:
        assert "5070" in str(e)
    else:
        assert False
