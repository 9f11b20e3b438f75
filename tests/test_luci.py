"""luci-app-sipalg against its contracts: the shipped uci file and the daemon that reads it, the
status JSON, rpcd's exec-plugin protocol, LuCI's menu and ACL files.

The views run under node with stand-ins for LuCI's modules (form, rpc, poll, network, E(),
cbi_update_table): enough to see which options they create, run their validators and render
the status page from a status dict.  No root needed.
"""
import argparse
import inspect
import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from alg import daemon, leds, uci
from alg.core.config import ANSWER_KEEPALIVES, parse_port_range
from tests.support import ROOT
from tests.support.luci import APP, PLUGIN, SETTINGS_JS, STATUS_JS, VIEWS, run_plugin, run_view, sipalg_command
from tests.support.need import need

MENU = os.path.join(APP, "root", "usr", "share", "luci", "menu.d", "luci-app-sipalg.json")
ACL = os.path.join(APP, "root", "usr", "share", "rpcd", "acl.d", "luci-app-sipalg.json")
SHIPPED_CONFIG = os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.config")
INIT = os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.init")


def read(path):
    with open(path) as f:
        return f.read()


def all_views():
    out = []
    for dirpath, _, files in os.walk(VIEWS):
        out += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".js")]
    return out


# ---------------------------------------------------------------- reading the JS

OPTION_RE = re.compile(r"\.(?:tab)?option\(\s*(?:'[^']*'\s*,\s*)?(?:form|widgets)\.(\w+)\s*,\s*'(\w+)'")
SECTION_RE = re.compile(r"\.section\(\s*form\.NamedSection\s*,\s*'(\w+)'\s*,\s*'(\w+)'")
RPC_RE = re.compile(r"rpc\.declare\(\{[^}]*?object:\s*'([\w.-]+)'[^}]*?method:\s*'(\w+)'", re.S)


def js_options(path):
    """{section name: {option: form class}} from the source, as written (no node needed)."""
    text = read(path)
    out = {}
    marks = [(m.start(), m.group(1)) for m in SECTION_RE.finditer(text)]
    for m in OPTION_RE.finditer(text):
        owner = [name for pos, name in marks if pos < m.start()]
        assert owner, "option %r before any NamedSection in %s" % (m.group(2), path)
        out.setdefault(owner[-1], {})[m.group(2)] = m.group(1)
    return out


def js_section_types(path):
    return {m.group(1): m.group(2) for m in SECTION_RE.finditer(read(path))}


def js_uci_configs(path):
    return set(re.findall(r"new\s+form\.Map\(\s*'(\w+)'", read(path)))


def running_status():
    """A status dict shaped like Daemon.status(), plus the running flag `sipalg status --json` adds."""
    return {
        "running": True, "pid": 4242, "started": 1000.0, "written": 4723.5,
        "wan_if": "eth1", "lan_if": "br-lan", "wan_ip": "203.0.113.5", "queue": "nft",
        "leds": {"registered": "ACT"}, "queue_backend": "netlink", "queue_counters": {"verdicts": 12},
        "counters": {"queued": 40, "rewritten": 31, "keepalives_answered": 3, "nft_failures": 0},
        "registrations": [{"aor": "sip:alice@example.com", "lan": "192.168.1.10:5060",
                           "wan": "203.0.113.5:5060", "expires_in": 3599.6}],
        "calls": [{"call_id": "a84b4c76e66710", "phone": "192.168.1.10", "direction": "out",
                   "state": "confirmed", "media": ["192.168.1.10:16384"], "expires_in": 7140.0}],
        "bindings": [
            {"kind": "sip", "lan": "192.168.1.10:5060", "wan": "203.0.113.5:5060", "remote": None,
             "expires_in": 3629.6},
            {"kind": "rtp", "lan": "192.168.1.10:16384", "wan": "203.0.113.5:16384",
             "remote": "198.51.100.7:40000", "expires_in": 58.2},
            {"kind": "rtcp", "lan": "192.168.1.10:16385", "wan": "203.0.113.5:16385", "remote": None,
             "expires_in": 58.2},
        ],
    }


# ---------------------------------------------------------------- the views

