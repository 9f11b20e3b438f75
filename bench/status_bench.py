"""What publishing the status costs, and what reading it costs: a benchmark, it asserts nothing.

    python3 bench/status_bench.py [REGISTRATIONS [CALLS]]      # default 10000 and 1000

1. In-process: the daemon's Engine fed REGISTER/200 OK pairs from as many phones (and calls with
   media from the first phones), then the daemon's own Daemon.status() and StatusFile writer on a
   stand-in for the rest of the daemon (no root, no kernel): the file's size, beside what the old
   complete listing would weigh, and the time to build and write it and to compute the change key
   the loop reads on every turn.
2. One LuCI poll: the rpcd plugin as rpcd runs it (`luci.sipalg call status`), under /bin/sh and,
   if there, busybox ash with busybox's applets (OpenWrt's shell), against that file; and
   `sipalg status --json` (what a poll ran before).  CPU per run from the kernel's accounting of the
   finished children (getrusage RUSAGE_CHILDREN), medians.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from alg import daemon  # noqa: E402
from alg.core.config import Config  # noqa: E402
from alg.core.engine import IN, OUT, Engine  # noqa: E402
from alg.statusfile import StatusFile  # noqa: E402

WAN_IP = "203.0.113.1"
SERVER = ("203.0.113.10", 5060)
PLUGIN = os.path.join(ROOT, "openwrt", "luci-app-sipalg", "root", "usr", "libexec", "rpcd", "luci.sipalg")


def _crlf(s):
    return s.replace("\n", "\r\n").encode()


def phone(i):
    return ("10.%d.%d.%d" % (i // 62500 % 250 + 1, i // 250 % 250, i % 250 + 2), 5060)


def register(ip, port, i):
    return _crlf("REGISTER sip:203.0.113.10 SIP/2.0\n"
                 "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKr%08d;rport\n"
                 "Max-Forwards: 70\n"
                 "From: <sip:user%d@203.0.113.10>;tag=r%d\n"
                 "To: <sip:user%d@203.0.113.10>\n"
                 "Call-ID: reg-%d@%s\n"
                 "CSeq: 1 REGISTER\n"
                 "Contact: <sip:user%d@%s:%d>;expires=3600\n"
                 "Expires: 3600\n"
                 "Content-Length: 0\n\n" % (ip, port, i, i, i, i, i, ip, i, ip, port))


def ok_for(request):
    """The registrar's 200 OK to a REGISTER as it left the router (Via and Contact as rewritten)."""
    lines = request.split(b"\r\n")
    out = [b"SIP/2.0 200 OK"]
    for ln in lines[1:]:
        if ln.startswith(b"Via:"):
            ln += b";received=%s" % WAN_IP.encode()
        elif ln.startswith(b"To:"):
            ln += b";tag=srv"
        elif ln.startswith(b"Max-Forwards"):
            continue
        out.append(ln)
    return b"\r\n".join(out)


SDP = ("v=0\no=a 1 1 IN IP4 {ip}\ns=-\nc=IN IP4 {ip}\nt=0 0\nm=audio {port} RTP/AVP 0\n")


def invite(ip, port, i):
    body = _crlf(SDP.format(ip=ip, port=6000))
    head = _crlf("INVITE sip:bob@203.0.113.10 SIP/2.0\n"
                 "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKi%08d;rport\n"
                 "Max-Forwards: 70\n"
                 "From: <sip:user%d@203.0.113.10>;tag=i%d\n"
                 "To: <sip:bob@203.0.113.10>\n"
                 "Call-ID: call-%d@%s\n"
                 "CSeq: 1 INVITE\n"
                 "Contact: <sip:user%d@%s:%d>\n"
                 "Content-Type: application/sdp\n" % (ip, port, i, i, i, i, ip, i, ip, port))
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def fill(n_regs, n_calls):
    e = Engine(Config(wan_ip=WAN_IP, lan_nets=["10.0.0.0/8"]))
    now = 1.0
    for i in range(n_regs):
        src = phone(i)
        res = e.handle(OUT, src, SERVER, register(src[0], src[1], i), now)
        sent = res.payload if res.payload is not None else register(src[0], src[1], i)
        e.handle(IN, SERVER, (WAN_IP, res.snat[1] if res.snat else 5060), ok_for(sent), now)
    for i in range(n_calls):
        src = phone(i)
        e.handle(OUT, src, SERVER, invite(src[0], src[1], i), now)
    return e


