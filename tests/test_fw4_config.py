"""What `sipalg firewall sync|restore` does to fw4's uci config, in a throwaway root.

The router's /etc/config/firewall and /etc/config/network, fw4's helper
definitions and a /sys/module with the modules fw4 would find; the writes go
through the QEMU VM's uci stand-in (qemu/guest/overlay/sbin/uci), as the
init script's would through OpenWrt's uci.  What fw4 then renders from it is
the VM's part (tests/qemu/guest_scenarios.py).
"""
import os
import subprocess
import sys

import pytest

from alg import fw4, uci
from tests.support import ROOT
from tests.support.need import need

UCI = os.path.join(ROOT, "qemu", "guest", "overlay", "sbin", "uci")

FIREWALL = """config defaults
	option input 'REJECT'
	option forward 'REJECT'

config zone
	option name 'lan'
	list network 'lan'
	option input 'ACCEPT'
	option forward 'ACCEPT'

config zone
	option name '%(wan)s'
	list network 'wan'
	list network 'wan6'
	option forward 'DROP'
	option masq '1'

config forwarding
	option src 'lan'
	option dest '%(wan)s'
"""

NETWORK = """config interface 'lan'
	option device 'br-lan'

config interface 'wan'
	option device 'eth1'
"""

# fw4's own definitions of these three, as the VM ships them (firewall4 root/usr/share/firewall4/helpers)
with open(os.path.join(ROOT, "qemu", "guest", "overlay", "usr", "share", "firewall4", "helpers")) as _f:
    HELPERS = _f.read()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for d in ("etc/config", "usr/share/firewall4", "sys/module", "lib/modules"):
        (r / d).mkdir(parents=True)
    (r / "etc/config/firewall").write_text(FIREWALL % {"wan": "wan"})
    (r / "etc/config/network").write_text(NETWORK)
    (r / "usr/share/firewall4/helpers").write_text(HELPERS)
    return r


def _modules(root, *names):
    for n in names:
        (root / "sys/module" / n).mkdir()


def _fw(root):
    return fw4.Firewall(str(root), uci_bin=UCI)


def _sync(root, wan_if="wan", helper_off=True):
    out = []
    assert fw4.sync(_fw(root), wan_if, helper_off, devices=fw4.network_devices(
        uci.load(str(root / "etc/config/network"))), zone_of={}, log=out.append) == 0
    return out


def _sections(root):
    return uci.load(str(root / "etc/config/firewall"))


def _by_name(root):
    return {s.name: s for s in _sections(root) if s.name}


def _zone(root, name):
    return next(s for s in _sections(root) if s.type == "zone" and s.get("name") == name)


def _same_config(root, text):
    """The file means what `text` means (uci rewrites the layout on commit)."""
    def norm(sections):
        return [(s.type, s.name, sorted(s.options.items())) for s in sections]
    assert norm(_sections(root)) == norm(uci.parse(text))


def _includes(root):
    return {n: dict(s.options) for n, s in _by_name(root).items() if s.type == "include"}


def test_the_include_follows_a_wan_zone_named_otherwise(root):
    (root / "etc/config/firewall").write_text(FIREWALL % {"wan": "internet"})
    log = _sync(root)
    inc = _includes(root)
    assert inc["sipalg"] == {"type": "script", "path": fw4.RELOAD_SCRIPT, "fw4_compatible": "1"}
    assert inc["sipalg_fwd_internet"] == {"type": "nftables", "path": fw4.INCLUDE_PATH,
                                          "position": "chain-prepend", "chain": "forward_internet"}
    assert len(inc) == 2 and any("forward_internet" in line for line in log)
    # again: nothing to change
    before = (root / "etc/config/firewall").read_text()
    assert _sync(root) == [] and (root / "etc/config/firewall").read_text() == before


