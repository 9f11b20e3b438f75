"""The router set-ups the lab benchmarks compare, each in a Lab of its own.

    plain           MASQUERADE only (the lab's own NAT table)
    helper          the kernel's SIP helper: nf_conntrack_sip + nf_nat_sip, attached by an nft
                    `ct helper` object to SIP on port 5060 (as fw4 attaches it)
    null-netlink    a null daemon (bench/null_daemon.py): the ALG's own table and queue rules,
    null-binding    every queued packet accepted at once; the queue backend forced with
                    SIPALG_QUEUE_BACKEND (the project's netlink client, the NetfilterQueue binding)
    sipalg          `sipalg run` from this checkout (tests.support.lab.peers.Alg), at info level as
                    on a router, with whatever daemon flags or uci file the benchmark was given
    sipalg-base     the same from another checkout (--base DIR, e.g. a `git worktree` of main):
                    a change and what it changes, side by side in one interleaved run

The null daemons are the floor: what queueing to userspace and back costs before any SIP
work.  A Router knows its daemon's pid, so a benchmark can read its CPU and RSS from /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from tests.support.lab.netns import Lab, ROUTER_WAN
from tests.support.lab.peers import Alg

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("plain", "helper", "null-netlink", "null-binding", "sipalg")
BASE = "sipalg-base"            # a mode only with --base: not among the defaults
LABELS = {"plain": "plain NAT", "helper": "kernel helper", "null-netlink": "null netlink",
          "null-binding": "null binding", "sipalg": "sipalg", BASE: "sipalg base"}
BACKEND_ENV = "SIPALG_QUEUE_BACKEND"

# nf_conntrack_sip on the SIP port both ways (requests to 5060, and new flows from a server's 5060),
# nf_nat_sip rewriting through the lab's MASQUERADE: what fw4's auto_helper sets up on OpenWrt
HELPER_TABLE = """table ip bench_sip_helper {
  ct helper sip { type "sip" protocol udp; l3proto ip; }
  chain pre {
    type filter hook prerouting priority filter; policy accept;
    udp dport 5060 ct helper set "sip"
    udp sport 5060 ct helper set "sip"
  }
}
"""
REFUSED = re.compile(r"refused (\w+) for \S+: (.*)")


def add_daemon_options(ap: argparse.ArgumentParser) -> None:
    """--daemon-arg and --config: how a benchmark runs sipalg with other settings (e.g. raised caps)."""
    ap.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                    help="one more `sipalg run` argument (repeat; --daemon-arg=--flag for flags), e.g. to raise caps")
    ap.add_argument("--config", help="a uci file for sipalg (it then names the lab's devices itself)")
    ap.add_argument("--base", metavar="DIR", help="another sipalg checkout, run as mode %s (same flags and "
                    "config) beside this one's" % BASE)


def check_modes(modes: Sequence[str], args: argparse.Namespace, known: Sequence[str] = MODES) -> Optional[str]:
    """What is wrong with the --modes asked for, of `known` and sipalg-base (None: nothing)."""
    bad = [m for m in modes if m not in known and m != BASE]
    if bad:
        return "--modes: unknown %s (use %s, or %s with --base)" % (", ".join(bad), ", ".join(known), BASE)
    if BASE in modes and not (args.base and os.path.isfile(os.path.join(args.base, "alg", "cli.py"))):
        return "--modes %s: --base must name a sipalg checkout (got %r)" % (BASE, args.base)
    return None


def daemon_note(args: argparse.Namespace) -> str:
    """What a report's first line says about those settings ('' for none)."""
    return "; sipalg args: " + " ".join(args.daemon_arg) if args.daemon_arg else ""