def stand_in(engine, state_dir):
    """The parts of a running Daemon that status() and the change key read."""
    d = SimpleNamespace(engine=engine, clock=time.monotonic, wan_ip=WAN_IP, nft_failures=0,
                        site=SimpleNamespace(wan_if="wan", lan_if="br-lan"), table=SimpleNamespace(use_nft_queue=True),
                        leds=SimpleNamespace(describe=dict), queue=None,
                        counters={"sent": 0, "not_udp": 0, "media_queued": 0}, refused={},
                        hygiene=SimpleNamespace(deleted=0), kernel_helper=None)
    d.published = StatusFile(state_dir, time.monotonic)
    return d


def median_ms(f, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def child_cpu_ms(argv, runs, env):
    """Median user+system ms of one run of argv, from the kernel's accounting of finished children."""
    per = []
    for _ in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(per[1:])                # the first run warms the caches


def main():
    n_regs = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    n_calls = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    t0 = time.perf_counter()
    e = fill(n_regs, n_calls)
    print("engine: %d registrations, %d calls, %d bindings (filled in %.1f s)"
          % (len(e.registrations), len(e.dialogs), len(e.bindings()), time.perf_counter() - t0))
    state = tempfile.mkdtemp(prefix="hs-status-bench-")
    try:
        d = stand_in(e, state)
        now = time.monotonic()
        d.published.publish(now, daemon.Daemon._status_key(d), lambda t: daemon.Daemon.status(d, t))
        path = os.path.join(state, "status.json")
        size = os.path.getsize(path)
        limit, daemon.LIST_LIMIT = daemon.LIST_LIMIT, 10 ** 9
        full = len(json.dumps(daemon.Daemon.status(d, now)))
        daemon.LIST_LIMIT = limit
        print("status.json: %d bytes (first %d of each list); every entry listed: %d bytes"
              % (size, limit, full))
        print("build status(): %.2f ms, json + write + rename: %.2f ms, change key: %.1f us (median of 20)"
              % (median_ms(lambda: daemon.Daemon.status(d, now), 20),
                 median_ms(lambda: d.published._replace(open(path, "rb").read()), 20),
                 median_ms(lambda: daemon.Daemon._status_key(d), 2000) * 1000))

        runs = 50
        env = dict(os.environ, SIPALG_STATE_DIR=state, SIPALG=os.path.join(ROOT, "scripts", "nonexistent"))
        print("one LuCI poll, CPU (user+system) per run, median of %d:" % runs)
        print("  rpcd plugin, /bin/sh:            %6.2f ms" % child_cpu_ms([PLUGIN, "call", "status"], runs, env))
        busybox = shutil.which("busybox")
        if busybox:
            bindir = os.path.join(state, "bin")
            os.mkdir(bindir)
            for applet in ("sh", "date", "tail", "tr", "sed", "printf", "cat"):
                os.symlink(busybox, os.path.join(bindir, applet))
            bb_env = dict(env, PATH=bindir + os.pathsep + env["PATH"])
            print("  rpcd plugin, busybox ash:        %6.2f ms"
                  % child_cpu_ms([os.path.join(bindir, "sh"), PLUGIN, "call", "status"], runs, bb_env))
        py_env = dict(env, PYTHONPATH=ROOT)
        print("  sipalg status --json (python3):  %6.2f ms"
              % child_cpu_ms([sys.executable, "-m", "alg", "status", "--json", "--state-dir", state], runs, py_env))
    finally:
        shutil.rmtree(state)


if __name__ == "__main__":
    main()
