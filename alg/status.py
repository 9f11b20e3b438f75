"""`sipalg status`: what a running daemon holds, from the status file it publishes.

The daemon (alg/statusfile.py) rewrites <state_dir>/status.json only when what it shows
changed, and every HEARTBEAT seconds when nothing did.  Times in it are wall-clock seconds:
expiries are absolute, so the file stays the same while nothing happens, and the reader works
out what is left.  Lists hold their first entries only, with the totals beside them, so the
file stays small with 10k registrations.  Its first line is

    {"pid": N, "written": T, "fresh_until": T,

so the LuCI rpcd plugin (POSIX sh) checks the daemon with shell builtins and passes the file
through without starting Python.  This module is the other reader, and the shared format's
home: it imports nothing of sipalg but the option table (no engine, no daemon, no kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from alg.options import DEFAULT_STATE_DIR

FILE = "status.json"
HEARTBEAT = 60              # seconds between rewrites while nothing changes
STALE = 3 * HEARTBEAT       # fresh_until = written + STALE: three missed heartbeats
LIST_LIMIT = 50             # entries per list (registrations, calls, signalling bindings, media pinholes)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Show the registrations, calls, bindings and pinholes (with remaining lifetimes) "
                     "and the counters of the running sipalg daemon. Exits 1 when none is running.")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the daemon's --state-dir")
    p.add_argument("--json", action="store_true",
                   help="print the status file's JSON, with running and now added (what the LuCI plugin answers)")


def header(pid: int, written: int) -> str:
    """The first line of the file, the part the rpcd plugin parses."""
    return '{"pid": %d, "written": %d, "fresh_until": %d,\n' % (pid, written, written + STALE)


def load(state_dir: str, now: float) -> dict:
    path = os.path.join(state_dir, FILE)
    with open(path) as f:
        st = json.load(f)
    if not isinstance(st, dict) or not all(isinstance(st.get(k), int) for k in ("pid", "written", "fresh_until")):
        raise RuntimeError("%s is not a status this sipalg writes (an older daemon still running? restart it)"
                           % path)
    try:
        os.kill(st["pid"], 0)
    except ProcessLookupError:
        raise RuntimeError("sipalg is not running (pid %d in %s is gone)" % (st["pid"], path)) from None
    except PermissionError:
        pass                                        # alive, someone else's (a reader that isn't root)
    if now > st["fresh_until"]:
        raise RuntimeError("sipalg is not answering (pid %d has not updated %s for %d s: hung, or its "
                           "state directory is full or read-only)" % (st["pid"], path, now - st["written"]))
    return st


def _left(item: dict, now: float) -> str:
    return "%ds left" % max(0, round(item["expires"] - now))


def _heading(name: str, shown: list, total: int) -> str:
    if total > len(shown):
        return "%s (%d, the first %d shown):" % (name, total, len(shown))
    return "%s (%d):" % (name, total)


def run(args: argparse.Namespace) -> int:
    now = time.time()
    try:
        st = load(args.state_dir, now)
    except FileNotFoundError:
        print("sipalg status: no daemon running (no status in %s)" % args.state_dir, file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        print("sipalg status: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        # "running" lets a consumer tell this from a not-running answer; "now" is the clock the
        # expiries are read against (the rpcd plugin adds the same two)
        print(json.dumps(dict(st, running=True, now=int(now)), indent=2))
        return 0
    totals = st["totals"]
    print("sipalg pid %d, up %ds, WAN %s %s, queue via %s%s" % (
        st["pid"], round(now - st["started"]), st["wan_if"], st["wan_ip"], st["queue"],
        " (%s backend)" % st["queue_backend"] if st.get("queue_backend") else ""))
    kh = st.get("kernel_helper") or {}
    if kh:
        print("kernel SIP helper: %s" % ("attached by " + ", ".join(kh["attached"]) if kh.get("attached") else
                                         "not attached (%s)" % ("built in" if kh.get("builtin") else "loaded")
                                         if kh.get("present") else "not on this router"))
    if any(st.get("queue_counters", {}).values()):
        print("queue: " + ", ".join("%s %d" % kv for kv in sorted(st["queue_counters"].items())))
    print("counters: " + ", ".join("%s %d" % kv for kv in sorted(st["counters"].items())))
    print(_heading("registrations", st["registrations"], totals["registrations"]))
    for r in st["registrations"]:
        print("  %-40s %s -> %s  %s" % (r["aor"], r["lan"], r["wan"], _left(r, now)))
    print(_heading("calls", st["calls"], totals["calls"]))
    for c in st["calls"]:
        print("  %-30s %s %-3s %-9s media %s  %s" % (c["call_id"], c["phone"], c["direction"], c["state"],
                                                   ",".join(c["media"]) or "-", _left(c, now)))
    sip = [b for b in st["bindings"] if b["kind"] == "sip"]
    media = [b for b in st["bindings"] if b["kind"] != "sip"]
    for name, shown, total in (("signalling bindings", sip, totals["bindings"]),
                               ("media pinholes", media, totals["pinholes"])):
        print(_heading(name, shown, total))
        for b in shown:
            print("  %-4s %-21s <-> %-21s %-22s %s" % (b["kind"], b["lan"], b["wan"],
                                                       ("from " + b["remote"]) if b["remote"] else "",
                                                       _left(b, now)))
    return 0
