"""luci-app-sipalg under test: its files, its views rendered in jsdom on a reproduction of
LuCI's string handling (tests/luci), and its rpcd plugin run as rpcd runs it.  Used by
tests/test_luci.py and the lab's end-to-end status test."""
import json
import os
import subprocess
import sys

from tests.support import ROOT
from tests.support.need import need, need_tools

APP = os.path.join(ROOT, "openwrt", "luci-app-sipalg")
VIEWS = os.path.join(APP, "htdocs", "luci-static", "resources", "view")
SETTINGS_JS = os.path.join(VIEWS, "sipalg", "settings.js")
STATUS_JS = os.path.join(VIEWS, "sipalg", "status.js")
OVERVIEW_JS = os.path.join(VIEWS, "status", "include", "70_sipalg.js")
PLUGIN = os.path.join(APP, "root", "usr", "libexec", "rpcd", "luci.sipalg")


# ---------------------------------------------------------------- jsdom harness

LUCI_TESTS = os.path.join(ROOT, "tests", "luci")
HARNESS = os.path.join(LUCI_TESTS, "harness.cjs")


def run_view(tmp_path, view, mode, data=None):
    """Load and render a view ("settings", "status" or "view") or an overview include ("include")
    in jsdom (tests/luci/harness.cjs on tests/luci/runtime.js); the harness's JSON report."""
    need_tools("node")
    need(os.path.isdir(os.path.join(LUCI_TESTS, "node_modules", "jsdom")),
         "needs jsdom in tests/luci (scripts/setup runs npm ci there)")
    r = subprocess.run(["node", HARNESS, view, "include" if mode == "include" else "view"],
                       input=json.dumps(data or {}).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["errors"] == [], rep["errors"]
    return rep


def sipalg_command(tmp_path):
    """A stand-in for /usr/sbin/sipalg that runs this checkout's alg package."""
    cmd = tmp_path / "sipalg"
    cmd.write_text('#!/bin/sh\nPYTHONPATH="%s" exec "%s" -m alg "$@"\n' % (ROOT, sys.executable))
    cmd.chmod(0o755)
    return str(cmd)


def run_plugin(*args, env=None, shell=None):
    """The rpcd plugin as rpcd runs it (`luci.sipalg call status`), or under shell (argv, e.g. busybox sh)."""
    e = dict(os.environ, **(env or {}))
    r = subprocess.run(list(shell or []) + [PLUGIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=60)
    return r.returncode, r.stdout.decode(), r.stderr.decode()
