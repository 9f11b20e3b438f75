"""Faults a router meets in months of running: its rules flushed, huge or broken input, a bug inside
the engine, and no process started on the packet path."""
import os
import re
import subprocess
import time

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, Counter, Kamailio, Sipp, recv_udp, received, send_udp, write_config
from tests.support.lab.messages import invite
from tests.support.need import need_tools

SRV = (SERVER, 5060)


def _options(n, port=5060):
    return (("OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:%d;branch=z9hG4bKf%s\r\n"
             "From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: f%s\r\nCSeq: 1 OPTIONS\r\n"
             "Contact: <sip:a@10.0.0.2:%d>\r\nContent-Length: 0\r\n\r\n") % (port, n, n, port)).encode()


def _crosses_rewritten(lab, n, timeout=3.0):
    rx = recv_udp(lab, lab.wan, SRV, timeout=timeout)
    t0 = time.monotonic()
    send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, _options(n))
    got = received(rx)
    return got is not None and b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in got[1], time.monotonic() - t0


def _register_and_call(lab, logdir, tag, phone=0):
    ns, ip = (lab.ph1, PHONES[0]) if phone == 0 else (lab.ph2, PHONES[1])
    reg = Sipp(lab, ns, "register.xml", ip, logdir, remote="%s:5060" % SERVER, name="reg-" + tag,
               extra=["-key", "expires", "600"])
    assert reg.start().wait() == 0, "the registration failed"
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, port=5080, rtp=20000, name="uas-" + tag).start()
    time.sleep(0.3)
    uac = Sipp(lab, ns, "uac.xml", ip, logdir, remote="%s:5080" % SERVER, rtp=6000, name="uac-" + tag).start()
    assert uac.wait() == 0 and uas.wait() == 0, "the call failed"


def test_nft_flush_ruleset_heals_within_two_seconds_and_an_incoming_call_works(lab, alg, logdir):
    Kamailio(lab, logdir).start()
    reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, name="reg",
               extra=["-key", "expires", "600"])
    assert reg.start().wait() == 0
    lab.run(lab.rtr, "nft", "flush", "ruleset")
    lab.nft(lab.rtr, "table ip lab_nat {\n chain post {\n type nat hook postrouting priority srcnat;"
                     " oifname \"wan0\" masquerade\n }\n}\n")             # the lab's own NAT, as fw4 would
    alg.note_rules()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not alg.kernel_table().get("sip2lan"):
        time.sleep(0.1)
    assert alg.kernel_table().get("sip2lan"), "not healed within 2 s"
    ok, _ = _crosses_rewritten(lab, "flush1")
    assert ok
    assert "was removed from the kernel: re-installed" in alg.log()
    # an incoming call to the registered phone through the re-installed signalling binding
    uas = Sipp(lab, lab.ph1, "uas.xml", PHONES[0], logdir, rtp=6000, name="phone-uas").start()
    time.sleep(0.5)
    caller = Sipp(lab, lab.wan, "uac.xml", SERVER, logdir, remote="%s:5060" % SERVER, port=5070, rtp=20070,
                  name="caller")                    # calls bob, whom the phone registered as
    assert caller.start().wait() == 0 and uas.wait() == 0


def test_the_iptables_queue_rules_flushed_alone_are_put_back(lab, alg):
    """Where the kernel has no nft queue (the fallback hands SIP over with iptables NFQUEUE rules in
    mangle), `iptables -t mangle -F` leaves our table whole: the rules still come back at once, and
    SIP is rewritten again (a reload once rebuilt the table but never these rules)."""
    assert _crosses_rewritten(lab, "before-F")[0]
    if alg.status()["queue"] != "iptables":          # the queue rules live in our own table: nothing to lose
        assert " queue " in lab.run(lab.rtr, "nft", "list", "table", "ip", alg.table).stdout.decode()
        return
    for chain in ("PREROUTING", "FORWARD"):
        lab.run(lab.rtr, "iptables", "-t", "mangle", "-F", chain)

    def queue_rules():
        return "NFQUEUE" in lab.run(lab.rtr, "iptables-save", "-t", "mangle").stdout.decode()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not queue_rules():
        time.sleep(0.1)
    assert queue_rules(), "not put back within 2 s"
    assert "the iptables NFQUEUE rules were removed: put back" in alg.log()
    assert _crosses_rewritten(lab, "after-F")[0]


