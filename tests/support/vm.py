"""The QEMU test VM's side of the lab (qemu/, `make qemu-test`): the installed package as the router.

In the VM the root namespace is the router: it runs the installed package
(/usr/sbin/sipalg from the .ipk, started by /etc/init.d/sipalg under the VM's
procd emulation), and the ALG is switched on the way a user does it, with uci
and the init script.  Phones and server are network namespaces
(tests.support.lab.netns.Lab(router_ns=False)).  Used by tests/qemu, which
only the VM's sipalg-vm-test runs.
"""
import json
import os
import re
import signal
import subprocess
import time

from tests.support.lab.netns import Lab
from tests.support.lab.peers import kernel_table
from tests.support.need import need

VM_MARKER = "/etc/sipalg-qemu-vm"
INIT = "/etc/init.d/sipalg"
DAEMON = "/usr/sbin/sipalg"
STATUS = "/var/run/sipalg/status.json"
LOG = "/var/log/messages"               # busybox syslogd, the VM's logd: the daemon logs there (--syslog)
CAPTURE = "/var/log/sipalg.log"         # what procd captured of its stderr (the emulation's file)
FALLBACK_MARK = "0x5a1a0001"            # alg.kernel.nftables.MARK: the iptables NFQUEUE fallback


def sh(*cmd, check=True, timeout=60) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stdout))
    return r


def uci_set(**options) -> None:
    """`uci set sipalg.main.KEY=VALUE` for each, then `uci commit sipalg` (one `uci batch`)."""
    script = "".join("set sipalg.main.%s=%s\n" % kv for kv in options.items()) + "commit sipalg\n"
    r = subprocess.run(["uci", "batch"], input=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "uci batch failed:\n" + script + r.stdout


def _alive(pid) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError, TypeError):
        return False


class _Proc:
    def __init__(self, alg):
        self.alg = alg

    def poll(self):
        return None if _alive(self.alg.pid) else 1


class ServiceAlg:
    """The installed daemon as the init script runs it, with tests.support.lab.peers.Alg's interface."""

    table = "sipalg"
    state_dir = "/var/run/sipalg"
    log_path = LOG

    def __init__(self, lab: Lab):
        self.lab = lab
        self.pid = None
        self.killed = False
        self.log_start = os.path.getsize(LOG) if os.path.exists(LOG) else 0
        self.capture_start = os.path.getsize(CAPTURE) if os.path.exists(CAPTURE) else 0

    # switching it on and off the way a user does
    def enable(self, reload: str = "init") -> "ServiceAlg":
        uci_set(wan_if=self.lab.wan_if, lan_if=self.lab.lan_if, log_level="debug", enabled=1)
        self._reload(reload)
        return self.wait_running()

    def disable(self, reload: str = "init") -> None:
        uci_set(enabled=0)
        self._reload(reload)
        self.wait_stopped()

    @staticmethod
    def _reload(how: str) -> None:
        sh(INIT, "reload") if how == "init" else sh("reload_config")

    def wait_running(self, old_pid=None, timeout: float = 60) -> "ServiceAlg":
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(STATUS) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                st = {}
            pid = st.get("pid")
            if _alive(pid) and pid != old_pid and time.time() <= st.get("fresh_until", 0):
                break
            if time.monotonic() > deadline:
                raise AssertionError("sipalg did not come up in %d s; procd: %s\nlog:\n%s"
                                     % (timeout, sh("/usr/libexec/procd-shim", "list").stdout, self.log()))
            time.sleep(0.2)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().split(b"\0")
        # the packaged script under the init script's command line, not the repository's copy
        assert cmdline[1:4] == [DAEMON.encode(), b"run", b"--config"], cmdline
        self.pid, self.killed = pid, False
        return self

    def wait_stopped(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.pid is not None and _alive(self.pid):
            assert time.monotonic() < deadline, "sipalg (pid %s) still running" % self.pid
            time.sleep(0.1)

    # tests.support.lab.peers.Alg's interface
    @property
    def proc(self):
        return _Proc(self) if self.pid else None

    def start(self, wait: float = 60) -> "ServiceAlg":
        if self.killed:                        # procd respawns it (respawn 3600 5 5 in the init script)
            return self.wait_running(old_pid=self.pid, timeout=wait)
        sh(INIT, "start")
        return self.wait_running(timeout=wait)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.pid is None:
            return 0
        if sig == signal.SIGTERM:
            sh(INIT, "stop")
            self.wait_stopped()
            self.pid = None
            return 0
        os.kill(self.pid, sig)
        self.killed = sig == signal.SIGKILL
        self.wait_stopped()
        return -sig

    def status(self) -> dict:
        """status.json as `sipalg status --json` gives it, read here: each Python start costs
        seconds under TCG (the scenarios that are about the CLI run it themselves)."""
        time.sleep(1.2)                        # it writes once a second
        with open(STATUS) as f:
            return dict(json.load(f), running=True, now=int(time.time()))

    def log(self) -> str:
        """Its syslog lines since this object was made (and, after them, anything procd captured)."""
        out = []
        for path, start in ((LOG, self.log_start), (CAPTURE, self.capture_start)):
            try:
                with open(path, errors="replace") as f:
                    f.seek(start)
                    out.append(f.read())
            except OSError:
                pass
        return "".join(out)

    def kernel_table(self) -> dict:
        return kernel_table(self.lab, self.table)

    def queue_rules(self) -> list:
        r = sh("nft", "list", "table", "ip", self.table, check=False)
        return [l.strip() for l in r.stdout.splitlines() if re.search(r"\bqueue\b|%s|NFQUEUE" % FALLBACK_MARK, l)]

    def assert_nft_queue(self) -> None:
        """SIP reaches the daemon through the nft `queue` statement, not the iptables NFQUEUE fallback."""
        rules = self.queue_rules()
        assert len(rules) == 4 and all(re.search(r"\bqueue\b.*\bbypass\b|\bqueue flags bypass\b", l) for l in rules), rules
        assert not any(FALLBACK_MARK in l for l in rules), rules
        assert "NFQUEUE" not in sh("iptables-save").stdout
        with open(STATUS) as f:
            assert json.load(f)["queue"] == "nft"


class VmRouter:
    """tests.support.fixtures' Router for the VM: the VM is the router, the service the daemon."""

    router_ns = False

    def check(self) -> None:
        need(os.path.exists(VM_MARKER), "runs only inside the QEMU test VM (make qemu-test)")
        assert sh(INIT, "running", check=False).returncode != 0, "sipalg already running before the test"

    def start(self, lab: Lab, logdir: str) -> ServiceAlg:
        a = ServiceAlg(lab).enable()
        a.assert_nft_queue()
        return a

    def finish(self, alg: ServiceAlg) -> None:
        alg.disable()
