"""The lab's pytest fixtures (lab, logdir, alg): one implementation for the host lab
(tests/lab) and the QEMU VM (tests/qemu), which differ only in a Router:

* the host: the router is a network namespace, the daemon this checkout's
  `sipalg run` (HostRouter);
* the VM: the router is the VM itself, the daemon the installed package,
  switched on with uci and the init script (tests.support.vm.VmRouter).

A conftest.py takes them with `lab, logdir, alg = lab_fixtures(Router())`.
"""
import pytest

from tests.support.lab.netns import Lab
from tests.support.lab.peers import Alg
from tests.support.need import require_lab


class HostRouter:
    router_ns = True                   # Lab(router_ns=...): the router's own namespace

    def check(self) -> None:
        """Before the lab is built: skip or fail when it can't run here."""
        require_lab()

    def start(self, lab: Lab, logdir: str):
        """The running ALG for one test (Alg's interface)."""
        return Alg(lab, logdir, "--rtp-ports", "1024-65535").start()

    def finish(self, alg) -> None:
        if alg.proc is not None:
            alg.stop()


def lab_fixtures(router):
    """(lab, logdir, alg) pytest fixtures for this router."""

    @pytest.fixture
    def lab(request):
        router.check()
        with Lab(tag=str(abs(hash(request.node.name)) % 10000), router_ns=router.router_ns) as lab:
            yield lab

    @pytest.fixture
    def logdir(tmp_path):
        return str(tmp_path)

    @pytest.fixture
    def alg(lab, logdir):
        a = router.start(lab, logdir)
        yield a
        router.finish(a)
        print(a.log()[-4000:])

    return lab, logdir, alg
