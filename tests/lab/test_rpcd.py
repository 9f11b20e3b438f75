"""The LuCI status path end to end: a running daemon in the lab -> its status.json -> the rpcd
plugin (/usr/libexec/rpcd/luci.sipalg) -> the status page and the Status > Overview section, as rpcd
and LuCI would run them."""
import json
import time

from tests.support.lab.messages import options
from tests.support.lab.netns import PHONES, SERVER
from tests.support.lab.peers import received, recv_udp, send_udp
from tests.support.luci import OVERVIEW_JS, STATUS_JS, run_plugin, run_view, sipalg_command


def plugin_status(alg, tmp_path):
    rc, out, err = run_plugin("call", "status", env={"SIPALG": sipalg_command(tmp_path),
                                                     "SIPALG_STATE_DIR": alg.state_dir})
    assert rc == 0, err
    return json.loads(out)


def test_plugin_reports_the_running_daemon_and_the_page_shows_it(lab, alg, tmp_path):
    # a phone's SIP through the router makes a signalling binding the status must list
    rx = recv_udp(lab, lab.wan, (SERVER, 5060))
    send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5060), options(b"rpcd1"))
    got = received(rx)
    assert got is not None and got[0] == ("203.0.113.1", 5060)
    time.sleep(1.2)                                     # the daemon publishes a change within a second

    st = plugin_status(alg, tmp_path)
    assert st["running"] is True
    assert st["pid"] == alg.proc.pid                    # `ip netns exec` execs the daemon: same pid
    assert st["wan_if"] == lab.wan_if and st["wan_ip"] == "203.0.113.1"
    assert st["counters"]["queued"] >= 1
    sip = [b for b in st["bindings"] if b["kind"] == "sip"]
    assert [(b["lan"], b["wan"]) for b in sip] == [("%s:5060" % PHONES[0], "203.0.113.1:5060")]
    assert sip[0]["expires"] > st["now"] >= st["written"]       # absolute times, read against the router's clock

    # the same answer, as the status page renders it
    page = run_view(tmp_path, STATUS_JS, "status", {"rpc": {"luci.sipalg.status": st}})["text"]
    assert "Running" in page and "%s (203.0.113.1)" % lab.wan_if in page
    assert "%s:5060 | 203.0.113.1:5060 |" % PHONES[0] in page
    # and the Status > Overview section from the same answer
    overview = run_view(tmp_path, OVERVIEW_JS, "include", {"rpc": {"luci.sipalg.status": st},
                                                          "uci": {"sipalg": {"main": {"enabled": "1"}}}})
    assert overview["shown"] and "WAN address | 203.0.113.1 (%s)" % lab.wan_if in overview["text"]
    assert "Registered phones | 0" in overview["text"] and "Calls | 0" in overview["text"]

    # stopped: the plugin answers for it, still valid JSON, and the page says why
    alg.stop()
    st = plugin_status(alg, tmp_path)
    assert st["running"] is False and alg.state_dir in st["error"]
    page = run_view(tmp_path, STATUS_JS, "status", {"rpc": {"luci.sipalg.status": st}})["text"]
    assert "Not running" in page and st["error"] in page
