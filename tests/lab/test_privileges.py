"""The daemon after start: an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW, still doing its job.

And the queue number checked at start: one another program holds is a clear error naming the option.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from alg import privileges
from tests.support import ROOT
from tests.support.lab.messages import options_through
from tests.support.lab.netns import ROUTER_WAN, SERVER
from tests.support.lab.peers import Alg, exchange_udp
from tests.support.need import need

# the daemon imports nothing new after the drop that an unprivileged user couldn't read: a system
# python3 as on a router (this host's default interpreter may live under /root, 0700)
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "nobody"


@pytest.fixture
def open_dir():
    """A state directory an unprivileged daemon can reach (pytest's own are 0700 root's)."""
    d = tempfile.mkdtemp(prefix="sa-priv-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _rewritten(lab, n):
    got = options_through(lab, "priv-%d" % n)
    return got is not None and b"Via: SIP/2.0/UDP %s:5060;" % ROUTER_WAN.encode() in got[1]


def test_after_start_unprivileged_with_two_capabilities_and_still_working(lab, logdir, open_dir):
    need(os.path.exists(SYSTEM_PYTHON), "needs %s (a python3 an unprivileged user can read)" % SYSTEM_PYTHON)
    a = Alg(lab, logdir, "--user", USER, python=SYSTEM_PYTHON, state_dir=os.path.join(open_dir, "state")).start()
    try:
        st = privileges.status(str(a.proc.pid))
        uid = str(subprocess.run(["id", "-u", USER], stdout=subprocess.PIPE, text=True).stdout.strip())
        assert st["Uid"].split() == [uid] * 4 and st["Gid"].split()[0] != "0", st
        want = "%016x" % privileges.mask(privileges.KEEP)                  # 0000000000003000
        for k in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
            assert st[k] == want, (k, st[k])
        assert st["NoNewPrivs"] == "1"
        assert "privileges: now user %s" % USER in a.log()
        # SIP is still rewritten (queue verdicts, binding elements over netlink)
        assert _rewritten(lab, 1)
        # a keep-alive for the binding still answered (the raw socket opened before the drop)
        got = exchange_udp(lab, lab.wan, (SERVER, 5060), (ROUTER_WAN, 5060), b"\r\n\r\n")
        assert got is not None and got[1] == b"\r\n", got
        # the whole ruleset flushed: the table is put back unprivileged (nft -f with the ambient caps)
        lab.run(lab.rtr, "nft", "flush", "ruleset")
        a.note_rules()                                  # the lab's own NAT went with it, on purpose
        deadline = time.monotonic() + 5
        while "sipalg" not in lab.run(lab.rtr, "nft", "list", "tables").stdout.decode():
            assert time.monotonic() < deadline, a.log()[-2000:]
            time.sleep(0.2)
        time.sleep(0.5)
        assert _rewritten(lab, 2), a.log()[-2000:]
        assert "re-installed" in a.log()
        # status still published into the directory it was given
        assert a.status()["pid"] == a.proc.pid
    finally:
        assert a.stop() == 0
    # and on SIGTERM it still removed everything it installed
    assert "sipalg" not in lab.run(lab.rtr, "nft", "list", "tables").stdout.decode()
    assert "stopped; table sipalg and queue rules removed" in a.log()


HOLD = ("import sys, time; sys.path.insert(0, %r)\n"
        "from alg.kernel.nfnetlink_queue import NfQueue\n"
        "q = NfQueue(%d); print('bound', flush=True); time.sleep(60)\n")


def test_a_queue_another_program_holds_is_a_clear_error(lab, logdir):
    num = 5060
    holder = lab.popen(lab.rtr, sys.executable, "-c", HOLD % (ROOT, num), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    try:
        assert holder.stdout.readline().strip() == b"bound"
        a = Alg(lab, logdir, "--queue-num", str(num))
        with pytest.raises(RuntimeError):
            a.start()
        assert a.proc.returncode == 2
        log = a.log()
        assert re.search(r"sipalg run: sipalg\.main\.queue_num %d: NFQUEUE %d is taken by python3 \(pid %d\); "
                         r"set a free queue number$" % (num, num, holder.pid), log, re.M), log
        assert "Traceback" not in log
        # nothing of ours left behind, so the other program's queue got none of our SIP
        assert "sipalg" not in lab.run(lab.rtr, "nft", "list", "tables").stdout.decode()
    finally:
        holder.kill()
        holder.wait()