@pytest.mark.parametrize("path", all_views(), ids=os.path.basename)
def test_view_is_valid_javascript(path, tmp_path):
    need(shutil.which("node") is not None, "needs node (scripts/setup installs it)")
    # LuCI runs a view as a function body (its top-level `return`): node's CommonJS wrapper does the same
    copy = tmp_path / (os.path.basename(path) + ".cjs")
    copy.write_text(read(path))
    r = subprocess.run(["node", "--check", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    assert read(path).startswith("'use strict';\n'require view';\n")


def test_both_views_exist():
    assert sorted(os.path.relpath(p, VIEWS) for p in all_views()) == ["sipalg/settings.js", "sipalg/status.js"]


def test_settings_edits_only_options_the_shipped_config_has():
    cfg = uci.load(SHIPPED_CONFIG)
    opts = js_options(SETTINGS_JS)
    assert set(opts) == {"main", "leds"}
    for name, type_ in js_section_types(SETTINGS_JS).items():
        sec = [s for s in cfg if s.name == name]
        assert sec and sec[0].type == type_, "section %s '%s' is not in the shipped config" % (type_, name)
        missing = set(opts[name]) - set(sec[0].options)
        assert not missing, "options %s of %s are not in sipalg.config" % (sorted(missing), name)
    # and the page covers everything the shipped file offers
    for s in cfg:
        assert set(s.options) == set(opts[s.name]), s.name
    assert js_uci_configs(SETTINGS_JS) == {"sipalg"}


def _quoted(name, text):
    return re.search(r"""["']%s["']""" % re.escape(name), text) is not None


def test_settings_edits_only_options_the_daemon_reads():
    opts = js_options(SETTINGS_JS)
    # main: the daemon's Settings, except `enabled`, which the init script reads (no daemon when off)
    settings_src = inspect.getsource(daemon.Settings)
    init_reads = set(re.findall(r"config_get(?:_bool)?\s+\w+\s+main\s+(\w+)", read(INIT)))
    unread = [o for o in opts["main"] if not _quoted(o, settings_src) and o not in init_reads]
    assert not unread, "main options nothing reads: %s" % unread
    assert "enabled" in init_reads
    # leds: alg/leds.py's LedConfig.from_section (the role names come from ROLES)
    assert "from_section" in inspect.getsource(leds.LedConfig)
    leds_src = inspect.getsource(leds)
    unread = [o for o in opts["leds"] if not _quoted(o, leds_src)]
    assert not unread, "leds options alg/leds.py never names: %s" % unread
    assert set(opts["leds"]) - {"enabled"} == set(leds.ROLES)


def test_settings_view_creates_the_options_the_source_shows(tmp_path):
    rep = run_view(tmp_path, SETTINGS_JS, "settings",
                   {"networks": [{"name": "loopback", "device": "lo"}, {"name": "lan", "device": "br-lan"},
                                 {"name": "wan", "device": "eth1"}],
                    "rpc": {"luci.getLEDs": {"ACT": {}, "PWR": {}}}})
    assert rep["config"] == "sipalg" and rep["tabbed"]
    executed = {s["name"]: {o["name"]: o["cls"] for o in s["options"]} for s in rep["sections"]}
    assert executed == js_options(SETTINGS_JS)
    assert [s["title"] for s in rep["sections"]] == ["General", "LEDs"]
    by = {(s["name"], o["name"]): o for s in rep["sections"] for o in s["options"]}
    assert by[("main", "enabled")]["cls"] == "Flag"
    assert by[("main", "sip_port")]["cls"] == "DynamicList" and "port" in by[("main", "sip_port")]["datatype"]
    # the ListValues offer exactly what the daemon accepts
    parser = argparse.ArgumentParser()
    daemon.add_arguments(parser)
    choices = {a.dest: list(a.choices) for a in parser._actions if a.choices}
    assert by[("main", "answer_keepalives")]["choices"] == list(ANSWER_KEEPALIVES) == choices["answer_keepalives"]
    assert by[("main", "log_level")]["choices"] == choices["log_level"]
    # the logical interfaces are offered (not loopback); the board's LEDs too, after 'auto'
    assert by[("main", "wan_if")]["choices"] == ["lan", "wan"]
    assert by[("leds", "call")]["choices"] == ["auto", "ACT", "PWR"]
    assert rep["rpc"] == [["luci", "getLEDs"]]


def test_settings_view_survives_missing_networks_and_leds(tmp_path):
    rep = run_view(tmp_path, SETTINGS_JS, "settings", {"rpc_errors": {"luci.getLEDs": "Access denied"}})
    by = {(s["name"], o["name"]): o for s in rep["sections"] for o in s["options"]}
    assert by[("leds", "error")]["choices"] == ["auto"]
    assert by[("main", "lan_if")]["choices"] == []


RTP_CASES = [("1024-65535", True), ("10000-20000", True), ("1-1", True), ("5004-5004", True),
             ("20000-10000", False), ("2001-2000", False), ("0-100", False), ("1024-65536", False),
             ("1024", False), ("a-b", False), ("1024-", False), (" 1024-2000", False), ("", False)]


def test_rtp_range_validator(tmp_path):
    rep = run_view(tmp_path, SETTINGS_JS, "settings",
                   {"validate": [{"section": "main", "option": "rtp_ports", "value": v} for v, _ in RTP_CASES]})
    got = [(v, r is True) for (v, _), r in zip(RTP_CASES, rep["validations"])]
    assert got == RTP_CASES
    assert all(isinstance(r, str) and r for r in rep["validations"] if r is not True)
    # what the page accepts, the daemon parses to the same range
    for v, ok in RTP_CASES:
        if ok:
            lo, hi = parse_port_range(v)
            assert 1 <= lo <= hi <= 65535
    # and a range the page refuses for its numbers, the daemon refuses too (a hand-edited file)
    for v in ("20000-10000", "2001-2000", "0-100", "1024-65536"):
        with pytest.raises(ValueError):
            parse_port_range(v)


def test_led_and_interface_validators(tmp_path):
    cases = [("registered", "ACT", {"call": "PWR"}, True),
             ("registered", "ACT", {"call": "ACT"}, False),        # the daemon refuses one LED twice
             ("error", "auto", {"call": "auto", "registered": "auto"}, True),
             ("call", "", {"registered": ""}, True),
             ("call", "green:phone", {}, True),
             ("call", "../led0", {}, False)]
    for option, value, others, ok in cases:
        rep = run_view(tmp_path, SETTINGS_JS, "settings",
                       {"formvalues": others, "validate": [{"section": "leds", "option": option, "value": value}]})
        assert (rep["validations"][0] is True) == ok, (option, value, others)
    rep = run_view(tmp_path, SETTINGS_JS, "settings",
                   {"formvalues": {"lan_if": "lan"},
                    "validate": [{"section": "main", "option": "wan_if", "value": "lan"},
                                 {"section": "main", "option": "wan_if", "value": "wan"}]})
    assert rep["validations"][0] is not True and rep["validations"][1] is True


def test_status_view_shows_what_the_daemon_holds(tmp_path):
    st = running_status()
    rep = run_view(tmp_path, STATUS_JS, "status", {"rpc": {"luci.sipalg.status": st}})
    assert rep["rpc"] == [["luci.sipalg", "status"]] and rep["polls"] == [5]
    text = rep["text"]
    for want in ("Running", "4242", "eth1 (203.0.113.5)", "br-lan", "nft, netlink", "registered: ACT",
                 "sip:alice@example.com | 192.168.1.10:5060 | 203.0.113.5:5060 | 1h 0m 0s",
                 "a84b4c76e66710 | 192.168.1.10 | outgoing | confirmed | 192.168.1.10:16384",
                 "192.168.1.10:5060 | 203.0.113.5:5060 | 1h 0m 30s",
                 "RTP | 192.168.1.10:16384 | 203.0.113.5:16384 | 198.51.100.7:40000 | 0h 0m 58s",
                 "RTCP | 192.168.1.10:16385 | 203.0.113.5:16385 | any",
                 "queued | 40", "queue verdicts | 12", "Uptime | 1h 2m"):
        assert want in text, want
    assert "Not running" not in text


def test_status_view_says_why_no_daemon_runs_and_recovers(tmp_path):
    down = {"running": False, "error": "sipalg status: no daemon running (no status in /var/run/sipalg)"}
    rep = run_view(tmp_path, STATUS_JS, "status",
                   {"rpc": {"luci.sipalg.status": down}, "next": {"rpc": {"luci.sipalg.status": running_status()}}})
    assert "Not running" in rep["text"] and down["error"] in rep["text"]
    assert "sipalg is not running" in rep["text"]                 # the tables say so instead of "None"
    # the next poll finds it running: the same nodes are refreshed
    assert "Running" in rep["next_text"] and "sip:alice@example.com" in rep["next_text"]
    assert down["error"] not in rep["next_text"]


def test_status_view_shows_a_failed_call(tmp_path):
    rep = run_view(tmp_path, STATUS_JS, "status", {"rpc_errors": {"luci.sipalg.status": "Object not found"}})
    assert "Not running" in rep["text"] and "Object not found" in rep["text"]


def test_status_view_reads_only_keys_the_daemon_writes():
    """Every field status.js reads is a key of Daemon.status() (or `running`/`error` of status/plugin)."""
    src = inspect.getsource(daemon.Daemon.status)
    js = read(STATUS_JS)
    used = set(re.findall(r"\bst\.(\w+)", js))
    for var in ("r", "c", "b"):                      # registrations, calls, bindings rows
        used |= set(re.findall(r"\b%s\.(\w+)" % var, js))
    used -= {"running", "error"}
    assert used and not [k for k in sorted(used) if not _quoted(k, src)], sorted(used)
    assert _quoted("running", read(os.path.join(ROOT, "alg", "status.py")))


# ---------------------------------------------------------------- menu and ACL

def test_menu_and_acl_parse_and_match_the_views():
    menu = json.loads(read(MENU))
    acl = json.loads(read(ACL))
    assert set(acl) == {"luci-app-sipalg"}
    top = menu["admin/services/sipalg"]
    assert top["depends"] == {"acl": ["luci-app-sipalg"], "uci": {"sipalg": True}}
    views = {k: v["action"]["path"] for k, v in menu.items() if v["action"]["type"] == "view"}
    assert views == {"admin/services/sipalg/settings": "sipalg/settings",
                     "admin/services/sipalg/status": "sipalg/status"}
    for path in views.values():
        assert os.path.isfile(os.path.join(VIEWS, path + ".js")), path
    assert sorted(os.path.relpath(p, VIEWS)[:-3] for p in all_views()) == sorted(views.values())


def test_acl_grants_what_the_views_call_and_edit():
    grant = json.loads(read(ACL))["luci-app-sipalg"]
    ubus = {}
    for access in ("read", "write"):
        for obj, methods in grant.get(access, {}).get("ubus", {}).items():
            ubus.setdefault(obj, set()).update(methods)
    calls = set()
    for path in all_views():
        calls |= set(RPC_RE.findall(read(path)))
        for config in js_uci_configs(path):
            assert config in grant["read"]["uci"] and config in grant["write"]["uci"], config
    assert ("luci.sipalg", "status") in calls
    missing = [c for c in sorted(calls) if c[1] not in ubus.get(c[0], ())]
    assert not missing, "ubus calls the ACL does not grant: %s" % missing
    # nothing granted that no view uses
    assert {(o, m) for o, ms in ubus.items() for m in ms} == calls
    # the object the ACL names is this package's rpcd plugin
    assert os.path.basename(PLUGIN) == "luci.sipalg"


# ---------------------------------------------------------------- the rpcd plugin

def test_plugin_is_executable_posix_sh_and_passes_shellcheck():
    assert os.stat(PLUGIN).st_mode & stat.S_IXUSR, "rpcd only runs executable plugins (luci.mk keeps modes)"
    assert read(PLUGIN).startswith("#!/bin/sh\n")
    r = subprocess.run(["sh", "-n", PLUGIN], stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    need(shutil.which("shellcheck") is not None, "needs shellcheck (scripts/setup installs it)")
    r = subprocess.run(["shellcheck", PLUGIN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_plugin_list_names_status():
    rc, out, _ = run_plugin("list")
    assert rc == 0
    assert json.loads(out) == {"status": {}}


def test_plugin_without_daemon_answers_not_running(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    rc, out, _ = run_plugin("call", "status", env={"SIPALG": sipalg_command(tmp_path), "SIPALG_STATE_DIR": str(state)})
    reply = json.loads(out)
    assert reply["running"] is False
    assert "no daemon running" in reply["error"] and str(state) in reply["error"]


def test_plugin_reports_a_dead_daemon_and_escapes_its_message(tmp_path):
    # a status left behind by a daemon that is gone, in a directory whose name needs JSON escaping
    state = tmp_path / 'odd "dir" \\ name\tx'
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"pid": 2 ** 22 + 12345, "written": 0, "started": 0}))
    rc, out, _ = run_plugin("call", "status", env={"SIPALG": sipalg_command(tmp_path), "SIPALG_STATE_DIR": str(state)})
    reply = json.loads(out)
    assert reply["running"] is False and "is gone" in reply["error"]
    assert 'odd "dir" \\ name x' in reply["error"]            # quotes and backslash kept, the tab a space


def test_plugin_reports_a_missing_sipalg_command(tmp_path):
    rc, out, _ = run_plugin("call", "status", env={"SIPALG": str(tmp_path / "nope"),
                                                    "SIPALG_STATE_DIR": str(tmp_path)})
    reply = json.loads(out)
    assert reply["running"] is False and "nope" in reply["error"]


def test_plugin_passes_a_running_daemons_status_through(tmp_path):
    """A status.json written now by a live pid (ours): the plugin prints it, running true."""
    state = tmp_path / "state"
    state.mkdir()
    st = {k: v for k, v in running_status().items() if k != "running"}
    st.update(pid=os.getpid(), written=time.time())
    (state / "status.json").write_text(json.dumps(st))
    rc, out, _ = run_plugin("call", "status", env={"SIPALG": sipalg_command(tmp_path), "SIPALG_STATE_DIR": str(state)})
    assert rc == 0
    reply = json.loads(out)
    assert reply == dict(st, running=True)


def test_plugin_rejects_unknown_methods_with_json():
    rc, out, _ = run_plugin("call", "restart")
    assert rc != 0
    assert "restart" in json.loads(out)["error"]
    rc, out, _ = run_plugin()
    assert rc != 0 and "usage" in json.loads(out)["error"]
