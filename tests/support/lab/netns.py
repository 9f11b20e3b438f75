"""Network namespaces for the lab: two phones, a router, a WAN server.

    ph1 10.0.0.2 --+                               
                   +-- br (10.0.0.1) rtr wan0 (203.0.113.1) ---- wan 203.0.113.10
    ph2 10.0.0.3 --+

Names carry a per-run prefix so parallel or crashed runs never collide, and
everything is removed on close (and at exit, and by cleanup_stale()).

Lab(router_ns=False) makes the current namespace the router instead of a
netns `rtr` (br0, lan0/lan1, wan0 and the MASQUERADE table live there):
for the QEMU test VM, whose root namespace is the router running the
installed package.  Never use it on a workstation.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import time
from typing import Optional, Sequence

PREFIX = "sa"
LAN_NET = "10.0.0.0/24"
ROUTER_LAN = "10.0.0.1"
PHONES = ("10.0.0.2", "10.0.0.3")
ROUTER_WAN = "203.0.113.1"
SERVER = "203.0.113.10"
WAN_NET = "203.0.113.0/24"


class LabError(RuntimeError):
    pass


def sh(cmd: Sequence[str], check: bool = True, input: Optional[bytes] = None,
       timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Run cmd to completion (kw: subprocess.run's, e.g. env, cwd); LabError when it fails and check."""
    r = subprocess.run(list(cmd), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise LabError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                r.stderr.decode(errors="replace").strip()))
    return r


def cleanup_stale(prefix: str = PREFIX) -> None:
    """Remove namespaces left by runs whose process is gone."""
    out = sh(["ip", "netns", "list"], check=False).stdout.decode()
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) >= 3 and parts[0] == prefix and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid() and not os.path.exists("/proc/%d" % pid):
                sh(["ip", "netns", "del", name], check=False)


class Lab:
    """The namespaces and links; `with Lab() as lab:` builds and always removes them."""

    def __init__(self, tag: str = "", masquerade: bool = True, router_ns: bool = True):
        self.id = "%s-%d%s" % (PREFIX, os.getpid(), ("-" + tag) if tag else "")
        self.ph1 = self.id + "-ph1"
        self.ph2 = self.id + "-ph2"
        self.router_ns = router_ns
        self.rtr = self.id + "-rtr" if router_ns else ""          # "": run() runs here, not in a netns
        self.wan = self.id + "-wan"
        self.namespaces = [self.ph1, self.ph2] + ([self.rtr] if router_ns else []) + [self.wan]
        self.masquerade = masquerade
        self.lan_if = "br0"
        self.wan_if = "wan0"
        self._up = False

    # -- building

    def __enter__(self) -> "Lab":
        self.build()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def build(self) -> None:
        cleanup_stale()
        atexit.register(self.close)
        self._up = True
        try:
            if not self.router_ns:
                self._remove_router_here()                     # left by a crashed run
            # one `ip -batch` per namespace: a process start costs a lot under TCG (the QEMU VM)
            sh(["ip", "-batch", "-"], input="".join("netns add %s\n" % ns for ns in self.namespaces).encode())
            r = self.rtr
            router = ["link set lo up", "link add br0 type bridge", "addr add %s/24 dev br0" % ROUTER_LAN,
                      "link set br0 up"]
            for i, ns in enumerate((self.ph1, self.ph2)):
                port = "lan%d" % i
                router += ["link add %s type veth peer name eth0 netns %s" % (port, ns),
                           "link set %s master br0" % port, "link set %s up" % port]
            router += ["link add wan0 type veth peer name eth0 netns %s" % self.wan,
                       "addr add %s/24 dev wan0" % ROUTER_WAN, "link set wan0 up"]
            self.ip_batch(r, router if self.router_ns else router[1:])
            for ns, ip in ((self.ph1, PHONES[0]), (self.ph2, PHONES[1])):
                self.ip_batch(ns, ["link set lo up", "addr add %s/24 dev eth0" % ip, "link set eth0 up",
                                   "route add default via %s" % ROUTER_LAN])
            self.ip_batch(self.wan, ["link set lo up", "addr add %s/24 dev eth0" % SERVER, "link set eth0 up"])
            self.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            if self.masquerade:
                self.nft(r, "table ip lab_nat {\n chain post {\n type nat hook postrouting priority srcnat;"
                            " oifname \"wan0\" masquerade\n }\n}\n")
            self.wait_reachable()
        except Exception:
            self.close()
            raise

    def wait_reachable(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.run(self.ph1, "ping", "-c1", "-W1", SERVER, check=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError("phone can't reach the server through the router")

    def close(self) -> None:
        if not self._up:
            return
        self._up = False
        for ns in self.namespaces:
            pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
        sh(["ip", "-force", "-batch", "-"], check=False,
           input="".join("netns del %s\n" % ns for ns in self.namespaces).encode())
        if not self.router_ns:
            self._remove_router_here()

    def _remove_router_here(self) -> None:
        """What deleting the rtr netns would do: links, NAT table, conntrack entries, changed timeouts."""
        for link in ("br0", "wan0", "lan0", "lan1"):
            sh(["ip", "link", "del", link], check=False)
        sh(["nft", "delete", "table", "ip", "lab_nat"], check=False)
        sh(["conntrack", "-F"], check=False)
        for key, value in getattr(self, "_sysctls", {}).items():
            sh(["sysctl", "-qw", "%s=%s" % (key, value)], check=False)

    # -- using

    def run(self, ns: str, *cmd: str, check: bool = True, input: Optional[bytes] = None,
            timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return sh((["ip", "netns", "exec", ns] if ns else []) + list(cmd), check=check, input=input,
                  timeout=timeout, **kw)

    def ip_batch(self, ns: str, commands: Sequence[str]) -> None:
        """`ip` commands in one process, in namespace NS ("": here); the first that fails raises."""
        sh(["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"], input="".join(c + "\n" for c in commands).encode())

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen((["ip", "netns", "exec", ns] if ns else []) + list(cmd), **kw)

    def nft(self, ns: str, script: str) -> None:
        self.run(ns, "nft", "-f", "-", input=script.encode())

    def set_udp_timeouts(self, udp: int, stream: int) -> None:
        """Shorten the router's conntrack UDP timeouts (the field's 30-60 s NAT)."""
        if not self.router_ns and not hasattr(self, "_sysctls"):
            self._sysctls = {k: sh(["sysctl", "-n", k]).stdout.decode().strip() for k in
                             ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")}
        self.run(self.rtr, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=%d" % udp)
        self.run(self.rtr, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=%d" % stream)

    def conntrack_flush(self) -> None:
        self.run(self.rtr, "conntrack", "-F", check=False)
