"""Skip or fail, for tests that need root or a tool.

On a developer's machine a missing tool or no root skips the test with the
reason; in CI (CI=true), where everything must run, it fails instead, so a
broken setup can't pass by skipping.
"""
import os
import shutil

import pytest

LAB_TOOLS = ("ip", "nft", "iptables", "conntrack", "tcpdump", "sipp")


def need(ok, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run this: " + why)
    pytest.skip(why)


def need_tools(*tools: str) -> None:
    for tool in tools:
        need(shutil.which(tool) is not None, "needs %s (scripts/setup installs it)" % tool)


def require_lab(extra=()) -> None:
    """What the namespace lab needs (tests/support/lab); extra: more tools, e.g. kamailio."""
    need(os.geteuid() == 0, "needs root (network namespaces, nftables)")
    need_tools(*(LAB_TOOLS + tuple(extra)))
    # no NetfilterQueue binding needed: without it the daemon uses its netlink backend
    try:
        import dpkt  # noqa: F401
    except ImportError:
        need(False, "needs dpkt")
