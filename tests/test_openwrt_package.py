"""The OpenWrt packages as opkg sees them: archive layout, control, modes, scripts, no dangling paths.

Builds dist-like .ipk files with scripts/mkipk into a temporary directory and
unpacks them with the standard tools (tar, gzip), as a router would.
"""
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.support import ROOT
from tests.support.fw4 import fw4_ruleset
from tests.support.ipkbuild import build_all
from tests.support.need import need

FILES = os.path.join(ROOT, "openwrt", "sipalg", "files")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("dist"))


def _unpack(ipk, dest):
    """Unpack an .ipk with tar, the way opkg-lede reads it (outer gzip'd tar)."""
    os.makedirs(dest)
    subprocess.run(["tar", "-xzf", ipk, "-C", dest], check=True)
    for part in ("control", "data"):
        os.makedirs(os.path.join(dest, part))
        subprocess.run(["tar", "-xzf", os.path.join(dest, part + ".tar.gz"), "-C", os.path.join(dest, part)],
                       check=True)
    return dest


def _control(path):
    fields = {}
    key = None
    for line in open(path).read().split("\n"):
        if line.startswith(" ") and key:
            fields[key] += "\n" + line
        elif ":" in line:
            key, _, val = line.partition(":")
            fields[key] = val.strip()
    return fields


def test_both_packages_built_with_opkg_names(built):
    assert sorted(built) == ["luci-app-sipalg", "sipalg"]
    for name, path in built.items():
        assert re.fullmatch(r"%s_\d+\.\d+\.\d+-r\d+_all\.ipk" % re.escape(name), os.path.basename(path))


def test_outer_archive_is_gzipped_tar_in_ipkg_build_order(built):
    for path in built.values():
        with open(path, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"              # gzip, not ar
        with gzip.open(path) as f:
            outer = tarfile.open(fileobj=io.BytesIO(f.read()))
        assert outer.getnames() == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
        assert outer.extractfile("./debian-binary").read() == b"2.0\n"
        for m in outer.getmembers():
            assert m.uid == 0 and m.gid == 0


def test_build_is_reproducible(built, tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "mkipk"), "-o", str(tmp_path)],
                       stdout=subprocess.PIPE, check=True)
    again = {os.path.basename(p).split("_")[0]: p for p in r.stdout.decode().split()}
    for name, path in built.items():
        assert open(path, "rb").read() == open(again[name], "rb").read(), name


def test_sipalg_control_fields_conffiles_and_scripts(built, tmp_path):
    d = _unpack(built["sipalg"], str(tmp_path / "x"))
    c = _control(os.path.join(d, "control", "control"))
    assert c["Package"] == "sipalg" and c["Architecture"] == "all"
    deps = [x.strip() for x in c["Depends"].split(",")]
    for dep in ("python3-light", "python3-logging", "python3-ctypes", "nftables-json", "kmod-nft-queue", "kmod-nfnetlink-queue",
                "kmod-nfnetlink-cthelper"):
        assert dep in deps
    assert all(not dep.startswith("+") for dep in deps)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(d, "data")) for f in fs)
    assert int(c["Installed-Size"]) == size
    assert c["Description"].strip() and c["Version"].endswith("-r1")
    assert open(os.path.join(d, "control", "conffiles")).read() == "/etc/config/sipalg\n"
    for script, default in (("postinst", "default_postinst"), ("prerm", "default_prerm")):
        text = open(os.path.join(d, "control", script)).read()
        assert text.startswith("#!/bin/sh\n") and "%s $0 $@" % default in text
        assert '[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0' in text
        assert os.stat(os.path.join(d, "control", script)).st_mode & 0o777 == 0o755
    assert c["Require-User"] == "sipalg:sipalg"            # default_postinst creates the daemon's user
    # the custom prerm takes back what sipalg put in the firewall config (not on an upgrade)
    prerm = open(os.path.join(d, "control", "prerm-pkg")).read()
    assert "/usr/sbin/sipalg firewall restore" in prerm and '[ "${PKG_UPGRADE}" = 1 ] && exit 0' in prerm
    defaults = open(os.path.join(d, "data", "etc", "uci-defaults", "90-sipalg")).read()
    assert "/usr/sbin/sipalg firewall sync --no-reload" in defaults
    postinst = open(os.path.join(d, "control", "postinst-pkg")).read()
    assert "killall -s HUP ubusd" in postinst                 # ubusd reads the daemon's ACL


