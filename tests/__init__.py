"""sipalg's tests.  A package so that `tests.support` is importable from the checkout
(pytest, the lab's `python3 -m tests.support.lab.rtp` subprocesses, bench/, the QEMU VM)."""
