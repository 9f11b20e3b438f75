"""board/mkconfig: the Raspberry Pi ATA-router config set, read back with our own uci parser."""
import os
import re
import subprocess
import sys

import pytest

from alg import uci
from alg.leds import LedConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKCONFIG = os.path.join(REPO, "board", "mkconfig")
SHIPPED = os.path.join(REPO, "openwrt", "sipalg", "files", "sipalg.config")
MODELS = ("rpi", "rpi-2", "rpi-3", "rpi-4", "rpi-5")
NEEDED = ("sipalg", "luci-app-sipalg", "python3-light", "python3-logging", "kmod-nft-queue",
          "kmod-nfnetlink-queue", "kmod-nft-nat", "kmod-nfnetlink-cthelper", "kmod-nf-conntrack-netlink", "kmod-usb-net-rtl8152",
          "kmod-usb-net-asix-ax88179", "kmod-usb-net-cdc-ether", "luci")


def mkconfig(*args):
    return subprocess.run([sys.executable, MKCONFIG] + list(args), capture_output=True, text=True)


def generate(tmp_path, model, *extra):
    out = tmp_path / model
    r = mkconfig("--model", model, *extra, str(out))
    assert r.returncode == 0, r.stderr
    load = lambda name: uci.load(str(out / "etc" / "config" / name))  # noqa: E731
    return out, load("network"), load("firewall"), load("sipalg")


def interfaces(net):
    return {s.name: s for s in net if s.type == "interface"}


def zones(fw):
    return {s.get("name"): s for s in fw if s.type == "zone"}


@pytest.mark.parametrize("model", MODELS)
def test_network_lan_on_eth0_bridge_wan_on_usb_dhcp(tmp_path, model):
    _, net, _, _ = generate(tmp_path, model)
    ifs = interfaces(net)
    assert {"loopback", "lan", "wan"} <= set(ifs)
    lan, wan = ifs["lan"], ifs["wan"]
    assert (lan.get("proto"), lan.get("ipaddr"), lan.get("netmask")) == ("static", "192.168.1.1", "255.255.255.0")
    bridges = {s.get("name"): s for s in net if s.type == "device" and s.get("type") == "bridge"}
    assert lan.get("device") in bridges
    assert bridges[lan.get("device")].get_list("ports") == ["eth0"]
    assert (wan.get("proto"), wan.get("device")) == ("dhcp", "eth1")
    assert ifs["wan6"].get("device") == wan.get("device")
    assert wan.get("device") not in bridges[lan.get("device")].get_list("ports")


@pytest.mark.parametrize("model", MODELS)
def test_firewall_zones_masq_on_wan_only(tmp_path, model):
    _, net, fw, _ = generate(tmp_path, model)
    zs = zones(fw)
    assert set(zs) == {"lan", "wan"}
    assert "wan" in zs["wan"].get_list("network") and zs["lan"].get_list("network") == ["lan"]
    assert zs["wan"].get_bool("masq") is True
    assert zs["lan"].get_bool("masq", False) is False
    assert zs["wan"].get("input") == "REJECT" and zs["wan"].get("forward") in ("DROP", "REJECT")
    fwd = [(s.get("src"), s.get("dest")) for s in fw if s.type == "forwarding"]
    assert fwd == [("lan", "wan")]
    ifs = interfaces(net)
    for z in zs.values():
        for n in z.get_list("network"):
            assert n in ifs, "zone %s names network %s, which network does not define" % (z.get("name"), n)
    # no port forwards: sipalg opens media pinholes itself
    assert not [s for s in fw if s.type == "redirect"]


@pytest.mark.parametrize("model", MODELS)
def test_sipalg_enabled_on_the_board_interfaces_with_leds_auto(tmp_path, model):
    _, net, fw, cfg = generate(tmp_path, model)
    main = uci.section(cfg, "sipalg", "main")
    assert main.get_bool("enabled") is True
    ifs, zs = interfaces(net), zones(fw)
    assert main.get("wan_if") in ifs and main.get("lan_if") in ifs
    assert main.get("wan_if") in zs["wan"].get_list("network")
    assert main.get("lan_if") in zs["lan"].get_list("network")
    leds = LedConfig.from_section(uci.section(cfg, "leds", "leds"))
    assert leds.enabled and set(leds.names.values()) == {"auto"}


