"""Run a test inside a network namespace of its own, so it can change the kernel freely.

Python 3.11 has no os.setns/os.unshare, and a netlink socket talks to the
namespace it was made in, so the test is run again, by pytest, under
`unshare --net`: the inner run finds SIPALG_PRIVATE_NETNS set and runs the
body there; the outer run reports its result (a skip inside is a skip).
"""
import functools
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.need import need

ENV = "SIPALG_PRIVATE_NETNS"


def inside() -> bool:
    return os.environ.get(ENV) == "1"


def in_private_netns(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if inside():
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            return fn(*args, **kwargs)
        need(os.geteuid() == 0, "needs root (a network namespace of its own)")
        need(shutil.which("unshare") is not None, "needs unshare (util-linux)")
        need(shutil.which("ip") is not None, "needs ip (iproute2)")
        nodeid = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
        r = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "pytest", "-q", "-rs", "-x",
                            "-p", "no:cacheprovider", nodeid],
                           cwd=ROOT, env=dict(os.environ, **{ENV: "1"}), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        out = r.stdout.decode(errors="replace")
        if r.returncode == 0 and re.search(r"\b1 skipped", out) and not re.search(r"\bpassed", out):
            m = re.search(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", out)
            pytest.skip(m.group(1) if m else "skipped inside the namespace")
        assert r.returncode == 0, "inside its own network namespace:\n" + out[-6000:]
    return wrapper
