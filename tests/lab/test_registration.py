"""Registrations keep phones reachable with no keep-alives; re-INVITEs move media; early RTP keeps its port."""
import time

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Kamailio, RtpEcho, Sipp, rtp_send


def _sipp(lab, ns, scenario, ip, logdir, name, user, **kw):
    s = Sipp(lab, ns, scenario, ip, logdir, name=name, **kw)
    s.args[s.args.index("-s") + 1] = user
    return s


def test_incoming_calls_reach_the_right_phone_after_conntrack_timeout(lab, alg, logdir):
    lab.set_udp_timeouts(10, 15)
    Kamailio(lab, logdir).start()
    for ns, ip, user in ((lab.ph1, PHONES[0], "alice"), (lab.ph2, PHONES[1], "bob")):
        reg = _sipp(lab, ns, "register.xml", ip, logdir, "reg-" + user, user, remote="%s:5060" % SERVER,
                    extra=["-key", "expires", "600"])
        assert reg.start().wait() == 0
    regs = alg.status()["registrations"]
    assert sorted(r["lan"] for r in regs) == ["10.0.0.2:5060", "10.0.0.3:5060"]
    assert len({r["wan"] for r in regs}) == 2
    deadline = time.monotonic() + 40                        # silence: conntrack forgets the phones (15 s)
    while True:
        ct = lab.run(lab.rtr, "conntrack", "-L", "-p", "udp", check=False).stdout.decode()
        if "10.0.0.2" not in ct and "10.0.0.3" not in ct or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert "10.0.0.2" not in ct and "10.0.0.3" not in ct, ct
    phones = {}
    for ns, ip, user in ((lab.ph1, PHONES[0], "alice"), (lab.ph2, PHONES[1], "bob")):
        phones[user] = _sipp(lab, ns, "uas.xml", ip, logdir, "uas-" + user, user).start()
    time.sleep(0.5)
    for user, port in (("alice", 5070), ("bob", 5072)):
        caller = _sipp(lab, lab.wan, "uac.xml", SERVER, logdir, "call-" + user, user, remote="%s:5060" % SERVER,
                       port=port, rtp=20000 + port)
        assert caller.start().wait() == 0, user
        assert phones[user].wait() == 0, user               # the call reached this phone, not the other


def test_reinvite_moves_media_and_hold_resume_keeps_audio(lab, alg, logdir):
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 14)
    uas = Sipp(lab, lab.wan, "uas_reinvite.xml", SERVER, logdir, rtp=20000, name="uas").start()
    time.sleep(0.3)
    uac = Sipp(lab, lab.ph1, "uac_reinvite.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
               extra=["-key", "rtp2", "6010"], name="uac").start()
    time.sleep(0.5)
    first = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 60)          # 1.2 s on the first port
    time.sleep(1.0)                                                                   # re-INVITE moves to 6010
    moved = rtp_send(lab, lab.ph1, (PHONES[0], 6010), (SERVER, 20000), 300)         # 6 s: hold and resume
    assert uac.wait() == 0 and uas.wait() == 0
    seen = echo.result()
    assert first["received"] == 60
    assert moved["received"] >= 295, moved
    assert seen.get("%s:6010" % ROUTER_WAN, 0) >= 295
    t = alg.kernel_table()
    assert t["media2lan"] == [] and t["media_peer"] == [] and t["media_open"] == []   # BYE closed them


def test_early_rtp_refused_by_icmp_keeps_its_port(lab, alg, logdir):
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, duration_ms=6000, name="uas").start()
    time.sleep(0.3)
    uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
               duration_ms=6000, name="uac").start()
    time.sleep(0.8)
    early = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 10)          # nobody listens: ICMP
    assert early["received"] == 0
    echo = RtpEcho(lab, lab.wan, SERVER, 20000, 4)
    later = rtp_send(lab, lab.ph1, (PHONES[0], 6000), (SERVER, 20000), 50)
    seen = echo.result()
    assert later["received"] == 50
    assert seen == {"%s:6000" % ROUTER_WAN: 50}             # the ALG's binding, not a fresh masquerade port
    assert uac.wait() == 0 and uas.wait() == 0
