"""`sipalg status`: what a running daemon holds, from the state it writes every second."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from alg.options import DEFAULT_STATE_DIR


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Show the registrations, calls, bindings and pinholes (with remaining lifetimes) "
                     "and the counters of the running sipalg daemon. Exits 1 when none is running.")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the daemon's --state-dir")
    p.add_argument("--json", action="store_true", help="print the raw JSON")


def load(state_dir: str) -> dict:
    path = os.path.join(state_dir, "status.json")
    with open(path) as f:
        st = json.load(f)
    try:
        os.kill(st["pid"], 0)
    except ProcessLookupError:
        raise RuntimeError("sipalg is not running (pid %d in %s is gone)" % (st["pid"], path)) from None
    if time.time() - st["written"] > 10:
        raise RuntimeError("sipalg is not answering (%s is %d s old)" % (path, time.time() - st["written"]))
    return st


def run(args: argparse.Namespace) -> int:
    try:
        st = load(args.state_dir)
    except FileNotFoundError:
        print("sipalg status: no daemon running (no status in %s)" % args.state_dir, file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, KeyError) as e:
        print("sipalg status: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        # "running" lets a consumer (the LuCI rpcd plugin) tell this from its own not-running answer
        print(json.dumps(dict(st, running=True), indent=2))
        return 0
    print("sipalg pid %d, up %ds, WAN %s %s, queue via %s%s" % (
        st["pid"], time.time() - st["started"], st["wan_if"], st["wan_ip"], st["queue"],
        " (%s backend)" % st["queue_backend"] if st.get("queue_backend") else ""))
    if any(st.get("queue_counters", {}).values()):
        print("queue: " + ", ".join("%s %d" % kv for kv in sorted(st["queue_counters"].items())))
    print("counters: " + ", ".join("%s %d" % kv for kv in sorted(st["counters"].items())))
    print("registrations (%d):" % len(st["registrations"]))
    for r in st["registrations"]:
        print("  %-40s %s -> %s  %ds left" % (r["aor"], r["lan"], r["wan"], r["expires_in"]))
    print("calls (%d):" % len(st["calls"]))
    for c in st["calls"]:
        print("  %-30s %s %-3s %-9s media %s  %ds left" % (c["call_id"], c["phone"], c["direction"], c["state"],
                                                          ",".join(c["media"]) or "-", c["expires_in"]))
    print("bindings (%d):" % len(st["bindings"]))
    for b in st["bindings"]:
        print("  %-4s %-21s <-> %-21s %-22s %ds left" % (b["kind"], b["lan"], b["wan"],
                                                         ("from " + b["remote"]) if b["remote"] else "",
                                                         b["expires_in"]))
    return 0
