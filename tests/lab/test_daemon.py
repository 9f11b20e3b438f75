"""The daemon's life on a router: WAN renumbering, SIGHUP reload, status without a daemon."""
import os
import signal
import subprocess
import sys
import time

from tests.support.lab.messages import options_through as _through
from tests.support.lab.netns import SERVER
from tests.support.lab.peers import Alg, exchange_udp


def test_wan_renumbering_followed_without_restart(lab, alg):
    src, payload = _through(lab, 1)
    assert src == ("203.0.113.1", 5060) and b"Via: SIP/2.0/UDP 203.0.113.1:5060;" in payload
    lab.run(lab.rtr, "ip", "addr", "del", "203.0.113.1/24", "dev", "wan0")
    lab.run(lab.rtr, "ip", "addr", "add", "203.0.113.2/24", "dev", "wan0")
    time.sleep(2.5)                                     # it looks once a second
    src, payload = _through(lab, 2)
    assert src == ("203.0.113.2", 5060)
    assert b"Via: SIP/2.0/UDP 203.0.113.2:5060;" in payload and b"<sip:a@203.0.113.2:5060>" in payload
    assert alg.status()["wan_ip"] == "203.0.113.2"
    assert "WAN address 203.0.113.1 -> 203.0.113.2" in alg.log()


def test_sighup_reloads_config_and_keeps_bindings(lab, logdir):
    cfg = os.path.join(logdir, "sipalg.conf")
    with open(cfg, "w") as f:
        f.write("# as /etc/config/sipalg\nconfig sipalg 'main'\n\toption answer_keepalives 'crlf'\n")
    alg = Alg(lab, logdir, "--config", cfg).start()
    try:
        _through(lab, 3)                                # makes the phone's binding
        got = exchange_udp(lab, lab.wan, (SERVER, 5070), ("203.0.113.1", 5060), b"\r\n\r\n")
        assert got is not None and got[1] == b"\r\n"   # answered by the router
        with open(cfg, "w") as f:
            f.write("config sipalg 'main'\n\toption answer_keepalives \"off\"\n")
        alg.proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert "config reloaded" in alg.log()
        assert len(alg.status()["bindings"]) == 1       # nothing dropped
        got = exchange_udp(lab, lab.wan, (SERVER, 5070), ("203.0.113.1", 5060), b"\r\n\r\n", timeout=1.0)
        assert got is None                              # now passed on to the phone, not answered
    finally:
        alg.stop()


def test_status_without_daemon_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alg", "status", "--state-dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no daemon running" in r.stderr
