"""Install into a throwaway root the way opkg does, remove again: the root is as it was, conffiles aside.

The root holds the QEMU VM's stand-ins for OpenWrt's /lib/functions.sh,
/lib/functions/procd.sh and /etc/rc.common (qemu/guest/overlay) so the real
maintainer scripts from the .ipk run: default_postinst enables the init
script (rc.d links), default_prerm disables it.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.ipkbuild import build_all

OPKG = os.path.join(ROOT, "scripts", "opkg-offline")


@pytest.fixture(scope="module")
def ipks(tmp_path_factory):
    return sorted(build_all(tmp_path_factory.mktemp("dist")).values())


def _router_root(path):
    """A small OpenWrt-like root: base files, configs, another service, opkg's records."""
    overlay = os.path.join(ROOT, "qemu", "guest", "overlay")
    for rel in ("etc/rc.common", "lib/functions.sh", "lib/functions/procd.sh"):
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        shutil.copy2(os.path.join(overlay, rel), os.path.join(path, rel))
    files = {
        "etc/config/network": "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n",
        "etc/config/firewall": "config defaults\n\toption input 'REJECT'\n\toption forward 'REJECT'\n",
        "etc/init.d/network": "#!/bin/sh /etc/rc.common\nSTART=20\nSTOP=90\n",
        "usr/share/nftables.d/table-post/10-other.nft": "chain other {}\n",
        "usr/lib/opkg/info/base-files.list": "/etc/rc.common\n/lib/functions.sh\n",
        "usr/lib/opkg/info/base-files.control": "Package: base-files\nVersion: 1\n",
        "usr/lib/opkg/status": "Package: base-files\nVersion: 1\nStatus: install user installed\n"
                               "Architecture: x86_64\n\n",
        "www/index.html": "<html></html>\n",
    }
    for rel, text in files.items():
        p = os.path.join(path, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    os.chmod(os.path.join(path, "etc/init.d/network"), 0o755)
    os.makedirs(os.path.join(path, "etc/rc.d"))
    os.symlink("../init.d/network", os.path.join(path, "etc/rc.d/S20network"))
    return path


def _snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", os.stat(p).st_mode & 0o7777)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", os.stat(p).st_mode & 0o7777, hashlib.sha256(f.read()).hexdigest())
    return out


def _opkg(*args):
    r = subprocess.run([sys.executable, OPKG] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    return r.stdout.decode()


def test_install_enables_and_remove_restores_the_root(ipks, tmp_path):
    root = _router_root(str(tmp_path / "root"))
    before = _snapshot(root)
    _opkg("install", root, *ipks)
    # the data is there, the postinst enabled the service (rc.d links) but nothing ran it
    assert os.readlink(os.path.join(root, "etc/rc.d/S95sipalg")) == "../init.d/sipalg"
    assert os.readlink(os.path.join(root, "etc/rc.d/K10sipalg")) == "../init.d/sipalg"
    assert os.access(os.path.join(root, "usr/sbin/sipalg"), os.X_OK)
    assert os.path.exists(os.path.join(root, "www/luci-static/resources/view/sipalg/settings.js"))
    status = open(os.path.join(root, "usr/lib/opkg/status")).read()
    assert "Package: sipalg\n" in status and "Package: luci-app-sipalg\n" in status
    assert " /etc/config/sipalg " in status                 # conffile recorded with its md5
    # offline (IPKG_INSTROOT) the uci-defaults wait for first boot, as on an image build
    assert os.path.exists(os.path.join(root, "etc/uci-defaults/90-sipalg"))
    assert "sipalg" not in open(os.path.join(root, "etc/config/firewall")).read()

    _opkg("remove", root, "luci-app-sipalg", "sipalg")
    assert _snapshot(root) == before


def test_changed_conffile_is_kept_on_remove_and_not_overwritten_on_install(ipks, tmp_path):
    root = _router_root(str(tmp_path / "root"))
    before = _snapshot(root)
    sipalg = [p for p in ipks if os.path.basename(p).startswith("sipalg_")]
    _opkg("install", root, *sipalg)
    conf = os.path.join(root, "etc/config/sipalg")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:                                # the owner enables it
        f.write(text.replace("option enabled '0'", "option enabled '1'"))
    out = _opkg("remove", root, "sipalg")
    assert "Not deleting modified conffile /etc/config/sipalg" in out
    after = _snapshot(root)
    assert set(after) - set(before) == {"etc/config/sipalg"}
    assert {k: v for k, v in after.items() if k != "etc/config/sipalg"} == before
    # reinstalling keeps the owner's file and puts the package's beside it, as opkg does
    _opkg("install", root, *sipalg)
    assert "option enabled '1'" in open(conf).read()
    assert "option enabled '0'" in open(conf + "-opkg").read()


def test_first_boot_compiles_bytecode_for_the_routers_python_and_remove_takes_it_back(ipks, tmp_path):
    """Installed into an image (offline), the bytecode waits for the router's python3: its first boot
    runs 91-sipalg-bytecode, after which the daemon's modules load from __pycache__ without compiling;
    removing the package takes the bytecode (no file of the package's) and its directories too."""
    root = _router_root(str(tmp_path / "root"))
    before = _snapshot(root)
    _opkg("install", root, *ipks)
    lib = os.path.join(root, "usr/lib/sipalg")
    script = os.path.join(root, "etc/uci-defaults/91-sipalg-bytecode")
    assert os.path.exists(script)
    assert not [d for d, _, _ in os.walk(lib) if d.endswith("__pycache__")]     # nothing compiled offline
    # first boot: the script with the router's python3 (here: the one running the tests, first on PATH)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, str(bindir / "python3"))
    env = dict(os.environ, IPKG_INSTROOT=root, PATH="%s:%s" % (bindir, os.environ["PATH"]))
    r = subprocess.run(["sh", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    sources = sorted(os.path.relpath(os.path.join(d, f), lib) for d, _, fs in os.walk(lib) for f in fs
                     if f.endswith(".py"))
    tag = sys.implementation.cache_tag
    for src in sources:
        pyc = os.path.join(lib, os.path.dirname(src), "__pycache__", "%s.%s.pyc" % (os.path.basename(src)[:-3], tag))
        assert os.path.exists(pyc), pyc
    # the daemon's modules come from it: python3 -v says where each code object came from
    r = subprocess.run([sys.executable, "-I", "-B", "-v", "-c", "import sys; sys.path.insert(0, %r); "
                        "import alg.cli, alg.daemon, alg.status, alg.kernel.queue" % lib],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    loaded = re.findall(r"^# code object from '?(%s/\S+?)'?$" % re.escape(lib), r.stderr, re.M)
    assert loaded and all("/__pycache__/" in p and p.endswith(".%s.pyc" % tag) for p in loaded), loaded
    assert {"alg/__pycache__/daemon.%s.pyc" % tag, "alg/kernel/__pycache__/queue.%s.pyc" % tag} <= \
        {os.path.relpath(p, lib) for p in loaded}

    _opkg("remove", root, "luci-app-sipalg", "sipalg")
    after = _snapshot(root)
    assert after == before, sorted(set(after) ^ set(before))
