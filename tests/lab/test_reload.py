"""A reload applies every option the LuCI page edits, live; a bad value keeps the old config.

Each test runs the daemon from a uci file alone (no flags for what the file
says), edits the file as LuCI's Save & Apply would, sends SIGHUP (what
`reload_config` does through procd) and looks at the wire or the kernel.
"""
import os
import re
import time

import pytest

from tests.support.lab.netns import PHONES, SERVER, ROUTER_WAN
from tests.support.lab.peers import Alg, recv_udp, received, send_udp, write_config
from tests.support.lab.messages import invite

OPTIONS = (b"OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.%d:%d;branch=z9hG4bKr%d\r\n"
           b"From: <sip:a@10.0.0.%d>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: r%d\r\nCSeq: 1 OPTIONS\r\n"
           b"Contact: <sip:a@10.0.0.%d:%d>\r\nContent-Length: 0\r\n\r\n")


def options_from(lab, phone=0, port=5060, n=1, server_port=None):
    """An OPTIONS from phone ph1/ph2 on `port`, as the server receives it: (source, payload) or None."""
    ns = lab.ph1 if phone == 0 else lab.ph2
    octet = 2 + phone
    server_port = server_port or port
    rx = recv_udp(lab, lab.wan, (SERVER, server_port), timeout=3.0)
    time.sleep(0.2)
    send_udp(lab, ns, (PHONES[phone], port), (SERVER, server_port),
             OPTIONS % (octet, port, n, octet, n, octet, port))
    return received(rx)


def rewritten(got):
    return got is not None and b"Via: SIP/2.0/UDP %s:" % ROUTER_WAN.encode() in got[1]


@pytest.fixture
def cfg(lab, logdir):
    path = os.path.join(logdir, "sipalg.conf")
    base = {"wan_if": lab.wan_if, "lan_if": lab.lan_if, "log_level": "debug"}

    def write(**opts):
        write_config(path, **dict(base, **opts))
    write.path = path
    write()
    return write


def started(lab, logdir, cfg):
    return Alg(lab, logdir, config=cfg.path).start()


def test_sip_port_added_by_reload(lab, logdir, cfg):
    a = started(lab, logdir, cfg)
    try:
        assert not rewritten(options_from(lab, port=5080, n=1))        # not a SIP port yet
        cfg(sip_port=["5060", "5080"])
        a.reload()
        assert rewritten(options_from(lab, port=5080, n=2))
        assert sorted(a.kernel_table()["sip_ports"]) == [5060, 5080]
        assert "config reloaded: sipalg.main.sip_port" in a.log()
        assert a.proc.poll() is None
    finally:
        a.stop()


def _invite(n, rtp):
    body = ("v=0\r\no=- %d 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\n" % (n, rtp)).encode()
    head = ("INVITE sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKi%d\r\n"
            "From: <sip:a@10.0.0.2>;tag=%d\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: inv%d\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:a@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n"
            % (n, n, n, len(body))).encode()
    return head + body


def _media_lan_ports(a):
    return sorted(e[1]["concat"][1] for e in a.kernel_table().get("media2lan", []))


def test_rtp_ports_narrowed_and_widened_by_reload(lab, logdir, cfg):
    cfg(rtp_ports="10000-10999")
    a = started(lab, logdir, cfg)
    try:
        rx = recv_udp(lab, lab.wan, (SERVER, 5060))
        send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5060), _invite(1, 6000))
        got = received(rx)
        assert got is not None and b"m=audio 6000 " in got[1] and _media_lan_ports(a) == []
        assert "refused media for 10.0.0.2:6000: media port outside rtp_ports" in a.log()
        cfg(rtp_ports="6000-6999")
        a.reload()
        rx = recv_udp(lab, lab.wan, (SERVER, 5060))
        send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5060), _invite(2, 6000))
        assert received(rx) is not None
        assert _media_lan_ports(a) == [6000, 6001]
    finally:
        a.stop()


