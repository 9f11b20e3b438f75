"""What a router user reads at info level: one line per registration, call and refusal, nothing per packet."""
import os
import re
import shutil
import time

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, Kamailio, Sipp, exchange_udp

OPTIONS = (b"OPTIONS sip:alice@203.0.113.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.10:5090;branch=z9hG4bKo%d\r\n"
           b"From: <sip:ping@203.0.113.10>;tag=p%d\r\nTo: <sip:alice@203.0.113.1:5060>\r\nCall-ID: ping%d\r\n"
           b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def info_lines(log):
    return [ln.split(" INFO ", 1)[1] for ln in log.splitlines() if " INFO " in ln]


def test_info_log_has_one_line_per_registration_and_call_and_none_per_keepalive(lab, logdir):
    Kamailio(lab, logdir).start()
    alg = Alg(lab, logdir, "--log-level", "info", "--answer-keepalives", "options").start()
    try:
        reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, name="reg",
                   extra=["-key", "expires", "600"])
        assert reg.start().wait() == 0
        for n in range(5):                               # the server's "are you alive?" pings
            got = exchange_udp(lab, lab.wan, (SERVER, 5090), (ROUTER_WAN, 5060), OPTIONS % (n, n, n))
            assert got is not None and got[1].startswith(b"SIP/2.0 200 OK\r\n")
        uas = Sipp(lab, lab.wan, "uas.xml", SERVER, logdir, port=5080, rtp=20000, name="uas").start()
        time.sleep(0.3)
        uac = Sipp(lab, lab.ph1, "uac.xml", PHONES[0], logdir, remote="%s:5080" % SERVER, port=5060, rtp=6000,
                   name="uac").start()
        assert uac.wait() == 0 and uas.wait() == 0
        time.sleep(0.5)
    finally:
        alg.stop()
    lines = info_lines(alg.log())
    events = [ln for ln in lines if not ln.startswith(("running:", "stopped;", "status LEDs"))]
    assert len([ln for ln in events if ln.startswith("registered ")]) == 1, events
    assert re.match(r"registered <sip:bob@203\.0\.113\.10> 10\.0\.0\.2:5060 as 203\.0\.113\.1:5060 for 600s$",
                    [ln for ln in events if ln.startswith("registered ")][0])
    calls = [ln for ln in events if ln.startswith("call ")]
    assert len(calls) == 2 and calls[0].endswith("from 10.0.0.2") and calls[1].endswith("ended: BYE"), calls
    assert not [ln for ln in events if "OPTIONS" in ln or "keep-alive" in ln or "pinhole" in ln], events
    assert " DEBUG " not in alg.log()


def test_under_procd_each_line_goes_to_syslog_once_and_nothing_to_stderr(lab, logdir):
    """--syslog (what the init script passes, procd capturing only stderr): every line once, with its
    own priority (daemon.info, daemon.warning), and nothing on stderr to be logged a second time."""
    import socket
    import tempfile
    import threading
    d = tempfile.mkdtemp(prefix="sa-syslog-")
    path = os.path.join(d, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    got = []

    def read():
        while True:
            try:
                got.append(sock.recv(65536).decode(errors="replace"))
            except OSError:
                return
    threading.Thread(target=read, daemon=True).start()
    Kamailio(lab, logdir).start()
    alg = Alg(lab, logdir, "--syslog", "--log-level", "info", env={"SIPALG_SYSLOG": path}).start()
    try:
        reg = Sipp(lab, lab.ph1, "register.xml", PHONES[0], logdir, remote="%s:5060" % SERVER, name="reg",
                   extra=["-key", "expires", "600"])
        assert reg.start().wait() == 0
        time.sleep(0.5)
    finally:
        alg.stop()
        time.sleep(0.3)
        sock.close()
        shutil.rmtree(d, ignore_errors=True)
    assert alg.log() == "", alg.log()                          # stderr: nothing at all
    lines = [re.sub(r"^<\d+>sipalg\[\d+\]: ", "", m).rstrip("\x00") for m in got]
    assert len([ln for ln in lines if ln.startswith("registered ")]) == 1, lines
    assert len([ln for ln in lines if ln.startswith("running:")]) == 1, lines
    assert len([ln for ln in lines if ln.startswith("stopped;")]) == 1, lines
    assert all(m.startswith("<30>sipalg[") for m in got if "registered " in m), got     # daemon.info