def test_several_wan_zones_a_device_name_and_a_zone_renamed(root):
    text = FIREWALL % {"wan": "wan"} + "\nconfig zone 'voip'\n\toption name 'voip'\n\tlist network 'wan'\n"
    (root / "etc/config/firewall").write_text(text)
    _sync(root, wan_if="eth1")                       # a device: found through /etc/config/network
    chains = sorted(i["chain"] for i in _includes(root).values() if i["type"] == "nftables")
    assert chains == ["forward_voip", "forward_wan"]
    # the owner renames the WAN zone in LuCI: the include follows, the other zone's stays
    subprocess.run([UCI, "-c", str(root / "etc/config"), "-t", str(root / "tmp/.uci"), "batch"], check=True,
                   input=b"set firewall.@zone[1].name='isp'\nset firewall.@forwarding[0].dest='isp'\ncommit firewall\n")
    log = _sync(root, wan_if="eth1")
    inc = _includes(root)
    assert sorted(i["chain"] for i in inc.values() if i["type"] == "nftables") == ["forward_isp", "forward_voip"]
    assert "sipalg_fwd_wan" not in inc and any("removed include firewall.sipalg_fwd_wan" in line for line in log)


def test_a_wan_if_in_no_zone_says_so_and_gets_no_include(root):
    log = _sync(root, wan_if="wwan")
    assert [n for n, i in _includes(root).items() if i["type"] == "nftables"] == []
    assert any("sipalg.main.wan_if 'wwan' is in no firewall zone" in line for line in log)


def test_sip_helper_off_the_uci_way_and_put_back_exactly(root):
    original = (root / "etc/config/firewall").read_text()
    _modules(root, "nf_conntrack_sip", "nf_conntrack_ftp")          # tftp defined, not installed
    _sync(root)
    lan = _zone(root, "lan")
    # the lan zone attached every available helper (auto_helper, no masq): now all but sip, and
    # only available ones (fw4 warns about listed helpers it doesn't have: openwrt/openwrt #9574)
    assert lan.get("auto_helper") == "0" and lan.get_list("helper") == ["ftp"]
    assert _zone(root, "wan").get("auto_helper") is None           # masq: fw4 attaches nothing there
    mem = _by_name(root)["sipalg_helper_lan"]
    assert mem.type == fw4.MEMORY_TYPE and mem.get("was_auto_helper") == fw4.UNSET
    # sipalg disabled: what the zone had, and no memory left
    _sync(root, helper_off=False)
    lan = _zone(root, "lan")
    assert lan.get("auto_helper") is None and lan.get("helper") is None
    assert fw4.MEMORY_TYPE not in {s.type for s in _sections(root)}
    # removed: the includes go too, and the file means what it meant before
    assert fw4.restore(_fw(root), log=lambda m: None) == 0
    _same_config(root, original)


def test_listed_helpers_lose_sip_in_their_own_form_masq_zones_too(root):
    text = (FIREWALL % {"wan": "wan"}).replace("\toption masq '1'\n", "\toption masq '1'\n\tlist helper 'sip'\n"
                                                "\tlist helper 'ftp'\n")
    text = text.replace("\toption forward 'ACCEPT'\n", "\toption forward 'ACCEPT'\n\toption helper 'sip'\n", 1)
    (root / "etc/config/firewall").write_text(text)
    _modules(root, "nf_conntrack_sip", "nf_conntrack_ftp")
    _sync(root)
    # a masquerading zone's list is fw4's only way there (auto_helper does nothing: openwrt/openwrt #13009)
    wan = _zone(root, "wan")
    assert wan.get_list("helper") == ["ftp"] and wan.get("auto_helper") is None
    # lan listed sip alone: an empty list would mean "all available" with auto_helper on, so that goes off
    lan = _zone(root, "lan")
    assert lan.get("helper") is None and lan.get("auto_helper") == "0"
    assert fw4.restore(_fw(root), log=lambda m: None) == 0
    _same_config(root, text)
    assert _zone(root, "lan").get("helper") == "sip"                # an option again, not a list


