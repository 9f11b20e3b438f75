"""The ALG beside an fw4-shaped firewall: forward policy drop, fw4 reloads and flushes, the kernel SIP helper."""
import os
import signal
import time

from tests.support import ROOT
from tests.support.fw4 import fw4_ruleset
from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, recv_udp, received, send_udp
from tests.support.lab.messages import invite


INCLUDE = os.path.join(ROOT, "openwrt", "sipalg", "files", "forward-pinholes.nft")
SRV = (SERVER, 5060)


def _load_fw4(lab, includes, alg=None):
    lab.run(lab.rtr, "nft", "add table inet fw4")
    lab.run(lab.rtr, "nft", "delete table inet fw4")        # what `fw4 reload` does: flush, render anew
    lab.nft(lab.rtr, fw4_ruleset(lab.lan_if, lab.wan_if, includes))
    if alg is not None:
        alg.note_rules()                # the test's own firewall: what the daemon must leave behind


def _rtp_reaches_phone(lab, wan_port):
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 6000), timeout=2.0)
    send_udp(lab, lab.wan, (SERVER, 20000), (ROUTER_WAN, wan_port), b"\x80\x00\x00\x01" + b"\x00" * 168)
    return received(rx)


def _answer(call_id):
    sdp = b"v=0\r\no=- 2 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"
    return (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK%s\r\n"
            b"From: <sip:alice@203.0.113.10>;tag=1\r\nTo: <sip:bob@203.0.113.10>;tag=2\r\nCall-ID: %s\r\n"
            b"CSeq: 1 INVITE\r\nContact: <sip:bob@203.0.113.10>\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: %d\r\n\r\n" % (call_id, call_id, len(sdp)) + sdp)


def _offer(lab, call_id):
    """The phone's INVITE out, the far end's 200 OK back: the pinhole admits the far end."""
    rx = recv_udp(lab, lab.wan, SRV)
    send_udp(lab, lab.ph1, (PHONES[0], 5060), SRV, invite(call_id, 6000))
    got = received(rx)
    assert got is not None, "the INVITE did not cross fw4's forward chain"
    port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060))
    send_udp(lab, lab.wan, SRV, (ROUTER_WAN, 5060), _answer(call_id))
    assert received(rx) is not None, "the 200 OK did not reach the phone"
    return port


def test_pinhole_passes_fw4_forward_drop_only_with_the_include(lab, alg):
    _load_fw4(lab, [], alg)
    wan_port = _offer(lab, b"fw4-1")
    assert alg.kernel_table()["media_peer"], "no pinhole opened"
    # without our include, fw4's wan zone drops the DNAT'd media: the check has teeth
    assert _rtp_reaches_phone(lab, wan_port) is None
    # fw4 reload renders the chain-pre include into forward_wan; our table is untouched
    _load_fw4(lab, [INCLUDE], alg)
    got = _rtp_reaches_phone(lab, wan_port)
    assert got is not None and got[0] == (SERVER, 20000)
    counted = lab.run(lab.rtr, "nft", "list", "chain", "inet", "fw4", "forward_wan").stdout.decode()
    ours = [ln for ln in counted.splitlines() if "!sipalg" in ln]
    assert len(ours) == 1 and "counter packets 0 " not in ours[0]
    # and a port nobody opened is still dropped
    assert _rtp_reaches_phone(lab, 7777 if wan_port != 7777 else 7779) is None


def test_table_flushed_by_fw4_comes_back_on_hup_with_live_pinholes(lab, alg):
    _load_fw4(lab, [INCLUDE], alg)
    wan_port = _offer(lab, b"fw4-2")
    before = alg.kernel_table()
    lab.run(lab.rtr, "nft", "delete", "table", "ip", "sipalg")     # `fw4 flush` deletes every table
    alg.proc.send_signal(signal.SIGHUP)                              # what the fw4 include script sends
    deadline = time.monotonic() + 5
    while not alg.kernel_table().get("sip2lan") and time.monotonic() < deadline:
        time.sleep(0.2)
    after = alg.kernel_table()
    for name in ("lan2wan", "sip2lan", "media2lan", "media_peer", "sip_peer"):
        assert len(after[name]) == len(before[name]) > 0, name
    got = _rtp_reaches_phone(lab, wan_port)
    assert got is not None and got[0] == (SERVER, 20000)
    assert "re-installed" in alg.log()


HELPERS = """table inet fw4 {
  ct helper sip { type "sip" protocol udp; }
  ct helper ftp { type "ftp" protocol tcp; }
  chain helper_lan {
    meta l4proto udp udp dport 5060 ct helper set "sip" comment "!fw4: SIP VoIP connection tracking"
    meta l4proto tcp tcp dport 21 ct helper set "ftp" comment "!fw4: FTP FTP connection tracking"
  }
}
"""


def test_kernel_sip_helper_is_taken_out_and_stays_out_after_fw4_reload(lab, logdir):
    conf = os.path.join(logdir, "sipalg.conf")
    with open(conf, "w") as f:
        f.write("config sipalg 'main'\n\toption wan_if '%s'\n\toption lan_if '%s'\n"
                "\toption disable_kernel_helper '1'\n" % (lab.wan_if, lab.lan_if))
    lab.nft(lab.rtr, HELPERS)
    a = Alg(lab, logdir, "--config", conf).start()
    try:
        def rules():
            return lab.run(lab.rtr, "nft", "list", "table", "inet", "fw4").stdout.decode()
        t = rules()
        assert 'ct helper set "sip"' not in t and "ct helper sip" not in t
        assert 'ct helper set "ftp"' in t and "ct helper ftp" in t          # other helpers stay
        # fw4 reload puts it back (built-in helper: can't be unloaded); the include's HUP takes it out again
        lab.run(lab.rtr, "nft", "delete", "table", "inet", "fw4")
        lab.nft(lab.rtr, HELPERS)
        assert 'ct helper set "sip"' in rules()
        a.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while 'ct helper set "sip"' in rules() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert 'ct helper set "sip"' not in rules() and 'ct helper set "ftp"' in rules()
        assert "kernel SIP helper: removed rule inet fw4 helper_lan" in a.log()
        a.note_rules()                  # taking the kernel's helper out is what it was asked to do
    finally:
        a.stop()
