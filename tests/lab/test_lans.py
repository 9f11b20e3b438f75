"""More than one LAN (a VoIP VLAN beside br-lan) and LAN hosts the ALG leaves alone."""
import os
import time

from tests.support.lab.netns import PHONES, ROUTER_WAN, SERVER, sh
from tests.support.lab.peers import Alg, recv_udp, received, send_udp

SRV = (SERVER, 5060)
VOIP_PHONE = "10.0.9.2"


def _options(ip, n):
    return (("OPTIONS sip:bob@203.0.113.10 SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bKl%s\r\n"
             "From: <sip:a@%s>;tag=1\r\nTo: <sip:bob@203.0.113.10>\r\nCall-ID: l%s\r\nCSeq: 1 OPTIONS\r\n"
             "Contact: <sip:a@%s:5060>\r\nContent-Length: 0\r\n\r\n") % (ip, n, ip, n, ip)).encode()


def _through(lab, ns, ip, n):
    rx = recv_udp(lab, lab.wan, SRV)
    sent = _options(ip, n)
    send_udp(lab, ns, (ip, 5060), SRV, sent)
    return sent, received(rx)


def _voip_vlan(lab):
    """A second LAN: router interface voip0 (10.0.9.1/24) and a phone 10.0.9.2 behind it."""
    ns = lab.id + "-ph3"
    sh(["ip", "netns", "add", ns])
    lab.namespaces.append(ns)                         # removed with the lab
    lab.run(ns, "ip", "link", "set", "lo", "up")
    in_r = ["netns", lab.rtr] if lab.rtr else []        # the VM's router is the VM itself
    sh(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "voip0"] + in_r)
    lab.run(lab.rtr, "ip", "addr", "add", "10.0.9.1/24", "dev", "voip0")
    lab.run(lab.rtr, "ip", "link", "set", "voip0", "up")
    lab.run(ns, "ip", "addr", "add", VOIP_PHONE + "/24", "dev", "eth0")
    lab.run(ns, "ip", "link", "set", "eth0", "up")
    lab.run(ns, "ip", "route", "add", "default", "via", "10.0.9.1")
    lab.run(lab.rtr, "nft", "add", "rule", "ip", "lab_nat", "post", "oifname", "wan0", "masquerade")
    return ns


def test_a_voip_vlan_beside_the_lan_is_served_and_an_excluded_host_left_alone(lab, logdir):
    ph3 = _voip_vlan(lab)
    cfg = os.path.join(logdir, "lans.conf")
    with open(cfg, "w") as f:
        f.write("config sipalg 'main'\n\toption wan_if 'wan0'\n\tlist lan_if 'br0'\n\tlist lan_if 'voip0'\n"
                "\tlist exclude '%s'\n" % PHONES[1])
    alg = Alg(lab, logdir, config=cfg).start()
    try:
        time.sleep(0.3)
        for ns, ip, n in ((lab.ph1, PHONES[0], "a"), (ph3, VOIP_PHONE, "b")):
            sent, got = _through(lab, ns, ip, n)
            assert got is not None and b"Via: SIP/2.0/UDP %s:" % ROUTER_WAN.encode() in got[1], ip
            assert ip.encode() not in got[1].replace(b"Call-ID: l" + n.encode(), b"")
        sent, got = _through(lab, lab.ph2, PHONES[1], "c")      # the excluded host: as it came
        assert got is not None and got[1] == sent
        st = alg.status()
        assert st["counters"]["excluded"] == 1
        assert sorted(b["lan"] for b in st["bindings"]) == ["10.0.0.2:5060", "10.0.9.2:5060"]
        rules = lab.run(lab.rtr, "nft", "list", "table", "ip", "sipalg").stdout.decode()
        assert '{ "br0", "voip0" }' in rules
    finally:
        alg.stop()
