"""The `sipalg` command line: what each subcommand imports, and that the parser still offers
every command's arguments.  `sipalg status` runs every 5 s from the LuCI page, so it must not
load the engine, the daemon or the kernel side (issue 9)."""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what `sipalg status` must not pull in: the engine, the daemon and everything it imports
HEAVY = ("alg.core", "alg.daemon", "alg.kernel", "alg.packet", "alg.replay", "alg.leds", "alg.uci")

# run `sipalg ARGS...` as the installed wrapper does (alg.cli.main), then list the alg modules loaded
PROBE = ("import json, sys\nfrom alg.cli import main\ntry:\n rc = main(sys.argv[1:])\n"
         "except SystemExit as e:\n rc = e.code\n"
         "print(json.dumps({'rc': rc, 'modules': sorted(m for m in sys.modules if m.split('.')[0] == 'alg')}))")


def _sipalg(*args):
    r = subprocess.run([sys.executable, "-c", PROBE] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
    return json.loads(last), r.stdout, r.stderr


def _state(tmp_path, registrations=1):
    """A status.json as a running daemon publishes it (this process stands in for the daemon's pid)."""
    now = int(time.time())
    doc = {"started": now - 60, "wan_if": "eth1", "lan_if": "br-lan", "wan_ip": "203.0.113.1", "queue": "nft",
           "leds": {}, "queue_backend": "netlink", "queue_counters": {}, "counters": {"queued": 3, "rewritten": 3},
           "totals": {"registrations": registrations, "calls": 0, "calls_early": 0, "bindings": 1, "pinholes": 0},
           "registrations": [{"aor": "<sip:a@203.0.113.10>", "lan": "10.0.0.2:5060", "wan": "203.0.113.1:5060",
                              "expires": now + 598}],
           "calls": [], "bindings": [{"kind": "sip", "lan": "10.0.0.2:5060", "wan": "203.0.113.1:5060",
                                      "remote": None, "expires": now + 628}]}
    body = json.dumps(doc)
    head = '{"pid": %d, "written": %d, "fresh_until": %d,\n' % (os.getpid(), now, now + 180)
    (tmp_path / "status.json").write_text(head + body[1:])
    return dict(doc, pid=os.getpid(), written=now, fresh_until=now + 180)


def test_status_imports_neither_engine_nor_daemon_nor_kernel(tmp_path):
    st = _state(tmp_path)
    got, out, err = _sipalg("status", "--json", "--state-dir", str(tmp_path))
    assert got["rc"] == 0, err
    shown = json.loads(out[:out.rindex("\n{")])
    assert shown["running"] is True and shown["pid"] == st["pid"] and shown["bindings"] == st["bindings"]
    assert "alg.status" in got["modules"] and "alg.options" in got["modules"]
    heavy = [m for m in got["modules"] if m.startswith(HEAVY)]
    assert heavy == [], "sipalg status imported %s" % heavy


def test_status_text_reads_lifetimes_against_now_and_says_what_is_cut(tmp_path):
    """Expiries are absolute in the file: the text shows what is left; a cut list says how many there are."""
    _state(tmp_path, registrations=10000)
    got, out, err = _sipalg("status", "--state-dir", str(tmp_path))
    assert got["rc"] == 0, err
    assert re.search(r"sipalg pid %d, up 6[01]s, WAN eth1 203.0.113.1, queue via nft \(netlink backend\)" % os.getpid(),
                     out), out
    assert "registrations (10000, the first 1 shown):" in out
    assert re.search(r"<sip:a@203.0.113.10> +10.0.0.2:5060 -> 203.0.113.1:5060  59[78]s left", out), out
    assert "signalling bindings (1):" in out and re.search(r"62[78]s left", out) and "media pinholes (0):" in out


def test_status_without_daemon_imports_no_engine_either(tmp_path):
    got, _, err = _sipalg("status", "--state-dir", str(tmp_path / "none"))
    assert got["rc"] == 1 and "no daemon running" in err
    assert [m for m in got["modules"] if m.startswith(HEAVY)] == []


def test_help_lists_every_command_without_importing_them():
    got, out, _ = _sipalg("--help")
    assert got["rc"] == 0
    for name in ("run", "status", "replay"):
        assert "\n    %s " % name in out, out
    assert "demo" not in out                           # the lab stays in the checkout (make demo)
    assert got["modules"] == ["alg", "alg.cli"]


def test_each_command_still_gets_its_own_arguments():
    for cmd, option in (("run", "--wan-if"), ("status", "--state-dir"), ("replay", "--wan-ip")):
        r = subprocess.run([sys.executable, "-m", "alg", cmd, "--help"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert r.returncode == 0 and option in r.stdout, (cmd, r.stdout)
