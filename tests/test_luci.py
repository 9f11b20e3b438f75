"""luci-app-sipalg against its contracts: the shipped uci file and the daemon that reads it, the
status JSON, rpcd's exec-plugin protocol, LuCI's menu and ACL files.

The views and the Status > Overview include run in jsdom (tests/luci/harness.cjs) on a
reproduction of LuCI's own string handling (tests/luci/runtime.js: E(), dom.append, ui.Table,
String.prototype.format, the class loader, rpc's `expect`); form, network and uci are small
stand-ins.  That is enough to see which options a view creates, run its validators, render
the status pages from a status dict and see that nothing from the wire becomes markup.
No root needed.
"""
import inspect
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

from alg import daemon, leds, options, status, statusfile, uci
from tests.support import ROOT
from tests.support.luci import (APP, OVERVIEW_JS, PLUGIN, SETTINGS_JS, STATUS_JS, VIEWS, run_plugin, run_view,
                                sipalg_command)
from tests.support.need import need, need_tools

MENU = os.path.join(APP, "root", "usr", "share", "luci", "menu.d", "luci-app-sipalg.json")
ACL = os.path.join(APP, "root", "usr", "share", "rpcd", "acl.d", "luci-app-sipalg.json")
SHIPPED_CONFIG = os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.config")
INIT = os.path.join(ROOT, "openwrt", "sipalg", "files", "sipalg.init")


def read(path):
    with open(path) as f:
        return f.read()


def all_views():
    """Every class file under view/: the pages and the Status > Overview include."""
    out = []
    for dirpath, _, files in os.walk(VIEWS):
        out += [os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".js")]
    return sorted(out)


def page_views():
    return [p for p in all_views() if os.path.dirname(p) == os.path.join(VIEWS, "sipalg")]


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


NOW = 1800000000                                  # the router's clock as the plugin reads it


def running_status():
    """A status dict shaped like status.json (its first line and Daemon.status()), plus `running` and
    `now`, which the rpcd plugin and `sipalg status --json` add."""
    return {
        "running": True, "now": NOW, "pid": 4242, "written": NOW - 20, "fresh_until": NOW + 160,
        "started": NOW - 3723,
        "wan_if": "eth1", "lan_if": "br-lan", "wan_ip": "203.0.113.5", "queue": "nft",
        "leds": {"registered": "ACT"}, "queue_backend": "netlink", "queue_counters": {"verdicts": 12},
        "counters": {"queued": 40, "rewritten": 31, "keepalives_answered": 3, "nft_failures": 0},
        "totals": {"registrations": 1, "calls": 1, "calls_early": 0, "bindings": 1, "pinholes": 2},
        "registrations": [{"aor": "sip:alice@example.com", "lan": "192.168.1.10:5060",
                           "wan": "203.0.113.5:5060", "expires": NOW + 3600}],
        "calls": [{"call_id": "a84b4c76e66710", "phone": "192.168.1.10", "direction": "out",
                   "state": "confirmed", "media": ["192.168.1.10:16384"], "expires": NOW + 7140}],
        "bindings": [
            {"kind": "sip", "lan": "192.168.1.10:5060", "wan": "203.0.113.5:5060", "remote": None,
             "expires": NOW + 3630},
            {"kind": "rtp", "lan": "192.168.1.10:16384", "wan": "203.0.113.5:16384",
             "remote": "198.51.100.7:40000", "expires": NOW + 58},
            {"kind": "rtcp", "lan": "192.168.1.10:16385", "wan": "203.0.113.5:16385", "remote": None,
             "expires": NOW + 58},
        ],
    }


# ---------------------------------------------------------------- the views