def lab_router(stack: contextlib.ExitStack, tag: str, mode: str, args: argparse.Namespace,
               backend: Optional[str] = None) -> Tuple[Lab, Router, str]:
    """A lab of its own with `mode`'s router started in it, both closed with `stack`; and the log directory."""
    logdir = tempfile.mkdtemp(prefix="sipalg-%s-%s-" % (tag, mode))
    lab = stack.enter_context(Lab(tag=tag))
    router = Router(lab, mode, logdir, args.daemon_arg, args.config, backend=backend,
                    base=getattr(args, "base", None)).start()
    stack.callback(router.stop)
    return lab, router, logdir


def available(mode: str) -> bool:
    """null-binding needs the NetfilterQueue binding installed; everything else is always there."""
    if mode == "null-binding":
        from alg.kernel.queue import binding_available
        return binding_available()
    return mode in MODES or mode == BASE


class Router:
    """One mode's router in `lab`: start() sets it up, stop() takes its daemon down.

    daemon_args go to `sipalg run` after the lab's own flags (so they win); config is a uci
    file that then says everything itself (Alg's config=); backend forces the daemon's
    queue backend (None: its default); base is the checkout mode sipalg-base runs."""

    def __init__(self, lab: Lab, mode: str, logdir: str, daemon_args: Sequence[str] = (),
                 config: Optional[str] = None, backend: Optional[str] = None, base: Optional[str] = None):
        if mode not in MODES and not (mode == BASE and base):
            raise ValueError("unknown router mode %r: use %s" % (mode, ", ".join(MODES)))
        self.lab, self.mode, self.logdir = lab, mode, logdir
        self.label = LABELS[mode]
        self.daemon_args = list(daemon_args)
        self.config = config
        self.backend = mode[5:] if mode.startswith("null-") else backend
        self.alg: Optional[Alg] = None
        self.proc: Optional[subprocess.Popen] = None
        self.killed = False
        self.base = base

    def start(self) -> "Router":
        lab = self.lab
        env = {BACKEND_ENV: self.backend} if self.backend else {}
        if self.mode == "helper":
            lab.nft(lab.rtr, HELPER_TABLE)
        elif self.mode.startswith("null-"):
            self.proc = lab.popen(lab.rtr, sys.executable, os.path.join(HERE, "null_daemon.py"),
                                  "--wan-if", lab.wan_if, "--lan-if", lab.lan_if, "--wan-ip", ROUTER_WAN,
                                  stdout=subprocess.PIPE, stderr=open(os.path.join(self.logdir, "null.log"), "w"),
                                  env=dict(os.environ, **env))
            line = self.proc.stdout.readline().decode().split()
            if line[:1] != ["ready"]:
                raise RuntimeError("null daemon did not start (%s): see %s/null.log" % (self.mode, self.logdir))
            self.backend = line[1]
        elif self.mode in ("sipalg", BASE):
            extra = [] if self.config or "--log-level" in self.daemon_args else ["--log-level", "info"]
            wrapper = None
            if self.mode == BASE:            # its package ahead of this checkout's on sys.path
                wrapper = ["-c", "import sys; sys.path.insert(0, %r); from alg.cli import main; "
                                 "sys.exit(main(sys.argv[1:]))" % os.path.abspath(self.base)]
            self.alg = Alg(lab, self.logdir, *(extra + self.daemon_args), config=self.config, env=env,
                           python_args=wrapper).start()
            self.backend = self.status().get("queue_backend") or self.backend
        return self

    def stop(self) -> None:
        """SIGTERM; a daemon still busy 10 s later is killed and its table deleted for it, so the
        next start (which picks up what the table holds) begins empty; `killed` says so."""
        if self.alg is not None:
            try:
                self.alg.stop()
            except subprocess.TimeoutExpired:
                self.killed = True
                self.alg.proc.kill()
                self.alg.proc.wait()
                self.alg.proc = None
                self.lab.run(self.lab.rtr, "nft", "delete", "table", "ip", self.alg.table, check=False)
            self.alg = None
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None

    @property
    def pid(self) -> Optional[int]:
        """The daemon's pid (`ip netns exec` execs it, so the Popen's own), None without one."""
        p = self.alg.proc if self.alg is not None else self.proc
        return p.pid if p is not None else None

    def status(self) -> dict:
        """sipalg's status.json as it is now (no wait for the next write); {} for other modes."""
        if self.alg is None:
            return {}
        try:
            with open(os.path.join(self.alg.state_dir, "status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def log(self) -> str:
        return self.alg.log() if self.alg is not None else ""

    def refusals(self) -> Counter:
        """What the daemon's log says it refused, by what and reason: a capped run is no measurement."""
        return Counter(m.groups() for m in REFUSED.finditer(self.log()))

    def rss_kb(self) -> Optional[int]:
        return rss_kb(self.pid) if self.pid else None

    def cpu_seconds(self) -> Optional[float]:
        return cpu_seconds(self.pid) if self.pid else None


def rss_kb(pid: int) -> Optional[int]:
    """VmRSS of a process in kB (None once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of a process so far, in seconds, with its waited-for children's
    (cutime + cstime): what a daemon that runs `nft` per change spends in them too."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def describe_refusals(routers: Sequence[Router]) -> List[str]:
    """Lines naming what each daemon refused and its counters that say so, for the report's end."""
    out = []
    for r in routers:
        for (what, reason), n in sorted(r.refusals().items()):
            out.append("%s refused %s %d times: %s" % (r.label, what, n, reason))
        counters = r.status().get("counters", {})
        capped = {k: v for k, v in counters.items() if v and ("refus" in k or "cap" in k or "limit" in k)}
        if capped:
            out.append("%s counters: %s" % (r.label, capped))
    return out


def queued_by_kernel(lab: Lab, table: str = "sipalg") -> int:
    """Packets the kernel's queue rules sent to the queue so far: the nft rules with a `queue`
    statement in the ALG's table, and the iptables NFQUEUE rules of the fallback (the packets
    the daemon should see; with fail-open, those it didn't passed unseen)."""
    n = 0
    r = lab.run(lab.rtr, "nft", "-j", "list", "table", "ip", table, check=False)
    for item in json.loads(r.stdout).get("nftables", []) if r.returncode == 0 else []:
        exprs = (item.get("rule") or {}).get("expr", [])
        if any(isinstance(ex, dict) and "queue" in ex for ex in exprs):
            n += sum(ex["counter"].get("packets", 0) for ex in exprs
                     if isinstance(ex, dict) and isinstance(ex.get("counter"), dict))
    r = lab.run(lab.rtr, "iptables-save", "-c", "-t", "mangle", check=False)
    for line in r.stdout.decode().splitlines():
        if "-j NFQUEUE" in line and line.startswith("["):
            n += int(line[1:].split(":", 1)[0])
    return n


def queue_state(lab: Lab, num: int = 0) -> Optional[dict]:
    """The kernel's view of NFQUEUE `num` in the router (/proc/net/netfilter/nfnetlink_queue):
    packets waiting now, dropped because the queue was full (no fail-open), dropped because
    the daemon's socket was (no fail-open), ids handed out.  None while nothing binds it."""
    r = lab.run(lab.rtr, "cat", "/proc/net/netfilter/nfnetlink_queue", check=False)
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == str(num):
            return {"waiting": int(f[2]), "dropped": int(f[5]), "user_dropped": int(f[6]), "ids": int(f[7])}
    return None


def conntrack_drops(lab: Lab) -> Dict[str, int]:
    """What the router's conntrack refused so far (`conntrack -S`, summed over CPUs): insert_failed
    (e.g. a NAT mapping that clashes with one held; the packet also counts in drop) and drop."""
    r = lab.run(lab.rtr, "conntrack", "-S", check=False)
    n = {"insert_failed": 0, "drop": 0}
    for field in r.stdout.decode().split():
        name, _, value = field.partition("=")
        if name in n and value.isdigit():
            n[name] += int(value)
    return n