def test_lan_net_widened_by_reload(lab, logdir, cfg):
    cfg(lan_net=["10.0.0.3/32"])
    a = started(lab, logdir, cfg)
    try:
        assert not rewritten(options_from(lab, phone=0, n=1))          # 10.0.0.2 is not "the LAN"
        cfg(lan_net=["10.0.0.0/24"])
        a.reload()
        assert rewritten(options_from(lab, phone=0, n=3))
    finally:
        a.stop()


def _ruleset(lab, table="sipalg"):
    return lab.run(lab.rtr, "nft", "list", "table", "ip", table).stdout.decode()


def test_interfaces_changed_by_reload(lab, logdir, cfg):
    for dev, addr in (("wan9", "198.51.100.1/24"), ("lan9", "10.0.9.1/24")):
        lab.run(lab.rtr, "ip", "link", "add", dev, "type", "veth", "peer", "name", dev + "p")
        lab.run(lab.rtr, "ip", "addr", "add", addr, "dev", dev)
        lab.run(lab.rtr, "ip", "link", "set", dev, "up")
    a = started(lab, logdir, cfg)
    try:
        assert rewritten(options_from(lab, n=1))
        cfg(wan_if="wan9", lan_if="lan9")
        a.reload()
        rules = _ruleset(lab)
        assert '"wan9"' in rules and '"lan9"' in rules and '"wan0"' not in rules and '"br0"' not in rules
        st = a.status()
        assert (st["wan_if"], st["lan_if"], st["wan_ip"]) == ("wan9", "lan9", "198.51.100.1")
        # the phones' bridge is no longer the LAN: their SIP goes out as plain NAT made it
        assert not rewritten(options_from(lab, n=2))
        cfg()
        a.reload()
        assert rewritten(options_from(lab, n=3)) and a.status()["wan_ip"] == ROUTER_WAN
        assert a.proc.poll() is None
    finally:
        a.stop()


def _queue_nums(lab, table="sipalg"):
    nft = re.findall(r"queue (?:flags bypass )?(?:num|to) (\d+)", _ruleset(lab, table))
    ipt = re.findall(r"--queue-num (\d+)", lab.run(lab.rtr, "iptables-save", "-t", "mangle").stdout.decode())
    return sorted(set(nft + ipt))


def test_queue_num_changed_by_reload(lab, logdir, cfg):
    a = started(lab, logdir, cfg)
    try:
        assert _queue_nums(lab) == ["5060"] and rewritten(options_from(lab, n=1))
        cfg(queue_num="7")
        a.reload()
        assert _queue_nums(lab) == ["7"]
        assert rewritten(options_from(lab, n=2))                       # the daemon reads queue 7 now
    finally:
        a.stop()


def test_log_level_changed_by_reload(lab, logdir, cfg):
    cfg(log_level="info")
    a = started(lab, logdir, cfg)
    try:
        assert rewritten(options_from(lab, n=1))
        time.sleep(0.3)
        assert " DEBUG " not in a.log()
        cfg(log_level="debug")
        a.reload()
        assert rewritten(options_from(lab, n=2))
        time.sleep(0.3)
        assert re.search(r"DEBUG out 10\.0\.0\.2:5060 -> 203\.0\.113\.10:5060 rewritten: Via", a.log())
    finally:
        a.stop()


def test_keepalive_mode_changed_by_reload(lab, logdir, cfg):
    from tests.support.lab.peers import exchange_udp
    cfg(answer_keepalives="off")
    a = started(lab, logdir, cfg)
    try:
        options_from(lab, n=1)                                         # makes the phone's binding
        assert exchange_udp(lab, lab.wan, (SERVER, 5070), (ROUTER_WAN, 5060), b"\r\n\r\n", timeout=1.0) is None
        cfg(answer_keepalives="crlf")
        a.reload()
        got = exchange_udp(lab, lab.wan, (SERVER, 5070), (ROUTER_WAN, 5060), b"\r\n\r\n")
        assert got is not None and got[1] == b"\r\n"                  # answered by the router now
    finally:
        a.stop()


