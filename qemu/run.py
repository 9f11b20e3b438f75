#!/usr/bin/env python3
"""Boot the sipalg QEMU test image and run the scenarios in it: `make qemu-test ARCH=...`.

  x86_64   -M pc                       result: console marker, 9p share, isa-debug-exit
  aarch64  -M virt -cpu cortex-a53     result: console marker, 9p share
           -M raspi3b (Raspberry Pi 3)  result: console marker only (no PCI: no 9p);
                                        ends with a watchdog reset (it can't power off)

TCG only (no KVM here).  The guest prints "@@SIPALG_QEMU_DONE rc=N"; where a
share or exit device exists its answer must agree.  Exits 0 when the
scenarios passed, 1 when they failed, 2 when the VM timed out or died
without a result (the console's last lines are printed).  Console, pytest
output, junit.xml and the daemon's log go to CACHE/ARCH/results/MACHINE/.

--shell boots the same image to a root shell on this terminal instead
(sipalg-vm-test runs the scenarios there; Ctrl-A X quits qemu).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MACHINES = {"x86_64": ["pc"], "aarch64": ["virt", "raspi3b"]}
# guest timeout for the scenarios (seconds of wall clock on a 2-core TCG host); the host allows boot on top
TIMEOUTS = {"pc": 1200, "virt": 2400, "raspi3b": 2400}
# the lab tests' clock dilation in the guest (tests/qemu/guest_scenarios.py): TCG is slow, aarch64 more so
SLOW = {"pc": 2, "virt": 3, "raspi3b": 3}
DONE = re.compile(r"@@SIPALG_QEMU_DONE rc=(\d+)")


def qemu_command(machine: str, img: str, manifest: dict, share: str, append: str, interactive: bool):
    kernel = os.path.join(img, manifest["vmlinuz"])
    initrd = os.path.join(img, manifest["initrd"])
    io = ["-nographic"] if interactive else ["-display", "none", "-monitor", "none", "-serial", "stdio"]
    virtfs = ["-virtfs", "local,path=%s,mount_tag=hostshare,security_model=none,id=hs" % share]
    common = ["-no-reboot", "-kernel", kernel, "-initrd", initrd] + io
    if machine == "pc":
        return (["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "1024", "-smp", "2"] + common + virtfs
                + ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                   "-append", "console=ttyS0 " + append + " sipalg.exit=" + ("poweroff" if interactive else "debugexit")])
    if machine == "virt":
        return (["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53", "-accel", "tcg", "-m", "1024", "-smp", "2"]
                + common + virtfs + ["-append", "console=ttyAMA0 " + append + " sipalg.exit=poweroff"])
    if machine == "raspi3b":
        dtb = os.path.join(img, "bcm2837-rpi-3-b.dtb")
        return (["qemu-system-aarch64", "-M", "raspi3b", "-m", "1G", "-dtb", dtb] + common
                + ["-append", "console=ttyAMA0,115200 " + append + " sipalg.exit=watchdog"])
    raise ValueError(machine)


def run_machine(arch: str, machine: str, cache: str, tests: str, timeout: int, quiet: bool,
                slow: Optional[float] = None) -> int:
    img = os.path.join(cache, arch, "image")
    with open(os.path.join(img, "manifest.json")) as f:
        manifest = json.load(f)
    out = os.path.join(cache, arch, "results", machine)
    shutil.rmtree(out, ignore_errors=True)
    share = os.path.join(out, "share")
    os.makedirs(share)
    append = "rdinit=/init panic=-1 loglevel=4 sipalg.mode=test sipalg.timeout=%d sipalg.slow=%g" % (
        timeout, SLOW[machine] if slow is None else slow)
    if tests:
        append += " sipalg.tests=" + tests
    cmd = qemu_command(machine, img, manifest, share, append, False)
    if shutil.which(cmd[0]) is None:
        print("qemu-test: needs %s (apt-get install %s)" % (cmd[0], "qemu-system-x86" if machine == "pc"
                                                           else "qemu-system-arm"), file=sys.stderr)
        return 2
    console_path = os.path.join(out, "console.log")
    print("qemu-test: %s/%s: %s" % (arch, machine, " ".join(cmd)), flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    found = {}
    tail = []
    con = open(console_path, "wb")

    def reader():
        for raw in iter(proc.stdout.readline, b""):
            con.write(raw)
            con.flush()
            line = raw.decode(errors="replace").rstrip("\r\n")
            tail.append(line)
            del tail[:-60]
            m = DONE.search(line)
            if m and "rc" not in found:
                found["rc"] = int(m.group(1))
                found["at"] = time.monotonic() - t0
            if "@@SIPALG_QEMU_BOOTED" in line:
                found["booted"] = time.monotonic() - t0
            if not quiet:
                print("[%6.1f] %s" % (time.monotonic() - t0, line), flush=True)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    limit = timeout + 300                    # boot, plus the guest's own timeout reporting first
    timed_out = False
    while proc.poll() is None:
        elapsed = time.monotonic() - t0
        if elapsed > limit or ("rc" in found and elapsed > found["at"] + 30):
            timed_out = "rc" not in found
            proc.kill()
            break
        time.sleep(0.5)
    proc.wait()
    th.join(5)
    con.close()
    seconds = time.monotonic() - t0
    status = proc.returncode
    problems = []
    rc = found.get("rc")
    if rc is not None:
        if machine == "pc" and status != ((min(rc, 100) << 1) | 1):
            problems.append("isa-debug-exit said %d, console rc=%d" % (status, rc))
        shared = os.path.join(share, "rc")
        if machine != "raspi3b":
            if not os.path.exists(shared):
                problems.append("no rc in the 9p share")
            else:
                with open(shared) as f:
                    if f.read().strip() != str(rc):
                        problems.append("9p share rc differs from the console's")
    for f in os.listdir(share):
        shutil.move(os.path.join(share, f), os.path.join(out, f))
    os.rmdir(share)
    with open(console_path, errors="replace") as f:
        console = f.read()
    summary = re.findall(r"^=+ (.*(?:passed|failed|error).*) =+\s*$", console, re.M)
    summary = summary[-1] if summary else "no pytest summary"
    if timed_out or rc is None:
        why = ("TIMEOUT after %d s" % seconds) if timed_out else ("qemu exited (%d) without a result" % status)
        print("qemu-test: %s/%s: FAILED: %s. Last console lines:" % (arch, machine, why), file=sys.stderr)
        print("\n".join("    " + l for l in tail[-40:]), file=sys.stderr)
        verdict, code = "ERROR (%s)" % why, 2
    elif problems:
        verdict, code = "FAILED (%s)" % "; ".join(problems), 1
    else:
        verdict, code = ("PASSED" if rc == 0 else "FAILED (rc=%d)" % rc), (0 if rc == 0 else 1)
    line = "%s %s/%s: %s: %s; booted at %.0f s, %.0f s in all (kernel %s, %s)" % (
        time.strftime("%Y-%m-%d"), arch, machine, verdict, summary, found.get("booted", -1), seconds,
        manifest["kernel"]["kv"], os.uname().machine + " host, TCG")
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(line + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"arch": arch, "machine": machine, "rc": rc, "status": status, "seconds": round(seconds, 1),
                   "booted": found.get("booted"), "verdict": verdict, "pytest": summary, "problems": problems}, f,
                  indent=1)
    print("qemu-test: " + line, flush=True)
    print("qemu-test: logs in %s" % os.path.relpath(out, os.getcwd()), flush=True)
    return code


def shell(arch: str, machine: str, cache: str, slow: Optional[float] = None) -> int:
    img = os.path.join(cache, arch, "image")
    with open(os.path.join(img, "manifest.json")) as f:
        manifest = json.load(f)
    share = os.path.join(cache, arch, "results", "shell")
    os.makedirs(share, exist_ok=True)
    cmd = qemu_command(machine, img, manifest, share, "rdinit=/init panic=-1 loglevel=4 sipalg.mode=shell "
                       "sipalg.slow=%g" % (SLOW[machine] if slow is None else slow), True)
    print("qemu-test: %s (Ctrl-A X quits qemu; the host's %s is /mnt/host)" % (" ".join(cmd), share), flush=True)
    return subprocess.call(cmd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="x86_64", choices=sorted(MACHINES) + ["amd64", "arm64"])
    ap.add_argument("--machine", default="all", help="pc | virt | raspi3b | all (the arch's machines)")
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "qemu"))
    ap.add_argument("--tests", default="", help="comma-separated test name parts (pytest -k), default all")
    ap.add_argument("--timeout", type=int, help="guest timeout in seconds (default per machine)")
    ap.add_argument("--shell", action="store_true", help="boot to a shell on this terminal instead")
    ap.add_argument("--quiet", action="store_true", help="don't echo the console")
    ap.add_argument("--slow", type=float, help="the lab's clock dilation in the guest (default per machine: %s; "
                    "1: none, the guest at real time)" % ", ".join("%s %g" % kv for kv in sorted(SLOW.items())))
    args = ap.parse_args(argv)
    args.arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(args.arch, args.arch)
    machines = MACHINES[args.arch] if args.machine == "all" else [args.machine]
    if any(m not in MACHINES[args.arch] for m in machines):
        ap.error("%s machines: %s" % (args.arch, ", ".join(MACHINES[args.arch])))
    if not re.fullmatch(r"[A-Za-z0-9_,]*", args.tests):
        ap.error("--tests: names separated by commas")
    cache = os.path.abspath(args.cache)
    if not os.path.exists(os.path.join(cache, args.arch, "image", "manifest.json")):
        print("qemu-test: no image: make qemu-image ARCH=%s" % args.arch, file=sys.stderr)
        return 2
    if args.shell:
        return shell(args.arch, machines[0], cache, args.slow)
    worst = 0
    for m in machines:
        worst = max(worst, run_machine(args.arch, m, cache, args.tests, args.timeout or TIMEOUTS[m], args.quiet,
                                       args.slow))
    return worst


if __name__ == "__main__":
    sys.exit(main())
