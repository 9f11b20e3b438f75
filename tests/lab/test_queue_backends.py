"""Both NFQUEUE backends through the real kernel: rewriting, passing unchanged, fail-open.

The netlink backend is what runs everywhere ("auto" always picks it); every
test here runs with it forced, and with the binding forced too when it is installed.
"""
import os
import re
import signal
import sys
import time

import pytest

from alg import options
from alg.kernel.queue import binding_available
from tests.support import ROOT
from tests.support.lab.messages import options as _options
from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, Capture, Sipp, recv_udp, received, send_udp
from tests.support.need import need

SRV = (SERVER, 5060)
PH1 = (PHONES[0], 5060)


def _start(lab, logdir, backend, env=None):
    a = Alg(lab, logdir, "--rtp-ports", "1024-65535", env=dict({"SIPALG_QUEUE_BACKEND": backend}, **(env or {})))
    return a.start()


@pytest.fixture(params=["netlink", "binding"])
def forced(request, lab, logdir):
    if request.param == "binding":
        need(binding_available(), "needs the NetfilterQueue binding (pip install -e .[nfqueue])")
    a = _start(lab, logdir, request.param)
    a.backend = request.param
    yield a
    if a.proc is not None:
        a.stop()
    print(a.log()[-4000:])


def test_call_rewritten_both_ways(lab, forced, logdir):
    wan = Capture(lab, lab.wan, "eth0", logdir + "/wan.pcap")
    lan = Capture(lab, lab.ph1, "eth0", logdir + "/lan.pcap")
    uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, rtp=20000, duration_ms=500, name="uas").start()
    time.sleep(0.3)
    uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, rtp=6000,
               duration_ms=500, name="uac").start()
    assert uac.wait() == 0 and uas.wait() == 0
    # outbound: what the server got carries the router's address, nowhere the phone's
    inv = [p for p in wan.packets() if p[4].startswith(b"INVITE")][0]
    assert (inv[0], inv[1]) == (ROUTER_WAN, 5060)
    assert re.search(rb"Via: SIP/2.0/UDP ([^;\r]+)", inv[4]).group(1) == b"%s:5060" % ROUTER_WAN.encode()
    assert b"Contact: <sip:phone@%s:5060>" % ROUTER_WAN.encode() in inv[4]
    assert b"c=IN IP4 %s\r\n" % ROUTER_WAN.encode() in inv[4]
    assert PHONES[0].encode() not in re.sub(rb"Call-ID: [^\r]*", b"", inv[4])
    # inbound: the phone sees its own Via back in the 200
    ok = [p for p in lan.packets() if p[4].startswith(b"SIP/2.0 200")][0]
    assert b"Via: SIP/2.0/UDP %s:5060;" % PHONES[0].encode() in ok[4]
    st = forced.status()
    assert st["queue_backend"] == forced.backend
    assert st["counters"]["rewritten"] >= 4                   # INVITE, ACK, BYE out; 200s in
    assert "(%s backend)" % forced.backend in forced.log()


def test_unchanged_packets_accepted_byte_identical(lab, forced):
    public = _options(b"pub1", via_host=ROUTER_WAN)           # a STUN-aware phone: nothing of ours to rewrite
    for payload in (public, b"\x16\x03 not sip \xff", b"INVITE sip:x SIP/2.0\r\nContent-Length: 99\r\n\r\nab"):
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, PH1, SRV, payload)
        got = received(rx)
        assert got is not None and got[1] == payload, payload
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, PH1, SRV, _options(b"priv1"))
    src, payload = received(rx)                               # and the same daemon does rewrite
    assert b"Via: SIP/2.0/UDP %s:5060;branch=z9hG4bKpriv1" % ROUTER_WAN.encode() in payload
    assert forced.proc.poll() is None
    st = forced.status()["counters"]
    assert st["queued"] >= 4 and st["rewritten"] >= 1


def test_sigkill_leaves_sip_flowing_unmodified(lab, forced):
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, PH1, SRV, _options(b"alive"))
    assert ROUTER_WAN.encode() in received(rx)[1]
    forced.proc.send_signal(signal.SIGKILL)
    forced.proc.wait(10)
    forced.proc = None
    msg = _options(b"dead")
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, PH1, SRV, msg)
    got = received(rx)
    assert got is not None, "SIP was dropped with the daemon gone: the queue rule lacks bypass"
    assert got[1] == msg                                      # nobody rewrote it: it bypassed the queue