def test_sipalg_config_keeps_every_other_default(tmp_path):
    _, _, _, cfg = generate(tmp_path, "rpi-4")
    shipped = uci.load(SHIPPED)
    changed = {("main", "enabled"), ("leds", "enabled"), ("leds", "registered"), ("leds", "call"), ("leds", "error")}
    for sec in shipped:
        ours = uci.section(cfg, sec.type, sec.name)
        assert ours is not None and ours.name == sec.name
        for k, v in sec.options.items():
            if (sec.name, k) not in changed:
                assert ours.options.get(k) == v, "%s.%s" % (sec.name, k)


def test_lan_address_and_wan_device_can_be_chosen(tmp_path):
    _, net, _, _ = generate(tmp_path, "rpi-3", "--lan-ip", "10.20.0.1/16", "--wan-device", "eth2")
    ifs = interfaces(net)
    assert (ifs["lan"].get("ipaddr"), ifs["lan"].get("netmask")) == ("10.20.0.1", "255.255.0.0")
    assert ifs["wan"].get("device") == "eth2" and ifs["wan6"].get("device") == "eth2"


@pytest.mark.parametrize("args, needle", [
    (["--lan-ip", "192.168.1.300/24"], "'192.168.1.300/24'"),
    (["--lan-ip", "10.0.0.0/24"], "'10.0.0.0/24'"),
    (["--wan-device", "eth0"], "LAN port"),
    (["--wan-device", "bad/name"], "'bad/name'"),
])
def test_bad_options_are_refused_naming_them(tmp_path, args, needle):
    r = mkconfig("--model", "rpi-4", *args, str(tmp_path / "out"))
    assert r.returncode == 2 and needle in r.stderr
    assert not (tmp_path / "out").exists()


def test_uci_defaults_make_a_ula_prefix_once(tmp_path):
    out, _, _, _ = generate(tmp_path, "rpi-4")
    script = out / "etc" / "uci-defaults" / "90-sipalg-board"
    assert os.access(str(script), os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "uci.log"
    (fake / "uci").write_text('#!/bin/sh\necho "ARGS $*" >> "%s"\n[ "$2" = batch ] && cat >> "%s"\n'
                              '[ "$2" = get ] && echo "$PREFIX"\nexit 0\n' % (log, log))
    os.chmod(str(fake / "uci"), 0o755)
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]), PREFIX="")
    assert subprocess.run(["sh", str(script)], env=env).returncode == 0
    text = log.read_text()
    m = re.search(r"set network\.globals\.ula_prefix='(fd[0-9a-f]{2}:[0-9a-f]{4}:[0-9a-f]{4}::/48)'", text)
    assert m and "commit network" in text, text
    log.write_text("")
    env["PREFIX"] = "fd00:1:2::/48"                     # already there: leave it
    assert subprocess.run(["sh", str(script)], env=env).returncode == 0
    assert "batch" not in log.read_text()


@pytest.mark.parametrize("model", MODELS)
def test_packages_list(model):
    r = mkconfig("--model", model, "--packages")
    assert r.returncode == 0, r.stderr
    pkgs = r.stdout.split()
    assert set(NEEDED) <= set(pkgs) and len(pkgs) == len(set(pkgs))
    assert any(p.startswith("nftables") for p in pkgs)


def test_unknown_model_lists_the_known_ones(tmp_path):
    r = mkconfig("--model", "rpi-9", str(tmp_path / "out"))
    assert r.returncode == 2 and "'rpi-9'" in r.stderr
    for m in MODELS:
        assert m in r.stderr
    assert mkconfig("--model", "pi4", "--packages").returncode == 2


def test_help_explains_models_and_packages():
    r = mkconfig("--help")
    assert r.returncode == 0
    assert "--packages" in r.stdout and "FILES=" in r.stdout
    for sub in ("bcm2708", "bcm2709", "bcm2710", "bcm2711", "bcm2712"):
        assert sub in r.stdout


def test_out_directory_is_required_without_packages():
    r = mkconfig("--model", "rpi-4")
    assert r.returncode == 2 and "OUT" in r.stderr