@pytest.mark.parametrize("path", all_views(), ids=os.path.basename)
def test_view_is_valid_javascript(path, tmp_path):
    need(shutil.which("node") is not None, "needs node (scripts/setup installs it)")
    # LuCI runs a class file as a function body (its top-level `return`): node's CommonJS wrapper does the same
    copy = tmp_path / (os.path.basename(path) + ".cjs")
    copy.write_text(read(path))
    r = subprocess.run(["node", "--check", str(copy)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    # pages are views; an overview include is a plain class the overview instantiates
    base = "view" if path in page_views() else "baseclass"
    assert read(path).startswith("'use strict';\n'require %s';\n" % base)


def test_views_and_the_overview_include_exist():
    assert [os.path.relpath(p, VIEWS) for p in all_views()] == [
        "sipalg/settings.js", "sipalg/status.js", "status/include/%s" % os.path.basename(OVERVIEW_JS)]
    # status/index.js loads view/status/include/*.js in name order: NN_ places it among luci-mod-status's
    assert re.fullmatch(r"\d\d_sipalg\.js", os.path.basename(OVERVIEW_JS))


def test_settings_edits_only_options_the_shipped_config_has():
    cfg = uci.load(SHIPPED_CONFIG)
    opts = js_options(SETTINGS_JS)
    assert set(opts) == {"main", "leds"}
    for name, type_ in js_section_types(SETTINGS_JS).items():
        sec = [s for s in cfg if s.name == name]
        assert sec and sec[0].type == type_, "section %s '%s' is not in the shipped config" % (type_, name)
        # a list whose default is empty has no line in the file (its comment shows it)
        empty_lists = {n for n in opts[name] if options.option(name, n).multiple
                       and not options.option(name, n).default and n not in sec[0].options}
        missing = set(opts[name]) - set(sec[0].options) - empty_lists
        assert not missing, "options %s of %s are not in sipalg.config" % (sorted(missing), name)
        for n in empty_lists:
            assert "# list %s " % n in read(SHIPPED_CONFIG), n
    # and the page covers everything the shipped file offers
    for s in cfg:
        assert set(s.options) == set(opts[s.name]) - {n for n in opts[s.name] if n not in s.options
                                                      and options.option(s.name, n).multiple}, s.name
    assert js_uci_configs(SETTINGS_JS) == {"sipalg"}


def _quoted(name, text):
    return re.search(r"""["']%s["']""" % re.escape(name), text) is not None


# How each kind of option in alg/options.py shows on the page.
FORM_CLASS = {"bool": "Flag", "ports": "DynamicList", "choice": "ListValue", "int": "Value", "port_range": "Value",
              "iface": "Value", "ifaces": "DynamicList", "led": "Value", "nets": "DynamicList", "path": "Value"}


def test_settings_edits_only_options_of_the_option_table():
    opts = js_options(SETTINGS_JS)
    for section, edited in opts.items():
        for name, cls in edited.items():
            assert (section, name) in options.BY_KEY, "the page edits %s.%s, which sipalg does not know" % (section, name)
            o = options.option(section, name)
            assert FORM_CLASS[o.kind] == cls, (section, name, o.kind, cls)
    # `enabled` is the init script's: no daemon runs when it is off
    init_reads = set(re.findall(r"config_get(?:_bool)?\s+\w+\s+main\s+(\w+)", read(INIT)))
    assert "enabled" in init_reads
    assert set(opts["leds"]) - {"enabled"} == set(leds.ROLES)
    # every option a user sets in the file is on the page (the test-only ones are not)
    # (the caps are the file's only: a home user never needs them)
    in_file = {(o.section, o.name) for o in options.OPTIONS if o.section and not o.name.startswith("limit_")}
    in_file -= {("main", "state_dir"), ("leds", "sysfs_root"), ("main", "lan_net")}
    assert in_file == {(s, n) for s in opts for n in opts[s]}


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
    # the ListValues offer exactly what the option table accepts, and default to its default
    for (section, name), o in by.items():
        opt = options.option(section, name)
        if opt.kind == "choice":
            assert o["choices"] == list(opt.choices), name
    # the datatypes say what the table says
    assert by[("main", "queue_num")]["datatype"] == "range(%d,%d)" % (options.option("main", "queue_num").low,
                                                                      options.option("main", "queue_num").high)
    # the logical interfaces are offered (not loopback); the board's LEDs too, after 'auto'
    assert by[("main", "wan_if")]["choices"] == ["lan", "wan"]
    assert by[("leds", "call")]["choices"] == ["auto", "ACT", "PWR"]
    assert rep["rpc"] == [["luci", "getLEDs"]]


def test_settings_view_survives_missing_networks_and_leds(tmp_path):
    rep = run_view(tmp_path, SETTINGS_JS, "settings", {"rpc_errors": {"luci.getLEDs": "Access denied"}})
    by = {(s["name"], o["name"]): o for s in rep["sections"] for o in s["options"]}
    assert by[("leds", "error")]["choices"] == ["auto"]
    assert by[("main", "lan_if")]["choices"] == []


def test_settings_view_renders_the_shipped_config(tmp_path):
    """The page's DOM from the shipped /etc/config/sipalg: every option in its section, the
    values shown as set, and the only markup the one the page's own descriptions carry."""
    cfg = {s.name: dict(s.options) for s in uci.load(SHIPPED_CONFIG)}
    cfg["main"]["enabled"] = "1"
    rep = run_view(tmp_path, SETTINGS_JS, "settings",
                   {"uci": {"sipalg": cfg}, "networks": [{"name": "lan", "device": "br-lan"},
                                                         {"name": "wan", "device": "eth1"}],
                    "rpc": {"luci.getLEDs": {"ACT": {}, "PWR": {}}}})
    html, text = rep["html"], rep["text"]
    assert text.startswith("SIP ALG\n")
    for section, title in (("main", "General"), ("leds", "LEDs")):
        m = re.search(r'<div class="cbi-section" data-section-id="%s"><h3>%s</h3>' % (section, title), html)
        assert m, section
    opts = js_options(SETTINGS_JS)
    for section, names in opts.items():
        for name in names:
            assert '<div class="cbi-value" data-name="%s">' % name in html, (section, name)
            assert 'id="widget.cbid.sipalg.%s.%s"' % (section, name) in html, (section, name)
    # values as the shipped file sets them (with enabled switched on above)
    assert re.search(r'id="widget.cbid.sipalg.main.enabled" checked=""', html)
    assert not re.search(r'id="widget.cbid.sipalg.leds.enabled" checked', html)
    assert re.search(r'<option value="crlf" selected="">crlf</option>', html)
    assert re.search(r'<option value="wan" selected="">wan \(eth1\)</option>', html)
    assert 'value="1024-65535"' in html
    # descriptions are the page's own strings: their <strong>/<code>/<br> are meant as markup
    assert set(rep["parsed"]) <= {"strong", "code", "br"} and "strong" in rep["parsed"]
    assert rep["handlers"] == [] and rep["pwned"] is None
    assert "the router answers CRLF pings for the phone" in text


RTP_CASES = [("1024-65535", True), ("10000-20000", True), ("1024-1027", True), ("1-1", False),
             ("5004-5004", False), ("1024-1026", False), ("1023-2000", False),
             ("20000-10000", False), ("2001-2000", False), ("0-100", False), ("1024-65536", False),
             ("1024", False), ("a-b", False), ("1024-", False), (" 1024-2000", False), ("", False)]


def test_rtp_range_validator(tmp_path):
    rep = run_view(tmp_path, SETTINGS_JS, "settings",
                   {"validate": [{"section": "main", "option": "rtp_ports", "value": v} for v, _ in RTP_CASES]})
    got = [(v, r is True) for (v, _), r in zip(RTP_CASES, rep["validations"])]
    assert got == RTP_CASES
    assert all(isinstance(r, str) and r for r in rep["validations"] if r is not True)
    # what the page accepts, the daemon's option table accepts, and nothing else
    opt = options.option("main", "rtp_ports")
    for v, ok in RTP_CASES:
        if ok:
            lo, hi = opt.parse(v)
            assert "%d-%d" % (lo, hi) == v
        else:
            with pytest.raises(options.OptionError):
                opt.parse(v)


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


def test_status_view_says_which_lists_are_cut_to_their_first_entries(tmp_path):
    """At scale the status holds the first entries of each list beside the total: the page says so
    under the tables it cuts, and the Overview counts the totals."""
    st = running_status()
    st["totals"].update(registrations=10000, pinholes=6000, calls=3000, calls_early=40)
    rep = run_view(tmp_path, STATUS_JS, "status", {"rpc": {"luci.sipalg.status": st}})
    text = rep["text"]
    assert "The first 1 of 10000 are shown." in text and "The first 2 of 6000 are shown." in text
    assert "The first 1 of 3000 are shown." in text
    assert "of 1 are shown" not in text                          # signalling bindings: all of them
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc": {"luci.sipalg.status": st}, "uci": {"sipalg": {"main": {"enabled": "1"}}}})
    assert "Registered phones | 10000" in rep["text"] and "Calls | 3000 (40 being set up)" in rep["text"]


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
    # a JSON-RPC error (the session may not call luci.sipalg) rejects: its message is the reason
    rep = run_view(tmp_path, STATUS_JS, "status", {"rpc_errors": {"luci.sipalg.status": "Access denied"}})
    assert "Not running" in rep["text"] and "Access denied" in rep["text"]
    # a ubus status (no such object: plugin missing, rpcd not restarted) resolves to expect's {}
    rep = run_view(tmp_path, STATUS_JS, "status", {"rpc_status": {"luci.sipalg.status": 4}})
    assert "Not running" in rep["text"] and "No answer from the rpcd plugin luci.sipalg" in rep["text"]


# ---------------------------------------------------------------- markup from the wire

def marked(field):
    """Markup that runs script if a page ever parses it, naming the field it came in."""
    return ('<img src=x onerror="window.__pwned=\'%s\'"><script>window.__pwned=\'%s\'</script>'
            '<b>%s</b> & "q" \'a\'' % (field, field, field))


def hostile_status():
    """Daemon.status()'s shape with markup in every string: keys, values and list items."""
    m = marked
    return {
        "running": True, "now": NOW, "pid": m("pid"), "started": NOW - 3000, "written": NOW,
        "totals": {"registrations": m("total_regs"), "calls": 1, "bindings": 1, "pinholes": 1},
        "wan_if": m("wan_if"), "lan_if": m("lan_if"), "wan_ip": m("wan_ip"), "queue": m("queue"),
        "queue_backend": m("queue_backend"), "leds": {m("led_role"): m("led_name")},
        "kernel_helper": {"present": True, "builtin": False, "attached": [m("helper_chain")]},
        "queue_counters": {m("qcounter"): m("qcounter_value")},
        "counters": {m("counter"): m("counter_value"), "queued": 3},
        "registrations": [{"aor": m("aor"), "lan": m("reg_lan"), "wan": m("reg_wan"), "expires": NOW + 30}],
        "calls": [{"call_id": m("call_id"), "phone": m("phone"), "direction": m("direction"),
                   "state": m("state"), "media": [m("media1"), m("media2")], "expires": m("call_expiry")}],
        "bindings": [
            {"kind": "sip", "lan": m("sip_lan"), "wan": m("sip_wan"), "remote": None, "expires": NOW + 9},
            {"kind": m("kind"), "lan": m("pin_lan"), "wan": m("pin_wan"), "remote": m("remote"), "expires": NOW + 9},
        ],
    }


def wire_fields(st):
    """(field name, string) for every string the status dict carries, keys included."""
    out = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and "__pwned" in x:
            out.append(x)
    walk(st)
    return out


def assert_inert(rep, wire, prefix=""):
    """Nothing from the wire became an element or a handler, nothing ran, and it all shows as text."""
    assert rep[prefix + "parsed"] == [], "elements made by the HTML parser: %s" % rep[prefix + "parsed"]
    assert rep[prefix + "handlers"] == [], rep[prefix + "handlers"]
    assert rep["pwned"] is None, "script from the wire ran (field %s)" % rep["pwned"]
    assert "<script" not in rep[prefix + "html"] and "<img" not in rep[prefix + "html"]
    missing = [w for w in wire if w not in rep[prefix + "text"]]
    assert not missing, "not shown as text: %s" % missing


def test_status_view_shows_markup_from_the_wire_as_text(tmp_path):
    st = hostile_status()
    # direction only picks a label, a lifetime and a total are read as numbers, a pinhole's kind is shown
    # upper case
    wire = [w for w in wire_fields(st) if "direction" not in w and "expiry" not in w and "total" not in w]
    wire = [w.upper() if "'kind'" in w else w for w in wire]
    assert len(wire) >= 20
    down = {"running": False, "error": marked("error")}
    rep = run_view(tmp_path, STATUS_JS, "status",
                   {"rpc": {"luci.sipalg.status": st}, "next": {"rpc": {"luci.sipalg.status": down}}})
    assert_inert(rep, wire)
    # the poll's refresh takes the same path: now the reason the plugin gave
    assert_inert(rep, [down["error"]], "next_")


def test_the_markup_check_has_teeth(tmp_path):
    """The same page with its escaping taken out: the harness sees the elements and the script run."""
    src = read(STATUS_JS)
    assert "return '%h'.format(v);" in src
    unsafe = tmp_path / "status_unescaped.js"
    unsafe.write_text(src.replace("return '%h'.format(v);", "return v;").replace("'%h", "'%s").replace("%h'", "%s'")
                      .replace("(%h)", "(%s)").replace("%h: %h", "%s: %s"))
    assert "%h" not in unsafe.read_text()
    rep = run_view(tmp_path, str(unsafe), "status", {"rpc": {"luci.sipalg.status": hostile_status()}})
    assert "img" in rep["parsed"] and "script" in rep["parsed"]
    assert "img[onerror]" in rep["handlers"] and rep["pwned"] is not None


# ---------------------------------------------------------------- Status > Overview include

def test_overview_shows_registrations_and_calls(tmp_path):
    st = running_status()
    st["calls"].append({"call_id": "ringing1", "phone": "192.168.1.11", "direction": "in", "state": "early",
                        "media": [], "expires": NOW + 30})
    st["totals"].update(calls=2, calls_early=1)
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc": {"luci.sipalg.status": st}, "uci": {"sipalg": {"main": {"enabled": "1"}}}})
    assert rep["title"] == "SIP ALG" and rep["shown"]
    assert rep["rpc"] == [["luci.sipalg", "status"]] and rep["uci"] == ["sipalg"]
    text = rep["text"]
    for want in ("Registered phones | 1", "Calls | 2 (1 being set up)", "WAN address | 203.0.113.5 (eth1)",
                 "Address of record | Phone | In call", "sip:alice@example.com | 192.168.1.10:5060 | yes"):
        assert want in text, (want, text)


def test_overview_says_why_an_enabled_alg_is_not_running_and_hides_a_disabled_one(tmp_path):
    down = {"running": False, "error": "sipalg status: no daemon running (no status in /var/run/sipalg)"}
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc": {"luci.sipalg.status": down}, "uci": {"sipalg": {"main": {"enabled": "1"}}},
                    "next": {"rpc": {"luci.sipalg.status": running_status()}}})
    assert rep["shown"] and "Not running: " + down["error"] in rep["text"]
    assert "Registered phones | 1" in rep["next_text"]          # the next poll step finds it up
    # off and not running: the overview keeps the section hidden
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc": {"luci.sipalg.status": down}, "uci": {"sipalg": {"main": {"enabled": "0"}}}})
    assert not rep["shown"] and rep["text"] == "SIP ALG"
    # no plugin answering at all (ubus: no such object), though enabled
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc_status": {"luci.sipalg.status": 4}, "uci": {"sipalg": {"main": {"enabled": "1"}}}})
    assert rep["shown"] and "Not running: no answer from the rpcd plugin luci.sipalg" in rep["text"]