BLAST = ("import socket,sys;s=socket.socket(2,2);s.setsockopt(1,2,1);s.bind((%r,%d))\n"
         "for i in range(%d): s.sendto(b'blast %%06d' %% i,(%r,%d))")
COUNT = ("import socket,sys;s=socket.socket(2,2);s.setsockopt(1,2,1);s.setsockopt(1,33,1<<23);s.bind((%r,%d))\n"
         "s.settimeout(%f)\n"
         "print('ready',file=sys.stderr,flush=True);n=0\n"
         "while True:\n try: s.recv(2048); n+=1; s.settimeout(1.5)\n except OSError: break\nprint(n)")


QUEUE = int(options.option("main", "queue_num").default)      # the daemon's, by default


def _queue_stats(lab):
    """/proc/net/netfilter/nfnetlink_queue of the router: {queue: (total, dropped, user_dropped)}."""
    out = lab.run(lab.rtr, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout.decode()
    rows = {}
    for line in out.splitlines():
        f = line.split()
        rows[int(f[0])] = (int(f[2]), int(f[5]), int(f[6]))
    return rows


def test_netlink_backend_fails_open_when_the_daemon_falls_behind(lab, logdir):
    """A stopped daemon: the kernel holds what fits in the queue and accepts the rest (NFQA_CFG_F_FAIL_OPEN)."""
    alg = _start(lab, logdir, "netlink")
    try:
        assert alg.status()["queue_backend"] == "netlink"
        n = 6000                                              # more than the queue's 4096 slots
        counter = lab.popen(lab.wan, sys.executable, "-c", COUNT % (SERVER, 5060, 10.0),
                            stdout=-1, stderr=-1)
        counter.stderr.readline()
        alg.proc.send_signal(signal.SIGSTOP)
        lab.run(lab.ph1, sys.executable, "-c", BLAST % (PHONES[0], 5060, n, SERVER, 5060), timeout=60)
        passed = int(counter.communicate(timeout=30)[0])
        total, dropped, user_dropped = _queue_stats(lab)[QUEUE]
        alg.proc.send_signal(signal.SIGCONT)
        # some were held for the stopped daemon, the rest passed instead of being dropped
        assert 0 < passed < n, passed
        assert total > 0 and dropped == 0 and user_dropped == 0, (total, dropped, user_dropped)
        # it catches up with its backlog and goes on rewriting
        deadline = time.monotonic() + 30
        while _queue_stats(lab)[QUEUE][0] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _queue_stats(lab)[QUEUE][0] == 0
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, PH1, SRV, _options(b"after"))
        assert b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in received(rx)[1]
        st = alg.status()
        assert alg.proc.poll() is None and st["queue_counters"]["errors"] == 0
        assert st["counters"]["queued"] > 1000                # the held backlog, handled once it woke
    finally:
        if alg.proc is not None:
            alg.stop()
        print(alg.log()[-3000:])


def test_auto_takes_netlink_when_the_binding_is_missing(lab, logdir, tmp_path):
    shadow = tmp_path / "shadow" / "netfilterqueue"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('simulated: NetfilterQueue not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), ROOT, os.environ.get("PYTHONPATH", "")])}
    alg = _start(lab, logdir, "auto", env)
    try:
        assert alg.status()["queue_backend"] == "netlink"
        rx = recv_udp(lab, lab.wan, SRV)
        send_udp(lab, lab.ph1, PH1, SRV, _options(b"auto1"))
        assert b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in received(rx)[1]
    finally:
        alg.stop()


def test_auto_takes_netlink_even_with_the_binding_installed(lab, logdir):
    """The binding can set neither fail-open nor a copy range past ~4 KB: "auto" never picks it."""
    need(binding_available(), "needs the NetfilterQueue binding (pip install -e .[nfqueue])")
    alg = _start(lab, logdir, "auto")
    try:
        assert alg.status()["queue_backend"] == "netlink"
    finally:
        alg.stop()


def test_forced_binding_says_what_it_cannot_do(lab, logdir):
    need(binding_available(), "needs the NetfilterQueue binding (pip install -e .[nfqueue])")
    alg = _start(lab, logdir, "binding")
    try:
        assert alg.status()["queue_backend"] == "binding"
        assert "no fail-open" in alg.log() and "4 KB" in alg.log()
    finally:
        alg.stop()