def test_leds_switched_on_by_reload(lab, logdir, cfg, tmp_path):
    led = tmp_path / "leds" / "ACT"
    led.mkdir(parents=True)
    (led / "trigger").write_text("none [mmc0] timer\n")
    (led / "brightness").write_text("0\n")
    (led / "max_brightness").write_text("255\n")
    root = str(tmp_path / "leds")
    cfg(leds={"enabled": "0", "registered": "ACT", "sysfs_root": root})
    a = started(lab, logdir, cfg)
    try:
        assert "[mmc0]" in (led / "trigger").read_text()
        cfg(leds={"enabled": "1", "registered": "ACT", "sysfs_root": root})
        a.reload()
        assert (led / "trigger").read_text().strip() == "none"          # taken over
        assert "status LEDs: registered on ACT" in a.log()
    finally:
        a.stop()
    assert (led / "trigger").read_text().strip() == "mmc0"              # given back (sysfs shows [mmc0])


def test_kernel_helper_disabled_by_reload(lab, logdir, cfg):
    lab.nft(lab.rtr, "table inet fwx {\n ct helper sip { type \"sip\" protocol udp; }\n"
                     " chain pre { type filter hook prerouting priority 0;\n"
                     "  udp dport 5060 ct helper set \"sip\"\n }\n}\n")
    cfg(disable_kernel_helper="0")
    a = started(lab, logdir, cfg)
    try:
        assert 'ct helper set "sip"' in lab.run(lab.rtr, "nft", "list", "table", "inet", "fwx").stdout.decode()
        cfg(disable_kernel_helper="1")
        a.reload()
        assert 'ct helper set "sip"' not in lab.run(lab.rtr, "nft", "list", "table", "inet", "fwx").stdout.decode()
        a.note_rules()                  # taking the kernel's helper out is what it was asked to do
    finally:
        a.stop()


BAD = [("log_level", "verbose"), ("queue_num", "abc"), ("queue_num", "70000"), ("rtp_ports", "9-3"),
       ("sip_port", ["99999"]), ("lan_net", ["not-a-net"]), ("answer_keepalives", "maybe"),
       ("wan_if", "nosuchdev0"), ("disable_kernel_helper", "2")]


def test_a_bad_value_on_reload_keeps_the_old_config_and_the_daemon(lab, logdir, cfg):
    a = started(lab, logdir, cfg)
    try:
        assert rewritten(options_from(lab, n=1))
        bindings = len(a.status()["bindings"])
        for i, (name, value) in enumerate(BAD):
            cfg(**{name: value})
            a.reload(wait=0.5)
            expected = "reload failed, keeping the old config: sipalg.main.%s" % name
            deadline = time.monotonic() + 5
            while a.log().count(expected) < 1 + sum(1 for n, _ in BAD[:i] if n == name) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert a.proc.poll() is None, "%s=%r stopped the daemon:\n%s" % (name, value, a.log()[-2000:])
            assert a.log().count(expected) == 1 + sum(1 for n, _ in BAD[:i] if n == name), (name, a.log()[-2000:])
            assert rewritten(options_from(lab, n=i + 2)), name
        assert len(a.status()["bindings"]) == bindings
        assert _queue_nums(lab) == ["5060"]
        assert "Traceback" not in a.log()
    finally:
        a.stop()


STRANGER, OTHER = "203.0.113.66", "203.0.113.67"        # internet hosts the phone never talked to


def _inbound_reaches(lab, src, n):
    """Does an OPTIONS from src to the router's WAN 5060 reach phone 1?"""
    rx = recv_udp(lab, lab.ph1, (PHONES[0], 5060), timeout=1.5)
    time.sleep(0.2)
    send_udp(lab, lab.wan, (src, 5070), (ROUTER_WAN, 5060),
             (b"OPTIONS sip:a@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5070;branch=z9hG4bKi%d\r\n"
              b"From: <sip:x@%s>;tag=x\r\nTo: <sip:a@203.0.113.1>\r\nCall-ID: in%d\r\nCSeq: 1 OPTIONS\r\n"
              b"Content-Length: 0\r\n\r\n") % (src.encode(), n, src.encode(), n))
    return received(rx) is not None


