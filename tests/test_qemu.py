"""The QEMU test VM from the host: `make qemu-image` and `make qemu-test` for x86_64.

Builds the Debian-packages-only image with the .ipk installed as opkg does
(cached in build/qemu: seconds when nothing changed, about a minute from
scratch), boots it under TCG and runs tests/qemu/guest_scenarios.py inside
against the installed package with the nft queue path (about 6.5 minutes on 2
cores; 8.7 measured while other jobs shared them).  aarch64 (-M virt and -M raspi3b) is `make qemu-test ARCH=aarch64`.

Outside CI a missing tool or no root skips with the reason; with CI=true it fails.
"""
import json
import os
import subprocess

from tests.support import ROOT
from tests.support.need import need, need_tools

CACHE = os.environ.get("QEMU_CACHE", os.path.join(ROOT, "build", "qemu"))
TOOLS = ("qemu-system-x86_64", "mmdebstrap", "cpio", "zstd", "depmod", "dpkg-deb", "make")


def _make(*args, timeout):
    return subprocess.run(["make", "-C", ROOT, "QEMU_CACHE=" + CACHE] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def failures(log: str, limit: int = 8000) -> str:
    """The guest pytest's FAILURES section (the part that says why), else the log's end.

    The durations table at the end of the log would otherwise fill the message CI shows."""
    start = log.find("= FAILURES =")
    if start < 0:
        return log[-limit:]
    start = log.rfind("\n", 0, start) + 1
    end = log.find(" slowest ", start)
    end = log.rfind("\n", start, end) if end > 0 else len(log)
    summary = log.find("short test summary info")
    section = log[start:end]
    if len(section) > limit:                # keep the head (which assert) and the tail (the log lines)
        section = section[:limit // 2] + "\n[...]\n" + section[-limit // 2:]
    return section + ("\n" + log[summary:summary + 2000] if summary > 0 else "")


def test_x86_64_vm_runs_the_scenarios_against_the_installed_package():
    need(os.geteuid() == 0, "needs root (mmdebstrap, device nodes)")
    need_tools(*TOOLS)
    built = _make("qemu-image", "ARCH=x86_64", timeout=1800)
    assert built.returncode == 0, built.stdout[-4000:]
    again = _make("qemu-image", "ARCH=x86_64", timeout=300)          # cache-friendly: nothing to redo
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout[-2000:]
    r = _make("qemu-test", "ARCH=x86_64", "QEMU_RUN_ARGS=--quiet", timeout=3600)
    out = os.path.join(CACHE, "x86_64", "results", "pc")
    tail = r.stdout[-3000:]
    if os.path.exists(os.path.join(out, "result.log")):
        with open(os.path.join(out, "result.log"), errors="replace") as f:
            tail = failures(f.read())
    assert r.returncode == 0, tail
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["rc"] == 0 and summary["status"] == 1, summary        # console, 9p and isa-debug-exit agree
    assert "passed" in summary["pytest"] and "failed" not in summary["pytest"], summary
    assert "skipped" not in summary["pytest"] and "error" not in summary["pytest"], summary


def test_a_failed_guest_run_shows_why_not_the_durations():
    log = ("....F.\n=================================== FAILURES ===================================\n"
           "____ test_x ____\n>       assert got is not None\nE       AssertionError\n"
           "----- Captured log call -----\ndaemon.info sipalg[675]: stopped\n"
           "------------------- generated xml file: /mnt/host/junit.xml --------------------\n"
           "============================== slowest durations ===============================\n"
           + "47.84s call     tests/qemu/guest_scenarios.py::test_y\n" * 400
           + "=========================== short test summary info ============================\n"
           "FAILED tests/qemu/guest_scenarios.py::test_x\n=== 1 failed, 19 passed in 726.31s ===\n")
    shown = failures(log)
    assert shown.startswith("=====") and "assert got is not None" in shown and "stopped" in shown
    assert "47.84s" not in shown and "FAILED tests/qemu/guest_scenarios.py::test_x" in shown
    assert failures("no section here" * 10, limit=20) == ("no section here" * 10)[-20:]