def test_sipalg_data_tree_modes_and_no_dangling_paths(built, tmp_path):
    d = _unpack(built["sipalg"], str(tmp_path / "x"))
    data = os.path.join(d, "data")

    def mode(p):
        return os.stat(os.path.join(data, p.lstrip("/"))).st_mode & 0o777
    assert mode("/etc/init.d/sipalg") == 0o755
    assert mode("/usr/sbin/sipalg") == 0o755
    assert mode("/etc/config/sipalg") == 0o600
    assert mode("/etc/uci-defaults/90-sipalg") == 0o755
    assert mode("/etc/uci-defaults/91-sipalg-bytecode") == 0o755
    assert mode("/usr/share/sipalg/fw4-reload.sh") == 0o755
    assert mode("/usr/share/sipalg/forward-pinholes.nft") == 0o644
    assert mode("/usr/share/sipalg/capabilities.json") == 0o644
    assert mode("/usr/share/acl.d/sipalg.json") == 0o644
    assert not os.path.exists(os.path.join(data, "usr/share/nftables.d"))     # a uci include per WAN zone instead
    with tarfile.open(os.path.join(d, "data.tar.gz")) as t:
        assert all(m.uid == 0 and m.gid == 0 for m in t.getmembers())
    # every absolute path the shipped scripts name is in the package, OpenWrt's base system
    # (base-files, procd) or a dependency (python3-light)
    base = {"/etc/rc.common", "/lib/functions/procd.sh", "/usr/bin/python3", "/lib/functions/network.sh",
            "/sbin/ujail", "/var/etc/sipalg/sipalg", "/sys/class/leds/", "/var/run/sipalg"}
    for rel in ("etc/init.d/sipalg", "usr/sbin/sipalg", "etc/uci-defaults/90-sipalg",
                "etc/uci-defaults/91-sipalg-bytecode", "usr/share/sipalg/fw4-reload.sh"):
        text = open(os.path.join(data, rel)).read()
        for p in re.findall(r"(?<![\w.])(/(?:etc|usr|lib|var)/[\w./-]+)", text):
            p = p.rstrip(".")
            assert os.path.exists(os.path.join(data, p.lstrip("/"))) or p in base, "%s names %s" % (rel, p)
    # the wrapper's package dir holds the daemon and every module it imports, and no test support; no
    # bytecode either: it is for one python3 version, and the router compiles its own (91-sipalg-bytecode)
    assert not any(x in dp for dp, _, _ in os.walk(data) for x in ("__pycache__", "/lab", "/tests"))
    assert not [f for _, _, fs in os.walk(data) for f in fs if f.endswith((".pyc", ".pyo"))]
    lib = os.path.join(data, "usr/lib/sipalg")
    r = subprocess.run([sys.executable, "-I", "-B", "-c",
                        "import sys; sys.path.insert(0, %r); import alg.cli, alg.daemon, alg.status, alg.options, "
                        "alg.kernel.nftables, alg.kernel.nftjson, alg.kernel.queue, alg.kernel.nfnetlink_queue, "
                        "alg.kernel.helper, alg.uci; print(alg.__file__); print(' '.join(sorted(alg.cli.COMMANDS)))"
                        % lib], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    where, commands = r.stdout.decode().splitlines()
    assert where.startswith(lib) and commands == "firewall replay run status"          # no `sipalg demo` on a router
    # pip installs the same packages as the .ipk
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        listed = re.search(r"^packages = \[(.*)\]$", f.read(), re.M).group(1)
    shipped = sorted(os.path.relpath(dp, lib).replace("/", ".") for dp, _, fs in os.walk(lib) if "__init__.py" in fs)
    assert sorted(re.findall(r'"([\w.]+)"', listed)) == shipped == ["alg", "alg.core", "alg.kernel"]
    # the uci file shipped is the one the daemon reads
    sys.path.insert(0, ROOT)
    from alg import uci
    main = uci.section(uci.load(os.path.join(data, "etc/config/sipalg")), "sipalg", "main")
    assert main.get("enabled") == "0"          # installed idle until the owner enables it


def test_luci_data_tree_matches_menu_acl_and_rpcd(built, tmp_path):
    import json
    d = _unpack(built["luci-app-sipalg"], str(tmp_path / "x"))
    data = os.path.join(d, "data")
    c = _control(os.path.join(d, "control", "control"))
    assert c["Architecture"] == "all" and "sipalg" in [x.strip() for x in c["Depends"].split(",")]
    menu = json.load(open(os.path.join(data, "usr/share/luci/menu.d/luci-app-sipalg.json")))
    views = [e["action"]["path"] for e in menu.values() if e.get("action", {}).get("type") == "view"]
    assert views
    for v in views:
        assert os.path.exists(os.path.join(data, "www/luci-static/resources/view", v + ".js")), v
    acl = json.load(open(os.path.join(data, "usr/share/rpcd/acl.d/luci-app-sipalg.json")))
    objects = set()
    for grant in acl.values():
        for access in ("read", "write"):
            objects |= set(grant.get(access, {}).get("ubus", {}))
    plugins = os.listdir(os.path.join(data, "usr/libexec/rpcd"))
    assert any(o in plugins for o in objects)
    for p in plugins:
        assert os.stat(os.path.join(data, "usr/libexec/rpcd", p)).st_mode & 0o111
    post = open(os.path.join(d, "control", "postinst-pkg")).read()
    assert "luci-indexcache" in post and "rpcd" in post


def test_shell_scripts_pass_sh_n_and_shellcheck():
    scripts = [os.path.join(FILES, f) for f in ("sipalg.init", "sipalg.uci-defaults", "sipalg-bytecode.uci-defaults",
                                                "fw4-reload.sh")]
    for s in scripts:
        r = subprocess.run(["sh", "-n", s], stderr=subprocess.PIPE)
        assert r.returncode == 0, r.stderr.decode()
    need(shutil.which("shellcheck") is not None, "needs shellcheck (scripts/setup installs it)")
    r = subprocess.run(["shellcheck"] + scripts, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_nft_includes_load_into_fw4_shaped_ruleset(tmp_path):
    need(os.geteuid() == 0, "needs root (nft -c talks to the kernel)")
    need(shutil.which("nft") is not None and shutil.which("unshare") is not None, "needs nft and unshare")
    inc = os.path.join(FILES, "forward-pinholes.nft")
    path = tmp_path / "fw4.nft"
    path.write_text(fw4_ruleset("br-lan", "eth1", [inc]))
    r = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    # and a broken include would be refused: the check has teeth
    bad = tmp_path / "bad.nft"
    bad.write_text(open(inc).read().replace("accept", "acept"))
    path.write_text(fw4_ruleset("br-lan", "eth1", [str(bad)]))
    r = subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode != 0