def test_exclude_changed_by_reload(lab, logdir, cfg):
    a = started(lab, logdir, cfg)
    try:
        assert rewritten(options_from(lab, phone=1, n=1))
        cfg(exclude=[PHONES[1]])
        a.reload()
        got = options_from(lab, phone=1, n=2)
        assert got is not None and got[1] == OPTIONS % (3, 5060, 2, 3, 2, 3, 5060)      # as it came
        assert rewritten(options_from(lab, phone=0, n=3))                            # the others still
        cfg(exclude=[])
        a.reload()
        assert rewritten(options_from(lab, phone=1, n=4))
    finally:
        a.stop()


def test_inbound_sip_and_sip_peer_changed_by_reload(lab, logdir, cfg):
    for ip in (STRANGER, OTHER):
        lab.run(lab.wan, "ip", "addr", "add", ip + "/32", "dev", "eth0")
    a = started(lab, logdir, cfg)
    try:
        assert rewritten(options_from(lab, n=1))            # phone 1's binding; its one peer: the server
        assert _inbound_reaches(lab, SERVER, 1)
        assert not _inbound_reaches(lab, STRANGER, 2)
        cfg(sip_peer=[STRANGER])
        a.reload()
        assert _inbound_reaches(lab, STRANGER, 3)          # its refused flow (ended at the router) forgotten
        assert not _inbound_reaches(lab, OTHER, 4)
        cfg(sip_peer=[STRANGER], inbound_sip="any")
        a.reload()
        assert _inbound_reaches(lab, OTHER, 5)
        cfg()
        a.reload()
        assert not _inbound_reaches(lab, OTHER, 6) and not _inbound_reaches(lab, STRANGER, 7)   # flows gone
        assert _inbound_reaches(lab, SERVER, 8)                                                 # the peer's kept
    finally:
        a.stop()


def _pinhole_admits_a_stranger(lab, call_id, rtp):
    """A new call's pinhole, before the answer: does RTP from a stranger reach the phone?"""
    rx = recv_udp(lab, lab.wan, (SERVER, 5060))
    time.sleep(0.2)
    send_udp(lab, lab.ph1, (PHONES[0], 5060), (SERVER, 5060), invite(call_id, rtp))
    got = received(rx)
    wan_port = int(got[1].split(b"m=audio ")[1].split(b" ")[0])
    rx = recv_udp(lab, lab.ph1, (PHONES[0], rtp), timeout=1.5)
    time.sleep(0.2)
    send_udp(lab, lab.wan, (STRANGER, 30000), (ROUTER_WAN, wan_port), b"\x80\x00\x00\x01" + b"\x00" * 40)
    return received(rx) is not None


def test_media_from_changed_by_reload(lab, logdir, cfg):
    lab.run(lab.wan, "ip", "addr", "add", STRANGER + "/32", "dev", "eth0")
    a = started(lab, logdir, cfg)
    try:
        assert not _pinhole_admits_a_stranger(lab, "mf1", 6000)
        cfg(media_from="any")
        a.reload()
        assert _pinhole_admits_a_stranger(lab, "mf2", 6010)              # new pinholes: anyone before the answer
        cfg(media_from="sdp")
        a.reload()
        assert not _pinhole_admits_a_stranger(lab, "mf3", 6020)
    finally:
        a.stop()


@pytest.mark.parametrize("option,meter,default", [("wan_sip_rate", "sip_flood", 200),
                                                   ("lan_sip_rate", "sip_flood_lan", 500)])
def test_sip_rate_changed_by_reload(lab, logdir, cfg, option, meter, default):
    a = started(lab, logdir, cfg)
    try:
        def rates():
            t = lab.run(lab.rtr, "nft", "list", "table", "ip", "sipalg").stdout.decode()
            return sorted(set(int(r) for r in re.findall(r"@%s \{ ip saddr limit rate over (\d+)/second" % meter, t)))
        assert rates() == [default]
        assert rewritten(options_from(lab, n=1))
        cfg(**{option: "5"})
        a.reload()
        assert rates() == [5]
        assert rewritten(options_from(lab, n=2))                     # the table rebuilt, the binding kept
        assert _inbound_reaches(lab, SERVER, 8)
        cfg(**{option: "0"})
        a.reload()
        assert rates() == []
        assert _inbound_reaches(lab, SERVER, 9)
        assert rewritten(options_from(lab, n=3))
        assert "config reloaded: sipalg.main.%s" % option in a.log()
    finally:
        a.stop()

