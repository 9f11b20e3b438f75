"""Every benchmark in bench/ still runs: each in its quick mode, seconds and tiny counts.

Benchmarks print numbers and assert nothing; this only checks that each one gets through
its run against the checkout's daemon and prints its whole table (so an API change in
alg/ or the lab can't leave one broken until someone wants its numbers).  No timing is
checked.  Root and the lab's tools (bench/ builds namespaces, runs sipp and kamailio).
"""
import os
import re
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.need import require_lab

# (script and arguments, what its output must show when every part of it ran)
RUNS = [
    (["engine_bench.py", "--quick"], [r"^INVITE\+SDP out .* msgs/s", r"^REGISTER out .* msgs/s"]),
    (["footprint.py", "--quick"], [r"^REGISTER new(\s+\d+){3}\s+[\d.]+ µs\s+[\d.]+ µs\s+-?[\d.]+ µs\s+rewritten$",
                                   r"^200 expires 0 \(in\)(\s+\d+){3}\s+[\d.]+ µs\s+[\d.]+ µs\s+-?[\d.]+ µs\s+\w+$",
                                   r"^a no-op call after the same idle: [\d.]+ µs$"]),
    (["queue_bench.py", "--quick"], [r"netlink\s+accept", r"netlink\s+rewrite"]),
    (["nft_bench.py", "--quick"], [r"binding\s+delete\s+writer\s+\d+"]),
    (["latency.py", "--quick"], [r"^OPTIONS(\s+[\d.]+ (µs|ms))+\s+[\d.]+×\s+[\d.]+×$",
                                 r"^200 expires 0 \(in\)(\s+[\d.]+ (µs|ms))+\s+[\d.]+×\s+[\d.]+×$",
                                 r"^samples / lost(\s+[1-9]\d* / \d+)+$"]),
    # another checkout beside this one (this one again: what matters is that both run)
    (["latency.py", "--quick", "--modes", "sipalg-base,sipalg", "--base", ROOT],
     [r"sipalg base\s+sipalg", r"^samples / lost\s+[1-9]\d* / \d+\s+[1-9]\d* / \d+$"]),
    (["callrate.py", "--quick"], [r"^\s+20\s+plain NAT\s+20\s+20\s", r"^\s+20\s+sipalg\s+20\s",
                                  r"^highest rate with p99"]),
    (["memory.py", "--quick"], [r"^idle\s+\d+\.\d MB", r"^200 registrations\s+\d+\.\d MB",
                                r"^the interpreter alone.*: \d+\.\d MB; without site \(-S\): \d+\.\d MB$",
                                r"^50 calls\s+\d+\.\d MB"]),
    (["flood.py", "--quick"], [r"^%s\s+%s\s+1000\s+\d+\s+1000\s" % (router, k) for k in
                               ("lan-options", "lan-register", "lan-invite", "wan-options-peer", "wan-invite-peer",
                                "wan-options-other", "wan-invite-other") for router in ("sipalg/netlink", "plain NAT")]),
    (["nat_compare.py", "--quick"], [r"^scenarios passed", r"^daemon RSS\s+-\s+-\s+\d+ kB"]),
]


NO_LAB = ("engine_bench.py", "footprint.py")           # the engine alone: no root, no namespaces


@pytest.mark.parametrize("argv,shows", RUNS, ids=[r[0][0] + ("-base" if "--base" in r[0] else "") for r in RUNS])
def test_benchmark_runs(argv, shows):
    if argv[0] not in NO_LAB:
        require_lab(extra=("kamailio",))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", argv[0])] + argv[1:], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")[-3000:]
    for pattern in shows:
        assert re.search(pattern, out, re.M), "%s: no line matching %r in:\n%s" % (argv[0], pattern, out)


def test_a_base_mode_needs_a_checkout():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "callrate.py"), "--modes", "sipalg-base"],
                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 2 and b"--base must name a sipalg checkout" in r.stderr, r.stderr