def test_4200_oversized_datagrams_then_a_registration_and_a_call(lab, logdir):
    """4,200 SIP datagrams of 4.4 KB, each queued (from the SIP port, no lan_sip_rate to pass them
    around the queue): every one crosses, none waits for a verdict that never comes, and the
    queue serves a registration and a call after them (the binding backend copied at most 4,016
    bytes: such a datagram never got a verdict and 4,096 of them wedged the queue)."""
    cfg = logdir + "/big.conf"
    write_config(cfg, lan_sip_rate=0)
    alg = Alg(lab, logdir, "--config", cfg).start()
    try:
        Kamailio(lab, logdir).start()
        n = 4200
        big = _options("big").replace(b"Content-Length: 0\r\n\r\n",
                                      b"X-Pad: " + b"p" * 4200 + b"\r\nContent-Length: 0\r\n\r\n")
        rx = Counter(lab, lab.wan, (SERVER, 5099))
        code = ("import socket,sys,time;s=socket.socket(2,2);s.bind(('10.0.0.2',5060));d=sys.stdin.buffer.read()\n"
                "for i in range(%d):\n s.sendto(d,('203.0.113.10',5099))\n if i%%100==0: time.sleep(0.02)\n" % n)
        lab.run(lab.ph1, "python3", "-c", code, input=big, timeout=120)
        mine, other, _ = rx.result()
        assert mine + other == n, (mine, other)                 # every one crossed
        assert mine > 0                                         # the queue took them whole and rewrote them
        st = alg.status()
        assert st["counters"]["queued"] >= mine and alg.proc.poll() is None
        _register_and_call(lab, logdir, "after-big")
    finally:
        alg.stop()


def test_a_register_with_1000_contacts_then_an_options_crosses_in_100_ms(lab, alg):
    contacts = "".join("Contact: <sip:a@10.0.0.2:%d>\r\n" % (20000 + i) for i in range(999))
    reg = (("REGISTER sip:203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKmany\r\n"
            "From: <sip:a@203.0.113.10>;tag=1\r\nTo: <sip:a@203.0.113.10>\r\nCall-ID: many\r\nCSeq: 1 REGISTER\r\n"
            "%sContact: <sip:a@10.0.0.2:99999>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n") % contacts).encode()
    send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5099), reg)
    ok, took = _crosses_rewritten(lab, "after-many")
    assert ok and took < 0.1 + 0.25, took        # (the receiver's own start-up is the 0.25)
    assert len(alg.kernel_table()["sip2lan"]) == 1        # one binding: the source's
    assert alg.status()["counters"]["nft_failures"] == 0


FAULTY = ("import alg.core.dialogs as d\n"
          "real = d.Dialogs._lan_sdp\n"
          "def _lan_sdp(self, call, sdp, body, ctx):\n"
          "    out = real(self, call, sdp, body, ctx)\n"
          "    if b'boom' in call.call_id:\n"
          "        raise RuntimeError('injected fault')\n"
          "    return out\n"
          "d.Dialogs._lan_sdp = _lan_sdp\n"
          "import sys; from alg.cli import main; sys.exit(main(sys.argv[1:]))\n")


def test_a_fault_inside_the_engine_then_an_invite_gets_its_pinholes(lab, logdir):
    alg = Alg(lab, logdir, python_args=["-c", FAULTY]).start()
    try:
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, invite("boom1", 6000))
        got = received(rx)
        assert got is not None and b"c=IN IP4 10.0.0.2" in got[1]          # passed as it came
        t = alg.kernel_table()
        kernel = sorted(e[1]["concat"][1] for e in t["media2lan"])
        held = sorted(int(b["lan"].split(":")[1]) for b in alg.status()["bindings"] if b["kind"] != "sip")
        assert kernel == held                                               # engine and kernel agree
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, invite("fine2", 6010))
        got = received(rx)
        assert got is not None and b"c=IN IP4 %s" % ROUTER_WAN.encode() in got[1]
        ports = sorted(e[1]["concat"][1] for e in alg.kernel_table()["media2lan"])
        assert 6010 in ports and 6011 in ports
        st = alg.status()["counters"]
        assert st["malformed"] >= 1
        assert "internal error RuntimeError: injected fault" in alg.log()
    finally:
        alg.stop()


def test_no_process_is_started_on_the_packet_path(lab, alg, logdir):
    need_tools("strace")
    Kamailio(lab, logdir).start()
    trace = os.path.join(logdir, "execve.trace")
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve,execveat", "-o", trace,
                           "-p", str(alg.proc.pid)], stderr=subprocess.PIPE)
    time.sleep(1.0)                                          # attached
    _register_and_call(lab, logdir, "traced")
    time.sleep(0.5)
    st.terminate()
    st.wait(10)
    with open(trace) as f:
        lines = [ln for ln in f if re.search(r"\bexecve(at)?\(", ln)]
    assert lines == [], "the daemon started processes during a call:\n" + "".join(lines)
    assert alg.status()["counters"]["rewritten"] >= 6        # it did handle the call