def test_overview_shows_markup_from_the_wire_as_text(tmp_path):
    st = hostile_status()
    shown = [st["wan_if"], st["wan_ip"], st["registrations"][0]["aor"], st["registrations"][0]["lan"]]
    down = {"running": False, "error": marked("error")}
    rep = run_view(tmp_path, OVERVIEW_JS, "include",
                   {"rpc": {"luci.sipalg.status": st}, "uci": {"sipalg": {"main": {"enabled": "1"}}},
                    "next": {"rpc": {"luci.sipalg.status": down}}})
    assert_inert(rep, shown)
    assert_inert(rep, [down["error"]], "next_")


def test_views_read_only_keys_the_daemon_writes():
    """Every field the status page and the overview read is a key of Daemon.status() (or
    `running`/`error` of the status command and the plugin)."""
    # the file: its first line (status.header) and the document after it
    src = inspect.getsource(daemon.Daemon.status) + inspect.getsource(status.header)
    for path in (STATUS_JS, OVERVIEW_JS):
        js = read(path)
        used = set(re.findall(r"\bst\.(\w+)", js))
        for var in ("r", "c", "b", "x", "totals"):       # list rows, the totals
            used |= set(re.findall(r"\b%s\.(\w+)" % var, js))
        used -= {"running", "error", "now"}
        assert used and not [k for k in sorted(used) if not _quoted(k, src)], (path, sorted(used))
    # what the two readers add: the rpcd plugin and `sipalg status --json` alike
    assert _quoted("running", read(os.path.join(ROOT, "alg", "status.py")))
    assert "dict(st, running=True, now=int(now))" in read(os.path.join(ROOT, "alg", "status.py"))
    assert """'{"running":true,"now":%s,%s\\n'""" in read(PLUGIN)


