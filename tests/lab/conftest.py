"""Fixtures for the end-to-end lab: real namespaces, kernel, nftables, NFQUEUE and SIP peers.

Outside CI a missing tool or no root skips with the reason; with CI=true it fails.
"""
import os
import shutil

import pytest

from alg.lab.netns import Lab
from alg.lab.peers import Alg

TOOLS = ("ip", "nft", "iptables", "conntrack", "tcpdump", "sipp")


def need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run this: " + why)
    pytest.skip(why)


def require_lab(extra=()):
    need(os.geteuid() == 0, "needs root (network namespaces, nftables)")
    for tool in TOOLS + tuple(extra):
        need(shutil.which(tool) is not None, "needs %s (scripts/setup installs it)" % tool)
    # no NetfilterQueue binding needed: without it the daemon uses its netlink backend
    try:
        import dpkt  # noqa: F401
    except ImportError:
        need(False, "needs dpkt")


@pytest.fixture
def lab(request):
    require_lab()
    with Lab(tag=str(abs(hash(request.node.name)) % 10000)) as lab:
        yield lab


@pytest.fixture
def logdir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def alg(lab, logdir):
    a = Alg(lab, logdir, "--rtp-ports", "1024-65535").start()
    yield a
    if a.proc is not None:
        a.stop()
    print(a.log()[-4000:])