def test_a_flow_masqueraded_before_the_daemon_does_not_swallow_another_phones_first_register(lab, logdir):
    """Phone 1 spoke to the server from 5060 while no daemon ran, so MASQUERADE gave its flow the
    WAN port 5060.  The daemon then binds phone 2's 5060 to WAN 5060 (free in its table): without
    clearing that old flow the kernel drops phone 2's first datagram as a clash."""
    send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, b"\r\n\r\n")         # a keep-alive, plain NAT
    flows = lab.run(lab.rtr, "conntrack", "-L", "-p", "udp", "--dport", "5060", check=False).stdout
    assert b"src=10.0.0.2" in flows and b"dport=5060" in flows
    alg = Alg(lab, logdir).start()
    try:
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph2, (PHONES[1], 5060), SRV, _options("first").replace(b"10.0.0.2", PHONES[1].encode()))
        got = received(rx)
        assert got is not None, "phone 2's first OPTIONS was dropped"
        assert got[0][1] == 5060 and b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in got[1]
        assert "conntrack: cleared 10.0.0.2:5060's flow" in alg.log()
        # phone 1, whose flow went, comes back through a binding of its own
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, _options("again"))
        got = received(rx)
        assert got is not None and got[0][1] != 5060 and b"Via: SIP/2.0/UDP %s:%d;" % (
            ROUTER_WAN.encode(), got[0][1]) in got[1]
    finally:
        alg.stop()


REGISTER_FLOOD = (
    "import socket,sys,time\n"
    "n,rate=int(sys.argv[1]),int(sys.argv[2]);t0=time.monotonic()\n"
    "for i in range(n):\n"
    " p=20000+2*i;s=socket.socket(2,2);s.bind(('10.0.0.2',p))\n"
    " m=('REGISTER sip:203.0.113.10 SIP/2.0\\r\\nVia: SIP/2.0/UDP 10.0.0.2:%d;branch=z9hG4bKfl%d;rport\\r\\n'\n"
    "    'From: <sip:f%d@203.0.113.10>;tag=%d\\r\\nTo: <sip:f%d@203.0.113.10>\\r\\nCall-ID: fl-%d\\r\\n'\n"
    "    'CSeq: 1 REGISTER\\r\\nContact: <sip:f%d@10.0.0.2:%d>\\r\\nExpires: 600\\r\\nContent-Length: 0\\r\\n\\r\\n'\n"
    "    % (p,i,i,i,i,i,i,p)).encode()\n"
    " s.sendto(m,('203.0.113.10',5099));s.close()\n"
    " d=t0+(i+1)/rate-time.monotonic()\n"
    " if d>0: time.sleep(d)\n")


def test_a_register_flood_from_new_ports_loses_nothing_and_a_phone_is_called_meanwhile(lab, alg, logdir):
    """A LAN host sends REGISTERs from a new port each (each would be a new binding) at 2,000/s:
    every datagram crosses (past its binding cap and lan_sip_rate, unrewritten, as plain NAT),
    the host holds no more bindings than its cap, and meanwhile another phone registers and is
    called through the registrar (a REGISTER flood once left 85% of SIP unrewritten and an
    incoming call during it failed)."""
    Kamailio(lab, logdir).start()
    n = 8000
    rx = Counter(lab, lab.wan, (SERVER, 5099))
    flood = lab.popen(lab.ph1, "python3", "-c", REGISTER_FLOOD, str(n), "2000")
    time.sleep(0.5)
    reg = Sipp(lab, lab.ph2, "register.xml", PHONES[1], logdir, remote="%s:5060" % SERVER, port=5100,
               name="reg-during", extra=["-key", "expires", "600"])
    uas = Sipp(lab, lab.ph2, "uas.xml", PHONES[1], logdir, port=5100, name="uas-during")
    uac = Sipp(lab, lab.wan, "uac.xml", SERVER, logdir, remote="%s:5060" % SERVER, port=5070, rtp=25070,
               duration_ms=300, name="uac-during")
    assert reg.start().wait(20) == 0, "the registration during the flood failed"
    uas.start()
    time.sleep(0.3)
    assert uac.start().wait(20) == 0 and uas.wait(20) == 0, "the incoming call during the flood failed"
    assert flood.poll() is None, "the flood was over before the call: no test of 'meanwhile'"
    assert flood.wait(60) == 0
    assert rx.result()[2] == n                                         # every one crossed
    st = alg.status()
    flooder = [b for b in st["bindings"] if b["kind"] == "sip" and b["lan"].startswith(PHONES[0] + ":")]
    assert 1 <= st["totals"].get("bindings", 0) and len(flooder) <= 8     # limit_host_bindings