# ---------------------------------------------------------------- translations

POT = os.path.join(APP, "po", "templates", "sipalg.pot")


def pot_msgids(text):
    ids, cur = set(), None
    for line in text.split("\n") + [""]:
        m = re.match(r'^msgid "(.*)"$', line)
        if m:
            cur = m.group(1)
        elif cur is not None and re.match(r'^"(.*)"$', line):
            cur += line[1:-1]
        else:
            if cur:
                ids.add(cur.replace('\\"', '"'))
            cur = None
    return ids


def test_translation_template_is_current():
    """po/templates/sipalg.pot is what scripts/i18n-scan makes from the sources now."""
    for tool in ("xgettext", "msguniq"):
        need(shutil.which(tool) is not None, "needs %s (scripts/setup installs gettext)" % tool)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "i18n-scan"), "--check", APP],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()


def test_translation_template_holds_every_string_the_pages_show():
    ids = pot_msgids(read(POT))
    # one-literal _('...') calls, read without xgettext: each is a msgid
    for path in all_views():
        for lit in re.findall(r"\b_\('((?:[^'\\]|\\.)*)'\)", read(path)):
            assert lit.replace("\\'", "'") in ids, (os.path.basename(path), lit)
    # the concatenated description is one msgid, as LuCI's _() looks it up at run time
    assert any(i.startswith("Rewrites SIP and SDP for phones behind this router's NAT") for i in ids)
    for entry in json.loads(read(MENU)).values():
        assert entry["title"] in ids
    assert json.loads(read(ACL))["luci-app-sipalg"]["description"] in ids
    # luci.mk makes a translation package per po/<lang>/: none yet, and the template is not one
    assert sorted(os.listdir(os.path.join(APP, "po"))) == ["templates"]


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
    assert sorted(os.path.relpath(p, VIEWS)[:-3] for p in page_views()) == sorted(views.values())


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


