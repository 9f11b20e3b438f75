"""Start-to-ready of the packaged daemon, with and without bytecode: a benchmark, it asserts nothing.

    sudo python3 bench/start_bench.py [RUNS] [--python /usr/bin/python3]

The package's tree (/usr/lib/sipalg, from the feed Makefile's install recipe, as `make ipk`
stages it) twice in a temporary root: once as the package holds it (sources only: what a first
start compiles, and every start where python3 can't write __pycache__) and once after the install
script's `python3 -m compileall` (91-sipalg-bytecode).  Each run starts `sipalg run` in a lab
router namespace (tests/support/lab) the way /usr/sbin/sipalg does, with PYTHONDONTWRITEBYTECODE
set (so the first tree stays without bytecode), and times from the process's start to its first status publish (status.json appears: the
table is installed, the queue bound), and the CPU the daemon's process used until then
(/proc/PID/schedstat; the `nft -f` it starts for the table is not in it); then SIGTERM.  Runs
alternate between the two trees.  Prints min, median and max of the wall time per tree.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from feedmakefile import FeedMakefile, stage  # noqa: E402
from tests.support.lab.netns import Lab  # noqa: E402

# /usr/sbin/sipalg (openwrt/sipalg/files/sipalg.sbin) with the staged tree for /usr/lib/sipalg
WRAPPER = "import sys; sys.path.insert(0, %r); from alg.cli import main; sys.exit(main())"


def staged(top: str, compiled: bool, python: str) -> str:
    mk = FeedMakefile(os.path.join(ROOT, "openwrt", "sipalg", "Makefile"))
    stage(mk, "sipalg", top)
    lib = os.path.join(top, "usr", "lib", "sipalg")
    if compiled:
        # what the package's install script runs on the router
        subprocess.run([python, "-m", "compileall", "-q", "-f", lib], check=True)
    return lib


def start_to_ready(lab: Lab, python: str, lib: str, state: str) -> float:
    status = os.path.join(state, "status.json")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    t0 = time.monotonic()
    proc = lab.popen(lab.rtr, python, "-c", WRAPPER % lib, "run", "--wan-if", lab.wan_if, "--lan-if", lab.lan_if,
                     "--state-dir", state, "--table", "hs_start", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, env=env, cwd="/")
    try:
        while not os.path.exists(status):
            if proc.poll() is not None:
                raise SystemExit("sipalg exited with %d" % proc.returncode)
            if time.monotonic() - t0 > 60:
                raise SystemExit("sipalg not ready in 60 s")
            time.sleep(0.002)
        wall = time.monotonic() - t0
        # `ip netns exec` execs: the daemon's pid; its own CPU to the nanosecond (the nft -f it ran not counted)
        with open("/proc/%d/schedstat" % proc.pid) as f:
            cpu = int(f.read().split()[0]) / 1e9
        return wall, cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="?", type=int, default=9)
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("start_bench: needs root (a lab namespace, nftables, NFQUEUE)", file=sys.stderr)
        return 2
    version = subprocess.run([args.python, "-V"], stdout=subprocess.PIPE, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="hs-start-") as tmp, Lab(tag="start") as lab:
        trees = {"sources only": staged(os.path.join(tmp, "plain"), False, args.python),
                 "with bytecode": staged(os.path.join(tmp, "compiled"), True, args.python)}
        times = {name: [] for name in trees}
        for i in range(args.runs + 1):
            for name, lib in trees.items():
                t = start_to_ready(lab, args.python, lib, os.path.join(tmp, "state"))
                if i:                                   # the first round warms the page cache
                    times[name].append(t)
        print("start to ready (process start to the first status publish), %s, %d runs each, ms:"
              % (version, args.runs))
        for name, ts in times.items():
            wall, cpu = [t[0] * 1000 for t in ts], [t[1] * 1000 for t in ts]
            print("  %-14s wall min %6.1f median %6.1f max %6.1f   the daemon's CPU median %6.1f"
                  % (name, min(wall), statistics.median(wall), max(wall), statistics.median(cpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