def test_no_sip_module_on_the_router_no_zone_is_touched(root):
    _modules(root, "nf_conntrack_ftp")
    _sync(root)
    assert _zone(root, "lan").get("auto_helper") is None and _zone(root, "lan").get("helper") is None
    # a module on disk (kmod-nf-nathelper-sip installed, not loaded yet) counts: kmodloader loads it at boot
    d = root / "lib/modules" / os.uname().release
    d.mkdir(parents=True)
    (d / "nf_conntrack_sip.ko").write_bytes(b"")
    _sync(root)
    assert _zone(root, "lan").get("auto_helper") == "0" and _zone(root, "lan").get_list("helper") == ["ftp"]


def test_settings_the_owner_changed_since_are_theirs(root):
    _modules(root, "nf_conntrack_sip", "nf_conntrack_ftp")
    _sync(root)
    subprocess.run([UCI, "-c", str(root / "etc/config"), "-t", str(root / "tmp/.uci"), "batch"], check=True,
                   input=b"set firewall.@zone[0].auto_helper='1'\ndelete firewall.@zone[0].helper\n"
                         b"add_list firewall.@zone[0].helper='pptp'\ncommit firewall\n")
    log = []
    assert fw4.sync(_fw(root), "wan", False, devices={}, zone_of={}, log=log.append) == 0
    lan = _zone(root, "lan")
    assert lan.get("auto_helper") == "1" and lan.get_list("helper") == ["pptp"]
    assert fw4.MEMORY_TYPE not in {s.type for s in _sections(root)}
    assert any("left as it is" in line for line in log)


def test_the_command_line_reads_sipalgs_own_config(root, tmp_path):
    (root / "etc/config/firewall").write_text(FIREWALL % {"wan": "internet"})
    _modules(root, "nf_conntrack_sip")
    conf = tmp_path / "sipalg"
    conf.write_text("config sipalg 'main'\n\toption enabled '1'\n\toption wan_if 'wan'\n\toption lan_if 'lan'\n"
                    "\toption disable_kernel_helper '1'\n")
    env = dict(os.environ, PATH=os.path.dirname(UCI) + os.pathsep + os.environ["PATH"], PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "alg", "firewall", "sync", "--root", str(root), "--config", str(conf)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout.decode()
    assert "sipalg_fwd_internet" in _includes(root) and _zone(root, "lan").get("auto_helper") == "0"
    r = subprocess.run([sys.executable, "-m", "alg", "firewall", "restore", "--root", str(root)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout.decode()
    _same_config(root, FIREWALL % {"wan": "internet"})


def test_what_fw4_renders_from_it_loads_and_follows_the_zone(root):
    """The config after a sync, rendered as fw4 renders it (tests/support/fw4.py render(), the VM's
    fw4 stand-in): nft takes it, the include sits first in forward_<the WAN zone>, the sip helper is
    off in helper_lan and ftp still there."""
    import shutil
    from tests.support.fw4 import render
    need(os.geteuid() == 0 and shutil.which("unshare") is not None, "needs root and unshare (nft -c)")
    (root / "etc/config/firewall").write_text(FIREWALL % {"wan": "internet"})
    _modules(root, "nf_conntrack_sip", "nf_conntrack_ftp")
    helpers = [(s.get("name"), s.get("module"), s.get("proto", "udp"), s.get("port"))
               for s in uci.parse(HELPERS)]
    before = render(_sections(root), {"lan": "br-lan", "wan": "eth1"}, helpers, set(os.listdir(root / "sys/module")))
    assert 'ct helper set "sip"' in before
    _sync(root)
    text = render(_sections(root), {"lan": "br-lan", "wan": "eth1"}, helpers, set(os.listdir(root / "sys/module")))
    text = text.replace(fw4.INCLUDE_PATH, os.path.join(ROOT, "openwrt", "sipalg", "files", "forward-pinholes.nft"))
    chain = text.split("chain forward_internet {\n", 1)[1]
    assert chain.startswith('\t\tinclude "') and "forward-pinholes.nft" in chain.split("\n", 1)[0]
    helper_lan = text.split("chain helper_lan {\n", 1)[1].split("}", 1)[0]
    assert 'ct helper set "ftp"' in helper_lan and "sip" not in helper_lan
    path = root / "fw4.nft"
    path.write_text(text)
    r = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode() + text