def write_status(state, pid, written, doc):
    """status.json in the daemon's format (status.header's first line, then the document)."""
    state.mkdir(exist_ok=True)
    body = json.dumps(doc, separators=(",", ":"))
    (state / "status.json").write_text(status.header(pid, written) + body[1:] + "\n")


def document():
    """running_status() as the daemon writes it: without what the first line and the readers hold."""
    return {k: v for k, v in running_status().items()
            if k not in ("running", "now", "pid", "written", "fresh_until")}


@pytest.fixture(params=["sh", "busybox"])
def shell(request, tmp_path):
    """The plugin under this machine's /bin/sh, and under busybox ash with busybox's applets first on
    PATH (date, tail, tr, sed), as OpenWrt runs it."""
    if request.param == "sh":
        return {"argv": [], "env": {}}
    need_tools("busybox")
    bindir = tmp_path / "busybox-bin"
    bindir.mkdir()
    for applet in ("sh", "date", "tail", "tr", "sed", "printf", "cat"):
        os.symlink(shutil.which("busybox"), str(bindir / applet))
    return {"argv": [str(bindir / "sh")], "env": {"PATH": "%s:%s" % (bindir, os.environ["PATH"])}}


def plugin(shell, tmp_path, state, sipalg=None):
    env = dict(shell["env"], SIPALG=sipalg or sipalg_command(tmp_path), SIPALG_STATE_DIR=str(state))
    rc, out, err = run_plugin("call", "status", env=env, shell=shell["argv"])
    assert rc == 0, err
    return json.loads(out)


def test_plugin_without_daemon_answers_not_running(shell, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    reply = plugin(shell, tmp_path, state)
    assert reply["running"] is False
    assert "no daemon running" in reply["error"] and str(state) in reply["error"]


def test_plugin_passes_a_running_daemons_status_through(shell, tmp_path):
    """status.json as the daemon's writer publishes it, this process as the daemon: the plugin prints
    it whole, adding running and the router's clock."""
    state = tmp_path / "state"
    pub = statusfile.StatusFile(str(state), time.monotonic)
    doc = document()
    pub.publish(time.monotonic(), "k", lambda now: doc)
    before = int(time.time())
    reply = plugin(shell, tmp_path, state)
    assert before <= reply.pop("now") <= time.time() + 1
    assert reply.pop("running") is True
    assert reply.pop("pid") == os.getpid()
    assert reply.pop("fresh_until") == reply.pop("written") + status.STALE
    assert reply == doc
    # and `sipalg status --json` reads the same file the same way
    r = subprocess.run([sys.executable, "-m", "alg", "status", "--json", "--state-dir", str(state)], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert {k: v for k, v in st.items() if k not in ("now", "running", "pid", "written", "fresh_until")} == doc


def test_plugin_reports_a_dead_daemon_and_escapes_its_message(shell, tmp_path):
    # a status left behind by a daemon that is gone, in a directory whose name needs JSON escaping
    state = tmp_path / 'odd "dir" \\ name\tx'
    write_status(state, 2 ** 22 + 12345, int(time.time()), document())
    reply = plugin(shell, tmp_path, state)
    assert reply["running"] is False and "is gone" in reply["error"] and "4206649" in reply["error"]
    assert 'odd "dir" \\ name x' in reply["error"]            # quotes and backslash kept, the tab a space


def test_plugin_says_a_stale_status_is_not_answering(shell, tmp_path):
    """A live pid whose file missed three heartbeats: hung, or the state directory is full."""
    state = tmp_path / "state"
    write_status(state, os.getpid(), int(time.time()) - status.STALE - 30, document())
    reply = plugin(shell, tmp_path, state)
    assert reply["running"] is False and "not answering" in reply["error"]
    age = int(re.search(r"for (\d+) s", reply["error"]).group(1))
    assert status.STALE + 30 <= age <= status.STALE + 32


def test_plugin_starts_nothing_but_date_and_tail(tmp_path):
    """One poll, traced: no Python (no `sipalg status`), two busybox applets on a router."""
    need_tools("strace")
    state = tmp_path / "state"
    write_status(state, os.getpid(), int(time.time()), document())
    trace = tmp_path / "trace"
    env = dict(os.environ, SIPALG=sipalg_command(tmp_path), SIPALG_STATE_DIR=str(state))
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), PLUGIN, "call", "status"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["running"] is True, r.stderr
    ran = [os.path.basename(m.group(1)) for m in re.finditer(r'execve\("([^"]+)".*= 0$', trace.read_text(), re.M)]
    assert ran == ["luci.sipalg", "date", "tail"], ran


def test_plugin_asks_sipalg_about_a_file_it_cannot_read(shell, tmp_path):
    """Not the daemon's first line (an older daemon's file): `sipalg status` is asked, and says why."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "written": time.time(), "started": 0}))
    reply = plugin(shell, tmp_path, state)
    assert reply["running"] is False and "not a status this sipalg writes" in reply["error"]
    # with the command missing too, the reason names it
    reply = plugin(shell, tmp_path, state, sipalg=str(tmp_path / "nope"))
    assert reply["running"] is False and "nope" in reply["error"]


def test_plugin_rejects_unknown_methods_with_json():
    rc, out, _ = run_plugin("call", "restart")
    assert rc != 0
    assert "restart" in json.loads(out)["error"]
    rc, out, _ = run_plugin()
    assert rc != 0 and "usage" in json.loads(out)["error"]
